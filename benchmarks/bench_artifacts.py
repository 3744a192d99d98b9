"""Artifact rejection against truth: the static sky model vs DCR-matched templates.

Each seed simulates a crowded g-band tile (visits at airmass 1.01-2.0 on both
sides of the meridian, a satellite streak in one visit, cosmic rays in every
visit, all as plain flux) plus two held-out visits near airmass 1.9, and runs the
whole pipeline on one local Dask cluster, side by side, in three configurations:

- ``static``: the reference (PSF-matched warps compared with the static sky
  model), all reference defaults;
- ``dcrTemplate``: ``artifactReference="dcrTemplate"`` (each PSF-matched warp
  compared with its own DCR-matched template; clipped pixels then left out of
  the DCR fit), all other fields at the reference defaults;
- ``dcrTemplate+``: the settings we recommend for data with many artifacts,
  ``dcr_dask.config.many_artifacts_overrides()``: ``dcrTemplate`` with
  ``doPreserveContainedBySource=False`` and ``detect`` at ``thresholdValue``
  6.0, ``minPixels`` 1, ``nSigmaToGrow`` 1.0 (the reference's: 7.5, 4, 0.4).
  They were chosen on seeds 1-6 and checked on seeds 7-10.

A fourth row, ``truth``, is the ceiling of the method: ``find_artifacts`` with
the ``dcrTemplate+`` settings against the noise-free truth, PSF-matched with the
same kernels, as each visit's reference (a perfect template). What it misses,
no template finds with these detection settings: the faint edges of the streak
(its truth mask reaches down to 1 sky sigma per pixel) and cosmic rays on
bright stars, whose Poisson noise hides them once PSF matching spreads them.

Scores, from the output store's ``artifacts`` and the simulator's truth masks:

- ``recall``: share of artifact pixels clipped (all; streak; cosmic rays);
  the acceptance asks for >= 95 %;
- ``stars clipped``: share of source pixels (true flux > 5 sky sigma) more than
  10 px from any artifact that were clipped; the acceptance asks for < 1 %;
- ``centroid ratio``: RMS centroid error of bright isolated stars in the held-out
  visits' DCR-matched templates / the plain coadd's (lower is better);
- ``run s``: wall time of the run.

Run: ``python benchmarks/bench_artifacts.py [--seeds 1 2 3] [--size 128]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_summary

from dcr_dask import truth
from dcr_dask.config import DcrAssembleCoaddConfig, many_artifacts_overrides
from dcr_dask.graph.artifacts import find_artifacts, variance_scale_factors
from dcr_dask.graph.coadd import plain_coadd
from dcr_dask.graph.psf_matching import match_psfs, psf_matching
from dcr_dask.io.warps import open_warps
from dcr_dask.running.cluster import dask_client
from dcr_dask.running.pipeline import run
from dcr_dask.running.templates import matched_template
from dcr_dask.settings import artifact_settings, psf_matching_settings, variance_scaling
from dcr_dask.simulate import SimulationSpec, simulate_tile, write_simulation

#: The pipeline configurations compared (overrides of the reference defaults).
MODES = {
    "static": {},
    "dcrTemplate": {"artifactReference": "dcrTemplate"},
    "dcrTemplate+": many_artifacts_overrides(),
}
NEAR_ARTIFACT_PX = 10


def _spec(size: int, seed: int) -> SimulationSpec:
    return SimulationSpec(
        shape=(size, size),
        airmasses=(1.01, 1.05, 1.1, 1.2, 1.3, 1.4, 1.55, 1.7, 1.85, 2.0),
        holdout_airmasses=(1.88, 1.92),
        streak_visits=(2,),
        cosmic_rays_per_visit=4,
        seed=seed,
    )


def _truth_masks(tile, spec: SimulationSpec) -> dict[str, np.ndarray]:
    fitted = ~tile.holdout
    artifacts = tile.artifacts[fitted]
    streak = np.zeros_like(artifacts)
    for v in spec.streak_visits:
        labels, _ = ndimage.label(artifacts[v], structure=np.ones((3, 3)))
        if labels.max():
            streak[v] = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    near = np.array([ndimage.binary_dilation(a, iterations=NEAR_ARTIFACT_PX) for a in artifacts])
    sources = tile.true_images[fitted] > 5.0 * spec.sky_sigma
    return {
        "all": artifacts,
        "streak": streak,
        "cosmic": artifacts & ~streak,
        "stars": sources & ~near,
    }


def _config(overrides: dict) -> DcrAssembleCoaddConfig:
    config = DcrAssembleCoaddConfig()
    config.update(effectiveWavelength=478.0, bandwidth=147.0, subregionSize=[64, 64])
    config.update(**overrides)
    return config


def _truth_template_artifacts(tile, warp_paths, work: Path, config) -> np.ndarray:
    """Artifacts found against the PSF-matched truth (the method's ceiling), from a run's
    work directory (its PSF-matched warps and static model)."""
    warps = open_warps(warp_paths, chunks=tuple(config.subregionSize))
    psf_matched = xr.open_zarr(work / "psf_matched.zarr", consolidated=False)
    psf_matched.attrs.update({k: v for k, v in warps.attrs.items() if k not in psf_matched.attrs})
    static = xr.open_zarr(work / "static_model.zarr", consolidated=False)
    matching = psf_matching(warps, psf_matching_settings(config))
    ideal = warps.copy()
    ideal["image"] = (("visit", "y", "x"), tile.true_images[~tile.holdout].astype(np.float32))
    ideal["variance"] = xr.zeros_like(warps["variance"])
    matched = match_psfs(ideal, psf_matching_settings(config), matching=matching)
    reference = matched[["image", "variance"]]
    scale = (
        variance_scale_factors(psf_matched, variance_scaling(config))
        if config.doScaleWarpVariance
        else None
    )
    found = find_artifacts(
        psf_matched,
        reference,
        artifact_settings(config),
        template=static,
        variance_scale=scale,
        psf_sigma_px=matching.model_sigma_px,
        same_sign_epochs=True,
    )
    return found["artifacts"].values.astype(bool)


def _scores(clipped: np.ndarray, masks: dict[str, np.ndarray]) -> tuple[float, ...]:
    return tuple(float(clipped[masks[k]].mean()) for k in ("all", "streak", "cosmic", "stars"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    parser.add_argument("--size", type=int, default=128, help="tile size, px (default 128)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    code = ("running/pipeline", "graph/psf_matching", "graph/detect", "graph/artifacts")
    print(machine_summary(tuple(f"dcr_dask/{name}.py" for name in code)))
    print(f"tile {args.size}^2, 10 visits + 2 held out, streak in visit 2, 4 cosmic rays/visit")
    print(f"dcrTemplate+ = many_artifacts_overrides() = {many_artifacts_overrides()}")
    header = (
        f"{'seed':>4} {'reference':>13} {'recall':>7} {'streak':>7} {'cosmic':>7}"
        f" {'stars clipped':>13} {'centroid ratio':>14} {'run s':>6}"
    )
    print(header)
    rows_of: dict[str, list[tuple[float, ...]]] = {m: [] for m in [*MODES, "truth"]}
    with dask_client(n_workers=args.workers) as client, tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            spec = _spec(args.size, seed)
            tile = simulate_tile(spec)
            paths = write_simulation(tile, Path(tmp) / f"sim{seed}")
            masks = _truth_masks(tile, spec)
            stars = truth.bright_isolated_stars(tile, n=15)
            plain = plain_coadd(open_warps(paths["warps"]), ["NO_DATA", "BAD", "SAT"]).image.values
            for mode, overrides in MODES.items():
                config = _config(overrides)
                work = Path(tmp) / f"work-{seed}-{mode}"
                started = time.perf_counter()
                dataset = run(
                    config,
                    paths["warps"],
                    output=Path(tmp) / f"out-{seed}-{mode}.zarr",
                    client=client,
                    work_dir=work,
                )
                seconds = time.perf_counter() - started
                ratios = []
                for k in np.flatnonzero(tile.holdout):
                    template = matched_template(dataset, tile.visits[k]).values
                    dcr = truth.centroid_rms_error(template, tile.true_images[k], stars)
                    flat = truth.centroid_rms_error(plain, tile.true_images[k], stars)
                    ratios.append(dcr / flat)
                row = (
                    *_scores(dataset["artifacts"].values.astype(bool), masks),
                    float(np.mean(ratios)),
                    seconds,
                )
                rows_of[mode].append(row)
                print(
                    f"{seed:>4} {mode:>13} {row[0]:>7.1%} {row[1]:>7.1%} {row[2]:>7.1%}"
                    f" {row[3]:>13.2%} {row[4]:>14.3f} {row[5]:>6.1f}",
                    flush=True,
                )
                if mode == "dcrTemplate+":
                    ceiling = _truth_template_artifacts(tile, paths["warps"], work, config)
                    row = (*_scores(ceiling, masks), float("nan"), float("nan"))
                    rows_of["truth"].append(row)
                    print(
                        f"{seed:>4} {'truth':>13} {row[0]:>7.1%} {row[1]:>7.1%} {row[2]:>7.1%}"
                        f" {row[3]:>13.2%} {'':>14} {'':>6}",
                        flush=True,
                    )
    print("mean over seeds [worst seed]; targets: recall >= 95 %, stars clipped < 1 %, every seed")
    for mode, rows in rows_of.items():
        rows = np.array(rows)
        mean = rows.mean(axis=0)
        worst = rows.min(axis=0)
        worst_stars = rows[:, 3].max()
        met = {
            "all": worst[0] >= 0.95,
            "streak": worst[1] >= 0.95,
            "cosmic": worst[2] >= 0.95,
            "stars": worst_stars < 0.01,
        }
        verdict = ", ".join(f"{k} {'MET' if ok else 'NOT met'}" for k, ok in met.items())
        print(
            f"  {mode:>13}: recall {mean[0]:.1%} [{worst[0]:.1%}], streak {mean[1]:.1%}"
            f" [{worst[1]:.1%}], cosmic rays {mean[2]:.1%} [{worst[2]:.1%}], stars clipped"
            f" {mean[3]:.2%} [{worst_stars:.2%}], centroid ratio {mean[4]:.3f}, run {mean[5]:.1f} s"
            f" -> {verdict}"
        )
    static, best = np.array(rows_of["static"]), np.array(rows_of["dcrTemplate+"])
    ceiling = np.array(rows_of["truth"])
    print(
        "ratios dcrTemplate+/static: cosmic-ray recall"
        f" {best[:, 2].mean() / static[:, 2].mean():.2f}x,"
        f" stars clipped {best[:, 3].mean() / max(static[:, 3].mean(), 1e-12):.2f}x,"
        f" run time {best[:, 5].mean() / static[:, 5].mean():.2f}x;"
        f" dcrTemplate+/truth template: cosmic-ray recall"
        f" {best[:, 2].mean() / ceiling[:, 2].mean():.2f}x,"
        f" streak {best[:, 1].mean() / ceiling[:, 1].mean():.2f}x"
    )


if __name__ == "__main__":
    main()
