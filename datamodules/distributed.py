"""What the datamodules need of ``torch.distributed`` under Lightning's DDP: the rank, a barrier,
and gathering Python objects (episodes) from every rank. Without an initialised process group each
is the one-process answer, so the same code runs in both."""

from __future__ import annotations

import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if rank_and_world()[1] > 1:
        dist.barrier()


def gather(obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` in one process)."""
    world = rank_and_world()[1]
    if world == 1:
        return [obj]
    parts: list = [None] * world
    dist.all_gather_object(parts, obj)
    return parts


def is_writer() -> bool:
    """Whether this process writes the run's shared files (rank zero)."""
    return rank_and_world()[0] == 0


def gather_episodes(mine: dict, path) -> dict:
    """Every rank's ``{key: Episode}`` merged, on every rank; rank zero appends the other ranks'
    episodes to ``path`` (it wrote its own as they ended). One process: ``mine`` unchanged."""
    rank, world = rank_and_world()
    if world == 1:
        return mine
    from datamodules.records import EpisodeWriter

    parts = gather(mine)
    if rank == 0:
        with EpisodeWriter(path) as writer:
            for part in parts[1:]:
                for episode in part.values():
                    writer.write(episode)
    return {k: e for part in parts for k, e in part.items()}
