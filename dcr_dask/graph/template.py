"""DCR-matched templates: the sky a given visit would have seen.

The FITS file ``dcr-dask template`` writes is described in docs/file-formats.md,
"DCR-matched templates".

Each sub-band model of an output store is shifted by that visit's DCR and the
shifted planes are summed. This is what image differencing subtracts.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import dask.array as da
import numpy as np
import xarray as xr
from astropy.wcs import WCS

from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.errors import InputError, raise_collected
from dcr_dask.graph.halos import forward_model_halo
from dcr_dask.graph.overlap import map_yx_overlap
from dcr_dask.io.fits import wcs_from_header_text
from dcr_dask.kernels import model as kernels
from dcr_dask.physics.subbands import run_shifts
from dcr_dask.visit import VisitInfo

__all__ = [
    "WCS_TOLERANCE_PX",
    "check_visit_for_store",
    "config_from_store",
    "forward_model_tile",
    "matched_template",
]

#: Largest distance, pixels, between where a visit's reference pixel lies on the visit's
#: WCS and where the store's tile WCS puts the same sky position.
WCS_TOLERANCE_PX = 0.5


def config_from_store(store: xr.Dataset) -> DcrAssembleCoaddConfig:
    """The configuration a store was made with (from its ``config`` attribute)."""
    config = DcrAssembleCoaddConfig()
    config.update(**store.attrs["config"])
    return config


def check_visit_for_store(
    store: xr.Dataset, visit: VisitInfo, wcs: WCS | None, filename: str | os.PathLike[str]
) -> None:
    """Refuse a visit whose template the store cannot make: another band, another tile.

    Parameters
    ----------
    store : xarray.Dataset
        An output store (its ``band`` attribute, absent from stores written
        before dcr_dask recorded it, and its ``wcs_header``).
    visit : VisitInfo
        The visit's metadata.
    wcs : astropy.wcs.WCS or None
        The visit's WCS in tile pixels (None for a header-only file: not checked).
    filename : str or path-like
        The visit's file, for messages.

    Raises
    ------
    InputError, InputErrors
        If the visit's band differs from the store's, or its reference pixel
        lands more than :data:`WCS_TOLERANCE_PX` pixels away on the store's tile WCS.
    """
    errors = []
    band = store.attrs.get("band")
    if band is not None and visit.band != band:
        errors.append(
            InputError(
                f"the visit's band {visit.band!r} differs from the model's band {band!r}",
                filename=str(filename),
                keyword="FILTER/BAND",
            )
        )
    if wcs is not None:
        tile = wcs_from_header_text(store.attrs["wcs_header"])
        x, y = (float(c) - 1.0 for c in wcs.wcs.crpix)  # 0-based
        with np.errstate(invalid="ignore"):
            ra, dec = wcs.pixel_to_world_values(x, y)
            tx, ty = tile.world_to_pixel_values(ra, dec)
        offset = float(np.hypot(tx - x, ty - y))
        if not offset <= WCS_TOLERANCE_PX:
            errors.append(
                InputError(
                    f"the visit's WCS does not match the model's tile WCS: its reference pixel "
                    f"(x, y) = ({x:.2f}, {y:.2f}) at (RA, Dec) = ({float(ra):.6f}, "
                    f"{float(dec):.6f}) deg lies at ({float(tx):.2f}, {float(ty):.2f}) on the "
                    f"tile, {offset:.3g} px away (tolerance {WCS_TOLERANCE_PX} px)",
                    filename=str(filename),
                    keyword="IMAGE WCS",
                )
            )
    raise_collected(errors)


def matched_template(
    store: xr.Dataset,
    visit: VisitInfo,
    *,
    config: DcrAssembleCoaddConfig | None = None,
    wcs: WCS | None = None,
) -> xr.DataArray:
    """The DCR-matched template of one visit, lazily.

    Parameters
    ----------
    store : xarray.Dataset
        An output store (its ``dcr_model`` planes are the amplified sub-band
        models, which the fit's forward model uses as they are).
    visit : VisitInfo
        Metadata of the visit (a warp, or just its header).
    config : DcrAssembleCoaddConfig, optional
        Defaults to the store's own configuration (band, sub-bands, split,
        shift method and geometry options).
    wcs : astropy.wcs.WCS, optional
        Tile WCS; defaults to the store's.

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` float32 template on the tile, chunked as the store.
    """
    config = config or config_from_store(store)
    wcs = wcs or wcs_from_header_text(store.attrs["wcs_header"])
    ny, nx = store.sizes["y"], store.sizes["x"]
    planes = store["dcr_model"].data

    def shifts_at(y: float, x: float) -> np.ndarray:
        return run_shifts([visit], wcs, config, x=x, y=y).shifts_px

    centre = shifts_at((ny - 1) / 2.0, (nx - 1) / 2.0)
    template = forward_model_tile(
        planes,
        lambda y, x: shifts_at(y, x) if config.useLocalGeometry else centre,
        max_shift_px=float(np.abs(centre).max()),
        accelerate=1.0,
        method=str(config.shiftMethod),
        order=int(config.imageInterpOrder),
        precision=str(config.shiftPrecision),
    )[0]
    return xr.DataArray(
        template, dims=("y", "x"), coords={"y": store["y"], "x": store["x"]}, name="template"
    )


def forward_model_tile(
    planes: da.Array,
    shifts_at: Callable[[float, float], np.ndarray],
    *,
    max_shift_px: float,
    accelerate: float,
    method: str,
    order: int,
    precision: str | None = None,
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

    Returns
    -------
    dask.array.Array
        ``(V, ny, nx)`` float32 templates, chunked as ``planes`` on ``(y, x)``
        with all visits in each chunk.
    """
    planes = da.asarray(planes).rechunk({0: -1})  # a loaded store gives NumPy planes
    depth = forward_model_halo(max_shift_px, method)
    starts_y = np.cumsum((0, *planes.chunks[1]))
    starts_x = np.cumsum((0, *planes.chunks[2]))
    n_visits = np.asarray(shifts_at((starts_y[-1] - 1) / 2.0, (starts_x[-1] - 1) / 2.0)).shape[0]

    def block(grown: np.ndarray, block_info=None) -> np.ndarray:
        _, i, j = block_info[0]["chunk-location"]
        shifts = shifts_at(
            (starts_y[i] + starts_y[i + 1] - 1) / 2.0, (starts_x[j] + starts_x[j + 1] - 1) / 2.0
        )
        templates = kernels.forward_models(
            grown, shifts, accelerate=accelerate, method=method, order=order, precision=precision
        )
        return templates.astype(np.float32)

    # beyond the tile: no sky (the planes are 0)
    return map_yx_overlap(
        block,
        planes,
        halo=depth,
        boundary=0,
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
        leading_chunks=((n_visits,),),
    )
