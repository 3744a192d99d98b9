"""The DCR-matched template of a visit from an output store.

The FITS file ``dcr-dask template`` writes is described in docs/file-formats.md,
"DCR-matched templates". The store's configuration (band, sub-bands, shift
method and geometry options) and tile WCS are read here; the graph that shifts
and sums the sub-band planes is :func:`dcr_dask.graph.template.forward_model_tile`.
This is what image differencing subtracts.
"""

from __future__ import annotations

import logging
import math
import os
from typing import cast

import numpy as np
import xarray as xr
from astropy.wcs import WCS

from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.errors import InputError, raise_collected
from dcr_dask.graph.psf_matching import gaussian_stamp
from dcr_dask.graph.template import forward_model_tile
from dcr_dask.io.fits import read_warp_header, read_warp_psf, wcs_from_header_text
from dcr_dask.kernels.psf import psf_minor_variance
from dcr_dask.kernels.shift import ShiftMethod
from dcr_dask.settings import dcr_shifts
from dcr_dask.visit import VisitInfo

__all__ = [
    "WCS_TOLERANCE_PX",
    "check_visit_for_store",
    "config_from_store",
    "matched_template",
    "template_psf_blur",
    "visit_file_psf_variance",
    "visit_psf_variance",
]

log = logging.getLogger(__name__)


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


def visit_file_psf_variance(path: str | os.PathLike[str], visit: VisitInfo) -> float | None:
    """A visit file's PSF width across DCR as a run measures it, px².

    Parameters
    ----------
    path : str or path-like
        A warp, or a file holding only a visit header.
    visit : VisitInfo
        Its metadata (:func:`dcr_dask.io.fits.read_visit_file`).

    Returns
    -------
    float or None
        :func:`dcr_dask.kernels.psf.psf_minor_variance` of the warp's PSF HDU,
        else of the Gaussian of the visit's ``PSF-FWHM``; None if neither.
    """
    try:
        _, layout = read_warp_header(path)
        stamp = read_warp_psf(path, layout)
    except (InputError, ValueError, OSError):  # a header-only file is not a warp
        stamp = None
    if stamp is not None:
        return psf_minor_variance(np.asarray(stamp, dtype=np.float64))
    return visit_psf_variance(visit)


def visit_psf_variance(visit: VisitInfo) -> float | None:
    """:func:`dcr_dask.kernels.psf.psf_minor_variance` of the Gaussian of a visit's
    ``PSF-FWHM`` (px²), as a run stands in for a warp without a PSF HDU; None without it."""
    fwhm = visit.psf_fwhm_px
    if fwhm is None or not math.isfinite(fwhm) or fwhm <= 0:
        return None
    return psf_minor_variance(gaussian_stamp(float(fwhm)))


def template_psf_blur(store: xr.Dataset, psf_variance: float | None) -> float | None:
    """Variance, px², of the Gaussian that widens a store's model to a visit's PSF.

    Parameters
    ----------
    store : xarray.Dataset
        An output store.
    psf_variance : float or None
        The visit's PSF variance across DCR, px² (:func:`visit_file_psf_variance`).

    Returns
    -------
    float or None
        ``σ_v² − σ_model²`` (0 for a visit sharper than the model) when the
        store was fitted with ``psfForwardModel="gaussian"`` and the visit's
        PSF is known; None otherwise (the template is at the model's PSF; a
        warning says so when the store has a PSF of its own).
    """
    model = store.attrs.get("model_psf_variance_px2")
    if model is None:
        return None
    if psf_variance is None or not math.isfinite(psf_variance) or psf_variance <= 0:
        log.warning(
            "the visit's PSF is unknown: its template is at the model's PSF "
            "(sigma %.2f px across DCR), not widened to the visit's",
            math.sqrt(float(model)),
        )
        return None
    return max(float(psf_variance) - float(model), 0.0)


def matched_template(
    store: xr.Dataset,
    visit: VisitInfo,
    *,
    config: DcrAssembleCoaddConfig | None = None,
    wcs: WCS | None = None,
    psf_variance_px2: float | None = None,
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
    psf_variance_px2 : float, optional
        The visit's PSF variance across DCR, px² (:func:`visit_file_psf_variance`);
        defaults to that of the Gaussian of ``visit.psf_fwhm_px``. A store
        fitted with ``psfForwardModel="gaussian"`` is widened to it
        (:func:`template_psf_blur`); other stores ignore it.

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` float32 template on the tile, chunked as the store.
    """
    config = config or config_from_store(store)
    wcs = wcs or wcs_from_header_text(store.attrs["wcs_header"])
    ny, nx = store.sizes["y"], store.sizes["x"]
    planes = store["dcr_model"].data

    # one shift object: the band read once, each chunk's centre evaluated once
    shifts = dcr_shifts([visit], wcs, config, (ny, nx))
    blur = None
    if store.attrs.get("model_psf_variance_px2") is not None:  # null unless fitted with it
        variance = visit_psf_variance(visit) if psf_variance_px2 is None else psf_variance_px2
        blur = template_psf_blur(store, variance)
    template = forward_model_tile(
        planes,
        lambda y, x: shifts.at(x, y).shifts_px,
        max_shift_px=float(np.abs(shifts.at_centre().shifts_px).max()),
        accelerate=1.0,
        method=cast(ShiftMethod, str(config.shiftMethod)),  # the config allows only these
        order=int(config.imageInterpOrder),
        precision=str(config.shiftPrecision),
        psf_blur=None if blur is None else np.array([blur]),
    )[0]
    return xr.DataArray(
        template, dims=("y", "x"), coords={"y": store["y"], "x": store["x"]}, name="template"
    )
