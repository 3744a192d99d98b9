"""Peak memory and time of writing a simulated tile, streamed or held in memory.

Each size is written in a fresh process, whose peak resident set size
(``ru_maxrss``) is reported with the wall time and the size of the files:

- ``stream``: ``write_simulation(spec, directory)``, what ``dcr-dask simulate``
  does: the tile is simulated visit by visit as it is written;
- ``memory``: ``write_simulation(simulate_tile(spec), directory)``, the whole
  tile in memory first (the only path before streaming).

The tile is ``default_demo_spec`` (``--kind idealised``: Gaussian PSFs, 50
sources whatever the size) or ``standard_band_spec("g")`` (``--kind
realistic``: Moffat PSFs rendered through their transfer function, sources in
proportion to the area), with ``--visits`` visits in all: the spec's two
held-out visits and the others spread over its airmass range.

Run: ``python benchmarks/bench_simulate.py [--kind idealised] [--visits 24]
[--sizes 1024 2048 4096] [--modes stream memory] [--directory DIR]``; the
tiles are written under ``DIR`` (default: a temporary folder) and deleted.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_summary

from dcr_dask.simulate import (
    SimulationSpec,
    default_demo_spec,
    simulate_tile,
    standard_band_spec,
    write_simulation,
)


def tile_spec(kind: str, size: int, visits: int) -> SimulationSpec:
    """The benchmark's tile: ``visits`` visits in all, two of them held out."""
    shape = (size, size)
    base = default_demo_spec(shape) if kind == "idealised" else standard_band_spec("g", shape)
    fitted = visits - len(base.holdout_airmasses)
    airmasses = np.linspace(min(base.airmasses), max(base.airmasses), fitted)
    return attrs.evolve(base, airmasses=tuple(float(a) for a in airmasses))


def _one(kind: str, size: int, visits: int, mode: str, directory: Path) -> dict[str, float]:
    """Write one tile; its time, this process's peak RSS and the bytes written."""
    spec = tile_spec(kind, size, visits)
    start = time.perf_counter()
    write_simulation(spec if mode == "stream" else simulate_tile(spec), directory)
    seconds = time.perf_counter() - start
    written = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_rss_gib": peak_kib / 2**20, "written_gib": written / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("idealised", "realistic"), default="idealised")
    parser.add_argument("--visits", type=int, default=24)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--modes", nargs="+", choices=("stream", "memory"), default=["stream"])
    parser.add_argument("--directory", type=Path, default=None)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # the child: one size, one mode, into --directory
        result = _one(args.kind, args.sizes[0], args.visits, args.modes[0], args.directory)
        print(json.dumps(result))
        return
    print(machine_summary())
    print(f"{args.kind} tile, {args.visits} visits")
    print(f"{'size':>6} {'mode':>7} {'time s':>8} {'peak RSS GiB':>13} {'written GiB':>12}")
    root = Path(tempfile.mkdtemp(prefix="bench_simulate-", dir=args.directory))
    try:
        for size in args.sizes:
            for mode in args.modes:
                target = root / f"{size}-{mode}"
                options = {"--kind": args.kind, "--visits": args.visits, "--sizes": size}
                options |= {"--modes": mode, "--directory": target}
                child = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        *(str(o) for kv in options.items() for o in kv),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                result = json.loads(child.stdout.strip().splitlines()[-1])
                shutil.rmtree(target)
                print(
                    f"{size:>6} {mode:>7} {result['seconds']:>8.1f} "
                    f"{result['peak_rss_gib']:>13.2f} {result['written_gib']:>12.2f}",
                    flush=True,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
