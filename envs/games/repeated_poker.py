"""Repeated poker with a bankroll (``lightspiel/RepeatedPoker-v0``): the OpenSpiel game
``lightspiel_repeated_poker`` (registered with ``pyspiel`` when this module is imported, which
importing :mod:`envs` does), its renderer, heuristic and registration.

The game: a match of N hands of Kuhn or Leduc poker with a bankroll per seat
that carries over from hand to hand. Loading it works like any OpenSpiel game once :mod:`envs` has
been imported::

    pyspiel.load_game("lightspiel_repeated_poker(base=leduc_poker,rounds=3)")

Rules:

- ``rounds`` hands of the ``base`` game (``kuhn_poker`` or ``leduc_poker``, ``players`` seats) are
  played one after the other; the whole match is one OpenSpiel episode. Chance deals each hand.
- The seats rotate: in hand ``r`` (0-based) the base game's player ``p`` is seat ``(p + r) % players``,
  so in two-player matches the seats take turns acting first.
- Each seat starts with ``bankroll`` chips (``0``: three times the most one hand can lose, i.e. 6 in
  Kuhn, 39 in Leduc). After each hand the hand's winnings are added to the bankrolls.
- The match ends after ``rounds`` hands, or earlier when a seat's bankroll drops below the most one
  hand can lose (it could not cover the next hand): that seat is bust.
- Returns are final bankroll minus starting bankroll (zero-sum), paid when the match ends (the
  reward model is ``TERMINAL``; ``bankrolls`` on the state shows the running totals).

Seats see their own cards only; the other seats' cards are never revealed, not even after a
showdown (the bankroll change shows who won).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyspiel

from envs.games.base import GameSpec, Golden, HandRenderer, Renderer, card_names, seat_name
from envs.games.kuhn_poker import KuhnPokerRenderer
from envs.games.kuhn_poker import choose as kuhn_choose
from envs.games.leduc_poker import LeducPokerRenderer
from envs.games.leduc_poker import choose as leduc_choose

__all__ = [
    "REPEATED_POKER",
    "REPEATED_POKER_BASES",
    "SPEC",
    "RepeatedPokerGame",
    "RepeatedPokerRenderer",
    "RepeatedPokerState",
    "heuristic",
    "register",
]

#: Short name of the repeated-poker game.
REPEATED_POKER: str = "lightspiel_repeated_poker"
#: Base games a repeated-poker match can be made of.
REPEATED_POKER_BASES: tuple[str, ...] = ("kuhn_poker", "leduc_poker")

_MAX_PLAYERS = 10

_GAME_TYPE = pyspiel.GameType(
    short_name=REPEATED_POKER,
    long_name="Repeated poker with bankroll",
    dynamics=pyspiel.GameType.Dynamics.SEQUENTIAL,
    chance_mode=pyspiel.GameType.ChanceMode.EXPLICIT_STOCHASTIC,
    information=pyspiel.GameType.Information.IMPERFECT_INFORMATION,
    utility=pyspiel.GameType.Utility.ZERO_SUM,
    reward_model=pyspiel.GameType.RewardModel.TERMINAL,
    max_num_players=_MAX_PLAYERS,
    min_num_players=2,
    provides_information_state_string=True,
    provides_information_state_tensor=False,
    provides_observation_string=True,
    provides_observation_tensor=False,
    provides_factored_observation_string=False,
    parameter_specification={"base": "kuhn_poker", "rounds": 5, "bankroll": 0, "players": 2},
)


class RepeatedPokerGame(pyspiel.Game):
    """A match of ``rounds`` hands of Kuhn or Leduc poker with bankrolls (see the module docstring).

    Attributes:
        base: The base game's short name.
        base_game: The loaded base game (one hand).
        rounds: Hands in the match.
        start_bankroll: Chips every seat starts with.
        max_hand_loss: The most one seat can lose in one hand.
    """

    def __init__(self, params: dict | None = None):
        params = dict(params or {})
        spec = _GAME_TYPE.parameter_specification
        unknown = sorted(set(params) - set(spec))
        if unknown:
            raise ValueError(f"{REPEATED_POKER}: unknown parameters {unknown}; valid: {sorted(spec)}")
        base = str(params.get("base", spec["base"]))
        rounds = int(params.get("rounds", spec["rounds"]))
        players = int(params.get("players", spec["players"]))
        bankroll = int(params.get("bankroll", spec["bankroll"]))
        if base not in REPEATED_POKER_BASES:
            raise ValueError(
                f"{REPEATED_POKER}: base must be one of {', '.join(REPEATED_POKER_BASES)}; got {base!r}"
            )
        if rounds < 1:
            raise ValueError(f"{REPEATED_POKER}: rounds must be >= 1; got {rounds}")
        if not 2 <= players <= _MAX_PLAYERS:
            raise ValueError(f"{REPEATED_POKER}: players must be in [2, {_MAX_PLAYERS}]; got {players}")
        base_game = pyspiel.load_game(base, {"players": players})
        max_loss = int(round(-base_game.min_utility()))
        if bankroll == 0:
            bankroll = 3 * max_loss
        if bankroll < max_loss:
            raise ValueError(
                f"{REPEATED_POKER}: bankroll {bankroll} cannot cover one hand of {base} (up to {max_loss} chips)"
            )
        info = pyspiel.GameInfo(
            num_distinct_actions=base_game.num_distinct_actions(),
            max_chance_outcomes=base_game.max_chance_outcomes(),
            num_players=players,
            min_utility=-float(min(bankroll, rounds * max_loss)),
            max_utility=float(min((players - 1) * bankroll, rounds * base_game.max_utility())),
            utility_sum=0.0,
            max_game_length=rounds * base_game.max_game_length(),
        )
        super().__init__(
            _GAME_TYPE, info, {"base": base, "rounds": rounds, "bankroll": bankroll, "players": players}
        )
        self.base = base
        self.base_game = base_game
        self.rounds = rounds
        self.start_bankroll = bankroll
        self.max_hand_loss = max_loss

    def new_initial_state(self) -> RepeatedPokerState:
        return RepeatedPokerState(self)

    def make_py_observer(self, iig_obs_type=None, params=None) -> _RepeatedPokerObserver:
        if params:
            raise ValueError(f"{REPEATED_POKER}: observation parameters are not supported; got {params}")
        perfect_recall = iig_obs_type is not None and iig_obs_type.perfect_recall
        return _RepeatedPokerObserver(perfect_recall)


class RepeatedPokerState(pyspiel.State):
    """A state of a repeated-poker match.

    Attributes:
        hand_index: The hand being played (0-based; equals ``rounds`` or less once the match is over).
        bankrolls: Chips per seat now.
        inner: The base game's state of the current hand (the last hand once the match is over).
        hand_results: Per finished hand, each seat's winnings.
        hand_records: Per finished hand, each seat's private view of it (base-game information state).
    """

    def __init__(self, game: RepeatedPokerGame):
        super().__init__(game)
        self.num_seats = game.num_players()
        self.hand_index = 0
        self.bankrolls = [float(game.start_bankroll)] * self.num_seats
        self.inner = game.base_game.new_initial_state()
        self.hand_results: list[list[float]] = []
        self.hand_records: list[list[str]] = []
        self.over = False

    @property
    def meta(self) -> RepeatedPokerGame:
        """The match's game (not stored on the state: copies of a state share it)."""
        return self.get_game()

    # ------------------------------------------------------------------ seat mapping

    def inner_player(self, seat: int) -> int:
        """The base game's player that ``seat`` is in the current hand."""
        return (seat - self.hand_index) % self.num_seats

    def seat_of(self, inner_player: int) -> int:
        """The seat of the base game's ``inner_player`` in the current hand."""
        return (inner_player + self.hand_index) % self.num_seats

    # ------------------------------------------------------------------ OpenSpiel API

    def current_player(self) -> int:
        if self.over:
            return pyspiel.PlayerId.TERMINAL
        if self.inner.is_chance_node():
            return pyspiel.PlayerId.CHANCE
        return self.seat_of(self.inner.current_player())

    def _legal_actions(self, player: int) -> list[int]:
        if self.over or player != self.current_player():
            return []
        return list(self.inner.legal_actions())

    def chance_outcomes(self) -> list[tuple[int, float]]:
        return list(self.inner.chance_outcomes())

    def _apply_action(self, action: int) -> None:
        self.inner.apply_action(int(action))
        if not self.inner.is_terminal():
            return
        hand = self.inner.returns()
        result = [0.0] * self.num_seats
        for p in range(self.num_seats):
            result[self.seat_of(p)] = float(hand[p])
        self.hand_records.append(
            [self.inner.information_state_string(self.inner_player(s)) for s in range(self.num_seats)]
        )
        self.hand_results.append(result)
        self.bankrolls = [b + r for b, r in zip(self.bankrolls, result)]
        self.hand_index += 1
        if self.hand_index >= self.meta.rounds or min(self.bankrolls) < self.meta.max_hand_loss:
            self.over = True
        else:
            self.inner = self.meta.base_game.new_initial_state()

    def _action_to_string(self, player: int, action: int) -> str:
        if player == pyspiel.PlayerId.CHANCE or player < 0:
            return self.inner.action_to_string(pyspiel.PlayerId.CHANCE, int(action))
        return self.inner.action_to_string(self.inner_player(player), int(action))

    def is_terminal(self) -> bool:
        return self.over

    def returns(self) -> list[float]:
        if not self.over:
            return [0.0] * self.num_seats
        start = float(self.meta.start_bankroll)
        return [b - start for b in self.bankrolls]

    def __str__(self) -> str:
        lines = [
            f"Hand {min(self.hand_index + 1, self.meta.rounds)} of {self.meta.rounds}; "
            f"bankrolls {' '.join(f'{b:g}' for b in self.bankrolls)}" + ("; match over" if self.over else "")
        ]
        lines.append(str(self.inner))
        return "\n".join(lines)

    # ------------------------------------------------------------------ views

    def view(self, seat: int, perfect_recall: bool) -> str:
        """What ``seat`` knows: the match so far and its own view of the current hand."""
        head = f"seat {seat} hand {self.hand_index} bankrolls {' '.join(f'{b:g}' for b in self.bankrolls)}"
        parts = [head]
        if perfect_recall:
            for records, result in zip(self.hand_records, self.hand_results):
                parts.append(f"{records[seat]} -> {result[seat]:+g}")
        if not self.over:
            inner_p = self.inner_player(seat)
            if perfect_recall:
                parts.append(self.inner.information_state_string(inner_p))
            else:
                parts.append(self.inner.observation_string(inner_p))
        return "\n".join(parts)


class _RepeatedPokerObserver:
    """String-only observer (the PyObserver interface): observation or information state."""

    def __init__(self, perfect_recall: bool):
        self.perfect_recall = perfect_recall
        self.tensor = np.zeros(0, np.float32)
        self.dict: dict[str, np.ndarray] = {}

    def set_from(self, state: RepeatedPokerState, player: int) -> None:
        pass

    def string_from(self, state: RepeatedPokerState, player: int) -> str:
        return state.view(player, self.perfect_recall)


def register() -> None:
    """Register the games of this module with ``pyspiel`` (idempotent)."""
    if REPEATED_POKER not in pyspiel.registered_names():
        pyspiel.register_game(_GAME_TYPE, RepeatedPokerGame)


register()


# --------------------------------------------------------------------------------------------------
# Renderer and heuristic
# --------------------------------------------------------------------------------------------------


class RepeatedPokerRenderer(Renderer):
    """A ``lightspiel_repeated_poker`` match: the hand is shown as by the Kuhn or Leduc renderer,
    below a line with the hand number and the bankrolls.

    Example prompt (Kuhn, seat 0, hand 2 of 5)::

        Poker match: 5 hands of Kuhn poker (cards J<Q<K, ante 1, bets of 1). Bankrolls carry over; a seat below 2 chips is bust.
        Hand 2 of 5. Bankrolls: you 7, opponent 5. Last hand: you won 1.
        Your card: K. Pot: 2.
        Moves: opponent checked.
        Legal moves: check bet
        Reply with one move.

    Action texts and accepted answers: those of the base game's renderer. ``info`` carries
    ``bankrolls`` (per seat) and ``round`` (the hand number, 1-based).
    """

    def __init__(self) -> None:
        self._hands: dict[str, HandRenderer] = {
            "kuhn_poker": KuhnPokerRenderer(),
            "leduc_poker": LeducPokerRenderer(),
        }

    def _hand(self, state: pyspiel.State) -> HandRenderer:
        return self._hands[state.get_game().base]

    def _short_rules(self, game: pyspiel.Game) -> str:
        names = card_names(game.num_players() + 1)
        if game.base == "kuhn_poker":
            return f"Kuhn poker (cards {'<'.join(names)}, ante 1, bets of 1)"
        return f"Leduc poker (cards {' '.join(r for r in names for _ in range(2))}, ante 1, bets 2 then 4)"

    def _header(self, state: pyspiel.State, player: int) -> list[str]:
        game = state.get_game()
        n = game.num_players()
        order = [player] + [s for s in range(n) if s != player]
        bank = ", ".join(f"{seat_name(s, player, n)} {state.bankrolls[s]:g}" for s in order)
        hand = min(state.hand_index + 1, game.rounds)
        line = f"Hand {hand} of {game.rounds}. Bankrolls: {bank}."
        if state.hand_results:
            won = state.hand_results[-1][player]
            line += (
                f" Last hand: you {'won' if won > 0 else 'lost'} {abs(won):g}."
                if won
                else " Last hand: a tie."
            )
        return [
            f"Poker match: {game.rounds} hands of {self._short_rules(game)}. Bankrolls carry over; a seat "
            f"below {game.max_hand_loss} chips is bust.",
            line,
        ]

    def prompt(self, state: pyspiel.State, player: int) -> str:
        n = state.get_game().num_players()
        lines = self._header(state, player)
        lines += self._hand(state).hand_lines(
            state.inner, state.inner_player(player), lambda p: seat_name(state.seat_of(p), player, n)
        )
        lines += [self.moves_line(state, player), "Reply with one move."]
        return "\n".join(lines)

    def action_text(self, state: pyspiel.State, player: int, action: int) -> str:
        return self._hand(state).action_text(state.inner, state.inner_player(player), action)

    def parse(self, text: str, state: pyspiel.State, player: int) -> int | None:
        return self._hand(state).parse(text, state.inner, state.inner_player(player))

    def final(self, state: pyspiel.State, player: int) -> str:
        lines = self._header(state, player)
        if state.is_terminal():
            lines.append("Match over.")
        return "\n".join(lines)

    def info(self, state: pyspiel.State) -> dict[str, Any]:
        rounds = state.get_game().rounds
        return {"bankrolls": [float(b) for b in state.bankrolls], "round": min(state.hand_index + 1, rounds)}


def heuristic(state: pyspiel.State, player: int, rng: np.random.Generator) -> int:
    """The base game's hand-strength bettor, hand by hand."""
    inner, inner_player = state.inner, state.inner_player(player)
    if state.get_game().base == "kuhn_poker":
        return kuhn_choose(inner, inner_player)
    return leduc_choose(inner, inner_player)


SPEC = GameSpec(
    label="repeated_poker",
    env_id="lightspiel/RepeatedPoker-v0",
    game=f"{REPEATED_POKER}(base=kuhn_poker,rounds=5)",
    renderer=RepeatedPokerRenderer,
    heuristic=heuristic,
    golden=Golden("repeated_poker", seed=0, kwargs={"opponent": "heuristic"}),
)
