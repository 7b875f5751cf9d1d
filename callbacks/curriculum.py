"""Curriculum: named stages of env and opponent, advanced when a windowed success metric passes.

``CurriculumSchedule`` is the plain logic (tested without a Trainer): it records the learner's
outcomes of the current stage's finished games in a window of recent games and decides, with a
reason naming the numbers, whether to move to the next stage. ``Curriculum`` adapts it to Lightning:
it tells a :class:`~datamodules.protocols.StagedData` datamodule which env to play, measures
``datamodule.last_episodes`` after every training epoch, logs ``curriculum/stage`` and
``curriculum/metric`` and prints the decision. The stage index and its window live in the checkpoint.

Outcomes are those of the learner's seat: ``returns[seat]`` for ``win_rate`` (> 0) and
``non_loss_rate`` (>= 0), ``returns[seat] - penalties[seat]`` for ``mean_score``. Self-play games
(``learner_seat == -1``) have no learner outcome (one seat's win is the other's loss) and are
skipped, as are truncated games and games of another env or opponent; a stage therefore cannot use
``opponent="self"``. Games started from a replayed state (failure replay: ``start_history``) are
skipped too: they are the stage's hardest spots by choice, not a sample of its games, and would hold
a stage back for the replay's share (``FailureReplay`` reports their win rate).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from datamodules.protocols import StagedData, require
from datamodules.records import Episode
from envs import OPPONENTS  # importing envs registers the lightspiel ids
from modules.errors import ConfigError, check_choice, did_you_mean

__all__ = ["DEFAULT_STAGES", "METRICS", "Curriculum", "CurriculumSchedule", "Stage"]

#: Success metrics a stage can use; the first two are rates in [0, 1].
METRICS: tuple[str, ...] = ("win_rate", "non_loss_rate", "mean_score")
_RATES = ("win_rate", "non_loss_rate")
_TOLERANCE = 1e-9  # a metric "reaches" its threshold despite float rounding (e.g. 0.6 from 3/5)

#: Seed 002's ladder: easy game vs random -> harder game vs random -> MCTS opponent. Seed 002's last
#: stage plays every game against MCTS; one stage plays one env here, so it is tic-tac-toe vs MCTS
#: (add a connect-four-vs-MCTS stage after it for the full ladder).
DEFAULT_STAGES: list[dict[str, Any]] = [
    {
        "name": "tictactoe-random",
        "env": "lightspiel/TicTacToe-v0",
        "env_kwargs": {"opponent": "random"},
        "metric": "win_rate",
        "threshold": 0.6,
        "window": 50,
    },
    {
        "name": "connectfour-random",
        "env": "lightspiel/ConnectFour-v0",
        "env_kwargs": {"opponent": "random"},
        "metric": "win_rate",
        "threshold": 0.5,
        "window": 50,
    },
    {
        "name": "tictactoe-mcts",
        "env": "lightspiel/TicTacToe-v0",
        "env_kwargs": {"opponent": "mcts"},
        "metric": "win_rate",
        "threshold": 0.4,
        "window": 50,
    },
]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _lightspiel_ids() -> list[str]:
    return [k for k in gymnasium.registry if k.startswith("lightspiel/")]


@dataclass
class Stage:
    """One curriculum stage; checked on construction (a bad option raises ``ConfigError``).

    Args:
        name: Unique stage name (used in logs and to match a checkpoint's stages).
        env: Gymnasium id, e.g. ``"lightspiel/TicTacToe-v0"``.
        env_kwargs: ``gymnasium.make`` keyword arguments, the opponent included (filled in from the
            env's default when missing, so switching stages always sets it).
        metric: ``"win_rate"``, ``"non_loss_rate"`` or ``"mean_score"``.
        threshold: Advance once the metric over the window is >= this; in [0, 1] for the rates.
        window: How many of the stage's most recent games are counted (>= 1).
        min_games: Games needed before the stage can advance, in [1, window]; default ``window``.
    """

    name: str
    env: str
    env_kwargs: dict = field(default_factory=dict)
    metric: str = "win_rate"
    threshold: float = 0.5
    window: int = 50
    min_games: int | None = None

    def __post_init__(self) -> None:
        where = f"Curriculum stage {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"Curriculum stage: name must be a non-empty string; got {self.name!r}")
        if not isinstance(self.env, str) or self.env not in gymnasium.registry:
            hint = (
                did_you_mean(self.env, _lightspiel_ids()) or f"; registered: {', '.join(_lightspiel_ids())}"
            )
            raise ConfigError(f"{where}: env: unknown env id {self.env!r}{hint}")
        if not isinstance(self.env_kwargs, dict):
            raise ConfigError(f"{where}: env_kwargs must be a mapping; got {self.env_kwargs!r}")
        kwargs = dict(self.env_kwargs)
        default_opponent = (gymnasium.registry[self.env].kwargs or {}).get("opponent", "random")
        kwargs.setdefault("opponent", default_opponent)
        check_choice(kwargs["opponent"], OPPONENTS, f"{where}: env_kwargs.opponent")
        if kwargs["opponent"] == "self":
            raise ConfigError(
                f"{where}: env_kwargs.opponent 'self' gives no learner outcome to measure (self-play games "
                f"are skipped); name an opponent: {', '.join(o for o in OPPONENTS if o != 'self')}"
            )
        self.env_kwargs = kwargs
        check_choice(self.metric, METRICS, f"{where}: metric")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)):
            raise ConfigError(f"{where}: threshold must be a number; got {self.threshold!r}")
        if not math.isfinite(self.threshold):
            raise ConfigError(f"{where}: threshold must be finite; got {self.threshold!r}")
        if self.metric in _RATES and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(
                f"{where}: threshold must be in [0, 1] for metric {self.metric!r}; got {self.threshold!r}"
            )
        self.threshold = float(self.threshold)
        if not _is_int(self.window) or self.window < 1:
            raise ConfigError(f"{where}: window must be an int >= 1; got {self.window!r}")
        if self.min_games is None:
            self.min_games = self.window
        if not _is_int(self.min_games) or not 1 <= self.min_games <= self.window:
            raise ConfigError(
                f"{where}: min_games must be an int in [1, window={self.window}]; got {self.min_games!r}"
            )
        self._check_env_kwargs(where)

    def _check_env_kwargs(self, where: str) -> None:
        """Build the env once, so options it rejects (a game the opponent cannot play) fail here."""
        try:
            env = gymnasium.make(self.env, disable_env_checker=True, **self.env_kwargs)
        except (ValueError, TypeError, gymnasium.error.Error) as err:
            raise ConfigError(
                f"{where}: env_kwargs {self.env_kwargs} do not make {self.env!r}: {err}"
            ) from err
        env.close()

    @property
    def opponent(self) -> str:
        return str(self.env_kwargs["opponent"])

    def outcome(self, episode: Episode) -> float | None:
        """This stage's metric value for one game (1/0 for the rates), or ``None`` when the game does
        not count: another env or opponent, self-play, truncated, or started from a replayed state."""
        if (
            episode.env_id != self.env
            or episode.truncated
            or episode.learner_seat < 0
            or episode.start_history
        ):
            return None
        if not episode.players and episode.opponent != self.opponent:
            return None
        seat = episode.learner_seat
        if self.metric == "win_rate":
            return float(episode.returns[seat] > 0)
        if self.metric == "non_loss_rate":
            return float(episode.returns[seat] >= 0)
        return float(episode.returns[seat] - episode.penalties[seat])


def _as_stage(spec: Stage | dict, index: int) -> Stage:
    if isinstance(spec, Stage):
        return spec
    if not isinstance(spec, dict):
        raise ConfigError(f"Curriculum: stages[{index}] must be a mapping of Stage fields; got {spec!r}")
    names = [f.name for f in dataclasses.fields(Stage)]
    unknown = sorted(set(spec) - set(names))
    if unknown:
        raise ConfigError(
            f"Curriculum: stages[{index}] has unknown option {unknown[0]!r}"
            f"{did_you_mean(unknown[0], names)}; "
            f"options: {', '.join(names)}"
        )
    missing = [n for n in ("name", "env") if n not in spec]
    if missing:
        raise ConfigError(f"Curriculum: stages[{index}] needs option {missing[0]!r}")
    return Stage(**spec)


class CurriculumSchedule:
    """Which stage is being trained, its window of recent outcomes, and when to move on.

    Args:
        stages: ``Stage`` objects or dicts of their fields, easiest first (at least one; unique names).
    """

    def __init__(self, stages: Sequence[Stage | dict]) -> None:
        if isinstance(stages, (str, dict)) or not isinstance(stages, Sequence) or not stages:
            raise ConfigError(f"Curriculum: stages must be a non-empty list of stages; got {stages!r}")
        self.stages = [_as_stage(s, i) for i, s in enumerate(stages)]
        names = [s.name for s in self.stages]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"Curriculum: stages: duplicate stage name {dup[0]!r} (names must be unique)")
        self.index = 0
        self.window: deque[float] = deque(maxlen=self.current.window)
        self._last_ids: set[str] = set()

    @property
    def current(self) -> Stage:
        return self.stages[self.index]

    @property
    def finished(self) -> bool:
        """At the last stage (it is trained until the run ends; ``advance`` leaves it there)."""
        return self.index == len(self.stages) - 1

    def record(self, episodes: Iterable[Episode]) -> int:
        """Add the current stage's outcomes of ``episodes`` to the window; returns how many counted.

        The episodes of the previous call are not counted again (a datamodule that rolls out every K
        epochs shows the same ``last_episodes`` for K epochs)."""
        episodes = list(episodes)
        ids = {e.episode_id for e in episodes}
        counted = 0
        for e in episodes:
            if e.episode_id in self._last_ids:
                continue
            value = self.current.outcome(e)
            if value is not None:
                self.window.append(value)
                counted += 1
        self._last_ids = ids
        return counted

    def value(self) -> float | None:
        """The current stage's metric over its window (``None`` before its first game)."""
        return sum(self.window) / len(self.window) if self.window else None

    def decide(self) -> tuple[bool, str]:
        """Whether to advance to the next stage now, and why (stage, metric, value, games, threshold)."""
        stage, n, value = self.current, len(self.window), self.value()
        head = f"stage {self.index + 1}/{len(self.stages)} {stage.name!r}"
        if value is None:
            return False, f"{head}: no finished {stage.env} game vs {stage.opponent} yet"
        measured = f"{stage.metric} {value:.3f} over {n} game(s)"
        reached = value >= stage.threshold - _TOLERANCE
        if self.finished:
            verdict = "reaches" if reached else "is below"
            return False, f"{head}: {measured} {verdict} threshold {stage.threshold:g}; last stage, staying"
        if n < stage.min_games:
            return False, f"{head}: {measured}; {stage.min_games} game(s) needed before advancing"
        if not reached:
            return False, f"{head}: {measured} < threshold {stage.threshold:g}; staying"
        nxt = self.stages[self.index + 1].name
        return True, f"{head}: {measured} >= threshold {stage.threshold:g}; advancing to {nxt!r}"

    def advance(self) -> Stage:
        """Move to the next stage with an empty window (no-op at the last stage); returns the stage."""
        if not self.finished:
            self.index += 1
            self.window = deque(maxlen=self.current.window)
        return self.current

    def state_dict(self) -> dict:
        return {
            "stage_index": self.index,
            "stage_names": [s.name for s in self.stages],
            "stages": [
                {k: getattr(s, k) for k in ("name", "env", "env_kwargs", "metric", "threshold", "window")}
                for s in self.stages
            ],
            "window": list(self.window),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the saved stage (clamped to this curriculum) and its window; warn, naming the
        differences, when this run's stages are not the checkpoint's."""
        saved_index = int(state["stage_index"])
        saved_names = list(state.get("stage_names", []))
        saved_stages = {s["name"]: s for s in state.get("stages", [])}
        names = [s.name for s in self.stages]
        diffs = []
        if saved_names != names:
            diffs.append(f"stages {saved_names} in the checkpoint, {names} now")
        for s in self.stages:
            old = saved_stages.get(s.name)
            if old is None:
                continue
            for key in ("env", "env_kwargs", "metric", "threshold", "window"):
                if key in old and old[key] != getattr(s, key):
                    diffs.append(f"stage {s.name!r} {key} {old[key]!r} -> {getattr(s, key)!r}")
        self.index = min(max(saved_index, 0), len(self.stages) - 1)
        saved_name = saved_names[saved_index] if 0 <= saved_index < len(saved_names) else None
        saved_metric = saved_stages.get(saved_name, {}).get("metric", self.current.metric)
        keep = saved_name == self.current.name and saved_metric == self.current.metric
        self.window = deque(state.get("window", []) if keep else [], maxlen=self.current.window)
        self._last_ids = set()
        if diffs:
            clamped = f" (clamped from {saved_index})" if self.index != saved_index else ""
            window = "" if keep else "; its window starts empty"
            rank_zero_warn(
                f"Curriculum: this run's curriculum differs from the checkpoint's: {'; '.join(diffs)}. "
                f"Continuing at the saved stage index {self.index}{clamped}, {self.current.name!r}{window}"
            )


class Curriculum(L.Callback):
    """Trains the stages in order, advancing when the current stage's metric passes its threshold.

    Args:
        stages: Stage dicts (the :class:`Stage` fields), easiest first; ``None`` gives seed 002's
            ladder, :data:`DEFAULT_STAGES`.
    """

    def __init__(self, stages: list[dict] | None = None) -> None:
        self.schedule = CurriculumSchedule(DEFAULT_STAGES if stages is None else stages)

    @property
    def stage(self) -> Stage:
        return self.schedule.current

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        require(trainer.datamodule, StagedData, "Curriculum", "a datamodule")

    def _set_stage(self, trainer: L.Trainer) -> None:
        s = self.schedule.current
        trainer.datamodule.set_stage(s.env, dict(s.env_kwargs))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        s = self.schedule.current
        rank_zero_info(
            f"Curriculum: stage {self.schedule.index + 1}/{len(self.schedule.stages)} {s.name!r}: "
            f"{s.env} vs {s.opponent}, {s.metric} >= {s.threshold:g} over {s.window} games to advance"
        )
        self._set_stage(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.schedule.record(trainer.datamodule.last_episodes)
        advance, reason = self.schedule.decide()
        value = self.schedule.value()
        if value is not None:
            pl_module.log("curriculum/metric", float(value))
        rank_zero_info(f"Curriculum: {reason}")
        if advance:
            self.schedule.advance()
            self._set_stage(trainer)
        pl_module.log("curriculum/stage", float(self.schedule.index))  # the stage played next

    def state_dict(self) -> dict:
        return self.schedule.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.schedule.load_state_dict(state_dict)
