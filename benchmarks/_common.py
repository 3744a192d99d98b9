"""Helpers shared by the benchmarks: machine description, interleaved best-of-N timing.

The machines we benchmark on are shared, so timings are noisy. Candidates are
therefore timed side by side in one process, interleaved round by round (A, B,
C, A, B, C, ...), and each is reported as its best of N rounds: background load
slows all candidates of a round alike and rarely hits every round of one.
"""

from __future__ import annotations

import datetime
import gc
import os
import platform
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import scipy
import xarray as xr

from dcr_dask.io.fits import read_warp_header
from dcr_dask.running.templates import matched_template, visit_file_psf_variance

__all__ = ["best_of", "machine_summary", "rms", "time_interleaved", "warp_template"]

REPO = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_state(paths: tuple[str, ...]) -> str:
    """Commit of the checkout and whether ``paths`` differ from it (read-only git calls)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", *paths],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"{commit}" + (" + local changes to " + ", ".join(paths) if dirty else "")


def machine_summary(kernel_paths: tuple[str, ...] = ()) -> str:
    """One paragraph naming the date, machine, library versions and code version."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cores = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    lines = [
        f"date: {now}",
        f"machine: {_cpu_model()}, {cores} cores ({usable} usable), "
        f"{platform.system()} {platform.release()}; load average {load}",
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}",
    ]
    if kernel_paths:
        lines.append(f"dcr_dask commit: {_git_state(kernel_paths)}")
    return "\n".join(lines)


def rms(array: np.ndarray) -> float:
    """Root mean square of an array, in float64."""
    array = np.asarray(array, dtype=np.float64)
    return float(np.sqrt(np.mean(array * array)))


def best_of(function: Callable[[], object], repeat: int) -> float:
    """Best wall-clock time of ``repeat`` calls of ``function``, seconds."""
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def time_interleaved(
    candidates: Mapping[str, Callable[[], object]],
    repeat: int,
    *,
    report: Callable[[str], None] | None = None,
) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Time several candidates side by side, interleaved round by round.

    Parameters
    ----------
    candidates : mapping of str to callable
        Name and a no-argument function of each candidate.
    repeat : int
        Number of rounds; every candidate runs once per round.
    report : callable, optional
        Called with a line of progress after every run.

    Returns
    -------
    times : dict of str to list of float
        Wall-clock seconds of every run, per candidate.
    results : dict of str to object
        What each candidate returned in its first run.
    """
    times: dict[str, list[float]] = {name: [] for name in candidates}
    results: dict[str, object] = {}
    for round_ in range(repeat):
        for name, function in candidates.items():
            gc.collect()
            start = time.perf_counter()
            result = function()
            elapsed = time.perf_counter() - start
            times[name].append(elapsed)
            if name not in results:
                results[name] = result
            del result
            if report is not None:
                report(f"  round {round_ + 1}/{repeat}: {name:<16} {elapsed:8.3f} s")
    return times, results


def warp_template(dataset: xr.Dataset, path: Path | str) -> np.ndarray:
    """The DCR-matched template of the visit of a warp file, as ``dcr-dask template``
    makes it: at the warp's PSF when the store was fitted with
    ``psfForwardModel="gaussian"``."""
    visit = read_warp_header(path)[0]
    variance = visit_file_psf_variance(path, visit)
    return np.asarray(matched_template(dataset, visit, psf_variance_px2=variance).values)
