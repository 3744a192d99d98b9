"""The template graph takes each block's shifts at the centre of the block that runs."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
from dask.array.overlap import ensure_minimum_chunksize

from dcr_dask.graph.halos import forward_model_halo
from dcr_dask.graph.template import forward_model_tile


def _shifts_at(y: float, x: float) -> np.ndarray:
    """One visit, two sub-bands, shifts that change across the tile (local geometry)."""
    shifts = np.zeros((1, 2, 1, 2))
    shifts[0, :, 0, 0] = [0.3 + y / 100.0, -0.3 - y / 100.0]
    shifts[0, :, 0, 1] = [x / 80.0, -x / 80.0]
    return shifts


def test_thin_chunks_merged_by_the_overlap_take_their_own_centres():
    rng = np.random.default_rng(5)
    planes = rng.normal(size=(2, 48, 40)).astype(np.float32)
    depth = forward_model_halo(1.0, "fourier")
    thin_y = (4,) * 12  # thinner than the halo: the overlap merges them
    merged_y = ensure_minimum_chunksize(depth, thin_y)
    assert merged_y != thin_y
    kwargs = dict(max_shift_px=1.0, accelerate=1.0, method="fourier", order=3)
    with dask.config.set(scheduler="synchronous"):
        thin = forward_model_tile(
            da.from_array(planes, chunks=(2, thin_y, 40)), _shifts_at, **kwargs
        )
        merged = forward_model_tile(
            da.from_array(planes, chunks=(2, merged_y, 40)), _shifts_at, **kwargs
        )
        assert thin.chunks == ((1,), thin_y, (40,))
        np.testing.assert_array_equal(thin.compute(), merged.compute())
