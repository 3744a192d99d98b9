"""What the cluster can give the fit: the memory budget of its groups of subregions."""

from __future__ import annotations

from typing import Any

__all__ = ["cluster_memory_budget"]


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
