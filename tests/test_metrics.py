"""Intervals, the paired test and OutcomeRates, against hand-computed values; and the counts adding up
across processes (merged states, and two gloo processes splitting a tournament)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from datamodules.metrics import (
    OutcomeRates,
    mcnemar,
    mean_interval,
    outcome_metrics_with_intervals,
    update_from_episodes,
    wilson_interval,
)
from datamodules.records import Episode, Turn
from datamodules.rollout import outcome_metrics

# ------------------------------------------------------------------ Wilson


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # z = 1.959964, z^2 = 3.841459. 8 of 10: p = 0.8, denominator 1 + z^2/n = 1.3841459,
        # centre (0.8 + 0.1920729) / 1.3841459 = 0.716740, half-width
        # z / 1.3841459 * sqrt(0.8 * 0.2 / 10 + 3.841459 / 400) = 1.415996 * 0.160011 = 0.226578.
        (8, 10, 0.490162, 0.943318),
        # The values: 38 of 50 and 152 of 200.
        (38, 50, 0.625873, 0.857026),
        (152, 200, 0.696267, 0.813934),
        # 0 of n: low = 0, high = z^2 / (n + z^2) = 3.841459 / 13.841459.
        (0, 10, 0.0, 0.277533),
        # n of n: low = n / (n + z^2) = 10 / 13.841459, high = 1.
        (10, 10, 0.722467, 1.0),
    ],
)
def test_wilson_interval_matches_hand_values(k, n, low, high):
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=1e-6)


def test_wilson_interval_edges_are_exact_and_empty_sample_is_uninformative():
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # 99%: z = 2.575829, z^2 = 6.634897, denominator 1.663490, centre 1.131745 / 1.663490 = 0.68035,
    # half-width 2.575829 / 1.663490 * sqrt(0.016 + 6.634897 / 400) = 1.548452 * 0.180519 = 0.27953.
    assert wilson_interval(8, 10, 0.99) == pytest.approx((0.40082, 0.95987), abs=1e-5)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


# ------------------------------------------------------------------ t-interval


def test_mean_interval_is_a_student_t_interval():
    # 1..5: mean 3, s^2 = 10/4 = 2.5, s/sqrt(5) = 0.707107, t(0.975, 4) = 2.776445:
    # half-width 1.963243.
    assert mean_interval([1, 2, 3, 4, 5]) == pytest.approx((3.0, 1.036757, 4.963243), abs=1e-6)
    # 0, 2: mean 1, s^2 = 2, s/sqrt(2) = 1, t(0.975, 1) = 12.706205.
    assert mean_interval([0.0, 2.0]) == pytest.approx((1.0, -11.706205, 13.706205), abs=1e-6)
    assert mean_interval([4.0, 4.0, 4.0]) == (4.0, 4.0, 4.0)


def test_mean_interval_is_undefined_below_two_values():
    mean, low, high = mean_interval([0.5])
    assert mean == 0.5 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(x) for x in mean_interval([]))


# ------------------------------------------------------------------ McNemar


def _pairs(b: int, c: int, both: int = 0, neither: int = 0) -> tuple[list[bool], list[bool]]:
    before = [True] * b + [False] * c + [True] * both + [False] * neither
    after = [False] * b + [True] * c + [True] * both + [False] * neither
    return before, after


def test_mcnemar_exact_branch_matches_binomial_tails():
    # b=1, c=6: 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * 8 / 128 = 0.125. Concordant games do not count.
    got = mcnemar(*_pairs(1, 6, both=20, neither=9))
    assert got == {"b": 1, "c": 6, "statistic": 1.0, "p_value": 0.125, "method": "exact"}
    # b=0, c=5: 2 / 32 = 0.0625.
    assert mcnemar(*_pairs(0, 5))["p_value"] == 0.0625
    # b=2, c=9: 2 * (1 + 11 + 55) / 2048 = 0.0654296875.
    assert mcnemar(*_pairs(9, 2))["p_value"] == pytest.approx(0.0654296875, abs=1e-12)
    # b = c: no evidence either way, p is capped at 1.
    assert mcnemar(*_pairs(3, 3))["p_value"] == 1.0
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0  # no discordant game


def test_mcnemar_chi_square_branch_with_continuity_correction():
    # b=10, c=25 (35 >= 25): (|10 - 25| - 1)^2 / 35 = 196 / 35 = 5.6;
    # P(chi2_1 > 5.6) = erfc(sqrt(2.8)) = 0.0179605.
    got = mcnemar(*_pairs(10, 25, both=5))
    assert (got["b"], got["c"], got["method"]) == (10, 25, "chi2")
    assert got["statistic"] == pytest.approx(5.6)
    assert got["p_value"] == pytest.approx(0.0179605, abs=1e-6)
    # 24 discordant games are still tested exactly.
    assert mcnemar(*_pairs(12, 12))["method"] == "exact"
    with pytest.raises(ValueError, match="matched"):
        mcnemar([True], [True, False])


# ------------------------------------------------------------------ OutcomeRates


def _turn(parsed: bool = True, legal: bool = True, rule: str | None = None, learner: bool = True) -> Turn:
    return Turn(
        seat=0,
        prompt="p",
        legal_actions=["a", "b"],
        completion="a",
        action=0,
        action_text="a",
        parsed=parsed,
        legal=legal,
        outcome="ok",
        rule=rule,
        history=[],
        reward=0.0,
        learner=learner,
    )


def _episode(seed: int, ret: float, seat: int = 0, penalty: float = 0.0, turns: list[Turn] | None = None):
    returns = [ret, -ret] if seat == 0 else [-ret, ret]
    penalties = [penalty, 0.0] if seat == 0 else [0.0, penalty]
    return Episode(
        episode_id=f"e{seed}",
        game="tic_tac_toe",
        env_id="lightspiel/TicTacToe-v0",
        seed=seed,
        opponent="random",
        learner_seat=seat,
        turns=turns if turns is not None else [_turn(), _turn(learner=False), _turn()],
        returns=returns,
        penalties=penalties,
    )


def _games() -> list[Episode]:
    """10 games: 5 wins, 2 draws, 3 losses; one illegal answer resolved at random (penalty 0.5), one
    unparsed answer that was retried, and one opponent turn that must not count."""
    odd = [_turn(), _turn(legal=False, rule="random"), _turn(parsed=False, legal=False, rule="retry")]
    results = [1, 1, 0, -1, 1, 0, 1, -1, 1, -1]
    games = [_episode(i, float(r), seat=i % 2) for i, r in enumerate(results)]
    games[3] = _episode(3, -1.0, seat=1, penalty=0.5, turns=odd)
    return games


def test_outcome_figures_by_hand_with_an_interval_beside_every_rate():
    games = _games()
    got = outcome_metrics_with_intervals(games, seconds=2.0)
    assert outcome_metrics is outcome_metrics_with_intervals  # rollouts report the same figures
    assert got["games_per_s"] == 5.0
    # By hand: 7 of 10 not lost; 21 learner turns, 20 parsed, 2 illegal, 1 resolved at random.
    assert (got["episodes"], got["non_loss_rate"], got["win_rate"]) == (10.0, 0.7, 0.5)
    assert got["parse_rate"] == pytest.approx(20 / 21) and got["illegal_rate"] == pytest.approx(2 / 21)
    assert got["mean_length"] == pytest.approx(2.1) and got["rule_random_rate"] == pytest.approx(1 / 21)
    assert (got["non_loss_rate_low"], got["non_loss_rate_high"]) == wilson_interval(7, 10)
    assert (got["illegal_rate_low"], got["illegal_rate_high"]) == wilson_interval(2, 21)
    rates = [k for k in got if k.endswith("_rate")]
    assert len(rates) == 9 and all(f"{k}_low" in got and f"{k}_high" in got for k in rates)
    # Net returns 1,1,0,-1.5,1,0,1,-1,1,-1: the t-interval from sums equals the one from values.
    net = [1, 1, 0, -1.5, 1, 0, 1, -1, 1, -1]
    assert (got["mean_return"], got["mean_return_low"], got["mean_return_high"]) == pytest.approx(
        mean_interval(net)
    )


def test_outcome_rates_of_nothing_and_of_one_game():
    assert outcome_metrics_with_intervals([]) == {}
    one = outcome_metrics_with_intervals([_episode(0, 1.0)])
    assert one["win_rate"] == 1.0 and "mean_return_low" not in one  # no spread from one game


def test_outcome_rates_merged_from_two_halves_equal_one_over_all_games():
    """What DDP does with sum states: two processes' counts, reduced, give the figures of all games."""
    games = _games()
    whole = update_from_episodes(OutcomeRates(), games).compute()
    first = update_from_episodes(OutcomeRates(), games[::2])
    second = update_from_episodes(OutcomeRates(), games[1::2])
    assert first.compute() != whole  # each half alone is not the whole
    first.merge_state(second)
    first._computed = None  # compute() cached the half's figures
    assert first.compute() == pytest.approx(whole)
    # Summing the raw states as the all-reduce would:
    third = update_from_episodes(OutcomeRates(), games[:4])
    fourth = update_from_episodes(OutcomeRates(), games[4:])
    summed = OutcomeRates()
    summed.update(returns=[])  # nothing counted, but updated (compute() warns otherwise)
    summed.merge_state({k: getattr(third, k) + getattr(fourth, k) for k in OutcomeRates.COUNTS})
    assert summed.compute() == pytest.approx(whole)


# ------------------------------------------------------------------ two gloo processes


class _FirstLegal:
    """A deterministic stand-in policy: always the first legal action."""

    def act(self, observations, mode="score", greedy=False, temperature=None):
        return [SimpleNamespace(index=0, text=o["legal_actions"][0], logp=None) for o in observations]


def _tournament():
    from callbacks.tournament import Tournament

    return Tournament("lightspiel/TicTacToe-v0", {}, ["random"], num_games=7, num_envs=2, seed=123)


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        games = _games()
        rates = update_from_episodes(OutcomeRates(), games[rank::world]).compute()
        played = _tournament().play(_FirstLegal())
        assert len(played.pop("samples")["score"]["random"]) == 2  # games for transcripts, not JSON
        out = {"rates": rates, "played": played}
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(out))
        # Both ranks leave the last collective before either closes its connections: a rank that
        # tears down while the other still receives aborts it (gloo's "terminate called").
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_split_a_tournament_and_report_the_one_process_figures(tmp_path):
    ctx = mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 240
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.terminate()
            pytest.fail("the two gloo processes did not finish")
    single_rates = update_from_episodes(OutcomeRates(), _games()).compute()
    single = _tournament().play(_FirstLegal())
    drop = "games_per_s"
    expected = {k: v for k, v in single["results"]["score"]["random"].items() if k != drop}
    assert expected["episodes"] == 7
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["rates"] == pytest.approx(single_rates)
        figures = {k: v for k, v in got["played"]["results"]["score"]["random"].items() if k != drop}
        assert figures == pytest.approx(expected)
        assert got["played"]["games"] == single["games"]
