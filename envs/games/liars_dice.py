"""Liar's dice (``lightspiel/LiarsDice-v0``): renderer, heuristic and registration."""

from __future__ import annotations

import re

import numpy as np
import pyspiel

from envs.games.base import (
    INVALID_ACTION,
    MAX_PARSE_CHARS,
    TOKEN_END,
    TOKEN_START,
    GameSpec,
    Golden,
    Renderer,
    pick,
    seat_name,
)

__all__ = ["SPEC", "LiarsDiceRenderer", "heuristic"]

_SPELLED = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}


def _sizes(game: pyspiel.Game) -> tuple[int, int, int]:
    """``(players, dice per seat, sides)``."""
    params = game.get_parameters()
    return game.num_players(), int(params.get("numdice", 1)), int(params.get("dice_sides", 6))


def _liar(game: pyspiel.Game) -> int:
    """The action id of the challenge ("liar")."""
    players, dice, sides = _sizes(game)
    return players * dice * sides


def _own_dice(state: pyspiel.State, player: int) -> str:
    """The seat's dice as the digits its information state starts with (``"25"``; ``""`` if none)."""
    info = state.information_state_string(player)
    return info.split(" ", 1)[0] if info else ""


def _bids(state: pyspiel.State) -> list[tuple[int, int]]:
    """``(seat, action)`` of every public move so far."""
    return [(int(h.player), int(h.action)) for h in state.full_history() if h.player >= 0]


class LiarsDiceRenderer(Renderer):
    """Liar's dice (any number of players and dice; at most 9 sides). The highest face is wild.

    Example prompt (seat 1)::

        Liar's dice: 2 players, 1 die each, faces 1-6; 6s are wild (they count as any face).
        A bid QxF says at least Q of all dice show F; each bid must be higher than the last. Say liar to challenge the last bid.
        You are player 2. Your dice: 4.
        Bids: opponent 1x3.
        Legal moves: 1x4 1x5 1x6 2x1 2x2 2x3 2x4 2x5 2x6 liar
        Reply with one move.

    Action texts: bids ``QxF`` (quantity Q, face F) and ``liar``. Accepted answers: the first bid
    or challenge in the answer: ``2x5``, ``2 x 5``, ``2-5``, ``2*5``, ``2 5s``, ``two 5s`` for a bid;
    ``liar`` or ``challenge`` for the challenge (any case). A bid outside the game's range is parsed
    but illegal; an answer with neither is unparsed. The prompt shows only the seat's own dice
    (taken from its information state) and the public bids.
    """

    _BID = re.compile(
        TOKEN_START
        + r"(?:([0-9]{1,3})\s?[x*\-]\s?([0-9]{1,3})|([0-9]{1,3}|one|two|three|four|five|six|seven|eight|nine)"
        r"\s+([0-9]{1,3})'?s)" + TOKEN_END
    )
    _CHALLENGE = re.compile(TOKEN_START + r"(liar|challenge)" + TOKEN_END)

    @classmethod
    def supports(cls, game: pyspiel.Game) -> bool:
        return int(game.get_parameters().get("dice_sides", 6)) <= 9

    def action_text(self, state: pyspiel.State, player: int, action: int) -> str:
        _, _, sides = _sizes(state.get_game())
        if action == _liar(state.get_game()):
            return "liar"
        return f"{action // sides + 1}x{action % sides + 1}"

    def parse(self, text: str, state: pyspiel.State, player: int) -> int | None:
        game = state.get_game()
        players, dice, sides = _sizes(game)
        lower = text[:MAX_PARSE_CHARS].lower()
        bid = self._BID.search(lower)
        challenge = self._CHALLENGE.search(lower)
        if challenge is not None and (bid is None or challenge.start() < bid.start()):
            return _liar(game)
        if bid is None:
            return None
        quantity_text = bid.group(1) or bid.group(3)
        face_text = bid.group(2) or bid.group(4)
        quantity = _SPELLED.get(quantity_text) or int(quantity_text)
        face = int(face_text)
        if not (1 <= quantity <= players * dice and 1 <= face <= sides):
            return INVALID_ACTION
        return (quantity - 1) * sides + (face - 1)

    def _lines(self, state: pyspiel.State, player: int) -> list[str]:
        players = state.get_game().num_players()
        own = _own_dice(state, player)
        mine = " ".join(own) if own.isdigit() else "?"
        bids = [f"{seat_name(p, player, players)} {self.action_text(state, p, a)}" for p, a in _bids(state)]
        lines = [f"You are player {player + 1}. Your dice: {mine}."]
        if bids:
            lines.append("Bids: " + ", ".join(bids) + ".")
        return lines

    def prompt(self, state: pyspiel.State, player: int) -> str:
        players, dice, sides = _sizes(state.get_game())
        head = [
            f"Liar's dice: {players} players, {dice} {'die' if dice == 1 else 'dice'} each, faces 1-{sides}; "
            f"{sides}s are wild (they count as any face).",
            "A bid QxF says at least Q of all dice show F; each bid must be higher than the last. "
            "Say liar to challenge the last bid.",
        ]
        return "\n".join(
            [*head, *self._lines(state, player), self.moves_line(state, player), "Reply with one move."]
        )

    def final(self, state: pyspiel.State, player: int) -> str:
        return "\n".join(["Game over.", *self._lines(state, player)])


def heuristic(state: pyspiel.State, player: int, rng: np.random.Generator) -> int:
    """Expected-count bidder: a bid's margin is the seat's own matching dice plus the expected
    matches among the unseen dice (wild faces included) minus the bid's quantity. Challenge a last
    bid with margin below -0.5; else make the cheapest raise with margin >= 0 (preferring faces it
    holds); with none, challenge a last bid with negative margin, or make the raise with the best
    margin."""
    players, per_seat, sides = _sizes(state.get_game())
    unseen = (players - 1) * per_seat
    liar = _liar(state.get_game())
    dice = [int(ch) for ch in _own_dice(state, player) if ch.isdigit()]

    def margin(bid: int) -> float:  # > 0: the bid is expected to be true
        face = bid % sides + 1
        mine = sum(1 for d in dice if d == face or (d == sides and face != sides))
        chance = (2.0 if face != sides else 1.0) / sides
        expected = mine + unseen * chance
        return expected - (bid // sides + 1)

    legal = [int(a) for a in state.legal_actions(player)]
    bids = [a for a in legal if a != liar]
    last = [a for _, a in _bids(state)]
    last_margin = margin(last[-1]) if last and liar in legal else None
    if last_margin is not None and last_margin < -0.5:
        return liar
    plausible = [a for a in bids if margin(a) >= 0]
    if plausible:
        cheapest = min(plausible)
        held = [a for a in plausible if a // sides == cheapest // sides and (a % sides + 1) in dice]
        return pick(held or [cheapest], rng)
    if not bids or (last_margin is not None and last_margin < 0):
        return liar
    best = max(margin(a) for a in bids)
    return min(a for a in bids if margin(a) == best)


SPEC = GameSpec(
    label="liars_dice",
    env_id="lightspiel/LiarsDice-v0",
    game="liars_dice",
    renderer=LiarsDiceRenderer,
    heuristic=heuristic,
    golden=Golden("liars_dice", seed=4, kwargs={"opponent": "heuristic"}),
)
