"""Action-value oracles: what each legal action of a state is worth, for labelling preferences and
for the search agents of :mod:`envs.agents`.

- :func:`action_values`: exact minimax values (memoised), for small two-player zero-sum
  perfect-information games; :class:`SearchTooLargeError` when a game is not of that kind or too
  large.
- :func:`mcts_action_values`: MCTS estimates for any sequential game with terminal rewards; on
  imperfect-information games it searches determinizations.
- :func:`sample_determinization`: a state the acting seat cannot tell apart from the real one,
  drawn at random (hidden cards or dice redrawn); it never copies the real state's hidden
  information.
- :func:`uct_bot`: the OpenSpiel ``MCTSBot`` both the MCTS agent and :func:`mcts_action_values` run.
"""

from __future__ import annotations

import math

import numpy as np
import pyspiel
from open_spiel.python.algorithms import mcts

from envs.games.base import perfect_information

__all__ = [
    "DEFAULT_DETERMINIZATIONS",
    "DEFAULT_MAX_NODES",
    "SearchTooLargeError",
    "action_values",
    "check_mcts_game",
    "check_mcts_settings",
    "check_minimax_game",
    "clear_minimax_cache",
    "mcts_action_values",
    "sample_determinization",
    "searches_per_world",
    "uct_bot",
]

#: Largest number of new states one exact search may expand before giving up.
DEFAULT_MAX_NODES: int = 200_000

#: Determinizations searched per move by MCTS on imperfect-information games.
DEFAULT_DETERMINIZATIONS: int = 4


class SearchTooLargeError(ValueError):
    """Exact search was asked for a game (or position) too large to solve."""


class _Budget:
    """A count of nodes a search may still expand, shared by its recursive calls."""

    __slots__ = ("left",)

    def __init__(self, left: int):
        self.left = left


# --------------------------------------------------------------------------------------------------
# Exact minimax
# --------------------------------------------------------------------------------------------------

#: (game string, discount, player to move, state string) -> value for player 0 under optimal play.
_MINIMAX_CACHE: dict[tuple[str, float, int, str], float] = {}


def clear_minimax_cache() -> None:
    """Forget every memoised minimax value."""
    _MINIMAX_CACHE.clear()


def check_minimax_game(game: pyspiel.Game) -> None:
    """Raise :class:`SearchTooLargeError` unless ``game`` is a two-player zero-sum
    perfect-information sequential game (the message lists what is wrong)."""
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


def _value0(state: pyspiel.State, game_key: str, budget: _Budget, discount: float) -> float:
    """Optimal-play value of ``state`` for player 0 (player 1 gets the negation); each decision
    between ``state`` and the end multiplies the return by ``discount``."""
    if state.is_terminal():
        return float(state.returns()[0])
    player = state.current_player()
    key = (game_key, discount, player, str(state))
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
        outcomes = state.chance_outcomes()
        value = sum(p * _value0(state.child(a), game_key, budget, discount) for a, p in outcomes)
    else:
        child_values = [_value0(state.child(a), game_key, budget, discount) for a in state.legal_actions()]
        value = discount * (max(child_values) if player == 0 else min(child_values))
    _MINIMAX_CACHE[key] = value
    return value


def action_values(
    state: pyspiel.State, player: int, max_nodes: int = DEFAULT_MAX_NODES, discount: float = 1.0
) -> dict[int, float]:
    """Exact minimax value, for ``player``, of each legal action at ``state``.

    Values are final game returns under optimal play by both sides after taking the action, in the
    game's utility units (tic-tac-toe: +1 win, 0 draw, -1 loss). Chance nodes are averaged.

    ``discount`` below 1 multiplies the return by ``discount`` for every decision between the
    action and the end of the game, and both sides play for their discounted value: of two winning
    moves the quicker one is worth more (a win now is 1, a win at one's next turn ``discount**2``),
    of two lost ones the slower (blocking a threat in a position lost anyway). Outcomes stay apart
    as long as ``discount`` raised to the most decisions that can follow an action exceeds the gap a
    caller needs between them (tic-tac-toe, 8 decisions, 0.95: every win is worth at least 0.66,
    every loss at most -0.66). The gaps between speeds shrink with depth: at 0.95 in tic-tac-toe the
    smallest is about 0.07 (a win at one's fourth turn against the fifth).
    Results are memoised in a module-level cache keyed by (game string, discount, player to move,
    state string), so repeated calls on the same game are nearly free.

    Args:
        state: A decision state of a small two-player zero-sum perfect-information sequential game.
        player: Whose value to report (0 or 1; need not be the player to move).
        max_nodes: Budget of newly expanded states for this call.

    Returns:
        ``{action_id: value}`` for every legal action, in ``state.legal_actions()`` order.

    Raises:
        SearchTooLargeError: (a ``ValueError``) the game is not of the required kind, or the search
            exceeded ``max_nodes`` (the game is too large for exact search).
        ValueError: ``state`` is not a decision state, ``player`` is not 0 or 1, or ``discount`` is
            not in (0, 1].
    """
    game = state.get_game()
    check_minimax_game(game)
    if player not in (0, 1):
        raise ValueError(f"player must be 0 or 1, got {player!r}")
    if not 0 < discount <= 1:
        raise ValueError(f"discount must be in (0, 1], got {discount!r}")
    if state.is_terminal() or state.is_chance_node():
        raise ValueError("action_values needs a decision state (not terminal, not chance)")
    game_key = str(game)
    budget = _Budget(int(max_nodes))
    sign = 1.0 if player == 0 else -1.0
    try:
        return {
            int(a): sign * _value0(state.child(a), game_key, budget, float(discount)) + 0.0
            for a in state.legal_actions()
        }
    except RecursionError as err:
        raise SearchTooLargeError(
            f"exact minimax on {game_key} recursed too deeply; use mcts_action_values instead"
        ) from err


# --------------------------------------------------------------------------------------------------
# Determinization
# --------------------------------------------------------------------------------------------------


def _knowledge(state: pyspiel.State, player: int) -> str | None:
    """What ``player`` knows at ``state`` as a string (information state, else observation)."""
    game_type = state.get_game().get_type()
    try:
        if game_type.provides_information_state_string:
            return state.information_state_string(player)
        if game_type.provides_observation_string:
            return state.observation_string(player)
    except pyspiel.SpielError:
        return None
    return None


def _weighted_order(outcomes: list[tuple[int, float]], rng: np.random.Generator) -> list[int]:
    """Outcomes in a random order drawn without replacement with probability proportional to
    their weights (Efraimidis-Spirakis keys)."""
    kept = [(a, p) for a, p in outcomes if p > 0]
    if not kept:
        return []
    keys = -np.log(1.0 - rng.random(len(kept))) / np.asarray([p for _, p in kept])
    return [int(kept[i][0]) for i in np.argsort(keys, kind="stable")]


class _Redraw:
    """The depth-first search of :func:`sample_determinization`: replays ``history``, redrawing
    chance outcomes among those that keep ``player``'s knowledge equal to ``targets``."""

    def __init__(
        self,
        history: list[int],
        targets: list[str | None],
        player: int,
        rng: np.random.Generator,
        max_nodes: int,
    ):
        self.history, self.targets, self.player, self.rng = history, targets, player, rng
        self.budget = _Budget(max_nodes)

    def candidates(self, position: int, current: pyspiel.State) -> list[int]:
        if current.is_chance_node():
            return _weighted_order(current.chance_outcomes(), self.rng)
        wanted = self.history[position]
        return [wanted] if wanted in current.legal_actions() else []

    def search(self, position: int, current: pyspiel.State) -> pyspiel.State | None:
        if position == len(self.history):
            return current
        self.budget.left -= 1
        if self.budget.left < 0:
            return None
        for action in self.candidates(position, current):
            child = current.child(action)
            target = self.targets[position + 1]
            if target is not None and _knowledge(child, self.player) != target:
                continue
            found = self.search(position + 1, child)
            if found is not None:
                return found
            if self.budget.left < 0:
                return None
        return None


def sample_determinization(
    state: pyspiel.State, player: int, rng: np.random.Generator, max_nodes: int = 20_000
) -> pyspiel.State | None:
    """A state that ``player`` cannot tell apart from ``state``, drawn at random.

    The game is replayed from its start with the same moves as ``state``; every chance outcome is
    redrawn (in proportion to its probability) among those that keep ``player``'s information
    state equal to the real one at that point, backtracking when a later point disagrees. Moves of
    the players are kept. The real state's hidden information is never copied: it is only compared
    through ``player``'s own information-state (or observation) strings. For games like poker and
    liar's dice this draws the other seats' cards or dice from their distribution given what
    ``player`` has seen (assuming the other seats' moves did not depend on them).

    Args:
        state: A sequential decision state.
        player: The seat whose knowledge must be preserved.
        rng: Source of randomness.
        max_nodes: Search budget; ``None`` is returned if it runs out.

    Returns:
        The resampled state, or ``None`` if no consistent state was found within the budget.
    """
    game = state.get_game()
    history = [int(a) for a in state.history()]
    real = game.new_initial_state()
    targets = [_knowledge(real, player)]
    for action in history:
        real.apply_action(action)
        targets.append(_knowledge(real, player))
    return _Redraw(history, targets, player, rng, int(max_nodes)).search(0, game.new_initial_state())


# --------------------------------------------------------------------------------------------------
# MCTS
# --------------------------------------------------------------------------------------------------


def check_mcts_game(game: pyspiel.Game) -> None:
    """Raise ``ValueError`` unless MCTS can search ``game``: sequential, terminal rewards, and (if it
    hides information) information-state or observation strings to determinize with."""
    game_type = game.get_type()
    if game_type.dynamics != pyspiel.GameType.Dynamics.SEQUENTIAL:
        raise ValueError(f"MCTS needs a sequential game; {game} is {game_type.dynamics.name}")
    if game_type.reward_model != pyspiel.GameType.RewardModel.TERMINAL:
        raise ValueError(f"MCTS needs terminal rewards; {game} has {game_type.reward_model.name}")
    if not perfect_information(game) and not (
        game_type.provides_information_state_string or game_type.provides_observation_string
    ):
        raise ValueError(
            f"MCTS on the imperfect-information game {game} searches determinizations, which needs "
            "information-state or observation strings; this game has neither"
        )


def check_mcts_settings(game: pyspiel.Game, simulations: int, rollouts: int, determinizations: int) -> None:
    """Raise ``ValueError`` (naming the setting) for settings MCTS cannot run with on ``game``."""
    if int(simulations) < 1:
        raise ValueError(f"simulations must be >= 1, got {simulations!r}")
    if int(rollouts) < 1:
        raise ValueError(f"rollouts must be >= 1, got {rollouts!r}")
    if int(determinizations) < 1:
        raise ValueError(f"determinizations must be >= 1, got {determinizations!r}")
    check_mcts_game(game)


def searches_per_world(simulations: int, determinizations: int) -> int:
    """Simulations each determinization gets when ``simulations`` are split among them."""
    return max(1, math.ceil(simulations / determinizations))


def uct_bot(
    game: pyspiel.Game,
    rng: np.random.Generator,
    simulations: int,
    uct_c: float = 2.0,
    rollouts: int = 1,
    solve: bool = True,
) -> mcts.MCTSBot:
    """OpenSpiel's UCT ``MCTSBot`` with random-rollout evaluation, seeded from ``rng``."""
    random_state = np.random.RandomState(int(rng.integers(2**31)))
    evaluator = mcts.RandomRolloutEvaluator(n_rollouts=rollouts, random_state=random_state)
    return mcts.MCTSBot(
        game,
        uct_c=uct_c,
        max_simulations=simulations,
        evaluator=evaluator,
        solve=solve,
        random_state=random_state,
    )


def _value_sign(state: pyspiel.State, player: int) -> float:
    """+1 when ``player`` moves at ``state``, -1 for the other seat of a two-player zero-sum game;
    ``ValueError`` otherwise, or when ``state`` is not a sequential decision state."""
    if state.is_terminal() or state.is_chance_node() or state.is_simultaneous_node():
        raise ValueError("mcts_action_values needs a sequential decision state")
    mover = state.current_player()
    if player == mover:
        return 1.0
    game = state.get_game()
    zero_sum = game.get_type().utility == pyspiel.GameType.Utility.ZERO_SUM
    if not (zero_sum and game.num_players() == 2 and player in (0, 1)):
        raise ValueError(
            f"mcts_action_values can only value actions for the player to move ({mover}) "
            "or, in two-player zero-sum games, for the opponent"
        )
    return -1.0


def _child_values(root: mcts.SearchNode, player: int, sign: float) -> dict[int, float]:
    """Each searched child's value for ``player``: its exact outcome when it ends the game, else the
    mean return of the simulations through it (``sign`` turns the mover's returns into
    ``player``'s); children never visited are left out."""
    values = {}
    for child in root.children:
        if child.outcome is not None:
            values[int(child.action)] = float(child.outcome[player])
        elif child.explore_count > 0:
            values[int(child.action)] = float(sign * child.total_reward / child.explore_count)
    return values


def mcts_action_values(
    state: pyspiel.State,
    player: int,
    simulations: int,
    rng: np.random.Generator,
    uct_c: float = 2.0,
    rollouts: int = 1,
    determinizations: int = DEFAULT_DETERMINIZATIONS,
) -> dict[int, float]:
    """MCTS estimate, for ``player``, of each legal action at ``state`` (for games too large for
    :func:`action_values`).

    Runs one UCT search (OpenSpiel ``MCTSBot`` with random rollouts, no early stop on proven
    results) from ``state``. An action's value is the exact return when it ends the game, else the
    mean return of the simulations through it. Actions never visited (fewer simulations than legal
    actions) get the midpoint of the utility range.

    On imperfect-information games the search never sees the hidden information: it runs on
    ``determinizations`` states drawn by :func:`sample_determinization` for the player to move
    (``simulations`` split evenly among them) and the values are averaged.

    Args:
        state: A decision state of a sequential game with terminal rewards.
        player: Whose value to report: the player to move, or (two-player zero-sum games only) the
            other player.
        simulations: MCTS simulations.
        rng: Seeds the search.
        uct_c: UCT exploration constant.
        rollouts: Random rollouts per leaf evaluation.
        determinizations: Imperfect-information games only: resampled states searched.

    Returns:
        ``{action_id: value}`` for every legal action, in ``state.legal_actions()`` order.
    """
    sign = _value_sign(state, player)
    game = state.get_game()
    check_mcts_settings(game, simulations, rollouts, determinizations)
    if perfect_information(game):
        worlds, per_search = [state], int(simulations)
    else:
        samples = [
            sample_determinization(state, state.current_player(), rng) for _ in range(int(determinizations))
        ]
        worlds = [w for w in samples if w is not None]
        per_search = searches_per_world(int(simulations), int(determinizations))
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for world in worlds:
        # Without solver back-ups the search never stops early, so every action gets visited.
        root = uct_bot(game, rng, per_search, float(uct_c), int(rollouts), solve=False).mcts_search(world)
        for action, value in _child_values(root, player, sign).items():
            sums[action] = sums.get(action, 0.0) + value
            counts[action] = counts.get(action, 0) + 1
    neutral = (game.min_utility() + game.max_utility()) / 2.0
    return {
        int(a): (sums[int(a)] / counts[int(a)] if int(a) in counts else neutral) + 0.0
        for a in state.legal_actions()
    }
