"""Footprint detection on in-memory blocks, as afw's ``FootprintSet`` finds them.

A *footprint* is an 8-connected set of pixels at or beyond a threshold (afw's
connectivity), kept when it has at least ``minPixels`` pixels and, with an
``includeThresholdMultiplier`` above 1, when at least one of its pixels
reaches ``thresholdValue × includeThresholdMultiplier`` (a hysteresis: the
footprint keeps its whole extent at ``thresholdValue``; a multiplier of 1 or
less keeps every footprint). Kept footprints are then grown by a disc
(``isotropicGrow``) or a diamond of ``nGrow = int(nSigmaToGrow · σ_PSF +
0.5)`` pixels; grown footprints that touch merge, and with
``thresholdPolarity = "both"`` the positive and negative sets are merged the
same way (CompareWarp's ``fpSet.positive.merge(fpSet.negative)``). No
smoothing is applied (CompareWarp detects with ``doSmooth=False``).

These kernels return the *union* of the footprints as a boolean mask; which
pixels belong to which footprint is found by labelling that mask, block by
block and across blocks, in :mod:`dcr_dask.graph.labels`.

Blocks and halos
----------------
Without the peak test (``include_multiplier <= 1``), the kernels see one
block at a time, grown by a halo of :attr:`DetectionSettings.halo` pixels,
and are exact on the block's core: a pixel is in the union if a kept
above-threshold component lies within the growth radius ``g``; such a
component either lies wholly inside the halo, and is counted exactly, or
reaches the halo's outer edge, and then spans at least ``minPixels - 1``
pixels of Chebyshev distance, so it has at least ``minPixels`` pixels and is
kept without being seen whole. Outside the tile the graph layer pads with NaN,
which is never above threshold.

The peak test (``include_multiplier > 1``) has no such halo: whether a
footprint is kept depends on its brightest pixel, which may lie anywhere
along it (the far end of a streak crossing the tile). :func:`footprint_mask`
then takes its input as the whole image, and chunked arrays are labelled
across chunks first (:mod:`dcr_dask.graph.labels`; see
:func:`dcr_dask.graph.detect.detect_sources`).

Leading axes (e.g. visits) are independent: nothing connects across them.
"""

from __future__ import annotations

import attrs
import numpy as np
from scipy import ndimage

__all__ = [
    "EIGHT_CONNECTED",
    "POLARITIES",
    "THRESHOLD_TYPES",
    "DetectionSettings",
    "footprint_mask",
    "grow_radius",
    "grow_stencil",
    "keep_components",
    "plane_structure",
    "remove_small_components",
    "smoothed_significance",
    "smoothing_halo",
    "threshold_masks",
]

#: ``thresholdType`` values the block-wise detection supports (see DetectionSettings).
THRESHOLD_TYPES = ("pixel_stdev", "value")

#: ``thresholdPolarity`` values.
POLARITIES = ("positive", "negative", "both")


def grow_radius(n_sigma_to_grow: float, psf_sigma_px: float) -> int:
    """Growth of a footprint, pixels: ``int(nSigmaToGrow · σ_PSF + 0.5)`` (afw's rounding).

    Parameters
    ----------
    n_sigma_to_grow : float
        ``nSigmaToGrow`` (0 disables growing).
    psf_sigma_px : float
        Gaussian sigma (determinant radius) of the image's PSF, pixels.

    Returns
    -------
    int
        Non-negative growth radius, pixels.
    """
    if not (np.isfinite(psf_sigma_px) and psf_sigma_px > 0):
        raise ValueError(f"PSF sigma = {psf_sigma_px!r} pixels must be finite and positive")
    if n_sigma_to_grow <= 0:
        return 0
    return int(n_sigma_to_grow * psf_sigma_px + 0.5)


def grow_stencil(radius: int, isotropic: bool) -> np.ndarray:
    """The structuring element of a growth by ``radius`` pixels.

    Parameters
    ----------
    radius : int
        Growth radius, pixels (>= 0).
    isotropic : bool
        True: a disc, offsets with ``dy² + dx² <= radius²`` (afw's CIRCLE
        stencil); False: a diamond, ``|dy| + |dx| <= radius`` (MANHATTAN).

    Returns
    -------
    numpy.ndarray of bool
        ``(2·radius + 1, 2·radius + 1)``.
    """
    if radius < 0:
        raise ValueError(f"growth radius {radius!r} must be non-negative")
    offsets = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    if isotropic:
        return dy**2 + dx**2 <= radius**2
    return np.abs(dy) + np.abs(dx) <= radius


def plane_structure(ndim: int, plane: np.ndarray) -> np.ndarray:
    """An ``ndim``-D structure that applies a 2-D ``plane`` to the last two axes only.

    Leading axes get size 3 with the plane in the middle (what
    :func:`scipy.ndimage.label` requires), so nothing connects across them.
    """
    if ndim < 2:
        raise ValueError(f"arrays must have at least two axes (y, x), got {ndim}")
    structure = np.zeros((3,) * (ndim - 2) + plane.shape, dtype=bool)
    structure[(1,) * (ndim - 2)] = plane
    return structure


#: afw's footprints are 8-connected.
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@attrs.frozen
class DetectionSettings:
    """Plain settings of :func:`footprint_mask` (built from a ``SourceDetectionConfig``).

    Parameters
    ----------
    threshold : float
        ``thresholdValue`` (>= 0).
    threshold_type : str
        ``"pixel_stdev"``: the signal passed to the kernels is ``image /
        sqrt(variance)``, so the threshold is in units of each pixel's own
        standard deviation; ``"value"``: the signal is the image itself.
        afw's ``"stdev"`` and ``"variance"`` scale the threshold by a
        statistic of the whole image, which a block cannot see; they are
        rejected.
    polarity : str
        ``thresholdPolarity``: ``"positive"``, ``"negative"`` or ``"both"``.
    min_pixels : int
        ``minPixels``: smallest kept footprint before growth, pixels.
    grow_px : int
        Growth radius, pixels (:func:`grow_radius`).
    isotropic : bool
        ``isotropicGrow``.
    include_multiplier : float
        ``includeThresholdMultiplier`` (finite, >= 0): a footprint is kept
        only if at least one of its pixels reaches ``threshold ×
        include_multiplier`` (same polarity); its extent is still that at
        ``threshold``. A multiplier of 1 or less keeps every footprint (afw);
        above 1 the test needs whole footprints (see :attr:`peak_test`).
    """

    threshold: float
    threshold_type: str = "pixel_stdev"
    polarity: str = "positive"
    min_pixels: int = 1
    grow_px: int = 0
    isotropic: bool = True
    include_multiplier: float = 1.0

    def __attrs_post_init__(self) -> None:
        if self.threshold_type not in THRESHOLD_TYPES:
            raise ValueError(
                f"thresholdType = {self.threshold_type!r} is not supported by block-wise "
                f"detection (it needs a statistic of the whole image); use one of "
                f"{THRESHOLD_TYPES}"
            )
        if self.polarity not in POLARITIES:
            raise ValueError(f"thresholdPolarity = {self.polarity!r} is not one of {POLARITIES}")
        if not (np.isfinite(self.threshold) and self.threshold >= 0):
            raise ValueError(f"thresholdValue = {self.threshold!r} must be finite and >= 0")
        if self.min_pixels < 0 or self.grow_px < 0:
            raise ValueError(
                f"minPixels = {self.min_pixels!r} and the growth {self.grow_px!r} px must be >= 0"
            )
        if not (np.isfinite(self.include_multiplier) and self.include_multiplier >= 0):
            raise ValueError(
                f"includeThresholdMultiplier = {self.include_multiplier!r} must be finite and >= 0"
            )

    @property
    def include_threshold(self) -> float:
        """``threshold × include_multiplier``: what a kept footprint must reach somewhere."""
        return self.threshold * self.include_multiplier

    @property
    def peak_test(self) -> bool:
        """Whether footprints are tested for a pixel at :attr:`include_threshold`.

        True when ``include_multiplier > 1`` (and ``threshold > 0``: at a
        threshold of 0 every footprint reaches ``0 × include_multiplier``);
        :func:`footprint_mask` is then exact only on a whole image, and
        :attr:`halo` does not apply.
        """
        return self.include_multiplier > 1.0 and self.threshold > 0

    @property
    def halo(self) -> int:
        """Halo, pixels, that makes :func:`footprint_mask` exact on a block's core.

        Only without the :attr:`peak_test`, which no finite halo makes exact.
        """
        return self.grow_px + max(self.min_pixels - 1, 0)


def threshold_masks(
    signal: np.ndarray, threshold: float, polarity: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Pixels at or beyond the threshold, per polarity (afw: ``±signal >= threshold``).

    Parameters
    ----------
    signal : numpy.ndarray
        Signal-to-noise (``pixel_stdev``) or image values (``value``); NaN
        pixels are never above threshold.
    threshold : float
        Threshold in the units of ``signal``.
    polarity : str
        ``"positive"``, ``"negative"`` or ``"both"``.

    Returns
    -------
    positive, negative : numpy.ndarray of bool or None
        None for a polarity not searched.
    """
    signal = np.asarray(signal)
    with np.errstate(invalid="ignore"):
        positive = signal >= threshold if polarity in ("positive", "both") else None
        negative = -signal >= threshold if polarity in ("negative", "both") else None
    return positive, negative


def remove_small_components(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """Drop 8-connected components of fewer than ``min_pixels`` pixels.

    A component that touches the border of the last two axes is kept
    whatever its size here: it may continue beyond the block (see the
    module docstring for why that is exact on the block's core).

    Parameters
    ----------
    mask : numpy.ndarray of bool
        ``(..., y, x)``; leading axes are independent.
    min_pixels : int
        ``minPixels``.

    Returns
    -------
    numpy.ndarray of bool
    """
    mask = np.asarray(mask, dtype=bool)
    if min_pixels <= 1 or not mask.any():
        return mask
    labels, count = ndimage.label(mask, structure=plane_structure(mask.ndim, EIGHT_CONNECTED))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_pixels
    border = np.zeros(mask.shape, dtype=bool)
    border[..., 0, :] = border[..., -1, :] = True
    border[..., :, 0] = border[..., :, -1] = True
    keep[np.unique(labels[border])] = True
    keep[0] = False
    return keep[labels]


def keep_components(mask: np.ndarray, include: np.ndarray, min_pixels: int) -> np.ndarray:
    """Keep the 8-connected components of ``mask`` that are large and reach the peak threshold.

    The array is taken as the whole image: components are complete, and a
    component that touches the border is tested like any other (unlike
    :func:`remove_small_components`).

    Parameters
    ----------
    mask : numpy.ndarray of bool
        ``(..., y, x)`` pixels at or beyond the threshold; leading axes are
        independent.
    include : numpy.ndarray of bool
        Same shape: pixels at or beyond the include threshold
        (:attr:`DetectionSettings.include_threshold`).
    min_pixels : int
        ``minPixels``.

    Returns
    -------
    numpy.ndarray of bool
        The whole of every component with at least ``min_pixels`` pixels and
        at least one ``include`` pixel; nothing of the others.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask
    labels, count = ndimage.label(mask, structure=plane_structure(mask.ndim, EIGHT_CONNECTED))
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=count + 1)
    peaks = np.bincount(flat, weights=(np.asarray(include) & mask).ravel(), minlength=count + 1)
    keep = (sizes >= min_pixels) & (peaks > 0)
    keep[0] = False
    return keep[labels]


def footprint_mask(signal: np.ndarray, settings: DetectionSettings) -> np.ndarray:
    """The union of the detected, filtered, grown footprints of a block or image.

    Parameters
    ----------
    signal : numpy.ndarray
        ``(..., y, x)`` signal (see :class:`DetectionSettings`), NaN where
        there is no valid data.
    settings : DetectionSettings
        Threshold, polarity, size filter, peak test and growth.

    Returns
    -------
    numpy.ndarray of bool
        Same shape. Without the peak test (:attr:`DetectionSettings.peak_test`
        False), exact on the core of a block given a halo of
        ``settings.halo`` pixels; a component that touches the array's border
        is kept whatever its size (it may continue beyond the block), so for
        a whole image pad it with ``settings.halo`` NaN pixels first. With
        the peak test, exact only on a whole image: every component is taken
        as complete and must have ``min_pixels`` pixels and reach
        ``settings.include_threshold`` (see the module docstring).
    """
    positive, negative = threshold_masks(signal, settings.threshold, settings.polarity)
    include_positive = include_negative = None
    if settings.peak_test:
        include_positive, include_negative = threshold_masks(
            signal, settings.include_threshold, settings.polarity
        )
    out = np.zeros(np.shape(signal), dtype=bool)
    structure = None
    if settings.grow_px > 0:
        structure = plane_structure(out.ndim, grow_stencil(settings.grow_px, settings.isotropic))
    for found, include in ((positive, include_positive), (negative, include_negative)):
        if found is None:
            continue
        if settings.peak_test:
            assert include is not None  # same polarities as found, with the peak test
            kept = keep_components(found, include, settings.min_pixels)
        else:
            kept = remove_small_components(found, settings.min_pixels)
        if structure is not None and kept.any():
            kept = ndimage.binary_dilation(kept, structure=structure)
        out |= kept
    return out


def smoothing_halo(sigma_px: float) -> int:
    """Halo, pixels, that :func:`smoothed_significance` needs: 4 sigma, rounded up."""
    return int(np.ceil(4.0 * sigma_px))


def smoothed_significance(
    image: np.ndarray, variance: np.ndarray, valid: np.ndarray, sigma_px: float
) -> np.ndarray:
    """Significance of an image smoothed with a Gaussian PSF, as single-visit detection uses.

    Parameters
    ----------
    image, variance : numpy.ndarray
        ``(..., y, x)`` image and per-pixel variance.
    valid : numpy.ndarray of bool
        Pixels to use; the others carry no weight.
    sigma_px : float
        Gaussian sigma of the smoothing kernel ``G`` (the image's PSF), pixels.

    Returns
    -------
    numpy.ndarray of float32
        ``(G ⊛ (v·I) / G ⊛ v) / sqrt(G² ⊛ (v·V) / (G ⊛ v)²)`` with ``v`` the
        valid pixels: the smoothed image in units of its own noise (the
        matched filter for a point source, so a faint star reaches a
        threshold that its single pixels never would). NaN where no valid
        pixel lies within the kernel or the smoothed variance is not positive.
        Pixels within :func:`smoothing_halo` of the block's edge see nothing
        beyond it (the graph layer adds and trims a halo).

    Notes
    -----
    ``G²`` is a Gaussian of sigma ``σ/√2`` scaled by ``1 / (4πσ²)`` (the
    square of a unit-sum Gaussian); both filters are truncated at 4 sigma.
    """
    if not (np.isfinite(sigma_px) and sigma_px > 0):
        raise ValueError(f"smoothing sigma = {sigma_px!r} pixels must be finite and positive")
    axes = (image.ndim - 2, image.ndim - 1)
    weight = np.asarray(valid, dtype=np.float64)
    values = np.where(valid, image, 0.0).astype(np.float64)
    noise = np.where(valid, variance, 0.0).astype(np.float64)
    sigma = [0.0] * image.ndim
    for axis in axes:
        sigma[axis] = sigma_px
    norm = ndimage.gaussian_filter(weight, sigma, mode="constant", truncate=4.0)
    smoothed = ndimage.gaussian_filter(values, sigma, mode="constant", truncate=4.0)
    narrow = [s / np.sqrt(2.0) for s in sigma]
    smoothed_variance = ndimage.gaussian_filter(
        noise, narrow, mode="constant", truncate=4.0 * np.sqrt(2.0)
    )
    smoothed_variance /= 4.0 * np.pi * sigma_px**2
    with np.errstate(divide="ignore", invalid="ignore"):
        significance = smoothed / np.sqrt(smoothed_variance)
    # the ratio of the normalised mean to its noise: the normalisation cancels
    ok = (norm > 1e-6) & (smoothed_variance > 0)
    return np.where(ok, significance, np.nan).astype(np.float32)
