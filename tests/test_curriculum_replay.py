"""Curriculum and failure replay: the plain classes on hand-built episodes, no Trainer.

The callbacks' hooks are exercised with stand-in trainer, datamodule and module objects; the fit
through a real datamodule is tested elsewhere.
"""

from __future__ import annotations

import itertools
import json
import warnings
from types import SimpleNamespace

import gymnasium
import numpy as np
import pytest

import envs  # noqa: F401  (registers the lightspiel ids)
from callbacks.curriculum import DEFAULT_STAGES, Curriculum, CurriculumSchedule, Stage
from callbacks.failure_replay import FailureReplay, ReplayBuffer
from datamodules.records import Episode, Turn
from modules.errors import ConfigError

TTT = "lightspiel/TicTacToe-v0"
C4 = "lightspiel/ConnectFour-v0"
_ids = itertools.count()


def turn(seat: int, history: list[int], legal: bool = True, learner: bool = True) -> Turn:
    return Turn(
        seat=seat,
        prompt=f"state {history}",
        legal_actions=["a", "b"],
        completion="a" if legal else "zz",
        action=0 if legal else None,
        action_text="a" if legal else None,
        parsed=True,
        legal=legal,
        outcome="ok" if legal else "illegal",
        rule=None if legal else "random",
        history=list(history),
        reward=0.0,
        learner=learner,
    )


def game(
    ret: float,
    seat: int = 0,
    env: str = TTT,
    opponent: str = "random",
    penalty: float = 0.0,
    turns: list[Turn] | None = None,
    start: list[int] | None = None,
    seed: int | None = None,
    truncated: bool = False,
) -> Episode:
    """A two-seat game whose learner (``seat``; -1: self-play, seat 0's view) returned ``ret``."""
    k = next(_ids)
    returns = [ret, -ret] if seat <= 0 else [-ret, ret]
    penalties = [0.0, 0.0]
    penalties[max(seat, 0)] = penalty
    if turns is None:
        s = max(seat, 0)
        turns = [turn(s, [k, 1]), turn(s, [k, 1, 2, 3])]
    return Episode(
        episode_id=f"ep{k}",
        game="tic_tac_toe",
        env_id=env,
        seed=k if seed is None else seed,
        opponent="self" if seat < 0 else opponent,
        learner_seat=seat,
        turns=turns,
        returns=returns,
        penalties=penalties,
        truncated=truncated,
        start_history=list(start or []),
    )


def stage(name: str = "a", **kw) -> dict:
    return {"name": name, "env": TTT, "env_kwargs": {"opponent": "random"}, **kw}


# ---------------------------------------------------------------------------------------- curriculum


def test_stage_advances_exactly_when_the_windowed_metric_reaches_the_threshold():
    s = CurriculumSchedule([stage("easy", threshold=0.6, window=5), stage("hard", threshold=0.5)])
    s.record([game(1), game(-1), game(1), game(-1)])
    advance, reason = s.decide()
    assert not advance  # 0.5 over 4 games: too few games (min_games = window = 5)
    assert "4 game(s)" in reason and "5 game(s) needed" in reason
    s.record([game(-1)])  # 2/5 = 0.4
    assert s.decide()[0] is False
    s.record([game(1)])  # window slides: L W L L W = 0.4
    advance, reason = s.decide()
    assert not advance and "0.400 over 5 game(s) < threshold 0.6" in reason
    s.record([game(1)])  # W L L W W = 0.6: reaches the threshold
    advance, reason = s.decide()
    assert advance
    assert reason == ("stage 1/2 'easy': win_rate 0.600 over 5 game(s) >= threshold 0.6; advancing to 'hard'")
    assert s.advance().name == "hard" and s.index == 1 and len(s.window) == 0


def test_min_games_and_non_loss_and_mean_score_metrics():
    s = CurriculumSchedule([stage("a", metric="non_loss_rate", threshold=1.0, window=10, min_games=2)])
    assert s.current.min_games == 2
    s.record([game(0)])
    assert not s.decide()[0]  # one game < min_games
    s.record([game(0)])
    assert s.value() == 1.0  # draws are non-losses
    m = CurriculumSchedule([stage("m", metric="mean_score", threshold=-0.5, window=2), stage("n")])
    m.record([game(1, penalty=2.0), game(0)])  # scores -1 and 0: mean -0.5
    assert m.value() == -0.5 and m.decide()[0]
    m2 = CurriculumSchedule([stage("m", metric="mean_score", threshold=-0.5, window=2), stage("n")])
    m2.record([game(1, penalty=2.0), game(-1)])  # mean -1.5
    assert not m2.decide()[0]


def test_only_the_current_stages_finished_learner_games_count_and_a_batch_counts_once():
    s = CurriculumSchedule([stage("a", window=3)])
    others = [
        game(1, env=C4),
        game(1, opponent="mcts"),
        game(1, seat=-1),  # self-play: no learner outcome
        game(1, truncated=True),
        game(-1, start=[4, 0]),  # a replayed failure: the stage's hardest spot, not one of its games
    ]
    assert s.record(others) == 0 and s.value() is None
    batch = [game(1), game(-1, seat=1)]
    assert s.record(batch) == 2
    assert s.record(batch) == 0  # the same last_episodes again (no new rollout)
    assert list(s.window) == [1.0, 0.0]


def test_last_stage_stays():
    s = CurriculumSchedule([stage("a", threshold=0.5, window=1), stage("b", threshold=0.5, window=1)])
    s.record([game(1)])
    assert s.decide()[0] and not s.finished
    s.advance()
    assert s.finished
    s.record([game(1)])
    advance, reason = s.decide()
    assert not advance and "last stage" in reason and "reaches threshold" in reason
    assert s.advance().name == "b" and s.index == 1 and s.finished


def test_state_round_trip():
    s = CurriculumSchedule([stage("a", window=1), stage("b", window=4)])
    s.record([game(1)])
    s.advance()
    s.record([game(1), game(-1)])
    state = json.loads(json.dumps(s.state_dict()))
    r = CurriculumSchedule([stage("a", window=1), stage("b", window=4)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same curriculum: no warning
        r.load_state_dict(state)
    assert r.index == 1 and list(r.window) == [1.0, 0.0] and r.decide() == s.decide()


def test_changed_curriculum_warns_naming_the_difference_and_keeps_the_saved_stage():
    s = CurriculumSchedule([stage("a", window=1), stage("b", window=4), stage("c")])
    s.index = 2
    state = s.state_dict()
    changed = CurriculumSchedule([stage("a", window=1), stage("b", window=4, threshold=0.7)])
    with pytest.warns(UserWarning, match="differs") as rec:
        changed.load_state_dict(state)
    text = str(rec[0].message)
    assert "['a', 'b', 'c'] in the checkpoint, ['a', 'b'] now" in text
    assert "stage 'b' threshold 0.5 -> 0.7" in text
    assert "clamped from 2" in text
    assert changed.index == 1  # saved index 2, clamped to this run's last stage


@pytest.mark.parametrize(
    "stages, match",
    [
        ([], "stages must be a non-empty list"),
        ([stage("a"), stage("a")], "duplicate stage name 'a'"),
        (
            [stage(env="lightspiel/TicTacToo-v0")],
            r"env: unknown env id .*did you mean 'lightspiel/TicTacToe-v0'",
        ),
        (
            [stage(env_kwargs={"opponent": "radnom"})],
            r"env_kwargs.opponent must be one of .*did you mean 'random'",
        ),
        ([stage(env_kwargs={"opponent": "self"})], "env_kwargs.opponent 'self'"),
        ([stage(threshold=1.5)], r"threshold must be in \[0, 1\] for metric 'win_rate'"),
        ([stage(metric="non_loss_rate", threshold=-0.1)], r"threshold must be in \[0, 1\]"),
        ([stage(window=0)], "window must be an int >= 1"),
        ([stage(window=5, min_games=6)], r"min_games must be an int in \[1, window=5\]"),
        ([stage(metric="win-rate")], "metric must be one of .*did you mean 'win_rate'"),
        ([{**stage(), "treshold": 0.5}], "unknown option 'treshold'; did you mean 'threshold'"),
        ([stage(env_kwargs={"opponent": "random", "illegal_rule": "never"})], "env_kwargs .* do not make"),
    ],
)
def test_bad_curriculum_options_raise_one_clear_error(stages, match):
    with pytest.raises(ConfigError, match=match):
        CurriculumSchedule(stages)


def test_stage_fills_in_the_opponent_and_mean_score_allows_any_threshold():
    s = Stage(name="x", env=TTT, metric="mean_score", threshold=-2.0)
    assert s.env_kwargs == {"opponent": "random"} and s.min_games == s.window
    assert Stage(name="l", env="lightspiel/KuhnPoker-v0", env_kwargs={"opponent": "mcts"}).opponent == "mcts"


class _Module:
    def __init__(self) -> None:
        self.logged: dict[str, float] = {}

    def log(self, name: str, value: float) -> None:
        self.logged[name] = value


def _trainer(dm) -> SimpleNamespace:
    return SimpleNamespace(datamodule=dm)


def test_curriculum_callback_sets_logs_and_advances_stages():
    assert [s.name for s in Curriculum().schedule.stages] == [d["name"] for d in DEFAULT_STAGES]
    calls = []
    dm = SimpleNamespace(last_episodes=[], set_stage=lambda env, kw: calls.append((env, kw)))
    cb = Curriculum([stage("a", threshold=0.5, window=2), {**stage("b"), "env": C4}])
    trainer, module = _trainer(dm), _Module()
    cb.setup(trainer, module, "fit")
    cb.on_fit_start(trainer, module)
    assert calls == [(TTT, {"opponent": "random"})]
    dm.last_episodes = [game(1), game(-1)]
    cb.on_train_epoch_end(trainer, module)
    assert module.logged == {"curriculum/metric": 0.5, "curriculum/stage": 1.0}
    assert calls[-1] == (C4, {"opponent": "random"})
    restored = Curriculum([stage("a", threshold=0.5, window=2), {**stage("b"), "env": C4}])
    restored.load_state_dict(cb.state_dict())
    assert restored.stage.name == "b"
    with pytest.raises(ConfigError, match="StagedData"):
        cb.setup(_trainer(SimpleNamespace()), module, "fit")


# ------------------------------------------------------------------------------------ failure replay


def test_only_failures_are_added_at_the_documented_decision_point():
    buf = ReplayBuffer(capacity=10, score_threshold=0.0)
    lost = game(-1, seat=1, turns=[turn(1, [4]), turn(1, [4, 0, 8])])
    illegal_win = game(1, penalty=1.0, turns=[turn(0, [7, 3]), turn(0, [7, 3, 5, 6], legal=False)])
    selfplay_illegal = game(1, seat=-1, turns=[turn(0, [1, 2]), turn(1, [1, 2, 3], legal=False)])
    not_failures = [
        game(1),  # won
        game(0),  # clean draw: score 0 is not below 0.0
        game(-1, seat=-1),  # self-play loss: the other seat won
        game(-1, start=[4]),  # a replayed game: mark_results scores it
        game(-1, turns=[turn(0, [])]),  # the only decision point is the initial state
    ]
    assert buf.add_from([*not_failures, lost, illegal_win, selfplay_illegal]) == 3
    assert [(e["history"], e["seat"], e["score"]) for e in buf.entries] == [
        ([4, 0, 8], 1, -1.0),  # a loss: the learner's last move
        ([7, 3, 5, 6], 0, 0.0),  # the first illegal answer
        ([1, 2, 3], 1, -1.0),  # self-play: the seat that answered illegally (returns [1, -1])
    ]
    assert [e["learner_seat"] for e in buf.entries] == [1, 0, None]  # None: replay in self-play
    assert buf.entries[0]["env"] == TTT and buf.entries[0]["seed"] == lost.seed
    assert [e["opponent"] for e in buf.entries] == ["random", "random", "self"]  # replayed against the same
    strict = ReplayBuffer(score_threshold=0.5)
    assert strict.add_from([game(0), game(1)]) == 1  # a draw scores below 0.5


def test_capacity_drops_the_oldest_and_a_repeated_failure_is_refreshed():
    buf = ReplayBuffer(capacity=3)
    games = [game(-1, turns=[turn(0, [i])]) for i in range(5)]
    buf.add_from(games)
    assert [e["history"] for e in buf.entries] == [[2], [3], [4]]
    again = game(-1, penalty=1.0, turns=[turn(0, [2])], seed=99)
    buf.add_from([again])
    assert [e["history"] for e in buf.entries] == [[3], [4], [2]]
    assert buf.entries[-1]["score"] == -2.0 and buf.entries[-1]["seed"] == 99


def test_sampling_prefers_worse_scores_without_replacement():
    buf = ReplayBuffer()
    buf.add_from(
        [
            game(-1, turns=[turn(0, [1])]),  # score -1
            game(-1, turns=[turn(0, [2])]),  # score -1
            game(-1, penalty=2.0, turns=[turn(0, [3])]),  # score -3: weights 1, 1, 3
            game(-1, env=C4, turns=[turn(0, [9])]),
        ]
    )
    rng = np.random.default_rng(0)
    counts = {1: 0, 2: 0, 3: 0}
    for _ in range(3000):
        (start,) = buf.sample(1, rng, env=TTT)
        counts[start["history"][0]] += 1
    assert counts[3] > 1.5 * max(counts[1], counts[2])
    assert 0.55 < counts[3] / 3000 < 0.65  # 3/5 of the draws
    many = buf.sample(10, rng, env=TTT)
    assert sorted(s["history"][0] for s in many) == [1, 2, 3]  # distinct, no more than the buffer has
    assert buf.sample(0) == [] and len(buf.sample(10)) == 4
    assert set(many[0]) == {"env", "seed", "history", "learner_seat", "seat", "score", "opponent"}


def test_a_won_replayed_start_leaves_the_buffer_and_others_update():
    buf = ReplayBuffer()
    buf.add_from([game(-1, turns=[turn(0, [h])]) for h in (1, 2, 3)])
    results = [
        game(1, start=[1]),  # won: mastered
        game(0, start=[2]),  # drawn: stays, score 0
        game(1, start=[3], turns=[turn(0, [3], legal=False), turn(0, [3])]),  # won, but answered illegally
        game(1),  # a fresh game
    ]
    assert buf.mark_results(results) == 1
    assert [(e["history"], e["score"]) for e in buf.entries] == [([2], 0.0), ([3], 1.0)]
    assert buf.metrics() == {"size": 2.0, "replayed_share": 0.75, "replay_win_rate": 2 / 3}
    buf.mark_results([game(1)])
    assert "replay_win_rate" not in buf.metrics() and buf.metrics()["replayed_share"] == 0.0


def test_replay_state_round_trip_is_json():
    buf = ReplayBuffer(capacity=5, seed=3)
    buf.add_from([game(-float(h), turns=[turn(0, [h])]) for h in (1, 2, 3)])
    buf.sample(1)  # move the generator
    buf.mark_results([game(0, start=[2])])
    state = json.loads(json.dumps(buf.state_dict()))
    other = ReplayBuffer(capacity=5, seed=123)
    other.load_state_dict(state)
    assert other.entries == buf.entries and other.metrics() == buf.metrics()
    assert other.sample(2) == buf.sample(2)  # the generator's state travels too
    small = ReplayBuffer(capacity=2)
    small.load_state_dict(state)
    assert [e["history"] for e in small.entries] == [[2], [3]]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"share": 1.5}, r"share must be in \[0, 1\]"),
        ({"share": -0.1}, r"share must be in \[0, 1\]"),
        ({"capacity": 0}, "capacity must be an int >= 1"),
        ({"score_threshold": float("nan")}, "score_threshold must be a finite number"),
        ({"games_per_epoch": 0}, "games_per_epoch must be None or an int >= 1"),
    ],
)
def test_bad_replay_options_raise_one_clear_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FailureReplay(**kwargs)


def test_failure_replay_callback_hands_out_a_share_of_starts():
    got = []
    dm = SimpleNamespace(last_episodes=[], num_episodes=10, env=TTT, set_starts=got.append)
    cb, module = FailureReplay(share=0.3), _Module()
    trainer = _trainer(dm)
    cb.setup(trainer, module, "fit")
    dm.last_episodes = [game(-1, turns=[turn(0, [h])]) for h in range(1, 6)] + [game(1)]
    cb.on_train_epoch_end(trainer, module)
    assert len(got[-1]) == 3 and all(s["env"] == TTT for s in got[-1])
    assert module.logged == {"replay/size": 5.0, "replay/share": 0.0}
    dm.last_episodes = [game(1, start=got[-1][0]["history"]), game(-1, start=got[-1][1]["history"])]
    cb.on_train_epoch_end(trainer, module)
    assert module.logged == {"replay/size": 4.0, "replay/share": 1.0, "replay/win_rate": 0.5}
    restored = FailureReplay(share=0.3)
    restored.load_state_dict(cb.state_dict())
    assert restored.buffer.entries == cb.buffer.entries
    no_count = SimpleNamespace(last_episodes=[], set_starts=got.append)
    with pytest.raises(ConfigError, match="games_per_epoch is needed"):
        cb.setup(_trainer(no_count), module, "fit")
    with pytest.raises(ConfigError, match="ReplayData"):
        cb.setup(_trainer(SimpleNamespace()), module, "fit")


# ------------------------------------------------------------------------------------ real env replay


def _history_option() -> bool:
    env = gymnasium.make(TTT, disable_env_checker=True)
    try:
        env.reset(seed=0, options={"history": [4]})
    except ValueError as err:
        if "unknown reset option" in str(err):
            return False
        raise
    return True


@pytest.mark.skipif(not _history_option(), reason="the env has no reset option 'history' yet")
def test_a_start_from_a_real_game_reproduces_its_state():
    env = gymnasium.make(TTT, disable_env_checker=True, learner_seat=0)
    for seed in range(200):  # the learner plays its first legal move until the random opponent wins
        obs, info = env.reset(seed=seed)
        turns, prompts, done = [], {}, False
        while not done:
            turns.append(turn(info["seat"], info["history"]))
            prompts[tuple(info["history"])] = obs["prompt"]
            obs, _, terminated, truncated, info = env.step(0)
            done = terminated or truncated
        if info["returns"][0] < 0:
            break
    else:
        pytest.fail("no lost game in 200 seeds")
    episode = Episode(
        episode_id="real",
        game="tic_tac_toe",
        env_id=TTT,
        seed=seed,
        opponent="random",
        learner_seat=0,
        turns=turns,
        returns=info["returns"],
        penalties=info["penalties"],
    )
    buf = ReplayBuffer()
    assert buf.add_from([episode]) == 1
    (start,) = buf.sample(1)
    assert start["history"] == turns[-1].history and len(start["history"]) >= 2
    replay = gymnasium.make(start["env"], disable_env_checker=True)
    options = {"history": start["history"], "learner_seat": start["learner_seat"]}
    obs2, info2 = replay.reset(seed=start["seed"], options=options)
    assert info2["history"] == start["history"]
    assert info2["seat"] == start["seat"] == start["learner_seat"] == 0
    assert replay.unwrapped.state.history() == start["history"]
    assert obs2["prompt"] == prompts[tuple(start["history"])]
