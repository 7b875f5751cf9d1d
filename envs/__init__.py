"""Text environments over OpenSpiel games, their renderers, and non-LLM agents.

Importing this package registers the Gymnasium ids in :data:`REGISTERED_IDS` (and lightspiel's own
OpenSpiel games, see :mod:`envs.games`)::

    gymnasium.make("lightspiel/TicTacToe-v0", opponent="minimax")
    gymnasium.make("lightspiel/KuhnPoker-v0", opponent="heuristic")
    gymnasium.make("lightspiel/OpenSpiel-v0", game="breakthrough(rows=6,columns=6)")

docs/games.md describes every registered game: prompt, answer formats, rewards and opponents.
"""

from __future__ import annotations

import gymnasium

from envs.agents import (
    AGENT_NAMES,
    HEURISTIC_GAMES,
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
    sample_determinization,
)
from envs.games import REPEATED_POKER, RepeatedPokerGame, RepeatedPokerState
from envs.renderers import (
    INVALID_ACTION,
    RENDERERS,
    BreakthroughRenderer,
    ConnectFourRenderer,
    GenericRenderer,
    KuhnPokerRenderer,
    LeducPokerRenderer,
    LewisSignalingRenderer,
    LiarsDiceRenderer,
    Renderer,
    RepeatedPokerRenderer,
    TicTacToeRenderer,
    renderer_for,
)
from envs.text_env import (
    ACTION_CHARSET,
    CHARSET,
    COOPERATIVE_GAMES,
    ILLEGAL_RULES,
    OPPONENTS,
    OpenSpielTextEnv,
    load_game,
    observe,
    state_from_history,
)

__all__ = [
    "ACTION_CHARSET",
    "AGENT_NAMES",
    "CHARSET",
    "COOPERATIVE_GAMES",
    "GAME_IDS",
    "HEURISTIC_GAMES",
    "ILLEGAL_RULES",
    "INVALID_ACTION",
    "OPPONENTS",
    "REGISTERED_IDS",
    "RENDERERS",
    "REPEATED_POKER",
    "Agent",
    "BreakthroughRenderer",
    "ConnectFourRenderer",
    "GenericRenderer",
    "HeuristicAgent",
    "KuhnPokerRenderer",
    "LeducPokerRenderer",
    "LewisSignalingRenderer",
    "LiarsDiceRenderer",
    "MCTSAgent",
    "MinimaxAgent",
    "OpenSpielTextEnv",
    "RandomAgent",
    "Renderer",
    "RepeatedPokerGame",
    "RepeatedPokerRenderer",
    "RepeatedPokerState",
    "SearchTooLargeError",
    "TicTacToeRenderer",
    "action_values",
    "clear_minimax_cache",
    "env_kwargs",
    "load_game",
    "make_agent",
    "mcts_action_values",
    "observe",
    "renderer_for",
    "sample_determinization",
    "state_from_history",
]

_ENTRY_POINT = "envs.text_env:OpenSpielTextEnv"

#: Gymnasium id -> default constructor kwargs (any of them can be overridden in ``gymnasium.make``).
_ENVS: dict[str, dict[str, str]] = {
    "lightspiel/TicTacToe-v0": {"game": "tic_tac_toe"},
    "lightspiel/OpenSpiel-v0": {},  # the caller passes game=...
    "lightspiel/ConnectFour-v0": {"game": "connect_four"},
    "lightspiel/KuhnPoker-v0": {"game": "kuhn_poker"},
    "lightspiel/LeducPoker-v0": {"game": "leduc_poker"},
    "lightspiel/RepeatedPoker-v0": {"game": f"{REPEATED_POKER}(base=kuhn_poker,rounds=5)"},
    "lightspiel/LiarsDice-v0": {"game": "liars_dice"},
    "lightspiel/LewisSignaling-v0": {"game": "lewis_signaling", "opponent": "self"},
    "lightspiel/Breakthrough-v0": {"game": "breakthrough(rows=6,columns=6)"},
}

#: Every Gymnasium id this package registers.
REGISTERED_IDS: list[str] = list(_ENVS)

#: Registered id -> its default game string (every id but ``lightspiel/OpenSpiel-v0``).
GAME_IDS: dict[str, str] = {env_id: kw["game"] for env_id, kw in _ENVS.items() if "game" in kw}


def env_kwargs(env_id: str) -> dict[str, str]:
    """The default constructor kwargs of a registered id (a copy)."""
    if env_id not in _ENVS:
        raise ValueError(f"unknown env id {env_id!r}; registered: {', '.join(REGISTERED_IDS)}")
    return dict(_ENVS[env_id])


for _env_id, _kwargs in _ENVS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(_env_id, entry_point=_ENTRY_POINT, kwargs=dict(_kwargs))
