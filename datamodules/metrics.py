"""Evaluation figures that hold up: rates with confidence intervals, paired tests, and a torchmetrics
metric whose counts add up across processes.

- :func:`wilson_interval`: the Wilson score interval of a proportion (good at small n and at 0 or n
  successes, where the normal "Wald" interval collapses to a point);
- :func:`mean_interval`: a Student-t interval of a mean (normal data assumed; with the tournament's
  bounded returns and n of a few dozen it is the usual, slightly optimistic choice);
- :func:`mcnemar`: a paired test of two evaluations over the same games (same seeds), e.g. non-loss
  before and after training. Only the discordant games (won before and lost after, or the reverse)
  carry information; the exact binomial test is used when they are few (< 25), the chi-square test
  with continuity correction otherwise;
- :class:`OutcomeRates`: win/draw/loss, return, parse and illegal figures as a ``torchmetrics.Metric``
  with summed count states, so that games split over DDP ranks reduce to the figures over all games,
  each rate with its Wilson interval and the mean return with its t-interval;
- :func:`outcome_metrics_with_intervals`: the same figures over a list of games in this process (what
  rollouts report each iteration; :func:`datamodules.rollout.outcome_metrics` is this function).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import torch
from torchmetrics import Metric

from datamodules.records import Episode

__all__ = [
    "OutcomeRates",
    "mcnemar",
    "mean_interval",
    "outcome_metrics_with_intervals",
    "update_from_episodes",
    "wilson_interval",
]

RULES = ("random", "retry", "forfeit")  # how illegal or unparsed answers were resolved
EXACT_BELOW = 25  # McNemar: exact binomial test when fewer discordant pairs than this


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion.

    Args:
        successes: Number of successes (0 <= successes <= n).
        n: Number of trials.
        confidence: Two-sided coverage, e.g. 0.95.

    Returns:
        ``(low, high)``; ``(0.0, 1.0)`` when ``n == 0`` (no information). The bounds are exactly 0 and 1
        at 0 and n successes.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p, z2 = successes / n, z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2.0 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def _t_bounds(mean: float, variance: float, n: float, confidence: float) -> tuple[float, float, float]:
    """``(mean, low, high)`` of a Student-t interval from the sample mean and (n-1) variance."""
    if n == 0:
        return math.nan, math.nan, math.nan
    if n < 2:
        return mean, math.nan, math.nan
    from scipy.stats import t as student_t  # imported here: scipy is slow to import

    _z(confidence)  # validates
    quantile = float(student_t.ppf(0.5 + confidence / 2.0, n - 1))
    half = quantile * math.sqrt(max(variance, 0.0) / n)
    return mean, mean - half, mean + half


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean with a two-sided Student-t interval (``mean ± t_{(1+c)/2, n-1} · s / sqrt(n)``).

    Args:
        values: The sample.
        confidence: Two-sided coverage.

    Returns:
        ``(mean, low, high)``. With one value the spread is unknown: ``(value, nan, nan)``; with none,
        ``(nan, nan, nan)``.
    """
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = math.fsum(values) / n
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return _t_bounds(mean, variance, n, confidence)


def mcnemar(before: Sequence[bool], after: Sequence[bool]) -> dict:
    """McNemar's paired test of two evaluations over the same games.

    ``b`` counts games that were a success before and a failure after, ``c`` the reverse. Under the
    null hypothesis (no change) each discordant game is a fair coin between the two, so with
    ``n = b + c < 25`` the two-sided exact binomial p-value ``min(1, 2 · P(X <= min(b, c)))``,
    ``X ~ Bin(n, 1/2)`` is used (``statistic = min(b, c)``); otherwise the chi-square statistic with
    continuity correction ``(|b - c| - 1)² / (b + c)`` on one degree of freedom.

    Args:
        before: Per-game success of the first evaluation.
        after: Per-game success of the second, in the same game order.

    Returns:
        ``{"b", "c", "statistic", "p_value", "method"}``, method ``"exact"`` or ``"chi2"``.
    """
    if len(before) != len(after):
        raise ValueError(f"mcnemar needs matched games, got {len(before)} and {len(after)}")
    b = sum(bool(x) and not bool(y) for x, y in zip(before, after))
    c = sum(bool(y) and not bool(x) for x, y in zip(before, after))
    n = b + c
    if n < EXACT_BELOW:
        k = min(b, c)
        tail = math.fsum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
        return {"b": b, "c": c, "statistic": float(k), "p_value": min(1.0, 2.0 * tail), "method": "exact"}
    statistic = (abs(b - c) - 1.0) ** 2 / n
    p_value = math.erfc(math.sqrt(statistic / 2.0))  # chi-square survival function, 1 degree of freedom
    return {"b": b, "c": c, "statistic": statistic, "p_value": p_value, "method": "chi2"}


class OutcomeRates(Metric):
    """Win/draw/loss, mean return, parse and illegal rates with 95% intervals, as summed counts.

    Every state is a float64 sum (``dist_reduce_fx="sum"``), so the metric over games split across
    DDP ranks (or merged with :meth:`merge_state`) is the metric over all of them. One ``Metric`` with
    twelve sums is used rather than a collection of ``SumMetric``/``MeanMetric``: the rates, their
    Wilson intervals and the t-interval of the mean return (which needs the sum of squares) all come
    from the same counts, synced in one pass.

    ``compute()`` gives ``episodes``,
    ``win_rate``, ``draw_rate``, ``loss_rate``, ``non_loss_rate``, ``mean_return``, ``parse_rate``,
    ``illegal_rate``, ``mean_length``, ``rule_<rule>_rate``) with their meaning, plus ``<rate>_low`` /
    ``<rate>_high`` for every rate (Wilson) and ``mean_return_low`` / ``mean_return_high``
    (Student-t, from the sum and sum of squares; left out below two games, where it is undefined, so
    that reports stay valid JSON); ``{}`` when no game was counted.

    Args:
        confidence: Two-sided coverage of the intervals.
        **kwargs: ``torchmetrics.Metric`` options (e.g. ``sync_on_compute=False`` for figures over
            this process's games only).
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    COUNTS = (
        "games",
        "wins",
        "draws",
        "losses",
        "return_sum",
        "return_sqsum",
        "turns",
        "parsed",
        "illegal",
        *(f"rule_{r}" for r in RULES),
    )

    def __init__(self, confidence: float = 0.95, **kwargs) -> None:
        super().__init__(**kwargs)
        _z(confidence)
        self.confidence = confidence
        for name in self.COUNTS:
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def _sum(self, values) -> torch.Tensor:
        if values is None:
            return torch.tensor(0.0, dtype=torch.float64, device=self.games.device)
        return torch.as_tensor(values, dtype=torch.float64, device=self.games.device).sum()

    def update(
        self,
        returns: Sequence[float] | torch.Tensor,
        penalties: Sequence[float] | torch.Tensor | None = None,
        turns: Sequence[float] | torch.Tensor | None = None,
        parsed: Sequence[float] | torch.Tensor | None = None,
        illegal: Sequence[float] | torch.Tensor | None = None,
        rules: dict[str, Sequence[float] | torch.Tensor] | None = None,
    ) -> None:
        """Count games.

        Args:
            returns: Per game, the learner's return from the game (its sign makes the win, draw or loss).
            penalties: Per game, the learner's illegal-answer penalties (``mean_return`` is of
                ``return - penalty``).
            turns: Learner turns (per game, or a total).
            parsed: Learner turns whose answer parsed (per game, or a total).
            illegal: Learner turns whose answer was illegal (per game, or a total).
            rules: ``{rule: learner turns resolved by it}`` for rules among ``random``, ``retry``,
                ``forfeit``.
        """
        r = torch.as_tensor(returns, dtype=torch.float64, device=self.games.device).reshape(-1)
        net = r if penalties is None else r - self._as_vector(penalties, len(r))
        self.games += len(r)
        self.wins += (r > 0).sum()
        self.draws += (r == 0).sum()
        self.losses += (r < 0).sum()
        self.return_sum += net.sum()
        self.return_sqsum += (net * net).sum()
        self.turns += self._sum(turns)
        self.parsed += self._sum(parsed)
        self.illegal += self._sum(illegal)
        for rule, counts in (rules or {}).items():
            if rule not in RULES:
                raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")
            state = f"rule_{rule}"
            setattr(self, state, getattr(self, state) + self._sum(counts))

    def _as_vector(self, values, n: int) -> torch.Tensor:
        v = torch.as_tensor(values, dtype=torch.float64, device=self.games.device).reshape(-1)
        if len(v) != n:
            raise ValueError(f"penalties: {len(v)} values for {n} games")
        return v

    def compute(self) -> dict[str, float]:
        c = {name: float(getattr(self, name)) for name in self.COUNTS}
        n = c["games"]
        if n == 0:
            return {}
        n_turns = c["turns"]
        per_turn = max(n_turns, 1.0)
        mean = c["return_sum"] / n
        out = {
            "episodes": n,
            "win_rate": c["wins"] / n,
            "draw_rate": c["draws"] / n,
            "loss_rate": c["losses"] / n,
            "mean_return": mean,
            "parse_rate": c["parsed"] / per_turn,
            "illegal_rate": c["illegal"] / per_turn,
            "mean_length": n_turns / n,
            "non_loss_rate": (c["wins"] + c["draws"]) / n,
        }
        for rule in RULES:
            out[f"rule_{rule}_rate"] = c[f"rule_{rule}"] / per_turn
        successes = {
            "win_rate": (c["wins"], n),
            "draw_rate": (c["draws"], n),
            "loss_rate": (c["losses"], n),
            "non_loss_rate": (c["wins"] + c["draws"], n),
            "parse_rate": (c["parsed"], n_turns),
            "illegal_rate": (c["illegal"], n_turns),
            **{f"rule_{r}_rate": (c[f"rule_{r}"], n_turns) for r in RULES},
        }
        for key, (k, total) in successes.items():
            out[f"{key}_low"], out[f"{key}_high"] = wilson_interval(k, total, self.confidence)
        if n >= 2:  # one game has no spread: its t-interval is undefined and the bounds are left out
            variance = (c["return_sqsum"] - n * mean * mean) / (n - 1)
            _, out["mean_return_low"], out["mean_return_high"] = _t_bounds(mean, variance, n, self.confidence)
        return out


def update_from_episodes(metric: OutcomeRates, episodes: Sequence[Episode]) -> OutcomeRates:
    """Count ``episodes`` into ``metric`` from the learner's seat (seat 0 in self-play), as
    the rollouts report them: the learner's game return and penalty, and its turns (``Turn.learner``).

    Returns:
        ``metric``, updated.
    """
    seats = [max(e.learner_seat, 0) for e in episodes]
    mine = [[t for t in e.turns if t.learner] for e in episodes]
    metric.update(
        returns=[e.returns[s] for e, s in zip(episodes, seats)],
        penalties=[e.penalties[s] for e, s in zip(episodes, seats)],
        turns=[len(ts) for ts in mine],
        parsed=[sum(t.parsed for t in ts) for ts in mine],
        illegal=[sum(not t.legal for t in ts) for ts in mine],
        rules={r: [sum(t.rule == r for t in ts) for ts in mine] for r in RULES},
    )
    return metric


def outcome_metrics_with_intervals(
    episodes: Sequence[Episode], seconds: float | None = None, confidence: float = 0.95
) -> dict[str, float]:
    """Win/draw/loss, mean return, parse-success and illegal-action rates from the learner's seat
    (seat 0 in self-play; parse and illegal rates over learner turns only), each with a
    ``_low``/``_high`` interval, over these episodes only (no cross-process sync): the figures of
    :class:`OutcomeRates`.

    Args:
        episodes: Finished games.
        seconds: Wall time they took; adds ``games_per_s``.
        confidence: Two-sided coverage of the intervals.
    """
    if not episodes:
        return {}
    metric = update_from_episodes(OutcomeRates(confidence, sync_on_compute=False), episodes)
    out = metric.compute()
    if seconds:
        out["games_per_s"] = len(episodes) / seconds
    out.update(verdict_metrics(episodes))  # reasoning envs: accuracy (the win rate is the same count)
    return out


def verdict_metrics(episodes: Sequence[Episode]) -> dict[str, float]:
    """A reasoning env's figures over answered problems (one turn per episode, with its verdict):
    accuracy with its Wilson interval, parse rate, mean length and reward, the ``#### `` marker rate
    (math), the valid-step and all-valid rates (proofs). Empty for episodes without verdicts."""
    verdicts = [e.turns[0].verdict for e in episodes if e.turns and e.turns[0].verdict is not None]
    n = len(verdicts)
    if n == 0:
        return {}
    correct = sum(bool(v.get("correct", v.get("all_valid", False))) for v in verdicts)
    low, high = wilson_interval(correct, n)
    out = {
        "problems": float(n),
        "accuracy": correct / n,
        "accuracy_low": low,
        "accuracy_high": high,
        "parse_rate": sum(bool(v.get("parsed")) for v in verdicts) / n,
        "mean_answer_chars": sum(float(v.get("length", 0)) for v in verdicts) / n,
        "mean_reward": sum(float(v.get("reward", 0.0)) for v in verdicts) / n,
    }
    if any("format_ok" in v for v in verdicts):
        out["marker_rate"] = sum(bool(v.get("format_ok")) for v in verdicts) / n
    if any("steps" in v for v in verdicts):
        # restated facts are valid but prove nothing: the rate is over the other steps
        counted = [s for v in verdicts for s in v.get("steps", []) if s.get("kind") != "fact"]
        steps = len(counted)
        valid = sum(bool(s.get("solver_valid")) for s in counted)
        out["valid_step_rate"] = valid / steps if steps else 0.0
        out["all_valid_rate"] = sum(bool(v.get("all_valid")) for v in verdicts) / n
    return out
