"""The bright-object mask (``doMaskBrightObjects``, ``brightObjectMaskName``), block by block.

The reference sets the plane ``brightObjectMaskName`` on every pixel of the
coadd inside a bright-object region (circles and boxes from a catalogue). Here
the regions come from a ds9 region file (:mod:`dcr_dask.io.regions`), and a
pixel is inside a region when its centre is (``regions``' ``contains``). Each
block of the mask is drawn on its own from the regions whose bounding box
meets it, so the graph has one task per block and never holds the tile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import dask.array as da
import numpy as np

__all__ = ["BrightRegions", "bright_object_mask", "inside_regions"]


class BrightRegions(Protocol):
    """Regions in tile pixels, e.g. :class:`dcr_dask.io.regions.BrightObjectRegions`.

    The file is read in :mod:`dcr_dask.io.regions`; the graph sees only this.
    """

    @property
    def include(self) -> Sequence[Any]:
        """Pixel regions to mask (``regions.PixelRegion``)."""
        ...

    @property
    def exclude(self) -> Sequence[Any]:
        """Pixel regions cut out of them."""
        ...


def _union(regions: Sequence, y0: int, x0: int, shape: tuple[int, int]) -> np.ndarray:
    from regions import PixCoord

    ny, nx = shape
    out = np.zeros(shape, dtype=bool)
    for region in regions:
        box = region.bounding_box
        ys, ye = max(box.iymin, y0), min(box.iymax, y0 + ny)
        xs, xe = max(box.ixmin, x0), min(box.ixmax, x0 + nx)
        if ys >= ye or xs >= xe:
            continue
        yy, xx = np.mgrid[ys:ye, xs:xe]
        inside = np.asarray(region.contains(PixCoord(xx, yy)), dtype=bool)
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] |= inside.reshape(yy.shape)
    return out


def inside_regions(
    include: Sequence, exclude: Sequence, y0: int, x0: int, shape: tuple[int, int]
) -> np.ndarray:
    """Pixels of one block whose centre lies in an ``include`` region and in no ``exclude`` one.

    Parameters
    ----------
    include, exclude : sequence of regions.PixelRegion
        Shapes in 0-based tile pixels.
    y0, x0 : int
        Tile pixel of the block's first row and column.
    shape : tuple of int
        ``(ny, nx)`` of the block.

    Returns
    -------
    numpy.ndarray of bool
    """
    return _union(include, y0, x0, shape) & ~_union(exclude, y0, x0, shape)


def bright_object_mask(regions: BrightRegions, chunks: tuple) -> da.Array:
    """The pixels of the tile inside the bright-object regions (lazy).

    Parameters
    ----------
    regions : BrightRegions
        The regions, in tile pixels (:class:`dcr_dask.io.regions.BrightObjectRegions`).
    chunks : tuple
        Dask chunks ``(y_chunks, x_chunks)`` of the tile.

    Returns
    -------
    dask.array.Array of bool
        ``(ny, nx)``, chunked as ``chunks``.
    """
    include, exclude = regions.include, regions.exclude

    def block(block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None  # map_blocks passes it: the signature names it
        info = block_info[None]
        (y0, y1), (x0, x1) = info["array-location"]
        return inside_regions(include, exclude, y0, x0, (y1 - y0, x1 - x0))

    return da.map_blocks(block, chunks=chunks, dtype=bool, meta=np.zeros((0, 0), dtype=bool))
