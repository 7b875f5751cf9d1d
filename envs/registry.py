"""The one list of lightspiel's games (:data:`GAMES`) and everything read from it.

Each game module under :mod:`envs.games` ends with a :class:`~envs.games.base.GameSpec`; this module
collects them, in the order of :data:`REGISTERED_IDS`. The Gymnasium ids and their defaults, the
renderer and heuristic of each OpenSpiel game, the tournament baselines' games, docs/games.md's list
of ids and the tests' golden transcripts all come from :data:`GAMES` (the tests check the docs and
the golden folder against it).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import pyspiel

from envs.games import (
    breakthrough,
    connect_four,
    generic,
    kuhn_poker,
    leduc_poker,
    lewis_signaling,
    liars_dice,
    repeated_poker,
    tic_tac_toe,
)
from envs.games.base import GameSpec, Heuristic, Renderer

__all__ = [
    "BASELINE_GAMES",
    "ENTRY_POINT",
    "GAMES",
    "GAME_IDS",
    "HEURISTICS",
    "HEURISTIC_GAMES",
    "REGISTERED_IDS",
    "RENDERERS",
    "env_kwargs",
    "register_gymnasium_ids",
    "renderer_class",
    "spec_for",
]

#: Every registered game, in the order of :data:`REGISTERED_IDS`. Adding a game: add its ``SPEC``.
GAMES: tuple[GameSpec, ...] = (
    tic_tac_toe.SPEC,
    generic.SPEC,
    connect_four.SPEC,
    kuhn_poker.SPEC,
    leduc_poker.SPEC,
    repeated_poker.SPEC,
    liars_dice.SPEC,
    lewis_signaling.SPEC,
    breakthrough.SPEC,
)

#: The Gymnasium entry point of every registered id.
ENTRY_POINT: str = "envs.text_env:OpenSpielTextEnv"


def _check_unique(games: tuple[GameSpec, ...]) -> None:
    """Raise ``ValueError`` when two specs share an id, a label, an OpenSpiel game or a golden file."""
    keys = {
        "env_id": [g.env_id for g in games],
        "label": [g.label for g in games],
        "OpenSpiel short name": [g.short_name for g in games if g.short_name is not None],
        "golden file": [g.golden.file_name for g in games if g.golden is not None],
    }
    for what, values in keys.items():
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"envs.registry: two games share the {what} {', '.join(repeated)}")


_check_unique(GAMES)

#: Every Gymnasium id this package registers.
REGISTERED_IDS: list[str] = [g.env_id for g in GAMES]

#: Registered id -> its default game string (every id but ``lightspiel/OpenSpiel-v0``).
GAME_IDS: dict[str, str] = {g.env_id: g.game for g in GAMES if g.game is not None}

#: Short OpenSpiel game name -> renderer class. Games not listed get the generic renderer.
RENDERERS: dict[str, type[Renderer]] = {g.short_name: g.renderer for g in GAMES if g.short_name is not None}

#: Short OpenSpiel game name -> heuristic ``(state, player, rng) -> action``.
HEURISTICS: dict[str, Heuristic] = {g.short_name: g.heuristic for g in GAMES if g.heuristic is not None}

#: Games that have a heuristic agent.
HEURISTIC_GAMES: tuple[str, ...] = tuple(HEURISTICS)

#: Short label -> game string, for every two-player game with a registered id (the tournament
#: baselines' games).
BASELINE_GAMES: dict[str, str] = {g.label: g.game for g in GAMES if g.baseline and g.game is not None}

_BY_ID: dict[str, GameSpec] = {g.env_id: g for g in GAMES}


def spec_for(env_id: str) -> GameSpec:
    """The spec of a registered id.

    Raises:
        ValueError: Unknown id (the message lists the registered ones).
    """
    if env_id not in _BY_ID:
        raise ValueError(f"unknown env id {env_id!r}; registered: {', '.join(REGISTERED_IDS)}")
    return _BY_ID[env_id]


def env_kwargs(env_id: str) -> dict[str, Any]:
    """The default constructor kwargs of a registered id (a copy)."""
    return spec_for(env_id).env_kwargs


def renderer_class(game: pyspiel.Game) -> type[Renderer]:
    """The renderer class for a loaded game: its game's own, or the generic one for games without
    one (or whose parameters their own does not support).

    Raises:
        ValueError: The generic renderer would have to show a game that hides information without
            saying what a seat may see.
    """
    cls = RENDERERS.get(game.get_type().short_name, generic.GenericRenderer)
    if not cls.supports(game):
        cls = generic.GenericRenderer
    if cls is generic.GenericRenderer:
        generic.GenericRenderer.check_game(game)
    return cls


def register_gymnasium_ids() -> None:
    """Register every id of :data:`GAMES` with Gymnasium (idempotent)."""
    for spec in GAMES:
        if spec.env_id not in gymnasium.registry:
            gymnasium.register(spec.env_id, entry_point=ENTRY_POINT, kwargs=spec.env_kwargs)
