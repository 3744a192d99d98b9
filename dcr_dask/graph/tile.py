"""What every graph over a tile of warps reads: its pixel arrays and tile attributes."""

from __future__ import annotations

import dask.array as da
import xarray as xr

__all__ = ["TILE_ATTRS", "pixel_arrays"]

#: Attributes that describe the tile (mask bits, WCS, shape), carried from inputs to results.
TILE_ATTRS = ("mask_planes", "wcs_header", "tile_shape")


def pixel_arrays(dataset: xr.Dataset) -> tuple[da.Array, da.Array, da.Array]:
    """``image``, ``variance``, ``mask`` as Dask arrays with the image's chunks.

    Parameters
    ----------
    dataset : xarray.Dataset
        Warps (or PSF-matched warps) with ``image``, ``variance`` and ``mask``.

    Returns
    -------
    image, variance, mask : dask.array.Array
    """
    image = da.asarray(dataset["image"].data)
    variance = da.asarray(dataset["variance"].data).rechunk(image.chunks)
    mask = da.asarray(dataset["mask"].data).rechunk(image.chunks)
    return image, variance, mask
