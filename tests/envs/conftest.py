"""Fixtures for the envs/ tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pyspiel
import pytest

# This folder is named ``envs`` like the package under test. Pytest puts ``tests/`` on sys.path (the
# conftest files are not in packages), so when the repository root is not on sys.path (``.venv/bin/pytest``
# rather than ``python -m pytest``; the editable install's finder runs after the path finder) ``import envs``
# finds ``tests/envs`` as an empty namespace package. With the root anywhere on sys.path the real package
# wins, so make sure it is there.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


@pytest.fixture(scope="session")
def ttt_game() -> pyspiel.Game:
    return pyspiel.load_game("tic_tac_toe")


def ttt_state(moves: list[int]) -> pyspiel.State:
    """Tic-tac-toe state after ``moves`` (OpenSpiel action ids, 0-8, X first)."""
    state = pyspiel.load_game("tic_tac_toe").new_initial_state()
    for move in moves:
        state.apply_action(move)
    return state


@pytest.fixture
def make_ttt_state():
    """Build a tic-tac-toe state from a list of action ids."""
    return ttt_state
