"""Text environments over OpenSpiel games, their renderers, and non-LLM agents.

Importing this package registers the Gymnasium ids in :data:`REGISTERED_IDS`::

    gymnasium.make("lightspiel/TicTacToe-v0", opponent="minimax")
    gymnasium.make("lightspiel/OpenSpiel-v0", game="connect_four")
"""

from __future__ import annotations

import gymnasium

from envs.agents import (
    AGENT_NAMES,
    Agent,
    HeuristicAgent,
    MCTSAgent,
    MinimaxAgent,
    RandomAgent,
    SearchTooLargeError,
    action_values,
    clear_minimax_cache,
    make_agent,
    mcts_action_values,
)
from envs.renderers import (
    INVALID_ACTION,
    RENDERERS,
    GenericRenderer,
    Renderer,
    TicTacToeRenderer,
    renderer_for,
)
from envs.text_env import (
    ACTION_CHARSET,
    CHARSET,
    ILLEGAL_RULES,
    OPPONENTS,
    OpenSpielTextEnv,
    load_game,
    state_from_history,
)

__all__ = [
    "ACTION_CHARSET",
    "AGENT_NAMES",
    "CHARSET",
    "ILLEGAL_RULES",
    "INVALID_ACTION",
    "OPPONENTS",
    "REGISTERED_IDS",
    "RENDERERS",
    "Agent",
    "GenericRenderer",
    "HeuristicAgent",
    "MCTSAgent",
    "MinimaxAgent",
    "OpenSpielTextEnv",
    "RandomAgent",
    "Renderer",
    "SearchTooLargeError",
    "TicTacToeRenderer",
    "action_values",
    "clear_minimax_cache",
    "load_game",
    "make_agent",
    "mcts_action_values",
    "renderer_for",
    "state_from_history",
]

_ENTRY_POINT = "envs.text_env:OpenSpielTextEnv"

#: Gymnasium id -> default constructor kwargs.
_ENVS: dict[str, dict[str, str]] = {
    "lightspiel/TicTacToe-v0": {"game": "tic_tac_toe"},
    "lightspiel/OpenSpiel-v0": {},  # the caller passes game=...
}

#: Every Gymnasium id this package registers.
REGISTERED_IDS: list[str] = list(_ENVS)

for _env_id, _kwargs in _ENVS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(_env_id, entry_point=_ENTRY_POINT, kwargs=dict(_kwargs))
