"""Non-LLM agents (opponents, baselines) and action-value oracles.

Every agent implements :meth:`Agent.step`, which picks an action for one seat and draws all of its
randomness from the generator it is given, so that a seeded environment is fully reproducible.

- :class:`RandomAgent`: uniformly random legal move (any game, simultaneous-move nodes included).
- :class:`HeuristicAgent`: a hand-written rule of thumb for the games in :data:`HEURISTIC_GAMES`.
- :class:`MCTSAgent`: OpenSpiel's UCT ``MCTSBot``. On imperfect-information games it searches
  *determinizations*: states resampled to agree with everything the acting seat knows (see
  :func:`sample_determinization`), several per move, voting on the move; it never looks at the
  hidden information of the real state.
- :class:`MinimaxAgent`: exact minimax for small two-player zero-sum perfect-information games.

The oracles :func:`action_values` (exact minimax, memoised) and :func:`mcts_action_values` (MCTS
estimates) score every legal action of a state; they back the minimax agent and are meant for
preference labelling.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import pyspiel
from open_spiel.python.algorithms import mcts

__all__ = [
    "AGENT_NAMES",
    "HEURISTIC_GAMES",
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
    "sample_determinization",
]

#: Names accepted by :func:`make_agent`.
AGENT_NAMES: tuple[str, ...] = ("random", "mcts", "minimax", "heuristic")

#: Largest number of new states one exact search may expand before giving up.
DEFAULT_MAX_NODES: int = 200_000

#: Determinizations searched per move by MCTS on imperfect-information games.
DEFAULT_DETERMINIZATIONS: int = 4

_VALUE_TOL = 1e-9


def _seed_from(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31))


def _mover(state: pyspiel.State, player: int | None) -> int:
    return state.current_player() if player is None else int(player)


def _perfect_information(game: pyspiel.Game) -> bool:
    return game.get_type().information == pyspiel.GameType.Information.PERFECT_INFORMATION


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
        legal = state.legal_actions(_mover(state, player))
        return int(legal[int(rng.integers(len(legal)))])


# --------------------------------------------------------------------------------------------------
# Determinization (for MCTS on imperfect-information games)
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
    budget = [int(max_nodes)]

    def search(position: int, current: pyspiel.State) -> pyspiel.State | None:
        if position == len(history):
            return current
        budget[0] -= 1
        if budget[0] < 0:
            return None
        if current.is_chance_node():
            candidates = _weighted_order(current.chance_outcomes(), rng)
        else:
            candidates = [history[position]] if history[position] in current.legal_actions() else []
        for action in candidates:
            child = current.child(action)
            target = targets[position + 1]
            if target is not None and _knowledge(child, player) != target:
                continue
            found = search(position + 1, child)
            if found is not None:
                return found
            if budget[0] < 0:
                return None
        return None

    return search(0, game.new_initial_state())


class MCTSAgent(Agent):
    """OpenSpiel's UCT ``MCTSBot`` with random-rollout evaluation.

    A fresh bot is built for every move from a seed drawn from ``rng``, so play is reproducible.

    On imperfect-information games (which must provide information-state or observation strings)
    the bot never sees the real state: each move it searches ``determinizations`` states drawn by
    :func:`sample_determinization` (``simulations`` are split evenly among them), each search votes
    for its best move, and the move with the most votes (then the most visits) is played. This is
    "perfect-information Monte Carlo" search: a reasonable opponent, not a game-theoretic one.

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
        if int(simulations) < 1:
            raise ValueError(f"simulations must be >= 1, got {simulations!r}")
        if int(rollouts) < 1:
            raise ValueError(f"rollouts must be >= 1, got {rollouts!r}")
        if int(determinizations) < 1:
            raise ValueError(f"determinizations must be >= 1, got {determinizations!r}")
        _check_mcts_game(game)
        self.game = game
        self.simulations = int(simulations)
        self.uct_c = float(uct_c)
        self.rollouts = int(rollouts)
        self.determinizations = int(determinizations)
        self.perfect_information = _perfect_information(game)

    def _bot(
        self, rng: np.random.Generator, solve: bool = True, simulations: int | None = None
    ) -> mcts.MCTSBot:
        random_state = np.random.RandomState(_seed_from(rng))
        evaluator = mcts.RandomRolloutEvaluator(n_rollouts=self.rollouts, random_state=random_state)
        return mcts.MCTSBot(
            self.game,
            uct_c=self.uct_c,
            max_simulations=self.simulations if simulations is None else simulations,
            evaluator=evaluator,
            solve=solve,
            random_state=random_state,
        )

    def step(self, state: pyspiel.State, rng: np.random.Generator, player: int | None = None) -> int:
        if self.perfect_information:
            return int(self._bot(rng).step(state))
        mover = state.current_player()
        per_search = max(1, math.ceil(self.simulations / self.determinizations))
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
            return int(legal[int(rng.integers(len(legal)))])
        key = {a: (votes.get(a, 0.0), visits.get(a, 0.0)) for a in legal}
        top = max(key.values())
        choices = [a for a in legal if key[a] == top]
        return int(choices[int(rng.integers(len(choices)))])


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

    def step(self, state: pyspiel.State, rng: np.random.Generator, player: int | None = None) -> int:
        values = action_values(state, state.current_player(), max_nodes=self.max_nodes)
        best = max(values.values())
        choices = [a for a, v in values.items() if v >= best - _VALUE_TOL]
        return int(choices[int(rng.integers(len(choices)))])


# --------------------------------------------------------------------------------------------------
# Heuristics: one function per game, (state, player, rng) -> action. Imperfect-information
# heuristics read only the acting seat's information-state string and the public moves.
# --------------------------------------------------------------------------------------------------


def _pick(choices: list[int], rng: np.random.Generator) -> int:
    return int(choices[int(rng.integers(len(choices)))])


_TTT_LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))


def _ttt_completing(cells: str, mark: str, empty: set[int]) -> list[int]:
    found = set()
    for line in _TTT_LINES:
        if [cells[i] for i in line].count(mark) == 2:
            found.update(i for i in line if i in empty)
    return sorted(found)


def _heuristic_tic_tac_toe(state: pyspiel.State, player: int, rng: np.random.Generator) -> int:
    """Win if possible, else block, else the centre, else a corner, else any cell."""
    cells = "".join(str(state).split())[:9]
    legal = state.legal_actions(player)
    empty = set(legal)
    me, them = ("x", "o") if player == 0 else ("o", "x")
    for choices in (
        _ttt_completing(cells, me, empty),
        _ttt_completing(cells, them, empty),
        [4] if 4 in empty else [],
        [c for c in (0, 2, 6, 8) if c in empty],
        list(legal),
    ):
        if choices:
            return _pick(choices, rng)
    raise ValueError("no legal actions")


def _c4_grid(state: pyspiel.State) -> list[list[str]]:
    """Connect-four board, ``grid[row][col]``, row 0 at the bottom."""
    rows = [line for line in str(state).split("\n") if line.strip()]
    return [list(line) for line in reversed(rows)]


def _c4_wins(grid: list[list[str]], row: int, col: int, mark: str, need: int) -> bool:
    height, width = len(grid), len(grid[0])
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        count = 1
        for sign in (1, -1):
            r, c = row + sign * dr, col + sign * dc
            while 0 <= r < height and 0 <= c < width and grid[r][c] == mark:
                count += 1
                r, c = r + sign * dr, c + sign * dc
        if count >= need:
            return True
    return False


def _heuristic_connect_four(state: pyspiel.State, player: int, rng: np.random.Generator) -> int:
    """Win if possible, else block the opponent's win, else a move that does not hand the opponent
    a win on the cell above, preferring central columns."""
    need = int(state.get_game().get_parameters().get("x_in_row", 4))
    grid = _c4_grid(state)
    me, them = ("x", "o") if player == 0 else ("o", "x")
    legal = [int(a) for a in state.legal_actions(player)]
    landing = {c: next(r for r in range(len(grid)) if grid[r][c] == ".") for c in legal}
    wins = [c for c in legal if _c4_wins(grid, landing[c], c, me, need)]
    if wins:
        return _pick(wins, rng)
    blocks = [c for c in legal if _c4_wins(grid, landing[c], c, them, need)]
    if blocks:
        return _pick(blocks, rng)
    safe = []
    for c in legal:
        above = landing[c] + 1
        if above >= len(grid):
            safe.append(c)
            continue
        grid[landing[c]][c] = me
        gives = _c4_wins(grid, above, c, them, need)
        grid[landing[c]][c] = "."
        if not gives:
            safe.append(c)
    pool = safe or legal
    centre = (len(grid[0]) - 1) / 2.0
    weights = np.asarray([(len(grid[0]) - abs(c - centre)) ** 2 for c in pool], dtype=np.float64)
    return int(pool[int(rng.choice(len(pool), p=weights / weights.sum()))])


def _kuhn_choice(state: pyspiel.State, player: int) -> int:
    """Hand-strength bettor: bet or call with the top card, check and call with a middle card,
    check and fold with the lowest cards."""
    num_cards = state.get_game().num_players() + 1
    info = state.information_state_string(player)
    digits = re.match(r"\d+", info)
    strength = int(digits.group(0)) / (num_cards - 1) if digits else 0.0
    bet_made = "b" in info[len(digits.group(0)) if digits else 0 :]
    if not bet_made:
        return 1 if strength >= 0.75 else 0
    return 1 if strength >= 0.5 else 0


def _heuristic_kuhn_poker(state: pyspiel.State, player: int, rng: np.random.Generator) -> int:
    return _kuhn_choice(state, player)


def _leduc_choice(state: pyspiel.State, player: int) -> int:
    """Hand-strength bettor: a pair with the public card or a king bets and raises, a queen before
    the flop (or a king after it) checks and calls, anything else checks or folds."""
    ranks = state.get_game().num_players() + 1
    info = state.information_state_string(player)
    private = re.search(r"\[Private: (-?\d+)\]", info)
    public = re.search(r"\[Public: (-?\d+)\]", info)
    mine = int(private.group(1)) // 2 if private else 0
    high = mine / (ranks - 1)
    if public is not None and int(public.group(1)) >= 0:
        strength = 1.0 if int(public.group(1)) // 2 == mine else 0.6 * high
    else:
        strength = high
    legal = state.legal_actions(player)
    if strength >= 0.75 and 2 in legal:
        return 2
    if strength >= 0.5 or 0 not in legal:  # call (or check when nothing is bet)
        return 1
    return 0


def _heuristic_leduc_poker(state: pyspiel.State, player: int, rng: np.random.Generator) -> int:
    return _leduc_choice(state, player)


def _heuristic_repeated_poker(state: pyspiel.State, player: int, rng: np.random.Generator) -> int:
    """The base game's hand-strength bettor, hand by hand."""
    inner, inner_player = state.inner, state.inner_player(player)
    if state.get_game().base == "kuhn_poker":
        return _kuhn_choice(inner, inner_player)
    return _leduc_choice(inner, inner_player)


def _heuristic_liars_dice(state: pyspiel.State, player: int, rng: np.random.Generator) -> int:
    """Expected-count bidder: a bid's margin is the seat's own matching dice plus the expected
    matches among the unseen dice (wild faces included) minus the bid's quantity. Challenge a last
    bid with margin below -0.5; else make the cheapest raise with margin >= 0 (preferring faces it
    holds); with none, challenge a last bid with negative margin, or make the raise with the best
    margin."""
    game = state.get_game()
    params = game.get_parameters()
    players, per_seat, sides = (
        game.num_players(),
        int(params.get("numdice", 1)),
        int(params.get("dice_sides", 6)),
    )
    unseen = (players - 1) * per_seat
    liar = players * per_seat * sides
    own = state.information_state_string(player).split(" ", 1)[0]
    dice = [int(ch) for ch in own if ch.isdigit()]

    def expected(face: int) -> float:
        mine = sum(1 for d in dice if d == face or (d == sides and face != sides))
        chance = (2.0 if face != sides else 1.0) / sides
        return mine + unseen * chance

    legal = [int(a) for a in state.legal_actions(player)]
    bids = [a for a in legal if a != liar]

    def margin(bid: int) -> float:  # > 0: the bid is expected to be true
        return expected(bid % sides + 1) - (bid // sides + 1)

    last = [int(h.action) for h in state.full_history() if h.player >= 0]
    last_margin = margin(last[-1]) if last and liar in legal else None
    if last_margin is not None and last_margin < -0.5:
        return liar
    plausible = [a for a in bids if margin(a) >= 0]
    if plausible:
        cheapest = min(plausible)
        held = [a for a in plausible if a // sides == cheapest // sides and (a % sides + 1) in dice]
        return _pick(held or [cheapest], rng)
    if not bids or (last_margin is not None and last_margin < 0):
        return liar
    best = max(margin(a) for a in bids)
    return min(a for a in bids if margin(a) == best)


def _heuristic_lewis_signaling(state: pyspiel.State, player: int, rng: np.random.Generator) -> int:
    """A fixed convention: the sender sends signal ``k mod num_messages`` for secret ``k``; the
    receiver guesses the first secret that would send the signal it got."""
    info = state.information_state_string(player)
    legal = [int(a) for a in state.legal_actions(player)]
    messages = int(state.get_game().get_parameters().get("num_messages", 3))
    if player == 0:
        secret = re.search(r"State: (\d+)", info)
        wanted = int(secret.group(1)) % messages if secret else legal[0]
    else:
        message = re.search(r"Message: (\d+)", info)
        wanted = int(message.group(1)) if message else legal[0]
    return wanted if wanted in legal else _pick(legal, rng)


_BT_MOVE = re.compile(r"([a-z])(\d+)([a-z])(\d+)(\*?)")


def _heuristic_breakthrough(state: pyspiel.State, player: int, rng: np.random.Generator) -> int:
    """Win if a move wins, else prefer captures, avoid squares the opponent can capture on, and
    advance; ties broken at random."""
    lines = [line for line in str(state).split("\n") if line.strip() and line[0].isdigit()]
    board = {}
    for line in lines:
        row = int(re.match(r"\d+", line).group(0))
        cells = line[len(str(row)) :]
        for i, ch in enumerate(cells):
            board[(row, i)] = ch
    enemy, forward = ("w", -1) if player == 0 else ("b", 1)
    scored: list[tuple[float, int]] = []
    for action in state.legal_actions(player):
        text = state.action_to_string(player, action)
        match = _BT_MOVE.fullmatch(text)
        if match is None:
            scored.append((0.0, int(action)))
            continue
        if state.child(action).is_terminal():
            return int(action)
        to_row, to_col = int(match.group(4)), ord(match.group(3)) - ord("a")
        score = 1.0  # advancing is always a step forward
        if match.group(5):
            score += 3.0
        # An enemy piece one row further ahead, on a diagonal, could capture on the destination.
        attacked = any(board.get((to_row + forward, to_col + dc)) == enemy for dc in (-1, 1))
        if attacked:
            score -= 2.5
        scored.append((score, int(action)))
    best = max(s for s, _ in scored)
    return _pick([a for s, a in scored if s == best], rng)


#: Short game name -> heuristic ``(state, player, rng) -> action``.
HEURISTICS: dict[str, Callable[[pyspiel.State, int, np.random.Generator], int]] = {
    "tic_tac_toe": _heuristic_tic_tac_toe,
    "connect_four": _heuristic_connect_four,
    "breakthrough": _heuristic_breakthrough,
    "kuhn_poker": _heuristic_kuhn_poker,
    "leduc_poker": _heuristic_leduc_poker,
    "lightspiel_repeated_poker": _heuristic_repeated_poker,
    "liars_dice": _heuristic_liars_dice,
    "lewis_signaling": _heuristic_lewis_signaling,
}

#: Games that have a heuristic agent.
HEURISTIC_GAMES: tuple[str, ...] = tuple(HEURISTICS)


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

    Imperfect-information heuristics read only the acting seat's own information.

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
    if not _perfect_information(game) and not (
        game_type.provides_information_state_string or game_type.provides_observation_string
    ):
        raise ValueError(
            f"MCTS on the imperfect-information game {game} searches determinizations, which needs "
            "information-state or observation strings; this game has neither"
        )


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
    agent = MCTSAgent(
        game, simulations=simulations, uct_c=uct_c, rollouts=rollouts, determinizations=determinizations
    )
    neutral = (game.min_utility() + game.max_utility()) / 2.0
    if agent.perfect_information:
        worlds, per_search = [state], agent.simulations
    else:
        worlds = [sample_determinization(state, mover, rng) for _ in range(agent.determinizations)]
        worlds = [w for w in worlds if w is not None]
        per_search = max(1, math.ceil(agent.simulations / agent.determinizations))
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    for world in worlds:
        # Without solver back-ups the search never stops early, so every action gets visited.
        root = agent._bot(rng, solve=False, simulations=per_search).mcts_search(world)
        for child in root.children:
            if child.outcome is not None:
                value = float(child.outcome[player])
            elif child.explore_count > 0:
                value = float(sign * child.total_reward / child.explore_count)
            else:
                continue
            sums[int(child.action)] = sums.get(int(child.action), 0.0) + value
            counts[int(child.action)] = counts.get(int(child.action), 0) + 1
    return {
        int(a): (sums[int(a)] / counts[int(a)] if int(a) in counts else neutral) + 0.0
        for a in state.legal_actions()
    }
