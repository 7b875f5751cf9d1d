"""Randomness that depends on where a run is, not on what the process did before.

A resumed run must sample what the uninterrupted run sampled. Every random draw of a run therefore
comes from a generator seeded by the run's seed and its position (iteration, epoch, purpose), never
from a global generator's history: ``position_seed(seed, iteration, "rollout")`` is the same number in
the run that played iteration 2 straight and in the run resumed at it.
"""

from __future__ import annotations

import os

import numpy as np
import torch


def position_seed(*parts: int | str) -> int:
    """A 31-bit seed mixed from ``parts`` (ints and short labels) by NumPy's ``SeedSequence``."""
    words = [
        p if isinstance(p, int) else int.from_bytes(p.encode()[:8].ljust(8, b"\0"), "little") for p in parts
    ]
    return int(np.random.SeedSequence([abs(w) for w in words]).generate_state(1)[0]) & 0x7FFFFFFF


def run_seed() -> int:
    """The run's seed: ``seed_everything`` of the config (Lightning exports it), else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def seeded_generator(*parts: int | str) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by ``position_seed(*parts)``."""
    return torch.Generator().manual_seed(position_seed(*parts))


def reseed_global(*parts: int | str) -> None:
    """Reseed torch's global generator (LoRA dropout, sampling in ``generate``) from a position."""
    torch.manual_seed(position_seed(*parts))
