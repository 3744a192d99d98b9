"""CompareWarp's artifact tests and variance rescaling, as pure NumPy kernels.

docs/algorithm.md, "CompareWarp artifacts". The graph layer (:mod:`dcr_dask.graph.artifacts`)
detects footprints on each PSF-matched warp minus the static sky model,
labels them across the tile (:mod:`dcr_dask.graph.labels`) and sums per-footprint
statistics with the ``*_stats`` block functions here; the decision functions
then work on those per-footprint sums:

1. *Prefilter* (``doPrefilterArtifacts``): a footprint whose fraction of pixels
   free of ``prefilterArtifactsMaskPlanes`` is not above
   ``prefilterArtifactsRatio`` is dropped; it neither counts towards the
   epoch count nor is clipped.
2. *Epoch count*: per pixel, the number of visits in which a kept footprint
   covers it; ``N`` is the number of visits with good data there.
3. *Transient test*: with ``N̄`` the mean of ``N`` over the footprint,
   ``e_max = int(min(maxFractionEpochsLow·N̄, maxNumEpochs +
   maxFractionEpochsHigh·N̄))``; the footprint is an artifact when more than
   ``spatialThreshold`` of its pixels have ``0 < epochCount <= e_max``.
4. *Preservation* (``doPreserveContainedBySource``): a footprint wholly inside
   a source detected on the static model is not clipped.

Variance rescaling (``doScaleWarpVariance``) measures the interquartile range
of ``image / sqrt(variance)`` over a warp's unmasked pixels from a fine
histogram (:data:`SNR_EDGES`) summed over blocks, so that no warp is ever held
whole; the factor is ``(IQR_TO_SIGMA · IQR)²``.
"""

from __future__ import annotations

import numpy as np

from dcr_dask.kernels.stack import IQR_TO_SIGMA

__all__ = [
    "SNR_EDGES",
    "count_stats",
    "effective_max_epochs",
    "epoch_stats",
    "prefilter_keep",
    "snr_histogram",
    "transient",
    "variance_scale_from_histogram",
]

#: Bin edges of the signal-to-noise histogram of variance rescaling: 0.001 wide over ±10.
SNR_EDGES = np.linspace(-10.0, 10.0, 20001)


# --------------------------------------------------------------------------- variance rescaling


def snr_histogram(
    image: np.ndarray, variance: np.ndarray, good: np.ndarray, edges: np.ndarray = SNR_EDGES
) -> np.ndarray:
    """Per-visit histogram of ``image / sqrt(variance)`` over good pixels of a block.

    Parameters
    ----------
    image, variance : numpy.ndarray
        ``(visit, y, x)`` flux and variance.
    good : numpy.ndarray of bool
        ``(visit, y, x)`` pixels to count (unmasked); pixels whose values are
        not finite or whose variance is not positive are left out as well.
    edges : numpy.ndarray
        Increasing bin edges.

    Returns
    -------
    numpy.ndarray of int64
        ``(visit, len(edges) + 1)``: column 0 counts values below
        ``edges[0]``, the last column values at or above ``edges[-1]``.
    """
    image = np.asarray(image, dtype=np.float64)
    variance = np.asarray(variance, dtype=np.float64)
    n_visits = image.shape[0]
    n_columns = len(edges) + 1
    with np.errstate(invalid="ignore", divide="ignore"):
        use = good & np.isfinite(image) & np.isfinite(variance) & (variance > 0)
        snr = image / np.sqrt(np.where(use, variance, 1.0))
    column = np.searchsorted(edges, snr, side="right")
    visit = np.broadcast_to(np.arange(n_visits).reshape(-1, *([1] * (image.ndim - 1))), use.shape)
    flat = (visit * n_columns + column)[use]
    return np.bincount(flat, minlength=n_visits * n_columns).reshape(n_visits, n_columns)


def _histogram_quantile(counts: np.ndarray, edges: np.ndarray, fraction: float) -> float:
    """Quantile of the values a histogram counts, interpolated linearly within a bin."""
    total = counts.sum()
    rank = fraction * (total - 1) + 0.5
    cumulative = np.cumsum(counts)
    column = int(np.searchsorted(cumulative, rank, side="left"))
    if column == 0 or column >= len(counts) - 1:
        return float("nan")
    before = cumulative[column - 1]
    lower, upper = edges[column - 1], edges[column]
    return float(lower + (upper - lower) * (rank - before) / counts[column])


def variance_scale_from_histogram(counts: np.ndarray, edges: np.ndarray = SNR_EDGES) -> float:
    """Variance scale factor ``(IQR_TO_SIGMA · IQR)²`` from a signal-to-noise histogram.

    Parameters
    ----------
    counts : numpy.ndarray
        ``(len(edges) + 1,)`` counts from :func:`snr_histogram`.
    edges : numpy.ndarray
        The bin edges used.

    Returns
    -------
    float
        The factor by which the variance must be multiplied for
        ``image / sqrt(variance)`` to have unit robust spread; NaN with fewer
        than two values or a quartile outside the histogram's range.
        Quartiles are exact to the bin width.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.sum() < 2:
        return float("nan")
    q1 = _histogram_quantile(counts, edges, 0.25)
    q3 = _histogram_quantile(counts, edges, 0.75)
    return (IQR_TO_SIGMA * (q3 - q1)) ** 2


# --------------------------------------------------------------------------- per-footprint sums


def count_stats(labels: np.ndarray, n: int, *flags: np.ndarray) -> np.ndarray:
    """Per-label sums of each of ``flags`` (block function for :mod:`dcr_dask.graph.labels`).

    Parameters
    ----------
    labels : numpy.ndarray of int
        Block labels, 0 for background.
    n : int
        Number of labels in the block.
    *flags : numpy.ndarray
        Arrays of the block's shape (bool or numbers) to sum per label.

    Returns
    -------
    numpy.ndarray of float64
        ``(n, len(flags))``.
    """
    flat = labels.ravel()
    columns = [
        np.bincount(flat, weights=np.asarray(f, dtype=np.float64).ravel(), minlength=n + 1)[1:]
        for f in flags
    ]
    return np.stack(columns, axis=1) if columns else np.zeros((n, 0))


def epoch_stats(
    labels: np.ndarray,
    n: int,
    epoch_count: np.ndarray,
    n_epochs: np.ndarray,
    outside_template: np.ndarray,
    *,
    max_epochs: int,
) -> np.ndarray:
    """Per-label histogram of the epoch count, sum of ``N`` and pixels outside template sources.

    Parameters
    ----------
    labels : numpy.ndarray of int
        Block labels, 0 for background.
    n : int
        Number of labels in the block.
    epoch_count : numpy.ndarray of int
        Epoch count at each pixel of the block (0..``max_epochs``).
    n_epochs : numpy.ndarray of int
        ``N``: visits with good data at each pixel.
    outside_template : numpy.ndarray of bool
        Pixels not covered by a source of the static model.
    max_epochs : int
        Largest possible epoch count (the number of visits).

    Returns
    -------
    numpy.ndarray of float64
        ``(n, max_epochs + 3)``: columns ``0..max_epochs`` count the label's
        pixels by epoch count, then ``Σ N``, then the pixels outside template
        sources.
    """
    flat = labels.ravel()
    width = max_epochs + 1
    counts = np.clip(np.asarray(epoch_count).ravel(), 0, max_epochs).astype(np.int64)
    histogram = np.bincount(flat * width + counts, minlength=(n + 1) * width).reshape(n + 1, width)
    sums = count_stats(labels, n, n_epochs, outside_template)
    return np.concatenate([histogram[1:].astype(np.float64), sums], axis=1)


# --------------------------------------------------------------------------- decisions


def prefilter_keep(pixels: np.ndarray, good_pixels: np.ndarray, ratio: float) -> np.ndarray:
    """Footprints kept by the prefilter: fraction of good pixels above ``ratio``.

    Parameters
    ----------
    pixels : numpy.ndarray
        Area of each footprint, pixels.
    good_pixels : numpy.ndarray
        Its pixels free of ``prefilterArtifactsMaskPlanes``.
    ratio : float
        ``prefilterArtifactsRatio``.

    Returns
    -------
    numpy.ndarray of bool
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(good_pixels, dtype=np.float64) / pixels > ratio


def effective_max_epochs(
    mean_n: np.ndarray, max_num_epochs: int, fraction_low: float, fraction_high: float
) -> np.ndarray:
    """``int(min(maxFractionEpochsLow·N̄, maxNumEpochs + maxFractionEpochsHigh·N̄))``.

    Parameters
    ----------
    mean_n : numpy.ndarray
        Mean number of visits with good data over each footprint.
    max_num_epochs : int
        ``maxNumEpochs``.
    fraction_low, fraction_high : float
        ``maxFractionEpochsLow``, ``maxFractionEpochsHigh``.

    Returns
    -------
    numpy.ndarray of int64
        Largest epoch count at which a pixel still counts as transient.
    """
    mean_n = np.asarray(mean_n, dtype=np.float64)
    limit = np.minimum(fraction_low * mean_n, max_num_epochs + fraction_high * mean_n)
    return np.trunc(np.nan_to_num(limit, nan=0.0)).astype(np.int64)


def transient(
    epoch_histogram: np.ndarray,
    sum_n: np.ndarray,
    *,
    max_num_epochs: int,
    fraction_low: float,
    fraction_high: float,
    spatial_threshold: float,
) -> np.ndarray:
    """Footprints that CompareWarp's temporal test calls artifacts.

    Parameters
    ----------
    epoch_histogram : numpy.ndarray
        ``(footprints, visits + 1)`` pixels of each footprint by epoch count.
    sum_n : numpy.ndarray
        ``(footprints,)`` sum of ``N`` over each footprint.
    max_num_epochs : int
        ``maxNumEpochs``.
    fraction_low, fraction_high : float
        ``maxFractionEpochsLow``, ``maxFractionEpochsHigh``.
    spatial_threshold : float
        ``spatialThreshold``: fraction of pixels that must be transient.

    Returns
    -------
    numpy.ndarray of bool
        More than ``spatial_threshold`` of the pixels have
        ``0 < epochCount <= e_max`` (module docstring).
    """
    epoch_histogram = np.asarray(epoch_histogram, dtype=np.float64)
    pixels = epoch_histogram.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_n = np.asarray(sum_n, dtype=np.float64) / pixels
    limit = effective_max_epochs(mean_n, max_num_epochs, fraction_low, fraction_high)
    epochs = np.arange(epoch_histogram.shape[1])
    below = ((epochs[None, :] > 0) & (epochs[None, :] <= limit[:, None])) * epoch_histogram
    with np.errstate(invalid="ignore", divide="ignore"):
        return below.sum(axis=1) / pixels > spatial_threshold
