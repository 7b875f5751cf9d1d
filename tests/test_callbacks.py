"""Callback logic as plain classes, without a Trainer."""

import pytest

from callbacks import IterationSchedule, Tournament
from modules.errors import ConfigError


def test_iteration_schedule_advances_every_k_epochs_and_says_why():
    schedule = IterationSchedule(every_n_epochs=2)
    decisions = []
    for epoch in range(6):
        advance, reason = schedule.should_advance(epoch)
        decisions.append(advance)
        if advance:
            assert f"epoch {epoch} closes iteration {schedule.iteration}" in reason
            schedule.advance()
        else:
            assert "to go" in reason
    assert decisions == [False, True, False, True, False, True]
    assert schedule.iteration == 3


def test_iteration_schedule_state_round_trips():
    a = IterationSchedule(3)
    a.advance()
    a.advance()
    b = IterationSchedule(3)
    b.load_state_dict(a.state_dict())
    assert b.iteration == 2 and b.should_advance(5) == a.should_advance(5)


def test_iteration_schedule_rejects_bad_period():
    with pytest.raises(ConfigError, match="every_n_epochs"):
        IterationSchedule(0)


def test_tournament_alternates_seats_and_is_reproducible(tiny_policy):
    t = Tournament("lightspiel/TicTacToe-v0", {}, ["random", "minimax"], num_games=6, num_envs=3)
    first = t.run(tiny_policy)["score"]
    assert set(first) == {"random", "minimax"}
    for metrics in first.values():
        assert metrics["episodes"] == 6
        assert metrics["win_rate"] + metrics["draw_rate"] + metrics["loss_rate"] == pytest.approx(1)
        assert {"seat0_non_loss_rate", "seat1_non_loss_rate"} <= set(metrics)
    assert first["minimax"]["win_rate"] == 0.0  # nobody beats exact play
    second = t.run(tiny_policy)["score"]
    drop = ("games_per_s",)
    assert [{k: v for k, v in m.items() if k not in drop} for m in first.values()] == [
        {k: v for k, v in m.items() if k not in drop} for m in second.values()
    ]


def test_tournament_evaluates_every_requested_mode(tiny_policy):
    t = Tournament(
        "lightspiel/TicTacToe-v0", {}, ["random"], num_games=2, modes=["score", "constrained", "generate"]
    )
    results = t.run(tiny_policy)
    assert set(results) == {"score", "constrained", "generate"}
    assert results["score"]["random"]["illegal_rate"] == 0.0
    assert results["constrained"]["random"]["illegal_rate"] == 0.0
    assert 0.0 <= results["generate"]["random"]["parse_rate"] <= 1.0


def test_tournament_rejects_unknown_modes():
    with pytest.raises(ConfigError, match="modes"):
        Tournament("lightspiel/TicTacToe-v0", modes=["beam"])


def test_llm_exploitability_on_kuhn_poker(tiny_policy):
    """At a huge temperature the policy's probabilities are uniform, whose Kuhn exploitability
    OpenSpiel gives as 0.4583 (computed here by OpenSpiel itself from its uniform policy)."""
    import pyspiel
    from open_spiel.python import policy as policy_lib
    from open_spiel.python.algorithms import exploitability

    game = pyspiel.load_game("kuhn_poker")
    uniform = exploitability.exploitability(game, policy_lib.UniformRandomPolicy(game))
    t = Tournament("lightspiel/KuhnPoker-v0")
    tiny_policy.temperature = 1e6
    report = t.exploitability(tiny_policy)
    assert report["exploitability"] == pytest.approx(uniform, abs=1e-4)
    assert report["information_states"] == 12
    tiny_policy.temperature = 1.0
    sharp = t.exploitability(tiny_policy)["exploitability"]
    assert sharp >= 0 and sharp != pytest.approx(uniform, abs=1e-4)
