"""Exact quantiles and afw's ``MEANCLIP`` of every visit's whole plane, chunk by chunk.

The reference weights each warp by the inverse of the clipped mean of its whole
variance plane (afw's ``MEANCLIP``: a window about the median, a few
interquartile ranges wide, then windows about the mean). Gathering a visit's
plane into one task costs memory in proportion to the tile (a 4096² float32
plane is 64 MiB, several times that while it is sorted); here every pass is a
graph of one small task per chunk and a tree of sums, so a task holds a chunk
whatever the tile:

- :func:`plane_quantiles`: the exact order statistics that the quantiles
  interpolate, by radix selection on the values' bits
  (:mod:`dcr_dask.kernels.selection`): three passes for float32 values, six
  for float64;
- :func:`plane_clipped_means`: ``MEANCLIP`` from those quantiles, one pass per
  clipping iteration.

The quantiles are those of :func:`dcr_dask.kernels.stack.quantiles` exactly;
the means differ from :func:`dcr_dask.kernels.stack.afw_clipped_mean` by the
order of the float64 sums (about 1e-16 relative). Both compute eagerly, on the
current Dask scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dask.array as da
import numpy as np

from dcr_dask.kernels.selection import (
    DIGIT_BITS,
    clip_sums,
    digit_histograms,
    key_bits,
    key_values,
)
from dcr_dask.kernels.stack import IQR_TO_SIGMA

__all__ = ["plane_clipped_means", "plane_quantiles"]


def _aligned(
    values: da.Array | np.ndarray, good: da.Array | np.ndarray
) -> tuple[da.Array, da.Array]:
    """``values`` and ``good & isfinite(values)`` as Dask arrays chunked alike."""
    planes: da.Array = da.asarray(values)
    if planes.ndim < 2:
        raise ValueError(
            f"the planes must be (visit, ...) with a plane per visit, got {planes.shape}"
        )
    flags: da.Array = da.asarray(good)
    if flags.shape != planes.shape:
        raise ValueError(f"good pixels of shape {flags.shape} for values of shape {planes.shape}")
    return planes, flags.astype(bool).rechunk(planes.chunks) & da.isfinite(planes)


def _reduce_blocks(
    values: da.Array,
    good: da.Array,
    function: Callable[..., np.ndarray],
    tail: tuple[int, ...],
    **kwargs: Any,
) -> np.ndarray:
    """``function(values_block, good_block, **kwargs)`` of every block (``(v, *tail)``
    each, ``v`` the block's visits), summed over the blocks of each visit (eager).

    ``kwargs`` that are arrays with a leading visit axis are cut to each block's visits.
    """
    n_spatial = values.ndim - 1

    def block(
        values_block: np.ndarray,
        good_block: np.ndarray,
        block_info: dict | None = None,
        **per_visit: Any,
    ) -> np.ndarray:
        assert block_info is not None  # map_blocks passes it
        start, stop = block_info[0]["array-location"][0]
        cut = {k: (v[start:stop] if isinstance(v, np.ndarray) else v) for k, v in per_visit.items()}
        out = function(values_block, good_block, **cut)
        return out.reshape(out.shape[:1] + (1,) * n_spatial + tuple(tail))

    counts = da.map_blocks(
        block,
        values,
        good,
        new_axis=list(range(values.ndim, values.ndim + len(tail))),
        chunks=(
            values.chunks[0],
            *[(1,) * n for n in values.numblocks[1:]],
            *[(size,) for size in tail],
        ),
        dtype=np.float64 if function is clip_sums else np.int64,
        **kwargs,
    )
    return np.asarray(counts.sum(axis=tuple(range(1, 1 + n_spatial))).compute())


def _order_statistics(values: da.Array, good: da.Array, ranks: np.ndarray) -> np.ndarray:
    """``(V, T)`` exact ``ranks[v, t]``-th smallest good value of each visit (0-based;
    a negative rank gives NaN)."""
    dtype = values.dtype
    total = key_bits(dtype)
    n_visits, n_targets = ranks.shape
    key_type = np.uint32 if total == 32 else np.uint64
    prefixes = np.zeros((n_visits, n_targets), dtype=key_type)
    remaining = np.where(ranks >= 0, ranks, 0).astype(np.int64)
    resolved = 0
    while resolved < total:
        histograms = _reduce_blocks(
            values,
            good,
            digit_histograms,
            (n_targets, 1 << min(DIGIT_BITS, total - resolved)),
            prefixes=prefixes,
            resolved=resolved,
        )
        digit = min(DIGIT_BITS, total - resolved)
        cumulative = np.cumsum(histograms, axis=-1)
        # the bin of the next digit that holds each target's rank among its prefix
        chosen = (cumulative <= remaining[..., None]).sum(axis=-1)
        chosen = np.minimum(chosen, (1 << digit) - 1)
        before = (
            np.take_along_axis(cumulative, chosen[..., None], axis=-1)[..., 0]
            - (np.take_along_axis(histograms, chosen[..., None], axis=-1)[..., 0])
        )
        remaining = remaining - before
        prefixes = (prefixes << key_type(digit)) | chosen.astype(key_type)
        resolved += digit
    found = key_values(prefixes, dtype).astype(np.float64)
    return np.where(ranks >= 0, found, np.nan)


def plane_quantiles(
    values: da.Array | np.ndarray,
    good: da.Array | np.ndarray,
    fractions: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Exact quantiles of each visit's good, finite values, interpolated as afw does.

    Parameters
    ----------
    values : dask.array.Array or numpy.ndarray
        ``(visit, ...)`` planes, chunked in any way.
    good : dask.array.Array or numpy.ndarray of bool
        Same shape: values that count (non-finite values never do).
    fractions : sequence of float
        Quantiles wanted, each in [0, 1].

    Returns
    -------
    quantiles : numpy.ndarray of float64
        ``(len(fractions), visit)``, as :func:`dcr_dask.kernels.stack.quantiles`
        of each visit's plane; NaN for a visit without a good value.
    counts : numpy.ndarray of int64
        ``(visit,)`` good, finite values of each visit.

    Raises
    ------
    ValueError
        For a fraction outside [0, 1], or ``good`` of another shape.
    """
    for fraction in fractions:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"quantile fraction {fraction!r} is outside [0, 1]")
    values, good = _aligned(values, good)
    counts = _reduce_blocks(values, good, lambda v, g: g.reshape(g.shape[0], -1).sum(1), ())
    counts = counts.astype(np.int64)
    top = np.maximum(counts - 1, 0)
    index = np.array([f * top for f in fractions])  # (F, V), float64 as the kernel's
    low = np.floor(index).astype(np.int64)
    high = np.minimum(low + 1, top)
    ranks = np.concatenate([low, high]).T  # (V, 2F)
    ranks = np.where(counts[:, None] > 0, ranks, -1)
    ordered = _order_statistics(values, good, ranks)
    below, above = ordered[:, : len(fractions)].T, ordered[:, len(fractions) :].T
    out = (low + 1 - index) * below + (index - low) * above
    return np.where(counts > 0, out, np.nan), counts


def plane_clipped_means(
    values: da.Array | np.ndarray,
    good: da.Array | np.ndarray,
    n_sigma: float,
    n_iterations: int,
) -> np.ndarray:
    """afw's unweighted ``MEANCLIP`` of each visit's good, finite values (eager).

    Parameters
    ----------
    values : dask.array.Array or numpy.ndarray
        ``(visit, ...)`` planes, chunked in any way.
    good : dask.array.Array or numpy.ndarray of bool
        Same shape: values that count (non-finite values never do).
    n_sigma : float
        Clipping half-width, in standard deviations.
    n_iterations : int
        Number of clipping passes, at least 1.

    Returns
    -------
    numpy.ndarray of float64
        ``(visit,)`` clipped means, as
        :func:`dcr_dask.kernels.stack.afw_clipped_mean` of each visit's values
        (NaN without a good value, or when a pass before the last leaves a
        single value).

    Raises
    ------
    ValueError
        For fewer than one pass, or ``good`` of another shape.

    Notes
    -----
    The median and quartiles take three passes over the planes (float32; six
    for float64), each clipping iteration one more. A pass's mean and
    de-biased variance come from the sums about the window's centre, which is
    the median or the previous mean, so the variance loses no precision to the
    subtraction.
    """
    if n_iterations < 1:
        raise ValueError(f"MEANCLIP needs at least one clipping pass, got {n_iterations}")
    values, good = _aligned(values, good)
    (median, q1, q3), counts = plane_quantiles(values, good, (0.5, 0.25, 0.75))
    iqr_half_width = n_sigma * IQR_TO_SIGMA * (q3 - q1)
    n_visits = counts.shape[0]
    mean = np.full(n_visits, np.nan)
    variance = np.full(n_visits, np.nan)
    for iteration in range(n_iterations):
        variance = np.where(variance < 0, 0.0, variance)
        if iteration == 0:
            center, half_width = median, iqr_half_width
        else:
            center = mean
            half_width = np.where(counts > 1, n_sigma * np.sqrt(variance), iqr_half_width)
        defined = np.isfinite(center) & ~np.isnan(half_width)
        sums = _reduce_blocks(
            values,
            good,
            clip_sums,
            (3,),
            center=np.where(defined, center, np.nan),
            half_width=np.where(defined, half_width, np.nan),
        )
        kept, first, second = sums[:, 0], sums[:, 1], sums[:, 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            pass_mean = center + first / kept
            biased = second / kept - (first / kept) ** 2
            pass_variance = biased * kept / (kept - 1)
        mean = np.where(defined, pass_mean, np.nan)
        variance = np.where(defined, pass_variance, np.nan)
    return mean
