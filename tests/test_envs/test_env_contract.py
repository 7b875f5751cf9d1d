"""The env contract (envs.contract): the check catches broken envs, and the ``history`` reset option
(failure replay) starts an episode where a saved one was. Every registered id is checked against
the contract in test_env_checker.py."""

from __future__ import annotations

import gymnasium
import pytest

from envs import OpenSpielTextEnv, check_env_contract, state_from_history
from envs.contract import FINAL_INFO_KEYS, RESET_INFO_KEYS, STEP_INFO_KEYS


class _DropKey(gymnasium.Wrapper):
    """Removes one key from every step's info."""

    def __init__(self, env, key: str):
        super().__init__(env)
        self.key = key

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info.pop(self.key, None)
        return obs, reward, terminated, truncated, info


class _BonusReward(gymnasium.Wrapper):
    """Pays 0.5 more than the game does on every step."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward + 0.5, terminated, truncated, info


class _IgnoreHistory(gymnasium.Wrapper):
    """Accepts the ``history`` option but starts from the initial state anyway."""

    def reset(self, *, seed=None, options=None):
        options = {k: v for k, v in (options or {}).items() if k != "history"}
        return self.env.reset(seed=seed, options=options)


@pytest.mark.parametrize("key", ["history", "outcome", "acting_seat", "penalties"])
def test_contract_names_a_missing_info_key(key):
    env = _DropKey(OpenSpielTextEnv(game="kuhn_poker"), key)
    with pytest.raises(AssertionError, match=key):
        check_env_contract(env, seeds=(0,))


def test_contract_catches_rewards_that_do_not_add_up():
    with pytest.raises(AssertionError, match="rewards sum"):
        check_env_contract(_BonusReward(OpenSpielTextEnv()), seeds=(0,))


def test_contract_catches_an_ignored_history_option():
    with pytest.raises(AssertionError, match="history"):
        check_env_contract(_IgnoreHistory(OpenSpielTextEnv(game="connect_four")), seeds=(0,))


def test_info_keys_of_the_contract():
    env = OpenSpielTextEnv(game="leduc_poker", opponent="random", learner_seat=0)
    _, info = env.reset(seed=0)
    assert set(RESET_INFO_KEYS) <= set(info) and not set(FINAL_INFO_KEYS) & set(info)
    done, steps = False, 0
    while not done:
        _, _, terminated, truncated, info = env.step("call")
        done, steps = terminated or truncated, steps + 1
        assert set(STEP_INFO_KEYS) <= set(info)
        assert bool(set(FINAL_INFO_KEYS) & set(info)) == done
    assert steps >= 2 and set(FINAL_INFO_KEYS) <= set(info)


# ------------------------------------------------------------------ reset(options={"history": ...})


def _decision_points(env, seed: int):
    """(observation, info) at every learner decision of one episode answered with index 0."""
    obs, info = env.reset(seed=seed)
    points, done = [], False
    while not done:
        points.append((obs, info))
        obs, _, terminated, truncated, info = env.step(0)
        done = terminated or truncated
    return points


@pytest.mark.parametrize(
    ("game", "opponent"),
    [("tic_tac_toe", "random"), ("leduc_poker", "heuristic"), ("goofspiel(num_cards=3)", "self")],
)
def test_reset_from_history_resumes_the_episode(game, opponent):
    env = OpenSpielTextEnv(game=game, opponent=opponent)
    points = _decision_points(env, seed=3)
    assert len(points) >= 2
    for obs, info in points[1:]:
        seat = {} if opponent == "self" else {"learner_seat": info["learner_seat"]}
        replayed, replay_info = env.reset(seed=99, options={"history": info["history"], **seat})
        # Answers held back at a simultaneous-move node are not in the history: the replay asks the
        # first seat again.
        if not info["simultaneous"] or obs["seat"] == replayed["seat"]:
            assert replayed == obs
        assert replay_info["history"] == info["history"] and replay_info["opponent_actions"] == []


def test_reset_from_history_then_opponents_and_chance_move():
    env = OpenSpielTextEnv(game="kuhn_poker", opponent="heuristic", learner_seat=1)
    # Cards dealt (J to seat 0, K to seat 1): seat 0, the heuristic, moves before the learner does.
    obs, info = env.reset(seed=0, options={"history": [0, 2]})
    assert info["opponent_actions"] == [[0, 0, "check"]] and info["history"] == [0, 2, 0]
    assert obs["seat"] == 1 and "Your card: K." in obs["prompt"]
    # Only the first card dealt: chance deals the second from the seeded generator.
    _, info = env.reset(seed=0, options={"history": [1]})
    assert info["history"][0] == 1 and len(info["history"]) >= 2 and info["history"][1] in (0, 2)


def test_reset_from_a_finished_history_ends_at_once():
    env = OpenSpielTextEnv(game="tic_tac_toe", opponent="random", learner_seat=0)
    history = [0, 3, 1, 4, 2]  # X completes the top row
    obs, info = env.reset(seed=0, options={"history": history})
    assert info["returns"] == [1.0, -1.0] and info["seat"] == -1 and obs["legal_actions"] == ()
    with pytest.raises(RuntimeError):
        env.step("5")
    assert str(state_from_history("tic_tac_toe", history)) == str(env.state)


@pytest.mark.parametrize(
    ("history", "match"),
    [
        ("0 4", "options\\['history'\\] must be a list"),
        ([0, "4"], "options\\['history'\\] must be a list"),
        ([0, True], "options\\['history'\\] must be a list"),
        ([4, 4], "options\\['history'\\] cannot be replayed.*position 1"),
        ([9], "options\\['history'\\] cannot be replayed"),
    ],
)
def test_bad_history_option_is_named(history, match):
    env = OpenSpielTextEnv()
    with pytest.raises(ValueError, match=match):
        env.reset(seed=0, options={"history": history})


def test_unknown_reset_option_lists_the_valid_ones():
    with pytest.raises(
        ValueError, match="unknown reset options \\['start'\\]; valid options: 'learner_seat', 'history'"
    ):
        OpenSpielTextEnv().reset(options={"start": []})
