"""Where the noise-free template's centroid error comes from, visit by visit (issue 13).

A GalSim tile (tests/galsim_tile.py) is rendered without noise, streak or cosmic
rays, fitted with the defaults (``dcr_dask.running.pipeline.run``, one local
Dask cluster), and the DCR-matched template of every visit, fitted and held
out, is compared with that visit's noise-free truth, star by star (isolated
stars above S/N 20 per visit, centres as in ``bench_realistic.py``:
``dcr_dask.truth.weighted_centroid``). Per visit it prints:

- the airmass, the parallactic angle ``q``, the seeing (FWHM at 500 nm) and
  the DCR span (distance between the bluest and the reddest sub-band's
  shifts, px);
- ``common along`` / ``common perp``: the mean centroid error of all stars,
  along the visit's DCR direction (blue to red) and across it, px. An error
  common to every star is one shift of the whole template: matching kernels
  of difference imaging absorb it, centroid scores charge it;
- ``star along`` / ``star perp``: the scatter of the stars' errors about that
  mean, px: what differs from star to star (colour), which no kernel absorbs;
- ``diff rms``: what image differencing leaves (``_realistic_scoring``, one
  kernel per visit) over source pixels, in sky sigmas of one visit.

With ``--fixed-seeing F`` a second tile of the same seed is rendered with
every visit's seeing set to F, side by side, to separate what the seeing's
spread from visit to visit does from what DCR does.

Run: ``python benchmarks/bench_visit_bias.py [--seeds 3] [--band g] [--size 256]
[--fixed-seeing 0.75]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import galsim_tile as gt
from _common import machine_summary, warp_template
from _realistic_scoring import DIFFERENCE_KERNEL_PX

from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.io.fits import read_warp_header, wcs_from_header_text
from dcr_dask.running.cluster import dask_client
from dcr_dask.running.pipeline import run
from dcr_dask.settings import dcr_shifts
from dcr_dask.truth import matched_difference, weighted_centroid

#: Stars closer than this to the edge, or with a neighbour of more than
#: ``NEIGHBOUR_SHARE`` of their flux within ``ISOLATION_PX``, are left out.
EDGE_PX, ISOLATION_PX, NEIGHBOUR_SHARE, MIN_SNR = 16.0, 12.0, 0.05, 20.0


def _stars(tile: gt.GalSimTile) -> list[gt.Source]:
    ny, nx = tile.true_images.shape[1:]
    xy = np.array([(s.x, s.y) for s in tile.sources])
    flux = np.array([s.flux for s in tile.sources])
    keep = []
    for s in tile.sources:
        inside = EDGE_PX <= s.x < nx - EDGE_PX and EDGE_PX <= s.y < ny - EDGE_PX
        if not (s.is_star and inside and s.snr_visit >= MIN_SNR):
            continue
        distance = np.hypot(xy[:, 0] - s.x, xy[:, 1] - s.y)
        crowded = (distance > 0) & (distance < ISOLATION_PX) & (flux > NEIGHBOUR_SHARE * s.flux)
        if not crowded.any():
            keep.append(s)
    return keep


def visit_rows(spec: gt.GalSimTileSpec, client, scratch: Path) -> list[dict[str, float]]:
    """Fit the noise-free tile of ``spec`` and score every visit's template (see above)."""
    tile = gt.render_tile(spec)
    paths = gt.write_tile(tile, scratch / "tile")
    config = DcrAssembleCoaddConfig()
    config.update(**gt.band_config(spec), subregionSize=[min(spec.shape[0], 128)] * 2)
    dataset = run(
        config,
        paths["warps"],
        output=scratch / "out.zarr",
        client=client,
        work_dir=scratch / "work",
        overwrite=True,
    )
    wcs = wcs_from_header_text(dataset.attrs["wcs_header"])
    by_name = {p.name: p for p in [*paths["warps"], *paths["holdout"]]}
    stars = _stars(tile)
    rows = []
    for k, visit in enumerate(tile.visits):
        header = read_warp_header(by_name[f"visit_{visit.visit}.fits"])[0]
        template = warp_template(dataset, by_name[f"visit_{visit.visit}.fits"]).astype(np.float64)
        shifts = np.asarray(
            dcr_shifts([header], wcs, config, template.shape).at_centre().shifts_px
        )[0].reshape(-1, 2)
        span = shifts[-1] - shifts[0]  # (dy, dx), blue to red
        along_u = span / np.linalg.norm(span)
        across_u = np.array([-along_u[1], along_u[0]])
        errors = []
        for s in stars:
            true_yx = weighted_centroid(tile.true_images[k], s.y, s.x)
            model_yx = weighted_centroid(template, s.y, s.x)
            errors.append(np.subtract(model_yx, true_yx))
        errors = np.array(errors)
        along, across = errors @ along_u, errors @ across_u
        difference, _ = matched_difference(
            template, tile.true_images[k], kernel_size=DIFFERENCE_KERNEL_PX
        )
        use = (tile.true_images[k] > 5 * spec.sky_sigma) & np.isfinite(difference)
        rows.append(
            {
                "visit": visit.visit,
                "held out": visit.holdout,
                "airmass": visit.airmass,
                "q": visit.parallactic_angle_deg,
                "seeing": visit.seeing_fwhm_500_arcsec,
                "span": float(np.linalg.norm(span)),
                "common along": float(along.mean()),
                "common perp": float(across.mean()),
                "star along": float(along.std()),
                "star perp": float(across.std()),
                "diff rms": float(np.sqrt(np.mean(difference[use] ** 2)) / spec.sky_sigma),
                "n stars": len(stars),
            }
        )
    return rows


COLUMNS = ("airmass", "q", "seeing", "span", "common along", "common perp", "star along",
           "star perp", "diff rms")  # fmt: skip


def _print(label: str, rows: list[dict[str, float]]) -> None:
    print(f"\n{label} ({rows[0]['n stars']} stars)")
    print(f"{'visit':<10}" + "".join(f"{c:>13}" for c in COLUMNS))
    for row in rows:
        name = f"{row['visit']}{' held' if row['held out'] else ''}"
        print(f"{name:<10}" + "".join(f"{row[c]:>13.4f}" for c in COLUMNS))
    common = np.array([r["common along"] for r in rows])
    star = np.array([r["star along"] for r in rows])
    print(
        f"{'RMS':<10}{'':>52}{np.sqrt(np.mean(common**2)):>13.4f}{'':>13}"
        f"{np.sqrt(np.mean(star**2)):>13.4f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[3])
    parser.add_argument("--band", choices=["g", "r"], default="g")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--fixed-seeing", type=float, default=0.75, help="arcsec; 0 for none")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    print(machine_summary())
    with dask_client(n_workers=args.workers) as client:
        for seed in args.seeds:
            base = dict(
                shape=(args.size, args.size),
                seed=seed,
                noise_free=True,
                streak_visit=None,
                cosmic_rays_per_visit=0,
            )
            specs = {"seeing as rendered": gt.band_spec(args.band, **base)}
            if args.fixed_seeing > 0:
                specs[f"seeing {args.fixed_seeing:g} in every visit"] = gt.band_spec(
                    args.band, seeing_fwhm_arcsec=(args.fixed_seeing,) * 2, **base
                )
            for label, spec in specs.items():
                with tempfile.TemporaryDirectory() as tmp:
                    rows = visit_rows(spec, client, Path(tmp))
                _print(f"{args.band}, seed {seed}, {label}", rows)


if __name__ == "__main__":
    main()
