"""Failure replay: replay decision points of lost or illegally answered games until they are won.

``ReplayBuffer`` is the plain logic (tested without a Trainer); ``FailureReplay`` adapts it to
Lightning: after every training epoch it scores the replayed games of ``datamodule.last_episodes``,
adds the new failures and hands a :class:`~datamodules.protocols.ReplayData` datamodule the starts
for a set share of its next rollout. The buffer (and its random state) lives in the checkpoint.

A start is ``{"env", "seed", "history", "learner_seat", "seat", "score", "opponent"}``: the env id
and seed of the failed game, the OpenSpiel history of one learner decision state in it, the
learner's seat to replay it with (``None`` for a self-play game), the seat that failed there (the
player to move at ``history``), its score in the game (``returns[seat] - penalties[seat]``) and the
opponent it met (a datamodule that mixes opponents replays the start against the same one). The datamodule replays a
start with ``reset(seed=seed, options={"history": history, "learner_seat": learner_seat})``: the
env draws the learner's seat at random otherwise, and the state would be played from the other side.

Which games are failures, and which decision point is kept (at most one start per game):

- a learner answer was illegal or unparsed: the decision state of the first such answer;
- otherwise, against an opponent (not self-play), the learner lost (``returns[seat] < 0``) or scored
  below ``score_threshold``: the decision state of the learner's last move (the latest point at which
  the learner could still have changed the outcome).

Self-play games count only for illegal answers (one seat's loss is the other seat's win). A game
whose chosen point is the initial state (empty history) adds nothing: a fresh game replays it
already, and an empty ``start_history`` marks a game that was not replayed. Replayed games are not
searched for new failures; :meth:`ReplayBuffer.mark_results` scores them instead. A failure already
in the buffer (same env and history) is refreshed (new score and seed, counted as newest).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import lightning as L
import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from datamodules.protocols import ReplayData, require
from datamodules.records import Episode, Turn
from modules.errors import ConfigError

__all__ = ["PRIORITY_FLOOR", "FailureReplay", "ReplayBuffer"]

#: Sampling weight of the best-scoring start in the buffer; a start ``d`` points worse weighs ``d + 1``.
PRIORITY_FLOOR = 1.0


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _learner_turns(episode: Episode) -> list[Turn]:
    turns = [t for t in episode.turns if t.learner]
    if episode.learner_seat >= 0:
        turns = [t for t in turns if t.seat == episode.learner_seat]
    return turns


class ReplayBuffer:
    """A bounded, oldest-first buffer of failed starts, sampled with priority to the worst scores.

    Args:
        capacity: Starts kept; adding beyond it drops the oldest.
        score_threshold: A finished game (against an opponent) whose learner score
            (``returns - penalties``) is below this is a failure even if not lost.
        seed: Seed of the buffer's own random generator (used by :meth:`sample` without ``rng``).
    """

    def __init__(self, capacity: int = 1000, score_threshold: float = 0.0, seed: int = 0) -> None:
        if not _is_int(capacity) or capacity < 1:
            raise ConfigError(f"FailureReplay: capacity must be an int >= 1; got {capacity!r}")
        if (
            isinstance(score_threshold, bool)
            or not isinstance(score_threshold, (int, float))
            or not math.isfinite(score_threshold)
        ):
            raise ConfigError(
                f"FailureReplay: score_threshold must be a finite number; got {score_threshold!r}"
            )
        self.capacity = capacity
        self.score_threshold = float(score_threshold)
        self.rng = np.random.default_rng(seed)
        self.entries: list[dict] = []  # oldest first
        self.last = {"games": 0, "replayed": 0, "wins": 0, "mastered": 0}  # of the last mark_results

    def __len__(self) -> int:
        return len(self.entries)

    @staticmethod
    def _key(env: str, history: Iterable[int]) -> tuple:
        return (env, tuple(int(a) for a in history))

    def _find(self, env: str, history: Iterable[int]) -> int | None:
        key = self._key(env, history)
        for i, e in enumerate(self.entries):
            if self._key(e["env"], e["history"]) == key:
                return i
        return None

    def failure_start(self, episode: Episode) -> dict | None:
        """The start this episode adds (see the module docstring), or ``None`` if it adds none."""
        if episode.start_history:
            return None
        turns = _learner_turns(episode)
        point = next((t for t in turns if not t.legal), None)
        if point is None:
            seat = episode.learner_seat
            if seat < 0 or episode.truncated or not turns:
                return None
            ret = episode.returns[seat]
            if not (ret < 0 or ret - episode.penalties[seat] < self.score_threshold):
                return None
            point = turns[-1]
        if not point.history:
            return None
        seat = point.seat
        return {
            "env": episode.env_id,
            "seed": int(episode.seed),
            "history": [int(a) for a in point.history],
            "learner_seat": None if episode.learner_seat < 0 else int(seat),
            "seat": int(seat),
            "score": float(episode.returns[seat] - episode.penalties[seat]),
            "opponent": episode.opponent,
        }

    def add_from(self, episodes: Iterable[Episode]) -> int:
        """Add the failure start of each episode (at most one each); returns how many were found."""
        found = 0
        for episode in episodes:
            start = self.failure_start(episode)
            if start is None:
                continue
            found += 1
            i = self._find(start["env"], start["history"])
            if i is not None:
                del self.entries[i]
            self.entries.append(start)
        del self.entries[: max(len(self.entries) - self.capacity, 0)]
        return found

    def sample(self, n: int, rng: np.random.Generator | None = None, env: str | None = None) -> list[dict]:
        """Up to ``n`` distinct starts (copies), drawn without replacement with weights
        ``max_score - score + PRIORITY_FLOOR`` (``max_score``: the best score among the candidates), so
        the worse a start's outcome, the likelier it is drawn and the best one keeps weight 1.

        Args:
            n: Starts wanted (fewer come back when the buffer holds fewer).
            rng: Generator to draw with; default the buffer's own (its state is checkpointed).
            env: Only starts of this env id (``None``: any).
        """
        rng = self.rng if rng is None else rng
        pool = [e for e in self.entries if env is None or e["env"] == env]
        k = min(int(n), len(pool))
        if k <= 0:
            return []
        scores = np.array([e["score"] for e in pool], dtype=float)
        weights = scores.max() - scores + PRIORITY_FLOOR
        picks = rng.choice(len(pool), size=k, replace=False, p=weights / weights.sum())
        return [{**pool[i], "history": list(pool[i]["history"])} for i in picks]

    def mark_results(self, episodes: Iterable[Episode]) -> int:
        """Score the replayed games (non-empty ``start_history``) among ``episodes``: a start whose
        replay the learner won without an illegal answer is mastered and leaves the buffer; otherwise
        its score becomes the replay's. Returns how many starts were mastered."""
        episodes = list(episodes)
        replayed = [e for e in episodes if e.start_history]
        wins = mastered = 0
        for e in replayed:
            i = self._find(e.env_id, e.start_history)
            seat = (
                e.learner_seat if e.learner_seat >= 0 else (self.entries[i]["seat"] if i is not None else -1)
            )
            if seat < 0:
                continue
            won = e.returns[seat] > 0
            wins += won
            if i is None:
                continue
            clean = all(t.legal for t in _learner_turns(e) if t.seat == seat)
            if won and clean:
                del self.entries[i]
                mastered += 1
            else:
                self.entries[i]["score"] = float(e.returns[seat] - e.penalties[seat])
        self.last = {"games": len(episodes), "replayed": len(replayed), "wins": wins, "mastered": mastered}
        return mastered

    def metrics(self) -> dict[str, float]:
        """``size``; ``replayed_share`` and (when any game was replayed) ``replay_win_rate`` of the
        episodes last given to :meth:`mark_results`."""
        out = {
            "size": float(len(self.entries)),
            "replayed_share": self.last["replayed"] / self.last["games"] if self.last["games"] else 0.0,
        }
        if self.last["replayed"]:
            out["replay_win_rate"] = self.last["wins"] / self.last["replayed"]
        return out

    def state_dict(self) -> dict:
        """JSON-serialisable state: entries, options, last results and the generator's state."""
        return {
            "capacity": self.capacity,
            "score_threshold": self.score_threshold,
            "entries": [{**e, "history": list(e["history"])} for e in self.entries],
            "last": dict(self.last),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the buffer; with a smaller capacity than the checkpoint's, the newest starts stay."""
        entries = [{**e, "history": [int(a) for a in e["history"]]} for e in state.get("entries", [])]
        if len(entries) > self.capacity:
            rank_zero_info(
                f"FailureReplay: the checkpoint holds {len(entries)} starts, capacity is {self.capacity}; "
                "keeping the newest"
            )
        self.entries = entries[max(len(entries) - self.capacity, 0) :]
        self.last = {**self.last, **state.get("last", {})}
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]


class FailureReplay(L.Callback):
    """Starts a share of each rollout's games from decision points of earlier failures.

    Args:
        share: Fraction of each rollout's games started from replayed states, in [0, 1].
        capacity: Starts the buffer keeps (the oldest go first).
        score_threshold: A game scoring below this (return minus penalties) is a failure even if not
            lost.
        games_per_epoch: Games per rollout, when the datamodule has no ``num_episodes`` attribute.
        seed: Seed of the buffer's sampling generator.
    """

    def __init__(
        self,
        share: float = 0.3,
        capacity: int = 1000,
        score_threshold: float = 0.0,
        games_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
            raise ConfigError(
                f"FailureReplay: share must be in [0, 1] (the fraction of each rollout's games started from "
                f"replayed states); got {share!r}"
            )
        if games_per_epoch is not None and (not _is_int(games_per_epoch) or games_per_epoch < 1):
            raise ConfigError(
                f"FailureReplay: games_per_epoch must be None or an int >= 1; got {games_per_epoch!r}"
            )
        self.share = float(share)
        self.games_per_epoch = games_per_epoch
        self.buffer = ReplayBuffer(capacity, score_threshold, seed)
        #: The starts last handed to the datamodule (``None``: none yet), kept in the checkpoint.
        self.handed: list[dict] | None = None

    def _games(self, datamodule) -> int:
        n = getattr(datamodule, "num_episodes", None)
        return int(n) if n is not None else int(self.games_per_epoch or 0)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dm = require(trainer.datamodule, ReplayData, "FailureReplay", "a datamodule")
        if getattr(dm, "num_episodes", None) is None and self.games_per_epoch is None:
            raise ConfigError(
                f"FailureReplay: games_per_epoch is needed "
                f"({type(dm).__name__} has no num_episodes attribute)"
            )

    def _set_starts(self, trainer: L.Trainer) -> int:
        dm = trainer.datamodule
        n = round(self.share * self._games(dm))
        env = getattr(dm, "env", None)
        starts = self.buffer.sample(n, env=env if isinstance(env, str) else None)
        self.handed = starts
        dm.set_starts(starts)
        return len(starts)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A resumed run: the starts the checkpointed epoch handed out (so the resumed iteration is
        # the uninterrupted one's: its replayed games are read back, not drawn again); a checkpoint
        # without them draws from the restored buffer.
        if self.handed is not None:
            trainer.datamodule.set_starts(self.handed)
        elif len(self.buffer):
            self._set_starts(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Idempotent for a batch seen twice (a datamodule rolling out every K epochs): a mastered start
        # is gone, other scores and failures are refreshed with the same values.
        episodes = list(trainer.datamodule.last_episodes)
        mastered = self.buffer.mark_results(episodes)
        found = self.buffer.add_from(episodes)
        chosen = self._set_starts(trainer)
        m = self.buffer.metrics()
        pl_module.log("replay/size", m["size"])
        pl_module.log("replay/share", m["replayed_share"])
        if "replay_win_rate" in m:
            pl_module.log("replay/win_rate", m["replay_win_rate"])
        rank_zero_info(
            f"FailureReplay: {found} failure(s) found, {mastered} start(s) mastered, "
            f"{len(self.buffer)} in the buffer; {chosen} replayed start(s) next"
        )

    def state_dict(self) -> dict:
        state = self.buffer.state_dict()
        if self.handed is not None:
            state["handed"] = self.handed
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.buffer.load_state_dict(state_dict)
        self.handed = state_dict.get("handed")
