"""What every game module builds on: the :class:`Renderer` base class, answer-parsing helpers, the
poker helpers that Kuhn, Leduc and repeated poker share, and :class:`GameSpec`, the registration
entry each game module ends with (collected by :mod:`envs.registry`).

A renderer is the game-specific text layer between OpenSpiel states and an LLM: it turns a state
into the prompt a seat reads, names actions with short canonical strings, and maps a free-form
answer back to an OpenSpiel action id.

Hidden information: a renderer builds a seat's prompt only from what that seat may know (OpenSpiel's
information-state or observation string for that seat, and the public moves), never from the full
state. The tests check, for every imperfect-information game, that two states the seat cannot tell
apart give the same prompt. Heuristics obey the same rule and read a seat's information through the
same parsing helpers as the game's renderer.

This module imports nothing from lightspiel.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyspiel

__all__ = [
    "INVALID_ACTION",
    "MAX_PARSE_CHARS",
    "GameSpec",
    "Golden",
    "HandRenderer",
    "Heuristic",
    "NumberedRenderer",
    "Renderer",
    "card_names",
    "deterministic",
    "first_word",
    "number_choice",
    "perfect_information",
    "pick",
    "poker_parse",
    "private_view",
    "public_moves",
    "seat_name",
]

#: Returned by :meth:`Renderer.parse` when the answer clearly names a move that cannot exist
#: (e.g. cell 10 in tic-tac-toe). The environment treats it as parsed but illegal.
INVALID_ACTION: int = -1

#: Only this many leading characters of an answer are ever looked at.
MAX_PARSE_CHARS: int = 2048

#: A token boundary: the neighbouring character is not an ASCII letter, digit or underscore.
TOKEN_START = r"(?<![0-9A-Za-z_])"
TOKEN_END = r"(?![0-9A-Za-z_])"
_NUMBER = re.compile(TOKEN_START + r"([0-9]+)" + TOKEN_END)

#: A heuristic: ``(state, acting seat, rng) -> action id``, drawing all randomness from ``rng``.
Heuristic = Callable[[pyspiel.State, int, np.random.Generator], int]


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def perfect_information(game: pyspiel.Game) -> bool:
    """Whether ``game`` is a perfect-information game."""
    return game.get_type().information == pyspiel.GameType.Information.PERFECT_INFORMATION


def number_choice(text: str, count: int) -> int | None:
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


def first_word(text: str, words: list[str] | tuple[str, ...]) -> str | None:
    """The word of ``words`` (lower case) that occurs first in ``text`` as a whole token
    (case-insensitive; the longest wins a tie); ``None`` if none occurs."""
    if not words:
        return None
    pattern = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
    match = re.search(TOKEN_START + "(" + pattern + ")" + TOKEN_END, text[:MAX_PARSE_CHARS].lower())
    return None if match is None else match.group(1)


def seat_name(seat: int, me: int, num_players: int) -> str:
    """How ``me``'s prompt names ``seat``: "you", "opponent" (two players) or "player N"."""
    if seat == me:
        return "you"
    return "opponent" if num_players == 2 else f"player {seat + 1}"


def pick(choices: list[int], rng: np.random.Generator) -> int:
    """One of ``choices``, uniformly at random."""
    return int(choices[int(rng.integers(len(choices)))])


def private_view(state: pyspiel.State, player: int) -> str:
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


# --------------------------------------------------------------------------------------------------
# The renderer base class
# --------------------------------------------------------------------------------------------------


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
        """Whether this renderer can show ``game`` (with its parameters); :func:`envs.renderer_for`
        falls back to the generic renderer otherwise."""
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
        if perfect_information(state.get_game()):
            return self.board(state)
        return "Game over.\n" + private_view(state, player)

    def info(self, state: pyspiel.State) -> dict[str, Any]:
        """Extra public facts for the environment's ``info`` dict (e.g. bankrolls)."""
        return {}

    def moves_line(self, state: pyspiel.State, player: int) -> str:
        """``"Legal moves: ..."``: the action texts of ``player``'s legal actions, space-separated."""
        return "Legal moves: " + " ".join(
            self.action_text(state, player, a) for a in state.legal_actions(player)
        )


class NumberedRenderer(Renderer):
    """A renderer whose moves are the numbers ``1..count`` (action ``n - 1``): cells, columns.

    Accepted answers: the first standalone number (see :func:`number_choice`); a number outside
    ``1..count`` is parsed but illegal; no number is unparsed.
    """

    def count(self, state: pyspiel.State) -> int:
        """How many numbered moves the game has (legal or not)."""
        raise NotImplementedError

    def action_text(self, state: pyspiel.State, player: int, action: int) -> str:
        return str(action + 1)

    def parse(self, text: str, state: pyspiel.State, player: int) -> int | None:
        return number_choice(text, self.count(state))


def deterministic(choose: Callable[[pyspiel.State, int], int]) -> Heuristic:
    """A :data:`Heuristic` from a rule ``choose(state, player)`` that needs no randomness."""

    def heuristic(state: pyspiel.State, player: int, rng: np.random.Generator) -> int:
        return choose(state, player)

    heuristic.__doc__ = choose.__doc__
    return heuristic


# --------------------------------------------------------------------------------------------------
# Poker: shared by Kuhn, Leduc and repeated poker
# --------------------------------------------------------------------------------------------------

#: Every word a poker answer may use; the first one found in an answer is the move.
POKER_WORDS: tuple[str, ...] = ("fold", "check", "call", "bet", "raise", "pass")


def poker_parse(text: str, words: dict[str, int]) -> int | None:
    """First poker word of the answer -> its action in ``words``; other poker words (not available
    in this state) are parsed but illegal."""
    found = first_word(text, POKER_WORDS)
    if found is None:
        return None
    return words.get(found, INVALID_ACTION)


def card_names(num_cards: int) -> list[str]:
    """Names of the ranks of a poker deck of ``num_cards`` ranks, lowest first (J Q K A, or numbers)."""
    return list("JQKA"[:num_cards]) if num_cards <= 4 else [str(c + 1) for c in range(num_cards)]


def public_moves(state: pyspiel.State) -> list[tuple[int, int, int]]:
    """``(betting round, player, action)`` of every public (non-chance) move of a poker hand; a
    chance move after the deal starts a new betting round. Chance outcomes are not returned."""
    deals = state.get_game().num_players()
    moves, chance_seen, betting_round = [], 0, 0
    for item in state.full_history():
        if item.player < 0:
            chance_seen += 1
            if chance_seen > deals:
                betting_round += 1
            continue
        moves.append((betting_round, int(item.player), int(item.action)))
    return moves


class HandRenderer(Renderer):
    """Shared parts of the Kuhn and Leduc renderers: a hand is described by :meth:`hand_lines`,
    which the repeated-poker renderer reuses."""

    def hand_lines(self, state: pyspiel.State, player: int, name: Callable[[int], str]) -> list[str]:
        """What ``player`` knows of the hand: its cards and the moves so far. ``name(p)`` names
        the base game's player ``p`` ("you", "opponent", ...)."""
        raise NotImplementedError

    def words(self, state: pyspiel.State) -> dict[str, int]:
        """Accepted answer words -> action ids in this state."""
        raise NotImplementedError

    def rules(self, game: pyspiel.Game) -> str:
        """The one-line rules at the top of the prompt."""
        raise NotImplementedError

    def action_text(self, state: pyspiel.State, player: int, action: int) -> str:
        for word, act in self.words(state).items():
            if act == action and word != "pass":
                return word
        return state.action_to_string(player, action).lower()

    def parse(self, text: str, state: pyspiel.State, player: int) -> int | None:
        return poker_parse(text, self.words(state))

    def prompt(self, state: pyspiel.State, player: int) -> str:
        game = state.get_game()
        n = game.num_players()
        lines = [f"{self.rules(game)} You are player {player + 1} of {n}."]
        lines += self.hand_lines(state, player, lambda p: seat_name(p, player, n))
        lines += [self.moves_line(state, player), "Reply with one move."]
        return "\n".join(lines)

    def final(self, state: pyspiel.State, player: int) -> str:
        n = state.get_game().num_players()
        return "\n".join(["Hand over.", *self.hand_lines(state, player, lambda p: seat_name(p, player, n))])


# --------------------------------------------------------------------------------------------------
# Registration entries
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Golden:
    """A fixed-seed golden transcript of a game: every prompt of one episode, compared exactly by
    the tests (file ``<name>_seed<seed>.txt`` in the tests' ``golden`` folder).

    Attributes:
        name: The file name's stem before ``_seed``.
        seed: The seed of ``reset`` (and of the random answers).
        kwargs: ``gymnasium.make`` keyword arguments (the test adds ``illegal_rule="retry"`` and
            ``max_retries=2``).
        answers: Scripted learner answers, in order; empty: random legal moves in several answer
            formats, after one unparseable answer.
    """

    name: str
    seed: int
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    answers: tuple[str, ...] = ()

    @property
    def file_name(self) -> str:
        """The golden file's name."""
        return f"{self.name}_seed{self.seed}.txt"


@dataclass(frozen=True)
class GameSpec:
    """One game's registration: everything the registry, the Gymnasium ids, the baselines, the
    docs check and the tests need to know about it.

    Attributes:
        label: Short name (``"kuhn_poker"``): the tournament baselines' and the docs' name of it.
        env_id: The Gymnasium id it is registered under (``"lightspiel/KuhnPoker-v0"``).
        game: The default OpenSpiel game string; ``None`` for the generic id (the caller passes
            ``game=...``).
        renderer: The renderer class (used for every game string whose OpenSpiel short name is that
            of ``game``, when :meth:`Renderer.supports` it).
        heuristic: The heuristic agent's rule, or ``None``.
        defaults: Constructor defaults of the id besides ``game`` (e.g. ``{"opponent": "self"}``).
        baseline: Whether ``python -m envs.tournament_baselines`` plays it (two-player games).
        golden: The golden transcript the tests compare, or ``None``.
    """

    label: str
    env_id: str
    game: str | None
    renderer: type[Renderer]
    heuristic: Heuristic | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    baseline: bool = True
    golden: Golden | None = None

    @property
    def short_name(self) -> str | None:
        """The OpenSpiel short name of :attr:`game` (``None`` for the generic id)."""
        return None if self.game is None else self.game.split("(", 1)[0].strip()

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """Default constructor kwargs of :attr:`env_id` (a fresh dict)."""
        return ({} if self.game is None else {"game": self.game}) | dict(self.defaults)
