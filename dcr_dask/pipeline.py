"""One run, from warp files to the output store: :func:`run`.

Steps (each a lazy Dask graph evaluated on the client's cluster):

1. check every input file (headers only) and the configuration, before any work;
2. ingest the warps into a Zarr store chunked by ``subregionSize`` (skipped when
   a complete store of the same inputs exists);
3. CompareWarp (:mod:`dcr_dask.compare_warp`): PSF-matched warps (given or
   made), the static sky model (``assembleStaticSkyModel``), and the artifacts
   found against it, stored beside the warps (``CLIPPED``, ``NO_DATA``); the
   static-sky template is the given one, or that static model;
4. the DCR geometry of every visit (at the tile centre, or at each subregion
   centre with ``useLocalGeometry``);
5. the iterative DCR fit, block by block (:mod:`dcr_dask.assemble`);
6. the output store (DATA_CONTRACT.md, section 3), written under a temporary
   name and renamed when whole.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from dcr_dask import model as kernels
from dcr_dask.assemble import (
    FitInputs,
    FitSettings,
    TileGrid,
    cluster_memory_budget,
    fit_tile,
    halo_px,
)
from dcr_dask.cluster import dask_client
from dcr_dask.coadd import good_pixels, visit_weights
from dcr_dask.compare_warp import (
    apply_artifact_masks,
    assemble_static_sky_model,
    compare_warp,
    detect_sources,
    match_psfs,
    psf_matching,
    write_artifact_masks,
)
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.io.ingest import ingest_warps, open_ingested
from dcr_dask.io.store import compute, make_output_dataset, write_output
from dcr_dask.io.warps import (
    open_psf_matched,
    open_template,
    open_warps,
    tile_wcs,
    visit_infos,
)
from dcr_dask.masks import MaskPlanes
from dcr_dask.subbands import band_from_config, run_shifts

__all__ = ["run"]

log = logging.getLogger(__name__)


def run(
    config: DcrAssembleCoaddConfig,
    warps: Sequence[str | os.PathLike[str]],
    *,
    output: str | os.PathLike[str],
    template: str | os.PathLike[str] | None = None,
    psf_matched: Sequence[str | os.PathLike[str]] | None = None,
    client: Any = None,
    work_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    memory_budget_bytes: float | None = None,
) -> xr.Dataset:
    """Make a DCR-corrected coadd and write it to ``output``.

    Parameters
    ----------
    config : DcrAssembleCoaddConfig
        The configuration; validated before anything else happens.
    warps : sequence of path-like
        Warp files (DATA_CONTRACT.md, section 1).
    output : path-like
        The output Zarr store; it appears only when complete.
    template : path-like, optional
        A static-sky template coadd; if absent, the warps are stacked.
    psf_matched : sequence of path-like, optional
        PSF-matched warps, one per visit (checked against ``warps``).
    client : distributed.Client, optional
        Where to compute; without one a local cluster on 127.0.0.1 is started
        and closed at the end.
    work_dir : path-like, optional
        Where the ingest store and scratch files go; default
        ``<output>.work`` beside the output. The ingest store is kept so that
        a second run on the same inputs skips the ingest.
    overwrite : bool
        Replace an existing output store.
    memory_budget_bytes : float, optional
        Memory one group of subregions may use on the cluster. None (the
        default) takes what the workers have left
        (:func:`dcr_dask.assemble.cluster_memory_budget`: half of each
        worker's memory limit minus what it uses), or fits all subregions
        together when the workers have no memory limit; ``math.inf`` fits all
        subregions together.

    Returns
    -------
    xarray.Dataset
        The output store, opened lazily.
    """
    started = time.perf_counter()
    config.validate()
    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass overwrite=True (--overwrite) to replace it")
    band = band_from_config(config)
    chunks = (int(config.subregionSize[1]), int(config.subregionSize[0]))
    direct = open_warps([Path(p) for p in warps], chunks=chunks)
    template_ds = open_template(template, like=direct) if template is not None else None
    psf_matched_ds = (
        open_psf_matched([Path(p) for p in psf_matched], like=direct, chunks=chunks)
        if psf_matched is not None
        else None
    )
    work = Path(work_dir) if work_dir is not None else output.with_name(output.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    with dask_client(client) as active:
        stage = time.perf_counter()
        # The work directory is the run's own: a store of other inputs there is replaced.
        ingested = ingest_warps(
            direct, work / "warps.zarr", chunks=chunks, client=active, overwrite=True
        )
        timings["ingest_s"] = time.perf_counter() - stage

        stage = time.perf_counter()
        # PSF-matched warps and the static model are read several times (variance
        # scaling, two labelling passes, the fit's inputs): compute each once into
        # the work directory and read it back.
        matching = None
        if psf_matched_ds is None:
            matching = psf_matching(ingested, config)
            psf_matched_ds = match_psfs(ingested, config, matching=matching)
        psf_matched_ds = _checkpoint(psf_matched_ds, work / "psf_matched.zarr", active)
        static_ds = template_ds
        if static_ds is None:
            static_ds = assemble_static_sky_model(psf_matched_ds, config.assembleStaticSkyModel)
            static_ds = _checkpoint(static_ds, work / "static_model.zarr", active)
        compared = compare_warp(
            ingested, config, psf_matched=psf_matched_ds, static_model=static_ds
        )
        masks = compared.artifacts[["artifacts", "no_data"]]
        write_artifact_masks(work / "warps.zarr", masks, overwrite=True, client=active)
        stored = open_ingested(work / "warps.zarr")
        masked = apply_artifact_masks(ingested, stored[["artifacts", "no_data"]])
        if template_ds is None:
            template_ds = static_ds
        timings["compare_warp_s"] = time.perf_counter() - stage

        stage = time.perf_counter()
        planes = MaskPlanes(masked.attrs["mask_planes"])
        good = good_pixels(masked, config.badMaskPlanes)
        weights = visit_weights(masked, good)
        psf_sigma = (
            matching.model_sigma_px if matching is not None else _median_psf_sigma(masked, config)
        )
        inputs, weights_np = _fit_inputs(
            masked, template_ds, good, weights, planes, config, psf_sigma
        )
        timings["inputs_s"] = time.perf_counter() - stage

        ny, nx = (int(n) for n in ingested.attrs["tile_shape"])
        grid = TileGrid.from_subregion_size((ny, nx), config.subregionSize)
        visits = visit_infos(ingested)
        wcs = tile_wcs(ingested)
        if config.useLocalGeometry:
            shifts = {}
            for block in grid.blocks():
                cy, cx = grid.centre(block)
                shifts[block] = run_shifts(visits, wcs, config, x=cx, y=cy)
        else:
            common = run_shifts(visits, wcs, config, x=(nx - 1) / 2.0, y=(ny - 1) / 2.0)
            shifts = dict.fromkeys(grid.blocks(), common)
        settings = FitSettings.from_config(config)
        max_shift = max(float(np.abs(s.shifts_px).max()) for s in shifts.values())
        halo = halo_px(max_shift, settings)

        if memory_budget_bytes is None:
            memory_budget_bytes = cluster_memory_budget(active)
            if memory_budget_bytes is not None:
                log.info(
                    "memory budget of the fit: %.0f MiB (what the workers have left)",
                    memory_budget_bytes / 2**20,
                )
        if memory_budget_bytes is not None and not math.isfinite(memory_budget_bytes):
            memory_budget_bytes = None

        stage = time.perf_counter()
        scratch = work / "model.zarr"
        if scratch.exists():
            shutil.rmtree(scratch)
        model, n_image, fits = fit_tile(
            inputs,
            grid,
            shifts,
            settings,
            scratch,
            halo=halo,
            memory_budget_bytes=memory_budget_bytes,
        )
        timings["fit_s"] = time.perf_counter() - stage

        stage = time.perf_counter()
        amplified = model.map_blocks(
            lambda m: kernels.amplify(m, settings.accelerate).astype(np.float32), dtype=np.float32
        )
        edges = band.edges_nm
        centre = next(iter(shifts.values()))
        records = [
            {
                "visit": int(v.visit),
                "weight": float(weights_np[k]),
                "airmass": float(centre.geometry[k].airmass),
                "parallactic_angle_deg": float(centre.geometry[k].parallactic_angle_deg),
                "psf_fwhm_px": v.psf_fwhm_px,
                "filename": v.filename,
            }
            for k, v in enumerate(visits)
        ]
        dataset = make_output_dataset(
            amplified,
            template_ds["variance"].data.astype(np.float32),
            template_ds["mask"].data.astype(np.int32),
            n_image,
            wavelength_min_nm=edges[:, 0].tolist(),
            wavelength_max_nm=edges[:, 1].tolist(),
            mask_planes=planes,
            wcs_header=ingested.attrs["wcs_header"],
            config=config.toDict(),
            inputs=records,
            convergence={
                "halo_px": halo,
                "buffer_px": int(max(s.buffer_px for s in shifts.values())),
                "memory_budget_bytes": memory_budget_bytes,
                "groups": len({f.group for f in fits}),
                "blocks": [f.as_dict(grid) for f in fits],
            },
            artifacts=xr.DataArray(
                stored["artifacts"].data.astype(np.uint8),
                dims=("visit", "y", "x"),
                coords={"visit": stored["visit"].values},
            ),
            extra_attrs={
                "timings_s": timings,
                "artifact_pixels": {
                    int(v): int(n)
                    for v, n in zip(
                        stored["visit"].values,
                        stored["artifacts"].sum(dim=("y", "x")).compute().values,
                        strict=True,
                    )
                },
            },
        )
        write_output(dataset, output, overwrite=overwrite, client=active)
        timings["write_s"] = time.perf_counter() - stage
    shutil.rmtree(scratch, ignore_errors=True)
    log.info("run finished in %.1f s: %s", time.perf_counter() - started, output)
    return xr.open_zarr(output)


def _checkpoint(dataset: xr.Dataset, path: Path, client: Any) -> xr.Dataset:
    """Compute a lazy dataset once into a Zarr store in the work directory and open it lazily."""
    if path.exists():
        shutil.rmtree(path)
    delayed = dataset.to_zarr(path, mode="w", zarr_format=3, consolidated=False, compute=False)
    compute(delayed, client)
    reopened = xr.open_zarr(path, zarr_format=3, consolidated=False)
    reopened.attrs.update(dataset.attrs)
    return reopened


def _median_psf_sigma(warps: xr.Dataset, config) -> float:
    """Gaussian sigma of the warps' median PSF FWHM (``modelPsf.defaultFwhm`` if unknown)."""
    fwhm = np.asarray(warps["psf_fwhm_px"].values, dtype=float)
    fwhm = fwhm[np.isfinite(fwhm)]
    value = float(np.median(fwhm)) if fwhm.size else float(config.modelPsf.defaultFwhm)
    return value / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def _fit_inputs(ingested, template_ds, good, weights, planes, config, psf_sigma_px):
    """Lazy arrays of :class:`FitInputs` on the tile, and the visit weights.

    Without any ``convergenceMaskPlanes`` pixel in the warps (many users' warps
    carry no ``DETECTED`` plane), the reference finds no valid data and stops
    after one update; here sources are detected on the template with the
    ``detectTemplate`` settings and used for the convergence metric, and, if
    the template has no ``DETECTED`` pixels either, for the model weights.
    """
    conv_bits = planes.value(config.convergenceMaskPlanes)
    bad_bits = planes.value(config.badMaskPlanes)
    detected_bit = planes.value(["DETECTED"])
    template_mask = template_ds["mask"].data
    template_detected = (template_mask & detected_bit) != 0
    convergence_mask = (ingested["mask"].data & conv_bits) != 0
    weights_np = np.asarray(weights.compute().values, dtype=np.float64)
    if conv_bits == 0 or not bool(convergence_mask.any().compute()):
        detected = _detect_on_template(template_ds, config, psf_sigma_px)
        log.info(
            "no %s pixels in the warps: using sources detected on the template "
            "(detectTemplate, %.1f sigma) for the convergence metric and model weights",
            "/".join(config.convergenceMaskPlanes),
            config.detectTemplate.thresholdValue,
        )
        convergence_mask = detected[None]
        template_detected = detected
    elif not bool(template_detected.any().compute()):
        template_detected = _detect_on_template(template_ds, config, psf_sigma_px)
    background = ((template_mask & (bad_bits | detected_bit)) == 0) & ~template_detected
    use_weights = config.residualWeighting == "inverseVariance"
    inputs = FitInputs(
        images=ingested["image"].data,
        good=good.data,
        convergence_mask=convergence_mask,
        template=template_ds["image"].data,
        template_variance=template_ds["variance"].data,
        background=background,
        detected=template_detected,
        visit_weights=weights_np if use_weights else None,
    )
    return inputs, weights_np


def _detect_on_template(template_ds: xr.Dataset, config, psf_sigma_px: float) -> da.Array:
    """Pixels of sources detected on the template with the ``detectTemplate`` settings (lazy)."""
    detected = detect_sources(
        template_ds, config.detectTemplate, psf_sigma_px=psf_sigma_px, polarity="positive"
    )
    return detected.data.astype(bool)
