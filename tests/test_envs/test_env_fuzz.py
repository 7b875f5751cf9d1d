"""Fuzz: thousands of random text and index answers on every registered game, under every
illegal-answer rule. Nothing crashes, every episode ends, observations stay in the observation
space, the learner's rewards add up to its return minus its penalties, a forfeit pays what the rule
says and the cooperative game pays every seat the same."""

from __future__ import annotations

import math
import zlib

import gymnasium
import numpy as np
import pyspiel
import pytest

from envs import HEURISTIC_GAMES, REGISTERED_IDS

GARBAGE = [
    "",
    " ",
    "\n\n",
    "5" * 20_000,
    "a" * 20_000 + " call",
    "\x00\x01\x02\xff\xfe" * 50,
    "".join(chr(c) for c in range(0, 0x800)),
    "\ud800\udfff broken surrogates",
    "我认为最好的一步是中间。",
    "Je joue la case cinq.",
    "Ich erhöhe.",
    "\u0665",
    "-1",
    "1e9",
    "None",
    "[[[[((((",
    "liar liar",
    "fold call raise",
    "2x9999999999999999999",
    "a9z1",
    "red green",
    "0x0",
    "99 99s",
]

CASES = [(env_id, {}) for env_id in REGISTERED_IDS] + [
    ("lightspiel/OpenSpiel-v0", {"game": "goofspiel(num_cards=3)"}),
    ("lightspiel/OpenSpiel-v0", {"game": "kuhn_poker(players=3)"}),
    ("lightspiel/RepeatedPoker-v0", {"game": "lightspiel_repeated_poker(base=leduc_poker,rounds=2)"}),
]


def _answer(rng: np.random.Generator, legal: tuple[str, ...]):
    roll = rng.random()
    if roll < 0.3:
        return int(rng.integers(-2, len(legal) + 2))
    if roll < 0.55 and legal:
        move = legal[int(rng.integers(len(legal)))]
        style = int(rng.integers(4))
        return [move, move.upper(), f"I think {move} is best.", f"**{move}**\n"][style]
    if roll < 0.75:
        return GARBAGE[int(rng.integers(len(GARBAGE)))]
    if roll < 0.85:
        return bytes(rng.integers(0, 256, size=int(rng.integers(0, 40)), dtype=np.uint8))
    length = int(rng.integers(0, 30))
    return "".join(chr(int(c)) for c in rng.integers(1, 0x3000, size=length))


@pytest.mark.parametrize("rule", ["random", "forfeit", "retry"])
@pytest.mark.parametrize(("env_id", "kwargs"), CASES, ids=[f"{e}-{k.get('game', '')}" for e, k in CASES])
def test_fuzz_random_answers(env_id, kwargs, rule):
    env = gymnasium.make(env_id, illegal_rule=rule, disable_env_checker=True, **kwargs).unwrapped
    has_heuristic = env.game.get_type().short_name in HEURISTIC_GAMES and not env.self_play
    rng = np.random.default_rng(zlib.crc32(f"{env_id}{kwargs}{rule}".encode()))
    steps = 0
    for episode in range(40):
        if has_heuristic and episode % 3 == 2:
            env = gymnasium.make(
                env_id, illegal_rule=rule, opponent="heuristic", disable_env_checker=True, **kwargs
            ).unwrapped
        obs, info = env.reset(seed=episode)
        done, rewards = "returns" in info, []
        for _ in range(2_000):
            if done:
                break
            obs, reward, terminated, truncated, info = env.step(_answer(rng, obs["legal_actions"]))
            steps += 1
            rewards.append(reward)
            assert obs in env.observation_space
            assert info["outcome"] in ("ok", "illegal", "unparsed")
            assert info["legal"] == (info["outcome"] == "ok")
            assert info["penalty"] == (0.0 if info["legal"] else 1.0)
            done = terminated or truncated
        assert done, f"{env_id} episode {episode} did not end"
        _check_end(env, info, rewards)
    assert steps >= 40


def _check_end(env, info: dict, rewards: list[float]) -> None:
    """The end of an episode: one return and penalty per seat, the learner's rewards add up to its
    return minus its penalties, and a forfeit pays what the rule says."""
    returns = info["returns"]
    assert len(returns) == env.num_players and len(info["penalties"]) == env.num_players
    learner = info["learner_seat"]
    if learner >= 0:
        assert math.fsum(rewards) == pytest.approx(returns[learner] - info["penalties"][learner])
    if env.cooperative:
        assert len(set(returns)) == 1, returns
    if info.get("rule") == "forfeit":
        loser = info["acting_seat"]
        assert returns[loser] == env.game.min_utility()
        zero_sum = env.game.get_type().utility == pyspiel.GameType.Utility.ZERO_SUM
        if zero_sum and env.num_players == 2:
            assert returns[1 - loser] == -returns[loser], returns
        elif not env.cooperative:
            assert all(r == 0.0 for s, r in enumerate(returns) if s != loser), returns
