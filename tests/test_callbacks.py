"""Callback logic as plain classes, without a Trainer."""

import json
import logging
from types import SimpleNamespace

import pytest

from callbacks import IterationSchedule, Tournament, TournamentCallback
from callbacks.tournament import compare, summary_line
from datamodules.metrics import wilson_interval
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
    played = t.play(tiny_policy)
    first = played["results"]["score"]
    assert set(first) == {"random", "minimax"}
    for opponent, metrics in first.items():
        assert metrics["episodes"] == 6
        assert metrics["win_rate"] + metrics["draw_rate"] + metrics["loss_rate"] == pytest.approx(1)
        assert {"seat0_non_loss_rate", "seat1_non_loss_rate"} <= set(metrics)
        # Every rate carries its Wilson interval (the report and the logger get these keys).
        for rate in ("win_rate", "draw_rate", "loss_rate", "non_loss_rate"):
            wins = round(metrics[rate] * 6)
            assert (metrics[f"{rate}_low"], metrics[f"{rate}_high"]) == wilson_interval(wins, 6)
        per_turn = ("parse_rate", "illegal_rate", "rule_random_rate", "rule_retry_rate", "rule_forfeit_rate")
        assert all(f"{r}_low" in metrics and f"{r}_high" in metrics for r in per_turn)
        assert {"mean_return_low", "mean_return_high", "seat1_non_loss_rate_low"} <= set(metrics)
        # The per-game outcomes, by seed, agree with the rates; seats alternate.
        games = played["games"]["score"][opponent]
        assert list(games) == [str(900_000_000 + i) for i in range(6)]
        assert [g["seat"] for g in games.values()] == [0, 1, 0, 1, 0, 1]
        assert sum(g["non_loss"] for g in games.values()) / 6 == metrics["non_loss_rate"]
    assert first["minimax"]["win_rate"] == 0.0  # nobody beats exact play
    second = t.run(tiny_policy)["score"]
    drop = ("games_per_s",)
    assert [{k: v for k, v in m.items() if k not in drop} for m in first.values()] == [
        {k: v for k, v in m.items() if k not in drop} for m in second.values()
    ]


def test_matches_played_side_by_side_are_the_matches_played_alone(tiny_policy):
    """A mode's matches against the built-in opponents share the engine's waves; every game, and so
    every figure, is the one its match plays on its own."""
    env = "lightspiel/TicTacToe-v0"
    together = Tournament(env, {}, ["random", "mcts", "self"], num_games=4, num_envs=4, modes=["score", "generate"])
    played = together.play(tiny_policy)
    for opponent in ("random", "mcts", "self"):
        alone = Tournament(env, {}, [opponent], num_games=4, num_envs=4, modes=["score", "generate"]).play(tiny_policy)
        for mode in ("score", "generate"):
            assert played["games"][mode][opponent] == alone["games"][mode][opponent]
            drop = ("games_per_s",)
            got = {k: v for k, v in played["results"][mode][opponent].items() if k not in drop}
            assert got == {k: v for k, v in alone["results"][mode][opponent].items() if k not in drop}


def test_tournament_evaluates_every_requested_mode(tiny_policy):
    t = Tournament(
        "lightspiel/TicTacToe-v0", {}, ["random"], num_games=2, modes=["score", "constrained", "generate"]
    )
    results = t.run(tiny_policy)
    assert set(results) == {"score", "constrained", "generate"}
    assert results["score"]["random"]["illegal_rate"] == 0.0
    assert results["constrained"]["random"]["illegal_rate"] == 0.0
    assert all(results[m]["random"]["episodes"] == 2 for m in results)
    # Free text from a random tiny model is mostly not a legal cell: the env's default rule ("random")
    # resolved every illegal answer, and the rates say so.
    generated = results["generate"]["random"]
    assert generated["illegal_rate"] > 0
    assert generated["rule_random_rate"] == pytest.approx(generated["illegal_rate"])


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


def _entry(label: str, outcomes: dict[str, list[bool]]) -> dict:
    """A hand-built report entry: per opponent, non-loss per seed 0, 1, 2, ..."""
    return {
        "label": label,
        "results": {},
        "games": {
            "score": {
                opp: {str(s): {"seat": s % 2, "non_loss": ok, "return": 0.0} for s, ok in enumerate(flags)}
                for opp, flags in outcomes.items()
            }
        },
    }


def test_compare_runs_mcnemar_on_games_matched_by_seed():
    # vs random: 30 games, 2 went from non-loss to loss (b), 9 the other way (c), 19 unchanged;
    # the after entry also played seed 30, which the before entry did not: it is left out.
    before = {"random": [True] * 2 + [False] * 9 + [True] * 12 + [False] * 7}
    after = {"random": [False] * 2 + [True] * 9 + [True] * 12 + [False] * 7 + [True]}
    # vs minimax: b=5, c=25 of 40 (chi-square branch).
    before["minimax"] = [True] * 5 + [False] * 25 + [False] * 10
    after["minimax"] = [False] * 5 + [True] * 25 + [False] * 10
    got = compare(_entry("start", before), _entry("epoch004", after))["score"]
    rnd = got["random"]
    assert (rnd["games"], rnd["b"], rnd["c"], rnd["method"]) == (30, 2, 9, "exact")
    assert (rnd["non_loss_before"], rnd["non_loss_after"]) == pytest.approx((14 / 30, 21 / 30))
    assert (rnd["non_loss_after_low"], rnd["non_loss_after_high"]) == wilson_interval(21, 30)
    # 2 * (C(11,0) + C(11,1) + C(11,2)) / 2^11 = 134 / 2048 = 0.0654296875: not below 0.05.
    assert rnd["p_value"] == pytest.approx(0.0654296875)
    assert rnd["verdict"] == "within noise (p=0.0654)"
    mm = got["minimax"]
    # (|5 - 25| - 1)^2 / 30 = 361 / 30 = 12.0333; P(chi2_1 > 12.0333) = erfc(sqrt(6.01667)) = 0.000522575.
    assert (mm["b"], mm["c"], mm["method"]) == (5, 25, "chi2")
    assert mm["statistic"] == pytest.approx(361 / 30)
    assert mm["p_value"] == pytest.approx(0.000522575, rel=1e-5)
    assert mm["verdict"] == "larger than noise (p=0.000523)"
    assert compare({"label": "old", "results": {}}, _entry("new", after)) == {}  # no per-game outcomes


def test_callback_prints_and_writes_the_comparison_at_fit_end(tmp_path, caplog):
    cb = TournamentCallback(opponents=["random"])
    cb.history = [
        _entry("start", {"random": [False] * 10 + [True] * 10}),
        _entry("epoch001", {"random": [True] * 20}),
    ]
    trainer = SimpleNamespace(default_root_dir=str(tmp_path), is_global_zero=True)
    with caplog.at_level(logging.INFO):
        cb.on_fit_end(trainer, None)
    # 10 games changed, all to non-loss: exact p = 2 / 2^10 = 0.00195.
    assert (
        "eval start -> epoch001, score vs random: non-loss 0.50 [0.30, 0.70] -> 1.00 [0.84, 1.00] on 20 "
        "matched games; McNemar (exact, b=0, c=10): larger than noise (p=0.00195)"
    ) in caplog.text
    report = json.loads((tmp_path / "reports" / "tournament_comparison.json").read_text())
    assert (report["before"], report["after"]) == ("start", "epoch001")
    assert report["comparison"]["score"]["random"]["p_value"] == pytest.approx(2 / 1024)


def test_compare_on_wins_for_a_game_nobody_can_lose():
    """In a cooperative game every game is a non-loss; the success compared is the win (shared
    reward earned), and the summary line says so."""
    before = _entry("start", {"self": [False] * 12 + [True] * 4})
    after = _entry("epoch009", {"self": [True] * 16})
    for entry in (before, after):
        for game in entry["games"]["score"]["self"].values():
            game["win"], game["non_loss"] = game["non_loss"], True
    assert compare(before, after)["score"]["self"]["b"] + compare(before, after)["score"]["self"]["c"] == 0
    row = compare(before, after, rate="win")["score"]["self"]
    assert (row["rate"], row["win_before"], row["win_after"], row["c"]) == ("win", 0.25, 1.0, 12)
    assert summary_line("score", "self", row).startswith("score vs self: win 0.25 [0.10, 0.49] -> 1.00")
    with pytest.raises(ConfigError, match="rate must be non_loss or win"):
        compare(before, after, rate="loss")


def test_the_success_rate_is_the_win_rate_where_no_game_can_be_lost():
    assert Tournament("lightspiel/LewisSignaling-v0", {}, ["self"]).success == "win"
    assert Tournament("lightspiel/TicTacToe-v0", {}, ["random"]).success == "non_loss"


class _FirstLegal:
    def act(self, observations, mode="score", greedy=False, temperature=None):
        return [SimpleNamespace(index=0, text=o["legal_actions"][0], logp=None) for o in observations]


def test_a_tournament_sized_by_precision_stops_at_the_first_chunk_precise_enough():
    """Chunks of 4 games (seats alternating) until the non-loss interval is within +-0.2, at most 40."""
    tournament = Tournament(
        "lightspiel/TicTacToe-v0", {}, ["random"], num_games=40, num_envs=4, ci_half_width=0.2
    )
    played = tournament.play(_FirstLegal())
    metrics = played["results"]["score"]["random"]
    games = played["games"]["score"]["random"]
    n = int(metrics["episodes"])
    assert n % 4 == 0 and 4 <= n < 40 and list(games) == [str(tournament.seed + i) for i in range(n)]
    assert (metrics["non_loss_rate_high"] - metrics["non_loss_rate_low"]) / 2 <= 0.2
    # One chunk fewer was not precise enough (the same games' outcomes, counted by hand).
    first = [g["non_loss"] for g in list(games.values())[: n - 4]]
    low, high = wilson_interval(sum(first), len(first)) if first else (0.0, 1.0)
    assert (high - low) / 2 > 0.2
    fixed = Tournament("lightspiel/TicTacToe-v0", {}, ["random"], num_games=12, num_envs=4)
    assert fixed.play(_FirstLegal())["results"]["score"]["random"]["episodes"] == 12
    with pytest.raises(ConfigError, match="ci_half_width must be in"):
        Tournament("lightspiel/TicTacToe-v0", {}, ["random"], ci_half_width=0.7)
