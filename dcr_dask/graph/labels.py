"""Connected components of a chunked boolean Dask array, found block by block.

Footprints (a satellite streak, say) cross chunk borders, so they cannot be
labelled one block at a time. Here each block is labelled on its own
(:func:`scipy.ndimage.label`, 8-connected in the last two axes as afw's
footprints are, nothing connecting the leading axes such as visits); labels
that touch across a block face, including diagonally across a block corner,
are declared equivalent, and the classes of that equivalence
(:func:`scipy.sparse.csgraph.connected_components`) are the components. The
intent follows dask-image's ``ndmeasure.label``; the implementation is ours.

Cost and memory
---------------
:func:`find_components` and :func:`component_stats` compute one small result
per block (its number of labels, the labels along its four edges and the
per-label sums asked for) and merge them on the client, in time and memory
proportional to the number of block-local components and block edges, never
to the number of pixels. Labels are not stored: :func:`map_components`
labels each block again (the labelling is deterministic) and looks its labels
up in a per-block table, lazily. The graphs have a fixed number of tasks per
block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import dask
import dask.array as da
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dcr_dask.kernels.detection import EIGHT_CONNECTED, plane_structure

__all__ = ["BlockStats", "Components", "component_stats", "find_components", "map_components"]

#: ``block_stats(labels, n_labels, *extra_blocks) -> (n_labels, n_stats)`` per-label sums of a
#: block; row ``i`` belongs to label ``i + 1``.
BlockStats = Callable[..., np.ndarray]


def label_block(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label one block: 8-connected in the last two axes, leading axes independent.

    Parameters
    ----------
    mask : numpy.ndarray of bool
        ``(..., y, x)`` block.

    Returns
    -------
    labels : numpy.ndarray of int32
        0 for background, 1..n for the components of the block.
    n : int
        Number of components.
    """
    mask = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(mask, structure=plane_structure(mask.ndim, EIGHT_CONNECTED))
    return labels.astype(np.int32, copy=False), int(n)


def _block_stats(
    labels: np.ndarray,
    n: int,
    extra: Sequence[np.ndarray],
    block_stats: BlockStats | None,
    n_stats: int,
) -> np.ndarray:
    if block_stats is None or n_stats == 0:
        return np.zeros((n, 0))
    stats = np.asarray(block_stats(labels, n, *extra), dtype=np.float64).reshape(n, n_stats)
    return stats


def _summary(
    mask: np.ndarray, *extra: np.ndarray, block_stats: BlockStats | None, n_stats: int
) -> dict[str, object]:
    """What the merge needs from one block: label count, edge labels, per-label sums."""
    labels, n = label_block(mask)
    return {
        "n": n,
        "pixels": np.bincount(labels.ravel(), minlength=n + 1)[1:],
        "top": labels[..., 0, :].copy(),
        "bottom": labels[..., -1, :].copy(),
        "left": labels[..., :, 0].copy(),
        "right": labels[..., :, -1].copy(),
        "stats": _block_stats(labels, n, extra, block_stats, n_stats),
    }


def _stats_only(
    mask: np.ndarray, *extra: np.ndarray, block_stats: BlockStats, n_stats: int
) -> np.ndarray:
    labels, n = label_block(mask)
    return _block_stats(labels, n, extra, block_stats, n_stats)


def _check_like(mask: da.Array, extra: Sequence[da.Array]) -> None:
    if mask.ndim < 2:
        raise ValueError(f"the mask must have at least two axes (y, x), got shape {mask.shape}")
    for array in extra:
        if array.shape != mask.shape or array.chunks != mask.chunks:
            raise ValueError(
                f"extra array of shape {array.shape}, chunks {array.chunks} must match the "
                f"mask's shape {mask.shape} and chunks {mask.chunks}"
            )


def _per_block(
    mask: da.Array, extra: Sequence[da.Array], function: Callable[..., Any], **kwargs: Any
) -> list[Any]:
    """One delayed ``function(mask_block, *extra_blocks)`` per block, in C order."""
    blocks = [a.to_delayed(optimize_graph=False).ravel() for a in (mask, *extra)]
    task = dask.delayed(function, pure=True)
    return [task(*parts, **kwargs) for parts in zip(*blocks, strict=True)]


@attrs.frozen(eq=False)
class Components:
    """Components of a chunked boolean array (from :func:`find_components`).

    Attributes
    ----------
    chunks : tuple of tuple of int
        Chunks of the labelled array; lookups need arrays chunked alike.
    global_ids : tuple of numpy.ndarray
        Per block, in C order over the block grid: the component (0..count-1)
        of each of the block's local labels 1..n.
    count : int
        Number of components.
    pixels : numpy.ndarray of int64
        ``(count,)`` pixels of each component.
    """

    chunks: tuple[tuple[int, ...], ...]
    global_ids: tuple[np.ndarray, ...]
    count: int
    pixels: np.ndarray

    def _check(self, mask: da.Array) -> None:
        if mask.chunks != self.chunks:
            raise ValueError(
                f"the mask's chunks {mask.chunks} differ from those the components were found "
                f"on {self.chunks}"
            )

    def _gather(self, per_block: Sequence[np.ndarray]) -> np.ndarray:
        """Sum per-label rows of every block into per-component rows."""
        ids = np.concatenate(self.global_ids) if self.global_ids else np.zeros(0, np.int64)
        rows = np.concatenate(per_block, axis=0)
        out = np.zeros((self.count, rows.shape[1]))
        np.add.at(out, ids, rows)
        return out


def _edge_ids(labels: np.ndarray, offset: int) -> np.ndarray:
    return np.where(labels > 0, labels.astype(np.int64) + (offset - 1), -1)


def _face_pairs(first: np.ndarray, second: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Node pairs touching across a face: ``first[..., i]`` and ``second[..., i + d]``, |d| <= 1."""
    pairs = []
    n = first.shape[-1]
    for d in (-1, 0, 1):
        a = first[..., max(0, -d) : n - max(0, d)]
        b = second[..., max(0, d) : n - max(0, -d)]
        both = (a >= 0) & (b >= 0)
        pairs.append((a[both], b[both]))
    return pairs


def find_components(
    mask: da.Array,
    *extra: da.Array,
    block_stats: BlockStats | None = None,
    n_stats: int = 0,
) -> tuple[Components, np.ndarray]:
    """Label a chunked boolean array globally and sum per-component statistics (eager).

    Parameters
    ----------
    mask : dask.array.Array of bool
        ``(..., y, x)``; components are 8-connected in ``(y, x)`` and never
        span the leading axes.
    *extra : dask.array.Array
        Arrays of the mask's shape and chunks handed to ``block_stats``.
    block_stats : callable, optional
        ``block_stats(labels, n, *extra_blocks)`` returns the ``(n, n_stats)``
        per-label sums of a block (row ``i`` for label ``i + 1``).
    n_stats : int
        Number of columns ``block_stats`` returns.

    Returns
    -------
    components : Components
        The labelling.
    stats : numpy.ndarray of float64
        ``(count, n_stats)`` sums over each component.

    Raises
    ------
    ValueError
        If an extra array does not match the mask's shape and chunks.

    Notes
    -----
    Computes one small task per block on the current scheduler (see the
    module docstring).
    """
    _check_like(mask, extra)
    numblocks = mask.numblocks
    summaries = dask.compute(
        *_per_block(mask, extra, _summary, block_stats=block_stats, n_stats=n_stats)
    )
    counts = np.array([s["n"] for s in summaries], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    total = int(counts.sum())
    flat = np.arange(len(summaries)).reshape(numblocks)

    def ids(index: tuple[int, ...], edge: str) -> np.ndarray:
        b = int(flat[index])
        return _edge_ids(summaries[b][edge], int(offsets[b]))

    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    lead_blocks = numblocks[:-2]
    ny, nx = numblocks[-2:]
    for lead in np.ndindex(*lead_blocks):
        for row in range(ny - 1):
            above = np.concatenate([ids((*lead, row, c), "bottom") for c in range(nx)], axis=-1)
            below = np.concatenate([ids((*lead, row + 1, c), "top") for c in range(nx)], axis=-1)
            pairs += _face_pairs(above, below)
        for col in range(nx - 1):
            left = np.concatenate([ids((*lead, r, col), "right") for r in range(ny)], axis=-1)
            right = np.concatenate([ids((*lead, r, col + 1), "left") for r in range(ny)], axis=-1)
            pairs += _face_pairs(left, right)
    a = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, np.int64)
    b = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(total, total))
    count, component = connected_components(graph, directed=False)
    global_ids = tuple(
        component[offsets[i] : offsets[i] + counts[i]].astype(np.int64)
        for i in range(len(summaries))
    )
    components = Components(
        chunks=mask.chunks,
        global_ids=global_ids,
        count=int(count),
        pixels=np.zeros(0, np.int64),
    )
    pixels = components._gather([s["pixels"][:, None].astype(np.float64) for s in summaries])
    stats = components._gather([s["stats"] for s in summaries])
    components = attrs.evolve(components, pixels=pixels[:, 0].astype(np.int64))
    return components, stats


def component_stats(
    components: Components,
    mask: da.Array,
    *extra: da.Array,
    block_stats: BlockStats,
    n_stats: int,
) -> np.ndarray:
    """Sum more per-component statistics for a known labelling (eager).

    Parameters
    ----------
    components : Components
        From :func:`find_components` on the same mask (same values, same chunks).
    mask : dask.array.Array of bool
        The labelled array, recomputed block by block.
    *extra : dask.array.Array
        Arrays of the mask's shape and chunks handed to ``block_stats``.
    block_stats : callable
        As in :func:`find_components`.
    n_stats : int
        Number of columns ``block_stats`` returns.

    Returns
    -------
    numpy.ndarray of float64
        ``(count, n_stats)``.
    """
    components._check(mask)
    _check_like(mask, extra)
    per_block = dask.compute(
        *_per_block(mask, extra, _stats_only, block_stats=block_stats, n_stats=n_stats)
    )
    return components._gather(list(per_block))


def _lookup(mask: np.ndarray, table: np.ndarray) -> np.ndarray:
    labels, _ = label_block(mask)
    return table[labels]


def map_components(
    components: Components,
    mask: da.Array,
    values: np.ndarray,
    *,
    fill: object = 0,
    dtype: np.dtype | type | None = None,
) -> da.Array:
    """Paint each component's value on its pixels (lazy).

    Parameters
    ----------
    components : Components
        From :func:`find_components` on ``mask``.
    mask : dask.array.Array of bool
        The labelled array (same values and chunks as when labelled).
    values : numpy.ndarray
        ``(count,)`` value of each component.
    fill : scalar
        Value of pixels outside every component.
    dtype : numpy dtype, optional
        Output dtype; default that of ``values``.

    Returns
    -------
    dask.array.Array
        The mask's shape and chunks; one task per block, each carrying only
        the table of its own labels.
    """
    components._check(mask)
    values = np.asarray(values)
    if values.shape != (components.count,):
        raise ValueError(
            f"values have shape {values.shape}; expected one per component ({components.count})"
        )
    dtype = np.dtype(dtype or values.dtype)
    blocks = mask.to_delayed(optimize_graph=False)
    out = np.empty(mask.numblocks, dtype=object)
    lookup = dask.delayed(_lookup, pure=True)
    for flat_index, index in enumerate(np.ndindex(*mask.numblocks)):
        table = np.concatenate(
            [np.array([fill], dtype=dtype), values[components.global_ids[flat_index]].astype(dtype)]
        )
        shape = tuple(chunks[i] for chunks, i in zip(mask.chunks, index, strict=True))
        out[index] = da.from_delayed(lookup(blocks[index], table), shape=shape, dtype=dtype)
    return da.block(out.tolist())
