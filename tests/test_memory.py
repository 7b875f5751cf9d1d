"""Freed heap memory goes back to the operating system at phase boundaries."""

import gc

import pytest
import torch

from modules.memory import _malloc_trim, release_freed_memory


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(_malloc_trim() is None, reason="glibc's malloc_trim is not available here")
def test_freed_activations_leave_the_process_once_released():
    """The pattern of a training phase: many medium tensors (below glibc's mmap threshold once it has
    risen, so they come from the heap) between survivors; after they are freed the process still
    holds their pages (holes inside the heap, which freeing cannot shrink), and releasing hands
    them back."""
    big = torch.ones(8 << 20, dtype=torch.uint8)  # an 8 MiB block, mmapped; freeing it raises the threshold
    del big
    chunks, keep = [], []
    for _ in range(200):  # 200 MiB of activations, each followed by a survivor of the same size
        chunks.append(torch.ones(1 << 20, dtype=torch.uint8))
        keep.append(torch.ones(1 << 20, dtype=torch.uint8))
    held = _rss_mib()
    del chunks
    gc.collect()
    still = _rss_mib()
    assert release_freed_memory()
    after = _rss_mib()
    assert held - still < 50  # freeing alone gives (almost) nothing back
    assert still - after > 150  # releasing gives the 200 MiB back
    assert sum(int(k[0]) for k in keep) == 200
