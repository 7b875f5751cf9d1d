"""Non-LLM agents (opponents, baselines) and action-value oracles.

Every agent implements :meth:`Agent.step`, which picks an action for ``state.current_player()``
and draws all of its randomness from the generator it is given, so that a seeded environment is
fully reproducible.

The oracles :func:`action_values` (exact minimax, memoised) and :func:`mcts_action_values` (MCTS
estimates) score every legal action of a state; they back the minimax agent and are meant for
preference labelling.
"""

from __future__ import annotations

import numpy as np
import pyspiel
from open_spiel.python.algorithms import mcts

__all__ = [
    "AGENT_NAMES",
    "Agent",
    "HeuristicAgent",
    "MCTSAgent",
    "MinimaxAgent",
    "RandomAgent",
    "SearchTooLargeError",
    "action_values",
    "clear_minimax_cache",
    "make_agent",
    "mcts_action_values",
]

#: Names accepted by :func:`make_agent`.
AGENT_NAMES: tuple[str, ...] = ("random", "mcts", "minimax", "heuristic")

#: Largest number of new states one exact search may expand before giving up.
DEFAULT_MAX_NODES: int = 200_000

_VALUE_TOL = 1e-9


def _seed_from(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31))


class Agent:
    """A policy over OpenSpiel states that does not need a language model."""

    def step(self, state: pyspiel.State, rng: np.random.Generator) -> int:
        """Return an action for ``state.current_player()``.

        Args:
            state: A decision state (not terminal, not chance, not simultaneous). Not modified.
            rng: The only source of randomness the agent may use.

        Returns:
            A legal OpenSpiel action id.
        """
        raise NotImplementedError


class RandomAgent(Agent):
    """Uniformly random legal move."""

    def step(self, state: pyspiel.State, rng: np.random.Generator) -> int:
        legal = state.legal_actions()
        return int(legal[int(rng.integers(len(legal)))])


class MCTSAgent(Agent):
    """OpenSpiel's UCT ``MCTSBot`` with random-rollout evaluation.

    A fresh bot is built for every move from a seed drawn from ``rng``, so play is reproducible.

    Args:
        game: The loaded game (sequential, terminal rewards).
        simulations: MCTS simulations per move.
        uct_c: UCT exploration constant.
        rollouts: Random rollouts per leaf evaluation.
    """

    def __init__(self, game: pyspiel.Game, simulations: int = 100, uct_c: float = 2.0, rollouts: int = 1):
        if int(simulations) < 1:
            raise ValueError(f"simulations must be >= 1, got {simulations!r}")
        if int(rollouts) < 1:
            raise ValueError(f"rollouts must be >= 1, got {rollouts!r}")
        _check_mcts_game(game)
        self.game = game
        self.simulations = int(simulations)
        self.uct_c = float(uct_c)
        self.rollouts = int(rollouts)

    def _bot(self, rng: np.random.Generator, solve: bool = True) -> mcts.MCTSBot:
        random_state = np.random.RandomState(_seed_from(rng))
        evaluator = mcts.RandomRolloutEvaluator(n_rollouts=self.rollouts, random_state=random_state)
        return mcts.MCTSBot(
            self.game,
            uct_c=self.uct_c,
            max_simulations=self.simulations,
            evaluator=evaluator,
            solve=solve,
            random_state=random_state,
        )

    def step(self, state: pyspiel.State, rng: np.random.Generator) -> int:
        return int(self._bot(rng).step(state))


class MinimaxAgent(Agent):
    """Exact minimax play (see :func:`action_values`); ties among best moves broken by ``rng``.

    Args:
        game: A small two-player zero-sum perfect-information sequential game (e.g. tic-tac-toe).
        max_nodes: Expansion budget for one search; exceeding it raises :class:`SearchTooLargeError`.
    """

    def __init__(self, game: pyspiel.Game, max_nodes: int = DEFAULT_MAX_NODES):
        _check_minimax_game(game)
        self.game = game
        self.max_nodes = int(max_nodes)

    def step(self, state: pyspiel.State, rng: np.random.Generator) -> int:
        values = action_values(state, state.current_player(), max_nodes=self.max_nodes)
        best = max(values.values())
        choices = [a for a, v in values.items() if v >= best - _VALUE_TOL]
        return int(choices[int(rng.integers(len(choices)))])


class HeuristicAgent(Agent):
    """Tic-tac-toe rule of thumb: win if possible, else block, else centre, else a corner, else
    any cell (choices within a rule drawn from ``rng``)."""

    _LINES = (
        (0, 1, 2),
        (3, 4, 5),
        (6, 7, 8),
        (0, 3, 6),
        (1, 4, 7),
        (2, 5, 8),
        (0, 4, 8),
        (2, 4, 6),
    )

    def __init__(self, game: pyspiel.Game | None = None):
        if game is not None and game.get_type().short_name != "tic_tac_toe":
            raise ValueError(
                f"HeuristicAgent only plays tic_tac_toe, not {game.get_type().short_name!r}; "
                "use 'mcts' or 'random' for other games"
            )

    @classmethod
    def _completing(cls, cells: str, mark: str, empty: set[int]) -> list[int]:
        found = set()
        for line in cls._LINES:
            marks = [cells[i] for i in line]
            if marks.count(mark) == 2:
                found.update(i for i in line if i in empty)
        return sorted(found)

    def step(self, state: pyspiel.State, rng: np.random.Generator) -> int:
        player = state.current_player()
        cells = "".join(str(state).split())[:9]
        legal = state.legal_actions()
        empty = set(legal)
        me, them = ("x", "o") if player == 0 else ("o", "x")
        for choices in (
            self._completing(cells, me, empty),
            self._completing(cells, them, empty),
            [4] if 4 in empty else [],
            [c for c in (0, 2, 6, 8) if c in empty],
            list(legal),
        ):
            if choices:
                return int(choices[int(rng.integers(len(choices)))])
        raise ValueError("HeuristicAgent.step called on a state with no legal actions")


def make_agent(name: str, game: pyspiel.Game, mcts_simulations: int = 100) -> Agent:
    """Build a named agent for ``game``.

    Args:
        name: One of :data:`AGENT_NAMES` (``"random"``, ``"mcts"``, ``"minimax"``, ``"heuristic"``).
        game: The loaded game the agent will play.
        mcts_simulations: Simulations per move for ``"mcts"``.

    Returns:
        The agent.

    Raises:
        ValueError: Unknown name, or the agent cannot play this game.
    """
    if name == "random":
        return RandomAgent()
    if name == "mcts":
        return MCTSAgent(game, simulations=mcts_simulations)
    if name == "minimax":
        return MinimaxAgent(game)
    if name == "heuristic":
        return HeuristicAgent(game)
    raise ValueError(f"unknown agent {name!r}; valid agents are {', '.join(AGENT_NAMES)}")


# --------------------------------------------------------------------------------------------------
# Oracles
# --------------------------------------------------------------------------------------------------


class SearchTooLargeError(ValueError):
    """Exact search was asked for a game (or position) too large to solve."""


#: (game string, player to move, state string) -> value for player 0 under optimal play.
_MINIMAX_CACHE: dict[tuple[str, int, str], float] = {}


def clear_minimax_cache() -> None:
    """Forget every memoised minimax value."""
    _MINIMAX_CACHE.clear()


def _check_minimax_game(game: pyspiel.Game) -> None:
    game_type = game.get_type()
    problems = []
    if game.num_players() != 2:
        problems.append(f"{game.num_players()} players (need 2)")
    if game_type.utility != pyspiel.GameType.Utility.ZERO_SUM:
        problems.append(f"utility {game_type.utility.name} (need ZERO_SUM)")
    if game_type.information != pyspiel.GameType.Information.PERFECT_INFORMATION:
        problems.append(f"information {game_type.information.name} (need PERFECT_INFORMATION)")
    if game_type.dynamics != pyspiel.GameType.Dynamics.SEQUENTIAL:
        problems.append(f"dynamics {game_type.dynamics.name} (need SEQUENTIAL)")
    if problems:
        raise SearchTooLargeError(
            f"exact minimax needs a two-player zero-sum perfect-information sequential game; "
            f"{game} has {', '.join(problems)}. Use mcts_action_values instead."
        )


def _check_mcts_game(game: pyspiel.Game) -> None:
    game_type = game.get_type()
    if game_type.dynamics != pyspiel.GameType.Dynamics.SEQUENTIAL:
        raise ValueError(f"MCTS needs a sequential game; {game} is {game_type.dynamics.name}")
    if game_type.reward_model != pyspiel.GameType.RewardModel.TERMINAL:
        raise ValueError(f"MCTS needs terminal rewards; {game} has {game_type.reward_model.name}")


class _Budget:
    __slots__ = ("left",)

    def __init__(self, left: int):
        self.left = left


def _value0(state: pyspiel.State, game_key: str, budget: _Budget) -> float:
    """Optimal-play value of ``state`` for player 0 (player 1 gets the negation)."""
    if state.is_terminal():
        return float(state.returns()[0])
    player = state.current_player()
    key = (game_key, player, str(state))
    cached = _MINIMAX_CACHE.get(key)
    if cached is not None:
        return cached
    budget.left -= 1
    if budget.left < 0:
        raise SearchTooLargeError(
            f"exact minimax on {game_key} exceeded its node budget; the game is too large for exact "
            "search. Use mcts_action_values instead."
        )
    if state.is_chance_node():
        value = sum(p * _value0(state.child(a), game_key, budget) for a, p in state.chance_outcomes())
    else:
        child_values = [_value0(state.child(a), game_key, budget) for a in state.legal_actions()]
        value = max(child_values) if player == 0 else min(child_values)
    _MINIMAX_CACHE[key] = value
    return value


def action_values(state: pyspiel.State, player: int, max_nodes: int = DEFAULT_MAX_NODES) -> dict[int, float]:
    """Exact minimax value, for ``player``, of each legal action at ``state``.

    Values are final game returns under optimal play by both sides after taking the action, in the
    game's utility units (tic-tac-toe: +1 win, 0 draw, -1 loss). Chance nodes are averaged.
    Results are memoised in a module-level cache keyed by (game string, player to move, state
    string), so repeated calls on the same game are nearly free.

    Args:
        state: A decision state of a small two-player zero-sum perfect-information sequential game.
        player: Whose value to report (0 or 1; need not be the player to move).
        max_nodes: Budget of newly expanded states for this call.

    Returns:
        ``{action_id: value}`` for every legal action, in ``state.legal_actions()`` order.

    Raises:
        SearchTooLargeError: (a ``ValueError``) the game is not of the required kind, or the search
            exceeded ``max_nodes`` (the game is too large for exact search).
        ValueError: ``state`` is not a decision state or ``player`` is not 0 or 1.
    """
    game = state.get_game()
    _check_minimax_game(game)
    if player not in (0, 1):
        raise ValueError(f"player must be 0 or 1, got {player!r}")
    if state.is_terminal() or state.is_chance_node():
        raise ValueError("action_values needs a decision state (not terminal, not chance)")
    game_key = str(game)
    budget = _Budget(int(max_nodes))
    sign = 1.0 if player == 0 else -1.0
    try:
        return {int(a): sign * _value0(state.child(a), game_key, budget) + 0.0 for a in state.legal_actions()}
    except RecursionError as err:
        raise SearchTooLargeError(
            f"exact minimax on {game_key} recursed too deeply; use mcts_action_values instead"
        ) from err


def mcts_action_values(
    state: pyspiel.State,
    player: int,
    simulations: int,
    rng: np.random.Generator,
    uct_c: float = 2.0,
    rollouts: int = 1,
) -> dict[int, float]:
    """MCTS estimate, for ``player``, of each legal action at ``state`` (for games too large for
    :func:`action_values`).

    Runs one UCT search (OpenSpiel ``MCTSBot`` with random rollouts, no early stop on proven
    results) from ``state``. An action's value is the exact return when it ends the game, else the
    mean return of the simulations through it. Actions never visited (fewer simulations than legal
    actions) get the midpoint of the utility range.

    Args:
        state: A decision state of a sequential game with terminal rewards.
        player: Whose value to report: the player to move, or (two-player zero-sum games only) the
            other player.
        simulations: MCTS simulations.
        rng: Seeds the search.
        uct_c: UCT exploration constant.
        rollouts: Random rollouts per leaf evaluation.

    Returns:
        ``{action_id: value}`` for every legal action, in ``state.legal_actions()`` order.
    """
    game = state.get_game()
    if state.is_terminal() or state.is_chance_node() or state.is_simultaneous_node():
        raise ValueError("mcts_action_values needs a sequential decision state")
    mover = state.current_player()
    sign = 1.0
    if player != mover:
        zero_sum = game.get_type().utility == pyspiel.GameType.Utility.ZERO_SUM
        if not (zero_sum and game.num_players() == 2 and player in (0, 1)):
            raise ValueError(
                f"mcts_action_values can only value actions for the player to move ({mover}) "
                "or, in two-player zero-sum games, for the opponent"
            )
        sign = -1.0
    agent = MCTSAgent(game, simulations=simulations, uct_c=uct_c, rollouts=rollouts)
    # Without solver back-ups the search never stops early, so every action gets visited.
    root = agent._bot(rng, solve=False).mcts_search(state)
    neutral = (game.min_utility() + game.max_utility()) / 2.0
    by_action: dict[int, float] = {}
    for child in root.children:
        if child.outcome is not None:
            by_action[int(child.action)] = float(child.outcome[player])
        elif child.explore_count > 0:
            by_action[int(child.action)] = float(sign * child.total_reward / child.explore_count)
    return {int(a): by_action.get(int(a), neutral) + 0.0 for a in state.legal_actions()}
