"""PSF matching of warps to a Gaussian model PSF, as pure NumPy kernels.

CompareWarp compares every visit with a static sky model at one common PSF,
the *model PSF*: each warp is convolved with a small kernel that turns its own
PSF into the model's (ALGORITHM.md, section 6). This module computes those
kernels and applies them to in-memory blocks; :mod:`dcr_dask.compare_warp`
maps them over the tile.

Conventions
-----------
- PSF images are odd, square, centred stamps normalised to sum 1; their pixel
  values are the PSF integrated over each pixel (as the data contract's PSF
  HDU and :mod:`dcr_dask.simulate` have them). A Gaussian of FWHM ``w`` pixels
  is rendered the same way (:func:`gaussian_psf_image`).
- The matching kernel ``K`` (``size × size`` pixels, odd) minimises
  ``‖P ⊛ K − M‖²`` over the full ``(p + size − 1)²`` support of the
  convolution, where ``P`` is the warp's PSF stamp and ``M`` the model PSF
  rendered on that support; it is then scaled to sum 1 so that matching
  conserves flux. A tiny ridge term (:data:`RIDGE`, relative to the mean
  diagonal of the normal matrix) keeps the solve stable.
- A warp whose PSF is wider than the model cannot be matched without
  sharpening (deconvolving) it, which amplifies noise; such warps are left
  unconvolved (the kernel is a delta) and reported by the caller.
- Convolving a masked image follows afw: the image with ``K``, the variance
  with ``K²``, and every mask plane is ORed over the kernel's ``size × size``
  footprint (so ``NO_DATA`` and the other planes grow by ``size // 2``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import linalg, signal
from scipy.special import erf

__all__ = [
    "FWHM_PER_SIGMA",
    "RIDGE",
    "convolve_block",
    "delta_kernel",
    "gaussian_psf_image",
    "grow_mask_block",
    "matching_kernel",
    "psf_fwhm_px",
]

#: FWHM of a Gaussian in units of its sigma, ``2·sqrt(2·ln 2)``.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: Ridge added to the normal equations of the kernel fit, relative to their mean diagonal.
RIDGE = 1e-12


def _check_odd_size(size: int, name: str) -> int:
    if isinstance(size, bool) or int(size) != size or size < 1 or size % 2 != 1:
        raise ValueError(f"{name} = {size!r} must be a positive odd number of pixels")
    return int(size)


def _check_stamp(psf: np.ndarray, name: str = "PSF") -> np.ndarray:
    psf = np.asarray(psf, dtype=np.float64)
    if psf.ndim != 2 or psf.shape[0] != psf.shape[1] or psf.shape[0] % 2 != 1:
        raise ValueError(f"{name} image of shape {psf.shape} must be square with an odd size")
    total = psf.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError(f"{name} image sums to {total!r}; it must have a positive finite sum")
    return psf / total


def gaussian_psf_image(size: int, fwhm_px: float) -> np.ndarray:
    """A circular Gaussian PSF integrated over the pixels of an odd, centred stamp.

    Parameters
    ----------
    size : int
        Stamp width and height, pixels (odd).
    fwhm_px : float
        Full width at half maximum, pixels.

    Returns
    -------
    numpy.ndarray of float64
        ``(size, size)``, normalised to sum 1.

    Raises
    ------
    ValueError
        If ``size`` is not odd and positive or ``fwhm_px`` is not positive.
    """
    size = _check_odd_size(size, "PSF stamp size")
    if not (np.isfinite(fwhm_px) and fwhm_px > 0):
        raise ValueError(f"PSF FWHM = {fwhm_px!r} pixels must be finite and positive")
    sigma = fwhm_px / FWHM_PER_SIGMA
    half = size // 2
    edges = (np.arange(-half, half + 2) - 0.5) / (sigma * math.sqrt(2.0))
    profile = np.diff(0.5 * erf(edges))
    image = np.outer(profile, profile)
    return image / image.sum()


def psf_fwhm_px(psf: np.ndarray) -> float:
    """FWHM of the Gaussian with the same second moments as a PSF stamp.

    Parameters
    ----------
    psf : numpy.ndarray
        Odd, square, centred PSF stamp (any normalisation).

    Returns
    -------
    float
        ``FWHM_PER_SIGMA · sqrt((Ixx + Iyy)/2 − 1/12)`` pixels: the 1/12 px²
        removes the pixel integration, so a stamp from
        :func:`gaussian_psf_image` gives back its FWHM (to the truncation of
        the stamp).

    Raises
    ------
    ValueError
        If the stamp is not odd and square, or has no positive sum.
    """
    psf = _check_stamp(psf)
    half = psf.shape[0] // 2
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    yy, xx = np.meshgrid(offsets, offsets, indexing="ij")
    cy, cx = (psf * yy).sum(), (psf * xx).sum()
    second = 0.5 * ((psf * (yy - cy) ** 2).sum() + (psf * (xx - cx) ** 2).sum())
    return FWHM_PER_SIGMA * math.sqrt(max(second - 1.0 / 12.0, 0.0))


def delta_kernel(size: int) -> np.ndarray:
    """The identity kernel: 1 at the centre of a ``size × size`` stamp, 0 elsewhere."""
    size = _check_odd_size(size, "matchingKernelSize")
    kernel = np.zeros((size, size))
    kernel[size // 2, size // 2] = 1.0
    return kernel


def matching_kernel(psf: np.ndarray, model_fwhm_px: float, size: int) -> np.ndarray:
    """The kernel that turns a PSF into a Gaussian model PSF, by least squares.

    Parameters
    ----------
    psf : numpy.ndarray
        The warp's PSF: odd, square, centred stamp of side ``p`` (normalised here).
    model_fwhm_px : float
        FWHM of the circular Gaussian model PSF, pixels.
    size : int
        Kernel width and height, pixels (``matchingKernelSize``; odd).

    Returns
    -------
    numpy.ndarray of float64
        ``(size, size)`` kernel ``K``, summing to 1, such that ``psf ⊛ K``
        approximates the model PSF on the ``(p + size − 1)²`` support of the
        convolution (module docstring).

    Raises
    ------
    ValueError
        For an even or non-positive ``size``, a bad PSF stamp or a
        non-positive model FWHM.

    Notes
    -----
    The normal equations are built without the design matrix: ``AᵀA`` holds
    the autocorrelation of the PSF at every pair of kernel offsets and
    ``Aᵀm`` the cross-correlation of the model with the PSF, so the cost is
    that of a ``size² × size²`` solve. The fit does not check that the model is
    wider than the PSF; callers flag such warps and use :func:`delta_kernel`.
    """
    size = _check_odd_size(size, "matchingKernelSize")
    psf = _check_stamp(psf)
    p = psf.shape[0]
    model = gaussian_psf_image(p + size - 1, model_fwhm_px)
    autocorrelation = signal.correlate(psf, psf, mode="full")
    centre = p - 1
    offsets = np.arange(size)
    dy = offsets[:, None, None, None] - offsets[None, None, :, None]
    dx = offsets[None, :, None, None] - offsets[None, None, None, :]
    inside = (np.abs(dy) < p) & (np.abs(dx) < p)
    normal = np.where(
        inside,
        autocorrelation[np.clip(centre + dy, 0, 2 * p - 2), np.clip(centre + dx, 0, 2 * p - 2)],
        0.0,
    ).reshape(size * size, size * size)
    rhs = signal.correlate(model, psf, mode="valid").reshape(size * size)
    normal[np.diag_indices_from(normal)] += RIDGE * np.trace(normal) / normal.shape[0]
    kernel = linalg.solve(normal, rhs, assume_a="pos").reshape(size, size)
    return kernel / kernel.sum()


def convolve_block(images: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Convolve each visit of a block with its own kernel (same-size output).

    Parameters
    ----------
    images : numpy.ndarray
        ``(visit, y, x)`` images (or variances, with squared kernels).
    kernels : numpy.ndarray
        ``(visit, k, k)`` kernels, ``k`` odd, centred.

    Returns
    -------
    numpy.ndarray of float32
        ``(visit, y, x)``. Pixels within ``k // 2`` of the block's edge see
        zeros beyond it; the graph layer gives blocks that halo and trims it.
    """
    images = np.asarray(images, dtype=np.float64)
    kernels = np.asarray(kernels, dtype=np.float64)
    if images.ndim != 3 or kernels.ndim != 3 or kernels.shape[0] != images.shape[0]:
        raise ValueError(
            f"images {images.shape} and kernels {kernels.shape} must be (visit, y, x) and "
            "(visit, k, k) with the same visits"
        )
    out = np.empty(images.shape, dtype=np.float32)
    centre = kernels.shape[-1] // 2
    for v in range(images.shape[0]):
        kernel = kernels[v]
        if kernel[centre, centre] == 1.0 and np.count_nonzero(kernel) == 1:
            out[v] = images[v]  # the identity (a warp left unconvolved): exact and free
        else:
            out[v] = signal.fftconvolve(images[v], kernel, mode="same")
    return out


def grow_mask_block(masks: np.ndarray, half_width: int) -> np.ndarray:
    """OR every mask bit over a ``(2·half_width + 1)²`` box around each pixel.

    Parameters
    ----------
    masks : numpy.ndarray of int
        ``(..., y, x)`` bit masks.
    half_width : int
        Half the box side, pixels (``matchingKernelSize // 2``).

    Returns
    -------
    numpy.ndarray of int32
        Same shape. Pixels within ``half_width`` of the block's edge see
        nothing beyond it (the graph layer adds and trims a halo).
    """
    out = np.asarray(masks, dtype=np.int32).copy()
    if half_width < 0:
        raise ValueError(f"half_width = {half_width!r} must be non-negative")
    for axis in (-2, -1):
        source = out.copy()
        n = source.shape[axis]
        for shift in range(1, min(half_width, n - 1) + 1):
            ahead = [slice(None)] * source.ndim
            behind = [slice(None)] * source.ndim
            ahead[axis], behind[axis] = slice(shift, None), slice(None, n - shift)
            out[tuple(behind)] |= source[tuple(ahead)]
            out[tuple(ahead)] |= source[tuple(behind)]
    return out
