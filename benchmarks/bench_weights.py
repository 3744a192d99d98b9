"""What a worker holds while the visits' weights (afw ``MEANCLIP`` of the variance) are made.

For every ``--sizes`` N, ``--visits`` planes of N x N random variance (float32,
gamma-distributed) and a mask with 2 % of bad pixels are written to a Zarr
store in ``--work-dir`` in ``--chunk``² chunks, then on a LocalCluster of 2
single-thread workers the clipped means are computed three ways, side by side:

- ``former``: one task per visit that gathers the plane and runs
  :func:`dcr_dask.kernels.stack.visit_weight` (float64 copies, a sort), what
  ``clipped_visit_weights`` did before;
- ``whole plane``: :func:`dcr_dask.graph.clipped_stats.plane_clipped_means`
  with its default budget (one task per visit keeping the good values in
  float32, partitioned in place);
- ``chunked``: the same with ``whole_plane_bytes=0`` (five passes of one task
  per chunk).

Per way: the largest worker's peak RSS above its RSS before (sampled every
0.05 s, after ``malloc_trim``), the wall time, and the largest relative
difference of the means from the former way's.

Run: ``python benchmarks/bench_weights.py --sizes 2048 4096 --visits 6``.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import psutil
from distributed import Client, LocalCluster

from dcr_dask.graph.clipped_stats import plane_clipped_means
from dcr_dask.kernels.stack import visit_weight

SIGMA, ITERATIONS = 3.0, 2


def _trim() -> None:
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_above_idle(
    client: Client, run: Callable[[], np.ndarray]
) -> tuple[np.ndarray, float, float]:
    """``run()``, the largest worker's peak RSS above its idle RSS (MiB) and the wall (s)."""
    client.run(_trim)
    processes = [psutil.Process(pid) for pid in client.run(os.getpid).values()]
    idle = {p.pid: p.memory_info().rss for p in processes}
    peak = dict(idle)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for p in processes:
                peak[p.pid] = max(peak[p.pid], p.memory_info().rss)
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    result = run()
    wall = time.perf_counter() - start
    stop.set()
    thread.join()
    return result, max(peak[pid] - idle[pid] for pid in idle) / 2**20, wall


def former(variance: da.Array, good: da.Array) -> np.ndarray:
    def one(values: np.ndarray, flags: np.ndarray) -> np.float64:
        return np.float64(1.0 / visit_weight(values, flags, SIGMA, ITERATIONS))

    parts = [
        da.from_delayed(dask.delayed(one)(variance[v], good[v]), shape=(), dtype=np.float64)
        for v in range(variance.shape[0])
    ]
    return np.asarray(da.stack(parts).compute())


def measure(size: int, args: argparse.Namespace, client: Client) -> dict[str, tuple]:
    store = Path(args.work_dir) / f"weights_{size}.zarr"
    shape, chunks = (args.visits, size, size), (1, args.chunk, args.chunk)
    variance = da.random.default_rng(0).gamma(50.0, 0.02, shape, chunks=chunks)
    mask = da.random.default_rng(1).random(shape, chunks=chunks) < 0.02
    da.to_zarr(da.stack([variance.astype(np.float32).view(np.int32), mask.astype(np.int32)]), store)
    stored = da.from_zarr(store)
    variance, good = stored[0].view(np.float32), stored[1] == 0
    ways = {
        "former": lambda: former(variance, good),
        "whole plane": lambda: plane_clipped_means(variance, good, SIGMA, ITERATIONS),
        "chunked": lambda: plane_clipped_means(
            variance, good, SIGMA, ITERATIONS, whole_plane_bytes=0
        ),
    }
    return {name: peak_above_idle(client, run) for name, run in ways.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--visits", type=int, default=6)
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--work-dir", default=None, help="where the stores go (a temporary dir)")
    args = parser.parse_args(argv)
    own = args.work_dir is None
    args.work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench_weights_")
    print(f"load average {os.getloadavg()}, {args.visits} visits, {args.chunk}² chunks")
    rows: dict[int, dict[str, tuple]] = {}
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
            for size in args.sizes:
                rows[size] = measure(size, args, client)
    finally:
        if own:
            shutil.rmtree(args.work_dir, ignore_errors=True)
    print(
        f"{'size':>6} {'way':>12} {'worker peak above idle, MiB':>28} {'wall, s':>8} "
        f"{'max rel diff':>13}"
    )
    for size, ways in rows.items():
        reference = ways["former"][0]
        for name, (means, peak, wall) in ways.items():
            diff = float(np.max(np.abs(means / reference - 1)))
            print(f"{size:>6} {name:>12} {peak:>28.0f} {wall:>8.1f} {diff:>13.1e}")
        ratio = ways["former"][1] / max(ways["whole plane"][1], 1e-9)
        print(f"{size:>6} former / whole plane peak: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
