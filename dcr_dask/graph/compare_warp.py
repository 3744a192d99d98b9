"""CompareWarp on Dask: PSF-matched warps, static sky model and artifact rejection.

docs/algorithm.md, "PSF matching and the static sky model" and "CompareWarp
artifacts". :func:`compare_warp` runs steps 1-4; each step lives in its own module
(all names stay importable from here):

1. PSF matching, :mod:`dcr_dask.graph.psf_matching`: :func:`psf_matching` (a
   matching kernel per visit to the model PSF, which that module describes)
   and :func:`match_psfs` (applied lazily with a halo of half the kernel).
2. The static sky model, :func:`dcr_dask.graph.coadd.assemble_static_sky_model`:
   the ``assembleStaticSkyModel`` stack (MEANCLIP 2.5 σ, 3 passes, bad planes
   ``NO_DATA``) of the PSF-matched warps.
3. ``doScaleWarpVariance``, :func:`dcr_dask.graph.artifacts.variance_scale_factors`:
   per-visit empirical variance factors of the PSF-matched warps, leaving out
   the static model's sources (:func:`dcr_dask.graph.detect.detect_sources`,
   ``detectModelSources``) when no warp has a ``DETECTED`` plane.
4. :func:`dcr_dask.graph.artifacts.find_artifacts`: transient footprints on
   ``warp − reference``, as lazy per-visit ``artifacts`` and ``no_data`` masks.

Then :func:`dcr_dask.graph.artifacts.apply_artifact_masks` sets those planes in
the direct warps' masks; a run stores them in their own store
(:func:`dcr_dask.io.ingest.artifact_mask_dataset`). Halos are in
:mod:`dcr_dask.graph.halos`, the halo wrapper in :mod:`dcr_dask.graph.overlap`.

Passes over the data and memory
-------------------------------
Every graph here keeps one ``(y, x)`` chunk of every visit in memory at a
time, plus halos. Tile-wide numbers are computed eagerly in small
reductions, so that no graph waits on a tile-wide result while holding
chunks: the static model's visit weights (one pass), the variance factors
(one pass), and two labelling passes in :func:`find_artifacts`, plus one
for each detection with ``includeThresholdMultiplier > 1`` (a footprint's
peak test needs it whole; see :func:`detect_sources`). Each pass
recomputes the PSF matching from the warps; write the PSF-matched warps or
the static model to a store first to avoid that on large tiles.

The graphs take the visits' chunking as given: a chunk of several visits
makes fewer, larger tasks (each pass runs some 180 small tasks per chunk,
whose overhead outweighs their arithmetic on small subregions) and the same
results. A run groups the visits up to a byte budget per task
(:func:`dcr_dask.running.memory.visits_per_chunk`).
"""

from __future__ import annotations

import attrs
import numpy as np
import xarray as xr

from dcr_dask._moved import moved_names
from dcr_dask.errors import expect_settings
from dcr_dask.graph.artifacts import (
    ARTIFACT_VARIABLES,
    ArtifactSettings,
    VarianceScaling,
    apply_artifact_masks,
    find_artifacts,
    variance_scale_factors,
    warp_variance_scale,
)
from dcr_dask.graph.coadd import Stacking, assemble_static_sky_model
from dcr_dask.graph.detect import SourceDetection, detect_sources
from dcr_dask.graph.psf_matching import (
    MATCHING_RESIDUAL_WARN,
    MODEL_PSF_WIDEN,
    ModelPsf,
    PsfMatching,
    PsfMatchingSettings,
    match_psfs,
    model_psf_fwhm,
    model_psf_sigma_px,
    model_psf_stamp,
    psf_matching,
    visit_psf_stamps,
)

__all__ = [
    "ARTIFACT_VARIABLES",
    "MATCHING_RESIDUAL_WARN",
    "MODEL_PSF_WIDEN",
    "ArtifactSettings",
    "CompareWarpResult",
    "CompareWarpSettings",
    "ModelPsf",
    "PsfMatching",
    "PsfMatchingSettings",
    "SourceDetection",
    "Stacking",
    "VarianceScaling",
    "apply_artifact_masks",
    "assemble_static_sky_model",
    "compare_warp",
    "detect_sources",
    "find_artifacts",
    "match_psfs",
    "model_psf_fwhm",
    "model_psf_stamp",
    "psf_matching",
    "variance_scale_factors",
    "visit_psf_stamps",
]

# Private steps that tests and scripts imported from here before the split (explicit
# re-exports).
from dcr_dask.graph.artifacts import _reference_arrays as _reference_arrays
from dcr_dask.graph.detect import _detect as _detect
from dcr_dask.graph.detect import _grow as _grow
from dcr_dask.graph.detect import _peak_tested_footprints as _peak_tested_footprints

__getattr__ = moved_names(__name__, ["detection_settings"], "dcr_dask.settings")


@attrs.frozen
class CompareWarpSettings:
    """Everything CompareWarp reads of a config (:func:`dcr_dask.settings.compare_warp_settings`).

    Attributes
    ----------
    psf_matching : PsfMatchingSettings
        ``modelPsf`` and ``matchingKernelSize``.
    static_model : Stacking
        ``assembleStaticSkyModel``.
    variance_scaling : VarianceScaling
        ``doScaleWarpVariance``, ``scaleWarpVariance``, ``detectModelSources``.
    artifacts : ArtifactSettings
        The artifact tests (:func:`find_artifacts`).
    """

    psf_matching: PsfMatchingSettings
    static_model: Stacking
    variance_scaling: VarianceScaling
    artifacts: ArtifactSettings


@attrs.frozen(eq=False)
class CompareWarpResult:
    """What :func:`compare_warp` returns.

    Attributes
    ----------
    psf_matched : xarray.Dataset
        The PSF-matched warps (lazy).
    static_model : xarray.Dataset
        The static sky model (lazy).
    artifacts : xarray.Dataset
        From :func:`find_artifacts` (masks lazy).
    matching : PsfMatching or None
        The kernels, when the PSF-matched warps were made here.
    """

    psf_matched: xr.Dataset
    static_model: xr.Dataset
    artifacts: xr.Dataset
    matching: PsfMatching | None


def compare_warp(
    warps: xr.Dataset,
    settings: CompareWarpSettings,
    *,
    psf_matched: xr.Dataset | None = None,
    static_model: xr.Dataset | None = None,
    weights: xr.DataArray | np.ndarray | None = None,
    widen: float | None = MODEL_PSF_WIDEN,
    psf_sigma_px: float | None = None,
) -> CompareWarpResult:
    """PSF-match the warps, assemble the static sky model and find the artifacts.

    Parameters
    ----------
    warps : xarray.Dataset
        Direct warps ``(visit, y, x)``.
    settings : CompareWarpSettings
        From the run's config (``dcr_dask.settings.compare_warp_settings(config)``).
    psf_matched : xarray.Dataset, optional
        PSF-matched warps given by the user; default :func:`match_psfs`.
    static_model : xarray.Dataset, optional
        A static sky model at the model PSF; default
        :func:`assemble_static_sky_model` with ``settings.static_model``.
    weights : xarray.DataArray or numpy.ndarray, optional
        Visit weights of the static model (default: see
        :func:`assemble_static_sky_model`).
    widen : float or None
        Model PSF policy (:mod:`dcr_dask.graph.psf_matching`).
    psf_sigma_px : float, optional
        The model PSF's sigma, pixels; default
        :func:`~dcr_dask.graph.psf_matching.model_psf_sigma_px` (a run passes its own).

    Returns
    -------
    CompareWarpResult
    """
    expect_settings(settings, CompareWarpSettings, "settings", "compare_warp_settings")
    matching = None
    if psf_matched is None:
        matching = psf_matching(warps, settings.psf_matching, widen=widen)
        psf_matched = match_psfs(warps, settings.psf_matching, matching=matching)
    if static_model is None:
        static_model = assemble_static_sky_model(psf_matched, settings.static_model, weights)
    if psf_sigma_px is None:
        default_fwhm = settings.psf_matching.model_psf.default_fwhm_px
        psf_sigma_px = model_psf_sigma_px(psf_matched, default_fwhm, matching)
    scale = warp_variance_scale(psf_matched, static_model, settings.variance_scaling, psf_sigma_px)
    found = find_artifacts(
        psf_matched,
        static_model,
        settings.artifacts,
        variance_scale=scale,
        psf_sigma_px=psf_sigma_px,
    )
    return CompareWarpResult(psf_matched, static_model, found, matching)
