"""Ratings of the policy and the tournament's opponents (openskill), the illegal-answer gate, and the
tournament's plot.

- :class:`RatingTable`: openskill's Plackett-Luce ratings (Weng and Lin, 2011; the ``openskill``
  package, not re-implemented here). Each evaluation enters the policy as a new player per acting
  mode (``generate@epoch002``) that starts from the previous evaluation's rating of that mode; every
  game of the evaluation against a built-in opponent is one two-player match (win, draw or loss).
  The opponents keep one rating throughout. A past snapshot of the policy met as an opponent
  (``snapshot:epoch001``, the tournament's pool) is the policy player of that evaluation and mode
  (``generate@epoch001``): its rating goes on moving as later policies play it, as in a league; it is
  reported as ``snapshot:generate@epoch001``. ``ordinal`` (mu - 3 sigma) is what is reported.
- :class:`IllegalGate`: seed 000's rule: an evaluation whose illegal-answer rate rose by more than
  ``max_increase`` over the best evaluation so far is never the best; its gated score is -1.
- :func:`plot_history`: ratings over time, and success and illegal rates per opponent over time.
"""

from __future__ import annotations

from pathlib import Path

from modules.errors import ConfigError

RESULT_RANKS = {"win": [0, 1], "draw": [0, 0], "loss": [1, 0]}  # openskill ranks: lower is better


class RatingTable:
    """openskill ratings of named players, with the update of one evaluation's games."""

    def __init__(self, state: dict | None = None) -> None:
        from openskill.models import PlackettLuce

        self.model = PlackettLuce()
        self.ratings: dict[str, tuple[float, float]] = {}  # name -> (mu, sigma)
        self.latest: dict[str, str] = {}  # acting mode -> the policy's newest player name
        if state:
            self.ratings = {k: (float(v[0]), float(v[1])) for k, v in state["ratings"].items()}
            self.latest = dict(state["latest"])

    def _rating(self, name: str, start_from: str | None = None):
        if name not in self.ratings:
            if start_from is not None and start_from in self.ratings:
                self.ratings[name] = self.ratings[start_from]
            else:
                fresh = self.model.rating()
                self.ratings[name] = (fresh.mu, fresh.sigma)
        mu, sigma = self.ratings[name]
        return self.model.create_rating([mu, sigma], name=name)

    def update(self, label: str, games: dict) -> dict[str, float]:
        """Rate one evaluation: ``games`` is ``{mode: {opponent: {seed: {"result": ...}}}}`` (the
        tournament's per-game records). Returns the ordinals of the players involved."""
        for mode, by_opponent in games.items():
            player = f"{mode}@{label}"
            previous = self.latest.get(mode)
            self._rating(player, start_from=previous)
            self.latest[mode] = player
            for opponent, by_seed in by_opponent.items():
                if opponent == "self":  # the policy against itself: no information on its rating
                    continue
                entity = self._entity(mode, opponent)
                for _seed, game in sorted(by_seed.items()):
                    ours, theirs = self._rating(player), self._rating(entity)
                    [[ours], [theirs]] = self.model.rate(
                        [[ours], [theirs]], ranks=RESULT_RANKS[game["result"]]
                    )
                    self.ratings[player] = (ours.mu, ours.sigma)
                    self.ratings[entity] = (theirs.mu, theirs.sigma)
        out = {name: self.ordinal(name) for name in self.latest.values()}
        for mode, by_opponent in games.items():
            for opponent in by_opponent:
                if opponent == "self":
                    continue
                entity = self._entity(mode, opponent)
                out[f"snapshot:{entity}" if opponent.startswith("snapshot:") else opponent] = self.ordinal(
                    entity
                )
        return dict(sorted(out.items()))

    @staticmethod
    def _entity(mode: str, opponent: str) -> str:
        """Who an opponent is in the table: a built-in agent by its name; a snapshot of the policy
        (``snapshot:<label>``) as the policy player of that evaluation in this mode."""
        return f"{mode}@{opponent.split(':', 1)[1]}" if opponent.startswith("snapshot:") else opponent

    def ordinal(self, name: str) -> float:
        mu, sigma = self.ratings[name]
        return mu - 3.0 * sigma

    def state_dict(self) -> dict:
        return {"ratings": {k: list(v) for k, v in self.ratings.items()}, "latest": dict(self.latest)}


class IllegalGate:
    """Never mark as best an evaluation whose illegal rate rose more than ``max_increase`` over the
    best one so far (see the module docstring)."""

    def __init__(self, max_increase: float, state: dict | None = None) -> None:
        if max_increase < 0:
            raise ConfigError(f"gate_illegal_increase must be >= 0, got {max_increase}")
        self.max_increase = max_increase
        self.best_score: float | None = None
        self.best_illegal: float | None = None
        if state:
            self.best_score, self.best_illegal = state["best_score"], state["best_illegal"]

    def score(self, success: float, illegal: float) -> float:
        """The gated score of an evaluation (its success rate, or -1 when the gate closes), and the
        best so far moves to it when it is higher."""
        if self.best_illegal is not None and illegal > self.best_illegal + self.max_increase:
            return -1.0
        if self.best_score is None or success > self.best_score:
            self.best_score, self.best_illegal = success, illegal
        return success

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_illegal": self.best_illegal}


def plot_history(history: list[dict], ratings: list[dict], rate: str, path: Path):
    """Write a PNG: ratings (ordinal) over evaluations, and per opponent the success and illegal
        rates over evaluations, one line per mode and opponent (written under a temporary name, then
    renamed). Returns the matplotlib figure, still open."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [h["label"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    at = {label: i for i, label in enumerate(labels)}  # x positions: evaluations in order
    lines: dict[str, tuple[list[int], list[float]]] = {}
    for point in ratings:
        for name, value in point["ordinals"].items():
            policy = "@" in name and not name.startswith("snapshot:")
            xs, ys = lines.setdefault(f"policy ({name.split('@')[0]})" if policy else name, ([], []))
            xs.append(at.get(point["label"], len(labels) - 1))
            ys.append(value)
    for name, (xs, ys) in lines.items():  # a snapshot's line starts when it joins the pool
        axes[0].plot(xs, ys, marker="o", label=name)
    axes[0].set_title("rating (openskill ordinal)")
    matches: list[tuple[str, str]] = []  # every (mode, opponent) of any evaluation (snapshots come later)
    for h in history:
        matches += [(m, o) for m, by in h["results"].items() for o in by if (m, o) not in matches]
    for mode, opponent in matches:
        rows = [h["results"].get(mode, {}).get(opponent, {}) for h in history]
        axes[1].plot(
            range(len(labels)),
            [r.get(f"{rate}_rate", float("nan")) for r in rows],
            marker="o",
            label=f"{mode} vs {opponent}",
        )
        axes[2].plot(
            range(len(labels)),
            [r.get("illegal_rate", float("nan")) for r in rows],
            marker="o",
            label=f"{mode} vs {opponent}",
        )
    axes[1].set_title(f"{rate.replace('_', '-')} rate")
    axes[2].set_title("illegal-answer rate")
    for ax in axes:
        ax.set_xticks(range(len(labels)), labels)
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=80)
    tmp.replace(path)
    return fig  # the caller logs it (TensorBoard) and closes it
