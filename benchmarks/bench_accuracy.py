"""Accuracy against truth of the engine's options, side by side in one run.

Every variant fits the same simulated g-band tile (visits at airmass 1.0-2.0 on
both sides of the meridian, two held-out visits near airmass 1.9) through the
whole pipeline on one local Dask cluster, and is scored against the
simulator's truth:

- ``centroid ratio``: RMS centroid error of bright isolated stars in the
  held-out visits' DCR-matched templates, divided by the plain coadd's (lower
  is better; the acceptance test asks for <= 0.15);
- ``template rms``: RMS of (template - noise-free visit) over source pixels,
  relative to the plain coadd's;
- ``corr``: the lowest correlation of a sub-band model with the true sub-band
  sky on source pixels;
- ``blue share``: the share of the bluest star's flux in the bluest sub-band
  (truth in the header line);
- ``fit s``: seconds of the fit stage.

Run: ``python benchmarks/bench_accuracy.py [--size 256] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

from dcr_dask import truth
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.graph.coadd import plain_coadd
from dcr_dask.io.warps import open_warps
from dcr_dask.running.cluster import dask_client
from dcr_dask.running.pipeline import run
from dcr_dask.running.templates import matched_template
from dcr_dask.simulate import default_demo_spec, simulate_tile, write_simulation

VARIANTS = {
    "reference (spline)": {"shiftMethod": "spline"},
    "sinc": {"shiftMethod": "sinc"},
    "fourier": {"shiftMethod": "fourier"},
    "sinc + inverseVariance": {"shiftMethod": "sinc", "residualWeighting": "inverseVariance"},
    "sinc + throughput shifts": {"shiftMethod": "sinc", "subbandShiftMode": "throughput"},
    "sinc + local geometry": {"shiftMethod": "sinc", "useLocalGeometry": True},
}


def _flat_curve(path: Path, spec) -> Path:
    lo = spec.effective_wavelength_nm - spec.bandwidth_nm / 2
    hi = spec.effective_wavelength_nm + spec.bandwidth_nm / 2
    wavelengths = np.linspace(lo - 5, hi + 5, 400)
    throughput = ((wavelengths >= lo) & (wavelengths <= hi)).astype(float)
    np.savetxt(path, np.column_stack([wavelengths, throughput]), header="nm throughput")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="tile size, pixels")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    spec = default_demo_spec(shape=(args.size, args.size), seed=args.seed)
    tile = simulate_tile(spec)
    stars = truth.bright_isolated_stars(tile, n=15)
    index = [s.spectral_index for s in stars]
    blue = stars[int(np.argmin(index))]
    holdouts = np.flatnonzero(tile.holdout)
    with tempfile.TemporaryDirectory() as scratch, dask_client(n_workers=args.workers) as client:
        scratch = Path(scratch)
        paths = write_simulation(tile, scratch / "sim")
        curve = _flat_curve(scratch / "g_flat.txt", spec)
        plain = plain_coadd(open_warps(paths["warps"]), ["NO_DATA", "BAD", "SAT"]).image.values
        plain_centroid = np.mean(
            [truth.centroid_rms_error(plain, tile.true_images[k], stars) for k in holdouts]
        )
        print(
            f"tile {args.size}x{args.size}, {len(paths['warps'])} visits, "
            f"{len(holdouts)} held out; {len(stars)} bright isolated stars; "
            f"plain-coadd centroid RMS {plain_centroid:.4f} px; bluest star true share "
            f"{blue.subband_flux[0] / blue.flux:.3f}"
        )
        header = (
            f"{'variant':28s} {'centroid ratio':>14s} {'template rms':>12s} {'corr':>6s} "
            f"{'blue share':>10s} {'fit s':>6s}"
        )
        print(header)
        print("-" * len(header))
        for name, fields in VARIANTS.items():
            config = DcrAssembleCoaddConfig()
            config.update(
                effectiveWavelength=spec.effective_wavelength_nm,
                bandwidth=spec.bandwidth_nm,
                subregionSize=[128, 128],
                **fields,
            )
            if fields.get("subbandShiftMode") == "throughput":
                config.transmissionCurve = str(curve)
            dataset = run(
                config,
                paths["warps"],
                output=scratch / f"{len(name)}.zarr",
                client=client,
                overwrite=True,
                work_dir=scratch / "work",
            )
            fit_seconds = dataset.attrs["timings_s"]["fit_s"]
            model = dataset["dcr_model"].values
            ratios, rms = [], []
            for k in holdouts:
                template = matched_template(dataset, tile.visits[k]).values
                true = tile.true_images[k]
                ratios.append(
                    truth.centroid_rms_error(template, true, stars)
                    / truth.centroid_rms_error(plain, true, stars)
                )
                source = true > 5 * spec.sky_sigma
                scale = true.sum() / plain.sum()
                rms.append(
                    np.sqrt(np.mean((template - true)[source] ** 2))
                    / np.sqrt(np.mean((scale * plain - true)[source] ** 2))
                )
            correlation = truth.subband_correlations(model, tile.true_subbands, 5.0).min()
            share = truth.subband_flux_shares(model, blue)[0]
            print(
                f"{name:28s} {np.mean(ratios):14.3f} {np.mean(rms):12.3f} {correlation:6.3f} "
                f"{share:10.3f} {fit_seconds:6.1f}"
            )


if __name__ == "__main__":
    main()
