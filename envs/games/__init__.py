"""One module per game: its renderer, heuristic, the parsing of its information-state strings that
both share, and its :class:`~envs.games.base.GameSpec` (``SPEC``), which :mod:`envs.registry`
collects. :mod:`envs.games.base` holds what the games share; :mod:`envs.games.generic` is the
fallback for any other OpenSpiel game.

Adding a game: see the "Adding a game" steps in docs/architecture.md.
"""
