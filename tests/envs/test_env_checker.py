"""Gymnasium API compliance and registration."""

from __future__ import annotations

import importlib
import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs import REGISTERED_IDS, OpenSpielTextEnv

CASES = [(env_id, {}) for env_id in REGISTERED_IDS] + [
    ("lightspiel/OpenSpiel-v0", {"game": "connect_four"}),
    ("lightspiel/OpenSpiel-v0", {"game": "kuhn_poker"}),
    ("lightspiel/TicTacToe-v0", {"opponent": "self", "illegal_rule": "retry"}),
    ("lightspiel/TicTacToe-v0", {"opponent": "minimax", "illegal_rule": "forfeit"}),
]


@pytest.mark.parametrize(("env_id", "kwargs"), CASES)
def test_check_env(env_id, kwargs):
    env = gymnasium.make(env_id, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    assert isinstance(env.unwrapped, OpenSpielTextEnv)
    env.close()


def test_registered_ids():
    assert REGISTERED_IDS == ["lightspiel/TicTacToe-v0", "lightspiel/OpenSpiel-v0"]
    assert gymnasium.make("lightspiel/TicTacToe-v0").unwrapped.game_name == "tic_tac_toe"
    env = gymnasium.make("lightspiel/OpenSpiel-v0", game="connect_four")
    assert env.unwrapped.game_name == "connect_four"


def test_registration_is_idempotent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(envs)
        importlib.reload(envs)
    for env_id in REGISTERED_IDS:
        assert env_id in gymnasium.registry
