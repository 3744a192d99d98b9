"""Bright-object regions: a ds9 region file read with astropy-regions (``regions``).

The file (docs/file-formats.md, "Bright-object regions") holds shapes with an
area, in sky coordinates (``fk5``, ``icrs``, ``galactic``, ...) or in the
tile's image coordinates (``image``: 1-based, as ds9 counts). Shapes written
with a leading ``-`` (ds9's exclude) are taken out of the union of the others.
Everything is converted to 0-based tile pixels here, through the tile WCS, so
what the rest of the run sees is a list of pixel regions.

Every problem is an :class:`~dcr_dask.errors.InputError` naming the file:
missing or unreadable, a line the parser could not read (``regions`` only
warns and skips it), a shape without an area (point, line, text), or a file
with no shape. A shape that lies wholly off the tile draws a warning naming it.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
from astropy.wcs import WCS

if TYPE_CHECKING:
    from regions import PixelRegion, Region

from dcr_dask.errors import InputError

__all__ = ["BrightObjectRegions", "read_bright_object_regions"]

log = logging.getLogger(__name__)


@attrs.frozen
class BrightObjectRegions:
    """The shapes of a region file, in tile pixels.

    Attributes
    ----------
    include : tuple of regions.PixelRegion
        Shapes whose pixels are masked (0-based tile pixels).
    exclude : tuple of regions.PixelRegion
        Shapes (ds9 ``-shape``) whose pixels are not, whatever ``include`` says.
    path : str
        The file they were read from.
    off_tile : tuple of str
        Descriptions of the shapes that lie wholly off the tile.
    """

    include: tuple[PixelRegion, ...]
    exclude: tuple[PixelRegion, ...]
    path: str
    off_tile: tuple[str, ...] = ()


def _describe(index: int, region: Region) -> str:
    shape = type(region).__name__.removesuffix("PixelRegion").removesuffix("SkyRegion").lower()
    return f"region {index + 1} ({shape})"


def read_bright_object_regions(
    path: str | os.PathLike[str], wcs: WCS, shape: tuple[int, int]
) -> BrightObjectRegions:
    """Read a ds9 region file and place its shapes on the tile.

    Parameters
    ----------
    path : path-like
        The region file (ds9 format, read by ``regions.Regions.read``).
    wcs : astropy.wcs.WCS
        The tile's celestial WCS (0-based pixels), for shapes in sky coordinates.
    shape : tuple of int
        ``(ny, nx)`` of the tile, pixels.

    Returns
    -------
    BrightObjectRegions

    Raises
    ------
    InputError
        If the file is missing or unreadable, a line cannot be parsed, a shape
        has no area, or no shape is left; the message names the file.

    Warns
    -----
    UserWarning
        For each shape that lies wholly off the tile (it masks nothing).
    """
    from regions import Regions, SkyRegion

    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise InputError("no such region file (doMaskBrightObjects)", filename=where)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            shapes = list(Regions.read(os.fspath(path), format="ds9"))
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"cannot read the region file ({error})", filename=where) from None
        except Exception as error:  # the ds9 parser raises what its shape classes raise
            raise InputError(
                f"not a ds9 region file: {type(error).__name__}: {error}", filename=where
            ) from None
    skipped = [str(w.message) for w in caught if "unable to parse" in str(w.message)]
    if skipped:
        raise InputError(f"ds9 region that cannot be parsed: {skipped[0]}", filename=where)
    if not shapes:
        raise InputError("the region file holds no region", filename=where)
    ny, nx = shape
    include: list[PixelRegion] = []
    exclude: list[PixelRegion] = []
    off_tile: list[str] = []
    for index, region in enumerate(shapes):
        name = _describe(index, region)
        try:
            pixels = region.to_pixel(wcs) if isinstance(region, SkyRegion) else region
            area = float(pixels.area)
            box = pixels.bounding_box
        except Exception as error:  # a shape regions cannot place or measure
            raise InputError(
                f"{name} cannot be placed on the tile ({error})", filename=where
            ) from None
        if not area > 0:
            raise InputError(
                f"{name} has no area: a bright-object mask needs circles, boxes, ellipses or "
                "polygons",
                filename=where,
            )
        if box.ixmax <= 0 or box.iymax <= 0 or box.ixmin >= nx or box.iymin >= ny:
            off_tile.append(name)
            warnings.warn(
                f"{where}: {name} lies wholly off the {ny}x{nx} tile and masks nothing",
                UserWarning,
                stacklevel=2,
            )
            continue
        (include if region.meta.get("include", 1) else exclude).append(pixels)
    log.info(
        "bright-object regions from %s: %d masked, %d excluded, %d off the tile",
        where,
        len(include),
        len(exclude),
        len(off_tile),
    )
    return BrightObjectRegions(tuple(include), tuple(exclude), where, tuple(off_tile))
