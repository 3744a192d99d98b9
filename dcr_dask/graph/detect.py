"""Source detection on Dask: footprints on chunked images, found whole across chunks.

The kernels (:mod:`dcr_dask.kernels.detection`) threshold, size-test and grow
footprints on in-memory blocks; here they are mapped over the tile with the
halo that makes each chunk's core exact (:func:`dcr_dask.graph.halos.detection_halo`,
:func:`dcr_dask.graph.halos.smoothing_halo` for smoothed detection). A
footprint's peak test (``includeThresholdMultiplier > 1``) needs it whole,
which no finite halo gives: the footprints are then labelled across chunks
first (:mod:`dcr_dask.graph.labels`), one eager pass over the image, and grown
afterwards (:func:`dcr_dask.graph.halos.growth_halo`).

:class:`SourceDetection` holds a ``SourceDetectionConfig``'s settings
(:func:`dcr_dask.settings.source_detection` reads them);
:func:`detect_sources` is the general detection graph (the static model's
sources, ``detectTemplate``, ``detectModelSources``); the private steps serve
:mod:`dcr_dask.graph.artifacts` too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs
import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage

from dcr_dask._moved import moved_names
from dcr_dask.errors import expect_settings
from dcr_dask.graph.halos import detection_halo, growth_halo, smoothing_halo
from dcr_dask.graph.labels import find_components, map_components
from dcr_dask.graph.overlap import map_yx_overlap
from dcr_dask.kernels import artifacts as artifact_tests
from dcr_dask.kernels import psf as psf_kernels
from dcr_dask.kernels.detection import (
    DetectionSettings,
    footprint_mask,
    grow_radius,
    grow_stencil,
    plane_structure,
    smoothed_significance,
)
from dcr_dask.masks import MaskPlanes

__all__ = ["POLARITY_SIGNS", "SourceDetection", "detect_sources"]

__getattr__ = moved_names(__name__, ["detection_settings"], "dcr_dask.settings")

logger = logging.getLogger(__name__)

#: The signs a ``thresholdPolarity`` detects: +1 positive, -1 negative footprints.
POLARITY_SIGNS = {"both": (1, -1), "positive": (1,), "negative": (-1,)}


@attrs.frozen
class SourceDetection:
    """A ``SourceDetectionConfig`` read into plain settings, growth still in PSF sigmas.

    Built by :func:`dcr_dask.settings.source_detection`; :meth:`at_psf` gives the
    kernels' :class:`~dcr_dask.kernels.detection.DetectionSettings` once the
    image's PSF is known.

    Attributes
    ----------
    threshold : float
        ``thresholdValue``.
    threshold_type : str
        ``thresholdType`` (``pixel_stdev`` or ``value``).
    polarity : str
        ``thresholdPolarity``.
    min_pixels : int
        ``minPixels``.
    n_sigma_to_grow : float
        ``nSigmaToGrow``: footprint growth in units of the PSF's sigma.
    isotropic : bool
        ``isotropicGrow``.
    include_multiplier : float
        ``includeThresholdMultiplier``.

    Notes
    -----
    Background settings (``reEstimateBackground``, ``doTempLocalBackground``,
    ``doTempWideBackground``) are not applied: detection runs on the images
    as they are (background-subtracted warps and their stack). An
    ``includeThresholdMultiplier`` above 1 makes detection on chunked arrays
    label the footprints across chunks, one eager pass (see :func:`detect_sources`).
    """

    threshold: float
    threshold_type: str
    polarity: str
    min_pixels: int
    n_sigma_to_grow: float
    isotropic: bool
    include_multiplier: float

    def at_psf(self, psf_sigma_px: float, *, polarity: str | None = None) -> DetectionSettings:
        """The kernels' settings for an image whose PSF has this Gaussian sigma.

        Parameters
        ----------
        psf_sigma_px : float
            Gaussian sigma of the image's PSF, pixels (the growth unit).
        polarity : str, optional
            Overrides ``polarity``.

        Returns
        -------
        DetectionSettings

        Raises
        ------
        ValueError
            For a ``thresholdType`` other than ``pixel_stdev`` or ``value``, or a
            negative or non-finite ``thresholdValue`` or
            ``includeThresholdMultiplier``; the message names the field.
        """
        return DetectionSettings(
            threshold=self.threshold,
            threshold_type=self.threshold_type,
            polarity=polarity or self.polarity,
            min_pixels=self.min_pixels,
            grow_px=grow_radius(self.n_sigma_to_grow, psf_sigma_px),
            isotropic=self.isotropic,
            include_multiplier=self.include_multiplier,
        )


def _signal(image: da.Array, variance: da.Array, valid: da.Array, threshold_type: str) -> da.Array:
    """What detection thresholds: ``image/sqrt(variance)`` or ``image``; NaN where not valid."""
    if threshold_type == "pixel_stdev":
        valid = valid & (variance > 0)
        value = image / da.sqrt(da.where(valid, variance, 1.0))
    else:
        value = image
    return da.where(valid, value, np.nan).astype(np.float32)


def _detect(signal: da.Array, settings: DetectionSettings) -> da.Array:
    """The footprint mask of a chunked signal (:func:`dcr_dask.kernels.detection.footprint_mask`).

    Without the peak test, one lazy ``map_overlap``, exact on every chunk
    thanks to the halo. With it (``includeThresholdMultiplier > 1``),
    footprints are labelled across chunks first, one eager pass
    (:func:`_peak_tested_footprints`); the mask returned is lazy.
    """
    if settings.peak_test:
        signs = POLARITY_SIGNS[settings.polarity]
        return _grow(_peak_tested_footprints(signal, settings, signs).any(axis=0), settings)
    return map_yx_overlap(
        footprint_mask,
        signal,
        halo=detection_halo(settings),
        boundary=np.nan,
        dtype=bool,
        meta=np.empty((0,) * signal.ndim, bool),
        settings=settings,
    )


def _peak_tested_footprints(
    signal: da.Array, settings: DetectionSettings, signs: Sequence[int]
) -> da.Array:
    """Footprints kept by size and peak, per polarity, not grown (one eager labelling pass).

    Parameters
    ----------
    signal : dask.array.Array
        ``(..., y, x)`` signal, NaN where not valid.
    settings : DetectionSettings
        Uses ``threshold``, ``include_threshold`` and ``min_pixels``.
    signs : sequence of int
        +1 (positive polarity) and/or -1 (negative).

    Returns
    -------
    dask.array.Array of bool
        ``(len(signs), ..., y, x)``, lazy: per polarity, the whole of every
        8-connected component of ``sign · signal >= threshold`` that has at
        least ``min_pixels`` pixels and a pixel with ``sign · signal >=
        include_threshold``. Components are found across chunks
        (:func:`dcr_dask.graph.labels.find_components`, computed now on the current
        scheduler); leading axes never connect.
    """
    # NaN (no valid data) is never at or beyond a threshold
    found = da.stack([sign * signal >= settings.threshold for sign in signs])
    include = da.stack([sign * signal >= settings.include_threshold for sign in signs])
    components, peaks = find_components(
        found, include, block_stats=artifact_tests.count_stats, n_stats=1
    )
    keep = (components.pixels >= settings.min_pixels) & (peaks[:, 0] > 0)
    logger.debug(
        "%d footprints above %s, %d kept by minPixels and the include threshold %s",
        components.count,
        settings.threshold,
        int(keep.sum()),
        settings.include_threshold,
    )
    return map_components(components, found, keep, fill=False, dtype=bool)


def _dilate_block(mask: np.ndarray, structure: np.ndarray) -> np.ndarray:
    if not mask.any():
        return mask
    return ndimage.binary_dilation(mask, structure=structure)


def _grow(mask: da.Array, settings: DetectionSettings) -> da.Array:
    """Grow a chunked footprint mask by ``settings.grow_px`` (lazy; halo of ``grow_px``)."""
    radius = growth_halo(settings)
    if radius == 0:
        return mask
    structure = plane_structure(mask.ndim, grow_stencil(radius, settings.isotropic))
    return map_yx_overlap(
        _dilate_block,
        mask,
        halo=radius,
        boundary=False,
        dtype=bool,
        meta=np.empty((0,) * mask.ndim, bool),
        structure=structure,
    )


def detect_sources(
    dataset: xr.Dataset,
    detection: SourceDetection,
    *,
    psf_sigma_px: float | None = None,
    polarity: str | None = None,
    smooth: bool = False,
) -> xr.DataArray:
    """Pixels inside footprints detected on an image, e.g. the static model (lazy).

    Parameters
    ----------
    dataset : xarray.Dataset
        ``image`` and ``variance`` on ``(y, x)`` or ``(visit, y, x)``, and
        optionally ``mask`` (``NO_DATA`` pixels are never detected; bits from
        the ``mask_planes`` attribute).
    detection : SourceDetection
        E.g. ``config.detectTemplate``'s (:func:`dcr_dask.settings.source_detection`).
    psf_sigma_px : float, optional
        Gaussian sigma of the image's PSF, pixels, the unit of footprint
        growth; default from the ``model_psf_fwhm_px`` attribute.
    polarity : str, optional
        Overrides ``thresholdPolarity``.
    smooth : bool
        Threshold the image smoothed with a Gaussian of ``psf_sigma_px``, in
        units of the smoothed image's own noise
        (:func:`dcr_dask.kernels.detection.smoothed_significance`), as single-visit
        source detection does; needs ``thresholdType = "pixel_stdev"``.
        Default False: the pixels as they are (CompareWarp's ``doSmooth=False``).

    Returns
    -------
    xarray.DataArray of bool
        The union of the grown footprints, on the image's dims and chunks;
        footprints that cross chunk borders are found whole (halo of
        :attr:`dcr_dask.kernels.detection.DetectionSettings.halo`, or labelling
        across chunks with ``includeThresholdMultiplier > 1``).

    Raises
    ------
    ValueError
        If no PSF sigma is given or recorded, or the detection settings are
        not supported (see :meth:`SourceDetection.at_psf`).

    Notes
    -----
    Lazy when ``includeThresholdMultiplier <= 1``. Above 1, whether a
    footprint is kept depends on its brightest pixel, wherever along it that
    lies, so the footprints are labelled across chunks first: one eager pass
    over the image (:func:`dcr_dask.graph.labels.find_components`) on the current
    scheduler; the mask returned is still lazy and recomputes the
    thresholding chunk by chunk.
    """
    if psf_sigma_px is None:
        if "model_psf_fwhm_px" not in dataset.attrs:
            raise ValueError(
                "psf_sigma_px is needed: the dataset has no model_psf_fwhm_px attribute to "
                "scale footprint growth (nSigmaToGrow) with"
            )
        psf_sigma_px = float(dataset.attrs["model_psf_fwhm_px"]) / psf_kernels.FWHM_PER_SIGMA
    expect_settings(detection, SourceDetection, "detection", "source_detection")
    settings = detection.at_psf(psf_sigma_px, polarity=polarity)
    image = da.asarray(dataset["image"].data)
    variance = da.asarray(dataset["variance"].transpose(*dataset["image"].dims).data)
    variance = variance.rechunk(image.chunks)
    valid = da.isfinite(image) & da.isfinite(variance)
    if "mask" in dataset.data_vars and "mask_planes" in dataset.attrs:
        no_data = MaskPlanes(dataset.attrs["mask_planes"]).value(["NO_DATA"])
        mask = da.asarray(dataset["mask"].transpose(*dataset["image"].dims).data)
        valid = valid & ((mask.rechunk(image.chunks) & no_data) == 0)
    if smooth:
        if settings.threshold_type != "pixel_stdev":
            raise ValueError(
                f"thresholdType = {settings.threshold_type!r}: smoothed detection thresholds "
                "the smoothed image's significance and needs 'pixel_stdev'"
            )
        halo = smoothing_halo(psf_sigma_px)
        signal = map_yx_overlap(
            smoothed_significance,
            image,
            variance,
            valid,
            halo=halo,
            # beyond the tile: no valid pixel (image, variance and validity all 0)
            boundary=0,
            dtype=np.float32,
            meta=np.empty((0,) * image.ndim, np.float32),
            sigma_px=psf_sigma_px,
        )
    else:
        signal = _signal(image, variance, valid, settings.threshold_type)
    return xr.DataArray(
        _detect(signal, settings), dims=dataset["image"].dims, coords=dataset["image"].coords
    )
