"""The protocols through which callbacks steer a datamodule (and a module), named in one place.

A callback checks the protocol it needs in ``setup`` and fails there with a message naming it, so a
config that pairs a callback with a datamodule that cannot serve it fails before any slow work.
Any datamodule that implements the methods qualifies; no base class is needed.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = [
    "AdvantageEstimator",
    "EnvSource",
    "IterativeData",
    "ReferenceAware",
    "ReplayData",
    "StagedData",
    "require",
]


@runtime_checkable
class EnvSource(Protocol):
    """A datamodule that plays one env: the tournament evaluates on it unless told otherwise."""

    env: str
    env_kwargs: dict


@runtime_checkable
class IterativeData(Protocol):
    """A datamodule whose data is rebuilt per iteration (iterative regeneration, curricula, replay)."""

    def set_iteration(self, iteration: int) -> None:
        """Move to ``iteration``; its data is built (or reloaded from the run folder) when next asked."""


@runtime_checkable
class StagedData(Protocol):
    """A datamodule whose env can be switched between rollouts (a curriculum's stages).

    ``last_episodes`` holds the episodes of the most recent rollout (what a curriculum measures)."""

    last_episodes: list

    def set_stage(self, env: str, env_kwargs: dict) -> None:
        """Play ``env`` with ``env_kwargs`` (opponent included) from the next rollout on."""


@runtime_checkable
class ReplayData(Protocol):
    """A datamodule that can start some of its next rollout's games from saved states (failure replay).

    ``last_episodes`` holds the episodes of the most recent rollout (where failures are found)."""

    last_episodes: list

    def set_starts(self, starts: list[dict]) -> None:
        """Start that many of the next rollout's games from these states, each
        ``{"env": env id, "seed": int, "history": [OpenSpiel action ids], "learner_seat": int | None}``
        (played with ``reset(seed=seed, options={"history": history, "learner_seat": learner_seat})``,
        so the learner replays from the side it failed on); the other games start fresh."""


@runtime_checkable
class AdvantageEstimator(Protocol):
    """A module that turns one rollout's learner turns into training rows (PPO, GRPO).

    The on-policy datamodule calls it once per rollout, before batching: advantages depend on the
    algorithm (GAE with a value head, group-normalised rewards, role baselines), whose options and
    state (e.g. the role baselines) live in the module and its checkpoint."""

    def assign_advantages(self, rows: list[dict]) -> dict[str, float]:
        """Fill each row's ``advantage`` (and whatever else the loss reads, e.g. ``return``,
        ``old_logps``) in place; return statistics to log."""


@runtime_checkable
class ReferenceAware(Protocol):
    """A module that caches anything computed with the reference model."""

    def reference_changed(self) -> None:
        """The reference moved (a new snapshot): drop what was computed with the old one."""


def require(obj: Any, protocol: type, who: str, what: str) -> Any:
    """``obj`` if it implements ``protocol``; else a ``ConfigError`` saying who needs what."""
    from modules.errors import ConfigError

    if not isinstance(obj, protocol):
        name = type(obj).__name__ if obj is not None else "no datamodule"
        raise ConfigError(f"{who} needs {what} implementing {protocol.__name__}; got {name}")
    return obj
