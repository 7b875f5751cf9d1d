"""Batch samplers that keep related rows together."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from torch.utils.data import Sampler


class GroupBatchSampler(Sampler[list[int]]):
    """Batches of about ``batch_size`` rows that never split a group (rows with the same key).

    Groups are packed once, in key order, into batches that close as soon as they reach
    ``batch_size`` rows (a group larger than ``batch_size`` is one batch of its own). Each pass visits
    the batches in a fresh random order; ``passes`` repeats them (PPO's epochs over one rollout).

    Args:
        keys: The group key of each row.
        batch_size: Rows per batch (about: groups are never split).
        shuffle: Visit batches in a random order.
        passes: How many times each batch is visited.
        generator: Draws the order (a resumed run must visit batches in the same order as the
            uninterrupted one, so callers pass one seeded by the run's position); None: torch's
            global generator.
    """

    def __init__(
        self,
        keys: Sequence[Hashable],
        batch_size: int,
        shuffle: bool = True,
        passes: int = 1,
        generator: torch.Generator | None = None,
    ) -> None:
        groups: dict[Hashable, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        self.batches: list[list[int]] = []
        current: list[int] = []
        for key in sorted(groups, key=str):
            current += groups[key]
            if len(current) >= batch_size:
                self.batches.append(current)
                current = []
        if current:
            self.batches.append(current)
        self.shuffle, self.passes, self.generator = shuffle, passes, generator

    def __iter__(self):
        for _ in range(self.passes):
            n = len(self.batches)
            order = torch.randperm(n, generator=self.generator).tolist() if self.shuffle else range(n)
            for i in order:
                yield self.batches[i]

    def __len__(self) -> int:
        return len(self.batches) * self.passes
