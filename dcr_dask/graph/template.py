"""DCR-matched templates over a tile, lazily: the sky given visits would have seen.

Each sub-band plane is shifted by each visit's DCR and the shifted planes are
summed (:func:`forward_model_tile`). The template of a visit from an output
store (its config, its WCS, its checks) is
:func:`dcr_dask.running.templates.matched_template`; the names that lived
here still import from this module, with a ``DeprecationWarning``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
from dask.array.overlap import ensure_minimum_chunksize

from dcr_dask._moved import moved_names
from dcr_dask.graph.halos import forward_model_halo, psf_blur_reach
from dcr_dask.graph.overlap import map_yx_overlap
from dcr_dask.kernels import model as kernels
from dcr_dask.kernels.shift import ShiftMethod

__all__ = ["forward_model_tile"]


def forward_model_tile(
    planes: da.Array,
    shifts_at: Callable[[float, float], np.ndarray],
    *,
    max_shift_px: float,
    accelerate: float,
    method: ShiftMethod,
    order: int,
    precision: str | None = None,
    psf_blur: np.ndarray | None = None,
) -> da.Array:
    """DCR-matched templates of several visits over a whole tile, lazily.

    Each chunk of the sub-band planes, grown by the largest shift plus the
    interpolation's reach, is forward-modelled
    (:func:`dcr_dask.kernels.model.forward_models`) with the shifts of the chunk's
    centre; the growth is then trimmed off.

    Parameters
    ----------
    planes : dask.array.Array
        ``(S, ny, nx)`` sub-band planes: the fit's planes ``M_s`` (with the
        run's ``accelerateModel``) or a store's amplified ``dcr_model``
        (with ``accelerate=1``).
    shifts_at : callable
        ``shifts_at(y, x)`` gives the ``(V, S, K, 2)`` forward shifts, pixels,
        at a tile position (the same everywhere unless the geometry is local).
    max_shift_px : float
        Largest shift component anywhere, pixels.
    accelerate : float
        ``accelerateModel`` applied to ``planes``.
    method : {"spline", "sinc", "fourier"}
        ``shiftMethod``.
    order : int
        ``imageInterpOrder``.
    precision : {"single", "double"}, optional
        ``shiftPrecision``.
    psf_blur : numpy.ndarray, optional
        ``(V,)`` variances, px², of the Gaussians that widen the model's PSF
        to each visit's (``psfForwardModel="gaussian"``); None: none.

    Returns
    -------
    dask.array.Array
        ``(V, ny, nx)`` float32 templates, chunked as ``planes`` on ``(y, x)``
        with all visits in each chunk.
    """
    planes = da.asarray(planes).rechunk({0: -1})  # a loaded store gives NumPy planes
    blur = None if psf_blur is None else np.asarray(psf_blur, dtype=np.float64)
    depth = forward_model_halo(max_shift_px, method)
    if blur is not None and blur.size:
        depth += psf_blur_reach(float(blur.max()))
    chunks_yx = planes.chunks[1:]
    if depth:
        # the blocks the overlap will really make: it merges chunks thinner than the halo
        # into their neighbours, and each block's shifts are taken at its own centre
        planes = planes.rechunk(
            {axis: ensure_minimum_chunksize(depth, planes.chunks[axis]) for axis in (1, 2)}
        )
    starts_y = np.cumsum((0, *planes.chunks[1]))
    starts_x = np.cumsum((0, *planes.chunks[2]))
    n_visits = np.asarray(shifts_at((starts_y[-1] - 1) / 2.0, (starts_x[-1] - 1) / 2.0)).shape[0]

    def block(grown: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None  # map_blocks passes it: the signature names it
        _, i, j = block_info[0]["chunk-location"]
        shifts = shifts_at(
            (starts_y[i] + starts_y[i + 1] - 1) / 2.0, (starts_x[j] + starts_x[j + 1] - 1) / 2.0
        )
        templates = kernels.forward_models(
            grown,
            shifts,
            accelerate=accelerate,
            method=method,
            order=order,
            precision=precision,
            psf_blur=blur,
        )
        return templates.astype(np.float32)

    # beyond the tile: no sky (the planes are 0)
    templates = map_yx_overlap(
        block,
        planes,
        halo=depth,
        boundary=0,
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
        leading_chunks=((n_visits,),),
    )
    return templates.rechunk(((n_visits,), *chunks_yx))


#: Names moved to :mod:`dcr_dask.running.templates` (they read the store's config and WCS).
_MOVED_TO_RUNNING = (
    "WCS_TOLERANCE_PX",
    "check_visit_for_store",
    "config_from_store",
    "matched_template",
)


# by name, so that this layer does not import the one above it
__getattr__ = moved_names(__name__, _MOVED_TO_RUNNING, "dcr_dask.running.templates")
