"""The DCR model on one block: start, forward model, back-projection, update.

These kernels implement docs/algorithm.md, "Initial model", "The iteration" and
"The coadd and outputs" on one block of the tile (a subregion grown by its buffer)
held in memory. They know nothing of Dask, files or configuration objects: every
setting is a plain argument, so the graph layer can map them over blocks. The
reference is Rubin's ``DcrAssembleCoaddTask`` (``lsst.drp.tasks.dcr_assemble_coadd``)
and ``lsst.ip.diffim.dcrModel``; the order of operations, clipping, NaN and edge
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

Three shift methods are offered (:mod:`dcr_dask.kernels.shift`). ``"spline"``
reproduces the reference: each image is spline-prefiltered once and shifted
with zeros coming in from outside (separable taps, equal to ``ndimage.shift``
to rounding). ``"fourier"`` (exact phase ramps) and ``"sinc"`` (windowed-sinc
kernels applied through their transforms) work on the spectra: a forward model
of V visits costs S real FFTs and V inverse FFTs, a back-projection V FFTs and
S inverse FFTs, so one iteration costs about ``2·(V + S)`` FFTs plus
element-wise products, whatever ``K``. Both are periodic over the block
(zero-padded to a fast FFT length when its size has a prime factor above 11);
the caller's halo keeps what wraps around out of the cropped result, and only
``"sinc"`` has the compact support that makes the cropped result independent
of where the block was cut.

An iteration streams the visits: template ``t_v``, residual ``r_v``, and its
shifted copies (its spectrum times each sub-band's factor) added into S
sub-band sums, so no ``(V, ny, nx)`` stack is built; the spectral products are
made by chunks of rows in reused buffers (:class:`dcr_dask.kernels.shift.SpectralGrid`).

Precision: ``"spline"`` works in float64. The spectral methods work in
float64 (``precision="double"``, the kernels' default :data:`SPECTRAL_PRECISION`)
or in float32/complex64 (``"single"``, about 1.7 times faster; what a run uses
unless the config field ``shiftPrecision`` says otherwise). Single precision
leaves the errors against truth of ``benchmarks/bench_iteration.py`` as they
are (FFT round-off is ~1e-7 of the block's signal; only the pure interpolation
error of ``"fourier"``, 2.5e-6, moves, by 0.4%), but it is not reproducible
to better than float32 rounding: a block's result then depends on where the
tile was cut by one float32 unit in the last place at some of the brightest
pixels, which ``"double"`` keeps out of the float32 results.

Arrays the reference stores as ``ImageF`` (model planes and variance, coadds,
sub-band weights, model weights) are returned as float32; per-visit templates,
residuals and model updates are transient and returned as float64.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from dcr_dask.kernels import regularize
from dcr_dask.kernels.psf import gaussian_blur
from dcr_dask.kernels.regularize import background_noise
from dcr_dask.kernels.shift import (
    SHIFT_METHODS,
    SPECTRAL_PRECISIONS,
    ShiftMethod,
    SpectralGrid,
    gaussian_transfer,
    spline_prefilter,
    spline_shift,
    spline_translate,
)
from dcr_dask.kernels.stack import visit_weight

__all__ = [
    "amplify",
    "apply_model_weights",
    "back_project",
    "coadd_from_model",
    "coadd_of_planes",
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

#: Smallest share of the visits' weight by which a frequency's update is divided when the
#: visits' templates are blurred to their PSFs (:meth:`_BackProjection.preconditioner`): the
#: sharp frequencies are stepped at most 1/0.1 = 10 times harder than the rest.
PRECONDITION_FLOOR = 0.1

#: A pixel is fitted only where every sub-band's summed, shifted weight exceeds this.
MIN_SUBBAND_COVERAGE = 1.0
#: Margin above :data:`MIN_SUBBAND_COVERAGE` for the spectral methods' ``W_s``, whose FFT
#: round-off (1e-7 in single precision) must not let a whole-pixel ``W_s = 1`` pass.
_SPECTRAL_COVERAGE_TOLERANCE = 1e-3

_N_IMAGE_MAX = int(np.iinfo(np.uint16).max)

#: Floating-point precision of the ``"fourier"`` and ``"sinc"`` kernels when a call does not
#: choose one (``precision=None``): ``"double"`` (float64/complex128 transforms) or
#: ``"single"`` (float32/complex64, about 1.7 times faster; see the module docstring).
SPECTRAL_PRECISION = "double"


# --------------------------------------------------------------------------- checks


def _check_method(method: str) -> None:
    if method not in SHIFT_METHODS:
        raise ValueError(f"unknown shift method {method!r}; choose one of {SHIFT_METHODS}")


def _as_stack(name: str, array: np.ndarray, dtype: npt.DTypeLike = np.float64) -> np.ndarray:
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


def _precision(precision: str | None) -> str:
    chosen = SPECTRAL_PRECISION if precision is None else precision
    if chosen not in SPECTRAL_PRECISIONS:
        raise ValueError(
            f"precision must be one of {SPECTRAL_PRECISIONS} or None, got {precision!r}"
        )
    return chosen


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


def _amplified_planes(model: np.ndarray, accelerate: float) -> Iterator[np.ndarray]:
    """The planes of :func:`amplify` (float64), one at a time, in one reused buffer.

    Each plane must be consumed (copied or transformed) before the next is asked for.
    """
    out = np.empty(model.shape[1:])
    if accelerate <= 1:
        for plane in model:
            out[...] = plane
            yield out
        return
    # the mean of the planes as numpy's mean(axis=0) makes it: plane by plane, then divided
    reference = np.empty(model.shape[1:])
    reference[...] = model[0]
    for plane in model[1:]:
        np.add(reference, plane, out=reference)
    reference /= len(model)
    for plane in model:
        np.subtract(plane, reference, out=out)
        out *= accelerate
        out += reference
        yield out


def _as_blur(psf_blur: np.ndarray | None, n_visits: int) -> np.ndarray | None:
    """``psf_blur`` checked as ``(V,)`` finite variances >= 0, px²; None stays None."""
    if psf_blur is None:
        return None
    blur = np.asarray(psf_blur, dtype=np.float64)
    if blur.shape != (n_visits,) or not bool(np.all(np.isfinite(blur) & (blur >= 0))):
        raise ValueError(
            f"psf_blur must hold one finite variance >= 0 per visit ({n_visits}), got {blur}"
        )
    return blur


def _per_visit(sets: list, n_subfilters: int) -> list[list]:
    """A visit-major flat list of per-sub-band factor sets, cut into one list per visit."""
    return [sets[v : v + n_subfilters] for v in range(0, len(sets), n_subfilters)]


class _Templates:
    """Forward model of one block, one visit at a time (step 1).

    ``"spline"`` prefilters each amplified plane once (float64) and shifts the
    coefficients for every visit; the spectral methods transform the S planes
    once and make each template with one inverse transform of
    ``Σ_s F(A_s)·factor(v, s)``, summed by row chunks in one reused buffer.
    """

    def __init__(
        self,
        model: np.ndarray,
        shifts: np.ndarray,
        *,
        accelerate: float,
        method: ShiftMethod,
        order: int,
        precision: str | None,
        psf_blur: np.ndarray | None = None,
    ) -> None:
        _check_method(method)
        model = np.asarray(model)
        if model.ndim != 3:
            raise ValueError(f"model must have shape (n, ny, nx), got {model.shape}")
        n_subfilters = model.shape[0]
        self.shape = model.shape[1:]
        self.shifts = _as_shifts("shifts", shifts, None, n_subfilters, split=True)
        self.method = method
        self.order = order
        self.blur = _as_blur(psf_blur, self.shifts.shape[0])
        if method == "spline":
            self.coefficients = []
            for plane in _amplified_planes(model, accelerate):
                coefficients = spline_prefilter(plane, order)  # orders 0, 1: the plane itself
                self.coefficients.append(
                    coefficients.copy() if coefficients is plane else coefficients
                )
        else:
            self.grid = SpectralGrid(self.shape, _precision(precision))
            self.spectra = self.grid.zeros(n_subfilters)
            for s, plane in enumerate(_amplified_planes(model, accelerate)):
                self.spectra[s] = self.grid.transform(plane)
            self._total = self.grid.zeros()
            # every visit's factors at once: one transform of all the kernels
            point_sets = [_distinct(points) for visit in self.shifts for points in visit]
            sets = self.grid.factor_sets(
                point_sets,
                method,
                [1.0 / len(p) for p in point_sets],
                None if self.blur is None else np.repeat(self.blur, n_subfilters),
            )
            self._factor_sets = _per_visit(sets, n_subfilters)

    @property
    def n_visits(self) -> int:
        return self.shifts.shape[0]

    def template(self, v: int) -> np.ndarray:
        """Template of visit ``v``: float64 (spline) or float32 (spectral), ``(ny, nx)``."""
        if self.method == "spline":
            out = None
            for coefficients, points in zip(self.coefficients, self.shifts[v], strict=True):
                shifted = spline_shift(
                    coefficients, _distinct(points), order=self.order, prefiltered=True
                )
                out = shifted if out is None else np.add(out, shifted, out=out)
            # None only for a model of 0 sub-bands, which nothing here rejects (the config's
            # dcrNumSubfilters is >= 2); the spectral branch gives zeros for it.
            if self.blur is not None and out is not None:
                out = gaussian_blur(out, float(self.blur[v]))
            return out  # type: ignore[return-value]
        self.grid.combine(self._total, self.spectra, self._factor_sets[v])
        return self.grid.invert(self._total)


@functools.lru_cache(maxsize=8)
def _preconditioner(
    fft_shape: tuple[int, int], blur: bytes, weights: bytes, dtype: str
) -> np.ndarray:
    """:meth:`_BackProjection.preconditioner` for one block's FFT shape, blurs and
    weights (float64 bytes), computed once per worker and reused by every iteration
    (read-only)."""
    variances = np.frombuffer(blur, dtype=np.float64)
    w = np.frombuffer(weights, dtype=np.float64)
    ny, nx = fft_shape
    gy = gaussian_transfer(np.fft.fftfreq(ny), variances) ** 2
    gx = gaussian_transfer(np.fft.rfftfreq(nx), variances) ** 2
    share = np.einsum("v,vy,vx->yx", w, gy, gx)
    floor = PRECONDITION_FLOOR * float(w.sum())
    out = (float(w.sum()) / np.maximum(share, floor)).astype(np.dtype(dtype))
    out.setflags(write=False)
    return out


class _BackProjection:
    """``Σ_v w_v shift(x_v, −unsplit_{v,s})`` for every sub-band, one visit at a time (step 3).

    ``"spline"`` prefilters each added image once (float64) and shifts it for
    every sub-band; the spectral methods transform it once and spread its
    spectrum, times each sub-band's factor, into S accumulated
    spectra, inverted once at the end.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        unsplit: np.ndarray,
        *,
        method: ShiftMethod,
        order: int,
        weights: np.ndarray | None,
        precision: str | None,
        psf_blur: np.ndarray | None = None,
        precondition: bool = True,
    ) -> None:
        _check_method(method)
        self.shape = shape
        self.precondition = precondition
        self._preconditioner: np.ndarray | None = None
        self.unsplit = unsplit
        self.method = method
        self.order = order
        self.weights = weights
        n_subfilters = unsplit.shape[1]
        self.blur = _as_blur(psf_blur, unsplit.shape[0])
        if method == "spline":
            self.totals = np.zeros((n_subfilters, *shape))
        else:
            self.grid = SpectralGrid(shape, _precision(precision))
            self.totals = self.grid.zeros(n_subfilters)
            # every visit's factors at once: one transform of all the kernels
            n_visits = unsplit.shape[0]
            weight = np.ones(n_visits) if weights is None else weights
            sets = self.grid.factor_sets(
                [-point[None, :] for visit in unsplit for point in visit],
                method,
                [float(weight[v]) for v in range(n_visits) for _ in range(n_subfilters)],
                None if self.blur is None else np.repeat(self.blur, n_subfilters),
            )
            self._factor_sets = _per_visit(sets, n_subfilters)

    @property
    def dtype(self) -> npt.DTypeLike:
        """Real dtype the images to add are best given in."""
        return np.float64 if self.method == "spline" else self.grid.real_dtype

    def add(self, v: int, image: np.ndarray) -> None:
        """Add visit ``v``'s image (a residual or good-pixel flags) to every sub-band."""
        weight = 1.0 if self.weights is None else float(self.weights[v])
        if self.method == "spline":
            if self.weights is not None:
                image = image * weight
            if self.blur is not None:
                image = gaussian_blur(image, float(self.blur[v]))
            coefficients = spline_prefilter(image, self.order)
            for s, point in enumerate(self.unsplit[v]):
                self.totals[s] += spline_translate(coefficients, -point, self.order)
            return
        self.add_spectrum(v, self.grid.transform(image))

    def add_residual(
        self, v: int, image: np.ndarray, template: np.ndarray, good: np.ndarray, out: np.ndarray
    ) -> None:
        """Add visit ``v``'s residual ``(image − template)·good``, made in ``out`` (step 2).

        As :func:`residuals`: 0 on bad pixels and where the residual is not
        finite. A spectral transform shows a non-finite pixel at no cost (its
        zero frequency is then not finite), so the residual is cleaned and
        transformed again only then.
        """
        if self.method == "spline":
            _residual_into(out, image, template, good)
            self.add(v, out)
            return
        with np.errstate(invalid="ignore", over="ignore"):
            np.subtract(image, template, out=out, casting="same_kind")
            if not good.all():
                np.multiply(out, good, out=out)
        spectrum = self.grid.transform(out)
        if not np.isfinite(spectrum[0, 0]):
            keep = np.isfinite(out)
            keep &= good
            np.copyto(out, 0.0, where=~keep)
            spectrum = self.grid.transform(out)
        self.add_spectrum(v, spectrum)

    def add_spectrum(self, v: int, spectrum: np.ndarray) -> None:
        """:meth:`add` of an image already transformed by ``self.grid`` (spectral methods)."""
        self.grid.spread(self.totals, spectrum, self._factor_sets[v])

    def plane(self, s: int) -> np.ndarray:
        """Sum of sub-band ``s``, ``(ny, nx)``: float64 (spline), or the precision's float
        (spectral; consumes its spectrum)."""
        if self.method == "spline":
            return self.totals[s]
        if self.blur is not None and self.precondition:
            self.totals[s] *= self.preconditioner()
        return self.grid.invert(self.totals[s])

    def preconditioner(self) -> np.ndarray:
        """Per-frequency step ``Σ_v w_v / max(Σ_v w_v G_v(f)², floor·Σ_v w_v)`` (spectral).

        With each visit's PSF blur ``G_v``, a frequency that only the sharp
        visits carry would otherwise be updated by the small share of the
        visits that see it, and converge slowly: the model stays too wide.
        Dividing by that share (the diagonal of the normal equations in
        Fourier space, floored at :data:`PRECONDITION_FLOOR`) makes every
        frequency converge alike; the floor bounds the gain of the sharpest
        visits' noise. 1 at the zero frequency, so the flux update is unchanged.
        """
        if self._preconditioner is None:
            assert self.blur is not None
            blur = np.ascontiguousarray(self.blur, dtype=np.float64)
            w = np.ones(len(blur)) if self.weights is None else np.asarray(self.weights)
            w = np.ascontiguousarray(w, dtype=np.float64)
            self._preconditioner = _preconditioner(
                tuple(self.grid.fft_shape),
                blur.tobytes(),
                w.tobytes(),
                np.dtype(self.grid.real_dtype).str,
            )
        return self._preconditioner

    def result(self) -> np.ndarray:
        """``(S, ny, nx)`` sums, as :meth:`plane`."""
        if self.method == "spline":
            return self.totals
        out = np.empty((len(self.totals), *self.shape), dtype=self.grid.real_dtype)
        for s in range(len(self.totals)):
            out[s] = self.plane(s)
        return out


def _residual_into(
    out: np.ndarray, image: np.ndarray, template: np.ndarray, good: np.ndarray
) -> None:
    """``out = (image − template)·good``, 0 where that is not finite (see :func:`residuals`)."""
    with np.errstate(invalid="ignore", over="ignore"):
        np.subtract(image, template, out=out, casting="same_kind")
        finite = bool(np.isfinite(out.sum()))  # a non-finite element makes the sum non-finite
    if finite:
        if not good.all():
            np.multiply(out, good, out=out)
        return
    keep = np.isfinite(out)
    keep &= good
    np.copyto(out, 0.0, where=~keep)


def _add_rolled(total: np.ndarray, flags: np.ndarray, dy: int, dx: int) -> None:
    """``total += roll(flags, (dy, dx))[:ny, :nx]``, without the rolled copy.

    ``flags`` is ``(py, px)`` >= ``total``'s ``(ny, nx)``: a block zero-padded
    to its FFT grid, so this is the whole-pixel shift with the spectral
    methods' boundary (periodic over the padded grid).
    """
    for put_y, take_y in _roll_segments(total.shape[0], flags.shape[0], dy):
        for put_x, take_x in _roll_segments(total.shape[1], flags.shape[1], dx):
            target = total[put_y, put_x]
            np.add(target, flags[take_y, take_x], out=target, casting="unsafe")


def _roll_segments(n: int, period: int, shift: int) -> list[tuple[slice, slice]]:
    """Output index ``i < n`` takes input index ``(i − shift) mod period``: as slice pairs."""
    start = (-shift) % period
    first = min(n, period - start)
    segments = [(slice(0, first), slice(start, start + first))]
    if first < n:
        segments.append((slice(first, n), slice(0, n - first)))
    return segments


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
        weights[v] = visit_weight(variances[v], good[v], clip_sigma, clip_iterations)
        if weights[v] == 0.0:
            warnings.warn(
                f"visit {v}: clipped mean variance is not finite and positive;"
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
    precision: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalisation of the back-projection, and the number of images per sub-band.

    Each visit's good-pixel flags ``g_v`` are shifted by the inverse of its
    unsplit sub-band shifts, exactly as the residuals are
    (:func:`back_project`), and summed over visits: ``W_s``. A pixel is fitted
    only where every sub-band is covered; elsewhere the weight and the count
    are 0.

    ``"spline"`` is the reference's ``calculateNImage``: covered means
    ``W_s > 1`` (``W_s`` summed in float32, as its ``ImageF``), and
    ``n_image_s`` is the sum of the rounded shifted flags ``rint(shift(g_v))``.

    The spectral methods make ``W_s`` as they make a back-projection (V
    transforms and S inverse transforms, since ``W_s`` is linear in the flags,
    instead of V·S) and apply the same rule to it, with a margin of
    ``1e-3`` above 1 so that FFT round-off (1e-7 in single precision) cannot
    let a whole-pixel ``W_s = 1`` pass. Shifted with a phase ramp or a windowed
    sinc, a binary mask rings (Gibbs), so a per-visit rounding of the shifted
    flags is not reliable and would need V·S inverse transforms; ``n_image_s``
    is instead ``Σ_v g_v`` shifted by the whole pixel nearest to the inverse
    shift (``rint``, same boundary as the method): an exact, local count. It
    equals the reference's ``Σ_v rint(shift(g_v))`` along bad columns, edges
    and larger holes; next to an isolated bad pixel the spline spreads the
    hole over up to four pixels, all above 0.5 for a diagonal shift, and
    ``rint`` drops it (12 visits with 1% isolated bad pixels: 4.6% of the
    pixels differ, by at most 2). The nearest-pixel count keeps every hole,
    so ``Σ n_image`` over the block is the number of good input pixels.
    ``W_s`` keeps the ringing (it can exceed V next to masked
    pixels): the residuals are shifted by the same operator, so
    ``Σ_v shift(r_v)/W_s`` stays a mean whose weights sum to 1, and an update
    seen alike by every visit comes back unchanged next to a hole. Clipping
    ``W_s`` to ``[0, V]`` breaks that: in a 12-visit test with bad columns and
    1% bad pixels it doubled the error of such an update next to masked
    pixels (fourier: max 1.17 against 0.55, spline reference 0.36).

    The reference computes these over the whole patch; near the edge of a
    block, within the largest shift, zeros (spline) or the opposite edge
    (spectral methods, periodic over the block zero-padded to its FFT size)
    are shifted in. Compute them on a block grown by ``bufferSize`` and crop,
    or accept edge values only inside the halo that the iteration discards.

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
        and ``n_image`` stay unweighted counts; a pixel whose weighted
        ``W_s`` is not positive in some sub-band (ringing of a heavily
        weighted visit's mask) is not fitted either.
    precision : {"single", "double"}, optional
        Floating-point precision of the ``"fourier"`` and ``"sinc"``
        transforms; None (the default) takes :data:`SPECTRAL_PRECISION`.
        ``"spline"`` always works in float64.

    Returns
    -------
    inverse_weight : numpy.ndarray of float32
        ``(S, ny, nx)``: ``1/W_s`` where fitted, else 0.
    n_image : numpy.ndarray of uint16
        ``(S, ny, nx)``: number of visits per sub-band where fitted, else 0
        (clipped to the uint16 range; the reference would wrap a negative
        rounded value, which spline ringing never reaches).
    """
    _check_method(method)
    good = np.asarray(good, dtype=bool)
    if good.ndim != 3:
        raise ValueError(f"good must have shape (V, ny, nx), got {good.shape}")
    n_visits = good.shape[0]
    unsplit = _as_shifts("unsplit_shifts", unsplit_shifts, n_visits, None, split=False)
    weights = _relative_visit_weights(visit_weights, n_visits)
    if method == "spline":
        weighted, counts, covered = _spline_coverage(good, unsplit, order, weights)
    else:
        weighted, counts, covered = _spectral_coverage(good, unsplit, method, weights, precision)
    # a weighted W_s <= 0 (ringing of a heavily weighted visit's mask) cannot normalise
    covered &= np.all(weighted > 0, axis=0)
    inverse_weight = np.zeros(weighted.shape)
    np.divide(1.0, weighted, out=inverse_weight, where=covered[None])
    n_image = np.where(covered[None], np.clip(counts, 0, _N_IMAGE_MAX), 0)
    return inverse_weight.astype(np.float32), n_image.astype(np.uint16)


def _spline_coverage(
    good: np.ndarray, unsplit: np.ndarray, order: int, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference's ``calculateNImage``: ``W_s``, ``Σ_v rint(shift(g_v))``, coverage."""
    n_visits, ny, nx = good.shape
    n_subfilters = unsplit.shape[1]
    # W_s is summed in float32, as in the reference's ImageF, so that the round-off of a
    # whole-pixel shift (1 + 1e-16) does not pass the coverage threshold.
    coverage = np.zeros((n_subfilters, ny, nx), dtype=np.float32)
    weighted = np.zeros((n_subfilters, ny, nx)) if weights is not None else None
    counts = np.zeros((n_subfilters, ny, nx), dtype=np.int64)
    for v in range(n_visits):
        coefficients = spline_prefilter(good[v].astype(np.float64), order)
        for s in range(n_subfilters):
            shifted = spline_translate(coefficients, -unsplit[v, s], order)
            coverage[s] += shifted
            counts[s] += np.rint(shifted).astype(np.int64)
            if weighted is not None:
                assert weights is not None  # weighted exists only with weights
                weighted[s] += weights[v] * shifted
    covered = np.all(coverage > MIN_SUBBAND_COVERAGE, axis=0)
    return (coverage if weighted is None else weighted), counts, covered


def _spectral_coverage(
    good: np.ndarray,
    unsplit: np.ndarray,
    method: ShiftMethod,
    weights: np.ndarray | None,
    precision: str | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spectral ``W_s`` (weighted if ``weights``), the whole-pixel counts, and coverage."""
    n_visits, ny, nx = good.shape
    n_subfilters = unsplit.shape[1]
    plain = _BackProjection(
        (ny, nx), unsplit, method=method, order=0, weights=None, precision=precision
    )
    weighted = None
    if weights is not None:
        weighted = _BackProjection(
            (ny, nx), unsplit, method=method, order=0, weights=weights, precision=precision
        )
    grid = plain.grid
    padded = np.zeros(grid.fft_shape, dtype=bool) if grid.padded else None
    counts = np.zeros(
        (n_subfilters, ny, nx), dtype=np.uint16 if n_visits <= _N_IMAGE_MAX else np.int64
    )
    whole = -np.rint(unsplit).astype(np.int64)
    for v in range(n_visits):
        spectrum = grid.transform(good[v])
        plain.add_spectrum(v, spectrum)
        if weighted is not None:
            weighted.add_spectrum(v, spectrum)
        if padded is None:
            flags = good[v]
        else:
            padded[:ny, :nx] = good[v]
            flags = padded
        for s in range(n_subfilters):
            _add_rolled(counts[s], flags, int(whole[v, s, 0]), int(whole[v, s, 1]))
    coverage = plain.result()
    covered = np.all(coverage > MIN_SUBBAND_COVERAGE + _SPECTRAL_COVERAGE_TOLERANCE, axis=0)
    return (coverage if weighted is None else weighted.result()), counts, covered


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
    precision: str | None = None,
    psf_blur: np.ndarray | None = None,
) -> np.ndarray:
    """DCR-matched templates of every visit: ``t_v = G_v ⊗ Σ_s shift(A_s, +shift_{v,s})``.

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
    precision : {"single", "double"}, optional
        Floating-point precision of the ``"fourier"`` and ``"sinc"``
        transforms; None (the default) takes :data:`SPECTRAL_PRECISION`.
        ``"spline"`` always works in float64.
    psf_blur : numpy.ndarray, optional
        ``(V,)`` variances ``σ_v²``, px², of the circular Gaussian each visit's
        template is convolved with: the visit's PSF is the model's PSF
        convolved with it (``psfForwardModel="gaussian"``). None or 0: the
        template is at the model's PSF, as in the reference.

    Returns
    -------
    numpy.ndarray of float64
        ``(V, ny, nx)`` templates, flux.
    """
    forward = _Templates(
        model,
        shifts,
        accelerate=accelerate,
        method=method,
        order=order,
        precision=precision,
        psf_blur=psf_blur,
    )
    templates = np.empty((forward.n_visits, *forward.shape))
    for v in range(forward.n_visits):
        templates[v] = forward.template(v)
    return templates


def forward_model(
    model: np.ndarray,
    shifts_v: np.ndarray,
    *,
    accelerate: float,
    method: ShiftMethod,
    order: int,
    precision: str | None = None,
    psf_blur: float | None = None,
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
    precision : {"single", "double"}, optional
        Floating-point precision of the ``"fourier"`` and ``"sinc"``
        transforms; None (the default) takes :data:`SPECTRAL_PRECISION`.
        ``"spline"`` always works in float64.
    psf_blur : float, optional
        Variance ``σ²``, px², of the Gaussian the template is convolved with
        (see :func:`forward_models`); None: none.

    Returns
    -------
    numpy.ndarray of float64
        ``(ny, nx)`` template, flux.
    """
    stacked = np.asarray(shifts_v, dtype=np.float64)[None]
    templates = forward_models(
        model,
        stacked,
        accelerate=accelerate,
        method=method,
        order=order,
        precision=precision,
        psf_blur=None if psf_blur is None else np.array([psf_blur], dtype=np.float64),
    )
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
    precision: str | None = None,
    psf_blur: np.ndarray | None = None,
    precondition: bool = True,
) -> np.ndarray:
    """Model update ``Δ_s = (1/W_s)·P ⊗ Σ_v shift(G_v ⊗ r_v, −shift_{v,s})`` (step 3).

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
    precision : {"single", "double"}, optional
        Floating-point precision of the ``"fourier"`` and ``"sinc"``
        transforms; None (the default) takes :data:`SPECTRAL_PRECISION`.
        ``"spline"`` always works in float64.
    psf_blur : numpy.ndarray, optional
        ``(V,)`` variances, px², of the Gaussians ``G_v`` of
        :func:`forward_models`: each residual is convolved with its visit's
        (the adjoint of the forward blur) before it is shifted back. None: none.
    precondition : bool
        With ``psf_blur`` and a spectral method: divide each frequency of the
        sum by the visits' share of it (``P``,
        :meth:`_BackProjection.preconditioner`); False leaves the exact
        adjoint. ``"spline"`` is never preconditioned.

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
    sums = _BackProjection(
        (ny, nx),
        unsplit,
        method=method,
        order=order,
        weights=weights,
        precision=precision,
        psf_blur=psf_blur,
        precondition=precondition,
    )
    for v in range(n_visits):
        sums.add(v, residuals[v])
    return sums.result() * inverse_weight


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
    delta = np.asarray(delta)
    if delta.shape != model.shape:
        raise ValueError(f"delta {delta.shape} must match model {model.shape}")
    with np.errstate(invalid="ignore", over="ignore"):
        new = np.add(model, delta, dtype=np.float64)
        finite = bool(np.isfinite(new.sum()))  # a non-finite element makes the sum non-finite
    if not finite:
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
    return _condition_into(np.multiply(new, gain), old, gain)


def _condition_into(scaled: np.ndarray, old: np.ndarray, gain: float) -> np.ndarray:
    """``(scaled + old)/(1 + gain)`` in place, ``scaled`` being ``gain·new`` in float64."""
    scaled += old
    scaled /= 1.0 + gain
    return scaled


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
    blended = new * weights
    blended += template * (1.0 - weights) / n_subfilters
    return blended


def iterate_block(
    model: np.ndarray,
    images: np.ndarray,
    good: np.ndarray,
    shifts: np.ndarray,
    unsplit_shifts: np.ndarray,
    inverse_weight: np.ndarray,
    *,
    gain: float | Callable[[], float],
    accelerate: float,
    method: ShiftMethod,
    order: int,
    regularize_iterations: float,
    regularize_frequency: float,
    regularization_width: int,
    frequency_clamp: str = "planes",
    background: np.ndarray | None = None,
    template_image: np.ndarray | None = None,
    model_weights: np.ndarray | None = None,
    visit_weights: np.ndarray | None = None,
    templates: np.ndarray | None = None,
    precision: str | None = None,
    observe: Callable[[int, np.ndarray], None] | None = None,
    psf_blur: np.ndarray | None = None,
) -> np.ndarray:
    """One iteration of the DCR fit on one block (steps 1-8 of docs/algorithm.md, "The iteration").

    1. templates ``t_v`` (:func:`forward_models`), unless given;
    2. residuals (:func:`residuals`);
    3. update ``Δ`` (:func:`back_project`);
    4. ``new = M + Δ``, non-finite values keep ``M`` (:func:`update_model`);
    5. if ``regularize_iterations > 0``: clamp to a factor of ``M``
       (:func:`dcr_dask.kernels.regularize.regularize_iterations`);
    6. if ``regularize_frequency > 0``: the noise of ``new[0]`` over
       ``background`` (5-pixel border) and the frequency regularization
       (:func:`dcr_dask.kernels.regularize.regularize_frequency`), against the mean
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
    gain : float or callable
        Gain of this iteration (:func:`dcr_dask.kernels.convergence.calculate_gain`),
        or a function of no arguments returning it, called once after every
        template has been made (so that it can depend on what ``observe`` saw,
        e.g. the convergence metric of ``model``).
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
    frequency_clamp : {"planes", "smoothed", "smoothedColour"}
        ``frequencyClamp``: how step 6 bounds each plane's ratio to the mean
        (:func:`dcr_dask.kernels.regularize.regularize_frequency`'s ``clamp``).
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
    precision : {"single", "double"}, optional
        Floating-point precision of the ``"fourier"`` and ``"sinc"``
        transforms; None (the default) takes :data:`SPECTRAL_PRECISION`.
        ``"spline"`` always works in float64.
    observe : callable, optional
        Called as ``observe(v, t_v)`` with each visit's template (a transient
        ``(ny, nx)`` buffer: copy what must be kept) as it is made.
    psf_blur : numpy.ndarray, optional
        ``(V,)`` variances, px², of each visit's PSF over the model's
        (:func:`forward_models`, :func:`back_project`, whose spectral update
        is then preconditioned per frequency); None: every visit is
        modelled at the model's PSF, as in the reference. Given ``templates``
        must have been made with the same blur.

    Returns
    -------
    numpy.ndarray of float32
        ``(S, ny, nx)`` new planes (float32 as the reference's model images).
    """
    _check_method(method)
    if not callable(gain) and not gain >= 0:
        raise ValueError(f"gain must be >= 0, got {gain!r}")
    model = np.asarray(model)
    images = np.asarray(images)
    good = np.asarray(good, dtype=bool)
    inverse_weight = np.asarray(inverse_weight)
    _check_block(model, images, good, inverse_weight)
    if model_weights is not None and template_image is None:
        raise ValueError("model weights need the static-sky template image")
    if regularize_frequency > 0 and background is None:
        raise ValueError("frequency regularization needs the background pixels of the block")
    n_subfilters, ny, nx = model.shape
    n_visits = images.shape[0]
    unsplit = _as_shifts("unsplit_shifts", unsplit_shifts, n_visits, n_subfilters, split=False)
    weights = _relative_visit_weights(visit_weights, n_visits)
    template_of = _template_source(
        model, images, shifts, templates, accelerate, method, order, precision, psf_blur
    )
    # Steps 1-3, streamed: template, residual, its shifted copies into the sub-band sums.
    sums = _BackProjection(
        (ny, nx),
        unsplit,
        method=method,
        order=order,
        weights=weights,
        precision=precision,
        psf_blur=psf_blur,
    )
    residual = np.empty((ny, nx), dtype=sums.dtype)
    for v in range(n_visits):
        template = np.asarray(template_of(v), dtype=sums.dtype)
        if observe is not None:
            observe(v, template)
        sums.add_residual(v, images[v], template, good[v], residual)
    if callable(gain):
        gain = gain()
        if not gain >= 0:
            raise ValueError(f"gain must be >= 0, got {gain!r}")
    blend = None
    if model_weights is not None:
        assert template_image is not None  # checked above
        blend = (model_weights, template_image)
    if regularize_iterations > 0 or regularize_frequency > 0:
        return _composed_update(
            model,
            sums,
            inverse_weight,
            gain,
            regularize_iterations=regularize_iterations,
            regularize_frequency=regularize_frequency,
            regularization_width=regularization_width,
            frequency_clamp=frequency_clamp,
            background=background,
            blend=blend,
        )
    return _fused_update(model, sums, inverse_weight, gain, blend)


def _check_block(
    model: np.ndarray, images: np.ndarray, good: np.ndarray, inverse_weight: np.ndarray
) -> None:
    """Refuse a block whose arrays do not fit together (:func:`iterate_block`)."""
    if model.ndim != 3:
        raise ValueError(f"model must have shape (n, ny, nx), got {model.shape}")
    _, ny, nx = model.shape
    if images.ndim != 3 or images.shape != good.shape or images.shape[1:] != (ny, nx):
        raise ValueError(
            f"images {images.shape} and good {good.shape} must have shape (V, {ny}, {nx})"
        )
    if inverse_weight.shape != model.shape:
        raise ValueError(f"inverse_weight {inverse_weight.shape} must match model {model.shape}")


def _template_source(
    model: np.ndarray,
    images: np.ndarray,
    shifts: np.ndarray,
    templates: np.ndarray | None,
    accelerate: float,
    method: ShiftMethod,
    order: int,
    precision: str | None,
    psf_blur: np.ndarray | None,
) -> Callable[[int], np.ndarray]:
    """Each visit's template (step 1): the given ``templates``, else made on demand."""
    n_visits = images.shape[0]
    if templates is None:
        forward = _Templates(
            model,
            shifts,
            accelerate=accelerate,
            method=method,
            order=order,
            precision=precision,
            psf_blur=psf_blur,
        )
        if forward.n_visits != n_visits:
            raise ValueError(f"shifts are for {forward.n_visits} visits, images for {n_visits}")
        return forward.template
    templates = np.asarray(templates)
    if templates.shape != images.shape:
        raise ValueError(f"templates {templates.shape} must match images {images.shape}")
    return templates.__getitem__


def _composed_update(
    model: np.ndarray,
    sums: _BackProjection,
    inverse_weight: np.ndarray,
    gain: float,
    *,
    regularize_iterations: float,
    regularize_frequency: float,
    regularization_width: int,
    frequency_clamp: str,
    background: np.ndarray | None,
    blend: tuple[np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """Steps 4-8 composed from the tested steps, for the regularized fit."""
    n_subfilters = model.shape[0]
    model = _as_stack("model", model)
    delta = sums.result()
    np.multiply(delta, inverse_weight, out=delta)
    new = update_model(model, delta)
    if regularize_iterations > 0:
        new = regularize.regularize_iterations(
            new, model, regularize_iterations, regularization_width
        )
    if regularize_frequency > 0:
        assert background is not None  # checked by iterate_block
        noise = background_noise(new[0], background)
        new = regularize.regularize_frequency(
            new,
            model,
            regularize_frequency,
            regularization_width,
            noise,
            clamp=frequency_clamp,
        )
    new = np.asarray(new, dtype=np.float64)
    new = _condition_into(np.multiply(new, gain, out=new), model, gain)
    if blend is not None:
        model_weights, template_image = blend
        new = apply_model_weights(new, template_image, model_weights, n_subfilters)
    return new.astype(np.float32)


def _fused_update(
    model: np.ndarray,
    sums: _BackProjection,
    inverse_weight: np.ndarray,
    gain: float,
    blend: tuple[np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """Steps 4, 7 and 8 fused, one plane at a time, for the unregularized fit.

    Without the clamps of steps 5-6, ``condition(update_model(M, Δ), M, gain)``
    is ``M + Δ·gain/(1 + gain)``, and ``M`` where that is not finite (the same
    to float64 rounding, well below the float32 output); no step needs a
    neighbouring plane.
    """
    n_subfilters, ny, nx = model.shape
    mix = template_part = None
    if blend is not None:
        model_weights, template_image = blend
        mix = np.asarray(model_weights, dtype=np.float64)
        template_part = np.asarray(template_image, dtype=np.float64) * (1.0 - mix) / n_subfilters
    step = gain / (1.0 + gain)
    out = np.empty((n_subfilters, ny, nx), dtype=np.float32)
    new = np.empty((ny, nx))
    for s in range(n_subfilters):
        delta = sums.plane(s)
        np.multiply(delta, inverse_weight[s], out=delta)
        old = model[s]  # float32 or float64: upcast exactly inside the ufuncs
        with np.errstate(invalid="ignore", over="ignore"):
            np.multiply(delta, step, out=new, dtype=np.float64)
            new += old
            if not np.isfinite(new.sum()):
                keep = ~np.isfinite(new)
                new[keep] = old[keep]
        if mix is not None and template_part is not None:
            new *= mix
            new += template_part
        out[s] = new
    return out


# --------------------------------------------------------------------------- finish (section 5)


def coadd_from_model(model: np.ndarray, accelerate: float) -> tuple[np.ndarray, np.ndarray]:
    """Output sub-band images and the DCR coadd (docs/algorithm.md, "The coadd and outputs").

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
    return amplified.astype(np.float32), coadd_of_planes(amplified)


def coadd_of_planes(planes: np.ndarray) -> np.ndarray:
    """The DCR coadd of finished sub-band images: their sum (the reference's ``stackCoadd``).

    The one home of this sum: :func:`coadd_from_model` and the output store
    (:func:`dcr_dask.io.store.make_output_dataset`, over the sub-band images as
    ``processResults`` finished them) both use it.

    Parameters
    ----------
    planes : numpy.ndarray
        ``(S, ny, nx)`` sub-band images, flux.

    Returns
    -------
    numpy.ndarray of float32
        ``(ny, nx)``, summed in double precision.
    """
    return np.asarray(planes).sum(axis=0, dtype=np.float64).astype(np.float32)
