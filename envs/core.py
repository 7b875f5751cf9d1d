"""Loading games and rebuilding states, and what a seat is shown: the helpers the environment, the
pair builders and the exploitability code share.

- :func:`load_game`: an OpenSpiel game from its game string (cached, with errors that say what to
  fix); lightspiel's own games (:mod:`envs.games.repeated_poker`) are registered with ``pyspiel``
  once :mod:`envs.registry` is imported, which this module does.
- :func:`state_from_history`: the state an ``info["history"]`` describes.
- :func:`renderer_for`: the renderer of a game (from :mod:`envs.registry`).
- :func:`observe`: exactly the ``prompt`` and ``legal_actions`` the environment shows a seat.
"""

from __future__ import annotations

import difflib
import functools
import string

import pyspiel

from envs.games.base import Renderer
from envs.registry import renderer_class

__all__ = [
    "ACTION_CHARSET",
    "CHARSET",
    "MAX_ACTION_TEXT_CHARS",
    "MAX_ANSWER_CHARS",
    "MAX_PROMPT_CHARS",
    "clean",
    "load_game",
    "observe",
    "renderer_for",
    "state_from_history",
]

#: Characters that may appear in prompts and action strings: printable ASCII plus newline.
#: Any other character coming out of a renderer is replaced (tab -> space, others -> ``?``).
CHARSET: str = "".join(chr(c) for c in range(0x20, 0x7F)) + "\n"
#: Characters of the declared action space: printable ASCII plus whitespace (``step`` accepts any
#: ``str`` regardless).
ACTION_CHARSET: str = string.printable

MAX_PROMPT_CHARS: int = 8192
MAX_ACTION_TEXT_CHARS: int = 256
#: ``step`` hands at most this many leading characters of a text answer to the renderer.
MAX_ANSWER_CHARS: int = 4096

_CHARSET_SET = frozenset(CHARSET)


def clean(text: str, limit: int) -> str:
    """Force ``text`` into :data:`CHARSET` and at most ``limit`` characters."""
    if not all(c in _CHARSET_SET for c in text):
        text = "".join(
            c if c in _CHARSET_SET else (" " if c == "\t" else "?") for c in text.replace("\r", "")
        )
    return text[:limit]


def _parameter_help(name: str) -> str:
    """``"rows (int, default 8), columns (int, default 8)"`` for a registered game name."""
    for game_type in pyspiel.registered_games():
        if game_type.short_name == name:
            spec = game_type.parameter_specification
            if not spec:
                return f"{name} takes no parameters"
            items = [
                f"{key} ({type(value).__name__}, default {value!r})" for key, value in sorted(spec.items())
            ]
            return f"{name} takes: {', '.join(items)}"
    return f"no parameter list found for {name}"


@functools.lru_cache(maxsize=128)
def load_game(game: str) -> pyspiel.Game:
    """Load (and cache) an OpenSpiel game from its game string, e.g. ``"connect_four"`` or
    ``"breakthrough(rows=6,columns=6)"``.

    Args:
        game: An OpenSpiel game string (any registered game, lightspiel's own included).

    Returns:
        The loaded game.

    Raises:
        ValueError: Unknown game name (the message names the string and lists close registered
            names, or all of them), or parameters OpenSpiel rejects (the message names the string,
            says what was wrong and lists the game's parameters with their types and defaults).
    """
    if not isinstance(game, str):
        raise ValueError(f"game must be an OpenSpiel game string, got {game!r}")
    name = game.split("(", 1)[0].strip()
    registered = pyspiel.registered_names()
    if name not in registered:
        close = difflib.get_close_matches(name, registered, n=5, cutoff=0.5)
        if close:
            hint = f"did you mean {', '.join(repr(c) for c in close)}?"
        else:
            hint = f"OpenSpiel offers: {', '.join(sorted(registered))}"
        raise ValueError(f"unknown OpenSpiel game {game!r}; {hint}")
    try:
        return pyspiel.load_game(game.strip())
    except Exception as err:  # SpielError, ValueError, IndexError (nfg_game), ...
        reason = " ".join(str(err).split())
        raise ValueError(f"cannot load OpenSpiel game {game!r}: {reason}. {_parameter_help(name)}") from err


def state_from_history(game: str, history: list[int]) -> pyspiel.State:
    """Rebuild a state by replaying ``history`` (e.g. ``info["history"]``) from the initial state.

    At a simultaneous-move node the next ``num_players`` entries are the joint action (OpenSpiel's
    ``state.history()`` lists one action per player there).

    Args:
        game: The OpenSpiel game string (e.g. ``info["game"]``).
        history: Action ids as returned by ``state.history()``.

    Returns:
        A fresh ``pyspiel.State``.

    Raises:
        ValueError: Unknown game, or an action that is not legal where it is replayed.
    """
    state = load_game(game).new_initial_state()
    players = state.get_game().num_players()
    i = 0
    while i < len(history):
        try:
            if state.is_simultaneous_node():
                joint = [int(a) for a in history[i : i + players]]
                if len(joint) < players:
                    raise ValueError(f"history ends inside a joint action at position {i} of {game!r}")
                for seat, action in enumerate(joint):
                    _check_legal(state, seat, action, i + seat, game)
                state.apply_actions(joint)
                i += players
            else:
                _check_legal(state, None, int(history[i]), i, game)
                state.apply_action(int(history[i]))
                i += 1
        except pyspiel.SpielError as err:
            raise ValueError(
                f"cannot replay action {history[i]!r} at position {i} of {game!r}: {err}"
            ) from err
    return state


def _check_legal(state: pyspiel.State, seat: int | None, action: int, position: int, game: str) -> None:
    """Raise ``ValueError`` unless ``action`` is legal for ``seat`` (``None``: the player to move,
    chance included) at ``state``. A seat with no legal actions at a simultaneous-move node is not
    checked (OpenSpiel records a placeholder for it)."""
    if state.is_terminal():
        raise ValueError(
            f"cannot replay action {action!r} at position {position} of {game!r}: the game is over"
        )
    legal = state.legal_actions() if seat is None else state.legal_actions(seat)
    if (legal or seat is None) and action not in legal:
        raise ValueError(
            f"cannot replay action {action!r} at position {position} of {game!r}: not a legal action there"
        )


def renderer_for(game_name: str | pyspiel.Game) -> Renderer:
    """Return a renderer for a game.

    Args:
        game_name: A short OpenSpiel name (``"tic_tac_toe"``), a game string with parameters
            (``"connect_four(columns=5)"``) or a loaded ``pyspiel.Game``.

    Returns:
        A fresh renderer instance; the generic renderer for games without a dedicated one (or
        whose parameters the dedicated one does not support).
    """
    game = game_name if isinstance(game_name, pyspiel.Game) else load_game(str(game_name).strip())
    return renderer_class(game)()


def observe(
    state: pyspiel.State, seat: int, renderer: Renderer | None = None
) -> tuple[str, list[int], tuple[str, ...]]:
    """What the environment shows ``seat`` at a decision state: exactly its ``prompt`` and
    ``legal_actions`` (cleaned and capped as in observations), plus the legal action ids.

    Args:
        state: A state where ``seat`` has to move.
        seat: The seat.
        renderer: The renderer to use (default: ``renderer_for(state.get_game())``).

    Returns:
        ``(prompt, legal action ids, legal action texts)``.
    """
    renderer = renderer_for(state.get_game()) if renderer is None else renderer
    legal = [int(a) for a in state.legal_actions(seat)]
    texts = []
    for a in legal:
        text = clean(renderer.action_text(state, seat, a), MAX_ACTION_TEXT_CHARS)
        texts.append(text or str(a))
    return clean(renderer.prompt(state, seat), MAX_PROMPT_CHARS), legal, tuple(texts)
