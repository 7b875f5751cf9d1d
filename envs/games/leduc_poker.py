"""Leduc poker (``lightspiel/LeducPoker-v0``): renderer, heuristic and registration."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

import pyspiel

from envs.games.base import GameSpec, Golden, HandRenderer, Heuristic, card_names, deterministic, public_moves

__all__ = ["SPEC", "LeducInfo", "LeducPokerRenderer", "choose", "heuristic", "read_information_state"]


class LeducInfo(NamedTuple):
    """The fields of a Leduc information-state string a prompt or a heuristic uses (``None`` when
    absent). Cards are card indices (rank ``card // 2``; ``-1``: not dealt)."""

    private: int | None
    public: int | None
    pot: int | None
    money: list[int] | None


def _field(info: str, pattern: str) -> str | None:
    match = re.search(pattern, info)
    return None if match is None else match.group(1)


def read_information_state(info: str) -> LeducInfo:
    """Parse ``"[Observer: 0][Private: 0][Round 2]...[Pot: 6][Money: 97 97][Public: 1]..."``."""
    private, public = _field(info, r"\[Private: (-?\d+)\]"), _field(info, r"\[Public: (-?\d+)\]")
    pot, money = _field(info, r"\[Pot: (\d+)\]"), _field(info, r"\[Money: ([\d ]+)\]")
    return LeducInfo(
        private=None if private is None else int(private),
        public=None if public is None else int(public),
        pot=None if pot is None else int(pot),
        money=None if money is None else [int(m) for m in money.split()],
    )


class LeducPokerRenderer(HandRenderer):
    """Leduc poker (any number of players; suit isomorphism and action mapping off).

    Example prompt (seat 0, second betting round)::

        Leduc poker: cards J J Q Q K K, one each plus a public card after round 1; ante 1; bets 2 in round 1, 4 in round 2, at most 2 a round; a pair with the public card wins, else the higher card. You are player 1 of 2.
        Your card: Q. Public card: K. Pot: 6; you have put in 3.
        Round 1: you bet, opponent called. Round 2: opponent bet.
        Legal moves: fold call raise
        Reply with one move.

    Action texts: ``fold``; ``check`` or ``call`` (OpenSpiel Call, depending on whether there is a
    bet to match in this round); ``bet`` or ``raise`` (OpenSpiel Raise). Accepted answers: the first
    poker word, as for Kuhn poker. OpenSpiel's names ``fold``, ``call``, ``raise`` are accepted
    everywhere (``fold`` is illegal when there is nothing to match); ``check`` and ``pass`` mean
    check (illegal facing a bet), ``bet`` means bet (illegal facing a bet). The prompt is built from
    the seat's information state only.
    """

    @classmethod
    def supports(cls, game: pyspiel.Game) -> bool:
        params = game.get_parameters()
        return not params.get("suit_isomorphism", False) and not params.get("action_mapping", False)

    def rules(self, game: pyspiel.Game) -> str:
        ranks = card_names(game.num_players() + 1)
        deck = " ".join(r for r in ranks for _ in range(2))
        return (
            f"Leduc poker: cards {deck}, one each plus a public card after round 1; ante 1; bets 2 in "
            "round 1, 4 in round 2, at most 2 a round; a pair with the public card wins, else the higher card."
        )

    @staticmethod
    def _raises_this_round(state: pyspiel.State) -> int:
        chance_moves = sum(1 for h in state.full_history() if h.player < 0)
        current = 1 if chance_moves > state.get_game().num_players() else 0  # public card out: round 2
        return sum(1 for r, _, a in public_moves(state) if min(r, 1) == current and a == 2)

    def words(self, state: pyspiel.State) -> dict[str, int]:
        # OpenSpiel's own names (fold, call, raise) are accepted everywhere.
        if self._raises_this_round(state) == 0:
            return {"fold": 0, "check": 1, "bet": 2, "pass": 1, "call": 1, "raise": 2}
        return {"fold": 0, "call": 1, "raise": 2}

    @staticmethod
    def _cards_line(state: pyspiel.State, player: int) -> str:
        ranks = card_names(state.get_game().num_players() + 1)
        info = read_information_state(state.information_state_string(player))
        dealt = info.private is not None and info.private >= 0
        line = f"Your card: {ranks[info.private // 2] if dealt else '?'}."
        if info.public is not None and info.public >= 0:
            line += f" Public card: {ranks[info.public // 2]}."
        if info.pot is not None and info.money is not None and not state.is_terminal():
            put_in = 100 - info.money[player] if player < len(info.money) else 0
            line += f" Pot: {info.pot}; you have put in {put_in}."
        return line

    def hand_lines(self, state: pyspiel.State, player: int, name: Callable[[int], str]) -> list[str]:
        rounds: list[list[str]] = [[], []]
        raised = [0, 0]
        for r, p, action in public_moves(state):
            r = min(r, 1)
            if action == 0:
                word = "folded"
            elif action == 1:
                word = "called" if raised[r] else "checked"
            else:
                word = "raised" if raised[r] else "bet"
                raised[r] += 1
            rounds[r].append(f"{name(p)} {word}")
        said = [f"Round {i + 1}: {', '.join(moves)}." for i, moves in enumerate(rounds) if moves]
        return [self._cards_line(state, player)] + ([" ".join(said)] if said else [])


def choose(state: pyspiel.State, player: int) -> int:
    """Hand-strength bettor: a pair with the public card or a king bets and raises, a queen before
    the flop (or a king after it) checks and calls, anything else checks or folds."""
    ranks = state.get_game().num_players() + 1
    info = read_information_state(state.information_state_string(player))
    mine = info.private // 2 if info.private is not None else 0
    high = mine / (ranks - 1)
    if info.public is not None and info.public >= 0:
        strength = 1.0 if info.public // 2 == mine else 0.6 * high
    else:
        strength = high
    legal = state.legal_actions(player)
    if strength >= 0.75 and 2 in legal:
        return 2
    if strength >= 0.5 or 0 not in legal:  # call (or check when nothing is bet)
        return 1
    return 0


#: The heuristic agent's rule: :func:`choose`.
heuristic: Heuristic = deterministic(choose)


SPEC = GameSpec(
    label="leduc_poker",
    env_id="lightspiel/LeducPoker-v0",
    game="leduc_poker",
    renderer=LeducPokerRenderer,
    heuristic=heuristic,
    golden=Golden("leduc_poker", seed=2, kwargs={"opponent": "heuristic"}),
)
