"""Lazy Dask graphs that stack warps over the visit axis.

The kernels live in :mod:`dcr_dask.kernels.stack`; this module only translates a
:class:`Stacking` (a stacking config's settings, read by
:func:`dcr_dask.settings.stacking`) into kernel settings and maps the kernels
over the tile's blocks,
with the whole visit axis in each block (one ``(y, x)`` block of every
visit in memory at a time). :func:`assemble_static_sky_model` is CompareWarp's
static sky model, the ``assembleStaticSkyModel`` stack of the PSF-matched warps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs
import dask.array as da
import numpy as np
import xarray as xr

from dcr_dask.errors import expect_settings
from dcr_dask.graph.clipped_stats import plane_clipped_means
from dcr_dask.graph.tile import TILE_ATTRS
from dcr_dask.kernels.stack import StackSettings, stack_block, weighted_mean
from dcr_dask.masks import MaskPlanes

__all__ = [
    "Stacking",
    "assemble_static_sky_model",
    "clipped_visit_weights",
    "direct_coadd",
    "good_pixels",
    "plain_coadd",
    "reference_visit_weights",
    "stack_settings",
    "stack_warps",
    "visit_weights",
]

logger = logging.getLogger(__name__)


@attrs.frozen
class Stacking:
    """What a stacking config says (:func:`dcr_dask.settings.stacking`).

    The main config's for the direct coadd, ``assembleStaticSkyModel``'s for
    CompareWarp's static sky model.

    Attributes
    ----------
    statistic : str
        ``statistic`` (``MEAN`` or ``MEANCLIP``).
    sigma_clip : float
        ``sigmaClip``.
    clip_iter : int
        ``clipIter``.
    calc_error_from_input_variance : bool
        ``calcErrorFromInputVariance``.
    bad_mask_planes : tuple of str
        ``badMaskPlanes``.
    remove_mask_planes : tuple of str
        ``removeMaskPlanes``.
    mask_propagation_thresholds : tuple of (str, float)
        ``maskPropagationThresholds``, sorted by plane name.
    do_n_image : bool
        ``doNImage``.
    do_airmass_weight : bool
        ``doAirmassWeight`` (a field of the DCR task's config only; False for
        the others).
    """

    statistic: str
    sigma_clip: float
    clip_iter: int
    calc_error_from_input_variance: bool
    bad_mask_planes: tuple[str, ...]
    remove_mask_planes: tuple[str, ...] = ()
    mask_propagation_thresholds: tuple[tuple[str, float], ...] = ()
    do_n_image: bool = False
    do_airmass_weight: bool = False


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


def clipped_visit_weights(
    warps: xr.Dataset,
    good: xr.DataArray,
    *,
    sigma_clip: float,
    clip_iter: int,
    airmass: Sequence[float] | np.ndarray | None = None,
) -> xr.DataArray:
    """Weight of each visit as the reference computes it: 1 / clipped mean variance (eager).

    The mean of each warp's variance over its good pixels is afw's ``MEANCLIP``
    with ``sigmaClip`` and ``clipIter`` (whatever ``statistic`` is); with
    ``doAirmassWeight`` the weight is then multiplied by the visit's boresight
    airmass. Computed by :func:`dcr_dask.graph.clipped_stats.plane_clipped_means`:
    one task per visit that keeps only the good values of its plane, or, for
    planes larger than :data:`dcr_dask.graph.clipped_stats.WHOLE_PLANE_BYTES`,
    a few passes over the planes chunk by chunk.

    Parameters
    ----------
    warps : xarray.Dataset
        ``(visit, y, x)`` warps with a ``variance`` variable.
    good : xarray.DataArray of bool
        Usable pixels (:func:`good_pixels`).
    sigma_clip : float
        ``sigmaClip``: clipping half-width, in standard deviations.
    clip_iter : int
        ``clipIter``: number of clipping passes (0 is taken as 1, the first pass).
    airmass : sequence of float, optional
        ``(visit,)`` boresight airmass of each visit; given, it multiplies the
        weights (``doAirmassWeight``).

    Returns
    -------
    xarray.DataArray
        ``(visit,)`` weights, 1/flux²; 0 for a visit whose clipped mean variance
        is not finite and positive (no good pixel).

    Raises
    ------
    ValueError
        If ``airmass`` does not have one entry per visit.
    """
    n_visits = warps.sizes["visit"]
    factors = None
    if airmass is not None:
        factors = np.asarray(airmass, dtype=np.float64).reshape(-1)
        if factors.shape != (n_visits,):
            raise ValueError(
                f"airmass has {factors.size} entries; expected one per visit ({n_visits})"
            )
    if n_visits:
        means = plane_clipped_means(
            warps["variance"].data, good.data, sigma_clip, max(int(clip_iter), 1)
        )
    else:
        means = np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.where(np.isfinite(means) & (means > 0), 1.0 / means, 0.0)
    if factors is not None:
        weights = weights * factors
    return xr.DataArray(weights, dims=("visit",), coords={"visit": warps["visit"]})


def reference_visit_weights(
    warps: xr.Dataset, good: xr.DataArray, stacking: Stacking
) -> xr.DataArray:
    """The visits' weights as the reference's assembly makes them (eager).

    :func:`clipped_visit_weights` with ``sigmaClip`` and ``clipIter``, times each
    visit's boresight airmass (the warps' ``airmass`` coordinate) with
    ``doAirmassWeight``: ``AssembleCoaddTask.prepareInputs``, which every
    assembly of the reference uses (the static sky model, the direct coadd,
    the DCR fit's ``inputs[].weight``); ``doAirmassWeight`` is a field of the
    DCR task's config only.

    Parameters
    ----------
    warps : xarray.Dataset
        ``(visit, y, x)`` warps with a ``variance`` variable (and an
        ``airmass`` coordinate when ``doAirmassWeight``).
    good : xarray.DataArray of bool
        Usable pixels (:func:`good_pixels` of ``badMaskPlanes``).
    stacking : Stacking
        Uses ``sigmaClip``, ``clipIter`` and ``doAirmassWeight`` (set only by
        the DCR task's config, not ``assembleStaticSkyModel``).

    Returns
    -------
    xarray.DataArray
        ``(visit,)`` weights, 1/flux².

    Raises
    ------
    ValueError
        If ``doAirmassWeight`` is set and the warps have no ``airmass`` coordinate.
    """
    expect_settings(stacking, Stacking, "stacking", "stacking")
    airmass = None
    if stacking.do_airmass_weight:
        if "airmass" not in warps.coords and "airmass" not in warps:
            raise ValueError(
                "doAirmassWeight=True but the warps have no 'airmass' coordinate "
                "(the boresight airmass of each visit)"
            )
        airmass = np.asarray(warps["airmass"].values, dtype=np.float64)
    return clipped_visit_weights(
        warps, good, sigma_clip=stacking.sigma_clip, clip_iter=stacking.clip_iter, airmass=airmass
    )


def _mean_block(
    images: np.ndarray, variances: np.ndarray, good: np.ndarray, weights: np.ndarray
) -> np.ndarray:
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


def stack_settings(
    stacking: Stacking, planes: MaskPlanes, *, extra_bad_planes: Sequence[str] = ()
) -> StackSettings:
    """Translate stacking settings into those of :func:`dcr_dask.kernels.stack.stack_block`.

    Parameters
    ----------
    stacking : Stacking
        Uses ``statistic``, ``sigmaClip``, ``clipIter``,
        ``calcErrorFromInputVariance``, ``badMaskPlanes``, ``removeMaskPlanes``
        and ``maskPropagationThresholds``.
    planes : MaskPlanes
        The bit layout of the masks to stack. Planes the layout lacks are
        ignored (no input can have them).
    extra_bad_planes : sequence of str
        Planes rejected besides ``badMaskPlanes`` (CompareWarp adds ``CLIPPED``
        for the final coadd).

    Returns
    -------
    StackSettings
        With the reference's mapping of rejected inputs to coadd planes: a
        bad plane other than ``NO_DATA``, ``EDGE`` and ``CLIPPED`` sets
        ``REJECTED``, a rejected ``EDGE`` sets ``SENSOR_EDGE``, a rejected
        ``CLIPPED`` sets ``CLIPPED``; sigma-clipping sets ``CLIPPED``; no good
        input gives ``NO_DATA``.

    Raises
    ------
    ValueError
        If ``statistic`` is not one the kernels implement, or the clipping
        settings do not allow MEANCLIP (the message names the field).
    """
    expect_settings(stacking, Stacking, "stacking", "stacking")
    bad = planes.value([*stacking.bad_mask_planes, *extra_bad_planes])
    special = planes.value(["NO_DATA", "EDGE", "CLIPPED"])
    rejection_map = [
        (bad & ~special, planes.value(["REJECTED"])),
        (bad & planes.value(["EDGE"]), planes.value(["SENSOR_EDGE"])),
        (bad & planes.value(["CLIPPED"]), planes.value(["CLIPPED"])),
    ]
    return StackSettings(
        statistic=stacking.statistic,
        sigma_clip=stacking.sigma_clip,
        clip_iter=stacking.clip_iter,
        calc_error_from_input_variance=stacking.calc_error_from_input_variance,
        bad_mask=bad,
        remove_mask=planes.value(stacking.remove_mask_planes),
        propagation=tuple(
            (planes.bit(name), float(threshold))
            for name, threshold in stacking.mask_propagation_thresholds
            if name in planes
        ),
        rejection_map=tuple((source, target) for source, target in rejection_map if source),
        clipped_mask=planes.value(["CLIPPED"]),
        no_data_mask=planes.value(["NO_DATA"]),
    )


def _stack_block(
    images: np.ndarray,
    variances: np.ndarray,
    masks: np.ndarray,
    weights: np.ndarray,
    settings: StackSettings,
) -> np.ndarray:
    planes = stack_block(images, variances, masks, weights, settings)
    return np.stack([plane.astype(np.float64) for plane in planes])


def direct_coadd(warps: xr.Dataset, stacking: Stacking) -> xr.Dataset:
    """The coadd of the direct warps that starts the DCR fit when no template is given (lazy).

    Parameters
    ----------
    warps : xarray.Dataset
        Direct warps ``(visit, y, x)`` whose masks carry CompareWarp's
        artifacts (``CLIPPED``).
    stacking : Stacking
        The main config's: its ``statistic`` (``MEAN`` after CompareWarp's
        defaults), ``badMaskPlanes`` and mask rules (:func:`stack_warps`).

    Returns
    -------
    xarray.Dataset
        :func:`stack_warps` of the warps with ``CLIPPED`` pixels rejected: the
        coadd CompareWarp itself would make, at the visits' own PSFs. The
        reference starts from the static sky model of the PSF-matched warps
        instead, which blurs every source to the model PSF; starting from
        the direct coadd leaves the fit only the DCR to find.
    """
    return stack_warps(warps, stacking, extra_bad_planes=["CLIPPED"])


def stack_warps(
    warps: xr.Dataset,
    stacking: Stacking,
    weights: xr.DataArray | np.ndarray | None = None,
    *,
    extra_bad_planes: Sequence[str] = (),
) -> xr.Dataset:
    """Stack warps over the visit axis with a statistic and mask rules (lazy).

    Parameters
    ----------
    warps : xarray.Dataset
        ``(visit, y, x)`` warps with ``image``, ``mask``, ``variance`` and the
        ``mask_planes`` attribute (as :func:`dcr_dask.io.warps.open_warps`).
    stacking : Stacking
        The main config's, or ``assembleStaticSkyModel``'s; see
        :func:`stack_settings` for the fields used, plus ``doNImage``.
    weights : xarray.DataArray or numpy.ndarray, optional
        ``(visit,)`` weight of each visit, 1/flux². Default: the reference's
        (:func:`reference_visit_weights` of ``stacking``), computed eagerly
        here (one pass over the variance and mask planes) so that the
        returned graph does not hold the warps in memory while it waits for
        a tile-wide reduction.
    extra_bad_planes : sequence of str
        Planes rejected besides ``stacking.bad_mask_planes``.

    Returns
    -------
    xarray.Dataset
        On ``(y, x)``: ``image`` and ``variance`` (float32), ``mask`` (int32,
        the warps' bit layout) and, if ``stacking.do_n_image``, ``n_image``
        (uint16); ``weight`` on ``visit``; the warps' tile attributes. One
        task per ``(y, x)`` chunk of the warps, each holding that chunk of
        every visit.

    Raises
    ------
    ValueError
        For an unsupported statistic or clipping setting (naming the field),
        or weights that do not have one entry per visit.
    """
    planes = MaskPlanes(warps.attrs["mask_planes"])
    settings = stack_settings(stacking, planes, extra_bad_planes=extra_bad_planes)
    if weights is None:
        good = good_pixels(warps, [*stacking.bad_mask_planes, *extra_bad_planes])
        weights = reference_visit_weights(warps, good, stacking).compute()
        logger.info(
            "visit weights (1 / clipped mean variance%s): %s",
            " x airmass" if stacking.do_airmass_weight else "",
            np.asarray(weights).tolist(),
        )
    weight_values = np.asarray(weights, dtype=np.float64).reshape(-1)
    if weight_values.shape != (warps.sizes["visit"],):
        raise ValueError(
            f"weights have shape {weight_values.shape}; expected one per visit "
            f"({warps.sizes['visit']})"
        )
    whole = {"visit": -1}
    stacked = da.blockwise(
        _stack_block,
        "syx",
        warps["image"].chunk(whole).data,
        "vyx",
        warps["variance"].chunk(whole).data,
        "vyx",
        warps["mask"].chunk(whole).data,
        "vyx",
        da.from_array(weight_values, chunks=-1),
        "v",
        new_axes={"s": 4},
        concatenate=True,
        dtype=np.float64,
        settings=settings,
    )
    dims = ("y", "x")
    data_vars = {
        "image": (dims, stacked[0].astype(np.float32)),
        "variance": (dims, stacked[1].astype(np.float32)),
        "mask": (dims, stacked[2].astype(np.int32)),
        "weight": ("visit", weight_values),
    }
    if stacking.do_n_image:
        data_vars["n_image"] = (dims, stacked[3].astype(np.uint16))
    coords = {name: warps[name] for name in ("visit", "y", "x")}
    attrs = {key: warps.attrs[key] for key in TILE_ATTRS if key in warps.attrs}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def assemble_static_sky_model(
    psf_matched: xr.Dataset,
    stacking: Stacking,
    weights: xr.DataArray | np.ndarray | None = None,
) -> xr.Dataset:
    """The static sky model: the ``assembleStaticSkyModel`` stack of PSF-matched warps (lazy).

    Parameters
    ----------
    psf_matched : xarray.Dataset
        PSF-matched warps (:func:`dcr_dask.graph.psf_matching.match_psfs` or
        :func:`dcr_dask.io.warps.open_psf_matched`).
    stacking : Stacking
        ``config.assembleStaticSkyModel``'s (reference defaults: MEANCLIP,
        ``sigmaClip`` 2.5, ``clipIter`` 3, ``badMaskPlanes`` NO_DATA, variance
        from the inputs, no nImage).
    weights : xarray.DataArray or numpy.ndarray, optional
        ``(visit,)`` weights; default 1 / clipped mean variance of each PSF-matched
        warp's good pixels, computed eagerly (see
        :func:`stack_warps`).

    Returns
    -------
    xarray.Dataset
        As :func:`stack_warps`, with the PSF-matched warps'
        ``model_psf_fwhm_px`` attribute when they have one.
    """
    model = stack_warps(psf_matched, stacking, weights)
    if "model_psf_fwhm_px" in psf_matched.attrs:
        model.attrs["model_psf_fwhm_px"] = psf_matched.attrs["model_psf_fwhm_px"]
    return model
