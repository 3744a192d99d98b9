"""One run, from warp files to the output store: :func:`run`.

Steps (each a lazy Dask graph evaluated on the client's cluster):

1. check every input file (headers only), the configuration and the inputs that
   would make the fit degenerate (:mod:`dcr_dask.running.input_checks`: fewer than two
   visits with usable pixels is an error, visits that see one DCR a warning),
   before any work;
2. ingest the warps into a Zarr store chunked by ``subregionSize`` (skipped when
   a complete store of the same inputs exists), then reject the visits with no
   usable pixel or a variance <= 0 on one, and report pixels seen by one visit only;
3. CompareWarp, its steps called one by one (:mod:`dcr_dask.graph.psf_matching`,
   :mod:`dcr_dask.graph.coadd`, :mod:`dcr_dask.graph.artifacts`): PSF-matched
   warps (given or made), the static sky model (``assembleStaticSkyModel``), and the artifacts
   found against it, stored in their own store (``CLIPPED``, ``NO_DATA``); the
   static-sky template that starts the fit is the given one, else the coadd
   of the direct warps without the artifacts (``startingModel``; the
   reference starts from the static model);
4. the DCR geometry of every visit (at the tile centre, or at each subregion
   centre with ``useLocalGeometry``);
5. the iterative DCR fit, block by block (:mod:`dcr_dask.graph.assemble`);
6. the coadd's PSF (:mod:`dcr_dask.graph.coadd_psf`): the visits' PSFs combined with
   the run's weights, or with ``doCalculatePsf`` measured on the coadd's stars;
7. what the reference does to a finished coadd: ``doInterp`` fills the
   ``NO_DATA`` pixels and flags them ``INTRP`` (:mod:`dcr_dask.graph.interp`),
   ``doMaskBrightObjects`` sets ``brightObjectMaskName`` inside the regions of
   ``brightObjectMaskFile`` (:mod:`dcr_dask.graph.bright_objects`, read and checked
   with the headers in step 1), ``doAttachTransmissionCurve`` stores the
   filter curve;
8. the output store (docs/file-formats.md, "Output store"), written under a temporary
   name and renamed when whole.

Every run records in its work directory which of these stages are done, and for
the fit which groups of subregions (:mod:`dcr_dask.io.checkpoint`); with
``resume=True`` a run with the same fingerprint (inputs, configuration, options,
version) takes the recorded stages from the work directory and goes on from the
first one not done, to the same output, bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import dask.array as da
import numpy as np
import xarray as xr
from distributed.client import FutureCancelledError
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker

from dcr_dask._version import __version__
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.errors import ClusterLostError
from dcr_dask.graph.artifacts import (
    ArtifactSettings,
    apply_artifact_masks,
    find_artifacts,
    warp_variance_scale,
)
from dcr_dask.graph.assemble import (
    BlockFit,
    FitInputs,
    FitSettings,
    FitState,
    TileGrid,
    fit_tile,
)
from dcr_dask.graph.bright_objects import bright_object_mask
from dcr_dask.graph.coadd import (
    Stacking,
    assemble_static_sky_model,
    direct_coadd,
    good_pixels,
    reference_visit_weights,
)
from dcr_dask.graph.coadd_psf import (
    STAR_BAD_PLANES,
    CoaddPsf,
    centre_coverage,
    coadd_psf_from_inputs,
    measure_coadd_psf,
    measurement_window,
)
from dcr_dask.graph.compare_warp import CompareWarpSettings
from dcr_dask.graph.cosmic_rays import CosmicRaySettings, find_cosmic_rays
from dcr_dask.graph.detect import detect_sources
from dcr_dask.graph.halos import halo_px
from dcr_dask.graph.interp import fallback_value, interpolate_holes
from dcr_dask.graph.psf_matching import (
    PsfMatching,
    match_psfs,
    model_psf_sigma_px,
    psf_matching,
    visit_psf_stamps,
)
from dcr_dask.graph.template import forward_model_tile
from dcr_dask.io.checkpoint import CHECKPOINT_NAME, Checkpoint, RunFingerprint, file_record
from dcr_dask.io.ingest import artifact_mask_dataset, ingest_warps
from dcr_dask.io.ownership import WRITER_ATTR, check_output, check_replaceable, is_own, writer
from dcr_dask.io.regions import BrightObjectRegions, read_bright_object_regions
from dcr_dask.io.scratch import ScratchModel
from dcr_dask.io.store import compute, make_output_dataset, transmission_array, write_output
from dcr_dask.io.warps import (
    open_psf_matched,
    open_template,
    open_warps,
    tile_wcs,
    visit_infos,
)
from dcr_dask.kernels import model as kernels
from dcr_dask.kernels.psf import FWHM_PER_SIGMA, psf_minor_variance
from dcr_dask.masks import ARTIFACT_VARIABLES, MaskPlanes
from dcr_dask.physics.subbands import CoaddTransmission, DcrShifts
from dcr_dask.running.cluster import dask_client
from dcr_dask.running.input_checks import (
    VisitQuality,
    check_usable_visits,
    dcr_spread,
    reject_visits,
    visit_quality,
)
from dcr_dask.running.memory import (
    cluster_blocks_in_flight,
    cluster_chunk_budget,
    cluster_memory_budget,
    visits_per_chunk,
)
from dcr_dask.settings import (
    coadd_transmission,
    compare_warp_settings,
    config_for_warps,
    cosmic_ray_settings,
    dcr_shifts,
    fit_settings,
    interp_settings,
    psf_measurement,
    source_detection,
    stacking,
)
from dcr_dask.visit import VisitInfo

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
    cluster_options: Mapping[str, Any] | None = None,
    resume: bool = False,
) -> xr.Dataset:
    """Make a DCR-corrected coadd and write it to ``output``.

    Parameters
    ----------
    config : DcrAssembleCoaddConfig
        The configuration; validated before anything else happens.
    warps : sequence of path-like
        Warp files (docs/file-formats.md, "Input warps").
    output : path-like
        The output Zarr store; it appears only when complete.
    template : path-like, optional
        A static-sky template coadd; if absent, the warps are stacked.
    psf_matched : sequence of path-like, optional
        PSF-matched warps, one per visit (checked against ``warps``).
    client : distributed.Client, optional
        Where to compute; without one a cluster is started after the inputs
        have been checked (a local one on 127.0.0.1 unless
        ``cluster_options`` say otherwise) and closed at the end.
    work_dir : path-like, optional
        Where the ingest store and scratch files go; default
        ``<output>.work`` beside the output. The ingest store is kept so that
        a second run on the same inputs skips the ingest.
    overwrite : bool
        Replace an existing output store; only a store dcr_dask wrote is
        replaced, and the output may not be or contain an input
        (:func:`dcr_dask.io.ownership.check_output`, before anything starts).
    memory_budget_bytes : float, optional
        Memory one group of subregions may use on the cluster. None (the
        default) takes what the workers have left
        (:func:`dcr_dask.running.memory.cluster_memory_budget`: half of each
        worker's memory limit minus what it uses), and puts at most two
        subregions per worker thread in a group
        (:func:`dcr_dask.running.memory.cluster_blocks_in_flight`), so that the
        fit's memory follows the cluster, not the tile; a budget given here is
        the only bound (``math.inf`` fits all subregions together).
    cluster_options : mapping, optional
        Keywords of :func:`dcr_dask.running.cluster.dask_client` for the cluster started
        when no ``client`` is given (the command line's cluster options).
    resume : bool
        Go on from where an interrupted run with the same inputs, configuration,
        ``memory_budget_bytes`` and dcr_dask version stopped: the stages recorded in
        ``work_dir``'s ``checkpoint.json`` as done are read from the work directory
        instead of computed, and the fit goes on from its first group of
        subregions not written (:mod:`dcr_dask.io.checkpoint`); the output is the
        same, bit for bit, as the uninterrupted run's. If the record says that run
        finished and ``output`` is still the store it wrote, nothing is done and
        that store is returned. Without a record (no work directory), the run
        starts from the beginning, with a warning. Every run, resumed or not,
        keeps the record up to date.

    Returns
    -------
    xarray.Dataset
        The output store, opened lazily. Its ``input_warnings`` attribute lists
        the degenerate inputs the run went on with (also logged as warnings),
        and ``inputs[].rejected`` the reason a visit was left out.

    Raises
    ------
    InputError, InputErrors
        Before the cluster starts: bad files or metadata, fewer than two
        visits with usable pixels (:mod:`dcr_dask.running.input_checks`); after the
        ingest: fewer than two visits left once the bad ones are rejected.
    dcr_dask.errors.OutputError
        If the output, or a work-directory store, exists and was not written by
        dcr_dask, or the output is or contains an input.
    dcr_dask.errors.ClusterLostError
        If the Dask scheduler or a worker went away; it names the stage.
    dcr_dask.errors.ResumeError
        With ``resume``, before anything starts: the run recorded in the work
        directory had other inputs, configuration, options or version (the
        message names the first difference).
    """
    started = time.perf_counter()
    config.validate()
    output = Path(output)
    work = Path(work_dir) if work_dir is not None else output.with_name(output.name + ".work")
    fingerprint = RunFingerprint.of_run(
        config,
        warps=warps,
        psf_matched=psf_matched,
        template=template,
        memory_budget_bytes=memory_budget_bytes,
    )
    previous = _previous_run(work, fingerprint) if resume else None
    if previous is not None and _is_recorded_output(previous, output):
        log.info(
            "nothing to resume: %s is the output of the finished run recorded in %s",
            output,
            previous.path,
        )
        return xr.open_zarr(output)
    r = _open_inputs(config, warps, psf_matched, template, output, work, overwrite)
    r.memory_budget_bytes = memory_budget_bytes
    r.stages = _Stages(
        previous or Checkpoint.start(work, fingerprint), resuming=previous is not None
    )
    with (
        _report_lost_cluster(r.running),
        dask_client(client, **(cluster_options or {})) as r.active,
    ):
        _ingest(r)
        _input_checks(r)
        _compare_warp(r)
        _plan_fit(r)
        _artifact_masks(r)
        _starting_template(r)
        _fit_inputs_stage(r)
        _fit(r)
        _coadd_psf_stage(r)
        metadata = _write(r)
    r.stages.finish(_output_stamp(output))
    _remove_own(r.scratch)
    r.timings["total_s"] = time.perf_counter() - started
    if config.saveMetadata:
        path = write_metadata_json(metadata, output)
        log.info("run metadata: %s", path)
    log.info("run finished in %.1f s: %s", r.timings["total_s"], output)
    return xr.open_zarr(output)


@attrs.define(eq=False)
class _Run:
    """What one run knows, filled in stage by stage (each stage a function of it).

    ``running[0]`` names the stage in progress (a lost cluster is reported in
    it); ``timings`` holds each stage's wall time, seconds.
    """

    config: DcrAssembleCoaddConfig
    output: Path
    work: Path
    overwrite: bool
    chunks: tuple[int, int]
    tile_shape: tuple[int, int]
    direct: xr.Dataset
    dcr_shifts: DcrShifts
    template_ds: xr.Dataset | None
    psf_matched_ds: xr.Dataset | None
    curve: CoaddTransmission | None
    bright: BrightObjectRegions | None
    input_warnings: list[dict[str, Any]]
    stages: _Stages = attrs.field(default=None)
    memory_budget_bytes: float | None = None
    max_blocks_per_group: int | None = None
    running: list[str] = attrs.field(factory=lambda: ["starting the cluster"])
    timings: dict[str, float] = attrs.field(factory=dict)
    active: Any = None
    # attrs.field(default=None): None until its stage sets it, typed as what it is after
    ingested: xr.Dataset = attrs.field(default=None)
    quality: VisitQuality = attrs.field(default=None)
    compare: CompareWarpSettings = attrs.field(default=None)
    stacking: Stacking = attrs.field(default=None)  # the main config's (direct coadd, weights)
    cosmic_rays: CosmicRaySettings = attrs.field(default=None)
    matching: PsfMatching | None = None
    static_ds: xr.Dataset = attrs.field(default=None)
    visits_per_chunk: int = 1  # of CompareWarp's graphs (_artifact_visits_per_chunk)
    masks_done: dict[str, Any] | None = None
    found: xr.Dataset = attrs.field(default=None)
    grid: TileGrid = attrs.field(default=None)
    visits: list[VisitInfo] = attrs.field(factory=list)
    shifts: dict = attrs.field(factory=dict)
    settings: FitSettings = attrs.field(default=None)
    halo: int = 0
    direct_sigma: float = 0.0
    psf_sigma: float = 0.0
    psf_blur: np.ndarray | None = None  # psfForwardModel="gaussian": (visit,) px²
    model_psf_variance: float | None = None  # and the model's PSF variance across DCR, px²
    fit_plan: _FitPlan = attrs.field(default=None)
    reference_fits: list[BlockFit] = attrs.field(factory=list)
    stored: xr.Dataset = attrs.field(default=None)
    ingested_masked: xr.Dataset = attrs.field(default=None)
    template_sigma: float = 0.0
    planes: MaskPlanes = attrs.field(default=None)
    weights_np: np.ndarray = attrs.field(default=None)
    inputs: FitInputs = attrs.field(default=None)
    scratch: Path = attrs.field(default=None)
    model: da.Array = attrs.field(default=None)
    n_image: da.Array = attrs.field(default=None)
    fits: list[BlockFit] = attrs.field(factory=list)
    amplified: da.Array = attrs.field(default=None)
    coadd_psf: CoaddPsf = attrs.field(default=None)

    @contextlib.contextmanager
    def stage(self, timing: str, running: str | None = None) -> Iterator[None]:
        """Time a stage into ``timings[timing]``; ``running`` names it while it runs."""
        if running is not None:
            self.running[0] = running
        start = time.perf_counter()
        yield
        self.timings[timing] = time.perf_counter() - start


def _open_inputs(
    config: DcrAssembleCoaddConfig,
    warps: Sequence[str | os.PathLike[str]],
    psf_matched: Sequence[str | os.PathLike[str]] | None,
    template: str | os.PathLike[str] | None,
    output: Path,
    work: Path,
    overwrite: bool,
) -> _Run:
    """Before the cluster: check the output, open and check every input, read the
    band and the files the finished coadd needs, and make the work directory."""
    inputs = [*warps, *(psf_matched or ()), *([template] if template is not None else [])]
    if config.doMaskBrightObjects and config.brightObjectMaskFile:
        inputs.append(config.brightObjectMaskFile)
    check_output(output, inputs=inputs, overwrite=overwrite)
    chunks = (int(config.subregionSize[1]), int(config.subregionSize[0]))
    direct = open_warps([Path(p) for p in warps], chunks=chunks, need_psf=True)
    # a config that names no band takes the warps' (a copy, recorded in the store)
    config = config_for_warps(config, visit_infos(direct))
    # the run's DCR shifts: the band is read once, each position evaluated once
    tile_shape = (int(direct.attrs["tile_shape"][0]), int(direct.attrs["tile_shape"][1]))
    shifts = dcr_shifts(visit_infos(direct), tile_wcs(direct), config, tile_shape)
    template_ds = open_template(template, like=direct) if template is not None else None
    psf_matched_ds = (
        open_psf_matched([Path(p) for p in psf_matched], like=direct, chunks=chunks)
        if psf_matched is not None
        else None
    )
    # degenerate inputs, from the headers and the first usable chunk of each warp
    check_usable_visits(direct, config.badMaskPlanes)
    # what the finished coadd needs from files: read and checked before any work
    curve = (
        coadd_transmission(config, visit_infos(direct)[0].band)
        if config.doAttachTransmissionCurve
        else None
    )
    bright = (
        # validate() requires brightObjectMaskFile with doMaskBrightObjects
        read_bright_object_regions(config.brightObjectMaskFile, tile_wcs(direct), tile_shape)  # type: ignore[arg-type]
        if config.doMaskBrightObjects
        else None
    )
    input_warnings: list[dict[str, Any]] = []
    spread = dcr_spread(shifts.at_centre())
    if spread is not None:
        log.warning("%s", spread["message"])
        input_warnings.append(spread)
    for name in (*_WORK_STORES, CHECKPOINT_NAME):  # a user's folder of the same name is kept
        check_replaceable(work / name)
    work.mkdir(parents=True, exist_ok=True)
    return _Run(
        config=config,
        output=output,
        work=work,
        overwrite=overwrite,
        chunks=chunks,
        tile_shape=tile_shape,
        direct=direct,
        dcr_shifts=shifts,
        template_ds=template_ds,
        psf_matched_ds=psf_matched_ds,
        curve=curve,
        bright=bright,
        input_warnings=input_warnings,
        # what the graph reads of the config, once per run
        compare=compare_warp_settings(config),
        stacking=stacking(config),
        cosmic_rays=cosmic_ray_settings(config),
    )


def _ingest(r: _Run) -> None:
    """The warps into the work directory's Zarr store, chunked by ``subregionSize``."""
    with r.stage("ingest_s", "ingest"):
        reused = r.stages.reuse("ingest", r.work / "warps.zarr")
        # The work directory is the run's own: a store of other inputs there is replaced.
        r.ingested = ingest_warps(
            r.direct, r.work / "warps.zarr", chunks=r.chunks, client=r.active, overwrite=True
        )
        if reused is None:
            r.stages.done("ingest")


def _input_checks(r: _Run) -> None:
    """Visits without usable pixels or with variance <= 0 are left out of everything
    below; pixels seen by one visit only are reported (one pass over the masks)."""
    with r.stage("input_checks_s", "the input checks"):
        r.quality = visit_quality(r.ingested, r.config.badMaskPlanes, client=r.active)
        r.input_warnings += r.quality.warnings
        r.ingested = reject_visits(r.ingested, list(r.quality.rejected))
        if r.psf_matched_ds is not None:
            r.psf_matched_ds = reject_visits(r.psf_matched_ds, list(r.quality.rejected))


def _compare_warp(r: _Run) -> None:
    """PSF-matched warps and the static sky model (each computed once into the work
    directory: they are read several times), and CompareWarp's artifacts, lazily,
    unless a resumed run has its masks."""
    with r.stage("compare_warp_s", "CompareWarp"):
        # the stores of the warps hold one visit per chunk; CompareWarp's graphs group
        # visits up to a byte budget per task: their ~180 tasks per chunk (the halos,
        # the labelling passes) cost more than their arithmetic on small subregions,
        # and no result depends on the chunking
        r.visits_per_chunk = _artifact_visits_per_chunk(r)
        if r.psf_matched_ds is None:
            # eager and small: made again on resume
            r.matching = psf_matching(r.ingested, r.compare.psf_matching)
            r.psf_matched_ds = match_psfs(
                _visit_chunks(r.ingested, r.visits_per_chunk),
                r.compare.psf_matching,
                matching=r.matching,
            )
        r.psf_matched_ds = _stage_store(
            r.stages, "psf_matched", r.psf_matched_ds, r.work / "psf_matched.zarr", r.active
        )
        # CompareWarp's static model is always the stack of the PSF-matched warps, at the
        # model PSF; a given template (at its own PSF) only starts the DCR fit. Used as the
        # static model, it left every star's PSF mismatch in the differences (GalSim
        # tiles: cosmic-ray recall 65 % instead of 94-99 %).
        static_ds = assemble_static_sky_model(r.psf_matched_ds, r.compare.static_model)
        r.static_ds = _stage_store(
            r.stages, "static_model", static_ds, r.work / "static_model.zarr", r.active
        )
        r.masks_done = r.stages.reuse("artifact_masks", r.work / ARTIFACT_MASKS_STORE)
        # the model PSF's sigma, once for the run: CompareWarp, the DCR-template reference
        # fit and a static-model start all take it
        r.psf_sigma = model_psf_sigma_px(
            r.psf_matched_ds, r.compare.psf_matching.model_psf.default_fwhm_px, r.matching
        )
        if r.masks_done is None:
            grouped = _visit_chunks(r.psf_matched_ds, r.visits_per_chunk)
            scale = warp_variance_scale(
                grouped, r.static_ds, r.compare.variance_scaling, r.psf_sigma
            )
            r.found = find_artifacts(
                grouped,
                r.static_ds,
                r.compare.artifacts,
                variance_scale=scale,
                psf_sigma_px=r.psf_sigma,
            )


def _artifact_visits_per_chunk(r: _Run) -> int:
    """Visits per chunk of CompareWarp's graphs (the PSF-matched warps, the variance
    scale, the artifacts and the cosmic rays): as many as one task's byte
    budget (:func:`dcr_dask.running.memory.cluster_chunk_budget`) allows for the
    largest chunk of the tile (:func:`dcr_dask.running.memory.visits_per_chunk`),
    and no more than leave a chunk to every worker thread."""
    chunk = (min(r.chunks[0], r.tile_shape[0]), min(r.chunks[1], r.tile_shape[1]))
    n_visits = int(r.ingested.sizes["visit"])
    # every worker thread gets a chunk, as with one visit per chunk
    threads = cluster_blocks_in_flight(r.active, per_thread=1) or 1
    spatial = math.prod(-(-size // step) for size, step in zip(r.tile_shape, chunk, strict=True))
    per_chunk = visits_per_chunk(
        n_visits,
        chunk,
        cluster_chunk_budget(r.active),
        min_visit_chunks=-(-threads // spatial),
    )
    log.info("CompareWarp's graphs: %d of %d visits per chunk", per_chunk, n_visits)
    return per_chunk


def _visit_chunks(dataset: xr.Dataset, per_chunk: int) -> xr.Dataset:
    """``dataset``'s data variables on ``visit`` in chunks of ``per_chunk`` visits (lazy).

    The coordinates stay as they are (``Dataset.chunk`` would make the per-visit ones
    Dask arrays, at odds with the chunks of the store they were read from), and so do
    the variables already chunked so; the others forget their store's chunks.
    """
    want = da.core.normalize_chunks(per_chunk, (dataset.sizes["visit"],))[0]
    chunked = {}
    for name, variable in dataset.data_vars.items():
        if "visit" not in variable.dims:
            continue
        data = variable.data
        if isinstance(data, da.Array) and data.chunks[variable.dims.index("visit")] == want:
            continue
        variable = variable.chunk({"visit": per_chunk})
        variable.encoding = {
            k: v for k, v in variable.encoding.items() if k not in ("chunks", "preferred_chunks")
        }
        chunked[name] = variable
    return dataset.assign(chunked) if chunked else dataset


def _plan_fit(r: _Run) -> None:
    """The DCR geometry, the grid, the fit's settings, halo, PSF sigmas and memory
    budget: shared by the reference fit of ``artifactReference="dcrTemplate"`` and
    the final fit."""
    config = r.config
    r.grid = TileGrid.from_subregion_size(r.tile_shape, config.subregionSize)
    r.visits = visit_infos(r.ingested)
    # visits rejected by the input checks are left out; the band is not read again
    r.dcr_shifts = r.dcr_shifts.with_visits(r.visits)
    r.shifts = {block: r.dcr_shifts.at(*r.grid.centre(block)[::-1]) for block in r.grid.blocks()}
    r.settings = fit_settings(config)
    max_shift = max(float(np.abs(s.shifts_px).max()) for s in r.shifts.values())
    if config.psfForwardModel == "gaussian":
        r.psf_blur, r.model_psf_variance = _psf_blur(r, quantile=config.psfModelQuantile)
    max_blur = float(r.psf_blur.max()) if r.psf_blur is not None else 0.0
    r.halo = halo_px(max_shift, r.settings, max_blur)
    # the direct warps' median PSF sigma (the direct coadd that starts the fit, and a
    # given template)
    r.direct_sigma = _median_psf_sigma(r.ingested, config, r.matching)
    if r.memory_budget_bytes is None:
        # a group holds its subregions' inputs until it is written: no more of them
        # than the cluster computes at once, else the fit's memory grows with the tile
        r.max_blocks_per_group = cluster_blocks_in_flight(r.active)
        r.memory_budget_bytes = cluster_memory_budget(r.active)
        if r.memory_budget_bytes is not None:
            log.info(
                "memory budget of the fit: %.0f MiB (what the workers have left)",
                r.memory_budget_bytes / 2**20,
            )
    if r.memory_budget_bytes is not None and not math.isfinite(r.memory_budget_bytes):
        r.memory_budget_bytes = None
    r.fit_plan = _FitPlan(
        r.grid, r.shifts, r.settings, r.halo, r.memory_budget_bytes, r.max_blocks_per_group
    )


def _artifact_masks(r: _Run) -> None:
    """The artifact masks (against the static model, or DCR-matched templates with
    ``artifactReference="dcrTemplate"``) written beside the ingested warps, unless a
    resumed run wrote them; then the warps masked by them."""
    if r.masks_done is not None:
        # CompareWarp (and the DCR-template reference fit) wrote the masks before
        r.reference_fits = [BlockFit.from_dict(f) for f in r.masks_done["reference_fits"]]
    else:
        cosmic = None
        if r.cosmic_rays.enabled:
            # before the DCR-template reference, whose fit leaves the artifacts out
            cosmic = find_cosmic_rays(
                _visit_chunks(r.ingested, r.visits_per_chunk), r.cosmic_rays, r.direct_sigma
            )
            r.found = _with_cosmic_rays(r.found, cosmic)
        found = r.found
        if r.config.artifactReference == "dcrTemplate":
            with r.stage("dcr_reference_s", "the DCR-template artifact reference"):
                found, r.reference_fits = _artifacts_against_dcr_templates(
                    r.psf_matched_ds,  # type: ignore[arg-type]  # set by _compare_warp
                    r.found,
                    r.static_ds,
                    r.config,
                    r.compare.artifacts,
                    r.stacking,
                    r.fit_plan,
                    r.work,
                    r.active,
                    r.psf_sigma,
                )
            if cosmic is not None:  # and in the artifacts found against those templates
                found = _with_cosmic_rays(found, cosmic)
        with r.stage("artifact_masks_s", "the artifact masks"):
            masks = artifact_mask_dataset(found).chunk(
                {"visit": 1, "y": r.chunks[0], "x": r.chunks[1]}
            )
            _checkpoint(masks, r.work / ARTIFACT_MASKS_STORE, r.active)
            r.stages.done(
                "artifact_masks", reference_fits=[f.as_dict(r.grid) for f in r.reference_fits]
            )
    # the masks have their own store: the ingest store is never written after the ingest
    r.stored = xr.open_zarr(r.work / ARTIFACT_MASKS_STORE, zarr_format=3, consolidated=False)
    r.ingested_masked = apply_artifact_masks(r.ingested, r.stored[list(ARTIFACT_VARIABLES)])


def _with_cosmic_rays(found: xr.Dataset, cosmic: xr.DataArray) -> xr.Dataset:
    """Artifacts with the direct warps' cosmic rays (``find_cosmic_rays``) added (lazy)."""
    cosmic = cosmic.transpose(*found["artifacts"].dims)
    if not np.array_equal(cosmic["visit"].values, found["visit"].values):
        raise ValueError("the cosmic rays and CompareWarp's artifacts have different visits")
    artifacts = found["artifacts"].data.astype(bool) | cosmic.data.rechunk(
        found["artifacts"].data.chunks
    )
    return found.assign(artifacts=found["artifacts"].copy(data=artifacts.astype(np.uint8)))


def _starting_template(r: _Run) -> None:
    """The static-sky template that starts the fit: the given one, the static model
    (``startingModel="staticModel"``, the reference's), else the coadd of the direct
    warps without their artifacts; and its PSF sigma."""
    r.template_sigma = r.direct_sigma
    if r.template_ds is None and r.config.startingModel == "staticModel":
        r.template_ds, r.template_sigma = r.static_ds, r.psf_sigma
    elif r.template_ds is None:
        with r.stage("direct_coadd_s"):
            r.template_ds = _stage_store(
                r.stages,
                "direct_coadd",
                direct_coadd(r.ingested_masked, r.stacking),
                r.work / "direct_coadd.zarr",
                r.active,
            )


def _fit_inputs_stage(r: _Run) -> None:
    """The fit's lazy inputs and the visits' weights."""
    with r.stage("inputs_s"):
        masked = r.ingested_masked
        r.planes = MaskPlanes(masked.attrs["mask_planes"])
        good = good_pixels(masked, _fit_bad_planes(r.config))
        weights = reference_visit_weights(masked, good, r.stacking)
        r.inputs, r.weights_np = _fit_inputs(
            masked,
            r.template_ds,  # type: ignore[arg-type]  # set by _starting_template
            good,
            weights,
            r.planes,
            r.config,
            r.template_sigma,
            psf_blur=r.psf_blur,
        )


def _fit(r: _Run) -> None:
    """The iterative DCR fit, each pass over several groups of subregions recorded in the
    checkpoint once written (a resumed run goes on from the last pass recorded)."""
    with r.stage("fit_s", "the DCR fit"):
        r.scratch = r.work / "model.zarr"
        fit_done = r.stages.reuse("fit", r.scratch)
        resume = None
        if fit_done is not None and "passes" in fit_done:
            resume = FitState.from_dict(fit_done)
        else:
            # nothing recorded, or a record of an earlier version's fit (by groups)
            if fit_done is not None:
                r.stages.reused.remove("fit")
            _remove_own(r.scratch)

        def pass_done(state: FitState) -> None:
            r.stages.done("fit", **state.as_dict(r.grid))

        r.model, r.n_image, r.fits = fit_tile(
            r.inputs,
            r.grid,
            r.shifts,
            r.settings,
            ScratchModel(r.scratch),
            halo=r.halo,
            memory_budget_bytes=r.memory_budget_bytes,
            max_blocks_per_group=r.max_blocks_per_group,
            resume=resume,
            on_pass_done=pass_done,
        )


def _coadd_psf_stage(r: _Run) -> None:
    """The amplified sub-band models and the coadd's PSF."""
    with r.stage("coadd_psf_s", "the coadd PSF"):
        accelerate = r.settings.accelerate
        # dask's Array.map_blocks (functools.wraps of da.map_blocks) reads as unbound to mypy
        r.amplified = r.model.map_blocks(  # type: ignore[call-arg]
            lambda m: kernels.amplify(m, accelerate).astype(np.float32),  # type: ignore[arg-type]
            dtype=np.float32,
        )
        r.coadd_psf = _coadd_psf(
            r.ingested,
            r.weights_np,
            r.quality.rejected,
            r.amplified,
            r.template_ds,  # type: ignore[arg-type]  # set by _starting_template
            r.planes,
            r.config,
            r.active,
            model_variance=r.model_psf_variance,
        )


def _visit_psf_fwhm(r: _Run) -> np.ndarray:
    """``(visit,)`` PSF FWHM of each visit, px (NaN if unknown): measured on the PSF
    stamp when matched here (adaptive moments), else the header's."""
    if r.matching is not None:
        return np.asarray(r.matching.input_fwhm_px, dtype=np.float64)
    return np.array([np.nan if v.psf_fwhm_px is None else float(v.psf_fwhm_px) for v in r.visits])


def _psf_blur(r: _Run, *, quantile: float) -> tuple[np.ndarray, float]:
    """``psfForwardModel="gaussian"``: the model's PSF width and each visit's blur.

    Widths are each visit's PSF variance across DCR
    (:func:`dcr_dask.kernels.psf.psf_minor_variance` of its PSF stamp, or of the
    Gaussian of its ``PSF-FWHM``). The model's is the k-th smallest of the kept
    visits', k = max(1, ceil(``quantile`` x their number)) (``psfModelQuantile``;
    0: the sharpest, so that no template is wider than its visit; a visit sharper
    than the model is fitted at the model's width). Returns the
    variance, px², of each visit's template blur (0 for a visit sharper than the
    model), and the model's.
    """
    stamps = visit_psf_stamps(r.ingested)
    variance = np.array([psf_minor_variance(stamp) for stamp in stamps])
    kept = np.array([int(v.visit) not in r.quality.rejected for v in r.visits])
    widths = np.sort(variance[kept] if kept.any() else variance)
    k = max(1, math.ceil(quantile * widths.size - 1e-9))
    model = float(widths[k - 1])
    blur = np.clip(variance - model, 0.0, None)
    sharper = int((kept & (variance < model)).sum())
    log.info(
        "psfForwardModel: the model is at the PSF of the visit %d of %d in sharpness "
        "(sigma %.2f px across DCR); the templates of %d visits are widened to their PSFs "
        "(sigma up to %.2f px), %d kept visits are sharper than the model",
        k,
        widths.size,
        math.sqrt(model),
        int((blur > 0).sum()),
        math.sqrt(float(blur.max())),
        sharper,
    )
    return blur, model


def _input_records(r: _Run) -> list[dict[str, Any]]:
    """The output's ``inputs``: one record per visit."""
    centre = next(iter(r.shifts.values()))
    fwhm = _visit_psf_fwhm(r)
    return [
        {
            "visit": int(v.visit),
            "weight": float(r.weights_np[k]),
            "airmass": float(centre.geometry[k].airmass),
            "parallactic_angle_deg": float(centre.geometry[k].parallactic_angle_deg),
            "psf_fwhm_px": None if not np.isfinite(fwhm[k]) else float(fwhm[k]),
            "psf_blur_px2": None if r.psf_blur is None else float(r.psf_blur[k]),
            "filename": v.filename,
            "rejected": r.quality.rejected.get(int(v.visit), ""),
        }
        for k, v in enumerate(r.visits)
    ]


def _write(r: _Run) -> dict[str, Any]:
    """The finished coadd (``processResults``) into the output store; returns the
    run's metadata record."""
    with r.stage("write_s", "the output write"):
        config, stored, grid = r.config, r.stored, r.grid
        edges = r.dcr_shifts.band.edges_nm
        artifact_pixels = {
            int(v): int(n)
            for v, n in zip(
                stored["visit"].values,
                stored["artifacts"].sum(dim=("y", "x")).compute().values,
                strict=True,
            )
        }
        model_out, variance_out, mask_out, planes_out, finishing = _finish_coadd(
            r.amplified,
            # r.template_ds is set by _starting_template
            r.template_ds["variance"].data.astype(np.float32),  # type: ignore[index]
            r.template_ds["mask"].data.astype(np.int32),  # type: ignore[index]
            r.planes,
            config,
            r.bright,
            r.active,
        )
        dataset = make_output_dataset(
            model_out,
            variance_out,
            mask_out,
            r.n_image,
            wavelength_min_nm=edges[:, 0].tolist(),
            wavelength_max_nm=edges[:, 1].tolist(),
            mask_planes=planes_out,
            wcs_header=r.ingested.attrs["wcs_header"],
            config=config.toDict(),
            inputs=_input_records(r),
            convergence={
                "halo_px": r.halo,
                "buffer_px": int(max(s.buffer_px for s in r.shifts.values())),
                "memory_budget_bytes": r.memory_budget_bytes,
                "max_blocks_per_group": r.max_blocks_per_group,
                "groups": len({f.group for f in r.fits}),
                "artifact_reference": str(config.artifactReference),
                "reference_blocks": [f.as_dict(grid) for f in r.reference_fits],
                "blocks": [f.as_dict(grid) for f in r.fits],
            },
            artifacts=xr.DataArray(
                stored["artifacts"].data.astype(np.uint8),
                dims=("visit", "y", "x"),
                coords={"visit": stored["visit"].values},
            ),
            transmission=_transmission_variable(r.curve),
            psf=r.coadd_psf.image,
            psf_attrs=r.coadd_psf.variable_attrs(),
            extra_attrs={
                **finishing,
                "coadd_psf": r.coadd_psf.as_dict(),
                "timings_s": r.timings,
                "artifact_pixels": artifact_pixels,
                "input_warnings": r.input_warnings,
                "band": r.visits[0].band,
                # psfForwardModel="gaussian": the PSF the model is at (templates widen it)
                "model_psf_variance_px2": r.model_psf_variance,
            },
        )
        metadata = _run_metadata(
            r.visits,
            r.quality.rejected,
            r.matching,
            artifact_pixels,
            r.timings,
            r.fits,
            r.reference_fits,
            grid,
        )
        metadata.update(
            memory_budget_bytes=r.memory_budget_bytes,
            halo_px=r.halo,
            input_warnings=r.input_warnings,
            coadd_psf=r.coadd_psf.as_dict(),
        )
        if r.stages.reused:
            metadata["resumed"] = {
                "checkpoint": str(r.stages.checkpoint.path),
                "stages": r.stages.reused,
            }
        if config.saveMetadata:
            dataset.attrs["metadata"] = metadata
        write_output(dataset, r.output, overwrite=r.overwrite, client=r.active)
    return metadata


def metadata_path(output: str | os.PathLike[str]) -> Path:
    """Where the run metadata JSON of an output store goes: beside it,
    ``coadd.zarr`` -> ``coadd.metadata.json``."""
    output = Path(output)
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    return output.with_name(stem + ".metadata.json")


def write_metadata_json(metadata: dict[str, Any], output: str | os.PathLike[str]) -> Path:
    """Write ``saveMetadata``'s record beside the output store, atomically.

    Parameters
    ----------
    metadata : dict
        JSON-ready record (timings, visits used and rejected, per-subregion
        iterations, gains and metrics).
    output : path-like
        The output store.

    Returns
    -------
    pathlib.Path
        The JSON file (:func:`metadata_path`).
    """
    path = metadata_path(output)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(metadata, indent=1, allow_nan=True) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _run_metadata(
    visits: Sequence[VisitInfo],
    rejections: Mapping[int, str],
    matching: PsfMatching | None,
    artifact_pixels: Mapping[int, int],
    timings: Mapping[str, float],
    fits: Sequence[BlockFit],
    reference_fits: Sequence[BlockFit],
    grid: TileGrid,
) -> dict[str, Any]:
    """The ``saveMetadata`` record of a run (the store's ``metadata`` attribute and JSON);
    ``rejections`` maps the visits left out (:func:`dcr_dask.running.input_checks.visit_quality`)
    to the reason."""
    used = [int(v.visit) for v in visits if int(v.visit) not in rejections]
    rejected = [{"visit": int(v), "reason": reason} for v, reason in rejections.items()]
    too_wide = []
    if matching is not None:
        too_wide = [int(v.visit) for v, wide in zip(visits, matching.too_wide, strict=True) if wide]
    iterations = [f.iterations for f in fits]
    return {
        "dcr_dask_version": __version__,
        "timings_s": timings,
        "visits": {
            "used": used,
            "rejected": rejected,
            "psf_too_wide": too_wide,
            "artifact_pixels": {str(v): n for v, n in artifact_pixels.items()},
        },
        "fit": {
            "subregions": len(fits),
            "groups": len({f.group for f in fits}),
            "iterations_min": min(iterations, default=0),
            "iterations_max": max(iterations, default=0),
            "stopped": {
                r: sum(f.reason == r for f in fits) for r in sorted({f.reason for f in fits})
            },
            "subregion_fits": [f.as_dict(grid) for f in fits],
        },
        "reference_fit": [f.as_dict(grid) for f in reference_fits],
    }


@attrs.frozen
class _FitPlan:
    """What every fit of a run shares: blocks, their shifts, settings, halo, memory."""

    grid: TileGrid
    shifts: dict
    settings: FitSettings
    halo: int
    memory_budget_bytes: float | None
    max_blocks_per_group: int | None


#: The DCR fit behind ``artifactReference="dcrTemplate"`` may run up to this many
#: times the reference's iteration limit (``3 * dcrNumSubfilters``), whatever
#: ``maxNumIter`` is, and at least ``dcrNumSubfilters`` iterations (see
#: :func:`_artifacts_against_dcr_templates`).
REFERENCE_FIT_ITERATIONS = 3

#: ... and stops when its metric improves by less than this (the reference's
#: ``convergenceThreshold``), whatever the main fit's threshold.
REFERENCE_FIT_THRESHOLD = 0.001


def _fit_bad_planes(config: DcrAssembleCoaddConfig) -> list[str]:
    """Planes whose pixels the DCR fit leaves out: ``badMaskPlanes``, and ``CLIPPED``
    with ``excludeClippedFromFit`` or when the artifacts were found against DCR-matched
    templates (the reference keeps clipped pixels in the fit, since against its static
    model DCR residuals may be clipped too; with ``artifactReference="dcrTemplate"``
    they are artifacts, not DCR residuals, and are always left out)."""
    bad = list(config.badMaskPlanes)
    leave_out = config.excludeClippedFromFit or config.artifactReference == "dcrTemplate"
    if leave_out and "CLIPPED" not in bad:
        bad.append("CLIPPED")
    return bad


def _artifacts_against_dcr_templates(
    psf_matched: xr.Dataset,
    static_found: xr.Dataset,
    static_ds: xr.Dataset,
    config: DcrAssembleCoaddConfig,
    artifacts: ArtifactSettings,
    stack: Stacking,
    plan: _FitPlan,
    work: Path,
    client: Any,
    psf_sigma: float,
) -> tuple[xr.Dataset, list]:
    """Artifacts found against each visit's DCR-matched template (``artifactReference``).

    1. the artifacts found against the static model (the reference's pass) are
       left out of
    2. a DCR fit to the PSF-matched warps, whose forward model gives each visit
       a template at the model PSF that carries the visit's DCR. This fit runs
       without the frequency regularization (``regularizeModelFrequency``):
       its floor on every sub-band (``smoothRef / sqrt(factor)``, with the mean
       of the planes cut at zero) adds flux wherever the planes are faint, and
       on the simulator's crowded tile the templates came out 2.7 % brighter
       than every visit, in haloes around the stars; every visit then showed a
       persistent negative residual there, and cosmic rays next to stars
       merged into it and were kept (``benchmarks/bench_artifacts.py``). It
       runs between ``dcrNumSubfilters`` and :data:`REFERENCE_FIT_ITERATIONS`
       times the reference's ``3 * dcrNumSubfilters`` iterations, whatever the
       main fit's limits (stopping at :data:`REFERENCE_FIT_THRESHOLD` or when
       its metric rises): the templates'
       mismatch at bright stars is what hides cosmic rays on them and what
       clips stars, and both fell with more iterations;
    3. each PSF-matched warp is compared with its own template (variance: the
       static model's plus ``(artifactTemplateError x template)^2``; ``detect``
       thresholds, epoch tests and ``doPreserveContainedBySource`` on the static
       model, as CompareWarp, except that positive and negative footprints
       are found and epoch-counted apart: ``find_artifacts(same_sign_epochs=True)``),
       so DCR residuals of sources are no longer taken for artifacts.
    """
    first = _checkpoint(
        static_found[["artifacts", "no_data"]], work / "static_artifacts.zarr", client
    )
    excluded = apply_artifact_masks(psf_matched, first)
    planes = MaskPlanes(excluded.attrs["mask_planes"])
    good = good_pixels(excluded, [*config.badMaskPlanes, "CLIPPED"])
    weights = reference_visit_weights(excluded, good, stack)
    inputs, _ = _fit_inputs(excluded, static_ds, good, weights, planes, config, psf_sigma)
    scratch = work / "reference_model.zarr"
    _remove_own(scratch)
    log.info("fitting a DCR model to the PSF-matched warps: the artifacts' reference")
    settings = attrs.evolve(
        plan.settings,
        regularize_frequency=0.0,
        min_iter=plan.settings.n_subfilters,
        max_iter=REFERENCE_FIT_ITERATIONS * 3 * plan.settings.n_subfilters,
        convergence_threshold=REFERENCE_FIT_THRESHOLD,
    )
    model, _, fits = fit_tile(
        inputs,
        plan.grid,
        plan.shifts,
        settings,
        ScratchModel(scratch),
        halo=plan.halo,
        memory_budget_bytes=plan.memory_budget_bytes,
        max_blocks_per_group=plan.max_blocks_per_group,
    )
    templates = forward_model_tile(
        model,
        lambda y, x: plan.shifts[plan.grid.block_at(y, x)].shifts_px,
        max_shift_px=max(float(np.abs(s.shifts_px).max()) for s in plan.shifts.values()),
        accelerate=settings.accelerate,
        method=settings.method,
        order=settings.order,
        precision=settings.precision,
    )
    # the templates' own error: a fraction of their flux, so that the residual mismatch
    # of bright sources (PSF, sub-band discretisation) is not taken for an artifact
    error = np.float32(config.artifactTemplateError)
    variance = static_ds["variance"].data.astype(np.float32)[None] + (error * templates) ** 2
    reference = xr.Dataset(
        {
            "image": (("visit", "y", "x"), templates),
            "variance": (("visit", "y", "x"), variance),
        },
        coords={"visit": psf_matched["visit"].values},
    )
    reference = _checkpoint(reference, work / "dcr_reference.zarr", client)
    _remove_own(scratch)  # the templates are in the store now; the fit's scratch is not needed
    found = find_artifacts(
        psf_matched,
        reference,
        artifacts,
        template=static_ds,
        variance_scale=static_found["variance_scale"].values,
        psf_sigma_px=psf_sigma,
        same_sign_epochs=True,
    )
    n_static = int(static_found["n_artifact_footprints"].sum())
    n_dcr = int(found["n_artifact_footprints"].sum())
    log.info(
        "artifacts against DCR-matched templates: %d footprints (%d against the static model)",
        n_dcr,
        n_static,
    )
    return found, fits


#: CompareWarp's masks (``artifacts``, ``no_data``) in the work directory.
ARTIFACT_MASKS_STORE = "artifact_masks.zarr"

#: Stores the run writes (and replaces) in its work directory.
_WORK_STORES = (
    "warps.zarr",
    ARTIFACT_MASKS_STORE,
    "psf_matched.zarr",
    "static_model.zarr",
    "static_artifacts.zarr",
    "reference_model.zarr",
    "dcr_reference.zarr",
    "direct_coadd.zarr",
    "model.zarr",
)


class _Stages:
    """The stages a run takes from its checkpoint record, and the record kept up to date.

    A resumed run reuses the recorded stages in order, up to the first one it must
    make again (not recorded, or its store gone); that stage and every later one
    are dropped from the record and made again, so a record never mixes stages
    made from different earlier results.
    """

    def __init__(self, checkpoint: Checkpoint, *, resuming: bool):
        self.checkpoint = checkpoint
        self.intact = resuming
        self.reused: list[str] = []
        if resuming:
            log.info(
                "resuming from %s: done before: %s",
                checkpoint.path,
                ", ".join(_STAGE_TITLES[s] for s in checkpoint.stages) or "nothing",
            )

    def reuse(self, stage: str, *stores: Path, present: bool = True) -> dict[str, Any] | None:
        """What ``stage`` recorded, if the run resumes past it (its stores must be
        dcr_dask's and ``present`` true); else None, and the stage is to be made."""
        record = self.checkpoint.done(stage) if self.intact else None
        if record is not None and present and all(is_own(path) for path in stores):
            self.reused.append(stage)
            log.info("%s: taken from the interrupted run's work directory", _STAGE_TITLES[stage])
            return record
        if record is not None:
            log.warning(
                "%s: recorded as done, but its store in %s is gone or incomplete; made again",
                _STAGE_TITLES[stage],
                self.checkpoint.path.parent,
            )
        self.intact = False
        self.checkpoint.forget_from(stage)
        return None

    def done(self, stage: str, **data: Any) -> None:
        """Record ``stage`` (its store is whole)."""
        self.checkpoint.mark(stage, **data)

    def finish(self, stamp: list[Any]) -> None:
        """Record the output store (``stamp``: :func:`_output_stamp`); the fit's scratch
        store is deleted next, so its record goes."""
        self.checkpoint.stages.pop("fit", None)
        self.checkpoint.mark("output", stamp=stamp)


#: How the log names each stage of the checkpoint record.
_STAGE_TITLES = {
    "ingest": "ingest",
    "psf_matched": "PSF-matched warps",
    "static_model": "static sky model",
    "artifact_masks": "CompareWarp and artifact masks",
    "direct_coadd": "direct coadd",
    "fit": "DCR fit (groups of subregions)",
    "output": "output store",
}


def _previous_run(work: Path, fingerprint: RunFingerprint) -> Checkpoint | None:
    """The checkpoint record to resume from, checked against the new run's fingerprint
    (:class:`~dcr_dask.errors.ResumeError` if they differ); None, with a warning, when
    there is none to trust."""
    checkpoint = Checkpoint.load(work)
    if checkpoint is None:
        log.warning(
            "resume: no checkpoint record in %s (%s); starting from the beginning",
            work,
            "no such directory" if not work.is_dir() else f"no usable {CHECKPOINT_NAME}",
        )
        return None
    checkpoint.check(fingerprint)
    return checkpoint


def _output_stamp(output: Path) -> list[Any]:
    """What identifies an output store once written: its root metadata file's path, size
    and modification time (a store written again, or another store, has another)."""
    return file_record(output / "zarr.json")


def _is_recorded_output(checkpoint: Checkpoint, output: Path) -> bool:
    """Whether ``output`` is the store that the recorded run finished with."""
    record = checkpoint.done("output")
    return record is not None and record.get("stamp") == _output_stamp(output)


def _stage_store(
    stages: _Stages, stage: str, dataset: xr.Dataset, path: Path, client: Any
) -> xr.Dataset:
    """A stage's dataset: read from the work directory when the run resumes past the
    stage, else computed into it (:func:`_checkpoint`) and recorded. Either way it
    carries the lazy ``dataset``'s attributes."""
    if stages.reuse(stage, path) is None:
        stored = _checkpoint(dataset, path, client)
        stages.done(stage)
        return stored
    reopened = xr.open_zarr(path, zarr_format=3, consolidated=False)
    reopened.attrs.update(dataset.attrs)
    return reopened


@contextlib.contextmanager
def _report_lost_cluster(running: list[str]) -> Iterator[None]:
    """Turn distributed's errors for a scheduler or worker that went away into a
    :class:`~dcr_dask.errors.ClusterLostError` naming the stage ``running[0]``."""
    try:
        yield
    except (FutureCancelledError, CommClosedError, KilledWorker) as exc:
        raise ClusterLostError(running[0], exc) from exc


def _remove_own(path: Path) -> None:
    """Delete a work-directory store that dcr_dask wrote; refuse anything else
    (:func:`~dcr_dask.io.ownership.check_replaceable`)."""
    if path.exists() or path.is_symlink():
        check_replaceable(path)
        shutil.rmtree(path)


def _checkpoint(dataset: xr.Dataset, path: Path, client: Any) -> xr.Dataset:
    """Compute a lazy dataset once into a Zarr store in the work directory and open it lazily.

    The store carries dcr_dask's writer mark; an existing one is replaced only if
    it has it (a user's folder of the same name in ``--work-dir`` is never deleted).
    On a cluster, a tile of more chunks than :func:`_rows_per_batch` allows is
    written a band of chunk rows at a time (:func:`_write_in_row_batches`).
    """
    _remove_own(path)
    marked = dataset.assign_attrs({WRITER_ATTR: writer()})
    rows = _rows_per_batch(marked, client)
    if rows is None:
        delayed = marked.to_zarr(path, mode="w", zarr_format=3, consolidated=False, compute=False)
        compute(delayed, client, label=f"write {path.name}")
    else:
        _write_in_row_batches(marked, path, client, rows)
    reopened = xr.open_zarr(path, zarr_format=3, consolidated=False)
    reopened.attrs.update(dataset.attrs)
    return reopened


#: Chunks of a row band per worker thread (:func:`_rows_per_batch`): enough that
#: every thread has work while the slower chunks of a band finish.
CHUNKS_PER_THREAD_PER_BATCH = 4


def _rows_per_batch(dataset: xr.Dataset, client: Any) -> int | None:
    """Rows of chunks (along ``y``) that :func:`_checkpoint` writes in one graph, or
    None to write the whole dataset in one.

    Dask's scheduler runs a graph's tasks in an order of its own: on a tile of many
    chunks it can start more of them than it finishes, and what the workers hold
    then grows with the tile. A graph of a band of rows holds at most the band.
    The band has at least :data:`CHUNKS_PER_THREAD_PER_BATCH` chunks per worker
    thread (``y``-``x`` chunks; visit chunks come on top), so no thread idles.
    """
    tall = _lazy_with_y(dataset)
    if client is None or not tall:
        return None
    chunks = _chunks_of(dataset[tall[0]])
    row_chunks = chunks["y"]
    x_chunks = len(chunks.get("x", (0,)))
    threads = cluster_blocks_in_flight(client, per_thread=1)
    if not threads:
        return None
    rows = max(1, -(-CHUNKS_PER_THREAD_PER_BATCH * threads // x_chunks))
    return rows if rows < len(row_chunks) else None


def _lazy_with_y(dataset: xr.Dataset) -> list[str]:
    """Names of ``dataset``'s Dask-backed data variables that have a ``y`` dimension."""
    return [
        str(name)
        for name, variable in dataset.data_vars.items()
        if "y" in variable.dims and isinstance(variable.data, da.Array)
    ]


def _chunks_of(variable: xr.DataArray) -> dict[str, tuple[int, ...]]:
    """A Dask-backed variable's chunk sizes by dimension name."""
    data = variable.data
    assert isinstance(data, da.Array)  # _lazy_with_y picked it
    return {str(dim): sizes for dim, sizes in zip(variable.dims, data.chunks, strict=True)}


def _write_in_row_batches(dataset: xr.Dataset, path: Path, client: Any, rows: int) -> None:
    """Write ``dataset`` to a new Zarr store at ``path``, ``rows`` chunk rows per graph.

    The store's metadata and in-memory variables are written first, then the lazy
    variables without ``y`` (whole), then each band of rows into its region of the
    store (``to_zarr(region=...)``): every graph is computed before the next is built.
    """
    dataset.to_zarr(path, mode="w", zarr_format=3, consolidated=False, compute=False)
    lazy = [n for n, v in dataset.data_vars.items() if isinstance(v.data, da.Array)]
    flat = [n for n in lazy if "y" not in dataset[n].dims]
    if flat:
        part = dataset[flat].drop_vars(list(dataset[flat].coords))
        region = {str(dim): slice(None) for dim in part.dims}
        compute(
            part.to_zarr(path, region=region, zarr_format=3, consolidated=False, compute=False),
            client,
            label=f"write {path.name}",
        )
    tall = _lazy_with_y(dataset)
    if not tall:
        return
    edges = np.cumsum([0, *_chunks_of(dataset[tall[0]])["y"]])
    for start in range(0, len(edges) - 1, rows):
        band = slice(int(edges[start]), int(edges[min(start + rows, len(edges) - 1)]))
        part = dataset[tall].isel(y=band)
        part = part.drop_vars([c for c in part.coords if "y" not in part[c].dims])
        region = {str(dim): (band if dim == "y" else slice(None)) for dim in part.dims}
        compute(
            part.to_zarr(path, region=region, zarr_format=3, consolidated=False, compute=False),
            client,
            label=f"write {path.name} rows {band.start}-{band.stop}",
        )


def _finish_coadd(
    model: da.Array,
    variance: da.Array,
    mask: da.Array,
    planes: MaskPlanes,
    config: DcrAssembleCoaddConfig,
    bright: BrightObjectRegions | None,
    client: Any,
) -> tuple[da.Array, da.Array, da.Array, MaskPlanes, dict[str, Any]]:
    """What the reference's ``processResults`` does to each finished sub-band coadd (lazy).

    With ``doInterp``, the pixels flagged ``NO_DATA`` in the coadd mask are filled
    in every sub-band (:mod:`dcr_dask.graph.interp`; the coadd, their sum, follows)
    and in the variance, and flagged ``INTRP`` (they keep ``NO_DATA``); a
    variance that is not finite and positive becomes +inf. The number of such
    pixels and the fallback value of each sub-band are computed here (one pass
    over the mask, and one over the model when a statistic is needed) and
    recorded. With ``doMaskBrightObjects``, the plane ``brightObjectMaskName``
    (added to the layout if the run has none of that name) is set inside
    ``bright``.

    Returns
    -------
    model, variance, mask : dask.array.Array
    planes : MaskPlanes
        The output's layout.
    attrs : dict
        ``interpolation`` and ``bright_objects`` records for the store's attributes.
    """
    records: dict[str, Any] = {}
    interp = interp_settings(config)
    if interp.enabled:
        holes = (mask & np.int32(planes.value(["NO_DATA"]))) != 0
        n_holes = int(compute(holes.sum(), client))
        n_sub = model.shape[0]
        fallback = np.zeros(n_sub)
        if n_holes and interp.use_fallback_at_edge:
            fallback = np.asarray(compute(fallback_value(model, holes, interp), client))
        if n_holes:
            edge = fallback if interp.use_fallback_at_edge else None
            model = interpolate_holes(
                model,
                holes,
                along_columns=interp.along_columns,
                fallback=edge,
                empty_value=fallback,
            )
            variance = interpolate_holes(
                variance, holes, along_columns=interp.along_columns, empty_value=np.inf
            )
            mask = mask | da.where(holes, np.int32(planes.value(["INTRP"])), np.int32(0))
        variance = da.where(np.isfinite(variance) & (variance > 0), variance, np.float32(np.inf))
        tapered = interp.use_fallback_at_edge
        records["interpolation"] = {
            "plane": "NO_DATA",
            "flag": "INTRP",
            "pixels": n_holes,
            "along": "y" if interp.along_columns else "x",
            "fallback_type": interp.fallback_type if tapered else None,
            "fallback_values": [float(v) for v in fallback] if tapered else None,
        }
        log.info(
            "doInterp: %d NO_DATA pixels interpolated along %s and flagged INTRP",
            n_holes,
            records["interpolation"]["along"],
        )
    if bright is not None:
        name = str(config.brightObjectMaskName)
        planes = planes.with_planes([name])
        inside = bright_object_mask(bright, mask.chunks)
        mask = mask | da.where(inside, np.int32(planes.value([name])), np.int32(0))
        records["bright_objects"] = {
            "file": bright.path,
            "plane": name,
            "regions": len(bright.include),
            "excluded_regions": len(bright.exclude),
            "off_tile": list(bright.off_tile),
        }
    return model, variance.astype(np.float32), mask.astype(np.int32), planes, records


def _transmission_variable(curve: CoaddTransmission | None) -> xr.DataArray | None:
    """The store's ``transmission`` variable for ``doAttachTransmissionCurve``, or None."""
    if curve is None:
        return None
    return transmission_array(
        curve.transmission.wavelength_nm,
        curve.transmission.throughput,
        band=curve.band,
        source=curve.source,
    )


def _median_psf_sigma(
    warps: xr.Dataset, config: DcrAssembleCoaddConfig, matching: PsfMatching | None = None
) -> float:
    """Gaussian sigma of the direct warps' median PSF FWHM: measured on their PSF stamps
    when they were PSF-matched here, else from their headers, else ``modelPsf.defaultFwhm``."""
    if matching is not None:
        fwhm = np.asarray(matching.input_fwhm_px, dtype=float)
    else:
        fwhm = np.asarray(warps["psf_fwhm_px"].values, dtype=float)
    fwhm = fwhm[np.isfinite(fwhm)]
    value = float(np.median(fwhm)) if fwhm.size else float(config.modelPsf.defaultFwhm)
    return value / FWHM_PER_SIGMA


def _coadd_psf(
    ingested: xr.Dataset,
    weights: np.ndarray,
    rejected: Mapping[int, str],
    model: da.Array,
    template_ds: xr.Dataset,
    planes: MaskPlanes,
    config: DcrAssembleCoaddConfig,
    client: Any,
    *,
    model_variance: float | None = None,
) -> CoaddPsf:
    """The coadd's PSF (:mod:`dcr_dask.graph.coadd_psf`): the visits' PSFs at the tile centre
    combined with the run's weights (with ``psfForwardModel="gaussian"``, those at or
    below the model's width ``model_variance``, widened to it); with
    ``doCalculatePsf``, measured on the stars of the coadd (the sum of the sub-band
    ``model``, over its central window), keeping the combination with a warning when
    too few stars are measured."""
    combined = coadd_psf_from_inputs(
        ingested,
        weights,
        rejected=list(rejected),
        covers_centre=compute(centre_coverage(ingested), client),
        model_variance=model_variance,
    )
    if not config.doCalculatePsf:
        how = (
            "the PSFs of the visits at or below the model's width, widened to it"
            if combined.method == "model"
            else "the visits' PSFs combined"
        )
        log.info("coadd PSF: %.2f px FWHM (%s)", combined.fwhm_px, how)
        return combined
    wy, wx = measurement_window(model.shape[1:])
    image, variance, mask = compute(
        [
            model[:, wy, wx].sum(axis=0, dtype=np.float64),
            template_ds["variance"].data[wy, wx],
            template_ds["mask"].data[wy, wx],
        ],
        client,
        label="the coadd PSF's window",
    )
    bad = (np.asarray(mask) & planes.value([*config.badMaskPlanes, *STAR_BAD_PLANES])) != 0
    measured = measure_coadd_psf(
        np.asarray(image),
        np.asarray(variance),
        bad,
        psf_measurement(config),
        centre_yx=combined.centre_yx,
    )
    if isinstance(measured, str):
        log.warning(
            "doCalculatePsf: the PSF could not be measured on the coadd (%s); the coadd PSF "
            "is the visits' PSFs combined",
            measured,
        )
        return combined.with_record(measurement_failed=measured)
    log.info(
        "coadd PSF measured on %d stars: %.2f px FWHM (the visits' PSFs combined: %.2f px)",
        measured.record["n_stars"],
        measured.fwhm_px,
        combined.fwhm_px,
    )
    return measured.with_record(inputs_fwhm_px=combined.fwhm_px)


def _fit_inputs(
    ingested: xr.Dataset,
    template_ds: xr.Dataset,
    good: xr.DataArray,
    weights: xr.DataArray,
    planes: MaskPlanes,
    config: DcrAssembleCoaddConfig,
    psf_sigma_px: float,
    *,
    psf_blur: np.ndarray | None = None,
) -> tuple[FitInputs, np.ndarray]:
    """Lazy arrays of :class:`FitInputs` on the tile, and the visit weights.

    ``psf_blur`` is :class:`FitInputs`' (``psfForwardModel="gaussian"``; the
    reference fit of the PSF-matched warps has none).

    Without any ``convergenceMaskPlanes`` pixel in the warps (many users' warps
    carry no ``DETECTED`` plane), the reference finds no valid data and stops
    after one update; here sources are detected on the template as
    single-visit processing would (smoothed with its PSF, ``detectModelSources``:
    5 sigma) and used for the convergence metric, and, if the template has no
    ``DETECTED`` pixels either, for the model weights. (The reference's
    ``detectTemplate``, 300 sigma, left every faint source out of the model.)
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
            "no %s pixels in the warps: using sources detected on the template smoothed "
            "with its PSF (detectModelSources, %.1f sigma) for the convergence metric and "
            "model weights",
            "/".join(config.convergenceMaskPlanes),
            config.detectModelSources.thresholdValue,
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
        psf_blur=psf_blur,
    )
    return inputs, weights_np


def _detect_on_template(
    template_ds: xr.Dataset, config: DcrAssembleCoaddConfig, psf_sigma_px: float
) -> da.Array:
    """Pixels of sources detected on the template, smoothed with its PSF, with the
    ``detectModelSources`` settings (lazy)."""
    detected = detect_sources(
        template_ds,
        source_detection(config.detectModelSources),
        psf_sigma_px=psf_sigma_px,
        smooth=True,
    )
    return detected.data.astype(bool)
