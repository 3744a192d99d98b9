"""Interpolation over the coadd's ``NO_DATA`` pixels (``doInterp``, ``interpImage``).

What the reference does (``InterpImageTask`` on each sub-band coadd, with the
``NO_DATA`` plane): every run of consecutive ``NO_DATA`` pixels along a row
(along a column with ``interpImage.transpose``) is filled from the good pixels
at its two ends, and the filled pixels get the ``INTRP`` plane; a run that
touches the edge of the image tapers to a *fallback value* (a statistic of the
image, ``interpImage.fallbackValueType``) when
``interpImage.useFallbackValueAtEdge`` is set. Afterwards a variance that is
not positive is set to infinity. dcr_dask does the same, in its own words:

* a run with good pixels on both sides gets the straight line between the two
  nearest good pixels (the reference uses tabulated weights of a few
  neighbours for runs shorter than 11 pixels; both are linear in the two ends
  for long runs);
* a run that touches the edge, with ``useFallbackValueAtEdge``: its
  :data:`TAPER_PX` pixels nearest the good side go linearly from the good
  pixel's value to the fallback value, the rest hold the fallback value (the
  reference's ``nUseInterp = 6``); without it, the nearest good value is
  carried to the edge;
* a whole row (column) without a good pixel holds the fallback value (0 when
  ``useFallbackValueAtEdge`` is False, as in the reference);
* the variance is interpolated in the same way, except that the nearest good
  variance (never the image's fallback value) is carried to an edge, and a
  whole row without a good pixel has infinite variance; a variance that is not
  finite and positive becomes ``+inf``.

The fallback value of each image is ``MEAN``, ``MEDIAN`` or ``MEANCLIP`` of its
pixels outside the holes, or ``fallbackUserValue`` (``USER``), raised to 0
unless ``negativeFallbackAllowed``. ``interpImage.modelPsf`` has no effect:
the reference's interpolation takes a PSF but does not use it.

How it is computed
    The nearest good pixel on each side of every pixel is found by a
    cumulative scan along the row (:func:`dask.array.reductions.cumreduction`,
    once forward and once backward), which carries the last good position and
    value across chunk borders; everything else is element-wise. So the
    result does not depend on the chunking, however long a hole is, no chunk
    needs a halo, and the graph has a fixed number of tasks per chunk. The
    fallback statistics are the only whole-image values: ``MEAN`` is a Dask
    reduction, ``MEDIAN`` and ``MEANCLIP`` a few passes of one task per chunk
    (:mod:`dcr_dask.graph.clipped_stats`, as the visit weights are).
"""

from __future__ import annotations

from typing import Any

import attrs
import dask.array as da
import numpy as np
from dask.array.reductions import cumreduction

from dcr_dask.graph.clipped_stats import plane_clipped_means, plane_quantiles

__all__ = [
    "TAPER_PX",
    "InterpSettings",
    "fallback_value",
    "fill_line_gaps",
    "interpolate_holes",
]

#: Pixels of an edge run that taper from the nearest good value to the fallback value
#: (the reference's ``nUseInterp``).
TAPER_PX = 6

#: afw's defaults for ``MEANCLIP``: 3 sigma, 3 passes.
_MEANCLIP_SIGMA = 3.0
_MEANCLIP_ITERATIONS = 3


@attrs.frozen
class InterpSettings:
    """What ``doInterp`` and ``interpImage`` ask for (:func:`dcr_dask.settings.interp_settings`).

    Attributes
    ----------
    enabled : bool
        ``doInterp``.
    along_columns : bool
        ``interpImage.transpose``: runs are followed along ``y`` instead of ``x``.
    use_fallback_at_edge : bool
        ``interpImage.useFallbackValueAtEdge``.
    fallback_type : str
        ``interpImage.fallbackValueType``: ``MEAN``, ``MEDIAN``, ``MEANCLIP`` or ``USER``.
    fallback_user_value : float
        ``interpImage.fallbackUserValue``, flux unit.
    negative_fallback_allowed : bool
        ``interpImage.negativeFallbackAllowed``.
    """

    enabled: bool
    along_columns: bool = False
    use_fallback_at_edge: bool = True
    fallback_type: str = "MEDIAN"
    fallback_user_value: float = 0.0
    negative_fallback_allowed: bool = False


# ----------------------------------------------------------------------------- NumPy kernels


def _fill_forward(values: np.ndarray, axis: int) -> np.ndarray:
    """Replace each NaN by the last non-NaN value before it along ``axis`` (NaN if none)."""
    values = np.moveaxis(np.asarray(values, dtype=np.float64), axis, -1)
    n = values.shape[-1]
    index = np.where(np.isnan(values), -1, np.arange(n))
    last = np.maximum.accumulate(index, axis=-1)
    filled = np.take_along_axis(values, np.maximum(last, 0), axis=-1)
    filled = np.where(last >= 0, filled, np.nan)
    return np.moveaxis(filled, -1, axis)


def _later_unless_nan(earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
    """The scan's combining step: ``later`` where it is known, else ``earlier``."""
    return np.where(np.isnan(later), earlier, later)


def fill_line_gaps(
    position: np.ndarray,
    values: np.ndarray,
    left: tuple[np.ndarray, np.ndarray],
    right: tuple[np.ndarray, np.ndarray],
    *,
    fallback: float | np.ndarray | None,
    empty_value: float | np.ndarray,
) -> np.ndarray:
    """Values of hole pixels from the nearest good pixel on each side (one NumPy block).

    Parameters
    ----------
    position : numpy.ndarray
        Index of each pixel along the line, pixels.
    values : numpy.ndarray
        The image; NaN marks a hole pixel.
    left, right : tuple of numpy.ndarray
        ``(position, value)`` of the nearest good pixel before and after each
        pixel along the line; NaN where there is none.
    fallback : float or numpy.ndarray or None
        Value an edge run tapers to over :data:`TAPER_PX` pixels (an array
        broadcasting against ``values``: the graph gives one per plane); None
        carries the nearest good value to the edge.
    empty_value : float or numpy.ndarray
        Value of a pixel whose line has no good pixel at all.

    Returns
    -------
    numpy.ndarray of float64
        ``values`` with every hole filled.
    """
    (left_at, left_value), (right_at, right_value) = left, right
    has_left, has_right = ~np.isnan(left_at), ~np.isnan(right_at)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = (position - left_at) / (right_at - left_at)
        inside = left_value + (right_value - left_value) * fraction
        # one side only: the good pixel's value, tapered to the fallback
        near_at = np.where(has_left, left_at, right_at)
        near_value = np.where(has_left, left_value, right_value)
        if fallback is None:
            edge = near_value
        else:
            reach = np.minimum(np.abs(position - near_at), TAPER_PX + 1) / (TAPER_PX + 1)
            edge = near_value + (fallback - near_value) * reach
    filled = np.where(
        has_left & has_right, inside, np.where(has_left | has_right, edge, empty_value)
    )
    return np.where(np.isnan(values), filled, values)


# ----------------------------------------------------------------------------- Dask graph


def _nearest_good(known: da.Array, axis: int, *, backward: bool) -> da.Array:
    """For every pixel, the nearest known value at or before it along ``axis`` (after it
    with ``backward``); NaN where there is none. Stacked quantities share the scan."""
    if backward:
        flip = [slice(None)] * known.ndim
        flip[axis] = slice(None, None, -1)
        return _nearest_good(known[tuple(flip)], axis, backward=False)[tuple(flip)]
    return cumreduction(
        _fill_forward, _later_unless_nan, np.nan, known, axis=axis, dtype=np.float64
    )


def interpolate_holes(
    image: da.Array,
    holes: da.Array,
    *,
    along_columns: bool = False,
    fallback: Any = None,
    empty_value: Any = 0.0,
) -> da.Array:
    """Fill the hole pixels of each plane from the nearest good pixels of their row (lazy).

    Parameters
    ----------
    image : dask.array.Array
        ``(..., y, x)`` planes, any float dtype.
    holes : dask.array.Array of bool
        ``(y, x)`` pixels to fill, the same in every plane; chunked like the
        last two axes of ``image``.
    along_columns : bool
        Follow columns (``y``) instead of rows (``x``).
    fallback : float, array-like, dask scalar or None
        Value edge runs taper to; one per leading index of ``image`` (shape
        ``image.shape[:-2]``) or one for all; None carries the nearest good
        value to the edge instead.
    empty_value : float, array-like or dask scalar
        Value of a whole row (column) without a good pixel, shaped as ``fallback``.

    Returns
    -------
    dask.array.Array
        ``image`` with the holes filled, same shape, chunks and dtype.
    """
    axis = image.ndim - (2 if along_columns else 1)
    dtype = image.dtype
    holes = da.broadcast_to(holes, image.shape, chunks=image.chunks)
    values = da.where(holes, np.nan, image.astype(np.float64))
    position = da.broadcast_to(
        da.arange(image.shape[axis], chunks=image.chunks[axis], dtype=np.float64).reshape(
            (-1,) + (1,) * (image.ndim - 1 - axis)
        ),
        image.shape,
        chunks=image.chunks,
    )
    known_at = da.where(holes, np.nan, position)
    # position and value travel together through one scan per direction
    both = da.stack([known_at, values])
    scan_axis = axis + 1
    left = _nearest_good(both, scan_axis, backward=False)
    right = _nearest_good(both, scan_axis, backward=True)
    lead = image.shape[:-2]

    def per_plane(value: Any) -> da.Array:
        # one value per leading index, chunked like the planes so that blocks pair up
        plane = da.asarray(value, dtype=np.float64)
        plane = plane.reshape((*plane.shape, 1, 1) if plane.ndim else (1,) * image.ndim)
        return da.broadcast_to(plane, (*lead, 1, 1)).rechunk((*image.chunks[:-2], (1,), (1,)))

    use_fallback = fallback is not None
    fallback_arr = per_plane(fallback if use_fallback else 0.0)
    empty_arr = per_plane(empty_value)

    def block(
        position: np.ndarray,
        values: np.ndarray,
        left: np.ndarray,
        right: np.ndarray,
        fallback_block: np.ndarray,
        empty_block: np.ndarray,
    ) -> np.ndarray:
        filled = fill_line_gaps(
            position,
            values,
            (left[0], left[1]),
            (right[0], right[1]),
            fallback=fallback_block if use_fallback else None,
            empty_value=empty_block,
        )
        return filled.astype(dtype)

    index = tuple(range(image.ndim))
    return da.blockwise(
        block,
        index,
        position,
        index,
        values,
        index,
        left,
        (-1, *index),
        right,
        (-1, *index),
        fallback_arr,
        index,
        empty_arr,
        index,
        dtype=dtype,
        concatenate=True,
        align_arrays=False,
    )


def fallback_value(image: da.Array, holes: da.Array, settings: InterpSettings) -> da.Array:
    """The value each plane's edge runs taper to: a statistic of its good pixels.

    ``MEAN`` and ``USER`` are lazy; ``MEDIAN`` and ``MEANCLIP`` are computed
    when called, chunk by chunk (:mod:`dcr_dask.graph.clipped_stats`), and
    returned as a Dask array all the same.

    Parameters
    ----------
    image : dask.array.Array
        ``(..., y, x)`` planes.
    holes : dask.array.Array of bool
        ``(y, x)`` pixels left out of the statistic (the holes).
    settings : InterpSettings
        ``fallback_type`` (``MEAN``, ``MEDIAN``, ``MEANCLIP`` with afw's 3 sigma
        and 3 passes, or ``USER``), ``fallback_user_value`` and
        ``negative_fallback_allowed`` (else a negative value is raised to 0).

    Returns
    -------
    dask.array.Array of float64
        Shape ``image.shape[:-2]``; 0 for a plane without a good pixel.
    """
    lead = image.shape[:-2]
    if settings.fallback_type == "USER":
        value = da.full(lead, settings.fallback_user_value, dtype=np.float64)
    elif settings.fallback_type == "MEAN":
        good = ~da.broadcast_to(holes, image.shape, chunks=image.chunks)
        total = da.where(good, image.astype(np.float64), 0.0).sum(axis=(-2, -1))
        count = good.sum(axis=(-2, -1))
        value = da.where(count > 0, total / da.maximum(count, 1), 0.0)
    else:
        # eager, chunk by chunk: a task holding a whole plane would grow with the tile
        flat = image.reshape((-1, *image.shape[-2:]))
        outside = da.asarray(holes).rechunk(flat.chunks[1:])
        good = ~da.broadcast_to(outside, flat.shape, chunks=flat.chunks)
        if settings.fallback_type == "MEDIAN":
            statistic = plane_quantiles(flat, good, (0.5,))[0][0]
        else:
            statistic = plane_clipped_means(flat, good, _MEANCLIP_SIGMA, _MEANCLIP_ITERATIONS)
        value = da.from_array(np.where(np.isfinite(statistic), statistic, 0.0).reshape(lead))
    if not settings.negative_fallback_allowed:
        value = da.maximum(value, 0.0)
    return value
