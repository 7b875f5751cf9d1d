"""Fixtures for the envs/ tests."""

from __future__ import annotations

import pyspiel
import pytest


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
