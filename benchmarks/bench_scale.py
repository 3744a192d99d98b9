"""How the whole pipeline's memory and time grow with the tile, at a fixed ``subregionSize``.

For every ``--sizes`` N, a realistic N x N tile of ``--visits`` visits
(``dcr_dask.simulate.realistic_spec``, the visits' airmasses spread over the g
tile's 1.01-2.0, no held-out visit) is simulated in a child process into
``--data-dir`` (kept and reused by later runs), then the default pipeline
(``dcr_dask.running.pipeline.run``, what ``dcr-dask run`` does) fits it on a
LocalCluster of ``--workers`` workers of ``--threads`` threads, with
``subregionSize = --subregion``.

A thread polls, every ``--interval`` seconds, the resident set size (RSS) of
this process (the client, and the LocalCluster's scheduler, which runs in it)
and of every process below it (nannies and workers), and reports per size:

- ``total``: the peak of the sum of RSS over the process tree;
- ``client``: the peak RSS of this process (client + scheduler);
- ``worker``: the largest peak RSS of one worker process;
- ``wall``, ``s/Mpx``: the run's wall time, and per megapixel of the tile;
- per stage (the pipeline's ``timings_s``): its seconds and the peak total RSS
  while it ran (the stage is read from the pipeline's ``_Run.stage``);
- ``scheduler CPU``: the CPU seconds of this process's event-loop threads
  (``IO loop``: the scheduler, and the client's communication with it) during
  the run, as a share of the wall time;
- ``tasks computing``: the seconds the workers spent computing tasks (the
  scheduler's record of each task's ``compute`` interval, summed), as a share of
  wall time x worker threads; the rest is transfers, the scheduler, work done
  in the client (eager steps, graph building) and idle threads;

then the ratios between consecutive columns, side by side. With several
``--workers`` counts each size runs once per count (``2048²/1w``, ``2048²/2w``),
and the speed-up of each count over the first count of the same size is
printed. RSS is sampled, so a peak shorter than the interval can be missed; the
sum over processes counts shared pages once per process. The runs share this
process, which does not give back all its memory between them: the client's
RSS at the start of each run is printed.

Run: ``python benchmarks/bench_scale.py --sizes 1024 2048 --visits 24 --subregion 1024``;
``--sizes 2048 --workers 1 2`` for the parallel efficiency.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import itertools
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
from distributed.diagnostics.plugin import SchedulerPlugin

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_summary

GIB = 2.0**30

#: The pipeline's stages, in the order they run (keys of ``timings_s`` without ``_s``).
STAGES = (
    "ingest",
    "input_checks",
    "compare_warp",
    "dcr_reference",
    "artifact_masks",
    "direct_coadd",
    "inputs",
    "fit",
    "coadd_psf",
    "write",
)


def simulate(size: int, visits: int, seed: int, directory: str) -> list[str]:
    """Simulate and write one tile (run in a child process, so that the simulator's
    memory is not counted as the client's); returns the warp files."""
    import attrs

    from dcr_dask.simulate import realistic_spec, simulate_tile, write_simulation

    spec = realistic_spec((size, size), seed, "g")
    airmasses = tuple(float(a) for a in np.round(np.linspace(1.01, 2.0, visits), 3))
    spec = attrs.evolve(spec, airmasses=airmasses, holdout_airmasses=())
    paths = write_simulation(simulate_tile(spec), directory, overwrite=True)
    return [str(p) for p in paths["warps"]]


def simulated_tile(size: int, visits: int, seed: int, data_dir: Path) -> list[Path]:
    """The warp files of one tile, simulated once into ``data_dir`` and reused."""
    directory = data_dir / f"tile_{size}_{visits}v_seed{seed}"
    done = directory / "bench_scale_done.json"
    if done.exists():
        return [Path(p) for p in json.loads(done.read_text())["warps"]]
    print(f"simulating {size}x{size}, {visits} visits into {directory} ...", flush=True)
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        warps = pool.submit(simulate, size, visits, seed, str(directory)).result()
    done.write_text(json.dumps({"warps": warps}))
    print(f"  simulated in {time.perf_counter() - start:.0f} s", flush=True)
    return [Path(p) for p in warps]


class RssSampler:
    """Polls the RSS of this process and of every process below it, in a thread.

    ``stage`` (set from outside) labels the samples; peaks are kept overall, per
    stage, per process.
    """

    def __init__(self, interval: float):
        self.interval = interval
        self.stage = "setup"
        self.me = psutil.Process()
        self.peak_total = 0
        self.peak_client = 0
        self.peak_by_pid: dict[int, int] = {}
        self.peak_by_stage: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        total = 0
        processes = [self.me]
        with contextlib.suppress(psutil.Error):
            processes += self.me.children(recursive=True)
        for process in processes:
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            self.peak_by_pid[process.pid] = max(self.peak_by_pid.get(process.pid, 0), rss)
            if process.pid == self.me.pid:
                self.peak_client = max(self.peak_client, rss)
        self.peak_total = max(self.peak_total, total)
        self.peak_by_stage[self.stage] = max(self.peak_by_stage.get(self.stage, 0), total)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class ComputeTime(SchedulerPlugin):
    """A scheduler plugin summing the workers' compute seconds of every finished task."""

    name = "bench-scale-compute-time"

    def __init__(self) -> None:
        self.seconds = 0.0
        self.tasks = 0

    def transition(self, key: object, start: str, finish: str, *args: object, **kwargs) -> None:
        if start == "processing" and finish == "memory":
            self.tasks += 1
            for interval in kwargs.get("startstops", ()):
                if interval.get("action") == "compute":
                    self.seconds += interval["stop"] - interval["start"]


def loop_thread_cpu() -> float:
    """CPU seconds so far of this process's ``IO loop`` threads (scheduler and client
    communication of a LocalCluster)."""
    ids = {t.native_id for t in threading.enumerate() if t.name == "IO loop"}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in ids)


@contextlib.contextmanager
def stage_labels(sampler: RssSampler) -> Iterator[None]:
    """Label the sampler's samples with the pipeline stage that runs (``_Run.stage``)."""
    from dcr_dask.running import pipeline

    original = pipeline._Run.stage

    @contextlib.contextmanager
    def labelled(self, timing: str, running: str | None = None) -> Iterator[None]:
        outer = sampler.stage
        sampler.stage = timing.removesuffix("_s")
        try:
            with original(self, timing, running):
                yield
        finally:
            sampler.stage = outer

    pipeline._Run.stage = labelled  # type: ignore[method-assign]
    try:
        yield
    finally:
        pipeline._Run.stage = original  # type: ignore[method-assign]


def measure(size: int, workers_n: int, warps: list[Path], args: argparse.Namespace) -> dict:
    """One pipeline run on a fresh LocalCluster, with its memory sampled."""
    from dcr_dask.config import DcrAssembleCoaddConfig, apply_overrides
    from dcr_dask.running.cluster import dask_client
    from dcr_dask.running.pipeline import run

    config = DcrAssembleCoaddConfig()
    config.subregionSize = (args.subregion, args.subregion)
    apply_overrides(config, args.set)
    work = Path(tempfile.mkdtemp(prefix=f"bench_scale_{size}_", dir=args.work_root))
    try:
        with (
            RssSampler(args.interval) as sampler,
            dask_client(
                n_workers=workers_n,
                threads_per_worker=args.threads,
                memory_limit=args.memory_limit,
            ) as client,
        ):
            workers = client.run(os.getpid)
            baseline = sampler.me.memory_info().rss
            sampler.stage = "other"
            compute = ComputeTime()
            client.cluster.scheduler.add_plugin(compute)
            with stage_labels(sampler):
                loop_cpu = loop_thread_cpu()
                start = time.perf_counter()
                dataset = run(
                    config,
                    warps,
                    output=work / "coadd.zarr",
                    work_dir=work / "work",
                    client=client,
                    memory_budget_bytes=args.memory_budget,
                )
                wall = time.perf_counter() - start
                loop_cpu = loop_thread_cpu() - loop_cpu
            threads = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
            timings = dict(dataset.attrs["timings_s"])
            groups = dataset.attrs["convergence"]["groups"]
            sampler.stage = "teardown"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "size": size,
        "workers": workers_n,
        "threads": threads,
        "scheduler_cpu": loop_cpu,
        "compute": compute.seconds,
        "tasks": compute.tasks,
        "total": sampler.peak_total,
        "client": sampler.peak_client,
        "client_baseline": baseline,
        "worker": max(sampler.peak_by_pid.get(pid, 0) for pid in workers.values()),
        "wall": wall,
        "per_mpx": wall / (size * size / 1e6),
        "timings": timings,
        "stage_peaks": sampler.peak_by_stage,
        "groups": groups,
    }


def report(results: list[dict], by_workers: bool = False) -> None:
    """Print the per-size figures and the ratios between consecutive columns."""
    names = [f"{r['size']}²" + (f"/{r['workers']}w" if by_workers else "") for r in results]
    ratio_names = [f"{b}/{a}" for a, b in itertools.pairwise(names)]
    width = max(10, *(len(n) + 2 for n in names + ratio_names))
    header = f"{'':24s}" + "".join(f"{n:>{width}s}" for n in names + ratio_names)
    print(header)

    def row(label: str, values: list[float], fmt: str, ratios: bool = True) -> None:
        cells = "".join(f"{format(v, fmt):>{width}s}" for v in values)
        if ratios:
            cells += "".join(
                f"{(b / a if a else float('nan')):>{width}.2f}"
                for a, b in itertools.pairwise(values)
            )
        print(f"{label:24s}{cells}")

    row("peak total RSS, GiB", [r["total"] / GIB for r in results], ".2f")
    row("peak per worker, GiB", [r["worker"] / GIB for r in results], ".2f")
    row("peak client, GiB", [r["client"] / GIB for r in results], ".2f")
    row("client at start, GiB", [r["client_baseline"] / GIB for r in results], ".2f", False)
    row("wall, s", [r["wall"] for r in results], ".1f")
    row("wall per Mpx, s", [r["per_mpx"] for r in results], ".1f")
    row(
        "scheduler CPU, % wall",
        [100 * r["scheduler_cpu"] / r["wall"] for r in results],
        ".1f",
        False,
    )
    row(
        "tasks computing, %",
        [100 * r["compute"] / (r["wall"] * r["threads"]) for r in results],
        ".1f",
        False,
    )
    row("tasks", [r["tasks"] for r in results], "d", False)
    if by_workers:
        # against the first worker count of the same size
        first = {}
        for r in results:
            first.setdefault(r["size"], r)
        row(
            "speed-up over first",
            [first[r["size"]]["wall"] / r["wall"] for r in results],
            ".2f",
            False,
        )
    row("fit groups", [r["groups"] for r in results], "d", False)
    print("per stage: seconds")
    for stage in STAGES:
        key = f"{stage}_s"
        if any(key in r["timings"] for r in results):
            row(f"  {stage}", [r["timings"].get(key, float("nan")) for r in results], ".1f")
    print("per stage: peak total RSS while it ran, GiB")
    for stage in ("other", *STAGES):
        if any(stage in r["stage_peaks"] for r in results):
            row(
                f"  {stage}",
                [r["stage_peaks"].get(stage, 0) / GIB for r in results],
                ".2f",
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048], metavar="N")
    parser.add_argument("--visits", type=int, default=24)
    parser.add_argument("--subregion", type=int, default=1024, help="subregionSize, px")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[2],
        help="workers of the LocalCluster; several counts run each size once per count",
    )
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument(
        "--memory-limit", default="auto", help="memory limit per worker (default auto)"
    )
    parser.add_argument(
        "--memory-budget",
        type=float,
        default=None,
        help="the fit's memory budget, bytes (default: the pipeline's, what workers have left)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="config override, as 'dcr-dask run --set' (e.g. maxNumIter=3: the default "
        "30-60 iterations take long on a shared machine; the fit's memory does not grow "
        "with the iterations)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--interval", type=float, default=0.2, help="RSS polling, seconds")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "dcr_dask_bench_scale",
        help="where simulated tiles are written and reused (default: %(default)s)",
    )
    parser.add_argument(
        "--work-root", default=None, help="parent of each run's temporary work directory"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import dcr_dask

    print(machine_summary(("dcr_dask",)))
    print(f"dcr_dask imported from {Path(dcr_dask.__file__).parent}")
    print(
        f"visits {args.visits}, subregionSize {args.subregion}, {args.workers} workers x "
        f"{args.threads} threads, memory limit {args.memory_limit}, "
        f"RSS every {args.interval} s, config overrides {args.set or 'none'}"
    )
    args.data_dir.mkdir(parents=True, exist_ok=True)
    tiles = {
        size: simulated_tile(size, args.visits, args.seed, args.data_dir) for size in args.sizes
    }
    by_workers = len(args.workers) > 1
    results = []
    for size in args.sizes:
        for workers_n in args.workers:
            print(f"running {size}x{size} on {workers_n} workers ...", flush=True)
            results.append(measure(size, workers_n, tiles[size], args))
            print(
                f"  peak total {results[-1]['total'] / GIB:.2f} GiB, "
                f"wall {results[-1]['wall']:.0f} s, load average {os.getloadavg()}",
                flush=True,
            )
            # each run's figures as soon as they are measured (a long run may be cut short)
            report(results[-1:], by_workers)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    if len(results) > 1:
        print(f"all runs, side by side (load average now {os.getloadavg()}):")
        report(results, by_workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
