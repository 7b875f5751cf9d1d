"""Batch samplers that keep related rows together."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from torch.utils.data import BatchSampler


class GroupBatchSampler(BatchSampler):
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
        sampler: Under DDP Lightning re-creates the batch sampler with its ``DistributedSampler``
            here; its ``rank`` and ``num_replicas`` shard the batches (every rank draws the same
            order from the same generator and takes every ``num_replicas``-th batch, the list padded
            by wrapping around so that every rank takes as many steps). Its own order is not used:
            groups must stay whole.
    """

    def __init__(
        self,
        keys: Sequence[Hashable],
        batch_size: int,
        shuffle: bool = True,
        passes: int = 1,
        generator: torch.Generator | None = None,
        sampler=None,
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
        self.keys, self.batch_size, self.drop_last = list(keys), batch_size, False
        self.sampler = sampler
        self.rank = int(getattr(sampler, "rank", 0))
        self.world = int(getattr(sampler, "num_replicas", 1))

    def __iter__(self):
        for _ in range(self.passes):
            n = len(self.batches)
            order = torch.randperm(n, generator=self.generator).tolist() if self.shuffle else list(range(n))
            if self.world > 1 and n:
                share = -(-n // self.world)
                order = [order[(self.rank + k * self.world) % n] for k in range(share)]
            for i in order:
                yield self.batches[i]

    def __len__(self) -> int:
        n = len(self.batches)
        return (-(-n // self.world) if self.world > 1 and n else n) * self.passes
