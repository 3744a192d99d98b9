"""CompareWarp's artifact rejection on Dask: transient footprints in each PSF-matched warp.

docs/algorithm.md, "CompareWarp artifacts", as lazy graphs over the tile; the
tests on footprints are in :mod:`dcr_dask.kernels.artifacts`, detection in
:mod:`dcr_dask.graph.detect`, labelling across chunks in :mod:`dcr_dask.graph.labels`.

- :func:`variance_scale_factors` (``doScaleWarpVariance``): per-visit
  empirical variance factors of the PSF-matched warps (eager, one pass).
- :func:`find_artifacts`: footprints on ``warp − reference`` (the static
  model, or any per-visit reference such as DCR-matched templates),
  prefiltered, epoch-counted and tested for transience; the result holds the
  per-visit ``artifacts`` (→ ``CLIPPED``) and ``no_data`` (→ ``NO_DATA``)
  masks, lazily (:data:`ARTIFACT_VARIABLES`).
- :func:`apply_artifact_masks` sets those planes in the direct warps' masks;
  a run stores them in their own store
  (:func:`dcr_dask.io.ingest.artifact_mask_dataset`).

Passes over the data
--------------------
:func:`find_artifacts` labels the footprints across the tile twice, eagerly:
pass 1 finds them and their prefilter counts, pass 2 their epoch counts and
the template sources under them. With ``detect.includeThresholdMultiplier >
1`` the detection itself is one more pass (both polarities at once), and so is
the template detection with ``detectTemplate.includeThresholdMultiplier > 1``
when ``doPreserveContainedBySource``. The masks returned are lazy and
recompute the detection chunk by chunk.
"""

from __future__ import annotations

import logging

import attrs
import dask.array as da
import numpy as np
import xarray as xr

from dcr_dask.errors import expect_settings
from dcr_dask.graph.detect import (
    POLARITY_SIGNS,
    SourceDetection,
    _detect,
    _grow,
    _peak_tested_footprints,
    _signal,
    detect_sources,
)
from dcr_dask.graph.labels import Components, component_stats, find_components, map_components
from dcr_dask.graph.psf_matching import model_psf_sigma_px
from dcr_dask.graph.tile import TILE_ATTRS, pixel_arrays
from dcr_dask.kernels import artifacts as artifact_tests
from dcr_dask.kernels.detection import DetectionSettings
from dcr_dask.masks import ARTIFACT_VARIABLES, MaskPlanes

__all__ = [
    "ARTIFACT_VARIABLES",
    "ArtifactSettings",
    "VarianceScaling",
    "apply_artifact_masks",
    "find_artifacts",
    "variance_scale_factors",
    "warp_variance_scale",
]

logger = logging.getLogger(__name__)


@attrs.frozen
class VarianceScaling:
    """CompareWarp's variance rescaling (:func:`dcr_dask.settings.variance_scaling`).

    Attributes
    ----------
    enabled : bool
        ``doScaleWarpVariance``.
    mask_planes : tuple of str
        ``scaleWarpVariance.maskPlanes``: pixels left out of the statistic.
    limit : float
        ``scaleWarpVariance.limit``: larger factors are not applied.
    model_sources : SourceDetection or None
        ``detectModelSources`` (a field of the DCR task's config): sources on
        the static model left out when no warp has ``DETECTED`` pixels; None
        to leave them in.
    """

    enabled: bool
    mask_planes: tuple[str, ...]
    limit: float
    model_sources: SourceDetection | None = None


@attrs.frozen
class ArtifactSettings:
    """What :func:`find_artifacts` reads of a config (:func:`dcr_dask.settings.artifact_settings`).

    Attributes
    ----------
    detect : SourceDetection
        ``detect``: footprints on ``warp − reference``.
    detect_template : SourceDetection
        ``detectTemplate``: the sources that protect footprints.
    bad_mask_planes : tuple of str
        ``badMaskPlanes``: epochs not counted.
    do_prefilter : bool
        ``doPrefilterArtifacts``.
    prefilter_mask_planes : tuple of str
        ``prefilterArtifactsMaskPlanes``.
    prefilter_ratio : float
        ``prefilterArtifactsRatio``.
    max_num_epochs : int
        ``maxNumEpochs``.
    max_fraction_epochs_low, max_fraction_epochs_high : float
        ``maxFractionEpochsLow``, ``maxFractionEpochsHigh``.
    spatial_threshold : float
        ``spatialThreshold``.
    preserve_contained_by_source : bool
        ``doPreserveContainedBySource``.
    default_psf_fwhm_px : float
        ``modelPsf.defaultFwhm``: the model PSF assumed for warps that record none.
    """

    detect: SourceDetection
    detect_template: SourceDetection
    bad_mask_planes: tuple[str, ...]
    do_prefilter: bool
    prefilter_mask_planes: tuple[str, ...]
    prefilter_ratio: float
    max_num_epochs: int
    max_fraction_epochs_low: float
    max_fraction_epochs_high: float
    spatial_threshold: float
    preserve_contained_by_source: bool
    default_psf_fwhm_px: float


def _histogram_block(image: np.ndarray, variance: np.ndarray, good: np.ndarray) -> np.ndarray:
    counts = artifact_tests.snr_histogram(image, variance, good)
    return counts[:, None, None, :]


def _has_detected(warps: xr.Dataset) -> bool:
    """Whether any warp has a ``DETECTED`` pixel (eager: one pass over the masks)."""
    bit = MaskPlanes(warps.attrs["mask_planes"]).value(["DETECTED"])
    return bool(bit) and bool(((da.asarray(warps["mask"].data) & bit) != 0).any().compute())


def variance_scale_factors(
    psf_matched: xr.Dataset, scaling: VarianceScaling, *, sources: da.Array | None = None
) -> np.ndarray:
    """Empirical variance factor of each warp (``scaleWarpVariance``; eager, one pass).

    Parameters
    ----------
    psf_matched : xarray.Dataset
        The warps whose variance is to be rescaled.
    scaling : VarianceScaling
        Uses ``mask_planes`` (pixels left out) and ``limit``.
    sources : dask.array.Array of bool, optional
        ``(y, x)`` pixels of sources to leave out as well (see Notes).

    Returns
    -------
    numpy.ndarray of float64
        ``(visit,)`` factors by which to multiply each variance plane so that
        ``image / sqrt(variance)`` has unit robust spread (interquartile range)
        on the unmasked pixels. A factor that is undefined or above ``limit``
        is replaced by 1 with a warning (CompareWarp leaves such a warp as it
        is).

    Notes
    -----
    Unlike Rubin's ``ScaleVarianceTask``, no background is subtracted first
    (warps are background-subtracted, and the interquartile range ignores a
    constant offset), and there is no image-based fallback.

    ``maskPlanes`` leaves out ``DETECTED`` pixels, but many warps carry no
    ``DETECTED`` plane; then the faint sources of a crowded field, which PSF
    matching lifts above the smoothed noise, widen the spread: on GalSim
    tiles with Kolmogorov PSFs the factors came out 3-7 instead of 1, the
    noise of the comparison was overestimated 2-2.6 times and a third of the
    cosmic rays were missed. When no warp has a ``DETECTED`` pixel,
    :func:`warp_variance_scale` passes the sources detected on the static model
    (``detectModelSources``) as ``sources``.
    """
    expect_settings(scaling, VarianceScaling, "scaling", "variance_scaling")
    planes = MaskPlanes(psf_matched.attrs["mask_planes"])
    bad = planes.value(scaling.mask_planes)
    image, variance, mask = pixel_arrays(psf_matched)
    good = (mask & bad) == 0
    if sources is not None:
        good = good & ~da.asarray(sources).astype(bool).rechunk(image.chunks[1:])[None]
    n_columns = len(artifact_tests.SNR_EDGES) + 1
    counts = da.map_blocks(
        _histogram_block,
        image,
        variance,
        good,
        new_axis=3,
        chunks=(
            image.chunks[0],
            (1,) * image.numblocks[1],
            (1,) * image.numblocks[2],
            (n_columns,),
        ),
        dtype=np.int64,
    )
    histograms = counts.sum(axis=(1, 2)).compute()
    factors = np.ones(histograms.shape[0])
    for i, visit in enumerate(psf_matched["visit"].values):
        factor = artifact_tests.variance_scale_from_histogram(histograms[i])
        if not np.isfinite(factor) or factor > scaling.limit:
            logger.warning(
                "visit %s: variance scale factor %r is undefined or exceeds "
                "scaleWarpVariance.limit = %s; the variance is left as it is",
                visit,
                factor,
                scaling.limit,
            )
        else:
            factors[i] = factor
    logger.info("variance scale factors: %s", np.round(factors, 4).tolist())
    return factors


def _as_like(data: da.Array, like: da.Array) -> da.Array:
    """``data`` on (y, x) or (visit, y, x), broadcast and rechunked to ``like``'s chunks."""
    if data.ndim == 2:
        data = data[None]
    data = data.rechunk((-1 if data.shape[0] == 1 else like.chunks[0], *like.chunks[1:]))
    return da.broadcast_to(data, like.shape, chunks=like.chunks)


def _reference_arrays(
    reference: xr.Dataset, psf_matched: xr.Dataset, like: da.Array
) -> tuple[da.Array, da.Array, da.Array]:
    """Image, variance and validity of the reference, on the PSF-matched warps' chunks."""
    if "visit" in reference.dims and not np.array_equal(
        reference["visit"].values, psf_matched["visit"].values
    ):
        raise ValueError(
            f"the per-visit reference has visits {reference['visit'].values}; the "
            f"PSF-matched warps have {psf_matched['visit'].values}"
        )

    def arranged(name: str) -> da.Array:
        # each variable on (y, x) or (visit, y, x): e.g. per-visit templates with the
        # static model's variance
        order = ("visit", "y", "x") if "visit" in reference[name].dims else ("y", "x")
        return _as_like(reference[name].transpose(*order).data, like)

    image = arranged("image")
    variance = arranged("variance")
    valid = da.isfinite(image) & da.isfinite(variance)
    if "mask" in reference.data_vars:
        planes = MaskPlanes(reference.attrs.get("mask_planes", psf_matched.attrs["mask_planes"]))
        no_data = planes.value(["NO_DATA"])
        valid = valid & ((arranged("mask") & no_data) == 0)
    return image, variance, valid


def _visit_index(like: da.Array) -> da.Array:
    index = da.arange(like.shape[0], chunks=like.chunks[0], dtype=np.float64)
    return da.broadcast_to(index[:, None, None], like.shape, chunks=like.chunks)


def _per_visit(values: np.ndarray, visit_of: np.ndarray, n_visits: int) -> np.ndarray:
    return np.bincount(visit_of, weights=values.astype(np.float64), minlength=n_visits).astype(
        np.int64
    )


def warp_variance_scale(
    psf_matched: xr.Dataset,
    static_model: xr.Dataset,
    scaling: VarianceScaling,
    psf_sigma_px: float,
) -> np.ndarray | None:
    """CompareWarp's per-visit variance factors (``doScaleWarpVariance``), or None.

    Sources are left out of the empirical variance: the warps' ``DETECTED``
    pixels when they have some, else those detected on the static model
    smoothed with the model PSF (``detectModelSources``).

    Parameters
    ----------
    psf_matched : xarray.Dataset
        The PSF-matched warps.
    static_model : xarray.Dataset
        The static sky model.
    scaling : VarianceScaling
        ``doScaleWarpVariance``, ``scaleWarpVariance`` and (a DCR config's)
        ``detectModelSources``.
    psf_sigma_px : float
        The model PSF's sigma, pixels.

    Returns
    -------
    numpy.ndarray or None
        ``(visit,)`` factors; None without ``doScaleWarpVariance``.
    """
    expect_settings(scaling, VarianceScaling, "scaling", "variance_scaling")
    if not scaling.enabled:
        return None
    sources = None
    if scaling.model_sources is not None and not _has_detected(psf_matched):
        sources = detect_sources(
            static_model, scaling.model_sources, psf_sigma_px=psf_sigma_px, smooth=True
        ).data
    return variance_scale_factors(psf_matched, scaling, sources=sources)


def find_artifacts(
    psf_matched: xr.Dataset,
    reference: xr.Dataset,
    settings: ArtifactSettings,
    *,
    template: xr.Dataset | None = None,
    variance_scale: np.ndarray | None = None,
    psf_sigma_px: float | None = None,
    same_sign_epochs: bool = False,
) -> xr.Dataset:
    """Find transient artifacts in each PSF-matched warp by comparing it with a reference.

    Parameters
    ----------
    psf_matched : xarray.Dataset
        PSF-matched warps ``(visit, y, x)``.
    reference : xarray.Dataset
        What each warp is compared with: ``image`` and ``variance`` on
        ``(y, x)`` (the static sky model) or ``(visit, y, x)`` (a per-visit
        reference such as DCR-matched templates, same visits in the same
        order), and optionally ``mask`` (its ``NO_DATA`` pixels are not
        compared). Its PSF must be the model PSF.
    settings : ArtifactSettings
        ``detect``, ``detectTemplate``, ``badMaskPlanes``,
        ``doPrefilterArtifacts``, ``prefilterArtifactsMaskPlanes``,
        ``prefilterArtifactsRatio``, ``maxNumEpochs``,
        ``maxFractionEpochsLow``, ``maxFractionEpochsHigh``,
        ``spatialThreshold``, ``doPreserveContainedBySource`` and
        ``modelPsf.defaultFwhm``.
    template : xarray.Dataset, optional
        The static model on which ``detectTemplate`` finds the sources that
        protect footprints (``doPreserveContainedBySource``); default
        ``reference`` when it is on ``(y, x)``.
    variance_scale : numpy.ndarray, optional
        ``(visit,)`` factors for the warps' variance
        (:func:`variance_scale_factors`); default 1.
    psf_sigma_px : float, optional
        Gaussian sigma of the model PSF, pixels, which scales footprint
        growth; default from the warps' ``model_psf_fwhm_px`` attribute, else
        ``modelPsf.defaultFwhm``.
    same_sign_epochs : bool
        False (the reference): positive and negative footprints that touch
        are merged, and a footprint's epoch counts count the footprints of
        either sign in every visit. True: each polarity of
        ``detect.thresholdPolarity`` is detected, labelled and counted on its
        own, so that a positive transient neither merges with a negative
        residual beside it (e.g. the mismatch of a neighbouring star) nor is
        made persistent by the negative residuals its own flux leaves in other
        visits' comparison (as when the reference is a fit that absorbed part
        of it). A pixel is clipped if a footprint of either sign clips it.

    Returns
    -------
    xarray.Dataset
        On the warps' ``visit`` (with its coordinates), ``y``, ``x``:

        - ``artifacts`` (visit, y, x) uint8, lazy: 1 where the pixel is in a
          footprint clipped as an artifact (to set ``CLIPPED``);
        - ``no_data`` (visit, y, x) uint8, lazy: 1 where the PSF-matched warp
          or the reference has no valid data (to set ``NO_DATA``);
        - ``epoch_count`` and ``n_epochs`` (y, x) uint16, lazy: the epoch
          count of kept footprints and ``N``;
        - ``n_footprints``, ``n_prefiltered``, ``n_preserved``,
          ``n_artifact_footprints`` (visit,) int64 and ``variance_scale``
          (visit,) float64;
        - attributes ``psf_sigma_px``, ``grow_px``, ``template_grow_px``.

    Raises
    ------
    ValueError
        For unsupported detection settings, mismatched visits, or
        ``doPreserveContainedBySource`` with a per-visit reference and no
        ``template``.

    Notes
    -----
    Computes two labelling passes eagerly (module docstring); the masks
    returned are lazy and recompute the detection chunk by chunk. With
    ``detect.includeThresholdMultiplier > 1`` the detection itself labels
    the footprints across chunks first, one more eager pass (both polarities
    at once), and so does the template detection with
    ``detectTemplate.includeThresholdMultiplier > 1`` when
    ``doPreserveContainedBySource`` (see :func:`dcr_dask.graph.detect.detect_sources`).
    """
    expect_settings(settings, ArtifactSettings, "settings", "artifact_settings")
    planes = MaskPlanes(psf_matched.attrs["mask_planes"])
    image, matched_variance, mask = pixel_arrays(psf_matched)
    if psf_sigma_px is None:
        psf_sigma_px = model_psf_sigma_px(psf_matched, settings.default_psf_fwhm_px)
    detection = settings.detect.at_psf(psf_sigma_px)
    scale = _variance_scale(variance_scale, psf_matched.sizes["visit"])
    compared = _compare(
        psf_matched, reference, image, matched_variance, mask, planes, scale, detection
    )
    # before the first eager pass: a missing template is an error found at once
    outside, template_grow = _template_sources(
        reference, template, settings, psf_sigma_px, compared.like
    )
    candidates, n_planes = _candidates(compared.signal, detection, same_sign_epochs)
    labelled = _first_pass(candidates, compared, settings, n_planes)
    tested = _second_pass(labelled, candidates, compared, settings, n_planes, outside)
    logger.info(
        "%d footprints, %d prefiltered, %d preserved by template sources, %d artifacts",
        labelled.components.count,
        int((~labelled.kept).sum()),
        int(tested.preserved.sum()),
        int(tested.is_artifact.sum()),
    )
    artifact_mask = _or_polarities(
        map_components(labelled.components, candidates, tested.is_artifact, fill=False, dtype=bool),
        n_planes,
        compared.n_visits,
    )
    return _artifact_dataset(
        psf_matched,
        compared,
        labelled,
        tested,
        artifact_mask,
        scale,
        attrs={
            "psf_sigma_px": psf_sigma_px,
            "grow_px": detection.grow_px,
            "template_grow_px": template_grow,
        },
    )


@attrs.frozen(eq=False)
class _Comparison:
    """Each PSF-matched warp against its reference, on the warps' chunks (lazy)."""

    like: da.Array  # the warps' image: shape and chunks of every (visit, y, x) array
    mask: da.Array
    planes: MaskPlanes
    warp_valid: da.Array
    reference_valid: da.Array
    valid: da.Array
    signal: da.Array  # what detection thresholds, NaN where not valid

    @property
    def n_visits(self) -> int:
        """Number of visits."""
        return int(self.like.shape[0])


@attrs.frozen(eq=False)
class _Labelled:
    """Pass 1: the candidate footprints across the tile and the prefilter's verdict."""

    components: Components
    visit_of: np.ndarray  # (footprint,) the visit each footprint is in
    kept: np.ndarray  # (footprint,) bool: kept by the prefilter


@attrs.frozen(eq=False)
class _Tested:
    """Pass 2: the epoch counts and which footprints are artifacts."""

    epoch_count: da.Array  # (y, x) uint16
    n_epochs: da.Array  # (y, x) uint16
    preserved: np.ndarray  # (footprint,) bool
    is_artifact: np.ndarray  # (footprint,) bool


def _variance_scale(variance_scale: np.ndarray | None, n_visits: int) -> np.ndarray:
    """The ``(visit,)`` variance factors: as given, or 1."""
    scale = np.ones(n_visits) if variance_scale is None else np.asarray(variance_scale, float)
    if scale.shape != (n_visits,):
        raise ValueError(f"variance_scale has shape {scale.shape}; expected ({n_visits},)")
    return scale


def _compare(
    psf_matched: xr.Dataset,
    reference: xr.Dataset,
    image: da.Array,
    matched_variance: da.Array,
    mask: da.Array,
    planes: MaskPlanes,
    scale: np.ndarray,
    settings: DetectionSettings,
) -> _Comparison:
    """``warp − reference``, its variance (the warps' scaled) and where both are valid."""
    like = image
    variance = matched_variance * da.from_array(scale, chunks=(like.chunks[0],))[
        :, None, None
    ].astype(np.float32)
    reference_image, reference_variance, reference_valid = _reference_arrays(
        reference, psf_matched, like
    )
    warp_valid = (
        ((mask & planes.value(["NO_DATA"])) == 0) & da.isfinite(image) & da.isfinite(variance)
    )
    valid = warp_valid & reference_valid
    signal = _signal(
        image - reference_image, variance + reference_variance, valid, settings.threshold_type
    )
    return _Comparison(like, mask, planes, warp_valid, reference_valid, valid, signal)


def _candidates(
    signal: da.Array, settings: DetectionSettings, same_sign_epochs: bool
) -> tuple[da.Array, int]:
    """Candidate footprints on a leading axis of (polarity, visit), and the number of polarities.

    One polarity with ``"both"`` merged (the reference), or each polarity on its
    own (``same_sign_epochs``), grown.
    """
    if same_sign_epochs:
        signs = POLARITY_SIGNS[settings.polarity]
        if settings.peak_test:
            # one labelling pass for both polarities
            each = _grow(_peak_tested_footprints(signal, settings, signs), settings)
            candidates = da.concatenate([each[k] for k in range(len(signs))], axis=0)
        else:
            one_sided = attrs.evolve(settings, polarity="positive")
            candidates = da.concatenate(
                [_detect(sign * signal, one_sided) for sign in signs], axis=0
            )
    else:
        signs = (1,)
        candidates = _detect(signal, settings)
    return candidates, len(signs)


def _stacked(array: da.Array, n_planes: int) -> da.Array:
    """A (visit, y, x) array repeated for each polarity: (polarity x visit, y, x)."""
    return da.concatenate([array] * n_planes, axis=0) if n_planes > 1 else array


def _or_polarities(planes_: da.Array, n_planes: int, n_visits: int) -> da.Array:
    """OR a (polarity x visit, y, x) mask over polarities."""
    if n_planes == 1:
        return planes_
    return da.stack([planes_[k * n_visits : (k + 1) * n_visits] for k in range(n_planes)]).any(
        axis=0
    )


def _first_pass(
    candidates: da.Array,
    compared: _Comparison,
    settings: ArtifactSettings,
    n_planes: int,
) -> _Labelled:
    """Pass 1 (eager): footprints across the tile, their visits and the prefilter counts."""
    mask, planes, n_visits = compared.mask, compared.planes, compared.n_visits
    prefilter_good = (mask & planes.value(settings.prefilter_mask_planes)) == 0
    plane_like = _stacked(compared.like, n_planes)
    components, first = find_components(
        candidates,
        _stacked(prefilter_good, n_planes),
        _visit_index(plane_like),
        da.where(candidates, da.nan_to_num(_stacked(compared.signal, n_planes)), 0.0),
        block_stats=artifact_tests.count_stats,
        n_stats=3,
    )
    pixels = components.pixels
    with np.errstate(invalid="ignore", divide="ignore"):
        visit_of = np.rint(first[:, 1] / np.maximum(pixels, 1)).astype(np.int64) % n_visits
    if settings.do_prefilter:
        kept = artifact_tests.prefilter_keep(pixels, first[:, 0], settings.prefilter_ratio)
    else:
        kept = np.ones(components.count, dtype=bool)
    return _Labelled(components, visit_of, kept)


def _template_sources(
    reference: xr.Dataset,
    template: xr.Dataset | None,
    settings: ArtifactSettings,
    psf_sigma_px: float,
    like: da.Array,
) -> tuple[da.Array, int]:
    """``(y, x)`` pixels outside the template's sources, and their growth in pixels.

    Everywhere, and 0, without ``doPreserveContainedBySource``.
    """
    if not settings.preserve_contained_by_source:
        return da.ones(like.shape[1:], dtype=bool, chunks=like.chunks[1:]), 0
    if template is None:
        if "visit" in reference["image"].dims:
            raise ValueError(
                "doPreserveContainedBySource needs the static model as `template` when "
                "the reference is per visit"
            )
        template = reference
    template_grow = settings.detect_template.at_psf(psf_sigma_px).grow_px
    sources = detect_sources(
        template, settings.detect_template, psf_sigma_px=psf_sigma_px, polarity="positive"
    )
    return ~sources.transpose("y", "x").data, template_grow


def _second_pass(
    labelled: _Labelled,
    candidates: da.Array,
    compared: _Comparison,
    settings: ArtifactSettings,
    n_planes: int,
    outside: da.Array,
) -> _Tested:
    """Pass 2 (eager): epoch counts (per polarity), ``N`` and template sources per footprint.

    Then the transience test (:func:`dcr_dask.kernels.artifacts.transient`)
    and the sources' protection decide which footprints are artifacts.
    """
    components, kept = labelled.components, labelled.kept
    like, n_visits = compared.like, compared.n_visits
    kept_mask = map_components(components, candidates, kept, fill=False, dtype=bool)
    epoch_count = _or_polarities(kept_mask, n_planes, n_visits).sum(axis=0, dtype=np.uint16)
    counts = [
        kept_mask[k * n_visits : (k + 1) * n_visits].sum(axis=0, dtype=np.uint16)
        for k in range(n_planes)
    ]
    footprint_epochs = da.concatenate([_as_like(count, like) for count in counts], axis=0)
    good_epoch = compared.valid & (
        (compared.mask & compared.planes.value(settings.bad_mask_planes)) == 0
    )
    n_epochs = good_epoch.sum(axis=0, dtype=np.uint16)
    plane_like = _stacked(like, n_planes)
    second = component_stats(
        components,
        candidates,
        footprint_epochs,
        _as_like(n_epochs, plane_like),
        _as_like(outside, plane_like),
        block_stats=_EpochStats(n_visits),
        n_stats=n_visits + 3,
    )
    histogram, sum_n, outside_pixels = (
        second[:, : n_visits + 1],
        second[:, n_visits + 1],
        second[:, n_visits + 2],
    )
    is_transient = artifact_tests.transient(
        histogram,
        sum_n,
        max_num_epochs=settings.max_num_epochs,
        fraction_low=settings.max_fraction_epochs_low,
        fraction_high=settings.max_fraction_epochs_high,
        spatial_threshold=settings.spatial_threshold,
    )
    preserved = kept & is_transient & (outside_pixels == 0) & settings.preserve_contained_by_source
    is_artifact = kept & is_transient & ~preserved
    return _Tested(epoch_count, n_epochs, preserved, is_artifact)


def _artifact_dataset(
    psf_matched: xr.Dataset,
    compared: _Comparison,
    labelled: _Labelled,
    tested: _Tested,
    artifact_mask: da.Array,
    scale: np.ndarray,
    attrs: dict[str, float | int],
) -> xr.Dataset:
    """What :func:`find_artifacts` returns, on the warps' visits and coordinates."""
    n_visits, visit_of, kept = compared.n_visits, labelled.visit_of, labelled.kept
    dims = ("visit", "y", "x")
    coords = {name: coord for name, coord in psf_matched.coords.items() if "visit" in coord.dims}
    coords.update({"y": psf_matched["y"], "x": psf_matched["x"]})
    n_found = labelled.components.count
    return xr.Dataset(
        {
            "artifacts": (dims, artifact_mask.astype(np.uint8)),
            "no_data": (dims, (~(compared.warp_valid & compared.reference_valid)).astype(np.uint8)),
            "epoch_count": (("y", "x"), tested.epoch_count),
            "n_epochs": (("y", "x"), tested.n_epochs),
            "n_footprints": ("visit", _per_visit(np.ones(n_found), visit_of, n_visits)),
            "n_prefiltered": ("visit", _per_visit(~kept, visit_of, n_visits)),
            "n_preserved": ("visit", _per_visit(tested.preserved, visit_of, n_visits)),
            "n_artifact_footprints": (
                "visit",
                _per_visit(tested.is_artifact, visit_of, n_visits),
            ),
            "variance_scale": ("visit", scale),
        },
        coords=coords,
        attrs={
            **{key: psf_matched.attrs[key] for key in TILE_ATTRS if key in psf_matched.attrs},
            **attrs,
        },
    )


@attrs.frozen
class _EpochStats:
    """Block function of the second pass (picklable, with the number of visits)."""

    n_visits: int

    def __call__(
        self,
        labels: np.ndarray,
        n: int,
        epoch_count: np.ndarray,
        n_epochs: np.ndarray,
        outside: np.ndarray,
    ) -> np.ndarray:
        return artifact_tests.epoch_stats(
            labels, n, epoch_count, n_epochs, outside, max_epochs=self.n_visits
        )


# --------------------------------------------------------------------------- applying


def apply_artifact_masks(warps: xr.Dataset, masks: xr.Dataset) -> xr.Dataset:
    """Set ``CLIPPED`` (``artifacts``) and ``NO_DATA`` (``no_data``) in the warps' masks (lazy).

    Parameters
    ----------
    warps : xarray.Dataset
        Direct warps ``(visit, y, x)``.
    masks : xarray.Dataset
        Holds ``artifacts`` and/or ``no_data`` ``(visit, y, x)`` (from
        :func:`find_artifacts`, or an ingest store opened with
        :func:`dcr_dask.io.ingest.open_ingested` after
        :func:`dcr_dask.io.ingest.write_artifact_masks`), on the warps' visits.

    Returns
    -------
    xarray.Dataset
        The warps with the updated ``mask``.
    """
    planes = MaskPlanes(warps.attrs["mask_planes"])
    if not np.array_equal(masks["visit"].values, warps["visit"].values):
        raise ValueError(
            f"the masks have visits {masks['visit'].values}; the warps have {warps['visit'].values}"
        )
    mask = warps["mask"]
    for name, plane in ARTIFACT_VARIABLES.items():
        if name in masks.data_vars:
            bit = np.int32(planes.value([plane]))
            flag = masks[name].transpose(*mask.dims).data.rechunk(mask.data.chunks) != 0
            mask = mask.copy(data=da.where(flag, mask.data | bit, mask.data))
    return warps.assign(mask=mask)
