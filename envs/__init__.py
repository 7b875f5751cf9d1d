"""Text environments over OpenSpiel games, their renderers, and non-LLM agents.

Importing this package registers the Gymnasium ids in :data:`REGISTERED_IDS` (and lightspiel's own
OpenSpiel games, see :mod:`envs.games.repeated_poker`)::

    gymnasium.make("lightspiel/TicTacToe-v0", opponent="minimax")
    gymnasium.make("lightspiel/KuhnPoker-v0", opponent="heuristic")
    gymnasium.make("lightspiel/OpenSpiel-v0", game="breakthrough(rows=6,columns=6)")

Layout: one module per game under :mod:`envs.games` (renderer, heuristic, registration), collected
by :mod:`envs.registry`; :mod:`envs.core` (loading games, rebuilding states, what a seat is shown);
:mod:`envs.text_env` (the Gymnasium env); :mod:`envs.agents` (opponents); :mod:`envs.oracles`
(action values); :mod:`envs.contract` (what every lightspiel env keeps). docs/games.md describes
every registered game: prompt, answer formats, rewards and opponents.
"""

from __future__ import annotations

from envs.agents import (
    AGENT_NAMES,
    Agent,
    HeuristicAgent,
    MCTSAgent,
    MinimaxAgent,
    RandomAgent,
    make_agent,
)
from envs.contract import check_env_contract
from envs.core import ACTION_CHARSET, CHARSET, load_game, observe, renderer_for, state_from_history
from envs.games.base import INVALID_ACTION, GameSpec, Renderer
from envs.games.breakthrough import BreakthroughRenderer
from envs.games.connect_four import ConnectFourRenderer
from envs.games.generic import GenericRenderer
from envs.games.kuhn_poker import KuhnPokerRenderer
from envs.games.leduc_poker import LeducPokerRenderer
from envs.games.lewis_signaling import LewisSignalingRenderer
from envs.games.liars_dice import LiarsDiceRenderer
from envs.games.repeated_poker import (
    REPEATED_POKER,
    RepeatedPokerGame,
    RepeatedPokerRenderer,
    RepeatedPokerState,
)
from envs.games.tic_tac_toe import TicTacToeRenderer
from envs.oracles import (
    SearchTooLargeError,
    action_values,
    clear_minimax_cache,
    mcts_action_values,
    sample_determinization,
)
from envs.reasoning import REASONING_ENVS, register_reasoning_ids
from envs.registry import (
    GAME_IDS,
    GAMES,
    HEURISTIC_GAMES,
    REGISTERED_IDS,
    RENDERERS,
    env_kwargs,
    register_gymnasium_ids,
)
from envs.text_env import COOPERATIVE_GAMES, ILLEGAL_RULES, OPPONENTS, OpenSpielTextEnv

__all__ = [
    "ACTION_CHARSET",
    "AGENT_NAMES",
    "CHARSET",
    "COOPERATIVE_GAMES",
    "GAMES",
    "GAME_IDS",
    "HEURISTIC_GAMES",
    "ILLEGAL_RULES",
    "INVALID_ACTION",
    "OPPONENTS",
    "REASONING_ENVS",
    "REGISTERED_IDS",
    "RENDERERS",
    "REPEATED_POKER",
    "Agent",
    "BreakthroughRenderer",
    "ConnectFourRenderer",
    "GameSpec",
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
    "check_env_contract",
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

register_gymnasium_ids()
register_reasoning_ids()
