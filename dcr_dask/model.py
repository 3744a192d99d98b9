"""The DCR model on one block: start, forward model, back-projection, update.

These kernels implement sections 2, 3 and 5 of ALGORITHM.md on one block of the
tile (a subregion grown by its buffer) held in memory. They know nothing of
Dask, files or configuration objects: every setting is a plain argument, so the
graph layer can map them over blocks. The reference is Rubin's
``DcrAssembleCoaddTask`` (``lsst.drp.tasks.dcr_assemble_coadd``) and
``lsst.ip.diffim.dcrModel``; the order of operations, clipping, NaN and edge
handling follow it unless a docstring says otherwise.

Array conventions (pixels in numpy ``(y, x)`` order, fluxes in the units of the
input images):

``model``
    ``(S, ny, nx)`` sub-band planes ``M_s``.
``images``, ``good``
    ``(V, ny, nx)`` visit images and their good-pixel flags ``g_v``.
``shifts``
    ``(V, S, K, 2)`` forward DCR shifts ``(dy, dx)`` in pixels; ``K = 2`` split
    points per sub-band (averaged) or 1. A collapsed split has both entries
    equal and costs one shift.
``unsplit_shifts``
    ``(V, S, 2)`` shifts at the middle of each sub-band, used in the reverse
    direction (back-projection and sub-band weights), as the reference does.

Three shift methods are offered (:mod:`dcr_dask.shift`). ``"spline"``
reproduces the reference: each image is spline-prefiltered once and shifted
with zeros coming in from outside. ``"fourier"`` (exact phase ramps) and
``"sinc"`` (windowed-sinc kernels applied through their transforms) work on the
spectra: a forward model of V visits costs S real FFTs and V inverse FFTs, a
back-projection V FFTs and S inverse FFTs, so one iteration costs about
``2·(V + S)`` FFTs plus element-wise products, whatever ``K``. Both are
periodic over the block; the caller's halo keeps what wraps around out of the
cropped result, and only ``"sinc"`` has the compact support that makes the
cropped result exactly independent of where the block was cut.

Intermediate arrays are float64. Arrays the reference stores as ``ImageF``
(model planes and variance, coadds, sub-band weights, model weights) are
returned as float32; per-visit templates, residuals and model updates are
transient and returned as float64.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
from scipy import ndimage

from dcr_dask import regularize
from dcr_dask.regularize import background_noise
from dcr_dask.shift import (
    SHIFT_METHODS,
    ShiftMethod,
    shift_factors,
    spline_prefilter,
    spline_shift,
)
from dcr_dask.stack import afw_clipped_mean as _afw_clipped_mean

__all__ = [
    "amplify",
    "apply_model_weights",
    "back_project",
    "coadd_from_model",
    "condition",
    "forward_model",
    "forward_models",
    "initial_model",
    "iterate_block",
    "model_weights",
    "residuals",
    "subband_weights",
    "update_model",
    "visit_weights",
]

#: A pixel is fitted only where every sub-band's summed, shifted weight exceeds this.
MIN_SUBBAND_COVERAGE = 1.0

_N_IMAGE_MAX = int(np.iinfo(np.uint16).max)


# --------------------------------------------------------------------------- checks


def _check_method(method: str) -> None:
    if method not in SHIFT_METHODS:
        raise ValueError(f"unknown shift method {method!r}; choose one of {SHIFT_METHODS}")


def _as_stack(name: str, array: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    out = np.asarray(array, dtype=dtype)
    if out.ndim != 3:
        raise ValueError(f"{name} must have shape (n, ny, nx), got {out.shape}")
    return out


def _as_shifts(
    name: str, shifts: np.ndarray, n_visits: int | None, n_subfilters: int | None, split: bool
) -> np.ndarray:
    out = np.asarray(shifts, dtype=np.float64)
    expected = "(V, S, K, 2)" if split else "(V, S, 2)"
    if (
        out.ndim != (4 if split else 3)
        or out.shape[-1] != 2
        or (n_subfilters is not None and out.shape[1] != n_subfilters)
        or (n_visits is not None and out.shape[0] != n_visits)
    ):
        raise ValueError(
            f"{name} must have shape {expected} (V = {n_visits}, S = {n_subfilters} here),"
            f" got {out.shape}"
        )
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} must be finite")
    return out


def _relative_visit_weights(weights: np.ndarray | None, n_visits: int) -> np.ndarray | None:
    """Visit weights divided by their mean (None stays None)."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_visits,):
        raise ValueError(f"visit_weights must have shape ({n_visits},), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ValueError("visit_weights must be finite, >= 0 and not all 0")
    return w / w.mean()


# --------------------------------------------------------------------------- shifting


def _distinct(points: np.ndarray) -> np.ndarray:
    """``(K, 2)`` shift points, with a collapsed split reduced to one point."""
    if len(points) > 1 and np.all(points == points[0]):
        return points[:1]
    return points


def _add_shifted_spectrum(
    total: np.ndarray,
    spectrum: np.ndarray,
    points: np.ndarray,
    shape: tuple[int, int],
    method: ShiftMethod,
) -> None:
    """``total += spectrum · mean_k factor(points_k)``, in place, from separable factors."""
    points = _distinct(points)
    y_factors, x_factors = shift_factors(shape, points, method)
    scale = 1.0 / len(points)
    for y_factor, x_factor in zip(y_factors, x_factors, strict=True):
        term = spectrum * x_factor[None, :]
        term *= (y_factor * scale)[:, None]
        total += term


def _shifted_copies(
    image: np.ndarray, point_sets: np.ndarray, *, method: ShiftMethod, order: int
) -> Iterator[np.ndarray]:
    """An image shifted by each ``(K, 2)`` set in ``point_sets``, transformed only once."""
    if method == "spline":
        coefficients = spline_prefilter(image, order)
        for points in point_sets:
            yield spline_shift(coefficients, _distinct(points), order=order, prefiltered=True)
    else:
        shape = image.shape
        spectrum = np.fft.rfft2(image)
        for points in point_sets:
            total = np.zeros_like(spectrum)
            _add_shifted_spectrum(total, spectrum, points, shape, method)
            yield np.fft.irfft2(total, s=shape)


# --------------------------------------------------------------------------- start (section 2)


def initial_model(
    template_image: np.ndarray, template_variance: np.ndarray, n_subfilters: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split a static-sky template evenly between the sub-bands.

    Parameters
    ----------
    template_image : numpy.ndarray
        ``(ny, nx)`` static-sky template ``T``, flux.
    template_variance : numpy.ndarray
        ``(ny, nx)`` its variance, flux².
    n_subfilters : int
        ``dcrNumSubfilters`` ``S`` >= 1.

    Returns
    -------
    planes : numpy.ndarray of float32
        ``(S, ny, nx)``: ``T/S`` in every plane.
    variance : numpy.ndarray of float32
        ``(ny, nx)``: ``var(T)/S``, the variance of one plane (the reference
        treats the sub-bands as independent, so their sum has ``var(T)``).
    """
    if n_subfilters < 1:
        raise ValueError(f"dcrNumSubfilters must be >= 1, got {n_subfilters}")
    image = np.asarray(template_image, dtype=np.float64)
    variance = np.asarray(template_variance, dtype=np.float64)
    if image.ndim != 2 or image.shape != variance.shape:
        raise ValueError(
            f"template image {image.shape} and variance {variance.shape} must be 2-D of one shape"
        )
    planes = np.broadcast_to(image / n_subfilters, (n_subfilters, *image.shape))
    return planes.astype(np.float32), (variance / n_subfilters).astype(np.float32)


def visit_weights(
    variances: np.ndarray,
    good: np.ndarray,
    *,
    clip_sigma: float,
    clip_iterations: int,
    airmass: np.ndarray | None = None,
) -> np.ndarray:
    """Weight of each visit: the inverse of its clipped mean variance.

    As the reference's ``AssembleCoaddTask.prepareInputs``: afw's ``MEANCLIP``
    of the warp's variance plane over the finite pixels free of
    ``badMaskPlanes``, with ``sigmaClip`` (3.0) and ``clipIter`` (2) from the
    config. With ``doAirmassWeight`` the weight is multiplied by the airmass.
    The reference computes this once per warp over the whole patch: pass whole
    visits, not blocks.

    Parameters
    ----------
    variances : numpy.ndarray
        ``(V, ny, nx)`` variance planes, flux².
    good : numpy.ndarray of bool
        ``(V, ny, nx)`` good-pixel flags.
    clip_sigma : float
        ``sigmaClip``: clipping half-width in standard deviations.
    clip_iterations : int
        ``clipIter``: number of clipping passes.
    airmass : numpy.ndarray, optional
        ``(V,)`` boresight airmass of each visit (``doAirmassWeight``).

    Returns
    -------
    numpy.ndarray of float64
        ``(V,)`` weights, 1/flux². A visit whose clipped mean is not finite and
        positive gets 0, with a warning: the reference drops such a visit, and
        callers should too.
    """
    variances = _as_stack("variances", variances)
    good = np.asarray(good, dtype=bool)
    if good.shape != variances.shape:
        raise ValueError(f"good {good.shape} must match variances {variances.shape}")
    n_visits = variances.shape[0]
    weights = np.zeros(n_visits)
    for v in range(n_visits):
        values = variances[v][good[v] & np.isfinite(variances[v])]
        mean_variance = _afw_clipped_mean(values, clip_sigma, clip_iterations)
        if np.isfinite(mean_variance) and mean_variance > 0:
            weights[v] = 1.0 / mean_variance
        else:
            warnings.warn(
                f"visit {v}: clipped mean variance {mean_variance!r} is not finite and positive;"
                " its weight is 0 (the reference skips such a visit)",
                RuntimeWarning,
                stacklevel=2,
            )
    if airmass is not None:
        airmass = np.asarray(airmass, dtype=np.float64)
        if airmass.shape != (n_visits,):
            raise ValueError(f"airmass must have shape ({n_visits},), got {airmass.shape}")
        weights *= airmass
    return weights


def subband_weights(
    good: np.ndarray,
    unsplit_shifts: np.ndarray,
    *,
    method: ShiftMethod,
    order: int,
    visit_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalisation of the back-projection, and the number of images per sub-band.

    Each visit's good-pixel flags ``g_v`` are shifted by the inverse of its
    unsplit sub-band shifts, exactly as the residuals are
    (:func:`back_project`), and summed over visits: ``W_s``. A pixel is fitted
    only where every sub-band has ``W_s > 1``; elsewhere the weight and the
    count are 0. This is the reference's ``calculateNImage``.

    The reference computes these over the whole patch; near the edge of a
    block, within the largest shift, zeros (spline) or the opposite edge
    (Fourier) are shifted in. Compute them on a block grown by ``bufferSize``
    and crop, or accept edge values only inside the halo that the iteration
    discards.

    Parameters
    ----------
    good : numpy.ndarray of bool
        ``(V, ny, nx)`` good-pixel flags ``g_v``.
    unsplit_shifts : numpy.ndarray
        ``(V, S, 2)`` unsplit sub-band shifts, pixels.
    method : {"spline", "fourier", "sinc"}
        Shift method; must be the one :func:`back_project` uses.
    order : int
        Spline order (``imageInterpOrder``) for ``method="spline"``.
    visit_weights : numpy.ndarray, optional
        ``(V,)`` visit weights for the dcr_dask ``inverseVariance`` residual
        weighting: the returned weight is then ``1 / Σ_v w_v shift(g_v)``
        (``w`` divided by its mean), the normalisation that matches
        :func:`back_project` with the same ``visit_weights``. Coverage
        (``W_s > 1``) and ``n_image`` stay unweighted counts.

    Returns
    -------
    inverse_weight : numpy.ndarray of float32
        ``(S, ny, nx)``: ``1/W_s`` where fitted, else 0.
    n_image : numpy.ndarray of uint16
        ``(S, ny, nx)``: sum over visits of the rounded shifted ``g_v`` where
        fitted, else 0 (clipped to the uint16 range; the reference would wrap
        a negative rounded value, which spline ringing never reaches).
    """
    _check_method(method)
    good = np.asarray(good, dtype=bool)
    if good.ndim != 3:
        raise ValueError(f"good must have shape (V, ny, nx), got {good.shape}")
    n_visits, ny, nx = good.shape
    unsplit = _as_shifts("unsplit_shifts", unsplit_shifts, n_visits, None, split=False)
    n_subfilters = unsplit.shape[1]
    weights = _relative_visit_weights(visit_weights, n_visits)
    # W_s is summed in float32, as in the reference's ImageF, so that the round-off of a
    # whole-pixel shift (1 + 1e-16) does not pass the coverage threshold.
    coverage = np.zeros((n_subfilters, ny, nx), dtype=np.float32)
    weighted = np.zeros((n_subfilters, ny, nx))
    counts = np.zeros((n_subfilters, ny, nx), dtype=np.int64)
    for v in range(n_visits):
        copies = _shifted_copies(
            good[v].astype(np.float64), -unsplit[v][:, None, :], method=method, order=order
        )
        for s, shifted in enumerate(copies):
            coverage[s] += shifted
            counts[s] += np.rint(shifted).astype(np.int64)
            if weights is not None:
                weighted[s] += weights[v] * shifted
    if weights is None:
        weighted = coverage.astype(np.float64)
    covered = np.all(coverage > MIN_SUBBAND_COVERAGE, axis=0)
    inverse_weight = np.zeros_like(weighted)
    np.divide(1.0, weighted, out=inverse_weight, where=covered[None] & (weighted > 0))
    n_image = np.where(covered[None], np.clip(counts, 0, _N_IMAGE_MAX), 0)
    return inverse_weight.astype(np.float32), n_image.astype(np.uint16)


# --------------------------------------------------------------------------- forward model


def amplify(model: np.ndarray, accelerate: float) -> np.ndarray:
    """Amplified planes ``A_s = (M_s − ref)·accelerate + ref``, ``ref = mean_s M_s``.

    Parameters
    ----------
    model : numpy.ndarray
        ``(S, ny, nx)`` planes, flux.
    accelerate : float
        ``accelerateModel``; as in the reference, a value <= 1 leaves the
        planes unchanged.

    Returns
    -------
    numpy.ndarray of float64
        ``(S, ny, nx)`` amplified planes.
    """
    model = _as_stack("model", model)
    if accelerate <= 1:
        return model.copy()
    reference = model.mean(axis=0)
    return (model - reference) * accelerate + reference


def forward_models(
    model: np.ndarray,
    shifts: np.ndarray,
    *,
    accelerate: float,
    method: ShiftMethod,
    order: int,
) -> np.ndarray:
    """DCR-matched templates of every visit: ``t_v = Σ_s shift(A_s, +shift_{v,s})``.

    Step 1 of an iteration, and the templates the convergence metric needs.
    ``"spline"`` prefilters each amplified plane once and shifts it for every
    visit (the reference, ``DcrModel.buildMatchedTemplate``, prefilters once
    per visit and plane, with the same result). ``"fourier"`` transforms the S
    planes once and makes each template with one inverse transform of
    ``Σ_s F(A_s)·ramp(v, s)``; a split sub-band's ramp is the mean of its two
    ramps.

    Parameters
    ----------
    model : numpy.ndarray
        ``(S, ny, nx)`` planes ``M_s``, flux.
    shifts : numpy.ndarray
        ``(V, S, K, 2)`` forward shifts, pixels.
    accelerate : float
        ``accelerateModel`` (see :func:`amplify`).
    method : {"spline", "fourier", "sinc"}
        Shift method.
    order : int
        Spline order (``imageInterpOrder``) for ``method="spline"``.

    Returns
    -------
    numpy.ndarray of float64
        ``(V, ny, nx)`` templates, flux.
    """
    _check_method(method)
    amplified = amplify(model, accelerate)
    n_subfilters, ny, nx = amplified.shape
    shifts = _as_shifts("shifts", shifts, None, n_subfilters, split=True)
    n_visits = shifts.shape[0]
    templates = np.zeros((n_visits, ny, nx))
    if method == "spline":
        for s in range(n_subfilters):
            copies = _shifted_copies(amplified[s], shifts[:, s], method=method, order=order)
            for v, shifted in enumerate(copies):
                templates[v] += shifted
        return templates
    spectra = np.fft.rfft2(amplified)
    total = np.empty_like(spectra[0])
    for v in range(n_visits):
        total[...] = 0.0
        for s in range(n_subfilters):
            _add_shifted_spectrum(total, spectra[s], shifts[v, s], (ny, nx), method)
        templates[v] = np.fft.irfft2(total, s=(ny, nx))
    return templates


def forward_model(
    model: np.ndarray,
    shifts_v: np.ndarray,
    *,
    accelerate: float,
    method: ShiftMethod,
    order: int,
) -> np.ndarray:
    """DCR-matched template of one visit (see :func:`forward_models`).

    Parameters
    ----------
    model : numpy.ndarray
        ``(S, ny, nx)`` planes, flux.
    shifts_v : numpy.ndarray
        ``(S, K, 2)`` forward shifts of the visit, pixels.
    accelerate : float
        ``accelerateModel``.
    method : {"spline", "fourier", "sinc"}
        Shift method.
    order : int
        Spline order for ``method="spline"``.

    Returns
    -------
    numpy.ndarray of float64
        ``(ny, nx)`` template, flux.
    """
    stacked = np.asarray(shifts_v, dtype=np.float64)[None]
    templates = forward_models(model, stacked, accelerate=accelerate, method=method, order=order)
    return templates[0]


# --------------------------------------------------------------------------- update (section 3)


def residuals(images: np.ndarray, templates: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Weighted residuals ``r_v = (I_v − t_v)·g_v`` (step 2).

    Parameters
    ----------
    images, templates : numpy.ndarray
        ``(V, ny, nx)`` visit images and their templates, flux.
    good : numpy.ndarray of bool
        ``(V, ny, nx)`` good-pixel flags.

    Returns
    -------
    numpy.ndarray of float64
        ``(V, ny, nx)`` residuals, flux; 0 on bad pixels whatever the image
        holds there. A non-finite residual on a good pixel (an unflagged NaN)
        is also set to 0, so that it cannot spread through a Fourier shift;
        the reference lets it spread to the neighbouring model pixels, whose
        non-finite update it then discards.
    """
    images = np.asarray(images)
    templates = np.asarray(templates)
    good = np.asarray(good, dtype=bool)
    if images.ndim != 3 or not images.shape == templates.shape == good.shape:
        raise ValueError(
            f"images {images.shape}, templates {templates.shape} and good {good.shape}"
            " must have one shape (V, ny, nx)"
        )
    with np.errstate(invalid="ignore"):
        out = np.subtract(images, templates, dtype=np.float64)
    keep = np.isfinite(out)
    keep &= good
    np.copyto(out, 0.0, where=~keep)
    return out


def back_project(
    residuals: np.ndarray,
    unsplit_shifts: np.ndarray,
    inverse_weight: np.ndarray,
    *,
    method: ShiftMethod,
    order: int,
    visit_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Model update ``Δ_s = (1/W_s)·Σ_v shift(r_v, −shift_{v,s})`` (step 3).

    Residuals are shifted back by the unsplit sub-band shifts, as in the
    reference's ``dcrResiduals`` (splitting would blur them). ``"spline"``
    prefilters each residual once and shifts it for every sub-band;
    ``"fourier"`` transforms the V residuals and makes each sub-band with one
    inverse transform of ``Σ_v F(r_v)·conj(ramp(v, s))``. With unit weights
    and unsplit forward shifts, ``"fourier"`` is the exact adjoint of
    :func:`forward_models` without amplification.

    Parameters
    ----------
    residuals : numpy.ndarray
        ``(V, ny, nx)`` residuals from :func:`residuals`, flux.
    unsplit_shifts : numpy.ndarray
        ``(V, S, 2)`` unsplit shifts, pixels.
    inverse_weight : numpy.ndarray
        ``(S, ny, nx)`` from :func:`subband_weights`, made with the same
        ``method`` and ``visit_weights``.
    method : {"spline", "fourier", "sinc"}
        Shift method.
    order : int
        Spline order for ``method="spline"``.
    visit_weights : numpy.ndarray, optional
        ``(V,)`` visit weights (dcr_dask's ``inverseVariance`` residual
        weighting; the reference stacks residuals with equal weights). The
        update becomes ``Σ_v w_v shift(r_v) / Σ_v w_v shift(g_v)``, a weighted
        mean of the shifted residuals over the visits that see the pixel: the
        numerator is formed here with ``w`` divided by its mean, the
        denominator is ``inverse_weight`` from :func:`subband_weights` with the
        same weights. Equal weights divide to exactly 1 and reproduce the
        unweighted update.

    Returns
    -------
    numpy.ndarray of float64
        ``(S, ny, nx)`` update, flux.
    """
    _check_method(method)
    residuals = _as_stack("residuals", residuals)
    n_visits, ny, nx = residuals.shape
    inverse_weight = _as_stack("inverse_weight", inverse_weight)
    n_subfilters = inverse_weight.shape[0]
    if inverse_weight.shape[1:] != (ny, nx):
        raise ValueError(
            f"inverse_weight {inverse_weight.shape} must match residuals {residuals.shape}"
        )
    unsplit = _as_shifts("unsplit_shifts", unsplit_shifts, n_visits, n_subfilters, split=False)
    weights = _relative_visit_weights(visit_weights, n_visits)
    if method == "spline":
        total = np.zeros((n_subfilters, ny, nx))
        for v in range(n_visits):
            residual = residuals[v] if weights is None else residuals[v] * weights[v]
            copies = _shifted_copies(residual, -unsplit[v][:, None, :], method=method, order=order)
            for s, shifted in enumerate(copies):
                total[s] += shifted
    else:
        spectra = np.zeros((n_subfilters, ny, nx // 2 + 1), dtype=np.complex128)
        for v in range(n_visits):
            residual = residuals[v] if weights is None else residuals[v] * weights[v]
            spectrum = np.fft.rfft2(residual)
            for s in range(n_subfilters):
                _add_shifted_spectrum(
                    spectra[s], spectrum, -unsplit[v, s][None, :], (ny, nx), method
                )
        total = np.fft.irfft2(spectra, s=(ny, nx))
    return total * inverse_weight


def update_model(model: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """New planes ``M_s + Δ_s``; where that is not finite, the old value stays (step 4).

    Parameters
    ----------
    model, delta : numpy.ndarray
        ``(S, ny, nx)`` planes and update, flux.

    Returns
    -------
    numpy.ndarray of float64
        ``(S, ny, nx)`` new planes.
    """
    model = _as_stack("model", model)
    delta = _as_stack("delta", delta)
    with np.errstate(invalid="ignore", over="ignore"):
        new = model + delta
    bad = ~np.isfinite(new)
    new[bad] = model[bad]
    return new


def condition(new: np.ndarray, old: np.ndarray, gain: float) -> np.ndarray:
    """Gain-weighted average of the new and old planes, ``(gain·new + old)/(1 + gain)`` (step 7).

    Parameters
    ----------
    new, old : numpy.ndarray
        ``(S, ny, nx)`` planes, flux.
    gain : float
        Weight of the new solution, >= 0 (1 gives equal weights).

    Returns
    -------
    numpy.ndarray of float64
        ``(S, ny, nx)`` conditioned planes.
    """
    if not gain >= 0:
        raise ValueError(f"gain must be >= 0, got {gain!r}")
    new = np.asarray(new, dtype=np.float64)
    old = np.asarray(old, dtype=np.float64)
    return (gain * new + old) / (1.0 + gain)


def model_weights(detected: np.ndarray, width: float) -> np.ndarray:
    """Weights that taper from 1 on detected sources to 0 away from them (step 8).

    The indicator of ``convergenceMaskPlanes`` (``DETECTED``) in the model mask,
    smoothed with a Gaussian of σ = ``modelWeightsWidth`` (scipy's default
    ``mode="reflect"``) and divided by its maximum, as the reference's
    ``calculateModelWeights``, which computes it once per block grown by its
    buffer.

    Parameters
    ----------
    detected : numpy.ndarray of bool
        ``(ny, nx)`` detected pixels of the model (template) mask.
    width : float
        ``modelWeightsWidth``, pixels, >= 0.

    Returns
    -------
    numpy.ndarray of float32
        ``(ny, nx)`` weights in [0, 1]. All 0 when nothing is detected (the
        reference divides by 0 there and makes the block NaN; 0 keeps the
        template).
    """
    if width < 0:
        raise ValueError(f"modelWeightsWidth must not be negative, got {width!r}")
    weights = ndimage.gaussian_filter(np.asarray(detected, dtype=np.float64), width)
    peak = weights.max(initial=0.0)
    if not peak > 0:
        return np.zeros(weights.shape, dtype=np.float32)
    return (weights / peak).astype(np.float32)


def apply_model_weights(
    new: np.ndarray, template_image: np.ndarray, weights: np.ndarray, n_subfilters: int
) -> np.ndarray:
    """Blend the planes into ``T/S`` away from sources: ``new·w + T·(1 − w)/S`` (step 8).

    Parameters
    ----------
    new : numpy.ndarray
        ``(S, ny, nx)`` planes, flux.
    template_image : numpy.ndarray
        ``(ny, nx)`` static-sky template ``T``, flux.
    weights : numpy.ndarray
        ``(ny, nx)`` from :func:`model_weights`.
    n_subfilters : int
        ``S``.

    Returns
    -------
    numpy.ndarray of float64
        ``(S, ny, nx)`` blended planes.
    """
    new = np.asarray(new, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    template = np.asarray(template_image, dtype=np.float64)
    return new * weights + template * (1.0 - weights) / n_subfilters


def iterate_block(
    model: np.ndarray,
    images: np.ndarray,
    good: np.ndarray,
    shifts: np.ndarray,
    unsplit_shifts: np.ndarray,
    inverse_weight: np.ndarray,
    *,
    gain: float,
    accelerate: float,
    method: ShiftMethod,
    order: int,
    regularize_iterations: float,
    regularize_frequency: float,
    regularization_width: int,
    background: np.ndarray | None = None,
    template_image: np.ndarray | None = None,
    model_weights: np.ndarray | None = None,
    visit_weights: np.ndarray | None = None,
    templates: np.ndarray | None = None,
) -> np.ndarray:
    """One iteration of the DCR fit on one block (steps 1-8 of ALGORITHM.md, section 3).

    1. templates ``t_v`` (:func:`forward_models`), unless given;
    2. residuals (:func:`residuals`);
    3. update ``Δ`` (:func:`back_project`);
    4. ``new = M + Δ``, non-finite values keep ``M`` (:func:`update_model`);
    5. if ``regularize_iterations > 0``: clamp to a factor of ``M``
       (:func:`dcr_dask.regularize.regularize_iterations`);
    6. if ``regularize_frequency > 0``: the noise of ``new[0]`` over
       ``background`` (5-pixel border) and the frequency regularization
       (:func:`dcr_dask.regularize.regularize_frequency`), against the mean
       of ``M``;
    7. conditioning with ``gain`` (:func:`condition`);
    8. if ``model_weights`` is given (``useModelWeights``): blend into ``T/S``
       (:func:`apply_model_weights`).

    The result covers the whole block; the caller keeps only the subregion
    inside the buffer (step 9).

    Parameters
    ----------
    model : numpy.ndarray
        ``(S, ny, nx)`` current planes ``M_s``, flux.
    images : numpy.ndarray
        ``(V, ny, nx)`` visit images, flux.
    good : numpy.ndarray of bool
        ``(V, ny, nx)`` good-pixel flags.
    shifts : numpy.ndarray
        ``(V, S, K, 2)`` forward shifts, pixels.
    unsplit_shifts : numpy.ndarray
        ``(V, S, 2)`` unsplit shifts, pixels.
    inverse_weight : numpy.ndarray
        ``(S, ny, nx)`` from :func:`subband_weights`.
    gain : float
        Gain of this iteration (:func:`dcr_dask.convergence.calculate_gain`).
    accelerate : float
        ``accelerateModel``.
    method : {"spline", "fourier", "sinc"}
        Shift method.
    order : int
        Spline order (``imageInterpOrder``) for ``method="spline"``.
    regularize_iterations : float
        ``regularizeModelIterations``; 0 disables step 5.
    regularize_frequency : float
        ``regularizeModelFrequency``; 0 disables step 6.
    regularization_width : int
        ``regularizationWidth``, pixels.
    background : numpy.ndarray of bool, optional
        ``(ny, nx)``: model-mask pixels free of ``badMaskPlanes`` and
        ``DETECTED``; required by step 6.
    template_image : numpy.ndarray, optional
        ``(ny, nx)`` static-sky template ``T``, flux; required by step 8.
    model_weights : numpy.ndarray, optional
        ``(ny, nx)`` from :func:`model_weights`; None skips step 8.
    visit_weights : numpy.ndarray, optional
        ``(V,)`` residual weights (see :func:`back_project`); None for the
        reference's equal weights.
    templates : numpy.ndarray, optional
        ``(V, ny, nx)`` output of :func:`forward_models` for this ``model``,
        ``shifts``, ``accelerate`` and ``method``, if already made for the
        convergence metric; skips step 1.

    Returns
    -------
    numpy.ndarray of float32
        ``(S, ny, nx)`` new planes (float32 as the reference's model images).
    """
    model = _as_stack("model", model)
    if templates is None:
        templates = forward_models(model, shifts, accelerate=accelerate, method=method, order=order)
    residual = residuals(images, templates, good)
    delta = back_project(
        residual,
        unsplit_shifts,
        inverse_weight,
        method=method,
        order=order,
        visit_weights=visit_weights,
    )
    new = update_model(model, delta)
    if regularize_iterations > 0:
        new = regularize.regularize_iterations(
            new, model, regularize_iterations, regularization_width
        )
    if regularize_frequency > 0:
        if background is None:
            raise ValueError("frequency regularization needs the background pixels of the block")
        noise = background_noise(new[0], background)
        new = regularize.regularize_frequency(
            new, model, regularize_frequency, regularization_width, noise
        )
    new = condition(new, model, gain)
    if model_weights is not None:
        if template_image is None:
            raise ValueError("model weights need the static-sky template image")
        new = apply_model_weights(new, template_image, model_weights, model.shape[0])
    return new.astype(np.float32)


# --------------------------------------------------------------------------- finish (section 5)


def coadd_from_model(model: np.ndarray, accelerate: float) -> tuple[np.ndarray, np.ndarray]:
    """Output sub-band images and the DCR coadd (ALGORITHM.md, section 5).

    As the reference's ``fillCoadd`` and ``stackCoadd``: the output planes are
    the amplified planes ``A_s`` (:func:`amplify`), and the coadd is their sum.
    Their variances (``var(T)/S`` and ``var(T)``) come from
    :func:`initial_model`.

    Parameters
    ----------
    model : numpy.ndarray
        ``(S, ny, nx)`` fitted planes ``M_s``, flux.
    accelerate : float
        ``accelerateModel``.

    Returns
    -------
    planes : numpy.ndarray of float32
        ``(S, ny, nx)`` sub-band images, flux.
    coadd : numpy.ndarray of float32
        ``(ny, nx)`` DCR-corrected coadd, flux.
    """
    amplified = amplify(model, accelerate)
    return amplified.astype(np.float32), amplified.sum(axis=0).astype(np.float32)
