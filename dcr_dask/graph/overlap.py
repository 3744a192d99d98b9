"""The halo wrapper: map a block function over ``(..., y, x)`` chunks grown by a halo.

Every graph that needs its neighbours' pixels (PSF matching, mask growth,
detection, footprint growth, smoothing, DCR-matched templates) does the same
four things: grow each chunk by a halo on ``y`` and ``x`` (never on the
leading axes), apply a NumPy block function, trim the halo off again, and give
back the input's chunks (``dask.array.overlap.overlap`` merges chunks thinner
than the halo into their neighbours). :func:`map_yx_overlap` does them once.

What lies beyond the tile's edges is each caller's choice (``boundary``):
``"reflect"`` (PSF matching: the image mirrored), ``0`` (no data, e.g. the
templates' sub-band planes, or the smoothed detection's image, variance and
validity), ``numpy.nan`` (a signal with no valid pixel), ``False`` (a mask
with nothing set) or ``"none"`` (the edge chunks are not grown). The halo
widths themselves are in :mod:`dcr_dask.graph.halos`.

The PSF-matched fit (:mod:`dcr_dask.graph.assemble`) slices its own grown
blocks out of the tile, since each block there is a separate task with its
own inputs; it does not use this wrapper.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dask.array as da
import numpy as np

__all__ = ["Boundary", "map_yx_overlap", "yx_depth"]

#: What lies beyond the tile's edges: ``"reflect"``, ``"none"`` (no growth at
#: the edges), ``"periodic"``, ``"nearest"`` or a constant fill value.
Boundary = str | float | int | bool

_LETTERS = "abcdefghijklmnopqrstuvw"


def yx_depth(ndim: int, halo: int) -> dict[int, int]:
    """Overlap depth of ``halo`` pixels on the last two axes (y, x), none on the others.

    Parameters
    ----------
    ndim : int
        Number of axes of the array (at least 2).
    halo : int
        Halo, pixels.

    Returns
    -------
    dict of int to int
        ``{axis: depth}`` for :func:`dask.array.overlap.overlap`.
    """
    return {axis: halo if axis >= ndim - 2 else 0 for axis in range(ndim)}


def _yx_boundary(ndim: int, boundary: Boundary) -> dict[int, Boundary]:
    """``boundary`` on the last two axes, ``"none"`` on the leading ones (never grown)."""
    return {axis: boundary if axis >= ndim - 2 else "none" for axis in range(ndim)}


def map_yx_overlap(
    func: Callable[..., np.ndarray],
    *arrays: da.Array,
    halo: int,
    boundary: Boundary,
    dtype: Any,
    meta: np.ndarray | None = None,
    leading_chunks: Sequence[tuple[int, ...]] | None = None,
    whole: Sequence[da.Array] = (),
    **kwargs: Any,
) -> da.Array:
    """Apply ``func`` to the chunks of ``arrays`` grown by ``halo`` on y and x (lazy).

    Parameters
    ----------
    func : callable
        ``func(*blocks, *whole_blocks, **kwargs)`` on NumPy blocks grown by
        the halo, returning a block of the grown shape (its leading axes may
        differ, see ``leading_chunks``). Without ``whole`` it may take
        ``block_info`` (as with :func:`dask.array.map_blocks`).
    *arrays : dask.array.Array
        ``(..., y, x)`` arrays of the same shape (their chunks are unified).
    halo : int
        Pixels added on each side in y and x; 0 maps the chunks as they are.
    boundary : str, float, int or bool
        What lies beyond the array's edges in y and x (module docstring).
    dtype : numpy dtype
        Of the result.
    meta : numpy.ndarray, optional
        Empty array of the result's type, as for :func:`dask.array.map_blocks`.
    leading_chunks : sequence of tuple of int, optional
        Chunks of the result's leading axes when ``func`` changes their
        length (e.g. sub-band planes in, visits out); default the input's.
    whole : sequence of dask.array.Array
        Further arrays passed to ``func`` after the grown blocks, chunked as
        ``arrays`` on the leading axes and each given whole on its own last two
        axes (e.g. a ``(visit, k, k)`` stack of per-visit kernels); not grown.
    **kwargs
        Passed to ``func``.

    Returns
    -------
    dask.array.Array
        The result with the halo trimmed off, chunked as the first array on
        y and x (and on the leading axes unless ``leading_chunks`` is given).
    """
    if whole and leading_chunks is not None:
        raise ValueError("leading_chunks cannot be combined with whole arrays")
    if not whole:
        _, unified = da.core.unify_chunks(
            *[part for a in arrays for part in (a, tuple(reversed(range(a.ndim))))], warn=False
        )
        arrays = tuple(unified)
    first = arrays[0]
    ndim = first.ndim
    leading = tuple(first.chunks[: ndim - 2]) if leading_chunks is None else tuple(leading_chunks)
    final_chunks = (*leading, *first.chunks[ndim - 2 :])
    depth = yx_depth(ndim, halo)
    edges = _yx_boundary(ndim, boundary)
    grown = [da.overlap.overlap(a, depth=depth, boundary=edges) for a in arrays] if halo else arrays
    if whole:
        index = _LETTERS[:ndim]
        args: list[Any] = []
        for array in grown:
            args += [array, index]
        for extra in whole:
            args += [extra, index[: ndim - 2] + "yx"]
        mapped = da.blockwise(
            func, index, *args, concatenate=True, dtype=dtype, meta=meta, **kwargs
        )
    else:
        chunks = (*leading, *grown[0].chunks[ndim - 2 :])
        mapped = da.map_blocks(func, *grown, chunks=chunks, dtype=dtype, meta=meta, **kwargs)
    if halo:
        mapped = da.overlap.trim_internal(mapped, depth, boundary=edges)
    # overlap() merges chunks thinner than the halo into their neighbours: give them back
    return mapped.rechunk(final_chunks)
