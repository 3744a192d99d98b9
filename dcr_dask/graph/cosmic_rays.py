"""Cosmic rays on the direct warps, as a lazy graph (``doFindCosmicRays``).

docs/algorithm.md, "Cosmic rays". Each direct warp's pixels sharper than its
PSF allows (:func:`dcr_dask.kernels.cosmic_rays.find_cosmic_rays`) are found
chunk by chunk with a halo of ``grow + 1`` pixels, which makes every chunk's
core exact; the pipeline adds them to CompareWarp's artifacts, so that they are
clipped from the coadds and left out of the DCR fit like any artifact. The PSF
of each visit is its ``psf`` stamp where the warps carry one, else a Gaussian of
the visits' median PSF sigma.
"""

from __future__ import annotations

import attrs
import dask.array as da
import numpy as np
import xarray as xr

from dcr_dask.graph.overlap import map_yx_overlap
from dcr_dask.kernels import cosmic_rays as kernels
from dcr_dask.masks import MaskPlanes

__all__ = ["CosmicRaySettings", "find_cosmic_rays", "visit_contrasts"]


@attrs.frozen
class CosmicRaySettings:
    """What :func:`find_cosmic_rays` reads of a config (``cosmic_ray_settings`` in settings).

    Attributes
    ----------
    enabled : bool
        ``doFindCosmicRays``.
    min_sigma : float
        ``cosmicRayMinSigma``.
    cond3_fac : float
        ``cosmicRayCond3Fac``.
    cond3_fac2 : float
        ``cosmicRayCond3Fac2``.
    grow : int
        ``cosmicRayGrow``.
    bad_mask_planes : tuple of str
        ``badMaskPlanes``: pixels neither tested nor used as neighbours.
    """

    enabled: bool = True
    min_sigma: float = 6.0
    cond3_fac: float = 2.5
    cond3_fac2: float = 0.6
    grow: int = 1
    bad_mask_planes: tuple[str, ...] = ("NO_DATA",)

    def __attrs_post_init__(self) -> None:
        if not self.min_sigma > 0:
            raise ValueError(f"cosmicRayMinSigma must be > 0, got {self.min_sigma}")
        if not self.cond3_fac >= 0:
            raise ValueError(f"cosmicRayCond3Fac must be >= 0, got {self.cond3_fac}")
        if not 0 < self.cond3_fac2 <= 1:
            raise ValueError(f"cosmicRayCond3Fac2 must be in (0, 1], got {self.cond3_fac2}")
        if self.grow < 0:
            raise ValueError(f"cosmicRayGrow must be >= 0, got {self.grow}")


def visit_contrasts(warps: xr.Dataset, fallback_sigma_px: float) -> np.ndarray:
    """Each visit's PSF contrast (:func:`dcr_dask.kernels.cosmic_rays.psf_contrast`).

    Parameters
    ----------
    warps : xarray.Dataset
        Direct warps; their ``psf`` ``(visit, psf_y, psf_x)`` stamps where present.
    fallback_sigma_px : float
        Sigma of the Gaussian PSF of visits without a usable stamp, pixels.

    Returns
    -------
    numpy.ndarray
        ``(visit, 4)``.
    """
    n_visits = warps.sizes["visit"]
    fallback = kernels.gaussian_contrast(fallback_sigma_px)
    if "psf" not in warps.data_vars:
        return np.tile(fallback, (n_visits, 1))
    stamps = np.asarray(warps["psf"].transpose("visit", ...).values)
    out = np.empty((n_visits, len(kernels.DIRECTIONS)))
    for k, stamp in enumerate(stamps):
        try:
            out[k] = kernels.psf_contrast(stamp)
        except ValueError:  # an empty or off-centre stamp: the median PSF instead
            out[k] = fallback
    return out


def _block(
    image: np.ndarray,
    variance: np.ndarray,
    mask: np.ndarray,
    contrast: np.ndarray,
    *,
    bad: int,
    settings: CosmicRaySettings,
) -> np.ndarray:
    return kernels.find_cosmic_rays(
        image,
        variance,
        (mask & bad) == 0,
        contrast[:, 0, :],
        min_sigma=settings.min_sigma,
        cond3_fac=settings.cond3_fac,
        cond3_fac2=settings.cond3_fac2,
        grow=settings.grow,
    )


def find_cosmic_rays(
    warps: xr.Dataset,
    settings: CosmicRaySettings,
    fallback_sigma_px: float,
    variance_scale: np.ndarray | None = None,
) -> xr.DataArray:
    """The direct warps' cosmic-ray pixels (lazy).

    Parameters
    ----------
    warps : xarray.Dataset
        Direct warps ``(visit, y, x)``: ``image``, ``variance``, ``mask`` (with
        ``mask_planes`` in its attributes) and optionally ``psf``.
    settings : CosmicRaySettings
    fallback_sigma_px : float
        PSF sigma of visits without a PSF stamp, pixels.
    variance_scale : numpy.ndarray, optional
        ``(visit,)`` factors the variance is multiplied by (CompareWarp's
        ``doScaleWarpVariance``).

    Returns
    -------
    xarray.DataArray
        ``cosmic_rays`` ``(visit, y, x)`` bool on the warps' chunks; all False
        when ``settings.enabled`` is False.
    """
    image = warps["image"].transpose("visit", "y", "x")
    like = image.data
    if not settings.enabled:
        flags = da.zeros(like.shape, dtype=bool, chunks=like.chunks)
        return image.copy(data=flags).rename("cosmic_rays")
    n_visits = like.shape[0]
    variance = warps["variance"].transpose("visit", "y", "x").data
    if variance_scale is not None:
        scale = np.asarray(variance_scale, dtype=np.float32)
        if scale.shape != (n_visits,):
            raise ValueError(f"variance_scale has shape {scale.shape}; expected ({n_visits},)")
        variance = variance * da.from_array(scale, chunks=(like.chunks[0],))[:, None, None]
    mask = warps["mask"].transpose("visit", "y", "x").data
    bad = int(MaskPlanes(warps.attrs["mask_planes"]).value(settings.bad_mask_planes))
    contrast = visit_contrasts(warps, fallback_sigma_px)[:, None, :]
    flags = map_yx_overlap(
        _block,
        like,
        variance,
        mask,
        halo=settings.grow + 1,
        boundary="none",
        dtype=bool,
        whole=[da.from_array(contrast, chunks=(like.chunks[0], 1, contrast.shape[2]))],
        bad=bad,
        settings=settings,
    )
    return image.copy(data=flags).rename("cosmic_rays")
