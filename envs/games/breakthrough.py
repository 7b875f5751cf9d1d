"""Breakthrough (``lightspiel/Breakthrough-v0``, 6x6 by default): renderer, heuristic and
registration."""

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
)

__all__ = ["SPEC", "BreakthroughRenderer", "heuristic"]

#: OpenSpiel's action string: from-square, to-square, ``*`` for a capture.
_ACTION = re.compile(r"([a-z])(\d+)([a-z])(\d+)(\*?)")


def _size(game: pyspiel.Game) -> tuple[int, int]:
    params = game.get_parameters()
    return int(params.get("rows", 8)), int(params.get("columns", 8))


def _board_lines(state: pyspiel.State) -> list[str]:
    """OpenSpiel's board: a line per row (row number first, top row first), then the column letters."""
    return [line for line in str(state).split("\n") if line.strip()]


class BreakthroughRenderer(Renderer):
    """Breakthrough (any size up to 9 rows and 26 columns), in chess-like coordinates.

    Example prompt (6x6; seat 0 = black moves first, down the board)::

        Breakthrough 6x6. A piece steps one square forward or diagonally forward, and captures diagonally only.
        Reach the far row or capture every enemy piece to win. You are black (b), moving down toward row 1; white (w) moves up.
        6 b b b b b b
        5 b b b b b b
        4 . . . . . .
        3 . . . . . .
        2 w w w w w w
        1 w w w w w w
          a b c d e f
        Legal moves: a5a4 a5b4 b5a4 ...
        Reply with one move, from-square then to-square, like a5a4.

    Action text: from-square and to-square, e.g. ``a5a4`` (OpenSpiel's text without its ``*``
    capture mark). Accepted answers: the first ``<square><square>`` token in the answer, with or
    without a ``-``, ``x`` or space between the squares (``"b5-c4"``, ``"B5xC4"``, ``"b5 c4"``),
    case-insensitive. A well-formed move that is not legal here is parsed but illegal
    (:data:`~envs.games.base.INVALID_ACTION`); an answer without such a token is unparsed.
    """

    _MOVE = re.compile(TOKEN_START + r"([a-z])\s?([1-9])\s?[-x:]?\s?([a-z])\s?([1-9])" + TOKEN_END)

    @classmethod
    def supports(cls, game: pyspiel.Game) -> bool:
        rows, columns = _size(game)
        return rows <= 9 and columns <= 26

    def board(self, state: pyspiel.State) -> str:
        out = []
        for line in _board_lines(state):
            if line[0].isdigit():
                out.append(line[0] + " " + " ".join(line[1:]))
            else:
                out.append("  " + " ".join(line.strip()))
        return "\n".join(out)

    def prompt(self, state: pyspiel.State, player: int) -> str:
        rows, columns = _size(state.get_game())
        me = (
            "black (b), moving down toward row 1; white (w) moves up"
            if player == 0
            else (f"white (w), moving up toward row {rows}; black (b) moves down")
        )
        moves = [self.action_text(state, player, a) for a in state.legal_actions(player)]
        return (
            f"Breakthrough {rows}x{columns}. "
            "A piece steps one square forward or diagonally forward, and captures diagonally only.\n"
            f"Reach the far row or capture every enemy piece to win. You are {me}.\n"
            f"{self.board(state)}\n"
            f"Legal moves: {' '.join(moves)}\n"
            f"Reply with one move, from-square then to-square, like {moves[0] if moves else 'a2a3'}."
        )

    def action_text(self, state: pyspiel.State, player: int, action: int) -> str:
        return state.action_to_string(player, action).replace("*", "")

    def parse(self, text: str, state: pyspiel.State, player: int) -> int | None:
        match = self._MOVE.search(text[:MAX_PARSE_CHARS].lower())
        if match is None:
            return None
        move = "".join(match.groups())
        for action in state.legal_actions(player):
            if self.action_text(state, player, action) == move:
                return action
        return INVALID_ACTION


def heuristic(state: pyspiel.State, player: int, rng: np.random.Generator) -> int:
    """Win if a move wins, else prefer captures, avoid squares the opponent can capture on, and
    advance; ties broken at random."""
    board = {}
    for line in _board_lines(state):
        if not line[0].isdigit():
            continue
        row = int(re.match(r"\d+", line).group(0))
        for i, ch in enumerate(line[len(str(row)) :]):
            board[(row, i)] = ch
    enemy, forward = ("w", -1) if player == 0 else ("b", 1)
    scored: list[tuple[float, int]] = []
    for action in state.legal_actions(player):
        match = _ACTION.fullmatch(state.action_to_string(player, action))
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
    return pick([a for s, a in scored if s == best], rng)


SPEC = GameSpec(
    label="breakthrough",
    env_id="lightspiel/Breakthrough-v0",
    game="breakthrough(rows=6,columns=6)",
    renderer=BreakthroughRenderer,
    heuristic=heuristic,
    golden=Golden("breakthrough", seed=6, kwargs={"opponent": "heuristic", "max_turns": 3}),
)
