"""Inputs that would give a degenerate DCR coadd: refused, or run with a warning on record.

A set of warps can pass every header check and still leave the DCR fit with
nothing to do. What :func:`dcr_dask.running.pipeline.run` does about each case:

=====================================  ==============================================
case                                   behaviour
=====================================  ==============================================
fewer than :data:`MIN_VISITS` warps    :class:`~dcr_dask.errors.InputErrors` before
with usable pixels (one visit, or      the cluster starts: a pixel is fitted only
all but one all ``NO_DATA``)           where two or more visits see it, so the fit
                                       would return its starting coadd split evenly
                                       over the sub-bands and call it converged
no usable pixel in any warp            the same error, naming every file
visits that see (nearly) one DCR       a warning (:func:`dcr_spread`): the spread of
(one airmass and parallactic angle,    the visits' DCR "levers" below
or one direction only)                 :data:`DEGENERATE_LEVER_PX` on one or both
                                       axes; the sub-bands are unconstrained along
                                       that axis
pixels seen by one visit only          a warning when more than
(visits covering disjoint parts)       :data:`SINGLE_COVERAGE_FRACTION` of the covered
                                       pixels are seen by one visit only: they are
                                       not fitted
a visit with no usable pixel, or       the visit is rejected: its pixels are flagged
with zero or negative variance on      ``NO_DATA`` before CompareWarp and the fit,
any usable pixel                       a warning names it and its reason, and the
                                       output records it (``inputs[].rejected``,
                                       ``metadata.visits.rejected``)
=====================================  ==============================================

"Usable" means: not in any of ``badMaskPlanes`` (``NO_DATA``, ``BAD``, ...).
NaN pixels are ``NO_DATA`` already (docs/file-formats.md, "Input warps"). Warnings are
logged, and recorded in the output store's ``input_warnings`` attribute (and
the run metadata), each as ``{"check", "message", ...measured values}``.

The first and the third checks need headers only, plus, for the second, the
first chunk of each warp that holds a usable pixel (the whole warp only when it
has none); the last two are one lazy pass over the ingested masks and
variances, on the cluster, before CompareWarp.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import attrs
import dask
import dask.array as da
import numpy as np
import xarray as xr

from dcr_dask.errors import InputError, InputErrors
from dcr_dask.io.store import compute
from dcr_dask.masks import MaskPlanes
from dcr_dask.physics.subbands import RunShifts

__all__ = [
    "DEGENERATE_LEVER_PX",
    "MIN_VISITS",
    "SINGLE_COVERAGE_FRACTION",
    "VisitQuality",
    "check_usable_visits",
    "dcr_spread",
    "reject_visits",
    "visit_quality",
]

log = logging.getLogger(__name__)

#: A pixel is fitted only where at least this many visits see it (``calculateNImage``).
MIN_VISITS = 2

#: RMS spread, pixels, of the visits' DCR levers (blue minus red sub-band shift)
#: below which the sub-bands are reported as unconstrained along that axis: a
#: fifth of a pixel moves a star's centroid by less than the noise of most visits.
DEGENERATE_LEVER_PX = 0.2

#: Fraction of the covered pixels seen by one visit only above which a run warns.
SINGLE_COVERAGE_FRACTION = 0.01


def _usable(mask: np.ndarray, bad_bits: int) -> np.ndarray:
    return (mask & bad_bits) == 0


def check_usable_visits(warps: xr.Dataset, bad_planes: Sequence[str]) -> list[int]:
    """Refuse a set of warps in which fewer than :data:`MIN_VISITS` have a usable pixel.

    Reads each warp chunk by chunk and stops at the first chunk that holds a
    usable pixel, so a normal warp costs one chunk; a warp without any is read
    whole.

    Parameters
    ----------
    warps : xarray.Dataset
        Lazy warps from :func:`dcr_dask.io.warps.open_warps` (not yet computed).
    bad_planes : sequence of str
        Planes whose pixels are not usable (``badMaskPlanes``).

    Returns
    -------
    list of int
        Visit ids of the warps without any usable pixel (they are rejected later,
        by :func:`visit_quality`).

    Raises
    ------
    InputErrors
        If fewer than :data:`MIN_VISITS` warps have a usable pixel; it names
        every file without one, or the only warp.
    """
    bad_bits = MaskPlanes(warps.attrs["mask_planes"]).value(bad_planes)
    mask = warps["mask"].data
    empty = []
    with dask.config.set(scheduler="synchronous"):
        for v in range(mask.shape[0]):
            blocks = mask[v : v + 1].blocks
            found = any(
                bool(_usable(np.asarray(blocks[index].compute()), bad_bits).any())
                for index in np.ndindex(*blocks.shape)
            )
            if not found:
                empty.append(v)
    n_usable = mask.shape[0] - len(empty)
    if n_usable >= MIN_VISITS:
        return [int(warps["visit"].values[v]) for v in empty]
    files = warps["filename"].values
    planes = "/".join(bad_planes)
    errors = [
        InputError(
            f"every pixel of this warp is {planes} (or NaN): it has no usable pixel",
            filename=str(files[v]),
            keyword="MASK",
        )
        for v in empty
    ]
    if n_usable == 1:
        (only,) = (v for v in range(mask.shape[0]) if v not in empty)
        errors.append(
            InputError(
                f"this is the only warp with usable pixels; a DCR coadd needs at least "
                f"{MIN_VISITS} visits (a pixel is fitted only where {MIN_VISITS} or more "
                "visits see it; with one, every sub-band would be the same copy of the "
                "visit)",
                filename=str(files[only]),
            )
        )
    raise InputErrors(errors)


def dcr_spread(shifts: RunShifts) -> dict[str, Any] | None:
    """Measure how differently the visits see DCR; a warning record if the fit is degenerate.

    Each visit's DCR lever is the shift of its bluest sub-band minus that of
    its reddest, ``(dy, dx)`` pixels. The sub-bands are constrained only along
    the directions in which the levers differ from visit to visit: the RMS
    spread of the levers about their mean along the principal axes (``major``
    and ``minor``) is compared with :data:`DEGENERATE_LEVER_PX`.

    Parameters
    ----------
    shifts : RunShifts
        The shifts of every visit (at the tile centre).

    Returns
    -------
    dict or None
        None if both spreads reach :data:`DEGENERATE_LEVER_PX` (or there is
        one sub-band); else ``{"check": "dcr_geometry", "message", "spread_major_px",
        "spread_minor_px", "parallactic_angle_deg": [min, max], "airmass": [min, max]}``.
    """
    unsplit = np.asarray(shifts.unsplit_px, dtype=float)
    if unsplit.shape[1] < 2:
        return None
    levers = unsplit[:, 0] - unsplit[:, -1]
    centred = levers - levers.mean(axis=0)
    covariance = centred.T @ centred / len(levers)
    minor, major = np.sqrt(np.clip(np.linalg.eigvalsh(covariance), 0.0, None))
    if minor >= DEGENERATE_LEVER_PX:
        return None
    angles = [g.parallactic_angle_deg for g in shifts.geometry]
    airmasses = [g.airmass for g in shifts.geometry]
    where = "in any direction" if major < DEGENERATE_LEVER_PX else "across one direction"
    message = (
        f"the {len(levers)} visits see nearly the same DCR {where}: their DCR levers (blue "
        f"minus red sub-band shift) spread {major:.3f} px along the main axis and "
        f"{minor:.3f} px across it (below {DEGENERATE_LEVER_PX} px); parallactic angles "
        f"{min(angles):.1f} to {max(angles):.1f} deg, airmasses {min(airmasses):.3f} to "
        f"{max(airmasses):.3f}. The sub-bands are unconstrained there (only their sum is "
        "fitted): add visits at other airmasses or on the other side of the meridian"
    )
    return {
        "check": "dcr_geometry",
        "message": message,
        "spread_major_px": float(major),
        "spread_minor_px": float(minor),
        "parallactic_angle_deg": [float(min(angles)), float(max(angles))],
        "airmass": [float(min(airmasses)), float(max(airmasses))],
    }


@attrs.frozen
class VisitQuality:
    """What :func:`visit_quality` measured.

    Attributes
    ----------
    rejected : dict
        Visit id -> reason, for every visit to leave out.
    warnings : list of dict
        Warning records (``check``, ``message``, measured values).
    """

    rejected: dict[int, str]
    warnings: list[dict[str, Any]]


def _coverage(usable: Any) -> tuple[Any, Any, Any]:
    count = usable.sum(axis=0)
    return (count == 0).sum(), (count == 1).sum(), count.size


def visit_quality(warps: xr.Dataset, bad_planes: Sequence[str], client: Any = None) -> VisitQuality:
    """Find the visits to reject and the pixels seen by one visit only (one lazy pass).

    Parameters
    ----------
    warps : xarray.Dataset
        Ingested warps ``(visit, y, x)`` with ``mask`` and ``variance``.
    bad_planes : sequence of str
        Planes whose pixels are not usable (``badMaskPlanes``).
    client : distributed.Client, optional
        Where to compute; None uses the current Dask scheduler.

    Returns
    -------
    VisitQuality
        A visit is rejected if it has no usable pixel, or if any usable pixel
        has a variance that is zero or negative (its inverse-variance weight,
        and CompareWarp's noise model, would be meaningless). A warning is
        recorded for each rejected visit and when more than
        :data:`SINGLE_COVERAGE_FRACTION` of the covered pixels are seen by one
        (not rejected) visit only.

    Raises
    ------
    InputErrors
        If fewer than :data:`MIN_VISITS` visits are left.
    """
    bad_bits = MaskPlanes(warps.attrs["mask_planes"]).value(bad_planes)
    mask, variance = warps["mask"].data, warps["variance"].data
    usable = (mask & bad_bits) == 0
    bad_variance = usable & ~(variance > 0)
    n_usable = usable.sum(axis=(1, 2))
    n_bad = bad_variance.sum(axis=(1, 2))
    low = da.where(usable, variance, np.inf).min(axis=(1, 2))
    positive = usable & ~bad_variance
    stats = (n_usable, n_bad, low, *_coverage(positive))
    computed = compute(list(stats), client)
    n_usable, n_bad, low, n_none, n_single, n_pixels = (np.asarray(x) for x in computed)
    visits = [int(v) for v in warps["visit"].values]
    files = [str(f) for f in warps["filename"].values]
    rejected: dict[int, str] = {}
    warnings: list[dict[str, Any]] = []
    for k, visit in enumerate(visits):
        if n_usable[k] == 0:
            reason = "no usable pixels (all " + "/".join(bad_planes) + " or NaN)"
        elif n_bad[k] > 0:
            reason = (
                f"variance <= 0 on {int(n_bad[k])} of {int(n_usable[k])} usable pixels "
                f"(lowest {float(low[k]):.4g})"
            )
        else:
            continue
        rejected[visit] = reason
        message = f"{files[k]}: visit {visit} rejected (left out of the coadd): {reason}"
        log.warning("%s", message)
        warnings.append(
            {"check": "rejected_visit", "message": message, "visit": visit, "filename": files[k]}
        )
    kept = [k for k, v in enumerate(visits) if v not in rejected]
    if len(kept) < MIN_VISITS:
        errors = [
            InputError(f"visit {v} {rejected[v]}", filename=files[k], keyword="VARIANCE/MASK")
            for k, v in enumerate(visits)
            if v in rejected
        ]
        errors.append(
            InputError(
                f"{len(kept)} visit(s) left after rejecting these; a DCR coadd needs at least "
                f"{MIN_VISITS}"
            )
        )
        raise InputErrors(errors)
    if rejected:  # measure the coverage again without the rejected visits
        n_none, n_single, n_pixels = (
            np.asarray(x) for x in compute(list(_coverage(positive[kept])), client)
        )
    covered = int(n_pixels) - int(n_none)
    fraction = int(n_single) / covered if covered else 0.0
    if fraction > SINGLE_COVERAGE_FRACTION:
        message = (
            f"{int(n_single)} of the {covered} covered pixels ({100 * fraction:.1f} %) are "
            f"seen by one visit only (the visits cover largely different parts of the tile); "
            f"those pixels are not fitted (n_image 0): the coadd there is the starting model "
            "split evenly over the sub-bands"
        )
        log.warning("%s", message)
        warnings.append(
            {
                "check": "single_visit_pixels",
                "message": message,
                "pixels": int(n_single),
                "covered_pixels": covered,
                "fraction": fraction,
            }
        )
    return VisitQuality(rejected, warnings)


def reject_visits(warps: xr.Dataset, rejected: Sequence[int]) -> xr.Dataset:
    """Flag every pixel of the rejected visits ``NO_DATA`` (lazily).

    Parameters
    ----------
    warps : xarray.Dataset
        Warps ``(visit, y, x)`` with ``mask`` and the ``mask_planes`` attribute.
    rejected : sequence of int
        Visit ids to leave out.

    Returns
    -------
    xarray.Dataset
        ``warps`` unchanged if nothing is rejected, else with ``mask`` or-ed
        with ``NO_DATA`` on the rejected visits, so that CompareWarp, the
        weights and the fit all leave them out.
    """
    if not rejected:
        return warps
    bit = MaskPlanes(warps.attrs["mask_planes"]).value(["NO_DATA"])
    flag = np.where(np.isin(warps["visit"].values, list(rejected)), bit, 0).astype(np.int32)
    extra = xr.DataArray(flag, dims="visit", coords={"visit": warps["visit"].values})
    return warps.assign(mask=(warps["mask"] | extra).astype(np.int32))
