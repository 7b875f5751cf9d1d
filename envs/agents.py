"""Non-LLM agents (opponents, baselines).

Every agent implements :meth:`Agent.step`, which picks an action for one seat and draws all of its
randomness from the generator it is given, so that a seeded environment is fully reproducible.

- :class:`RandomAgent`: uniformly random legal move (any game, simultaneous-move nodes included).
- :class:`HeuristicAgent`: a hand-written rule of thumb for the games in
  :data:`envs.registry.HEURISTIC_GAMES` (each game module under :mod:`envs.games` holds its own).
- :class:`MCTSAgent`: OpenSpiel's UCT ``MCTSBot``. On imperfect-information games it searches
  *determinizations*: states resampled to agree with everything the acting seat knows (see
  :func:`envs.oracles.sample_determinization`), several per move, voting on the move; it never
  looks at the hidden information of the real state.
- :class:`MinimaxAgent`: exact minimax (:func:`envs.oracles.action_values`) for small two-player
  zero-sum perfect-information games.
"""

from __future__ import annotations

import numpy as np
import pyspiel

from envs.games.base import perfect_information, pick
from envs.oracles import (
    DEFAULT_DETERMINIZATIONS,
    DEFAULT_MAX_NODES,
    action_values,
    check_mcts_settings,
    check_minimax_game,
    sample_determinization,
    searches_per_world,
    uct_bot,
)
from envs.registry import HEURISTIC_GAMES, HEURISTICS

__all__ = [
    "AGENT_NAMES",
    "Agent",
    "HeuristicAgent",
    "MCTSAgent",
    "MinimaxAgent",
    "RandomAgent",
    "make_agent",
]

#: Names accepted by :func:`make_agent`.
AGENT_NAMES: tuple[str, ...] = ("random", "mcts", "minimax", "heuristic")

_VALUE_TOL = 1e-9


def _mover(state: pyspiel.State, player: int | None) -> int:
    return state.current_player() if player is None else int(player)


class Agent:
    """A policy over OpenSpiel states that does not need a language model."""

    def step(self, state: pyspiel.State, rng: np.random.Generator, player: int | None = None) -> int:
        """Return an action for one seat.

        Args:
            state: A decision state (not terminal, not chance). Not modified.
            rng: The only source of randomness the agent may use.
            player: The seat to act for; ``None`` means ``state.current_player()``. Needed at
                simultaneous-move nodes (where every seat picks an action).

        Returns:
            A legal OpenSpiel action id for that seat.
        """
        raise NotImplementedError


class RandomAgent(Agent):
    """Uniformly random legal move."""

    def step(self, state: pyspiel.State, rng: np.random.Generator, player: int | None = None) -> int:
        return pick(state.legal_actions(_mover(state, player)), rng)


class MCTSAgent(Agent):
    """OpenSpiel's UCT ``MCTSBot`` with random-rollout evaluation.

    A fresh bot is built for every move from a seed drawn from ``rng``, so play is reproducible.

    On imperfect-information games (which must provide information-state or observation strings)
    the bot never sees the real state: each move it searches ``determinizations`` states drawn by
    :func:`~envs.oracles.sample_determinization` (``simulations`` are split evenly among them), each
    search votes for its best move, and the move with the most votes (then the most visits) is
    played. This is "perfect-information Monte Carlo" search: a reasonable opponent, not a
    game-theoretic one.

    Args:
        game: The loaded game (sequential, terminal rewards).
        simulations: MCTS simulations per move (in total over the determinizations).
        uct_c: UCT exploration constant.
        rollouts: Random rollouts per leaf evaluation.
        determinizations: States searched per move on imperfect-information games.
    """

    def __init__(
        self,
        game: pyspiel.Game,
        simulations: int = 100,
        uct_c: float = 2.0,
        rollouts: int = 1,
        determinizations: int = DEFAULT_DETERMINIZATIONS,
    ):
        check_mcts_settings(game, simulations, rollouts, determinizations)
        self.game = game
        self.simulations = int(simulations)
        self.uct_c = float(uct_c)
        self.rollouts = int(rollouts)
        self.determinizations = int(determinizations)
        self.perfect_information = perfect_information(game)

    def _bot(self, rng: np.random.Generator, simulations: int | None = None):
        return uct_bot(
            self.game,
            rng,
            self.simulations if simulations is None else simulations,
            self.uct_c,
            self.rollouts,
        )

    def step(self, state: pyspiel.State, rng: np.random.Generator, player: int | None = None) -> int:
        if self.perfect_information:
            return int(self._bot(rng).step(state))
        mover = state.current_player()
        per_search = searches_per_world(self.simulations, self.determinizations)
        votes: dict[int, float] = {}
        visits: dict[int, float] = {}
        for _ in range(self.determinizations):
            world = sample_determinization(state, mover, rng)
            if world is None:
                continue
            root = self._bot(rng, simulations=per_search).mcts_search(world)
            best = int(root.best_child().action)
            votes[best] = votes.get(best, 0.0) + 1.0
            for child in root.children:
                visits[int(child.action)] = visits.get(int(child.action), 0.0) + child.explore_count
        legal = [int(a) for a in state.legal_actions()]
        if not votes:  # no consistent world found: play at random
            return pick(legal, rng)
        key = {a: (votes.get(a, 0.0), visits.get(a, 0.0)) for a in legal}
        top = max(key.values())
        return pick([a for a in legal if key[a] == top], rng)


class MinimaxAgent(Agent):
    """Exact minimax play (see :func:`~envs.oracles.action_values`); ties among best moves broken by
    ``rng``.

    Args:
        game: A small two-player zero-sum perfect-information sequential game (e.g. tic-tac-toe).
        max_nodes: Expansion budget for one search; exceeding it raises
            :class:`~envs.oracles.SearchTooLargeError`.
    """

    def __init__(self, game: pyspiel.Game, max_nodes: int = DEFAULT_MAX_NODES):
        check_minimax_game(game)
        self.game = game
        self.max_nodes = int(max_nodes)

    def step(self, state: pyspiel.State, rng: np.random.Generator, player: int | None = None) -> int:
        values = action_values(state, state.current_player(), max_nodes=self.max_nodes)
        best = max(values.values())
        return pick([a for a, v in values.items() if v >= best - _VALUE_TOL], rng)


class HeuristicAgent(Agent):
    """A per-game rule of thumb (choices within a rule drawn from ``rng``):

    - tic_tac_toe: win if possible, else block, else centre, else a corner, else any cell;
    - connect_four: win, else block, else a move that does not give the opponent a win on the cell
      above, preferring central columns;
    - breakthrough: a winning move, else captures, avoiding attacked squares;
    - kuhn_poker, leduc_poker, lightspiel_repeated_poker: a hand-strength bettor (bets/raises with
      the best hands, calls with middling ones, folds the rest; it never bluffs);
    - liars_dice: compares the last bid with its own dice plus the expected unseen ones; challenges
      implausible bids, otherwise makes the cheapest plausible bid;
    - lewis_signaling: a fixed convention (secret ``k`` -> signal ``k``; signal ``m`` -> guess ``m``).

    Each rule is the ``heuristic`` of its game's module under :mod:`envs.games`. Imperfect-information
    heuristics read only the acting seat's own information.

    Args:
        game: The game to play (``None``: tic-tac-toe, for backward compatibility).

    Raises:
        ValueError: The game has no heuristic (the message lists those that do).
    """

    def __init__(self, game: pyspiel.Game | None = None):
        name = "tic_tac_toe" if game is None else game.get_type().short_name
        if name not in HEURISTICS:
            raise ValueError(
                f"no heuristic agent for {name!r}; games with one: {', '.join(HEURISTIC_GAMES)}. "
                "Use 'mcts' or 'random' for other games"
            )
        self.game_name = name
        self._choose = HEURISTICS[name]

    def step(self, state: pyspiel.State, rng: np.random.Generator, player: int | None = None) -> int:
        mover = _mover(state, player)
        if not state.legal_actions(mover):
            raise ValueError("HeuristicAgent.step called on a state with no legal actions")
        return int(self._choose(state, mover, rng))


def make_agent(
    name: str,
    game: pyspiel.Game,
    mcts_simulations: int = 100,
    determinizations: int = DEFAULT_DETERMINIZATIONS,
) -> Agent:
    """Build a named agent for ``game``.

    Args:
        name: One of :data:`AGENT_NAMES` (``"random"``, ``"mcts"``, ``"minimax"``, ``"heuristic"``).
        game: The loaded game the agent will play.
        mcts_simulations: Simulations per move for ``"mcts"``.
        determinizations: For ``"mcts"`` on imperfect-information games: states searched per move.

    Returns:
        The agent.

    Raises:
        ValueError: Unknown name, or the agent cannot play this game.
    """
    if name == "random":
        return RandomAgent()
    if name == "mcts":
        return MCTSAgent(game, simulations=mcts_simulations, determinizations=determinizations)
    if name == "minimax":
        return MinimaxAgent(game)
    if name == "heuristic":
        return HeuristicAgent(game)
    raise ValueError(f"unknown agent {name!r}; valid agents are {', '.join(AGENT_NAMES)}")
