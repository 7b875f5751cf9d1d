"""Connect four (``lightspiel/ConnectFour-v0``): renderer, heuristic and registration."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyspiel

from envs.games.base import GameSpec, Golden, NumberedRenderer, pick

__all__ = ["SPEC", "ConnectFourRenderer", "heuristic"]


def _columns(game: pyspiel.Game) -> int:
    return int(game.get_parameters().get("columns", 7))


def _in_row(game: pyspiel.Game) -> int:
    return int(game.get_parameters().get("x_in_row", 4))


def _rows(state: pyspiel.State) -> list[str]:
    """The board's rows as OpenSpiel prints them, top row first (``.``, ``x``, ``o``)."""
    return [line for line in str(state).split("\n") if line.strip()]


class ConnectFourRenderer(NumberedRenderer):
    """Connect four (any ``rows``, ``columns`` <= 9, ``x_in_row``): columns numbered from 1.

    Example prompt (seat 1 = O; X = seat 0 moves first)::

        Connect four. Drop a disc into a column; it falls to the lowest free cell.
        Four in a row (across, down or diagonal) wins. You are O.
         1 2 3 4 5 6 7
         . . . . . . .
         . . . . . . .
         . . . . . . .
         . . . . . . .
         . . . . . . .
         . . . X . . .
        Legal moves: 1 2 3 4 5 6 7
        Reply with one column number.

    Action text: the column number ``c`` (action ``c - 1``). Accepted answers: the first standalone
    number, as for tic-tac-toe (``"4"``, ``"column 4"``, ``"I drop in 4."``); a number outside
    ``1..columns`` is parsed but illegal; no number is unparsed.
    """

    _MARKS: ClassVar[dict[str, str]] = {"x": "X", "o": "O"}
    _COUNTS: ClassVar[dict[int, str]] = {3: "Three", 4: "Four", 5: "Five", 6: "Six"}

    @classmethod
    def supports(cls, game: pyspiel.Game) -> bool:
        return _columns(game) <= 9

    def board(self, state: pyspiel.State) -> str:
        columns = _columns(state.get_game())
        lines = [" " + " ".join(str(c + 1) for c in range(columns))]
        for line in _rows(state):
            lines.append(" " + " ".join(self._MARKS.get(ch, ".") for ch in line[:columns]))
        return "\n".join(lines)

    def prompt(self, state: pyspiel.State, player: int) -> str:
        in_row = _in_row(state.get_game())
        count = self._COUNTS.get(in_row, str(in_row))
        return (
            "Connect four. Drop a disc into a column; it falls to the lowest free cell.\n"
            f"{count} in a row (across, down or diagonal) wins. You are {'X' if player == 0 else 'O'}.\n"
            f"{self.board(state)}\n"
            f"{self.moves_line(state, player)}\n"
            "Reply with one column number."
        )

    def count(self, state: pyspiel.State) -> int:
        return _columns(state.get_game())


def _wins(grid: list[list[str]], row: int, col: int, mark: str, need: int) -> bool:
    """Whether ``mark`` on ``grid[row][col]`` makes ``need`` in a row."""
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


def _safe_columns(grid: list[list[str]], landing: dict[int, int], me: str, them: str, need: int) -> list[int]:
    """Columns where a disc of ``me`` does not let ``them`` win on the cell above it."""
    safe = []
    for c, row in landing.items():
        above = row + 1
        if above >= len(grid):
            safe.append(c)
            continue
        grid[row][c] = me
        gives = _wins(grid, above, c, them, need)
        grid[row][c] = "."
        if not gives:
            safe.append(c)
    return safe


def heuristic(state: pyspiel.State, player: int, rng: np.random.Generator) -> int:
    """Win if possible, else block the opponent's win, else a move that does not hand the opponent
    a win on the cell above, preferring central columns."""
    need = _in_row(state.get_game())
    grid = [list(line) for line in reversed(_rows(state))]  # grid[row][col], row 0 at the bottom
    me, them = ("x", "o") if player == 0 else ("o", "x")
    legal = [int(a) for a in state.legal_actions(player)]
    landing = {c: next(r for r in range(len(grid)) if grid[r][c] == ".") for c in legal}
    wins = [c for c in legal if _wins(grid, landing[c], c, me, need)]
    if wins:
        return pick(wins, rng)
    blocks = [c for c in legal if _wins(grid, landing[c], c, them, need)]
    if blocks:
        return pick(blocks, rng)
    pool = _safe_columns(grid, landing, me, them, need) or legal
    centre = (len(grid[0]) - 1) / 2.0
    weights = np.asarray([(len(grid[0]) - abs(c - centre)) ** 2 for c in pool], dtype=np.float64)
    return int(pool[int(rng.choice(len(pool), p=weights / weights.sum()))])


SPEC = GameSpec(
    label="connect_four",
    env_id="lightspiel/ConnectFour-v0",
    game="connect_four",
    renderer=ConnectFourRenderer,
    heuristic=heuristic,
    golden=Golden("connect_four", seed=3, kwargs={"opponent": "heuristic", "max_turns": 4}),
)
