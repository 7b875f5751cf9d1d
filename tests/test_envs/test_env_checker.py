"""Gymnasium API compliance, the lightspiel env contract (envs.contract) and registration."""

from __future__ import annotations

import importlib
import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs import GAME_IDS, REGISTERED_IDS, check_env_contract, env_kwargs
from envs.contract import LightspielEnv

CASES = [(env_id, {}) for env_id in REGISTERED_IDS] + [
    ("lightspiel/OpenSpiel-v0", {"game": "breakthrough(rows=5,columns=4)"}),
    ("lightspiel/OpenSpiel-v0", {"game": "kuhn_poker(players=3)"}),
    ("lightspiel/OpenSpiel-v0", {"game": "goofspiel(num_cards=3)"}),  # simultaneous moves
    ("lightspiel/TicTacToe-v0", {"opponent": "self", "illegal_rule": "retry"}),
    ("lightspiel/TicTacToe-v0", {"opponent": "minimax", "illegal_rule": "forfeit"}),
    ("lightspiel/KuhnPoker-v0", {"opponent": "heuristic", "illegal_rule": "forfeit"}),
    ("lightspiel/RepeatedPoker-v0", {"game": "lightspiel_repeated_poker(base=leduc_poker,rounds=2)"}),
    ("lightspiel/LiarsDice-v0", {"opponent": "mcts", "mcts_simulations": 8}),
]


@pytest.mark.parametrize(("env_id", "kwargs"), CASES)
def test_check_env_and_contract(env_id, kwargs):
    """Every registered id (and some variants) passes Gymnasium's checker and keeps the lightspiel
    env contract."""
    env = gymnasium.make(env_id, disable_env_checker=True, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    assert isinstance(env.unwrapped, LightspielEnv)
    check_env_contract(env, seeds=(0, 1))
    env.close()


def test_registered_ids():
    assert REGISTERED_IDS == [
        "lightspiel/TicTacToe-v0",
        "lightspiel/OpenSpiel-v0",
        "lightspiel/ConnectFour-v0",
        "lightspiel/KuhnPoker-v0",
        "lightspiel/LeducPoker-v0",
        "lightspiel/RepeatedPoker-v0",
        "lightspiel/LiarsDice-v0",
        "lightspiel/LewisSignaling-v0",
        "lightspiel/Breakthrough-v0",
    ]
    assert gymnasium.make("lightspiel/TicTacToe-v0").unwrapped.game_name == "tic_tac_toe"
    env = gymnasium.make("lightspiel/OpenSpiel-v0", game="breakthrough(rows=6,columns=6)")
    assert env.unwrapped.game_name == "breakthrough(rows=6,columns=6)"
    for env_id, game in GAME_IDS.items():
        assert gymnasium.make(env_id).unwrapped.game_name == game
    assert gymnasium.make("lightspiel/LewisSignaling-v0").unwrapped.self_play
    assert env_kwargs("lightspiel/KuhnPoker-v0") == {"game": "kuhn_poker"}
    with pytest.raises(ValueError, match="registered"):
        env_kwargs("lightspiel/Chess-v0")


def test_registration_is_idempotent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(envs)
        importlib.reload(envs)
    for env_id in REGISTERED_IDS:
        assert env_id in gymnasium.registry
