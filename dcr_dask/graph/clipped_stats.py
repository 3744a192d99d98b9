"""Exact quantiles and afw's ``MEANCLIP`` of every visit's whole plane, in bounded memory.

The reference weights each warp by the inverse of the clipped mean of its whole
variance plane (afw's ``MEANCLIP``: a window about the median, a few
interquartile ranges wide, then windows about the mean). Two ways, by the size
of a visit's plane (:data:`WHOLE_PLANE_BYTES`):

- up to it, one task per visit takes the plane's chunks and keeps only its good
  values, in their own dtype, partitioned in place at the ranks the quantiles
  need (:func:`dcr_dask.kernels.selection.blocks_clipped_mean`): one pass over
  the data. Measured on a 4096² float32 plane (2 workers, 6 visits): 206 MiB
  per worker above idle, against 821 MiB for the former task that gathered
  the plane and sorted float64 copies, in the same time;
- above it, every pass is a graph of one small task per chunk and a tree of
  sums, so that no task grows with the tile: the exact order statistics by
  radix selection on the values' bits (:mod:`dcr_dask.kernels.selection`,
  three passes for float32 values, six for float64), then one pass per
  clipping iteration.

Either way the quantiles are those of :func:`dcr_dask.kernels.stack.quantiles`
exactly, and the means differ from
:func:`dcr_dask.kernels.stack.afw_clipped_mean` only by the order of the
float64 sums (about 1e-16 relative). :func:`plane_quantiles` and
:func:`plane_clipped_means` compute eagerly, on the current Dask scheduler.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np

from dcr_dask.kernels.selection import (
    DIGIT_BITS,
    blocks_clipped_mean,
    blocks_quantiles,
    clip_sums,
    clipped_mean_from_sums,
    digit_histograms,
    key_bits,
    key_values,
)
from dcr_dask.kernels.stack import meanclip_passes

__all__ = ["WHOLE_PLANE_BYTES", "plane_clipped_means", "plane_quantiles"]

#: Bytes of a visit's plane and its good flags up to which one task holds the plane:
#: one pass over the data, with about 2.5 times this in the task (a 4096² float32
#: plane and its flags are 80 MiB). Larger planes are read chunk by chunk in five
#: passes (float32, two clipping iterations; 3.7 times the time measured at 4096²),
#: so that no task grows with the tile.
WHOLE_PLANE_BYTES = 128 * 2**20


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
    dtype: type,
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
        dtype=dtype,
        **kwargs,
    )
    return np.asarray(counts.sum(axis=tuple(range(1, 1 + n_spatial))).compute())


def _chunked_quantiles(
    values: da.Array, good: da.Array, fractions: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """``(F, V)`` exact quantiles and ``(V,)`` counts by radix selection, chunk by chunk.

    The first pass counts every visit's values by the leading digit of their
    keys, which also gives the counts and so the ranks the quantiles need; each
    later pass narrows every rank's prefix by a digit.
    """
    dtype = values.dtype
    total = key_bits(dtype)
    key_type = np.uint32 if total == 32 else np.uint64
    n_visits = values.shape[0]
    n_targets = 2 * len(fractions)

    def digit_pass(prefixes: np.ndarray, resolved: int) -> np.ndarray:
        digit = min(DIGIT_BITS, total - resolved)
        tail = (prefixes.shape[1], 1 << digit)
        return _reduce_blocks(
            values, good, digit_histograms, tail, np.int64, prefixes=prefixes, resolved=resolved
        )

    # the first digit of every value: the counts, hence the ranks the quantiles need
    first = digit_pass(np.zeros((n_visits, 1), dtype=key_type), 0)
    counts = first[:, 0].sum(axis=-1).astype(np.int64)
    top = np.maximum(counts - 1, 0)
    index = np.array([f * top for f in fractions])  # (F, V), float64 as the kernel's
    low = np.floor(index).astype(np.int64)
    high = np.minimum(low + 1, top)
    remaining = np.concatenate([low, high]).T  # (V, 2F) ranks
    prefixes = np.zeros((n_visits, n_targets), dtype=key_type)
    histograms = np.repeat(first, n_targets, axis=1)
    resolved = 0
    while True:
        digit = histograms.shape[-1].bit_length() - 1
        cumulative = np.cumsum(histograms, axis=-1)
        # the bin of the next digit that holds each rank among its prefix's values
        chosen = np.minimum((cumulative <= remaining[..., None]).sum(axis=-1), (1 << digit) - 1)
        before = np.take_along_axis(cumulative - histograms, chosen[..., None], axis=-1)[..., 0]
        remaining = remaining - before
        prefixes = (prefixes << key_type(digit)) | chosen.astype(key_type)
        resolved += digit
        if resolved == total:
            break
        histograms = digit_pass(prefixes, resolved)
    ordered = key_values(prefixes, dtype).astype(np.float64)
    below, above = ordered[:, : len(fractions)].T, ordered[:, len(fractions) :].T
    out = (low + 1 - index) * below + (index - low) * above
    return np.where(counts > 0, out, np.nan), counts


def _plane_bytes(values: da.Array) -> int:
    """Bytes of one visit's plane and its good flags."""
    return int(math.prod(values.shape[1:]) * (values.dtype.itemsize + 1))


def _per_visit(
    values: da.Array, good: da.Array, function: Callable[..., Any], **kwargs: Any
) -> list:
    """``function(value_blocks, good_blocks, **kwargs)`` of every visit, one task each."""
    task = dask.delayed(function, pure=True)
    tasks = [
        task(
            values[v].to_delayed(optimize_graph=False).ravel().tolist(),
            good[v].to_delayed(optimize_graph=False).ravel().tolist(),
            **kwargs,
        )
        for v in range(values.shape[0])
    ]
    return list(dask.compute(*tasks))


def plane_quantiles(
    values: da.Array | np.ndarray,
    good: da.Array | np.ndarray,
    fractions: Sequence[float],
    *,
    whole_plane_bytes: int = WHOLE_PLANE_BYTES,
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
    whole_plane_bytes : int
        Up to this size of a visit's plane and flags, one task per visit
        holds its plane (one pass); above, the planes are read chunk by chunk
        (three passes for float32).

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
    if _plane_bytes(values) <= whole_plane_bytes:
        found = _per_visit(values, good, blocks_quantiles, fractions=tuple(fractions))
        quantiles = np.array([q for q, _ in found], dtype=np.float64).reshape(-1, len(fractions))
        return quantiles.T, np.array([n for _, n in found], dtype=np.int64)
    return _chunked_quantiles(values, good, tuple(fractions))


def plane_clipped_means(
    values: da.Array | np.ndarray,
    good: da.Array | np.ndarray,
    n_sigma: float,
    n_iterations: int,
    *,
    whole_plane_bytes: int = WHOLE_PLANE_BYTES,
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
    whole_plane_bytes : int
        As in :func:`plane_quantiles`.

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
    Read chunk by chunk, the median and quartiles take three passes over the
    planes (float32; six for float64), each clipping iteration one more. A pass's mean and
    de-biased variance come from the sums about the window's centre, which is
    the median or the previous mean, so the variance loses no precision to the
    subtraction.
    """
    if n_iterations < 1:
        raise ValueError(f"MEANCLIP needs at least one clipping pass, got {n_iterations}")
    values, good = _aligned(values, good)
    if _plane_bytes(values) <= whole_plane_bytes:
        found = _per_visit(
            values,
            good,
            blocks_clipped_mean,
            n_sigma=n_sigma,
            n_iterations=n_iterations,
        )
        return np.array(found, dtype=np.float64)
    (median, q1, q3), counts = _chunked_quantiles(values, good, (0.5, 0.25, 0.75))
    n_visits = counts.shape[0]

    def window_moments(
        center: np.ndarray, half_width: np.ndarray, defined: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        sums = _reduce_blocks(
            values,
            good,
            clip_sums,
            (3,),
            np.float64,
            center=np.where(defined, center, np.nan),
            half_width=np.where(defined, half_width, np.nan),
        )
        moments = np.array([clipped_mean_from_sums(sums[v], center[v]) for v in range(n_visits)])
        moments = moments.reshape(n_visits, 2)
        return moments[:, 0], moments[:, 1]

    return meanclip_passes(median, q1, q3, counts, n_sigma, n_iterations, window_moments)
