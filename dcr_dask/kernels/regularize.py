"""Regularization of the DCR model: steps 5 and 6 of one iteration.

docs/algorithm.md, "Regularization".

Two degeneracies make the forward-modelling fit wander: a sub-band plane can
jump far from its previous value in one iteration, and one sub-band can take
flux that belongs to another (a hole beside a source in one plane, a wing in
the next). The reference (``lsst.ip.diffim.dcrModel.DcrModel``,
``regularizeModelIter``, ``regularizeModelFreq``, ``applyImageThresholds``,
``calculateNoiseCutoff``) limits both, and so do these kernels, with the same
order of operations, filters and edge modes:

* :func:`regularize_iterations` clamps each new plane to a factor of its old
  value;
* :func:`regularize_frequency` clamps each plane to a factor of the smoothed
  mean of the old planes, then rebuilds it as a smooth, sharpened relative
  spectrum times that mean;
* :func:`apply_thresholds` is the clamp both share: only regions that survive
  a binary opening are clamped, so isolated noisy pixels are left alone;
* :func:`background_noise` is the noise level both this module and the
  convergence significance use.

All functions take and return plain arrays of one block (a subregion grown by
its buffer) and never modify their inputs. Model planes have shape
``(S, ny, nx)``; values are fluxes in the units of the images.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = [
    "FREQUENCY_NOISE_BORDER_PX",
    "apply_thresholds",
    "background_noise",
    "regularize_frequency",
    "regularize_iterations",
]

#: Border excluded from the noise estimate of :func:`regularize_frequency`, pixels
#: (a constant of the reference's ``regularizeModelFreq``, not a config field).
FREQUENCY_NOISE_BORDER_PX = 5

#: Sharpening strength of the relative model (a constant of the reference).
_SHARPEN_ALPHA = 3.0

#: Offset, in units of the smoothed noise, added before dividing by a smoothed image.
_NOISE_OFFSET_SIGMA = 3.0


def _opening_structure(width: int) -> np.ndarray:
    """Cross iterated ``width`` times (a diamond of radius ``width``), acting within each plane."""
    cross = ndimage.generate_binary_structure(2, 1)
    return ndimage.iterate_structure(cross, width)[None, :, :]


def _erode_cross(flags: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Erosion of the last two axes by the 3×3 cross, into ``out`` (not ``flags``); pixels
    outside count as unflagged."""
    np.copyto(out, flags)
    out[..., 1:, :] &= flags[..., :-1, :]
    out[..., :-1, :] &= flags[..., 1:, :]
    out[..., :, 1:] &= flags[..., :, :-1]
    out[..., :, :-1] &= flags[..., :, 1:]
    out[..., 0, :] = out[..., -1, :] = False
    out[..., :, 0] = out[..., :, -1] = False
    return out


def _dilate_cross(flags: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Dilation of the last two axes by the 3×3 cross, into ``out`` (not ``flags``)."""
    np.copyto(out, flags)
    out[..., 1:, :] |= flags[..., :-1, :]
    out[..., :-1, :] |= flags[..., 1:, :]
    out[..., :, 1:] |= flags[..., :, :-1]
    out[..., :, :-1] |= flags[..., :, 1:]
    return out


def _surviving(flags: np.ndarray, width: int) -> np.ndarray:
    """Flags of a ``(S, ny, nx)`` stack that survive a per-plane opening of radius ``width``.

    The opening by the diamond of radius ``width`` (:func:`_opening_structure`,
    as ``ndimage.binary_opening`` with border value 0) done as ``width`` erosions,
    then ``width`` dilations, by the cross in shifted boolean views: the same
    flags, ~10x faster than ``ndimage.binary_opening`` (which took a fifth of
    a model update on a 512² tile, benchmarks/README.md, ``bench_end_to_end``).
    """
    flags = np.asarray(flags, dtype=bool)
    if width <= 0 or not flags.any():  # an opening only removes flags
        return flags
    if flags.shape[-1] < 2 or flags.shape[-2] < 2:  # no pixel has all four neighbours
        return ndimage.binary_opening(flags, structure=_opening_structure(width))
    buffers = (np.empty_like(flags), np.empty_like(flags))  # each step reads one, writes the other
    out = flags
    for step in range(width):
        out = _erode_cross(out, buffers[step % 2])
    if not out.any():  # nothing left to dilate
        return out
    for step in range(width, 2 * width):
        out = _dilate_cross(out, buffers[step % 2])
    return out


def apply_thresholds(
    planes: np.ndarray,
    low: np.ndarray | None,
    high: np.ndarray | None,
    width: int,
) -> np.ndarray:
    """Clamp image values to per-pixel limits, on extended regions only.

    The pixels above ``high`` are flagged; the flags are opened (eroded, then
    dilated) with a cross-shaped structure iterated ``width`` times, so that
    groups narrower than that are dropped; the surviving pixels are set to
    ``high``. The pixels below ``low`` are then treated in the same way, on the
    already clamped values (the reference's ``applyImageThresholds`` order).
    Pixels outside the array count as unflagged in the erosion.

    Parameters
    ----------
    planes : numpy.ndarray
        ``(ny, nx)`` image or ``(S, ny, nx)`` stack of planes, flux.
    low, high : numpy.ndarray or None
        Lower and upper limits, flux, broadcastable to ``planes``; None skips
        that side. A NaN limit never clamps.
    width : int
        ``regularizationWidth``, pixels: radius of the opening; 0 or less
        clamps every flagged pixel.

    Returns
    -------
    numpy.ndarray
        Float64 copy of ``planes`` with the clamped values.
    """
    out = np.array(planes, dtype=np.float64)
    stack = out if out.ndim == 3 else out[None]
    for limit, outside in ((high, np.greater), (low, np.less)):
        if limit is None:
            continue
        bound = np.broadcast_to(np.asarray(limit, dtype=np.float64), out.shape)
        bound = bound if bound.ndim == 3 else bound[None]
        flagged = _surviving(outside(stack, bound), width)
        np.copyto(stack, bound, where=flagged)
    return out


def regularize_iterations(
    new: np.ndarray, old: np.ndarray, factor: float, width: int
) -> np.ndarray:
    """Limit the change of each sub-band plane between two iterations (step 5).

    Each new plane is clamped (:func:`apply_thresholds`) to
    ``[old / factor, |old| · factor]``, as the reference's
    ``regularizeModelIter``. Callers skip this step when
    ``regularizeModelIterations`` is 0.

    Parameters
    ----------
    new : numpy.ndarray
        ``(S, ny, nx)`` planes after the update of this iteration, flux.
    old : numpy.ndarray
        ``(S, ny, nx)`` planes of the previous iteration, flux.
    factor : float
        ``regularizeModelIterations``: largest relative change allowed, > 0.
    width : int
        ``regularizationWidth``, pixels.

    Returns
    -------
    numpy.ndarray
        Float64 ``(S, ny, nx)`` regularized planes.
    """
    if not factor > 0:
        raise ValueError(f"regularizeModelIterations must be > 0 to regularize, got {factor!r}")
    old = np.asarray(old, dtype=np.float64)
    high = np.abs(old)
    high *= factor
    return apply_thresholds(new, old / factor, high, width)


def background_noise(
    plane: np.ndarray, background: np.ndarray, *, border: int = FREQUENCY_NOISE_BORDER_PX
) -> float:
    """Standard deviation of an image over its background pixels.

    As the reference's ``calculateNoiseCutoff``: the population standard
    deviation (``ddof=0``) of ``plane`` over the ``background`` pixels, after
    removing ``border`` pixels from every edge. NaN values among them make the
    result NaN, as in the reference.

    Parameters
    ----------
    plane : numpy.ndarray
        ``(ny, nx)`` image, flux.
    background : numpy.ndarray of bool
        ``(ny, nx)``: True where the model mask has none of the bad planes and
        no ``DETECTED`` (the caller turns mask bits into this).
    border : int
        Pixels excluded at each edge: 5 in the frequency regularization, the
        buffer size in the convergence significance.

    Returns
    -------
    float
        Noise level, flux. 0 if no pixel qualifies (the reference returns NaN
        there, which would turn the whole block NaN; 0 disables the noise
        offset instead).
    """
    plane = np.asarray(plane, dtype=np.float64)
    background = np.asarray(background, dtype=bool)
    if plane.shape != background.shape or plane.ndim != 2:
        raise ValueError(
            f"plane {plane.shape} and background {background.shape} must be 2-D of one shape"
        )
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    ny, nx = plane.shape
    inner = (slice(border, max(ny - border, border)), slice(border, max(nx - border, border)))
    values = plane[inner][background[inner]]
    if values.size == 0:
        return 0.0
    return float(np.std(values))


#: How :func:`regularize_frequency` bounds a plane's ratio to the mean of the planes.
FREQUENCY_CLAMPS = ("smoothed", "planes", "smoothedColour")


def regularize_frequency(
    new: np.ndarray,
    old: np.ndarray,
    factor: float,
    width: int,
    noise: float,
    *,
    clamp: str = "planes",
) -> np.ndarray:
    """Restrict each sub-band plane to a smooth spectrum times the mean of the old planes (step 6).

    The reference's ``regularizeModelFreq``, step by step:

    1. ``ref`` = mean of the old planes, with NaN or non-positive pixels set to
       0. If no pixel is left, the planes are returned unchanged.
    2. ``n = noise / (2·width)``: the noise of an image smoothed over about
       ``2·width`` pixels.
    3. ``smooth_ref = gauss(ref, width) + 3n`` (zeros outside the block).
    4. Each plane is clamped (:func:`apply_thresholds`) to
       ``[smooth_ref / √factor, smooth_ref · √factor]`` (``factor`` bounds the
       ratio of two planes, so each may differ from the mean by its root).
    5. ``rel = (gauss(plane, width) + 3n) / smooth_ref`` (zeros outside), sharpened:
       ``rel += 3·(rel − gauss(rel, width/3))`` (this one with scipy's default
       ``mode="reflect"``, as in the reference), and the plane becomes ``rel · ref``.

    With ``clamp="smoothed"`` (an option, ``frequencyClamp``), step 4
    is replaced: no plane is clamped before smoothing, and ``rel`` itself is
    clipped to ``[1/√factor, √factor]`` before the sharpening. Step 4 as the
    reference does it compares a sharp plane with ``smooth_ref``, which the
    Gaussian of ``regularizationWidth`` has flattened: a star whose PSF
    σ is ``s`` px peaks in ``smooth_ref`` at about ``s² / (s² + width²)`` of
    its peak in the planes (0.3-0.5 for 0.6-1.0" seeing at 0.2"/px and the
    default width 2), so with ``factor`` 4 every star's core is clamped as
    if its colour were extreme, and with ``factor`` 2 the fit diverges from
    the data (``benchmarks/README.md``). The smoothed ratio is the colour
    that the field's documentation bounds ("maximum relative change of the
    model allowed between subfilters") without charging a sharp source for
    its sharpness. It is not the default: around very bright stars (peak
    S/N in the thousands) it leaves a ring of local maxima about 6 px out,
    2-3 % of the peak, which the reference's clamp suppresses.

    With ``clamp="smoothedColour"`` (``frequencyClamp``'s default; this
    function's default stays the reference's), ``rel`` is clipped as with
    ``"smoothed"``, and then only the colour is sharpened: with ``m`` the
    mean of the clipped ``rel`` over the sub-bands, each ``c = rel / m`` is
    sharpened as in step 5 and the plane becomes ``c · m · ref``. The mean
    ratio ``m`` (the achromatic change of the step) is left smooth, so the
    sum of the planes is ``S · m · ref``: the old sum times a ratio of
    Gaussian-smoothed images. The ring of ``"smoothed"`` is the sharpening of
    ``m``: where a fit step sharpens a bright star's core (as the fit keeps
    asking when the visits' PSFs differ), the unsharp mask of the smoothed
    ratio turns into pixel-scale structure that multiplies the old mean's
    wings, iteration after iteration (``benchmarks/README.md``).

    Gaussians are ``scipy.ndimage.gaussian_filter`` with its default
    truncation at 4 σ.

    Parameters
    ----------
    new : numpy.ndarray
        ``(S, ny, nx)`` planes of this iteration after step 5, flux.
    old : numpy.ndarray
        ``(S, ny, nx)`` planes of the previous iteration, flux.
    factor : float
        ``regularizeModelFrequency``: largest ratio allowed between two
        sub-band planes, > 0.
    width : int
        ``regularizationWidth``, pixels, >= 1: σ of the smoothing and radius
        of the opening.
    noise : float
        Background noise of ``new[0]``, flux (:func:`background_noise` with
        its default 5-pixel border); the division by ``2·width`` is done here.
    clamp : {"planes", "smoothed", "smoothedColour"}
        ``"planes"``: step 4 as the reference; ``"smoothed"``: the ratio of
        the smoothed plane to ``smooth_ref`` is clipped instead;
        ``"smoothedColour"``: clipped so, and only the colour sharpened (see above).

    Returns
    -------
    numpy.ndarray
        Float64 ``(S, ny, nx)`` regularized planes. Where ``smooth_ref`` is 0
        (no noise and no positive flux nearby) the plane is 0; the reference
        gives NaN there, which then spreads through later iterations.
    """
    if not factor > 0:
        raise ValueError(f"regularizeModelFrequency must be > 0 to regularize, got {factor!r}")
    if width < 1:
        raise ValueError(
            f"regularizationWidth must be >= 1 for frequency regularization, got {width}"
        )
    if clamp not in FREQUENCY_CLAMPS:
        raise ValueError(f"clamp must be one of {FREQUENCY_CLAMPS}, got {clamp!r}")
    new = np.asarray(new, dtype=np.float64)
    reference = np.mean(np.asarray(old, dtype=np.float64), axis=0)
    unusable = np.isnan(reference) | (reference <= 0.0)
    if np.all(unusable):
        return new.copy()
    reference[unusable] = 0.0
    offset = _NOISE_OFFSET_SIGMA * float(noise) / (2.0 * width)
    smooth_ref = ndimage.gaussian_filter(reference, width, mode="constant")
    smooth_ref += offset
    max_ratio = np.sqrt(factor)
    if clamp == "planes":
        new = apply_thresholds(new, smooth_ref / max_ratio, smooth_ref * max_ratio, width)
    # from here on in place: each full-size temporary costs a fresh allocation
    relative = ndimage.gaussian_filter(new, (0, width, width), mode="constant")
    relative += offset
    positive = smooth_ref > 0
    np.divide(relative, smooth_ref, out=relative, where=positive)
    np.copyto(relative, 0.0, where=~positive)
    if clamp != "planes":
        np.clip(relative, 1.0 / max_ratio, max_ratio, out=relative)
    sharp_sigma = width / _SHARPEN_ALPHA
    if clamp == "smoothedColour":
        # the mean ratio over the sub-bands (the achromatic change) is left smooth; only
        # the colour, each ratio over that mean, is sharpened
        mean = np.mean(relative, axis=0)
        positive = mean > 0
        np.divide(relative, mean, out=relative, where=positive)
        np.copyto(relative, 0.0, where=~positive)
        _sharpen(relative, sharp_sigma)
        relative *= mean
    else:
        _sharpen(relative, sharp_sigma)
    relative *= reference
    return relative


def _sharpen(planes: np.ndarray, sigma: float) -> None:
    """Unsharp mask of each plane, in place: ``x += α·(x − gauss(x, σ))`` (step 5)."""
    detail = ndimage.gaussian_filter(planes, (0, sigma, sigma))
    np.subtract(planes, detail, out=detail)
    detail *= _SHARPEN_ALPHA
    planes += detail
