"""Kuhn poker (``lightspiel/KuhnPoker-v0``): renderer, heuristic and registration."""

from __future__ import annotations

import re
from collections.abc import Callable

import pyspiel

from envs.games.base import GameSpec, Golden, HandRenderer, Heuristic, card_names, deterministic, public_moves

__all__ = ["SPEC", "KuhnPokerRenderer", "choose", "heuristic", "read_information_state"]


def read_information_state(info: str) -> tuple[int | None, str]:
    """Split a Kuhn information-state string (``"1pb"``) into the seat's card index (``None``
    before the deal) and the betting so far (``p`` pass, ``b`` bet)."""
    digits = re.match(r"\d+", info)
    if digits is None:
        return None, info
    return int(digits.group(0)), info[len(digits.group(0)) :]


class KuhnPokerRenderer(HandRenderer):
    """Kuhn poker (any number of players).

    Example prompt (seat 1 facing a bet)::

        Kuhn poker: cards J<Q<K, one each; ante 1, bets of 1; best card left in wins. You are player 2 of 2.
        Your card: Q. Pot: 3.
        Moves: opponent bet.
        Legal moves: fold call
        Reply with one move.

    Action texts: with no bet yet ``check`` (OpenSpiel Pass) and ``bet`` (Bet); facing a bet
    ``fold`` (Pass) and ``call`` (Bet). Accepted answers: the first poker word in the answer
    (``fold``, ``check``, ``call``, ``bet``, ``raise``, ``pass``; whole words, any case).
    OpenSpiel's names are accepted everywhere (``pass`` = check or fold, ``bet`` = bet or call); a
    poker word that is not a move here (``raise``; ``fold`` or ``call`` with no bet; ``check``
    facing a bet) is parsed but illegal; an answer without a poker word is unparsed. The prompt is
    built from the seat's information state only (its card and the public bets).
    """

    def rules(self, game: pyspiel.Game) -> str:
        names = card_names(game.num_players() + 1)
        return f"Kuhn poker: cards {'<'.join(names)}, one each; ante 1, bets of 1; best card left in wins."

    @staticmethod
    def _bet_made(state: pyspiel.State) -> bool:
        return any(action == 1 for _, _, action in public_moves(state))

    def words(self, state: pyspiel.State) -> dict[str, int]:
        # OpenSpiel's own names (pass, bet) are accepted everywhere.
        if self._bet_made(state):
            return {"fold": 0, "call": 1, "pass": 0, "bet": 1}
        return {"check": 0, "bet": 1, "pass": 0}

    def hand_lines(self, state: pyspiel.State, player: int, name: Callable[[int], str]) -> list[str]:
        n = state.get_game().num_players()
        card, _ = read_information_state(state.information_state_string(player))
        said, bet, pot = [], False, n
        for _, p, action in public_moves(state):
            if action == 1:
                said.append(f"{name(p)} {'called' if bet else 'bet'}")
                bet, pot = True, pot + 1
            else:
                said.append(f"{name(p)} {'folded' if bet else 'checked'}")
        lines = [f"Your card: {'?' if card is None else card_names(n + 1)[card]}. Pot: {pot}."]
        if said:
            lines.append("Moves: " + ", ".join(said) + ".")
        return lines


def choose(state: pyspiel.State, player: int) -> int:
    """Hand-strength bettor: bet or call with the top card, check and call with a middle card,
    check and fold with the lowest cards."""
    num_cards = state.get_game().num_players() + 1
    card, betting = read_information_state(state.information_state_string(player))
    strength = card / (num_cards - 1) if card is not None else 0.0
    if "b" not in betting:
        return 1 if strength >= 0.75 else 0
    return 1 if strength >= 0.5 else 0


#: The heuristic agent's rule: :func:`choose`.
heuristic: Heuristic = deterministic(choose)


SPEC = GameSpec(
    label="kuhn_poker",
    env_id="lightspiel/KuhnPoker-v0",
    game="kuhn_poker",
    renderer=KuhnPokerRenderer,
    heuristic=heuristic,
    golden=Golden("kuhn_poker", seed=1, kwargs={"opponent": "heuristic"}),
)
