"""The PSF width of an image measured from its bright isolated stars (a NumPy kernel).

Warps whose files carry no usable PSF (no ``PSF-FWHM`` keyword, no PSF HDU and
no archive PSF that can be read without the Science Pipelines) still show their
PSF in every star. :func:`measure_psf_fwhm` finds bright, isolated, unmasked
peaks, fits each with a pixel-integrated Moffat profile of free index, and
returns a robust average of the fitted FWHMs.

The profile
-----------
With ``u = 1/β`` the fitted profile is

``f(r) = (1 + (2^u − 1)·(2r/w)²)^(−1/u)``,

whose full width at half maximum is ``w`` for every ``u``; ``u → 0`` is the
Gaussian ``exp(−4 ln 2 · r²/w²)``, so one family covers Gaussian PSFs and
Moffat PSFs down to ``β = 1/U_MAX``. The model is averaged over a 3 × 3 grid
of sub-pixels (the image pixels integrate the PSF), plus a constant
background, with the star's position, amplitude, ``w`` and ``u`` free.

Selection
---------
A candidate is a local maximum (3 × 3) at least ``threshold`` times the noise
above the background, whose stamp (a disc of radius ``2.5·w₀``, ``w₀`` a first
guess from the area above half maximum) lies inside the image, has no masked
or non-finite pixel, and holds no other peak within
``BLEND_RADIUS`` first-guess FWHMs or brighter than ``NEIGHBOUR_FRACTION`` of
its own; the pixels nearer to a fainter neighbouring peak than to the star are
left out of its fit. Masked pixels cover saturated stars (``SAT``)
and the rest. The brightest :data:`MAX_STARS` candidates are fitted; fits that
fail or whose FWHM lies far from the median (galaxies, blends) are dropped.

:func:`fit_psf_stars` returns every fitted star (its FWHM and index), for
callers that build a PSF image from them (:mod:`dcr_dask.graph.coadd_psf`); it
also takes a detection's threshold as an image-unit level (a number or one
per pixel), a peak factor and a smallest footprint area.
"""

from __future__ import annotations

import math

import attrs
import numpy as np
from scipy import ndimage, optimize

__all__ = [
    "BLEND_RADIUS",
    "MAX_STARS",
    "MIN_STARS",
    "NEIGHBOUR_FRACTION",
    "U_MAX",
    "StarFit",
    "StarPsf",
    "fit_psf_stars",
    "measure_psf_fwhm",
    "moffat_image",
    "robust_keep",
]

#: Fewest fitted stars for a measurement.
MIN_STARS = 3

#: Most candidates fitted (the brightest).
MAX_STARS = 40

#: A peak in (or just beyond) a candidate's stamp brighter than this fraction of the
#: candidate's disqualifies it; fainter ones only lose the fit their pixels.
NEIGHBOUR_FRACTION = 0.3

#: A peak closer than this many first-guess FWHMs makes a candidate an unresolved blend.
BLEND_RADIUS = 2.0

#: Largest ``1/β`` of the fitted Moffat profile (``β >= 1.25``).
U_MAX = 0.8

#: Sub-pixels per pixel side in the pixel-integrated model.
_SUBSAMPLE = 3


@attrs.frozen
class StarPsf:
    """A PSF width measured from stars.

    Parameters
    ----------
    fwhm_px : float
        Median FWHM of the fitted stars, pixels.
    n_stars : int
        Stars that entered the median.
    scatter_px : float
        Robust scatter (1.4826 × MAD) of their FWHMs, pixels.
    """

    fwhm_px: float
    n_stars: int
    scatter_px: float


@attrs.frozen
class StarFit:
    """One star's fitted profile (module docstring).

    Parameters
    ----------
    y, x : int
        Its peak pixel.
    peak : float
        Height of the peak above the background, image unit.
    fwhm_px : float
        Fitted full width at half maximum, pixels.
    u : float
        Fitted ``1/β`` (0 is a Gaussian).
    """

    y: int
    x: int
    peak: float
    fwhm_px: float
    u: float


def _profile(r2: np.ndarray, fwhm: float, u: float) -> np.ndarray:
    """``f(r)`` of the module docstring, from ``r²``; 1 at the centre, 1/2 at ``r = w/2``."""
    s = 4.0 * r2 / (fwhm * fwhm)
    if u < 1e-6:
        return np.exp(-math.log(2.0) * s)
    return np.exp(-np.log1p(math.expm1(u * math.log(2.0)) * s) / u)


def moffat_image(
    shape: tuple[int, int],
    centre: tuple[float, float],
    fwhm_px: float,
    beta: float | None,
    *,
    subsample: int = _SUBSAMPLE,
) -> np.ndarray:
    """A pixel-integrated Moffat (or, with ``beta=None``, Gaussian) profile.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the image, pixels.
    centre : tuple of float
        ``(y, x)`` of the profile's centre, pixels (pixel centres are integers).
    fwhm_px : float
        Full width at half maximum, pixels.
    beta : float or None
        Moffat index (> 1); None for a Gaussian.
    subsample : int
        Sub-pixels per pixel side over which the profile is averaged.

    Returns
    -------
    numpy.ndarray of float64
        The profile, peak value 1 before pixel integration (not normalised).
    """
    u = 0.0 if beta is None else 1.0 / float(beta)
    offsets = (np.arange(subsample) + 0.5) / subsample - 0.5
    y = (np.arange(shape[0])[:, None] + offsets[None, :]).ravel() - centre[0]
    x = (np.arange(shape[1])[:, None] + offsets[None, :]).ravel() - centre[1]
    fine = _profile(y[:, None] ** 2 + x[None, :] ** 2, fwhm_px, u)
    return fine.reshape(shape[0], subsample, shape[1], subsample).mean(axis=(1, 3))


def _first_guess_fwhm(stamp: np.ndarray, peak: float) -> float:
    """FWHM from the number of pixels above half the peak (a disc of that area)."""
    above, _ = ndimage.label(stamp > 0.5 * peak)
    centre = above[stamp.shape[0] // 2, stamp.shape[1] // 2]
    area = float(np.count_nonzero(above == centre)) if centre else 1.0
    return max(2.0 * math.sqrt(area / math.pi), 1.0)


def _fit_star(
    stamp: np.ndarray, weight: np.ndarray, inside: np.ndarray, fwhm0: float
) -> tuple[float, float] | None:
    """Fit the pixel-integrated profile to one stamp; return its FWHM and ``u``, or None."""
    n = stamp.shape[0]
    half = n // 2
    offsets = (np.arange(_SUBSAMPLE) + 0.5) / _SUBSAMPLE - 0.5
    grid = (np.arange(n)[:, None] + offsets[None, :]).ravel() - half
    peak = float(stamp[half, half])

    def model(p: np.ndarray) -> np.ndarray:
        dy, dx, amplitude, fwhm, u, background = p
        r2 = (grid[:, None] - dy) ** 2 + (grid[None, :] - dx) ** 2
        image = _profile(r2, fwhm, u).reshape(n, _SUBSAMPLE, n, _SUBSAMPLE).mean(axis=(1, 3))
        return amplitude * image + background

    def residual(p: np.ndarray) -> np.ndarray:
        return ((model(p) - stamp) * weight)[inside]

    start = np.array([0.0, 0.0, peak, fwhm0, 0.3, 0.0])
    lower = [-1.5, -1.5, 0.0, 0.3, 0.0, -np.inf]
    upper = [1.5, 1.5, np.inf, 4.0 * half, U_MAX, np.inf]
    try:
        fit = optimize.least_squares(residual, start, bounds=(lower, upper), x_scale="jac")
    except (ValueError, FloatingPointError):
        return None
    fwhm = float(fit.x[3])
    if not fit.success or not math.isfinite(fwhm) or fit.x[2] <= 0:
        return None
    if fwhm >= 0.99 * upper[3] or fwhm <= 1.01 * lower[3]:
        return None
    return fwhm, float(fit.x[4])


def fit_psf_stars(
    image: np.ndarray,
    *,
    bad: np.ndarray | None = None,
    variance: np.ndarray | None = None,
    threshold: float = 20.0,
    level: np.ndarray | float | None = None,
    peak_factor: float = 1.0,
    min_pixels: int = 1,
) -> list[StarFit]:
    """Fit the bright isolated unmasked stars of an image (module docstring).

    Parameters
    ----------
    image : numpy.ndarray
        2-d image, any linear unit; non-finite pixels are ignored.
    bad : numpy.ndarray of bool, optional
        Pixels to ignore (masked: saturated, bad, no data, ...).
    variance : numpy.ndarray, optional
        Per-pixel variance of ``image``: weights of the fits and, through its
        median, the noise level. Default: the noise from the median absolute
        deviation of the image, and uniform weights.
    threshold : float
        Detection level in units of the noise, used when ``level`` is None.
    level : numpy.ndarray or float, optional
        Detection level above the background in the image's unit: one number,
        or one per pixel (e.g. ``thresholdValue`` times the per-pixel sigma).
    peak_factor : float
        A candidate's peak must reach ``peak_factor`` times the level
        (``includeThresholdMultiplier``).
    min_pixels : int
        Fewest connected pixels above the level around a candidate's peak
        (``minPixels``).

    Returns
    -------
    list of StarFit
        The fitted stars, brightest first, at most :data:`MAX_STARS`; empty
        when the image has fewer than 100 usable pixels or no noise estimate.
    """
    data = np.asarray(image, dtype=np.float64)
    valid = np.isfinite(data)
    if bad is not None:
        valid &= ~np.asarray(bad, dtype=bool)
    var = None
    if variance is not None:
        var = np.asarray(variance, dtype=np.float64)
        valid &= np.isfinite(var) & (var > 0)
    if np.count_nonzero(valid) < 100:
        return []
    background = float(np.median(data[valid]))
    if var is not None:
        noise = math.sqrt(float(np.median(var[valid])))
    else:
        noise = 1.4826 * float(np.median(np.abs(data[valid] - background)))
    if not (math.isfinite(noise) and noise > 0):
        return []
    detection = threshold * noise if level is None else np.asarray(level, dtype=np.float64)
    residual = np.where(valid, data - background, -np.inf)
    ys, xs, heights, neighbours = _candidates(residual, detection, noise, peak_factor, min_pixels)
    stars: list[StarFit] = []
    for y, x, height in zip(ys, xs, heights, strict=True):
        if len(stars) >= MAX_STARS:
            break
        isolated = _isolated_stamp(residual, valid, int(y), int(x), float(height), neighbours)
        if isolated is None:
            continue
        window, inside, fwhm0 = isolated
        stamp = data[window] - background
        weight = (
            1.0 / np.sqrt(var[window]) if var is not None else np.full(stamp.shape, 1.0 / noise)
        )
        fitted = _fit_star(stamp, weight, inside, fwhm0)
        if fitted is not None:
            stars.append(StarFit(int(y), int(x), float(height), fitted[0], fitted[1]))
    return stars


def _candidates(
    residual: np.ndarray,
    detection: float | np.ndarray,
    noise: float,
    peak_factor: float,
    min_pixels: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Candidate peaks ``(ys, xs, heights)``, brightest first, and every local maximum
    above 3 sigma ``(y, x, height)``: the neighbours that spoil isolation."""
    above = residual > detection
    local_max = residual == ndimage.maximum_filter(residual, size=3)
    peaks = local_max & (residual > peak_factor * detection) & above
    if min_pixels > 1:
        labels, _ = ndimage.label(above)
        areas = np.bincount(labels.ravel())
        peaks &= areas[labels] >= min_pixels
    ys, xs = np.nonzero(peaks)
    heights = residual[ys, xs]
    order = np.argsort(heights)[::-1]
    faint = local_max & (residual > 3.0 * noise)
    fy, fx = np.nonzero(faint)
    return ys[order], xs[order], heights[order], (fy, fx, residual[fy, fx])


def _isolated_stamp(
    residual: np.ndarray,
    valid: np.ndarray,
    y: int,
    x: int,
    height: float,
    neighbours: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[tuple[slice, slice], np.ndarray, float] | None:
    """The fitting window of the peak at ``(y, x)``, the pixels to fit in it and the
    first-guess FWHM; None when the star is too near an edge, a bad pixel, an
    unresolved blend or a dominating neighbour."""
    ny, nx = residual.shape
    guess_half = 7
    if not (guess_half <= y < ny - guess_half and guess_half <= x < nx - guess_half):
        return None
    near = residual[y - guess_half : y + guess_half + 1, x - guess_half : x + guess_half + 1]
    fwhm0 = _first_guess_fwhm(np.where(np.isfinite(near), near, 0.0), height)
    half = int(max(5, math.ceil(2.5 * fwhm0)))
    if not (half <= y < ny - half and half <= x < nx - half):
        return None
    window = (slice(y - half, y + half + 1), slice(x - half, x + half + 1))
    if not valid[window].all():
        return None
    fy, fx, fh = neighbours
    distance2 = (fy - y) ** 2 + (fx - x) ** 2
    close = (distance2 > 0) & (distance2 <= (half + 2) ** 2)
    if np.any(distance2[close] < (BLEND_RADIUS * fwhm0) ** 2):
        return None  # an unresolved blend
    if np.any(fh[close] > NEIGHBOUR_FRACTION * height):
        return None  # a neighbour whose light dominates part of the stamp
    offsets = np.arange(-half, half + 1)
    inside = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= half * half
    for ny_, nx_ in zip(fy[close] - y, fx[close] - x, strict=True):
        # Leave out the pixels nearer to a fainter neighbour than to the star.
        to_neighbour = (offsets[:, None] - ny_) ** 2 + (offsets[None, :] - nx_) ** 2
        inside &= to_neighbour > offsets[:, None] ** 2 + offsets[None, :] ** 2
    return window, inside, fwhm0


def robust_keep(values: np.ndarray) -> np.ndarray:
    """Which values lie near their median: within 3 robust sigma (1.4826 × MAD) or 5 %.

    Parameters
    ----------
    values : numpy.ndarray
        Fitted FWHMs, pixels.

    Returns
    -------
    numpy.ndarray of bool
        True for the values kept (galaxies and blends lie far from the median).
    """
    values = np.asarray(values, dtype=np.float64)
    median = float(np.median(values))
    scatter = 1.4826 * float(np.median(np.abs(values - median)))
    return np.abs(values - median) <= max(3.0 * scatter, 0.05 * median)


def measure_psf_fwhm(
    image: np.ndarray,
    *,
    bad: np.ndarray | None = None,
    variance: np.ndarray | None = None,
    threshold: float = 20.0,
    min_stars: int = MIN_STARS,
) -> StarPsf | None:
    """Measure the PSF FWHM of an image from its bright isolated stars.

    Parameters
    ----------
    image : numpy.ndarray
        2-d image, any linear unit; non-finite pixels are ignored.
    bad : numpy.ndarray of bool, optional
        Pixels to ignore (masked: saturated, bad, no data, ...).
    variance : numpy.ndarray, optional
        Per-pixel variance of ``image``: weights of the fits and, through its
        median, the noise level. Default: the noise from the median absolute
        deviation of the image, and uniform weights.
    threshold : float
        Peak height above the background, in units of the noise, that makes a
        candidate star.
    min_stars : int
        Fewest stars that give a measurement.

    Returns
    -------
    StarPsf or None
        The median FWHM of the fitted stars (module docstring), or None when
        fewer than ``min_stars`` stars could be measured.
    """
    stars = fit_psf_stars(image, bad=bad, variance=variance, threshold=threshold)
    if len(stars) < min_stars:
        return None
    values = np.array([star.fwhm_px for star in stars])
    keep = robust_keep(values)
    if np.count_nonzero(keep) < min_stars:
        return None
    values = values[keep]
    median = float(np.median(values))
    scatter = 1.4826 * float(np.median(np.abs(values - median)))
    return StarPsf(fwhm_px=median, n_stars=int(values.size), scatter_px=scatter)
