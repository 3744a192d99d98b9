"""Simulate a DCR tile and make its DCR coadd on a local Dask cluster (the README's main job).

Steps: simulate a realistic tile in a standard band (Rubin's g by default,
``--band``) with known truth (Moffat PSFs with chromatic seeing, faint stars,
a satellite streak and cosmic rays, no DETECTED plane:
:func:`dcr_dask.simulate.standard_band_spec`; warps in the FITS layout that
dcr_dask reads, plus two held-out visits near airmass 1.9), start a local Dask
cluster on 127.0.0.1, run the whole pipeline (ingest to Zarr, template, DCR
fit, output store; the band is taken from the warps), export the sub-band
models and the coadd to FITS, build the DCR-matched templates of the held-out
visits, and draw a figure: the DCR-corrected coadd, how each sub-band differs
from their mean, the residuals of a held-out visit against a plain coadd and
against its DCR-matched template (on one colour scale), each visit's sub-band
shifts, and the convergence of each subregion.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import xarray as xr

from dcr_dask import truth
from dcr_dask.commands._common import non_negative_int, positive_int, standard_band_name
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.errors import OutputError
from dcr_dask.graph.coadd import plain_coadd
from dcr_dask.io.export import export_fits
from dcr_dask.io.ownership import WRITER_ATTR, is_own, writer
from dcr_dask.io.warps import open_warps
from dcr_dask.plot import Panel, image_panels
from dcr_dask.running.cluster import dask_client
from dcr_dask.running.pipeline import run as run_pipeline
from dcr_dask.running.templates import matched_template
from dcr_dask.simulate import (
    SimulatedTile,
    SimulationSpec,
    simulate_tile,
    standard_band_spec,
    write_simulation,
)

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``demo`` options to ``parser``."""
    parser.add_argument(
        "--output",
        default="dcr-dask-demo",
        help="directory for everything the demo writes: new, empty, or an earlier demo's",
    )
    parser.add_argument(
        "--size",
        type=positive_int,
        nargs=2,
        default=(256, 256),
        metavar=("NY", "NX"),
        help="tile size",
    )
    parser.add_argument(
        "--workers", type=positive_int, default=2, help="local Dask workers (default 2)"
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=1, help="random seed of the simulation"
    )
    parser.add_argument(
        "--band",
        type=standard_band_name,
        default="g",
        metavar="NAME",
        help="band of the simulated tile: a standard band (default g, Rubin's); the run "
        "takes it from the warps",
    )


def demo_config(spec: SimulationSpec) -> DcrAssembleCoaddConfig:
    """The configuration the demo runs with: 128-pixel subregions and no band setting.

    The simulated warps carry a standard band (``spec.band``), which the run
    looks up (:func:`dcr_dask.physics.subbands.config_for_warps`).
    """
    config = DcrAssembleCoaddConfig()
    config.dcrNumSubfilters = spec.n_subfilters
    config.subregionSize = [128, 128]
    config.validate()
    return config


def run(args: argparse.Namespace) -> int:
    """Run the demo and print where its outputs are."""
    started = time.perf_counter()
    output = Path(args.output)
    if output.is_dir() and any(output.iterdir()) and not is_own(output / "demo.json"):
        raise OutputError(
            output,
            "not empty and not an earlier demo's output (no demo.json written by dcr_dask): "
            "the demo writes only into a new or empty directory, or over its own output",
        )
    output.mkdir(parents=True, exist_ok=True)
    # the truth in as many sub-bands as the default fit, so that the figure compares like with like
    spec = attrs.evolve(
        standard_band_spec(args.band, shape=args.size, seed=args.seed),
        n_subfilters=DcrAssembleCoaddConfig().dcrNumSubfilters,
    )
    config = demo_config(spec)
    tile = simulate_tile(spec)
    paths = write_simulation(tile, output / "simulation", overwrite=True)
    print(
        f"simulated {len(paths['warps'])} warps and {len(paths['holdout'])} held-out visits "
        f"({spec.shape[0]}x{spec.shape[1]} px, band {spec.band}) in {output / 'simulation'}"
    )
    store = output / "dcr_coadd.zarr"
    with dask_client(n_workers=args.workers, threads_per_worker=1) as client:
        print(
            f"local Dask cluster: {len(client.scheduler_info()['workers'])} workers, "
            f"dashboard {client.dashboard_link}"
        )
        dataset = run_pipeline(
            config,
            paths["warps"],
            output=store,
            client=client,
            overwrite=True,
            work_dir=output / "work",
        )
        print(f"DCR model store: {store}")
        fits_files = export_fits(store, output / "fits", overwrite=True, client=client)
        print(f"FITS exports: {', '.join(str(p) for p in fits_files)}")
        warps = open_warps(paths["warps"], chunks=tuple(config.subregionSize))
        plain = plain_coadd(warps, config.badMaskPlanes).image.values
        templates = {
            k: matched_template(dataset, tile.visits[k]).values
            for k in np.flatnonzero(tile.holdout)
        }
    figure, summary = _figure(tile, dataset, plain, templates, output / "demo.png")
    summary.update(
        {
            WRITER_ATTR: writer(),
            "store": str(store),
            "fits": [str(p) for p in fits_files],
            "figure": str(figure),
            "seconds": round(time.perf_counter() - started, 2),
        }
    )
    (output / "demo.json").write_text(json.dumps(summary, indent=1))
    for visit, numbers in summary["holdout"].items():
        print(
            f"held-out visit {visit} (airmass {numbers['airmass']:.2f}): star centroid error "
            f"{numbers['dcr_centroid_rms_px']:.3f} px with the DCR-matched template, "
            f"{numbers['plain_centroid_rms_px']:.3f} px with the plain coadd"
        )
    print(f"figure: {figure}")
    print(f"summary: {output / 'demo.json'}")
    print(f"done in {summary['seconds']} s")
    return 0


def _figure(
    tile: SimulatedTile,
    dataset: xr.Dataset,
    plain: np.ndarray,
    templates: Mapping[np.intp, np.ndarray],
    path: Path,
) -> tuple[Path, dict[str, Any]]:
    """The demo figure and the figures of merit it shows.

    Top row: the DCR-corrected coadd, and each sub-band model minus the mean
    of the sub-bands (what the sub-bands add to a plain coadd: the colour of
    each source), on one colour scale. Bottom row: a held-out visit minus the
    plain coadd and minus its DCR-matched template, on one colour scale; the
    DCR shift of every visit's sub-bands; the convergence of the subregions.
    """
    model = dataset["dcr_model"].values
    labels = [f"{lo:.0f}-{hi:.0f} nm" for lo, hi in tile.wavelength_edges_nm]
    mean = model.mean(axis=0)
    panels = [Panel("DCR-corrected coadd (sum of the sub-bands)", dataset["coadd"].values)]
    panels += [
        Panel(f"sub-band {label} minus the mean of the sub-bands", plane - mean, "subbands")
        for label, plane in zip(labels, model, strict=True)
    ]
    stars = truth.bright_isolated_stars(tile, n=12)
    summary: dict[str, Any] = {"holdout": {}}
    for k, template in templates.items():
        visit = tile.visits[k]
        summary["holdout"][str(visit.visit)] = {
            "airmass": visit.boresight_airmass,
            "dcr_centroid_rms_px": truth.centroid_rms_error(template, tile.true_images[k], stars),
            "plain_centroid_rms_px": truth.centroid_rms_error(plain, tile.true_images[k], stars),
        }
    k = next(iter(templates))
    visit = tile.visits[k]
    scale = float(np.sum(tile.true_images[k]) / max(np.sum(plain), 1e-12))
    panels += [
        Panel(
            f"held-out visit {visit.visit} (airmass {visit.boresight_airmass:.2f}) minus the "
            "plain coadd: DCR dipoles",
            tile.images[k] - scale * plain,
            "residuals",
        ),
        Panel(
            f"visit {visit.visit} minus its DCR-matched template (same colour scale; "
            "rings: PSF mismatch)",
            tile.images[k] - templates[k],
            "residuals",
        ),
    ]
    curves = {
        f"block {tuple(b['block'])}": b["metrics"]
        for b in dataset.attrs["convergence"]["blocks"][:8]
    }
    figure = image_panels(
        panels,
        path,
        title=f"dcr_dask demo: DCR model of a simulated {tile.spec.band}-band tile, "
        "and what it fixes",
        columns=4,
        shifts_px=tile.shifts_px,
        shift_labels=labels,
        curves=curves,
    )
    return figure, summary
