"""Lazy Dask graphs that stack warps over the visit axis.

The kernels live in :mod:`dcr_dask.stack`; this module only maps them over
the tile's blocks, with the whole visit axis in each block.
"""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import numpy as np
import xarray as xr

from dcr_dask.masks import MaskPlanes
from dcr_dask.stack import weighted_mean

__all__ = ["good_pixels", "plain_coadd", "visit_weights"]


def good_pixels(warps: xr.Dataset, bad_mask_planes: Sequence[str]) -> xr.DataArray:
    """Pixels of each warp that have none of the ``bad_mask_planes`` bits (lazy).

    Parameters
    ----------
    warps : xarray.Dataset
        ``(visit, y, x)`` warps with a ``mask`` variable and a ``mask_planes`` attribute.
    bad_mask_planes : sequence of str
        Plane names (``badMaskPlanes``); planes no input defines are ignored.

    Returns
    -------
    xarray.DataArray of bool
    """
    bad = MaskPlanes(warps.attrs["mask_planes"]).value(bad_mask_planes)
    return (warps["mask"] & bad) == 0


def visit_weights(warps: xr.Dataset, good: xr.DataArray) -> xr.DataArray:
    """Weight of each visit: 1 / mean variance of its good pixels (lazy).

    Parameters
    ----------
    warps : xarray.Dataset
        Warps with a ``variance`` variable.
    good : xarray.DataArray of bool
        Usable pixels (:func:`good_pixels`).

    Returns
    -------
    xarray.DataArray
        ``(visit,)`` weights; 0 for a visit without a good pixel.
    """
    mean_variance = warps["variance"].where(good).mean(dim=("y", "x"))
    return xr.where(mean_variance > 0, 1.0 / mean_variance, 0.0).fillna(0.0)


def _mean_block(images, variances, good, weights):
    mean, variance, n_image = weighted_mean(images, variances, good, weights)
    return np.stack([mean, variance, n_image.astype(np.float32)])


def plain_coadd(
    warps: xr.Dataset, bad_mask_planes: Sequence[str], weights: xr.DataArray | None = None
) -> xr.Dataset:
    """Weighted mean of the warps: the coadd that ignores DCR (lazy).

    Parameters
    ----------
    warps : xarray.Dataset
        ``(visit, y, x)`` warps.
    bad_mask_planes : sequence of str
        Planes whose pixels are left out.
    weights : xarray.DataArray, optional
        ``(visit,)`` weights; default :func:`visit_weights`.

    Returns
    -------
    xarray.Dataset
        ``image``, ``variance`` (float32) and ``n_image`` (uint16) on ``(y, x)``.
    """
    good = good_pixels(warps, bad_mask_planes)
    if weights is None:
        weights = visit_weights(warps, good)
    whole = {"visit": -1}
    stacked = da.blockwise(
        _mean_block,
        "syx",
        warps["image"].chunk(whole).data,
        "vyx",
        warps["variance"].chunk(whole).data,
        "vyx",
        good.chunk(whole).data,
        "vyx",
        da.asarray(weights.data).rechunk(-1),
        "v",
        new_axes={"s": 3},
        concatenate=True,
        dtype=np.float32,
    )
    coords = {name: warps[name] for name in ("y", "x")}
    return xr.Dataset(
        {
            "image": (("y", "x"), stacked[0]),
            "variance": (("y", "x"), stacked[1]),
            "n_image": (("y", "x"), stacked[2].astype(np.uint16)),
        },
        coords=coords,
    )
