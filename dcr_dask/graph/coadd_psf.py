"""The PSF of the DCR coadd: the inputs' PSFs combined, or measured on the coadd.

Rubin's coadds carry a ``CoaddPsf``: at a point of the coadd it is the average
of the PSFs of the input images that cover the point, each resampled onto the
coadd's grid and normalised to unit sum, weighted by the weight the image had
in the coadd. ``DcrAssembleCoaddTask`` puts one such PSF, that of its
template coadd, on the coadd and on every sub-band (one PSF for all
sub-bands), and with ``doCalculatePsf`` it is meant to be replaced by a PSF
measured on stars of the coadd.

dcr_dask makes both, for the whole tile at one point, its centre
(docs/file-formats.md, "Output store"):

- **inputs** (the default, :func:`coadd_psf_from_inputs`): the weighted mean
  ``Σ w_v P_v / Σ w_v`` of the visits' PSF stamps ``P_v`` (each normalised
  to sum 1, padded with zeros to the largest size), with ``w_v`` the visit
  weights the run records (``inputs[].weight``). A visit enters when it was
  not rejected, its weight is positive, and it has a usable pixel near the
  tile centre (the point must lie on the visit, as for ``CoaddPsf``); when
  no visit covers the centre every entering visit is used and the record
  says so. A warp's PSF is its ``PSF`` HDU, which is already on the tile's
  pixels (a warp is resampled onto the tile, its PSF with it), or a Gaussian
  of its ``PSF-FWHM`` when it has none; dcr_dask holds one PSF per visit, so
  the coadd PSF does not vary over the tile.
- **model** (the same function, with ``psfForwardModel="gaussian"``): the
  sub-band models are at one PSF width across DCR, the k-th sharpest kept
  visit's (``model_psf_variance_px2``), not at the visits' mean, and
  without DCR's smear; only the visits at or below that width enter, each
  stamp made round at its width across DCR and widened to the model's by a
  Gaussian, with the same weights.
- **measured** (``doCalculatePsf``, :func:`measure_coadd_psf`): the bright
  isolated unmasked stars of the coadd (its central 2048² pixels at most)
  are found with ``detectPsfSources``'s threshold and fitted with a
  pixel-integrated Moffat profile of free index (:mod:`dcr_dask.kernels.psf_stars`);
  the PSF is that profile, with the median FWHM and median index of the
  stars, drawn on a ``measurePsf.kernelSize`` stamp. A fraction
  ``measurePsf.reserveFraction`` of the stars is held back from the
  medians and their own median FWHM is recorded beside the model's. When
  fewer than :data:`~dcr_dask.kernels.psf_stars.MIN_STARS` stars are measured the
  run warns and keeps the inputs' PSF (as the reference does).

The FWHM of either is :func:`dcr_dask.kernels.psf.psf_fwhm_px` (adaptive second
moments), which follows the core of a PSF with wings.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import attrs
import dask.array as da
import numpy as np
import xarray as xr

from dcr_dask.graph.psf_matching import visit_psf_stamps
from dcr_dask.kernels.psf import gaussian_blur, psf_fwhm_px, psf_minor_variance, round_psf
from dcr_dask.kernels.psf_stars import MIN_STARS, fit_psf_stars, moffat_image, robust_keep
from dcr_dask.masks import MaskPlanes

__all__ = [
    "DESCRIPTIONS",
    "MEASURE_WINDOW_PX",
    "STAR_BAD_PLANES",
    "CoaddPsf",
    "PsfMeasurement",
    "centre_coverage",
    "coadd_psf_from_inputs",
    "combine_psfs",
    "measure_coadd_psf",
    "measurement_window",
]

log = logging.getLogger(__name__)

#: The PSF is measured on at most this many pixels square at the centre of the coadd.
MEASURE_WINDOW_PX = 2048

#: Half-width of the box at the tile centre in which a visit must have a usable pixel.
_COVER_HALF_PX = 1

#: Mask planes whose pixels no star measured for the PSF may have (besides ``badMaskPlanes``).
STAR_BAD_PLANES = ("NO_DATA", "SAT", "BAD", "EDGE", "CR", "INTRP", "SUSPECT")

#: How each kind of coadd PSF is made, in one sentence (the ``psf`` variable's attribute).
DESCRIPTIONS = {
    "inputs": (
        "weighted mean of the PSF stamps of the visits that entered the coadd, each "
        "normalised to sum 1, with the run's visit weights (inputs[].weight), at the tile centre"
    ),
    "model": (
        "weighted mean of the PSF stamps of the visits that entered the coadd at or below "
        "the DCR model's PSF width across DCR (psfForwardModel='gaussian'), each made round "
        "at its width across DCR, widened to the model's by a Gaussian and normalised to "
        "sum 1, at the tile centre"
    ),
    "measured": (
        "pixel-integrated Moffat profile with the median FWHM and index of the bright "
        "isolated stars of the coadd (doCalculatePsf)"
    ),
}


@attrs.frozen(eq=False)
class CoaddPsf:
    """The coadd's PSF and how it was made.

    Attributes
    ----------
    image : numpy.ndarray
        Odd, square, centred float64 stamp summing to 1 (pixel values are the
        PSF integrated over the tile's pixels).
    fwhm_px : float
        Its FWHM (:func:`dcr_dask.kernels.psf.psf_fwhm_px`), pixels.
    method : str
        ``"inputs"`` (the weighted combination), ``"model"`` (the combination
        at the DCR model's PSF width, ``psfForwardModel="gaussian"``) or
        ``"measured"``.
    centre_yx : tuple of float
        Tile pixel ``(y, x)`` where it applies: the tile centre.
    record : dict
        JSON-ready description (visits and weights, or the stars measured).
    """

    image: np.ndarray
    fwhm_px: float
    method: str
    centre_yx: tuple[float, float]
    record: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready record: method, FWHM, centre and :attr:`record`."""
        return {
            "method": self.method,
            "description": DESCRIPTIONS[self.method],
            "fwhm_px": float(self.fwhm_px),
            "size_px": int(self.image.shape[0]),
            "centre_yx": [float(self.centre_yx[0]), float(self.centre_yx[1])],
            **self.record,
        }

    def variable_attrs(self) -> dict[str, Any]:
        """The short, finite attributes of the stored ``psf`` variable."""
        return {
            "method": self.method,
            "description": DESCRIPTIONS[self.method],
            "fwhm_px": float(self.fwhm_px),
            "centre_y": float(self.centre_yx[0]),
            "centre_x": float(self.centre_yx[1]),
        }

    def with_record(self, **items: Any) -> CoaddPsf:
        """A copy whose record has ``items`` added."""
        return attrs.evolve(self, record={**self.record, **items})


def combine_psfs(stamps: Sequence[np.ndarray], weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """The weighted mean of PSF stamps, each normalised to unit sum.

    Parameters
    ----------
    stamps : sequence of numpy.ndarray
        Odd, square, centred stamps (any sizes, any positive sums).
    weights : sequence of float
        One non-negative weight per stamp; at least one positive.

    Returns
    -------
    numpy.ndarray of float64
        ``Σ w_v P_v / Σ w_v`` on a stamp of the largest size (smaller stamps
        padded with zeros, centred); it sums to 1.

    Raises
    ------
    ValueError
        For a stamp that is not odd and square or has no positive finite sum,
        a negative or non-finite weight, lengths that differ, or no positive
        weight.
    """
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(stamps) != weights.size:
        raise ValueError(f"{len(stamps)} PSF stamps but {weights.size} weights")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or not weights.sum() > 0:
        raise ValueError(f"PSF weights {weights.tolist()} must be finite, >= 0, not all 0")
    size = 0
    arrays = []
    for k, stamp in enumerate(stamps):
        array = np.asarray(stamp, dtype=np.float64)
        if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] % 2 != 1:
            raise ValueError(f"PSF stamp {k} of shape {array.shape} must be square and odd")
        total = array.sum()
        if not (np.isfinite(total) and total > 0):
            raise ValueError(f"PSF stamp {k} sums to {total!r}; it needs a positive finite sum")
        arrays.append(array / total)
        size = max(size, array.shape[0])
    combined = np.zeros((size, size))
    for array, weight in zip(arrays, weights, strict=True):
        pad = (size - array.shape[0]) // 2
        combined[pad : size - pad, pad : size - pad] += weight * array
    return combined / weights.sum()


def centre_coverage(warps: xr.Dataset) -> da.Array:
    """Which visits have a pixel that is not ``NO_DATA`` next to the tile centre (lazy).

    Parameters
    ----------
    warps : xarray.Dataset
        ``(visit, y, x)`` warps with ``mask`` and the ``mask_planes`` attribute.

    Returns
    -------
    dask.array.Array of bool
        ``(visit,)``; the box is 3 × 3 pixels around ``((ny-1)/2, (nx-1)/2)``,
        so computing it reads one chunk per visit.
    """
    ny, nx = warps.sizes["y"], warps.sizes["x"]
    cy, cx = (ny - 1) // 2, (nx - 1) // 2
    box = (
        slice(max(cy - _COVER_HALF_PX, 0), cy + _COVER_HALF_PX + 1),
        slice(max(cx - _COVER_HALF_PX, 0), cx + _COVER_HALF_PX + 1),
    )
    no_data = MaskPlanes(warps.attrs["mask_planes"]).value(["NO_DATA"])
    mask = da.asarray(warps["mask"].data)[:, box[0], box[1]]
    return ((mask & no_data) == 0).any(axis=(1, 2))


def coadd_psf_from_inputs(
    warps: xr.Dataset,
    weights: Sequence[float] | np.ndarray,
    *,
    rejected: Sequence[int] = (),
    covers_centre: Sequence[bool] | None = None,
    model_variance: float | None = None,
) -> CoaddPsf:
    """The weighted combination of the visits' PSFs at the tile centre (module docstring).

    With ``psfForwardModel="gaussian"`` the sub-band models, and so the coadd,
    are at one PSF width across DCR, ``model_variance``, sharper than most
    visits: a mean of every visit's PSF would be too wide for it. Then only the
    visits at or below that width enter. Each stamp is made round at its width
    across DCR (:func:`dcr_dask.kernels.psf.round_psf`: the coadd has no DCR
    smear, which a visit's PSF measured on its stars holds), then widened to
    the model's width by the Gaussian of variance ``model_variance`` minus its
    own (:func:`dcr_dask.kernels.psf.psf_minor_variance`), as the fit treats
    them.

    Parameters
    ----------
    warps : xarray.Dataset
        The run's warps (``open_warps`` layout): ``psf``, ``has_psf``,
        ``psf_fwhm_px`` and ``visit``.
    weights : sequence of float
        ``(visit,)`` the run's visit weights (``inputs[].weight``).
    rejected : sequence of int
        Visit ids left out of the run.
    covers_centre : sequence of bool, optional
        ``(visit,)`` which visits see the tile centre (:func:`centre_coverage`);
        None takes every visit as covering it.
    model_variance : float, optional
        The DCR model's PSF variance across DCR, px² (``model_psf_variance_px2``
        of the output store). None: every visit's PSF as it is.

    Returns
    -------
    CoaddPsf
        ``method = "inputs"`` (``"model"`` with ``model_variance``); its record
        lists the visits combined with their weights normalised to sum 1, and
        ``covering_centre`` (False when no entering visit covered the centre
        and all were used); with ``model_variance`` also
        ``model_psf_variance_px2`` and each combined visit's ``widened_px2``.
        When no entering visit is at or below the model's width (the visits
        that were are rejected or of weight 0), the sharpest entering visit
        is used as it is and ``widened_px2`` is 0 for it.

    Raises
    ------
    ValueError
        If no visit enters (all rejected or of zero weight), or ``weights``
        does not have one value per visit.
    """
    visits = np.asarray(warps["visit"].values, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if weights.shape != visits.shape:
        raise ValueError(f"{weights.size} weights for {visits.size} visits")
    entering = (
        np.isfinite(weights) & (weights > 0) & ~np.isin(visits, np.asarray(rejected, np.int64))
    )
    if not entering.any():
        raise ValueError(
            "no visit enters the coadd PSF: every visit is rejected or has weight 0 "
            f"(weights {weights.tolist()})"
        )
    stamps = visit_psf_stamps(warps)
    record: dict[str, Any] = {}
    widen = np.zeros(visits.size)
    method = "inputs"
    if model_variance is not None:
        method = "model"
        variance = np.full(visits.size, np.inf)
        for k in np.nonzero(entering)[0]:
            variance[k] = psf_minor_variance(stamps[k])
        at_model = entering & (variance <= model_variance * (1 + 1e-9))
        if not at_model.any():
            sharpest = int(np.argmin(variance))
            log.warning(
                "no visit of the coadd is at or below the model's PSF width (variance "
                "%.3f px²); the coadd PSF is the sharpest visit's (%d, %.3f px²)",
                model_variance,
                int(visits[sharpest]),
                variance[sharpest],
            )
            at_model = np.zeros(visits.size, dtype=bool)
            at_model[sharpest] = True
        else:
            widen[at_model] = model_variance - variance[at_model]
            # the coadd has no DCR smear: each stamp round at its width across DCR, widened
            for k in np.nonzero(at_model)[0]:
                stamps[k] = gaussian_blur(round_psf(stamps[k]), widen[k])
        entering = at_model
        record["model_psf_variance_px2"] = float(model_variance)
    covering = entering
    if covers_centre is not None:
        covering = entering & np.asarray(covers_centre, dtype=bool)
    covered = bool(covering.any())
    if not covered:
        log.warning(
            "no visit has a usable pixel at the tile centre: the coadd PSF combines all %d "
            "visits of the coadd",
            int(entering.sum()),
        )
        covering = entering
    used = np.nonzero(covering)[0]
    image = combine_psfs([stamps[k] for k in used], weights[used])
    ny, nx = warps.sizes["y"], warps.sizes["x"]
    share = weights[used] / weights[used].sum()
    record = {
        "visits": [int(visits[k]) for k in used],
        "weights": [float(w) for w in share],
        "covering_centre": covered,
        **record,
    }
    if model_variance is not None:
        record["widened_px2"] = [float(max(widen[k], 0.0)) for k in used]
    return CoaddPsf(
        image=image,
        fwhm_px=psf_fwhm_px(image),
        method=method,
        centre_yx=((ny - 1) / 2.0, (nx - 1) / 2.0),
        record=record,
    )


@attrs.frozen
class PsfMeasurement:
    """How the PSF is measured on the coadd (:func:`dcr_dask.settings.psf_measurement`).

    Attributes
    ----------
    threshold_value : float
        ``detectPsfSources.thresholdValue``.
    threshold_type : str
        ``detectPsfSources.thresholdType``: ``"pixel_stdev"`` (times each
        pixel's sigma) or ``"value"`` (image unit).
    include_multiplier : float
        ``detectPsfSources.includeThresholdMultiplier``: a star's peak reaches
        this times the threshold.
    min_pixels : int
        ``detectPsfSources.minPixels``: fewest connected pixels above the threshold.
    kernel_size : int
        ``measurePsf.kernelSize``: side of the PSF stamp, pixels (odd).
    reserve_fraction : float
        ``measurePsf.reserveFraction``: share of the stars held back.
    """

    threshold_value: float
    threshold_type: str
    include_multiplier: float
    min_pixels: int
    kernel_size: int
    reserve_fraction: float


def measurement_window(shape: tuple[int, int]) -> tuple[slice, slice]:
    """The central at most :data:`MEASURE_WINDOW_PX` square of a tile of ``shape``."""
    window = []
    for n in shape:
        side = min(n, MEASURE_WINDOW_PX)
        start = (n - side) // 2
        window.append(slice(start, start + side))
    return window[0], window[1]


def measure_coadd_psf(
    image: np.ndarray,
    variance: np.ndarray,
    bad: np.ndarray,
    settings: PsfMeasurement,
    *,
    centre_yx: tuple[float, float],
) -> CoaddPsf | str:
    """Measure the PSF on stars of the coadd (module docstring).

    Parameters
    ----------
    image, variance : numpy.ndarray
        The coadd and its variance over the measured window.
    bad : numpy.ndarray of bool
        Pixels to leave out (masked planes).
    settings : PsfMeasurement
        Thresholds, stamp size and reserve fraction.
    centre_yx : tuple of float
        Tile pixel where the PSF is said to apply (recorded).

    Returns
    -------
    CoaddPsf or str
        ``method = "measured"``, its record holding the stars used
        (``n_stars``, their median ``stars_fwhm_px`` and ``stars_beta``) and
        reserved (``n_reserved``, ``reserved_fwhm_px``); or, when too few stars
        were measured, the reason as a sentence.
    """
    variance = np.asarray(variance, dtype=np.float64)
    if settings.threshold_type == "pixel_stdev":
        level = settings.threshold_value * np.sqrt(np.clip(variance, 0.0, None))
    else:
        level = settings.threshold_value
    stars = fit_psf_stars(
        image,
        bad=bad,
        variance=variance,
        level=level,
        peak_factor=settings.include_multiplier,
        min_pixels=settings.min_pixels,
    )
    if len(stars) < MIN_STARS:
        return f"{len(stars)} star(s) were measured on the coadd, fewer than {MIN_STARS}"
    fwhm = np.array([s.fwhm_px for s in stars])
    u = np.array([s.u for s in stars])
    keep = robust_keep(fwhm)
    fwhm, u = fwhm[keep], u[keep]
    reserved = np.zeros(fwhm.size, dtype=bool)
    n_reserved = min(round(settings.reserve_fraction * fwhm.size), fwhm.size - MIN_STARS)
    if n_reserved > 0:
        # a fixed seed: the same stars are held back on every run
        chosen = np.random.default_rng(0).choice(fwhm.size, size=n_reserved, replace=False)
        reserved[chosen] = True
    if np.count_nonzero(~reserved) < MIN_STARS:
        return (
            f"{int(np.count_nonzero(~reserved))} star(s) kept on the coadd after the outliers, "
            f"fewer than {MIN_STARS}"
        )
    model_fwhm = float(np.median(fwhm[~reserved]))
    model_u = float(np.median(u[~reserved]))
    beta = None if model_u < 1e-6 else 1.0 / model_u
    size = settings.kernel_size
    stamp = moffat_image((size, size), (size // 2, size // 2), model_fwhm, beta)
    stamp /= stamp.sum()
    return CoaddPsf(
        image=stamp,
        fwhm_px=psf_fwhm_px(stamp),
        method="measured",
        centre_yx=centre_yx,
        record={
            "n_stars": int(np.count_nonzero(~reserved)),
            "stars_fwhm_px": model_fwhm,
            "stars_beta": None if beta is None else float(beta),
            "n_reserved": int(n_reserved),
            "reserved_fwhm_px": (float(np.median(fwhm[reserved])) if n_reserved > 0 else math.nan),
        },
    )
