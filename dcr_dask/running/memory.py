"""What the cluster can give the fit: the memory budget of its groups of subregions."""

from __future__ import annotations

from typing import Any

__all__ = ["BLOCKS_PER_THREAD", "cluster_blocks_in_flight", "cluster_memory_budget"]

#: Blocks of the fit per worker thread in one group (:func:`cluster_blocks_in_flight`):
#: two keep every thread busy while the slower blocks of an iteration finish.
BLOCKS_PER_THREAD = 2


def cluster_memory_budget(client: Any, fraction: float = 0.5) -> float | None:
    """Memory the fit may plan for on a Dask cluster: what its workers have left.

    For each worker, ``fraction`` of its memory limit minus the memory its
    process uses now; summed over workers. Dask starts spilling at 60 % of a
    worker's limit and pauses it at 80 %, so half the limit keeps a margin
    for the transient buffers of the tasks.

    Parameters
    ----------
    client : distributed.Client
        The run's client.
    fraction : float
        Part of each worker's memory limit the fit may fill, in (0, 1].

    Returns
    -------
    float or None
        Bytes; None if a worker has no memory limit or there are no workers
        (then every block is fitted in one group).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    workers = client.scheduler_info()["workers"]
    if not workers:
        return None
    total = 0.0
    for info in workers.values():
        limit = info.get("memory_limit") or 0
        if not limit:
            return None
        used = float(info.get("metrics", {}).get("memory", 0) or 0)
        total += max(0.0, fraction * float(limit) - used)
    return total


def cluster_blocks_in_flight(client: Any, per_thread: int = BLOCKS_PER_THREAD) -> int | None:
    """How many subregions the fit keeps on a Dask cluster at once: ``per_thread`` per
    worker thread.

    A group of subregions holds its inputs (every visit of every subregion, grown by
    the halo) in the workers' memory until it is written. More subregions than the
    cluster computes at once do not make the fit faster, only its memory larger, and
    a budget alone lets that memory grow with the tile up to what the workers have.
    This bound makes it follow the cluster, not the tile.

    Parameters
    ----------
    client : distributed.Client
        The run's client.
    per_thread : int
        Subregions per worker thread, >= 1.

    Returns
    -------
    int or None
        Subregions; None if there are no workers (then no bound).
    """
    if per_thread < 1:
        raise ValueError(f"per_thread must be >= 1, got {per_thread!r}")
    workers = client.scheduler_info()["workers"]
    threads = sum(int(info.get("nthreads") or 1) for info in workers.values())
    return per_thread * threads if threads else None
