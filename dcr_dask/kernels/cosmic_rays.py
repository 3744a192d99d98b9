"""Cosmic rays on the direct warps: pixels sharper than the PSF allows, as pure NumPy kernels.

docs/algorithm.md, "Cosmic rays". CompareWarp finds artifacts on PSF-matched
warps, where the matching kernel spreads a one-pixel cosmic ray over the PSF and
lowers its contrast tenfold; one lying on a source is then inside the template's
footprint and is preserved. Single-visit processing finds them on the image
itself, by their sharpness, and so does this kernel, on each direct warp:

a pixel ``p`` with flux ``I`` and noise ``σ`` (``sqrt(variance)``) is a cosmic
ray when ``I > minSigma · σ`` and, along at least one of four directions
(horizontal, vertical, the two diagonals), with ``m`` the mean of its two
neighbours in that direction and ``σ_m`` the noise of that mean,

    ``cond3Fac2 · (I − cond3Fac · σ) > R_d · (m + cond3Fac · σ_m)``,

where ``R_d`` is the visit PSF's peak over the mean of its two neighbours in
direction ``d`` (:func:`psf_contrast`); a direction is tested only where both
neighbours are valid: at the tile's edges only along the edge, so that a track
along an edge and a pixel in a corner are not found. A star, however bright, is never sharper
than its PSF (off centre it is smoother still), so ``R_d`` bounds its contrast;
``cond3Fac2 < 1`` leaves a margin for noise and for a PSF model slightly broader
than the stars. The flagged pixels are then grown by ``grow`` pixels (3x3 per
step) within the valid pixels, to take the charge spilled beside the track.
These are the tests of Rubin's ``findCosmicRays`` (``minSigma``, ``cond3_fac``,
``cond3_fac2``), written from their description.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = [
    "DIRECTIONS",
    "find_cosmic_rays",
    "gaussian_contrast",
    "psf_contrast",
]

#: The four directions ``(dy, dx)`` of the sharpness test: horizontal, vertical and
#: the two diagonals.
DIRECTIONS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (1, -1))


def psf_contrast(psf: np.ndarray) -> np.ndarray:
    """Peak of a PSF image over the mean of its two neighbours, along each direction.

    Parameters
    ----------
    psf : numpy.ndarray
        ``(n, n)`` PSF image, its peak at least one pixel from the border.

    Returns
    -------
    numpy.ndarray
        ``(4,)`` contrasts along :data:`DIRECTIONS`, each ≥ 1.

    Raises
    ------
    ValueError
        If the PSF has no positive finite peak or the peak is on the border.
    """
    image = np.nan_to_num(np.asarray(psf, dtype=np.float64), nan=0.0)
    if image.ndim != 2:
        raise ValueError(f"the PSF image has shape {image.shape}; expected (n, n)")
    cy, cx = np.unravel_index(int(np.argmax(image)), image.shape)
    peak = image[cy, cx]
    if not peak > 0:
        raise ValueError("the PSF image has no positive peak")
    if not (0 < cy < image.shape[0] - 1 and 0 < cx < image.shape[1] - 1):
        raise ValueError(f"the PSF image's peak ({cy}, {cx}) is on its border")
    out = np.empty(len(DIRECTIONS))
    for k, (dy, dx) in enumerate(DIRECTIONS):
        mean = 0.5 * (image[cy + dy, cx + dx] + image[cy - dy, cx - dx])
        # a PSF image can be a delta (no flux beside the peak): any pixel is then as
        # sharp as a star, and nothing is a cosmic ray
        out[k] = max(peak / mean, 1.0) if mean > 0 else np.inf
    return out


def gaussian_contrast(sigma_px: float) -> np.ndarray:
    """:func:`psf_contrast` of a round Gaussian PSF centred on a pixel, in closed form.

    Parameters
    ----------
    sigma_px : float
        The Gaussian's sigma, pixels (> 0).

    Returns
    -------
    numpy.ndarray
        ``(4,)`` contrasts along :data:`DIRECTIONS` (sampled at pixel centres).
    """
    if not sigma_px > 0:
        raise ValueError(f"sigma_px must be > 0, got {sigma_px}")
    distance_sq = np.array([dy * dy + dx * dx for dy, dx in DIRECTIONS], dtype=np.float64)
    return np.exp(distance_sq / (2.0 * sigma_px * sigma_px))


def _neighbour(array: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``array`` at ``(y + dy, x + dx)`` on the last two axes, NaN beyond the border."""
    out = np.full_like(array, np.nan)
    ny, nx = array.shape[-2:]
    source = (
        slice(max(dy, 0), ny + min(dy, 0)),
        slice(max(dx, 0), nx + min(dx, 0)),
    )
    target = (
        slice(max(-dy, 0), ny + min(-dy, 0)),
        slice(max(-dx, 0), nx + min(-dx, 0)),
    )
    out[(..., *target)] = array[(..., *source)]
    return out


def find_cosmic_rays(
    image: np.ndarray,
    variance: np.ndarray,
    valid: np.ndarray,
    contrast: np.ndarray,
    *,
    min_sigma: float = 6.0,
    cond3_fac: float = 2.5,
    cond3_fac2: float = 0.6,
    grow: int = 1,
) -> np.ndarray:
    """Pixels of each visit sharper than its PSF allows, grown by ``grow`` pixels.

    Parameters
    ----------
    image, variance : numpy.ndarray
        ``(visit, y, x)`` flux (background subtracted) and its variance.
    valid : numpy.ndarray of bool
        ``(visit, y, x)`` pixels to test and to use as neighbours (finite, not in a
        bad mask plane).
    contrast : numpy.ndarray
        ``(visit, 4)`` each visit's :func:`psf_contrast`.
    min_sigma : float
        A cosmic-ray pixel is at least this many sigmas above zero.
    cond3_fac : float
        Sigmas taken off the pixel and added to its neighbours' mean before the
        comparison.
    cond3_fac2 : float
        Margin on the PSF's contrast, in (0, 1]: the pixel must be sharper than
        ``1 / cond3_fac2`` times the PSF.
    grow : int
        Pixels the flagged ones are grown by (3x3 per step), within ``valid``.

    Returns
    -------
    numpy.ndarray of bool
        ``(visit, y, x)``.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image has shape {image.shape}; expected (visit, y, x)")
    contrast = np.asarray(contrast, dtype=np.float64)
    if contrast.shape != (image.shape[0], len(DIRECTIONS)):
        raise ValueError(
            f"contrast has shape {contrast.shape}; expected ({image.shape[0]}, {len(DIRECTIONS)})"
        )
    valid = np.asarray(valid, dtype=bool) & np.isfinite(image) & np.isfinite(variance)
    valid &= np.asarray(variance) > 0
    flux = np.where(valid, image, np.nan).astype(np.float32)
    var = np.where(valid, variance, np.nan).astype(np.float32)
    sigma = np.sqrt(var)
    with np.errstate(invalid="ignore"):
        found = flux > min_sigma * sigma
        lowered = cond3_fac2 * (flux - cond3_fac * sigma)
    sharp = np.zeros(image.shape, dtype=bool)
    for k, (dy, dx) in enumerate(DIRECTIONS):
        ahead, behind = _neighbour(flux, dy, dx), _neighbour(flux, -dy, -dx)
        var_ahead, var_behind = _neighbour(var, dy, dx), _neighbour(var, -dy, -dx)
        # both neighbours or none: one alone may be the faint side of a steep profile
        mean = 0.5 * (ahead + behind)
        mean_sigma = 0.5 * np.sqrt(var_ahead + var_behind)
        ratio = contrast[:, k].astype(np.float32)[:, None, None]
        with np.errstate(invalid="ignore"):
            sharp |= lowered > ratio * (mean + cond3_fac * mean_sigma)
    found &= sharp
    if grow > 0 and found.any():
        structure = np.zeros((3, 3, 3), dtype=bool)
        structure[1] = True  # within each visit
        found = ndimage.binary_dilation(found, structure=structure, iterations=grow, mask=valid)
    return found
