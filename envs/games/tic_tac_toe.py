"""Tic-tac-toe (``lightspiel/TicTacToe-v0``): renderer, heuristic and registration."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyspiel

from envs.games.base import GameSpec, Golden, NumberedRenderer, pick

__all__ = ["SPEC", "TicTacToeRenderer", "heuristic"]

_LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))


def _cells(state: pyspiel.State) -> str:
    """The nine cells of the board, row by row, as OpenSpiel prints them (``.``, ``x``, ``o``)."""
    return "".join(str(state).split())[:9]


class TicTacToeRenderer(NumberedRenderer):
    """Compact tic-tac-toe renderer (cells numbered 1-9, row by row; cell ``n`` is action ``n-1``).

    Example prompt (seat 0 = X moves first)::

        Tic-tac-toe. Cells are numbered 1-9; a number marks an empty cell. You are X.
         X | 2 | 3
         4 | O | 6
         7 | 8 | 9
        Legal moves: 2 3 4 6 7 8 9
        Reply with one cell number.

    Accepted answers: the first standalone number in the answer (ASCII digits not glued to letters,
    digits or ``_``) names the move, so ``"5"``, ``"5."``, ``"Cell 5"``, ``"I play 5"``,
    ``"**5**"`` and ``"(5)"`` all mean cell 5. If that number is 1-9 it maps to action ``n-1``
    (illegal if the cell is taken); any other number (``0``, ``10``, ...) is parsed but illegal
    (:data:`~envs.games.base.INVALID_ACTION`); an answer with no standalone number is unparsed
    (``None``).
    """

    _MARKS: ClassVar[dict[str, str]] = {"x": "X", "o": "O"}

    def board(self, state: pyspiel.State) -> str:
        cells = [self._MARKS.get(c, str(i + 1)) for i, c in enumerate(_cells(state))]
        return "\n".join(" " + " | ".join(cells[r * 3 : r * 3 + 3]) for r in range(3))

    def prompt(self, state: pyspiel.State, player: int) -> str:
        mark = "X" if player == 0 else "O"
        return (
            f"Tic-tac-toe. Cells are numbered 1-9; a number marks an empty cell. You are {mark}.\n"
            f"{self.board(state)}\n"
            f"{self.moves_line(state, player)}\n"
            "Reply with one cell number."
        )

    def count(self, state: pyspiel.State) -> int:
        return 9


def _completing(cells: str, mark: str, empty: set[int]) -> list[int]:
    """Empty cells that would complete a line of ``mark``."""
    found = set()
    for line in _LINES:
        if [cells[i] for i in line].count(mark) == 2:
            found.update(i for i in line if i in empty)
    return sorted(found)


def heuristic(state: pyspiel.State, player: int, rng: np.random.Generator) -> int:
    """Win if possible, else block, else the centre, else a corner, else any cell."""
    cells = _cells(state)
    legal = state.legal_actions(player)
    empty = set(legal)
    me, them = ("x", "o") if player == 0 else ("o", "x")
    for choices in (
        _completing(cells, me, empty),
        _completing(cells, them, empty),
        [4] if 4 in empty else [],
        [c for c in (0, 2, 6, 8) if c in empty],
        list(legal),
    ):
        if choices:
            return pick(choices, rng)
    raise ValueError("no legal actions")


SPEC = GameSpec(
    label="tic_tac_toe",
    env_id="lightspiel/TicTacToe-v0",
    game="tic_tac_toe",
    renderer=TicTacToeRenderer,
    heuristic=heuristic,
    golden=Golden(
        "tic_tac_toe_vs_heuristic",
        seed=7,
        kwargs={"opponent": "heuristic", "learner_seat": 1},
        # An unparseable answer (retried), an occupied cell (retried), then plain moves in the
        # documented formats.
        answers=("Let me think about it.", "5", "1", "I play 3", "8", "Cell 4.", "6", "7", "9", "2"),
    ),
)
