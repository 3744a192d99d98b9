"""Stacking statistics over the visit axis, as pure NumPy kernels.

Each kernel takes the ``(visit, y, x)`` arrays of one block and returns the
stacked ``(y, x)`` planes. They know nothing of Dask or of configuration
objects; the graph layer (:mod:`dcr_dask.graph.coadd`) turns a config into a
:class:`StackSettings` and maps :func:`stack_block` over the tile's blocks
with the visit axis whole.

The statistics follow afw's ``statisticsStack`` as Rubin's
``AssembleCoaddTask`` calls it (weighted, NaN-safe, with an "and mask" of bad
planes):

``MEAN``
    ``Σ w_v I_v / Σ w_v`` over the good inputs of a pixel.
``MEANCLIP``
    afw's clipped mean: a first pass keeps the inputs within
    ``sigmaClip · 0.7413 · IQR`` of the (unweighted) median; each later pass
    keeps those within ``sigmaClip`` standard deviations of the previous
    pass's weighted mean, ``clipIter`` passes in all. Limits are inclusive;
    the spread is the weighted, de-biased variance of the kept inputs.
``MEDIAN``
    The unweighted median of the good inputs (linear interpolation between
    the two middle values).

Variance of the result: with ``calcErrorFromInputVariance``,
``Σ w² var / (Σ w)²`` over the inputs the statistic used; otherwise the
weighted, de-biased scatter of those inputs times ``Σ w² / (Σ w)²``. For
``MEDIAN`` either is multiplied by π/2, the variance of a Gaussian sample's
median relative to its mean.

Masks: the output mask is the OR of the (``removeMaskPlanes``-cleared) masks
of the good inputs; a plane listed in ``maskPropagationThresholds`` is also
set when the weight of the inputs rejected *with* that plane exceeds the
threshold as a fraction of the weight they would have had together with the
good inputs; planes of rejected inputs can be mapped to coadd planes
(``REJECTED``, ``SENSOR_EDGE``, ``CLIPPED``, as the reference's
``setRejectedMaskMapping``); sigma-clipping sets ``CLIPPED``; a pixel with no
good input gets only the no-data plane.

Arrays hold no NaN on output: a pixel with no good input (or whose statistic
is undefined) has image 0, variance +inf and the no-data plane, and a
variance that cannot be estimated (scatter of one input) is +inf.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import attrs
import numpy as np

__all__ = [
    "IQR_TO_SIGMA",
    "STATISTICS",
    "StackSettings",
    "afw_clipped_mean",
    "clipped_mean",
    "meanclip_passes",
    "quantiles",
    "stack_block",
    "visit_weight",
    "weighted_mean",
]

#: One sigma of a Gaussian in units of its interquartile range (afw's ``IQ_TO_STDEV``).
IQR_TO_SIGMA = 0.741301109252802

#: Stacking statistics the kernels implement (the config's ``statistic`` choices).
STATISTICS = ("MEAN", "MEANCLIP", "MEDIAN")

#: Variance of the median of a large Gaussian sample relative to that of its mean.
_MEDIAN_VARIANCE_FACTOR = math.pi / 2

_N_IMAGE_MAX = int(np.iinfo(np.uint16).max)

#: Values processed at once by :func:`stack_block` (visits × pixels), to bound temporaries.
_STRIP_VALUES = 1 << 22


def weighted_mean(
    images: np.ndarray,
    variances: np.ndarray,
    good: np.ndarray,
    weights: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted mean of the good pixels of each visit, with its variance.

    Parameters
    ----------
    images, variances : numpy.ndarray
        ``(visit, y, x)`` flux and per-pixel variance.
    good : numpy.ndarray of bool
        ``(visit, y, x)``: pixels that may be used.
    weights : numpy.ndarray
        ``(visit,)`` weight of each visit (for example 1 / mean variance).

    Returns
    -------
    image : numpy.ndarray of float32
        ``Σ w_v I_v / Σ w_v`` over good pixels; 0 where no visit is good.
    variance : numpy.ndarray of float32
        ``Σ w_v² var_v / (Σ w_v)²`` (the variance of that mean, from the
        inputs); +inf where no visit is good.
    n_image : numpy.ndarray of uint16
        Number of good visits per pixel.
    """
    w = np.where(good, np.asarray(weights, dtype=np.float64)[:, None, None], 0.0)
    total = w.sum(axis=0)
    covered = total > 0
    safe = np.where(covered, total, 1.0)
    image = np.where(good, images, 0.0)
    variance = np.where(good, variances, 0.0)
    mean = (w * image).sum(axis=0) / safe
    var = (w**2 * variance).sum(axis=0) / safe**2
    return (
        np.where(covered, mean, 0.0).astype(np.float32),
        np.where(covered, var, np.inf).astype(np.float32),
        good.sum(axis=0).astype(np.uint16),
    )


# --------------------------------------------------------------------------- order statistics


def quantiles(values: np.ndarray, good: np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """Quantiles of the good values along axis 0, interpolated as afw does.

    The quantile ``f`` of ``n`` sorted values ``s`` is
    ``(k + 1 - i)·s[k] + (i - k)·s[k + 1]`` with ``i = f·(n - 1)`` and
    ``k = floor(i)`` (afw's ``percentile``; numpy's default "linear"
    method up to rounding).

    Parameters
    ----------
    values : numpy.ndarray
        ``(n, ...)`` samples along axis 0.
    good : numpy.ndarray of bool
        Same shape: samples that count.
    fractions : sequence of float
        Quantiles wanted, each in [0, 1].

    Returns
    -------
    numpy.ndarray of float64
        ``(len(fractions), ...)``; NaN where no sample is good.
    """
    values = np.asarray(values, dtype=np.float64)
    good = np.asarray(good, dtype=bool)
    ordered = np.sort(np.where(good, values, np.nan), axis=0)
    n = good.sum(axis=0)
    out = np.full((len(fractions), *values.shape[1:]), np.nan)
    top = np.maximum(n - 1, 0)
    for j, fraction in enumerate(fractions):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"quantile fraction {fraction!r} is outside [0, 1]")
        index = fraction * top
        low = np.floor(index).astype(np.intp)
        high = np.minimum(low + 1, top)
        below = np.take_along_axis(ordered, low[None], axis=0)[0]
        above = np.take_along_axis(ordered, high[None], axis=0)[0]
        value = (low + 1 - index) * below + (index - low) * above
        out[j] = np.where(n > 0, value, np.nan)
    return out


def _weighted_moments(
    values: np.ndarray, kept: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Σw, Σw², weighted mean and de-biased weighted variance of the kept values (axis 0)."""
    w = np.where(kept, weights, 0.0)
    sum_w = w.sum(axis=0)
    sum_w2 = (w * w).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (w * np.where(kept, values, 0.0)).sum(axis=0) / sum_w
        delta = np.where(kept, values - mean, 0.0)
        biased = (w * delta * delta).sum(axis=0) / sum_w
        variance = biased * sum_w**2 / (sum_w**2 - sum_w2)
    return sum_w, sum_w2, mean, variance


def clipped_mean(
    values: np.ndarray,
    good: np.ndarray,
    weights: np.ndarray | float,
    n_sigma: float,
    n_iterations: int,
) -> tuple[np.ndarray, np.ndarray]:
    """afw's ``MEANCLIP`` along axis 0, for many samples at once.

    Parameters
    ----------
    values : numpy.ndarray
        ``(n, ...)`` samples along axis 0 (e.g. visits × pixels).
    good : numpy.ndarray of bool
        Same shape: samples that may be used (the others never are).
    weights : numpy.ndarray
        Weights broadcastable to ``values`` (e.g. ``(n, 1)``).
    n_sigma : float
        Clipping half-width, in standard deviations (``sigmaClip``).
    n_iterations : int
        Number of passes (``clipIter``), at least 1.

    Returns
    -------
    mean : numpy.ndarray of float64
        ``values.shape[1:]`` clipped means; NaN where no sample is good, or
        where a pass leaves a single sample (whose spread is undefined) or
        none, as afw does.
    kept : numpy.ndarray of bool
        The samples the last pass kept.

    Notes
    -----
    Pass 0 keeps ``|x - median| <= n_sigma · IQR_TO_SIGMA · IQR`` (median and
    quartiles unweighted). Each later pass keeps
    ``|x - mean| <= n_sigma · sqrt(var)`` around the previous pass's
    weighted mean and de-biased weighted variance, except where only one
    sample is good at all, which keeps the IQR rule. A negative variance
    (rounding) counts as 0.
    """
    if n_iterations < 1:
        raise ValueError(f"MEANCLIP needs at least one clipping pass, got {n_iterations}")
    values = np.asarray(values, dtype=np.float64)
    good = np.asarray(good, dtype=bool)
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), values.shape)
    n = good.sum(axis=0)
    median, q1, q3 = quantiles(values, good, (0.5, 0.25, 0.75))
    kept = good

    def window_moments(
        center: np.ndarray, half_width: np.ndarray, defined: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        nonlocal kept
        with np.errstate(invalid="ignore"):
            kept = good & defined & (np.abs(values - center) <= half_width)
        _, _, pass_mean, pass_variance = _weighted_moments(values, kept, weights)
        return pass_mean, pass_variance

    mean = meanclip_passes(median, q1, q3, n, n_sigma, n_iterations, window_moments)
    return mean, kept


def meanclip_passes(
    median: np.ndarray,
    q1: np.ndarray,
    q3: np.ndarray,
    n: np.ndarray,
    n_sigma: float,
    n_iterations: int,
    window_moments: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """The clipping passes of afw's ``MEANCLIP``, for samples whose values live elsewhere.

    Parameters
    ----------
    median, q1, q3 : numpy.ndarray
        Each sample's median and quartiles (NaN for an empty sample).
    n : numpy.ndarray
        Each sample's number of good values.
    n_sigma : float
        Clipping half-width, in standard deviations.
    n_iterations : int
        Number of passes, at least 1.
    window_moments : callable
        ``window_moments(center, half_width, defined)`` returns the mean and the
        de-biased variance of each sample's good values with
        ``|x - center| <= half_width``, where ``defined`` (its value elsewhere
        is not used): in memory (:func:`clipped_mean`), or in passes over
        chunks (:mod:`dcr_dask.graph.clipped_stats`).

    Returns
    -------
    numpy.ndarray of float64
        The clipped means (see :func:`clipped_mean`'s Notes for the windows).
    """
    iqr_half_width = n_sigma * IQR_TO_SIGMA * (q3 - q1)
    mean = np.full(np.shape(median), np.nan)
    variance = np.full(np.shape(median), np.nan)
    for iteration in range(n_iterations):
        variance = np.where(variance < 0, 0.0, variance)
        if iteration == 0:
            center, half_width = median, iqr_half_width
        else:
            center = mean
            half_width = np.where(n > 1, n_sigma * np.sqrt(variance), iqr_half_width)
        defined = np.isfinite(center) & ~np.isnan(half_width)
        pass_mean, pass_variance = window_moments(center, half_width, defined)
        mean = np.where(defined, pass_mean, np.nan)
        variance = np.where(defined, pass_variance, np.nan)
    return mean


def afw_clipped_mean(values: np.ndarray, n_sigma: float, n_iterations: int) -> float:
    """afw's unweighted ``MEANCLIP`` of a 1-D sample (see :func:`clipped_mean`).

    Parameters
    ----------
    values : numpy.ndarray
        1-D sample; every value counts.
    n_sigma : float
        Clipping half-width, in standard deviations.
    n_iterations : int
        Number of passes, at least 1.

    Returns
    -------
    float
        The clipped mean; NaN for an empty sample or when clipping leaves
        fewer than two values before the last pass.
    """
    column = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    if column.size == 0:
        return float("nan")
    mean, _ = clipped_mean(column, np.ones(column.shape, bool), 1.0, n_sigma, n_iterations)
    return float(mean[0])


def visit_weight(
    variance: np.ndarray, good: np.ndarray, n_sigma: float, n_iterations: int
) -> float:
    """Weight of one visit as the reference computes it: 1 / clipped mean variance.

    ``AssembleCoaddTask.prepareInputs`` takes afw's ``MEANCLIP`` of the warp's
    variance plane over its pixels free of ``badMaskPlanes`` (NaN-safe), with
    ``sigmaClip`` and ``clipIter``, whatever ``statistic`` is, over the whole
    patch: pass a whole visit, not a block. ``doAirmassWeight`` is a factor
    applied by the caller.

    Parameters
    ----------
    variance : numpy.ndarray
        The visit's variance plane, flux².
    good : numpy.ndarray of bool
        Same shape: pixels free of the bad planes.
    n_sigma : float
        ``sigmaClip``: clipping half-width, in standard deviations.
    n_iterations : int
        ``clipIter``: number of clipping passes, at least 1.

    Returns
    -------
    float
        1/flux²; 0.0 when the clipped mean is not finite and positive (no
        usable pixel): the reference skips such a visit.
    """
    values = np.asarray(variance, dtype=np.float64)[np.asarray(good, dtype=bool)]
    mean = afw_clipped_mean(values[np.isfinite(values)], n_sigma, n_iterations)
    return 1.0 / mean if np.isfinite(mean) and mean > 0 else 0.0


# --------------------------------------------------------------------------- the stacking kernel


def _bits(value: int, name: str) -> int:
    value = int(value)
    if not 0 <= value < 1 << 31:
        raise ValueError(f"{name} = {value!r} is not an int32 bit mask")
    return value


@attrs.frozen
class StackSettings:
    """Plain settings of :func:`stack_block` (built from a config by the graph layer).

    Parameters
    ----------
    statistic : str
        One of :data:`STATISTICS` (``statistic``).
    sigma_clip : float
        ``sigmaClip``: clipping half-width in standard deviations (MEANCLIP).
    clip_iter : int
        ``clipIter``: number of clipping passes (MEANCLIP), at least 1 then.
    calc_error_from_input_variance : bool
        ``calcErrorFromInputVariance``: variance from the input variance
        planes (True) or from the scatter of the inputs (False).
    bad_mask : int
        Bits (``badMaskPlanes``) that reject an input pixel.
    remove_mask : int
        Bits (``removeMaskPlanes``) cleared from the inputs before anything else.
    propagation : tuple of (int, float)
        ``(bit number, threshold)`` of ``maskPropagationThresholds``.
    rejection_map : tuple of (int, int)
        ``(input bits, output bits)``: output bits set where an input pixel
        was rejected and has any of the input bits.
    clipped_mask : int
        Output bits set where sigma clipping rejected a good input.
    no_data_mask : int
        Output mask of a pixel without a good input (``NO_DATA``).
    """

    statistic: str = "MEANCLIP"
    sigma_clip: float = 3.0
    clip_iter: int = 2
    calc_error_from_input_variance: bool = True
    bad_mask: int = 0
    remove_mask: int = 0
    propagation: tuple[tuple[int, float], ...] = ()
    rejection_map: tuple[tuple[int, int], ...] = ()
    clipped_mask: int = 0
    no_data_mask: int = 0

    def __attrs_post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ValueError(
                f"statistic = {self.statistic!r} is not supported; choose one of {STATISTICS}"
            )
        if self.statistic == "MEANCLIP":
            if not self.sigma_clip > 0:
                raise ValueError(f"sigmaClip = {self.sigma_clip!r} must be positive for MEANCLIP")
            if self.clip_iter < 1:
                raise ValueError(
                    f"clipIter = {self.clip_iter!r}: MEANCLIP needs at least one clipping pass"
                )
        for name in ("bad_mask", "remove_mask", "clipped_mask", "no_data_mask"):
            _bits(getattr(self, name), name)
        for bit, threshold in self.propagation:
            if not 0 <= bit < 31 or not 0.0 <= threshold <= 1.0:
                raise ValueError(
                    f"maskPropagationThresholds entry (bit {bit}, {threshold}) needs a bit in "
                    "[0, 31) and a threshold in [0, 1]"
                )
        for source, target in self.rejection_map:
            _bits(source, "rejection_map input bits")
            _bits(target, "rejection_map output bits")


def _stack_strip(
    images: np.ndarray,
    variances: np.ndarray,
    masks: np.ndarray,
    weights: np.ndarray,
    settings: StackSettings,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`stack_block` on ``(visit, pixel)`` arrays."""
    masks = masks & ~np.int32(settings.remove_mask)
    finite = np.isfinite(images) & np.isfinite(variances)
    usable = (np.isfinite(weights) & (weights > 0))[:, None]
    good = ((masks & settings.bad_mask) == 0) & finite & usable
    rejected = ~good & usable
    w = np.where(usable, weights[:, None], 0.0)
    n_good = good.sum(axis=0)

    or_mask = np.bitwise_or.reduce(np.where(good, masks, 0), axis=0)
    good_weight = np.where(good, w, 0.0).sum(axis=0)
    for bit, threshold in settings.propagation:
        with_bit = rejected & ((masks >> bit) & 1).astype(bool)
        rejected_weight = np.where(with_bit, w, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = rejected_weight / (good_weight + rejected_weight)
        or_mask |= np.where(fraction > threshold, np.int32(1 << bit), np.int32(0))
    for source, target in settings.rejection_map:
        hit = (rejected & ((masks & source) != 0)).any(axis=0)
        or_mask |= np.where(hit, np.int32(target), np.int32(0))

    values = np.where(finite, images, 0.0).astype(np.float64)
    if settings.statistic == "MEDIAN":
        value = quantiles(values, good, (0.5,))[0]
        kept = good
    elif settings.statistic == "MEANCLIP":
        value, kept = clipped_mean(values, good, w, settings.sigma_clip, settings.clip_iter)
        clipped = (good & ~kept).any(axis=0)
        or_mask |= np.where(clipped, np.int32(settings.clipped_mask), np.int32(0))
    else:
        kept = good
        value = None
    sum_w, sum_w2, mean, scatter = _weighted_moments(values, kept, w)
    if value is None:
        value = mean
    with np.errstate(invalid="ignore", divide="ignore"):
        if settings.calc_error_from_input_variance:
            input_variance = np.where(kept, np.where(finite, variances, 0.0), 0.0)
            variance = (w * w * input_variance).sum(axis=0) / sum_w**2
        else:
            variance = scatter * sum_w2 / sum_w**2
    if settings.statistic == "MEDIAN":
        variance = variance * _MEDIAN_VARIANCE_FACTOR

    defined = (n_good > 0) & np.isfinite(value)
    image = np.where(defined, value, 0.0)
    variance = np.where(defined & np.isfinite(variance), variance, np.inf)
    mask = or_mask | np.where(defined, np.int32(0), np.int32(settings.no_data_mask))
    return (
        image.astype(np.float32),
        variance.astype(np.float32),
        mask.astype(np.int32),
        np.minimum(n_good, _N_IMAGE_MAX).astype(np.uint16),
    )


def stack_block(
    images: np.ndarray,
    variances: np.ndarray,
    masks: np.ndarray,
    weights: np.ndarray,
    settings: StackSettings,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stack one block of warps over the visit axis (module docstring for the rules).

    Parameters
    ----------
    images, variances : numpy.ndarray
        ``(visit, y, x)`` flux and its variance (flux²). Non-finite values
        reject the input pixel.
    masks : numpy.ndarray of int32
        ``(visit, y, x)`` bit masks, all in one bit layout.
    weights : numpy.ndarray
        ``(visit,)`` weight of each visit (1/flux²); a visit whose weight is
        not finite and positive is not used.
    settings : StackSettings
        Statistic, clipping, mask handling.

    Returns
    -------
    image : numpy.ndarray of float32
        ``(y, x)`` stacked flux; 0 where undefined.
    variance : numpy.ndarray of float32
        Its variance; +inf where undefined.
    mask : numpy.ndarray of int32
        The coadd mask.
    n_image : numpy.ndarray of uint16
        Number of inputs not rejected by their mask (or non-finite) per pixel.

    Raises
    ------
    ValueError
        If the arrays' shapes disagree.
    """
    images = np.asarray(images)
    variances = np.asarray(variances)
    masks = np.asarray(masks, dtype=np.int32)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if images.ndim != 3 or variances.shape != images.shape or masks.shape != images.shape:
        raise ValueError(
            f"images {images.shape}, variances {variances.shape} and masks {masks.shape} "
            "must be (visit, y, x) arrays of one shape"
        )
    if weights.shape != images.shape[:1]:
        raise ValueError(f"weights {weights.shape} must have one entry per visit {images.shape[0]}")
    n_visits, ny, nx = images.shape
    flat_images, flat_variances, flat_masks = (
        a.reshape(n_visits, ny * nx) for a in (images, variances, masks)
    )
    step = max(1, _STRIP_VALUES // max(n_visits, 1))
    outputs = [
        np.empty(ny * nx, np.float32),
        np.empty(ny * nx, np.float32),
        np.empty(ny * nx, np.int32),
        np.empty(ny * nx, np.uint16),
    ]
    for start in range(0, ny * nx, step):
        part = slice(start, start + step)
        results = _stack_strip(
            flat_images[:, part], flat_variances[:, part], flat_masks[:, part], weights, settings
        )
        for out, result in zip(outputs, results, strict=True):
            out[part] = result
    image, variance, mask, n_image = (out.reshape(ny, nx) for out in outputs)
    return image, variance, mask, n_image
