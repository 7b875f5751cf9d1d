"""Illegal-answer rules, rewards, info fields, episode ends, self-play, seats and validation."""

from __future__ import annotations

import pyspiel
import pytest

from envs import OpenSpielTextEnv, state_from_history
from envs.contract import RESET_INFO_KEYS, STEP_INFO_KEYS

ALWAYS = set(RESET_INFO_KEYS)
STEP = set(STEP_INFO_KEYS)


def test_rule_random():
    env = OpenSpielTextEnv(opponent="random", learner_seat=0, illegal_rule="random", illegal_penalty=0.5)
    obs, info = env.reset(seed=1)
    assert set(info) >= ALWAYS
    obs, reward, terminated, truncated, info = env.step("pass")
    assert set(info) >= STEP
    assert info["outcome"] == "unparsed" and not info["parsed"] and not info["legal"]
    assert info["rule"] == "random" and info["penalty"] == 0.5 and info["retries"] == 1
    assert info["action"] in range(9) and info["action_text"] == str(info["action"] + 1)
    assert info["history"][0] == info["action"]
    assert len(info["opponent_actions"]) == 1 and info["opponent_actions"][0][0] == 1
    assert reward == -0.5 and not terminated and not truncated
    # The next clean answer resets the retry counter.
    _, reward, _, _, info = env.step(obs["legal_actions"][0])
    assert (
        info["outcome"] == "ok" and info["retries"] == 0 and info["penalty"] == 0.0 and info["rule"] is None
    )


def test_rule_forfeit_two_player():
    env = OpenSpielTextEnv(opponent="random", learner_seat=1, illegal_rule="forfeit", illegal_penalty=0.25)
    _, info = env.reset(seed=2)
    history = info["history"]
    obs, reward, terminated, truncated, info = env.step("???")
    assert terminated and not truncated
    assert info["rule"] == "forfeit" and info["outcome"] == "unparsed" and info["action"] is None
    assert info["returns"] == [1.0, -1.0]
    assert info["penalties"] == [0.0, 0.25]
    assert reward == -1.25
    assert info["seat"] == -1 and info["history"] == history and info["opponent_actions"] == []
    assert obs["legal_actions"] == () and obs["seat"] == 1 and "X" in obs["prompt"]
    with pytest.raises(RuntimeError):
        env.step("5")


def test_rule_forfeit_three_player_others_get_zero():
    env = OpenSpielTextEnv(
        game="kuhn_poker(players=3)", opponent="random", learner_seat=2, illegal_rule="forfeit"
    )
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("fold?")
    assert terminated and info["returns"] == [0.0, 0.0, -2.0]  # min_utility of 3-player Kuhn is -2
    assert reward == -3.0


@pytest.mark.parametrize("max_retries", [0, 1, 2])
def test_rule_retry_then_fallback(max_retries):
    env = OpenSpielTextEnv(opponent="random", learner_seat=0, illegal_rule="retry", max_retries=max_retries)
    obs0, info0 = env.reset(seed=5)
    for attempt in range(1, max_retries + 1):
        obs, reward, terminated, truncated, info = env.step("hmm")
        assert obs == obs0 and not terminated and not truncated
        assert info["rule"] == "retry" and info["retries"] == attempt and info["action"] is None
        assert info["action_text"] is None and info["opponent_actions"] == [] and reward == -1.0
        assert info["history"] == info0["history"] and info["seat"] == 0
    obs, reward, terminated, _, info = env.step("hmm")
    assert info["rule"] == "random" and info["retries"] == max_retries + 1 and info["action"] in range(9)
    assert reward == -1.0 and obs != obs0
    _, _, _, _, info = env.step(0)
    assert info["retries"] == 0 and info["rule"] is None


def test_retry_then_success_counts_one_decision():
    env = OpenSpielTextEnv(opponent="random", learner_seat=0, illegal_rule="retry", max_turns=1)
    env.reset(seed=0)
    _, _, _, truncated, _ = env.step("nothing")
    assert not truncated
    _, reward, terminated, truncated, info = env.step("5")
    assert truncated and not terminated and reward == 0.0
    assert info["retries"] == 1 and info["outcome"] == "ok"  # failed answers spent on this decision
    assert info["seat"] == 0 and "returns" in info
    with pytest.raises(RuntimeError):
        env.step("1")


def test_reward_and_returns_at_game_end():
    env = OpenSpielTextEnv(opponent="minimax", learner_seat=0)
    env.reset(seed=0)
    total, terminated = 0.0, False
    while not terminated:
        obs, reward, terminated, _, info = env.step(0)  # lowest free cell: loses to minimax
        total += reward
    assert info["returns"] == [-1.0, 1.0] and total == -1.0 and info["penalties"] == [0.0, 0.0]
    assert info["seat"] == -1 and obs["legal_actions"] == () and obs["seat"] == 0


def test_self_play_both_seats_drive():
    env = OpenSpielTextEnv(opponent="self")
    obs, info = env.reset(seed=4)
    assert info["learner_seat"] == -1 and info["seat"] == 0 and obs["seat"] == 0
    seats, terminated = [], False
    while not terminated:
        seats.append(obs["seat"])
        obs, reward, terminated, _, info = env.step(env.np_random.integers(len(obs["legal_actions"])))
        assert info["learner_seat"] == -1 and info["acting_seat"] == seats[-1]
        assert info["opponent_actions"] == []
    assert seats[:4] == [0, 1, 0, 1]
    # The history holds every move of both seats: replaying it gives the same result, and the seat
    # that made the last move did not lose by it.
    assert list(state_from_history(info["game"], info["history"]).returns()) == info["returns"]
    assert len(info["history"]) == len(seats) and info["returns"][seats[-1]] >= 0.0
    assert reward == info["returns"][seats[-1]]
    with pytest.raises(ValueError, match="learner_seat"):
        env.reset(options={"learner_seat": 0})
    with pytest.raises(ValueError, match="learner_seat"):
        OpenSpielTextEnv(opponent="self", learner_seat=0)


def test_self_play_kuhn_chance_and_returns():
    env = OpenSpielTextEnv(game="kuhn_poker", opponent="self")
    _, info = env.reset(seed=0)
    assert len(info["history"]) == 2  # two cards dealt by chance
    cards = info["history"]
    terminated = False
    while not terminated:
        _, _, terminated, _, info = env.step("Bet")
    # Bet and call: a showdown for 2 chips, won by the higher card.
    assert info["returns"] == ([2.0, -2.0] if cards[0] > cards[1] else [-2.0, 2.0])


def test_learner_seat_draw_and_override():
    env = OpenSpielTextEnv(opponent="random")
    seats = {env.reset(seed=s)[1]["learner_seat"] for s in range(20)}
    assert seats == {0, 1}
    obs, info = env.reset(seed=0, options={"learner_seat": 1})
    assert info["learner_seat"] == 1 and obs["seat"] == 1 and len(info["history"]) == 1
    assert info["opponent_actions"][0][:2] == [0, info["history"][0]]
    fixed = OpenSpielTextEnv(opponent="random", learner_seat=0)
    assert {fixed.reset(seed=s)[1]["learner_seat"] for s in range(5)} == {0}
    for bad in (2, -1, "0", 1.0):
        with pytest.raises(ValueError, match="learner_seat"):
            env.reset(options={"learner_seat": bad})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"seat": 0})


def test_determinism_same_seed_same_episode():
    def episode(seed):
        env = OpenSpielTextEnv(opponent="mcts", mcts_simulations=20, illegal_rule="random")
        obs, info = env.reset(seed=seed)
        trace = [(obs, info)]
        terminated = truncated = False
        while not (terminated or truncated):
            obs, reward, terminated, truncated, info = env.step("gibberish")
            trace.append((obs, reward, info))
        return trace

    assert episode(11) == episode(11)
    assert episode(11) != episode(12)


def test_history_rebuilds_the_decision_state():
    env = OpenSpielTextEnv(game="kuhn_poker", opponent="random", learner_seat=1)
    obs, info = env.reset(seed=3)
    state = state_from_history(info["game"], info["history"])
    assert state.current_player() == obs["seat"] == 1
    assert env.renderer.prompt(state, 1) == obs["prompt"]
    assert str(state) == str(env.state)
    with pytest.raises(ValueError, match="replay"):
        state_from_history("tic_tac_toe", [4, 4])


def test_render_ansi():
    env = OpenSpielTextEnv(opponent="random", learner_seat=0, render_mode="ansi")
    assert env.render() is None
    env.reset(seed=0)
    env.step("5")
    board = env.render()
    assert board.count("\n") == 2 and " X " in board and " O " in board
    assert OpenSpielTextEnv().render() is None


def test_connect_four_plays_to_the_end():
    env = OpenSpielTextEnv(game="connect_four", opponent="random", learner_seat=0)
    obs, _ = env.reset(seed=0)
    assert obs["legal_actions"] == tuple(str(c) for c in range(1, 8))
    terminated = False
    while not terminated:
        obs, reward, terminated, _, info = env.step(f"I drop in {obs['legal_actions'][-1]}")
        assert info["outcome"] == "ok"
    assert reward == info["returns"][0]
    assert list(state_from_history(info["game"], info["history"]).returns()) == info["returns"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"game": "tic_tac_tao"}, "tic_tac_toe"),
        ({"game": "tic_tac_toe(foo=1)"}, "tic_tac_toe\\(foo=1\\)"),
        ({"opponent": "alphazero"}, "opponent"),
        ({"opponent": "heuristic", "game": "hex"}, "tic_tac_toe, connect_four"),
        ({"opponent": "mcts", "game": "matrix_rps"}, "sequential"),
        ({"mcts_determinizations": 0}, "mcts_determinizations"),
        ({"opponent": "minimax", "game": "kuhn_poker"}, "PERFECT_INFORMATION"),
        ({"illegal_rule": "ignore"}, "illegal_rule.*random, forfeit, retry"),
        ({"illegal_penalty": float("nan")}, "illegal_penalty"),
        ({"max_retries": -1}, "max_retries"),
        ({"mcts_simulations": 0}, "mcts_simulations"),
        ({"max_turns": 0}, "max_turns"),
        ({"render_mode": "human"}, "render_mode"),
        ({"learner_seat": 2}, "learner_seat"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OpenSpielTextEnv(**kwargs)


def test_unknown_game_lists_close_names():
    with pytest.raises(ValueError) as err:
        OpenSpielTextEnv(game="conect_four")
    assert "connect_four" in str(err.value) and "conect_four" in str(err.value)
    assert "connect_four" in pyspiel.registered_names()


def test_cooperative_forfeit_costs_every_seat():
    env = OpenSpielTextEnv(game="lewis_signaling", opponent="self", illegal_rule="forfeit")
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("purple?")  # not a signal offered: parsed, illegal
    assert terminated and info["outcome"] == "illegal" and info["returns"] == [0.0, 0.0]
    assert reward == -1.0 and info["penalties"] == [1.0, 0.0]


def test_cooperative_self_play_shares_the_reward():
    env = OpenSpielTextEnv(game="lewis_signaling", opponent="self")
    for seed in range(10):
        obs, _ = env.reset(seed=seed)
        secret = obs["prompt"].split("Secret: ", 1)[1][0]
        obs, reward, _, _, _ = env.step("red")
        assert reward == 0.0 and obs["seat"] == 1
        _, reward, terminated, _, info = env.step(secret)
        assert terminated and info["returns"][0] == info["returns"][1] == reward
