"""A reference-structure DCR coadd in plain numpy/scipy, for benchmarks/bench_end_to_end.py.

This follows the *cost structure* of Rubin's ``DcrAssembleCoaddTask`` (with
the ``CompareWarpAssembleCoaddTask`` steps it inherits) as
docs/algorithm.md describes it, written for the benchmark in our own words:
it is the yardstick the whole ``dcr-dask run`` is measured against, not a
port. Every stage runs in this one process, serially, as Rubin's task does:

- **ingest**: read every warp (image, mask, variance, PSF stamp) from its file;
- **PSF matching**: per visit a matching kernel of ``matchingKernelSize`` pixels
  (least squares on a pixel basis) from the warp's PSF to a Gaussian model PSF,
  then a *direct* (real-space) convolution of the image with the kernel and of
  the variance with its square, as afw convolves, and the mask bits grown by
  the kernel's footprint;
- **static model**: per subregion (serially) the weighted clipped mean
  (``MEANCLIP``, σ 2.5, 3 iterations) of the PSF-matched warps;
- **detection**: per visit the difference against the static model, variance
  rescaled, thresholded at ``detect.thresholdValue`` σ in both polarities,
  footprints of at least ``minPixels`` grown by ``nSigmaToGrow`` PSF sigmas;
- **artifacts**: prefilter, ``epochCount`` and ``N``, the spatial/temporal test
  per footprint, footprints inside a bright static-model source kept; the rest
  set ``CLIPPED``;
- **fit**: visit weights, per-sub-band weights and ``n_image`` (one shift per
  visit and sub-band of every weight image), model weights, then per subregion,
  serially: the iterative DCR model with ``scipy.ndimage.shift`` spline shifts
  (order ``imageInterpOrder``; the prefilter computed once per image and reused
  for its shifts, as the reference's ``applyDcr`` does) per visit and sub-band,
  both regularizations, the gain, and the convergence metric recomputed after
  every update (its templates built again), with the reference's loop and stop
  conditions;
- **write**: the amplified sub-band images and their sum, with mask and
  variance, into FITS files.

Rubin's C++ statistics and convolutions are replaced by numpy/scipy
equivalents of the same structure (a direct convolution stays direct).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy import ndimage

from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.io.fits import read_warp_header, read_warp_pixels, read_warp_psf
from dcr_dask.masks import MaskPlanes
from dcr_dask.settings import run_shifts
from dcr_dask.visit import VisitInfo

__all__ = ["ReferenceResult", "reference_run", "shift_model", "stage_clock"]

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclasses.dataclass
class ReferenceResult:
    """What the reference-structure run produced and what it cost.

    ``cpu_s``/``wall_s``: seconds per stage; ``iteration_cpu_s``: CPU seconds of
    every model update (the update and its convergence metric).
    """

    amplified: np.ndarray  # (S, y, x) float32 output sub-band images
    visits: list[VisitInfo]
    wcs: object
    config: DcrAssembleCoaddConfig
    iterations: list[int]
    iteration_cpu_s: list[float]
    artifacts: np.ndarray  # (visit, y, x) bool, CLIPPED
    cpu_s: dict[str, float] = dataclasses.field(default_factory=dict)
    wall_s: dict[str, float] = dataclasses.field(default_factory=dict)


def stage_clock(
    cpu: dict[str, float], wall: dict[str, float], clock: Callable[[], float] = time.process_time
) -> Callable[[str], object]:
    """A context manager factory adding each stage's CPU and wall seconds to ``cpu``/``wall``."""

    @contextmanager
    def stage(name: str) -> Iterator[None]:
        c0, w0 = clock(), time.perf_counter()
        yield
        cpu[name] = cpu.get(name, 0.0) + clock() - c0
        wall[name] = wall.get(name, 0.0) + time.perf_counter() - w0

    return stage


# --------------------------------------------------------------------------- shifts


def _prefilter(image: np.ndarray, order: int) -> np.ndarray:
    if order > 1:
        return ndimage.spline_filter(image, order=order, output=np.float64)
    return np.asarray(image, np.float64)


def _shift(filtered: np.ndarray, shift: np.ndarray, order: int) -> np.ndarray:
    return ndimage.shift(filtered, shift, order=order, prefilter=False, mode="constant", cval=0.0)


def apply_dcr(image: np.ndarray, points: np.ndarray, order: int) -> np.ndarray:
    """One sub-band plane shifted by its DCR: the mean over the (one or two) points,
    the prefilter computed once for them (the reference's ``applyDcr``)."""
    filtered = _prefilter(image, order)
    if len(points) > 1 and not np.array_equal(points[0], points[1]):
        return 0.5 * (_shift(filtered, points[0], order) + _shift(filtered, points[1], order))
    return _shift(filtered, points[0], order)


def amplify(model: np.ndarray, accelerate: float) -> np.ndarray:
    """``A_s = (M_s − ref)·accelerate + ref`` (docs/algorithm.md, "The iteration")."""
    if accelerate <= 1:
        return model
    reference = model.mean(axis=0)
    return (model - reference) * accelerate + reference


def shift_model(planes: np.ndarray, shifts_v: np.ndarray, order: int) -> np.ndarray:
    """Template ``Σ_s shift(A_s, shift_{v,s})`` of one visit (planes already amplified)."""
    template = np.zeros(planes.shape[1:], np.float64)
    for plane, points in zip(planes, shifts_v, strict=True):
        template += apply_dcr(plane, points, order)
    return template


def dcr_residuals(residual: np.ndarray, unsplit_v: np.ndarray, order: int) -> Iterator[np.ndarray]:
    """The residual shifted back by each sub-band's inverse shift, prefilter computed once."""
    filtered = _prefilter(residual, order)
    for shift in unsplit_v:
        yield _shift(filtered, -shift, order)


# --------------------------------------------------------------------------- ingest, PSF matching


@dataclasses.dataclass
class Warps:
    visits: list[VisitInfo]
    images: np.ndarray
    masks: np.ndarray
    variances: np.ndarray
    psfs: list[np.ndarray]
    planes: MaskPlanes
    wcs: object


def read_warps(paths: list[Path]) -> Warps:
    """Every warp read whole from its file (image, mask, variance, PSF stamp)."""
    visits, images, masks, variances, psfs = [], [], [], [], []
    planes = wcs = None
    for path in paths:
        info, layout = read_warp_header(path)
        ny, nx = layout.shape  # the simulator's warps start at tile pixel (0, 0)
        image, mask, variance = read_warp_pixels(path, layout, slice(0, ny), slice(0, nx))
        visits.append(info)
        images.append(image)
        masks.append(mask)
        variances.append(variance)
        psfs.append(read_warp_psf(path, layout))
        planes, wcs = layout.mask_planes, layout.wcs
    return Warps(visits, np.stack(images), np.stack(masks), np.stack(variances), psfs, planes, wcs)


def _gaussian_stamp(size: int, fwhm: float) -> np.ndarray:
    r = np.arange(size) - size // 2
    sigma = fwhm * FWHM_TO_SIGMA
    g = np.exp(-0.5 * (r[:, None] ** 2 + r[None, :] ** 2) / sigma**2)
    return g / g.sum()


def _second_moment_fwhm(psf: np.ndarray) -> float:
    r = np.arange(psf.shape[0]) - psf.shape[0] // 2
    w = np.clip(psf, 0, None)
    w = w / w.sum()
    var = float((w * (r[:, None] ** 2 + r[None, :] ** 2)).sum() / 2.0)
    return float(np.sqrt(var) / FWHM_TO_SIGMA)


def fit_matching_kernel(psf: np.ndarray, model: np.ndarray, size: int) -> np.ndarray:
    """Kernel K (size²) minimising ``‖psf ⊛ K − model‖²`` on the full convolution support,
    by least squares on a pixel basis (a small ridge keeps it well posed)."""
    p = psf.shape[0]
    n = p + size - 1
    # column j: the PSF placed at kernel offset j on the n×n support of the convolution
    columns = np.zeros((n * n, size * size))
    canvas = np.zeros((n, n))
    for j, (ky, kx) in enumerate(np.ndindex(size, size)):
        canvas[:] = 0.0
        canvas[ky : ky + p, kx : kx + p] = psf
        columns[:, j] = canvas.ravel()
    m = model
    if m.shape[0] > n:
        cut = (m.shape[0] - n) // 2
        m = m[cut : cut + n, cut : cut + n]
    elif m.shape[0] < n:
        m = np.pad(m, (n - m.shape[0]) // 2)
    normal = columns.T @ columns
    normal[np.diag_indices_from(normal)] += 1e-6 * np.trace(normal) / normal.shape[0]
    kernel = np.linalg.solve(normal, columns.T @ m.ravel()).reshape(size, size)
    return kernel / kernel.sum()


def psf_match(warps: Warps, config: DcrAssembleCoaddConfig) -> tuple[Warps, float]:
    """Each warp convolved, in real space, with the kernel matching its PSF to the model PSF."""
    size = int(config.matchingKernelSize)
    fwhm = [_second_moment_fwhm(p) for p in warps.psfs]
    model_fwhm = 1.05 * max(max(fwhm), float(config.modelPsf.defaultFwhm))
    no_data = warps.planes.value(["NO_DATA"])
    images, variances, masks = [], [], []
    for v, psf in enumerate(warps.psfs):
        model = _gaussian_stamp(psf.shape[0] + size - 1, model_fwhm)
        kernel = fit_matching_kernel(psf / psf.sum(), model, size).astype(np.float32)
        image = warps.images[v]
        mask = warps.masks[v].copy()
        bad = ~(np.isfinite(image) & np.isfinite(warps.variances[v]))
        mask[bad] |= no_data
        image = np.where(bad, 0, image).astype(np.float32)
        variance = np.where(bad, 0, warps.variances[v]).astype(np.float32)
        images.append(ndimage.convolve(image, kernel, mode="reflect"))
        variances.append(ndimage.convolve(variance, kernel * kernel, mode="reflect"))
        grown = np.zeros_like(mask)
        for bit in range(32):
            flag = (mask >> bit) & 1
            if flag.any():
                grown |= ndimage.maximum_filter(flag, size=size).astype(mask.dtype) << bit
        masks.append(grown)
    matched = Warps(
        warps.visits,
        np.stack(images),
        np.stack(masks),
        np.stack(variances),
        warps.psfs,
        warps.planes,
        warps.wcs,
    )
    return matched, model_fwhm * FWHM_TO_SIGMA


# --------------------------------------------------------------------------- stacking


def subregions(shape: tuple[int, int], size: tuple[int, int]) -> Iterator[tuple[slice, slice]]:
    for y0 in range(0, shape[0], size[0]):
        for x0 in range(0, shape[1], size[1]):
            yield slice(y0, min(y0 + size[0], shape[0])), slice(x0, min(x0 + size[1], shape[1]))


def clipped_mean(values: np.ndarray, good: np.ndarray, sigma: float = 3.0, iters: int = 3) -> float:
    x = values[good]
    if x.size == 0:
        return float("nan")
    centre, spread = np.median(x), 0.741 * np.subtract(*np.percentile(x, [75, 25]))
    for _ in range(iters):
        keep = np.abs(x - centre) < sigma * spread if spread > 0 else np.ones(x.shape, bool)
        centre, spread = x[keep].mean(), x[keep].std()
    return float(centre)


def visit_weights(warps: Warps, bad: int) -> np.ndarray:
    """1 / (clipped mean variance over good pixels), per visit."""
    pairs = zip(warps.variances, warps.masks, strict=True)
    return np.array([1.0 / clipped_mean(var, (m & bad) == 0) for var, m in pairs])


def _quantiles(values: np.ndarray, use: np.ndarray, qs: tuple[float, ...]) -> list[np.ndarray]:
    """Per-pixel quantiles along axis 0 of the used values (one sort; linear interpolation)."""
    ordered = np.sort(np.where(use, values, np.inf), axis=0)
    top = np.maximum(use.sum(axis=0) - 1, 0)
    out = []
    with np.errstate(invalid="ignore"):
        for q in qs:
            position = q * top
            lo = np.floor(position).astype(np.intp)
            hi = np.minimum(lo + 1, top)
            a = np.take_along_axis(ordered, lo[None], 0)[0]
            b = np.take_along_axis(ordered, hi[None], 0)[0]
            out.append(np.where(use.any(axis=0), a + (b - a) * (position - lo), np.nan))
    return out


def static_model(
    warps: Warps, config: DcrAssembleCoaddConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted MEANCLIP of the PSF-matched warps, subregion by subregion (serially)."""
    cfg = config.assembleStaticSkyModel
    bad = warps.planes.value(list(cfg.badMaskPlanes))
    weights = visit_weights(warps, bad)
    shape = warps.images.shape[1:]
    image = np.zeros(shape, np.float32)
    variance = np.zeros(shape, np.float32)
    mask = np.zeros(shape, np.int32)
    for ys, xs in subregions(shape, tuple(config.subregionSize[::-1])):
        im = warps.images[:, ys, xs].astype(np.float64)
        var = warps.variances[:, ys, xs].astype(np.float64)
        m = warps.masks[:, ys, xs]
        use = (m & bad) == 0
        w = weights[:, None, None] * use
        median, q75, q25 = _quantiles(im, use, (0.5, 0.75, 0.25))
        centre, spread = median, 0.741 * (q75 - q25)
        keep = use
        for _ in range(int(cfg.clipIter)):
            keep = use & (np.abs(im - centre) <= float(cfg.sigmaClip) * spread)
            wk = w * keep
            total = wk.sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                centre = (wk * im).sum(axis=0) / total
                spread = np.sqrt((wk * (im - centre) ** 2).sum(axis=0) / total)
        wk = w * keep
        total = wk.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            image[ys, xs] = np.nan_to_num((wk * im).sum(axis=0) / total)
            variance[ys, xs] = np.nan_to_num((wk * wk * var).sum(axis=0) / total**2)
        mask[ys, xs] = np.bitwise_or.reduce(np.where(keep, m, 0), axis=0)
        mask[ys, xs] |= np.where(total > 0, 0, warps.planes.value(["NO_DATA"]))
    return image, variance, mask


# --------------------------------------------------------------------------- detection, artifacts


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius


def _robust_variance(values: np.ndarray) -> float:
    q75, q25 = np.percentile(values, [75, 25])
    return float((0.741 * (q75 - q25)) ** 2)


def detect_footprints(
    matched: Warps,
    static: tuple[np.ndarray, np.ndarray, np.ndarray],
    config: DcrAssembleCoaddConfig,
    psf_sigma: float,
) -> list[tuple[np.ndarray, int]]:
    """Per visit: labelled footprints (label image, count) of the difference against the
    static model above ``thresholdValue`` σ, both polarities, grown by ``nSigmaToGrow`` σ_PSF."""
    detect = config.detect
    bad = matched.planes.value(list(config.badMaskPlanes))
    s_image, s_variance, _ = static
    grow = int(np.ceil(float(detect.nSigmaToGrow) * psf_sigma))
    out = []
    for v in range(matched.images.shape[0]):
        mask = matched.masks[v]
        good = (mask & bad) == 0
        variance = matched.variances[v].astype(np.float64)
        if config.doScaleWarpVariance:
            use = good & (variance > 0)
            use &= (mask & matched.planes.value(["DETECTED"])) == 0
            ratio = _robust_variance(matched.images[v][use] / np.sqrt(variance[use]))
            variance = variance * ratio
        diff = matched.images[v] - s_image
        sigma = np.sqrt(variance + s_variance)
        with np.errstate(invalid="ignore", divide="ignore"):
            snr = np.where(good & (sigma > 0), diff / sigma, 0.0)
        above = np.abs(snr) > float(detect.thresholdValue)
        labels, n = ndimage.label(above)
        if n:
            sizes = np.bincount(labels.ravel())
            small = sizes < int(detect.minPixels)
            small[0] = False
            above[small[labels]] = False
        if grow > 0 and above.any():
            above = ndimage.binary_dilation(above, structure=_disk(grow))
        out.append(ndimage.label(above))
    return out


def find_artifacts(
    matched: Warps,
    static: tuple[np.ndarray, np.ndarray, np.ndarray],
    footprints: list[tuple[np.ndarray, int]],
    config: DcrAssembleCoaddConfig,
) -> np.ndarray:
    """The temporal/spatial test per footprint: ``(visit, y, x)`` CLIPPED pixels."""
    bad = matched.planes.value(list(config.badMaskPlanes))
    prefilter = matched.planes.value(list(config.prefilterArtifactsMaskPlanes))
    n_visits = matched.images.shape[0]
    kept: list[tuple[np.ndarray, int]] = []
    epoch_count = np.zeros(matched.images.shape[1:], np.int32)
    for v, (labels, n) in enumerate(footprints):
        if n and config.doPrefilterArtifacts:
            clean = ((matched.masks[v] & prefilter) == 0).ravel()
            free = np.bincount(labels.ravel(), weights=clean, minlength=n + 1)
            total = np.bincount(labels.ravel(), minlength=n + 1)
            drop = free / np.maximum(total, 1) <= float(config.prefilterArtifactsRatio)
            drop[0] = True
            labels = np.where(drop[labels], 0, labels)
        kept.append((labels, n))
        epoch_count += labels > 0
    n_good = ((matched.masks & bad) == 0).sum(axis=0)
    s_image, s_variance, _ = static
    with np.errstate(invalid="ignore", divide="ignore"):
        template_snr = np.where(s_variance > 0, s_image / np.sqrt(s_variance), 0.0)
    sources = template_snr > float(config.detectTemplate.thresholdValue)
    clipped = np.zeros(matched.images.shape, bool)
    for v, (labels, _) in enumerate(kept):
        for index, region in enumerate(ndimage.find_objects(labels), start=1):
            if region is None:
                continue
            inside = labels[region] == index
            counts = epoch_count[region][inside]
            mean_n = float(n_good[region][inside].mean())
            limit = int(
                min(
                    float(config.maxFractionEpochsLow) * mean_n,
                    float(config.maxNumEpochs) + float(config.maxFractionEpochsHigh) * mean_n,
                )
            )
            transient = ((counts > 0) & (counts <= limit)).mean() > float(config.spatialThreshold)
            if transient and config.doPreserveContainedBySource and sources[region][inside].all():
                transient = False
            if transient:
                clipped[v][region] |= inside
    del n_visits
    return clipped


# --------------------------------------------------------------------------- DCR fit


def _noise(plane: np.ndarray, background: np.ndarray) -> float:
    use = background.copy()
    use[:5], use[-5:], use[:, :5], use[:, -5:] = False, False, False, False
    return float(np.std(plane[use])) if use.any() else 0.0


def _clamp(image: np.ndarray, high: np.ndarray, low: np.ndarray, width: int) -> None:
    """Clamp to [low, high] on regions that survive a binary opening (in place)."""
    over = ndimage.binary_opening(image > high, iterations=width)
    image[over] = high[over]
    under = ndimage.binary_opening(image < low, iterations=width)
    image[under] = low[under]


def regularize_iteration(new: np.ndarray, old: np.ndarray, factor: float, width: int) -> None:
    for s in range(new.shape[0]):
        _clamp(new[s], np.abs(old[s]) * factor, old[s] / factor, width)


def regularize_frequency(
    new: np.ndarray, old: np.ndarray, factor: float, width: int, background: np.ndarray
) -> np.ndarray:
    ref = old.mean(axis=0)
    ref[~np.isfinite(ref) | (ref <= 0)] = 0.0
    noise = _noise(new[0], background) / (2.0 * width)
    smooth_ref = ndimage.gaussian_filter(ref, width) + 3.0 * noise
    root = np.sqrt(factor)
    out = np.empty_like(new)
    for s in range(new.shape[0]):
        plane = new[s].copy()
        _clamp(plane, smooth_ref * root, smooth_ref / root, width)
        rel = (ndimage.gaussian_filter(plane, width) + 3.0 * noise) / smooth_ref
        rel += 3.0 * (rel - ndimage.gaussian_filter(rel, width / 3.0))
        out[s] = rel * ref
    return out


def progressive_gain(
    metrics: list[float], gains: list[float], base: float, progressive: bool
) -> float:
    """The gain of docs/algorithm.md, "Gain" (progressive when at least three metrics are known)."""
    if not progressive or len(metrics) < 3 or not gains:
        return base
    estimates = []
    for i, g in enumerate(gains):
        if i + 1 >= len(metrics):
            break
        e = ((1 + g) * metrics[i + 1] - metrics[i]) / g
        estimates.append(max(e, 0.0))
    if not estimates:
        return base
    e = float(np.median(estimates[-5:]))
    g_last = gains[-1]
    predicted = (e * g_last + metrics[-2]) / (1 + g_last)
    delta = (predicted - metrics[-1]) / ((metrics[-2] - e) / (1 + g_last))
    return max(base, ((1 - abs(delta)) + g_last) / 2)


@dataclasses.dataclass
class _SubregionFit:
    """The iterative DCR model of one subregion grown by its buffer (docs/algorithm.md)."""

    config: DcrAssembleCoaddConfig
    shifts: object  # RunShifts
    accelerate: float
    order: int
    n_sub: int

    def metric(
        self,
        model: np.ndarray,
        images: np.ndarray,
        good: np.ndarray,
        converge: np.ndarray,
        background: np.ndarray,
        inner: tuple[slice, slice],
    ) -> float:
        """Mean over visits of Σ|I − t|·σ / Σ(|I + t|/2)·σ on converge pixels (new templates)."""
        amplified = amplify(model, self.accelerate)
        ref = model.mean(axis=0)
        significance = np.abs(ref) + 3.0 * _noise(model[min(1, self.n_sub - 1)], background)
        if not significance.any():
            significance = np.ones_like(significance)
        values = []
        for v in range(images.shape[0]):
            t = shift_model(amplified, self.shifts.shifts_px[v], self.order)  # type: ignore[attr-defined]
            use = (good[v] & converge[v] & np.isfinite(t))[inner]
            if not use.any():
                values.append(0.0)
                continue
            i_v, t_v = images[v][inner][use], t[inner][use]
            w_v = significance[inner][use]
            denominator = np.sum(np.abs(i_v + t_v) / 2.0 * w_v)
            values.append(
                float(np.sum(np.abs(i_v - t_v) * w_v) / denominator) if denominator > 0 else 0.0
            )
        return float(np.mean(values))

    def update(
        self,
        model: np.ndarray,
        images: np.ndarray,
        good: np.ndarray,
        inverse_weight: np.ndarray,
        background: np.ndarray,
        model_weights: np.ndarray | None,
        template: np.ndarray,
        gain: float,
    ) -> np.ndarray:
        """One model update: templates, residuals shifted back, regularization, gain."""
        config, shifts = self.config, self.shifts
        amplified = amplify(model, self.accelerate)
        total = np.zeros_like(model)
        for v in range(images.shape[0]):
            t = shift_model(amplified, shifts.shifts_px[v], self.order)  # type: ignore[attr-defined]
            residual = np.where(good[v], images[v] - t, 0.0)
            unsplit = shifts.unsplit_px[v]  # type: ignore[attr-defined]
            for s, back in enumerate(dcr_residuals(residual, unsplit, self.order)):
                total[s] += back
        new = model + total * inverse_weight
        bad_new = ~np.isfinite(new)
        new[bad_new] = model[bad_new]
        width = int(config.regularizationWidth)
        if config.regularizeModelIterations > 0:
            regularize_iteration(new, model, float(config.regularizeModelIterations), width)
        if config.regularizeModelFrequency > 0:
            new = regularize_frequency(
                new, model, float(config.regularizeModelFrequency), width, background
            )
        new = (gain * new + model) / (1.0 + gain)
        if model_weights is not None:
            new = new * model_weights + template[None] * (1.0 - model_weights) / self.n_sub
        return new

    def run(
        self,
        images: np.ndarray,
        good: np.ndarray,
        converge: np.ndarray,
        model: np.ndarray,
        inverse_weight: np.ndarray,
        background: np.ndarray,
        model_weights: np.ndarray | None,
        template: np.ndarray,
        inner: tuple[slice, slice],
        limits: tuple[int, int, float],
        iteration_cpu: list[float],
    ) -> tuple[np.ndarray, list[float], int]:
        """The reference's loop: returns the model, the metrics and the number of updates;
        appends the CPU seconds of the initial metric, then of each update with its metric."""
        config = self.config
        min_iter, max_iter, base_gain = limits
        c0 = time.process_time()
        metrics = [self.metric(model, images, good, converge, background, inner)]
        iteration_cpu.append(time.process_time() - c0)
        gains: list[float] = []
        check, n_iter = 1.0, 0
        while check > float(config.convergenceThreshold) or n_iter <= min_iter:
            c0 = time.process_time()
            gain = progressive_gain(metrics, gains, base_gain, bool(config.useProgressiveGain))
            model = self.update(
                model, images, good, inverse_weight, background, model_weights, template, gain
            )
            gains.append(gain)
            stop = False
            if config.useConvergence:
                current = self.metric(model, images, good, converge, background, inner)
                if current == 0:
                    stop = True
                else:
                    check = (metrics[-1] - current) / current
                    stop = check < 0 and n_iter > min_iter
                    metrics.append(current)
            iteration_cpu.append(time.process_time() - c0)
            if stop or n_iter > max_iter:
                break
            n_iter += 1
        return model, metrics, len(gains)


def reference_run(
    paths: list[Path],
    config: DcrAssembleCoaddConfig,
    output_dir: Path,
    *,
    log: Callable[[str], None] = print,
) -> ReferenceResult:
    """The whole reference-structure run on the warp files ``paths`` (see the module doc)."""
    cpu: dict[str, float] = {}
    wall: dict[str, float] = {}
    stage = stage_clock(cpu, wall)
    order = int(config.imageInterpOrder)
    n_sub = int(config.dcrNumSubfilters)

    with stage("ingest"):
        warps = read_warps(paths)
    planes = warps.planes
    shape = warps.images.shape[1:]
    with stage("psf_matching"):
        matched, psf_sigma = psf_match(warps, config)
    with stage("static_model"):
        static = static_model(matched, config)
    with stage("detection"):
        footprints = detect_footprints(matched, static, config, psf_sigma)
    with stage("artifacts"):
        clipped = find_artifacts(matched, static, footprints, config)
        masks = warps.masks | np.where(clipped, planes.value(["CLIPPED"]), 0).astype(np.int32)
    del matched, footprints

    iterations: list[int] = []
    iteration_cpu: list[float] = []
    with stage("fit"):
        bad = planes.value(list(config.badMaskPlanes))
        good = (masks & bad) == 0  # CLIPPED is not a bad plane (docs/algorithm.md)
        centre = ((shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0)
        shifts = run_shifts(warps.visits, warps.wcs, config, x=centre[0], y=centre[1])
        buffer = int(shifts.buffer_px)
        # the starting model: the static sky model, split evenly
        template, t_variance, t_mask = static
        model = np.repeat((template / n_sub)[None].astype(np.float64), n_sub, axis=0)
        # per-sub-band weights over the whole tile (calculateNImage): one shift per visit
        # and sub-band of each weight image
        coverage = np.zeros((n_sub, *shape))
        for v in range(len(warps.visits)):
            for s, shifted in enumerate(
                dcr_residuals(good[v].astype(np.float64), shifts.unsplit_px[v], order)
            ):
                coverage[s] += shifted
        covered = np.all(coverage > 1.0, axis=0)
        inverse_weight = np.where(covered[None], 1.0 / np.where(covered[None], coverage, 1), 0.0)
        detected_bit = planes.value(["DETECTED"])
        if config.useModelWeights:
            model_weights = ndimage.gaussian_filter(
                ((t_mask & detected_bit) != 0).astype(np.float64), float(config.modelWeightsWidth)
            )
            model_weights /= max(model_weights.max(), 1e-30)
        else:
            model_weights = None
        images = np.where(good, warps.images, 0.0)
        converge = (masks & planes.value(list(config.convergenceMaskPlanes))) != 0
        background_all = (t_mask & (bad | detected_bit)) == 0
        min_iter = config.minNumIter or n_sub
        max_iter = config.maxNumIter or 3 * n_sub
        base_gain = config.baseGain or 1.0 / (n_sub - 1)
        accelerate = float(config.accelerateModel)

        fit = _SubregionFit(config, shifts, accelerate, order, n_sub)
        for ys, xs in subregions(shape, tuple(config.subregionSize[::-1])):
            gy = slice(max(ys.start - buffer, 0), min(ys.stop + buffer, shape[0]))
            gx = slice(max(xs.start - buffer, 0), min(xs.stop + buffer, shape[1]))
            inner = (
                slice(ys.start - gy.start, ys.stop - gy.start),
                slice(xs.start - gx.start, xs.stop - gx.start),
            )
            sub_model, metrics, updates = fit.run(
                images[:, gy, gx],
                good[:, gy, gx],
                converge[:, gy, gx],
                model[:, gy, gx].copy(),
                inverse_weight[:, gy, gx],
                background_all[gy, gx],
                model_weights[gy, gx] if model_weights is not None else None,
                template[gy, gx].astype(np.float64),
                inner,
                (min_iter, max_iter, base_gain),
                iteration_cpu,
            )
            iterations.append(updates)
            model[:, ys, xs] = sub_model[:, inner[0], inner[1]]
            log(
                f"  reference subregion {ys.start}:{ys.stop}, {xs.start}:{xs.stop}: "
                f"{updates} updates, metric {metrics[0]:.4f} -> {metrics[-1]:.4f}"
            )

    with stage("write"):
        amplified = amplify(model, accelerate).astype(np.float32)
        output_dir.mkdir(parents=True, exist_ok=True)
        header = warps.wcs.to_header()  # type: ignore[attr-defined]
        for s in range(n_sub):
            hdus = [
                fits.PrimaryHDU(),
                fits.ImageHDU(amplified[s], header=header, name="IMAGE"),
                fits.ImageHDU(t_mask, header=header, name="MASK"),
                fits.ImageHDU(t_variance / n_sub, header=header, name="VARIANCE"),
            ]
            fits.HDUList(hdus).writeto(output_dir / f"dcr_coadd_{s}.fits", overwrite=True)
        fits.HDUList(
            [
                fits.PrimaryHDU(),
                fits.ImageHDU(amplified.sum(axis=0), header=header, name="IMAGE"),
                fits.ImageHDU(t_mask, header=header, name="MASK"),
                fits.ImageHDU(t_variance, header=header, name="VARIANCE"),
            ]
        ).writeto(output_dir / "coadd.fits", overwrite=True)

    return ReferenceResult(
        amplified=amplified,
        visits=warps.visits,
        wcs=warps.wcs,
        config=config,
        iterations=iterations,
        iteration_cpu_s=iteration_cpu,
        artifacts=clipped,
        cpu_s=cpu,
        wall_s=wall,
    )
