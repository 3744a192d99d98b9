"""What the cluster can give the graphs: the memory budget of the fit's groups of
subregions, and how many visits one chunk of CompareWarp's graphs holds."""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "BLOCKS_PER_THREAD",
    "CHUNK_BUDGET_BYTES",
    "CHUNK_BUDGET_FRACTION",
    "COMPARE_BYTES_PER_PIXEL",
    "cluster_blocks_in_flight",
    "cluster_chunk_budget",
    "cluster_memory_budget",
    "visits_per_chunk",
]

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


#: Working memory of CompareWarp's artifact graphs per pixel of one visit, bytes
#: (:func:`visits_per_chunk`). Measured with ``tracemalloc`` (synchronous scheduler,
#: one 256 x 256 chunk of the realistic g tile, 1, 4 and 12 visits per chunk): the
#: peak grows by 50 bytes per added pixel of a visit in the variance scale's pass
#: (the S/N histogram in float64), 24 in :func:`dcr_dask.graph.artifacts.find_artifacts`'
#: labelling passes and 24 in the artifact-mask pass; rounded up to 64.
COMPARE_BYTES_PER_PIXEL = 64

#: Memory one task of CompareWarp's artifact graphs may use, bytes
#: (:func:`visits_per_chunk`): 256 MiB, so that a 2000 x 2000 subregion (the
#: default ``subregionSize``) keeps one visit per chunk, a 1000 x 1000 one four and
#: a 512 x 512 one sixteen.
CHUNK_BUDGET_BYTES = 256 * 2**20

#: Part of a worker thread's share of its worker's memory limit that one task may use
#: (:func:`cluster_chunk_budget`): the thread's other tasks, the results it holds and
#: Dask's spilling at 60 % of the limit need the rest.
CHUNK_BUDGET_FRACTION = 0.1


def visits_per_chunk(
    n_visits: int,
    chunk_shape: tuple[int, int],
    budget_bytes: float | None = CHUNK_BUDGET_BYTES,
    bytes_per_pixel: float = COMPARE_BYTES_PER_PIXEL,
    *,
    min_visit_chunks: int = 1,
) -> int:
    """How many visits one ``(y, x)`` chunk of a ``(visit, y, x)`` graph holds, from a byte budget.

    Each visit of a chunk costs ``bytes_per_pixel`` per pixel of the chunk; as many
    visits as fit in ``budget_bytes`` are grouped, at least one (a chunk larger than
    the budget keeps one visit) and at most ``n_visits``, nor so many that the visits
    make fewer than ``min_visit_chunks`` chunks (while one visit per chunk gives that
    many). Fewer, larger chunks mean fewer tasks: CompareWarp's artifact passes run
    some 180 small tasks per chunk, whose overhead dominates their arithmetic on
    small subregions.

    Parameters
    ----------
    n_visits : int
        Visits of the tile, >= 1.
    chunk_shape : tuple of int
        ``(y, x)`` pixels of the largest chunk (``subregionSize``, clipped to the tile).
    budget_bytes : float or None
        Memory one task may use, bytes (default :data:`CHUNK_BUDGET_BYTES`; see
        :func:`cluster_chunk_budget`); None for no bound (every visit in one chunk).
    bytes_per_pixel : float
        Working memory per pixel of one visit, bytes (default
        :data:`COMPARE_BYTES_PER_PIXEL`), > 0.
    min_visit_chunks : int
        Chunks the visits of one ``(y, x)`` chunk are split in at least (as far as
        the visits go), >= 1: e.g. so that every worker thread has a chunk of a tile
        of one subregion.

    Returns
    -------
    int
        Visits per chunk, in ``[1, n_visits]``.

    Raises
    ------
    ValueError
        For ``n_visits < 1``, an empty chunk, a negative or NaN budget, or
        ``bytes_per_pixel <= 0`` or ``min_visit_chunks < 1``.
    """
    if n_visits < 1:
        raise ValueError(f"n_visits must be >= 1, got {n_visits!r}")
    if min_visit_chunks < 1:
        raise ValueError(f"min_visit_chunks must be >= 1, got {min_visit_chunks!r}")
    most = max(1, int(n_visits) // int(min_visit_chunks))
    pixels = int(chunk_shape[0]) * int(chunk_shape[1])
    if pixels < 1:
        raise ValueError(f"the chunk must have pixels, got shape {tuple(chunk_shape)!r}")
    if not bytes_per_pixel > 0:
        raise ValueError(f"bytes_per_pixel must be > 0, got {bytes_per_pixel!r}")
    if budget_bytes is None:
        return most
    if not budget_bytes >= 0:
        raise ValueError(f"budget_bytes must be >= 0 or None, got {budget_bytes!r}")
    if math.isinf(budget_bytes):
        return most
    fits = int(budget_bytes // (pixels * bytes_per_pixel))
    return max(1, min(most, fits))


def cluster_chunk_budget(
    client: Any,
    cap: float = CHUNK_BUDGET_BYTES,
    fraction: float = CHUNK_BUDGET_FRACTION,
) -> float:
    """Memory one task of CompareWarp's graphs may use on a Dask cluster, bytes.

    ``fraction`` of the smallest share of a worker's memory limit per thread,
    and no more than ``cap``: on workers of a few GiB the cap decides, on small
    workers their limit does.

    Parameters
    ----------
    client : distributed.Client
        The run's client.
    cap : float
        The most one task may use, bytes (default :data:`CHUNK_BUDGET_BYTES`).
    fraction : float
        Part of a thread's share of its worker's limit, in (0, 1] (default
        :data:`CHUNK_BUDGET_FRACTION`).

    Returns
    -------
    float
        Bytes: ``cap`` when no worker has a memory limit or there are no workers.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    budget = float(cap)
    for info in client.scheduler_info()["workers"].values():
        limit = info.get("memory_limit") or 0
        if limit:
            threads = max(1, int(info.get("nthreads") or 1))
            budget = min(budget, fraction * float(limit) / threads)
    return budget
