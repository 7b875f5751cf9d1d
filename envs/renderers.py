"""Renderers: the game-specific text layer between OpenSpiel states and an LLM.

A :class:`Renderer` turns a state into the prompt a seat reads, names actions with short canonical
strings, and maps a free-form answer back to an OpenSpiel action id. Everything else in the text
environment is generic over games; adding a game means adding a renderer here and an entry in
:data:`RENDERERS`.
"""

from __future__ import annotations

import re
from typing import ClassVar

import pyspiel

__all__ = [
    "INVALID_ACTION",
    "MAX_PARSE_CHARS",
    "RENDERERS",
    "GenericRenderer",
    "Renderer",
    "TicTacToeRenderer",
    "renderer_for",
]

#: Returned by :meth:`Renderer.parse` when the answer clearly names a move that cannot exist
#: (e.g. cell 10 in tic-tac-toe). The environment treats it as parsed but illegal.
INVALID_ACTION: int = -1

#: Only this many leading characters of an answer are ever looked at.
MAX_PARSE_CHARS: int = 2048

# A token boundary: the neighbouring character is not an ASCII letter, digit or underscore.
_LEFT = r"(?<![0-9A-Za-z_])"
_RIGHT = r"(?![0-9A-Za-z_])"


def _short_name(game: pyspiel.Game) -> str:
    return game.get_type().short_name


class Renderer:
    """Base class: how one game looks to, and is answered by, a language model.

    Subclasses override :meth:`prompt`, :meth:`action_text`, :meth:`parse` and optionally
    :meth:`board`. All methods are called with decision states (``state.current_player() >= 0``)
    except :meth:`board`, which may get any state, terminal ones included.
    """

    def prompt(self, state: pyspiel.State, player: int) -> str:
        """Return the prompt shown to ``player`` (the seat to move) at ``state``."""
        raise NotImplementedError

    def action_text(self, state: pyspiel.State, player: int, action: int) -> str:
        """Return the canonical text of ``action`` for ``player`` at ``state``."""
        raise NotImplementedError

    def parse(self, text: str, state: pyspiel.State, player: int) -> int | None:
        """Map a free-form answer to an action id.

        Returns:
            An OpenSpiel action id (legal or not: the environment checks legality),
            :data:`INVALID_ACTION` for an answer that names a move that does not exist, or ``None``
            when nothing in the answer can be read as a move.
        """
        raise NotImplementedError

    def board(self, state: pyspiel.State) -> str:
        """Return a plain rendering of the whole position (used for ``render()`` and the final
        observation)."""
        return str(state)


class GenericRenderer(Renderer):
    """Fallback renderer for any OpenSpiel game, built from OpenSpiel's own strings.

    The prompt shows the game's long name, the seat, ``state.observation_string(player)`` (or
    ``information_state_string(player)`` for games without observation strings, or ``str(state)``
    for games with neither), and the legal moves as given by ``state.action_to_string``.

    Accepted answers: a legal move string on its own (case-insensitive, surrounding whitespace
    ignored); otherwise the legal move string that appears earliest in the answer as a whole token
    (not glued to letters, digits or ``_``; the longest one wins a tie). Anything else is unparsed.
    """

    def _view(self, state: pyspiel.State, player: int) -> str:
        game_type = state.get_game().get_type()
        if game_type.provides_observation_string:
            return state.observation_string(player)
        if game_type.provides_information_state_string:
            return state.information_state_string(player)
        return str(state)

    def prompt(self, state: pyspiel.State, player: int) -> str:
        game = state.get_game()
        moves = [self.action_text(state, player, a) for a in state.legal_actions(player)]
        sep = " | " if any("," in m for m in moves) else ", "
        view = self._view(state, player).rstrip("\n")
        return (
            f"{game.get_type().long_name}. You are player {player}.\n"
            f"{view}\n"
            f"Legal moves: {sep.join(moves)}\n"
            "Reply with one legal move exactly as written."
        )

    def action_text(self, state: pyspiel.State, player: int, action: int) -> str:
        return state.action_to_string(player, action)

    def parse(self, text: str, state: pyspiel.State, player: int) -> int | None:
        text = text[:MAX_PARSE_CHARS]
        legal = state.legal_actions(player)
        names = [(self.action_text(state, player, a).strip().lower(), a) for a in legal]
        answer = text.strip().lower()
        for name, action in names:
            if name and name == answer:
                return action
        best: tuple[int, int, int] | None = None  # (position, -length, action)
        for name, action in names:
            if not name:
                continue
            match = re.search(_LEFT + re.escape(name) + _RIGHT, answer)
            if match is not None:
                key = (match.start(), -len(name), action)
                if best is None or key < best:
                    best = key
        return None if best is None else best[2]


class TicTacToeRenderer(Renderer):
    """Compact tic-tac-toe renderer (cells numbered 1-9, row by row; cell ``n`` is action ``n-1``).

    Example prompt (seat 0 = X moves first)::

        Tic-tac-toe. You are X. Cells are numbered 1-9; a number marks an empty cell.
         X | 2 | 3
         4 | O | 6
         7 | 8 | 9
        Legal moves: 2 3 4 6 7 8 9
        Reply with one cell number.

    Accepted answers: the first standalone number in the answer (ASCII digits not glued to letters,
    digits or ``_``) names the move, so ``"5"``, ``"5."``, ``"Cell 5"``, ``"I play 5"``,
    ``"**5**"`` and ``"(5)"`` all mean cell 5. If that number is 1-9 it maps to action ``n-1``
    (illegal if the cell is taken); any other number (``0``, ``10``, ...) is parsed but illegal
    (:data:`INVALID_ACTION`); an answer with no standalone number is unparsed (``None``).
    """

    _NUMBER = re.compile(_LEFT + r"([0-9]+)" + _RIGHT)
    _MARKS: ClassVar[dict[str, str]] = {"x": "X", "o": "O"}

    def _cells(self, state: pyspiel.State) -> list[str]:
        chars = "".join(str(state).split())
        return [self._MARKS.get(c, str(i + 1)) for i, c in enumerate(chars[:9])]

    def board(self, state: pyspiel.State) -> str:
        cells = self._cells(state)
        return "\n".join(" " + " | ".join(cells[r * 3 : r * 3 + 3]) for r in range(3))

    def prompt(self, state: pyspiel.State, player: int) -> str:
        mark = "X" if player == 0 else "O"
        moves = " ".join(self.action_text(state, player, a) for a in state.legal_actions(player))
        return (
            f"Tic-tac-toe. You are {mark}. Cells are numbered 1-9; a number marks an empty cell.\n"
            f"{self.board(state)}\n"
            f"Legal moves: {moves}\n"
            "Reply with one cell number."
        )

    def action_text(self, state: pyspiel.State, player: int, action: int) -> str:
        return str(action + 1)

    def parse(self, text: str, state: pyspiel.State, player: int) -> int | None:
        match = self._NUMBER.search(text[:MAX_PARSE_CHARS])
        if match is None:
            return None
        digits = match.group(1).lstrip("0")
        if len(digits) != 1:  # "0", "00", "10", "123456..." (never int() a huge digit run)
            return INVALID_ACTION
        return int(digits) - 1


#: Short OpenSpiel game name -> renderer class. Games not listed get :class:`GenericRenderer`.
RENDERERS: dict[str, type[Renderer]] = {
    "tic_tac_toe": TicTacToeRenderer,
}


def renderer_for(game_name: str | pyspiel.Game) -> Renderer:
    """Return a renderer for a game.

    Args:
        game_name: A short OpenSpiel name (``"tic_tac_toe"``), a game string with parameters
            (``"tic_tac_toe()"``) or a loaded ``pyspiel.Game``.

    Returns:
        A fresh renderer instance; :class:`GenericRenderer` for games without a dedicated one.
    """
    if isinstance(game_name, pyspiel.Game):
        name = _short_name(game_name)
    else:
        name = str(game_name).split("(", 1)[0].strip()
    return RENDERERS.get(name, GenericRenderer)()
