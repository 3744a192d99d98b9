"""How much the output depends on ``subregionSize``, side by side in one run.

The same realistic simulated tile (``dcr_dask.simulate.realistic_spec``: Moffat
PSFs, no DETECTED plane, a streak and cosmic rays) goes through
``dcr_dask.running.pipeline.run`` twice per setting: once as a single subregion and once
cut into small ones, on one local Dask cluster. Printed for each setting: the
largest difference between the two outputs' sub-band models and coadds,
relative to the brightest pixel, and the RMS difference relative to the RMS of
the model.

Settings:

- ``defaults``: every subregion measures its own background noise (frequency
  regularization, convergence metric), scales its model weights by its own
  peak, and stops on its own metric, as the reference's subregions do;
- ``no per-block statistic``: ``useConvergence=False``,
  ``useProgressiveGain=False``, ``regularizeModelFrequency=0``,
  ``useModelWeights=False``: every block runs the same iterations with the same
  gains and no statistic of its own;
- ``psf none`` and ``psf none, no stat.``: the same two with
  ``psfForwardModel="none"`` (the reference's; the default, ``"gaussian"``,
  has a per-frequency preconditioner that is a filter over each whole block,
  docs/algorithm.md): ``psf none, no stat.`` is the case in which the README
  says the result does not depend on ``subregionSize`` (to float32 rounding),
  and the two ``no stat.`` rows side by side show how far the
  preconditioner carries a block's edge into its core at the pipeline's halo.

Run: ``python benchmarks/bench_subregion.py [--size 256] [--small 64] [--seeds 1 2 3]
[--settings NAME ...]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_summary

import dcr_dask
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.running.cluster import dask_client
from dcr_dask.simulate import realistic_spec, simulate_tile, write_simulation

_NO_STATISTIC = {
    "useConvergence": False,
    "useProgressiveGain": False,
    "regularizeModelFrequency": 0.0,
    "useModelWeights": False,
    "maxNumIter": 20,
}
SETTINGS = {
    "defaults": {},
    "no per-block statistic": _NO_STATISTIC,
    "psf none": {"psfForwardModel": "none"},
    "psf none, no stat.": {**_NO_STATISTIC, "psfForwardModel": "none"},
}


def _run(warps, overrides, subregion, output, client) -> dict[str, np.ndarray]:
    config = DcrAssembleCoaddConfig()
    config.update(effectiveWavelength=478.0, bandwidth=147.0, **overrides)
    config.update(subregionSize=[subregion, subregion])
    dataset = dcr_dask.run(config, warps, output=output, client=client)
    return {
        "model": dataset["dcr_model"].values.astype(np.float64),
        "coadd": dataset["coadd"].values.astype(np.float64),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="tile size, px")
    parser.add_argument("--small", type=int, default=64, help="small subregions, px")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(machine_summary())
    print(
        f"tile {args.size}^2 (realistic_spec, g), one {args.size} px subregion vs "
        f"{args.small} px subregions; differences of the outputs"
    )
    header = f"{'seed':>4} {'setting':24} {'max |d| / peak':>15} {'rms d / rms':>12} {'s':>6}"
    print(header)
    started = time.perf_counter()
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in args.settings}
    with dask_client(n_workers=args.workers, threads_per_worker=1) as client:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                tmp_path = Path(tmp)
                tile = simulate_tile(realistic_spec((args.size, args.size), seed, "g"))
                warps = write_simulation(tile, tmp_path / "sim")["warps"]
                for name in args.settings:
                    overrides = SETTINGS[name]
                    t0 = time.perf_counter()
                    whole = _run(warps, overrides, args.size, tmp_path / f"{name}-w.zarr", client)
                    cut = _run(warps, overrides, args.small, tmp_path / f"{name}-c.zarr", client)
                    worst, spread = 0.0, 0.0
                    for key in ("model", "coadd"):
                        difference = np.abs(whole[key] - cut[key])
                        peak = np.nanmax(np.abs(whole[key]))
                        worst = max(worst, float(np.nanmax(difference) / peak))
                        rms = np.sqrt(np.nanmean(whole[key] ** 2))
                        spread = max(spread, float(np.sqrt(np.nanmean(difference**2)) / rms))
                    rows[name].append((worst, spread))
                    print(
                        f"{seed:>4} {name:24} {worst:>15.2e} {spread:>12.2e} "
                        f"{time.perf_counter() - t0:>6.1f}",
                        flush=True,
                    )
    print(f"\nmean ± std over seeds {args.seeds}")
    for name, values in rows.items():
        array = np.array(values)
        print(
            f"     {name:24} {array[:, 0].mean():.2e}±{array[:, 0].std():.1e}"
            f"  {array[:, 1].mean():.2e}±{array[:, 1].std():.1e}"
        )
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
