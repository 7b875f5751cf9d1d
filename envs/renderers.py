"""Renderers: the game-specific text layer between OpenSpiel states and an LLM.

A :class:`Renderer` turns a state into the prompt a seat reads, names actions with short canonical
strings, and maps a free-form answer back to an OpenSpiel action id. Everything else in the text
environment is generic over games; adding a game means adding a renderer here and an entry in
:data:`RENDERERS`.

Hidden information: a renderer builds a seat's prompt only from what that seat may know (OpenSpiel's
information-state or observation string for that seat, and the public moves), never from the full
state. The tests check, for every imperfect-information game, that two states the seat cannot tell
apart give the same prompt.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pyspiel

__all__ = [
    "INVALID_ACTION",
    "MAX_PARSE_CHARS",
    "RENDERERS",
    "BreakthroughRenderer",
    "ConnectFourRenderer",
    "GenericRenderer",
    "KuhnPokerRenderer",
    "LeducPokerRenderer",
    "LewisSignalingRenderer",
    "LiarsDiceRenderer",
    "Renderer",
    "RepeatedPokerRenderer",
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
_NUMBER = re.compile(_LEFT + r"([0-9]+)" + _RIGHT)


def _short_name(game: pyspiel.Game) -> str:
    return game.get_type().short_name


def _perfect_information(game: pyspiel.Game) -> bool:
    return game.get_type().information == pyspiel.GameType.Information.PERFECT_INFORMATION


def _number_choice(text: str, count: int) -> int | None:
    """The first standalone number ``n`` of ``text`` as index ``n - 1`` (``1 <= n <= count``);
    :data:`INVALID_ACTION` for any other number; ``None`` when there is no standalone number."""
    match = _NUMBER.search(text[:MAX_PARSE_CHARS])
    if match is None:
        return None
    digits = match.group(1).lstrip("0")
    if not digits or len(digits) > 6:  # "0", or a digit run too long to be a move (never int() it)
        return INVALID_ACTION
    value = int(digits)
    return value - 1 if 1 <= value <= count else INVALID_ACTION


def _first_word(text: str, words: list[str] | tuple[str, ...]) -> str | None:
    """The word of ``words`` (lower case) that occurs first in ``text`` as a whole token
    (case-insensitive; the longest wins a tie); ``None`` if none occurs."""
    if not words:
        return None
    pattern = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
    match = re.search(_LEFT + "(" + pattern + ")" + _RIGHT, text[:MAX_PARSE_CHARS].lower())
    return None if match is None else match.group(1)


def _seat_name(seat: int, me: int, num_players: int) -> str:
    if seat == me:
        return "you"
    return "opponent" if num_players == 2 else f"player {seat + 1}"


class Renderer:
    """Base class: how one game looks to, and is answered by, a language model.

    Subclasses override :meth:`prompt`, :meth:`action_text`, :meth:`parse` and optionally
    :meth:`board`, :meth:`final`, :meth:`info` and :meth:`supports`. :meth:`prompt`,
    :meth:`action_text` and :meth:`parse` are called for a seat that has to move (at simultaneous
    nodes ``state.current_player()`` is negative and ``player`` names the seat); :meth:`board` and
    :meth:`final` may get any state, terminal ones included.
    """

    @classmethod
    def supports(cls, game: pyspiel.Game) -> bool:
        """Whether this renderer can show ``game`` (with its parameters); :func:`renderer_for`
        falls back to :class:`GenericRenderer` otherwise."""
        return True

    def prompt(self, state: pyspiel.State, player: int) -> str:
        """Return the prompt shown to ``player`` (a seat to move) at ``state``."""
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
        """Return a plain rendering of the whole position (used for ``render()``; it may show
        hidden information)."""
        return str(state)

    def final(self, state: pyspiel.State, player: int) -> str:
        """Return the last observation's prompt for ``player`` (the game is over, or was stopped).

        Perfect-information games show :meth:`board`; imperfect-information games must show only
        what ``player`` may know, so the default is OpenSpiel's information state (or observation)
        string for ``player``.
        """
        game = state.get_game()
        if _perfect_information(game):
            return self.board(state)
        return "Game over.\n" + _private_view(state, player)

    def info(self, state: pyspiel.State) -> dict[str, Any]:
        """Extra public facts for the environment's ``info`` dict (e.g. bankrolls)."""
        return {}


def _private_view(state: pyspiel.State, player: int) -> str:
    """OpenSpiel's own string of what ``player`` knows at ``state``: the observation string, else
    the information-state string; ``""`` when the game provides neither (or refuses here)."""
    game_type = state.get_game().get_type()
    methods = []
    if game_type.provides_observation_string:
        methods.append(state.observation_string)
    if game_type.provides_information_state_string:
        methods.append(state.information_state_string)
    for method in methods:
        try:
            return method(player).rstrip("\n")
        except pyspiel.SpielError:
            continue
    return ""


class GenericRenderer(Renderer):
    """Fallback renderer for any OpenSpiel game, built from OpenSpiel's own strings.

    The prompt shows the game's long name, the seat, ``state.observation_string(player)`` (or
    ``information_state_string(player)`` for games without observation strings; ``str(state)`` only
    for perfect-information games with neither), a line saying so at simultaneous-move nodes, and
    the legal moves as given by ``state.action_to_string``.

    Accepted answers: a legal move string on its own (case-insensitive, surrounding whitespace
    ignored); otherwise the legal move string that appears earliest in the answer as a whole token
    (not glued to letters, digits or ``_``; the longest one wins a tie). Anything else is unparsed.
    """

    @classmethod
    def check_game(cls, game: pyspiel.Game) -> None:
        """Raise ``ValueError`` for a game this renderer cannot show without leaking hidden
        information (an imperfect-information game with neither observation nor
        information-state strings)."""
        game_type = game.get_type()
        if _perfect_information(game):
            return
        if not (game_type.provides_observation_string or game_type.provides_information_state_string):
            raise ValueError(
                f"{game} is an imperfect-information game without observation or information-state "
                "strings; the generic renderer cannot show it without revealing hidden information"
            )

    def _view(self, state: pyspiel.State, player: int) -> str:
        game = state.get_game()
        view = _private_view(state, player)
        if not view and _perfect_information(game):
            view = str(state)
        return view

    def prompt(self, state: pyspiel.State, player: int) -> str:
        game = state.get_game()
        moves = [self.action_text(state, player, a) for a in state.legal_actions(player)]
        sep = " | " if any("," in m for m in moves) else ", "
        view = self._view(state, player).rstrip("\n")
        lines = [f"{game.get_type().long_name}. You are player {player}."]
        if view:
            lines.append(view)
        if state.is_simultaneous_node():
            lines.append("All players choose at the same time.")
        lines += [f"Legal moves: {sep.join(moves)}", "Reply with one legal move exactly as written."]
        return "\n".join(lines)

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


# --------------------------------------------------------------------------------------------------
# Board games
# --------------------------------------------------------------------------------------------------


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
        return _number_choice(text, 9)


class ConnectFourRenderer(Renderer):
    """Connect four (any ``rows``, ``columns`` <= 9, ``x_in_row``): columns numbered from 1.

    Example prompt (seat 1 = O; X = seat 0 moves first)::

        Connect four. You are O. Drop a disc into a column; it falls to the lowest free cell.
        Four in a row (across, down or diagonal) wins.
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
        return int(game.get_parameters().get("columns", 7)) <= 9

    def board(self, state: pyspiel.State) -> str:
        columns = int(state.get_game().get_parameters().get("columns", 7))
        rows = [line for line in str(state).split("\n") if line.strip()]
        lines = [" " + " ".join(str(c + 1) for c in range(columns))]
        for line in rows:
            lines.append(" " + " ".join(self._MARKS.get(ch, ".") for ch in line[:columns]))
        return "\n".join(lines)

    def prompt(self, state: pyspiel.State, player: int) -> str:
        in_row = int(state.get_game().get_parameters().get("x_in_row", 4))
        count = self._COUNTS.get(in_row, str(in_row))
        moves = " ".join(self.action_text(state, player, a) for a in state.legal_actions(player))
        return (
            f"Connect four. You are {'X' if player == 0 else 'O'}. Drop a disc into a column; it falls "
            "to the lowest free cell.\n"
            f"{count} in a row (across, down or diagonal) wins.\n"
            f"{self.board(state)}\n"
            f"Legal moves: {moves}\n"
            "Reply with one column number."
        )

    def action_text(self, state: pyspiel.State, player: int, action: int) -> str:
        return str(action + 1)

    def parse(self, text: str, state: pyspiel.State, player: int) -> int | None:
        columns = int(state.get_game().get_parameters().get("columns", 7))
        return _number_choice(text, columns)


class BreakthroughRenderer(Renderer):
    """Breakthrough (any size up to 9 rows and 26 columns), in chess-like coordinates.

    Example prompt (6x6; seat 0 = black moves first, down the board)::

        Breakthrough 6x6. You are black (b), moving down toward row 1; white (w) moves up.
        A piece steps one square forward or diagonally forward, and captures diagonally only.
        Reach the far row or capture every enemy piece to win.
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
    (:data:`INVALID_ACTION`); an answer without such a token is unparsed.
    """

    _MOVE = re.compile(_LEFT + r"([a-z])\s?([1-9])\s?[-x:]?\s?([a-z])\s?([1-9])" + _RIGHT)

    @classmethod
    def supports(cls, game: pyspiel.Game) -> bool:
        params = game.get_parameters()
        return int(params.get("rows", 8)) <= 9 and int(params.get("columns", 8)) <= 26

    def board(self, state: pyspiel.State) -> str:
        lines = [line for line in str(state).split("\n") if line.strip()]
        out = []
        for line in lines:
            if line[0].isdigit():
                out.append(line[0] + " " + " ".join(line[1:]))
            else:
                out.append("  " + " ".join(line.strip()))
        return "\n".join(out)

    def prompt(self, state: pyspiel.State, player: int) -> str:
        params = state.get_game().get_parameters()
        rows, columns = int(params.get("rows", 8)), int(params.get("columns", 8))
        me = (
            "black (b), moving down toward row 1; white (w) moves up"
            if player == 0
            else (f"white (w), moving up toward row {rows}; black (b) moves down")
        )
        moves = [self.action_text(state, player, a) for a in state.legal_actions(player)]
        return (
            f"Breakthrough {rows}x{columns}. You are {me}.\n"
            "A piece steps one square forward or diagonally forward, and captures diagonally only.\n"
            "Reach the far row or capture every enemy piece to win.\n"
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


# --------------------------------------------------------------------------------------------------
# Poker
# --------------------------------------------------------------------------------------------------

#: Every word a poker answer may use; the first one found in an answer is the move.
_POKER_WORDS: tuple[str, ...] = ("fold", "check", "call", "bet", "raise", "pass")


def _poker_parse(text: str, words: dict[str, int]) -> int | None:
    """First poker word of the answer -> its action in ``words``; other poker words (not available
    in this state) are parsed but illegal."""
    found = _first_word(text, _POKER_WORDS)
    if found is None:
        return None
    return words.get(found, INVALID_ACTION)


class _HandRenderer(Renderer):
    """Shared parts of the Kuhn and Leduc renderers: a hand is described by :meth:`hand_lines`,
    which the repeated-poker renderer reuses."""

    RULES: ClassVar[str] = ""

    def hand_lines(self, state: pyspiel.State, player: int, name: Any) -> list[str]:
        """What ``player`` knows of the hand: its cards and the moves so far. ``name(p)`` names
        the base game's player ``p`` ("you", "opponent", ...)."""
        raise NotImplementedError

    def words(self, state: pyspiel.State) -> dict[str, int]:
        """Accepted answer words -> action ids in this state."""
        raise NotImplementedError

    def action_text(self, state: pyspiel.State, player: int, action: int) -> str:
        for word, act in self.words(state).items():
            if act == action and word != "pass":
                return word
        return state.action_to_string(player, action).lower()

    def parse(self, text: str, state: pyspiel.State, player: int) -> int | None:
        return _poker_parse(text, self.words(state))

    def rules(self, game: pyspiel.Game) -> str:
        raise NotImplementedError

    def prompt(self, state: pyspiel.State, player: int) -> str:
        game = state.get_game()
        n = game.num_players()
        moves = " ".join(self.action_text(state, player, a) for a in state.legal_actions(player))
        lines = [f"{self.rules(game)} You are player {player + 1} of {n}."]
        lines += self.hand_lines(state, player, lambda p: _seat_name(p, player, n))
        lines += [f"Legal moves: {moves}", "Reply with one move."]
        return "\n".join(lines)

    def final(self, state: pyspiel.State, player: int) -> str:
        n = state.get_game().num_players()
        return "\n".join(["Hand over.", *self.hand_lines(state, player, lambda p: _seat_name(p, player, n))])


def _card_names(num_cards: int) -> list[str]:
    return list("JQKA"[:num_cards]) if num_cards <= 4 else [str(c + 1) for c in range(num_cards)]


def _public_moves(state: pyspiel.State) -> list[tuple[int, int, int]]:
    """``(betting round, player, action)`` of every public (non-chance) move of a poker hand; a
    chance move after the deal starts a new betting round. Chance outcomes are not returned."""
    game = state.get_game()
    deals = game.num_players()
    moves, chance_seen, betting_round = [], 0, 0
    for item in state.full_history():
        if item.player < 0:
            chance_seen += 1
            if chance_seen > deals:
                betting_round += 1
            continue
        moves.append((betting_round, int(item.player), int(item.action)))
    return moves


class KuhnPokerRenderer(_HandRenderer):
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
        names = _card_names(game.num_players() + 1)
        return f"Kuhn poker: cards {'<'.join(names)}, one each; ante 1, bets of 1; best card left in wins."

    @staticmethod
    def _bet_made(state: pyspiel.State) -> bool:
        return any(action == 1 for _, _, action in _public_moves(state))

    def words(self, state: pyspiel.State) -> dict[str, int]:
        # OpenSpiel's own names (pass, bet) are accepted everywhere.
        if self._bet_made(state):
            return {"fold": 0, "call": 1, "pass": 0, "bet": 1}
        return {"check": 0, "bet": 1, "pass": 0}

    def hand_lines(self, state: pyspiel.State, player: int, name: Any) -> list[str]:
        game = state.get_game()
        n = game.num_players()
        info = state.information_state_string(player)
        digits = re.match(r"\d+", info)
        card = _card_names(n + 1)[int(digits.group(0))] if digits else "?"
        said, bet, pot = [], False, n
        for _, p, action in _public_moves(state):
            if action == 1:
                said.append(f"{name(p)} {'called' if bet else 'bet'}")
                bet, pot = True, pot + 1
            else:
                said.append(f"{name(p)} {'folded' if bet else 'checked'}")
        lines = [f"Your card: {card}. Pot: {pot}."]
        if said:
            lines.append("Moves: " + ", ".join(said) + ".")
        return lines


class LeducPokerRenderer(_HandRenderer):
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
        ranks = _card_names(game.num_players() + 1)
        deck = " ".join(r for r in ranks for _ in range(2))
        return (
            f"Leduc poker: cards {deck}, one each plus a public card after round 1; ante 1; bets 2 in "
            "round 1, 4 in round 2, at most 2 a round; a pair with the public card wins, else the higher card."
        )

    @staticmethod
    def _raises_this_round(state: pyspiel.State) -> int:
        chance_moves = sum(1 for h in state.full_history() if h.player < 0)
        current = 1 if chance_moves > state.get_game().num_players() else 0  # public card out: round 2
        return sum(1 for r, _, a in _public_moves(state) if min(r, 1) == current and a == 2)

    def words(self, state: pyspiel.State) -> dict[str, int]:
        # OpenSpiel's own names (fold, call, raise) are accepted everywhere.
        if self._raises_this_round(state) == 0:
            return {"fold": 0, "check": 1, "bet": 2, "pass": 1, "call": 1, "raise": 2}
        return {"fold": 0, "call": 1, "raise": 2}

    def hand_lines(self, state: pyspiel.State, player: int, name: Any) -> list[str]:
        game = state.get_game()
        ranks = _card_names(game.num_players() + 1)
        info = state.information_state_string(player)
        private = re.search(r"\[Private: (-?\d+)\]", info)
        public = re.search(r"\[Public: (-?\d+)\]", info)
        pot = re.search(r"\[Pot: (\d+)\]", info)
        money = re.search(r"\[Money: ([\d ]+)\]", info)
        card = ranks[int(private.group(1)) // 2] if private and int(private.group(1)) >= 0 else "?"
        line = f"Your card: {card}."
        if public and int(public.group(1)) >= 0:
            line += f" Public card: {ranks[int(public.group(1)) // 2]}."
        if pot and money and not state.is_terminal():
            stacks = [int(m) for m in money.group(1).split()]
            put_in = 100 - stacks[player] if player < len(stacks) else 0
            line += f" Pot: {int(pot.group(1))}; you have put in {put_in}."
        rounds: list[list[str]] = [[], []]
        raised = [0, 0]
        for r, p, action in _public_moves(state):
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
        return [line] + ([" ".join(said)] if said else [])


class RepeatedPokerRenderer(Renderer):
    """A ``lightspiel_repeated_poker`` match (see :mod:`envs.games`): the hand is shown as by the
    Kuhn or Leduc renderer, below a line with the hand number and the bankrolls.

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
        self._hands = {"kuhn_poker": KuhnPokerRenderer(), "leduc_poker": LeducPokerRenderer()}

    def _hand(self, state: pyspiel.State) -> _HandRenderer:
        return self._hands[state.get_game().base]

    def _short_rules(self, game: pyspiel.Game) -> str:
        names = _card_names(game.num_players() + 1)
        if game.base == "kuhn_poker":
            return f"Kuhn poker (cards {'<'.join(names)}, ante 1, bets of 1)"
        return f"Leduc poker (cards {' '.join(r for r in names for _ in range(2))}, ante 1, bets 2 then 4)"

    def _header(self, state: pyspiel.State, player: int) -> list[str]:
        game = state.get_game()
        n = game.num_players()
        order = [player] + [s for s in range(n) if s != player]
        bank = ", ".join(f"{_seat_name(s, player, n)} {state.bankrolls[s]:g}" for s in order)
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
        inner, inner_player = state.inner, state.inner_player(player)
        moves = " ".join(self.action_text(state, player, a) for a in state.legal_actions(player))
        lines = self._header(state, player)
        lines += self._hand(state).hand_lines(
            inner, inner_player, lambda p: _seat_name(state.seat_of(p), player, n)
        )
        lines += [f"Legal moves: {moves}", "Reply with one move."]
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


# --------------------------------------------------------------------------------------------------
# Liar's dice and the signaling game
# --------------------------------------------------------------------------------------------------

_SPELLED = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}


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
        _LEFT
        + r"(?:([0-9]{1,3})\s?[x*\-]\s?([0-9]{1,3})|([0-9]{1,3}|one|two|three|four|five|six|seven|eight|nine)"
        r"\s+([0-9]{1,3})'?s)" + _RIGHT
    )
    _CHALLENGE = re.compile(_LEFT + r"(liar|challenge)" + _RIGHT)

    @classmethod
    def supports(cls, game: pyspiel.Game) -> bool:
        return int(game.get_parameters().get("dice_sides", 6)) <= 9

    @staticmethod
    def _sizes(game: pyspiel.Game) -> tuple[int, int, int]:
        params = game.get_parameters()
        players = game.num_players()
        return players, int(params.get("numdice", 1)), int(params.get("dice_sides", 6))

    def _liar(self, game: pyspiel.Game) -> int:
        players, dice, sides = self._sizes(game)
        return players * dice * sides

    def action_text(self, state: pyspiel.State, player: int, action: int) -> str:
        _, _, sides = self._sizes(state.get_game())
        if action == self._liar(state.get_game()):
            return "liar"
        return f"{action // sides + 1}x{action % sides + 1}"

    def parse(self, text: str, state: pyspiel.State, player: int) -> int | None:
        game = state.get_game()
        players, dice, sides = self._sizes(game)
        lower = text[:MAX_PARSE_CHARS].lower()
        bid = self._BID.search(lower)
        challenge = self._CHALLENGE.search(lower)
        if challenge is not None and (bid is None or challenge.start() < bid.start()):
            return self._liar(game)
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
        game = state.get_game()
        players, dice, sides = self._sizes(game)
        info = state.information_state_string(player)
        own = info.split(" ", 1)[0] if info else ""
        mine = " ".join(own) if own.isdigit() else "?"
        bids = [
            f"{_seat_name(p, player, players)} {self.action_text(state, p, a)}"
            for p, a in ((int(h.player), int(h.action)) for h in state.full_history() if h.player >= 0)
        ]
        lines = [f"You are player {player + 1}. Your dice: {mine}."]
        if bids:
            lines.append("Bids: " + ", ".join(bids) + ".")
        return lines

    def prompt(self, state: pyspiel.State, player: int) -> str:
        players, dice, sides = self._sizes(state.get_game())
        moves = " ".join(self.action_text(state, player, a) for a in state.legal_actions(player))
        head = [
            f"Liar's dice: {players} players, {dice} {'die' if dice == 1 else 'dice'} each, faces 1-{sides}; "
            f"{sides}s are wild (they count as any face).",
            "A bid QxF says at least Q of all dice show F; each bid must be higher than the last. "
            "Say liar to challenge the last bid.",
        ]
        return "\n".join(
            [*head, *self._lines(state, player), f"Legal moves: {moves}", "Reply with one move."]
        )

    def final(self, state: pyspiel.State, player: int) -> str:
        return "\n".join(["Game over.", *self._lines(state, player)])


#: Names of the signals of the signaling game (beyond these: "signal13", ...).
SIGNALS: tuple[str, ...] = (
    "red",
    "green",
    "blue",
    "yellow",
    "white",
    "black",
    "pink",
    "brown",
    "orange",
    "purple",
    "grey",
    "gold",
)


class LewisSignalingRenderer(Renderer):
    """Lewis signaling game: the sender (seat 0) sees a secret number and sends a signal; the
    receiver (seat 1) sees only the signal and guesses the number. Both seats get the same reward.

    Example prompts::

        Signaling game: you and your partner share the reward. You are the sender: you see a secret
        number from 1 to 3 and send a signal; your partner sees only the signal and guesses the number.
        A correct guess scores 1 for both of you.
        Secret: 2.
        Legal moves: red green blue
        Reply with one signal.

        Signaling game: you and your partner share the reward. You are the receiver: your partner
        saw a secret number from 1 to 3 and sent you a signal; guess the number.
        A correct guess scores 1 for both of you.
        Signal: green.
        Legal moves: 1 2 3
        Reply with one number.

    Action texts: the sender's are signal names (``red``, ``green``, ``blue``, ...; message ``m`` is
    the ``m``-th name), the receiver's the numbers ``1..num_states`` (action ``n - 1``). Accepted
    answers: the sender's first signal name in the answer (whole word, any case); the receiver's
    first standalone number (outside ``1..num_states``: parsed but illegal).
    """

    @staticmethod
    def signal_name(message: int) -> str:
        return SIGNALS[message] if message < len(SIGNALS) else f"signal{message + 1}"

    @staticmethod
    def _sizes(game: pyspiel.Game) -> tuple[int, int]:
        params = game.get_parameters()
        return int(params.get("num_states", 3)), int(params.get("num_messages", 3))

    @staticmethod
    def _payoff_line(game: pyspiel.Game) -> str:
        states, _ = LewisSignalingRenderer._sizes(game)
        raw = str(game.get_parameters().get("payoffs", ""))
        try:
            payoffs = [float(x) for x in raw.split(",")]
        except ValueError:
            payoffs = []
        identity = [1.0 if i == j else 0.0 for i in range(states) for j in range(states)]
        if payoffs == identity:
            return "A correct guess scores 1 for both of you."
        if len(payoffs) == states * states:
            rows = "; ".join(
                f"secret {i + 1}: " + " ".join(f"{payoffs[i * states + j]:g}" for j in range(states))
                for i in range(states)
            )
            return f"Score for both of you by secret and guess 1-{states}: {rows}."
        return "Both of you get the same score."

    def action_text(self, state: pyspiel.State, player: int, action: int) -> str:
        return self.signal_name(action) if player == 0 else str(action + 1)

    def parse(self, text: str, state: pyspiel.State, player: int) -> int | None:
        states, messages = self._sizes(state.get_game())
        if player == 1:
            return _number_choice(text, states)
        names = [self.signal_name(m) for m in range(messages)]
        found = _first_word(text, names)
        if found is None:
            found = _first_word(text, [s for s in SIGNALS if s not in names])
            return None if found is None else INVALID_ACTION
        return names.index(found)

    def _fact(self, state: pyspiel.State, player: int) -> str:
        info = state.information_state_string(player)
        if player == 0:
            secret = re.search(r"State: (\d+)", info)
            return f"Secret: {int(secret.group(1)) + 1}." if secret else "Secret: not drawn yet."
        message = re.search(r"Message: (\d+)", info)
        return f"Signal: {self.signal_name(int(message.group(1)))}." if message else "Signal: none yet."

    def prompt(self, state: pyspiel.State, player: int) -> str:
        game = state.get_game()
        states, _ = self._sizes(game)
        if player == 0:
            role = (
                f"You are the sender: you see a secret number from 1 to {states} and send a signal; "
                "your partner sees only the signal and guesses the number."
            )
            reply = "Reply with one signal."
        else:
            role = (
                f"You are the receiver: your partner saw a secret number from 1 to {states} and sent you "
                "a signal; guess the number."
            )
            reply = "Reply with one number."
        moves = " ".join(self.action_text(state, player, a) for a in state.legal_actions(player))
        return "\n".join(
            [
                f"Signaling game: you and your partner share the reward. {role}",
                self._payoff_line(game),
                self._fact(state, player),
                f"Legal moves: {moves}",
                reply,
            ]
        )

    def final(self, state: pyspiel.State, player: int) -> str:
        return "Game over.\n" + self._fact(state, player)


#: Short OpenSpiel game name -> renderer class. Games not listed get :class:`GenericRenderer`.
RENDERERS: dict[str, type[Renderer]] = {
    "tic_tac_toe": TicTacToeRenderer,
    "connect_four": ConnectFourRenderer,
    "breakthrough": BreakthroughRenderer,
    "kuhn_poker": KuhnPokerRenderer,
    "leduc_poker": LeducPokerRenderer,
    "lightspiel_repeated_poker": RepeatedPokerRenderer,
    "liars_dice": LiarsDiceRenderer,
    "lewis_signaling": LewisSignalingRenderer,
}


def renderer_for(game_name: str | pyspiel.Game) -> Renderer:
    """Return a renderer for a game.

    Args:
        game_name: A short OpenSpiel name (``"tic_tac_toe"``), a game string with parameters
            (``"connect_four(columns=5)"``) or a loaded ``pyspiel.Game``.

    Returns:
        A fresh renderer instance; :class:`GenericRenderer` for games without a dedicated one (or
        whose parameters the dedicated one does not support).
    """
    if isinstance(game_name, pyspiel.Game):
        game = game_name
    else:
        from envs.text_env import load_game  # local: text_env imports this module

        game = load_game(str(game_name).strip())
    cls = RENDERERS.get(_short_name(game), GenericRenderer)
    if not cls.supports(game):
        cls = GenericRenderer
    if cls is GenericRenderer:
        GenericRenderer.check_game(game)
    return cls()
