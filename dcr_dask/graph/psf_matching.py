"""PSF matching on Dask: each warp convolved to the model PSF, lazily.

docs/algorithm.md, "PSF matching and the static sky model", first step, as a
lazy graph over the tile; the numerics are in :mod:`dcr_dask.kernels.psf`.

:func:`psf_matching` computes (eagerly, small) a matching kernel per visit, from
its PSF HDU, else a Gaussian of its ``psf_fwhm_px`` (:func:`visit_psf_stamps`),
to the model PSF (below). :func:`match_psfs` applies them lazily with a halo of
half the kernel (:func:`dcr_dask.graph.halos.psf_matching_halo`): image with K,
variance with K², mask planes ORed over the kernel.

Model PSF
---------
The model PSF is ``GaussianPsfFactory``'s (:func:`model_psf_stamp`): a
Gaussian core of FWHM ``modelPsf.defaultFwhm`` with, by default
(``addWing``), a Gaussian wing ``wingFwhmFactor`` times as wide whose peak is
``wingAmplitude`` times the core's, on a stamp of ``sizeFactor`` times the
FWHM. The core is widened to :data:`MODEL_PSF_WIDEN` times the narrowest core
that every warp can be matched to without sharpening
(:func:`dcr_dask.kernels.psf.min_model_core_fwhm_px`, from the PSFs' transfer
functions) when that is larger; pass ``widen=None`` to keep ``defaultFwhm``
exactly, in which case warps whose PSF is wider are flagged
(``psf_too_wide``, logged as a warning) and left unconvolved. The wing lets
the model follow the wings of atmospheric PSFs with a narrow core: a winged
model needs a core about 40 % narrower than a single Gaussian for a Moffat
PSF of beta 2.5. Each kernel's residual against the model is measured and
reported (:data:`MATCHING_RESIDUAL_WARN`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import attrs
import dask.array as da
import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from dcr_dask.errors import expect_settings
from dcr_dask.graph.halos import psf_matching_halo
from dcr_dask.graph.overlap import map_yx_overlap
from dcr_dask.graph.tile import TILE_ATTRS, pixel_arrays
from dcr_dask.kernels import psf as psf_kernels
from dcr_dask.masks import MaskPlanes

__all__ = [
    "MATCHING_RESIDUAL_WARN",
    "MODEL_PSF_WIDEN",
    "ModelPsf",
    "PsfMatching",
    "PsfMatchingSettings",
    "gaussian_stamp",
    "match_psfs",
    "model_psf_fwhm",
    "model_psf_sigma_px",
    "model_psf_stamp",
    "psf_matching",
    "visit_psf_stamps",
]

logger = logging.getLogger(__name__)

#: The model PSF is at least this many times as wide as the widest input PSF (FWHM).
MODEL_PSF_WIDEN = 1.05

_MIN_PSF_STAMP = 15


@attrs.frozen
class ModelPsf:
    """``GaussianPsfFactory``'s settings: the model PSF (:func:`dcr_dask.settings.model_psf`).

    Attributes
    ----------
    default_fwhm_px : float
        ``defaultFwhm``: the core's FWHM, pixels, when nothing widens it.
    size : int or None
        ``size``: the stamp's width, pixels; None for ``size_factor ×`` the FWHM.
    size_factor : float
        ``sizeFactor``.
    min_size, max_size : int or None
        ``minSize``, ``maxSize``: bounds of the computed size, pixels.
    wing_fwhm_factor : float
        ``wingFwhmFactor`` with ``addWing``, else 1.
    wing_amplitude : float
        ``wingAmplitude`` with ``addWing``, else 0 (no wing).
    """

    default_fwhm_px: float
    size: int | None = None
    size_factor: float = 3.0
    min_size: int | None = 5
    max_size: int | None = None
    wing_fwhm_factor: float = 2.5
    wing_amplitude: float = 0.1


@attrs.frozen
class PsfMatchingSettings:
    """What PSF matching reads of a config (:func:`dcr_dask.settings.psf_matching_settings`).

    Attributes
    ----------
    model_psf : ModelPsf
        ``modelPsf``.
    kernel_size : int
        ``matchingKernelSize``, pixels.
    """

    model_psf: ModelPsf
    kernel_size: int


def model_psf_fwhm(
    input_fwhm_px: Sequence[float] | np.ndarray,
    default_fwhm_px: float,
    widen: float | None = MODEL_PSF_WIDEN,
) -> float:
    """FWHM of the model PSF's core, pixels: ``defaultFwhm``, or ``widen ×`` the widest input.

    Parameters
    ----------
    input_fwhm_px : sequence of float
        For each warp, the narrowest model core it can be matched to without
        sharpening (:func:`dcr_dask.kernels.psf.min_model_core_fwhm_px`), pixels.
    default_fwhm_px : float
        ``modelPsf.defaultFwhm``, pixels.
    widen : float or None
        Factor over the widest input; None keeps ``default_fwhm_px``.

    Returns
    -------
    float
    """
    if widen is None:
        return float(default_fwhm_px)
    if not widen >= 1.0:
        raise ValueError(f"widen = {widen!r} must be at least 1 (or None)")
    return float(max(default_fwhm_px, widen * float(np.max(input_fwhm_px))))


#: A matching kernel whose matched PSF differs from the model by more than this
#: (relative L2 norm, :func:`dcr_dask.kernels.psf.matching_residual`) is reported.
MATCHING_RESIDUAL_WARN = 0.02


def model_psf_sigma_px(
    psf_matched: xr.Dataset, default_fwhm_px: float, matching: PsfMatching | None = None
) -> float:
    """The Gaussian sigma of the model PSF of a run's PSF-matched warps, pixels: one per run.

    The model PSF the warps were matched to here (``matching``), else the one
    their ``model_psf_fwhm_px`` attribute records, else ``modelPsf.defaultFwhm``
    (the reference's assumption for PSF-matched warps it is given). CompareWarp's
    detections and the DCR-template reference fit all take this one value.

    Parameters
    ----------
    psf_matched : xarray.Dataset
        The PSF-matched warps.
    default_fwhm_px : float
        ``modelPsf.defaultFwhm``, pixels.
    matching : PsfMatching, optional
        The kernels, when the warps were PSF-matched here.

    Returns
    -------
    float
    """
    if matching is not None:
        return matching.model_sigma_px
    fwhm = float(psf_matched.attrs.get("model_psf_fwhm_px", default_fwhm_px))
    return fwhm / psf_kernels.FWHM_PER_SIGMA


def model_psf_stamp(model_psf: ModelPsf, core_fwhm_px: float) -> np.ndarray:
    """The model PSF image of ``GaussianPsfFactory`` for a core FWHM.

    Parameters
    ----------
    model_psf : ModelPsf
        ``config.modelPsf``'s settings: the wing and the stamp's size: ``size``
        if set, else ``sizeFactor ×`` the FWHM rounded to an odd number within
        ``minSize``/``maxSize``, but never less than ±4 sigma of the wing.
    core_fwhm_px : float
        FWHM of the Gaussian core, pixels.

    Returns
    -------
    numpy.ndarray of float64
        Odd, square, centred, summing to 1 (:func:`dcr_dask.kernels.psf.model_psf_image`).

    Notes
    -----
    The reference's ``sizeFactor`` of 3 cuts the wing (2.5 times the core's
    width) at about 1.2 of its sigmas. Matching kernels cannot reproduce
    that hard edge: on the simulator's tile the kernels then missed the
    model by 1-2 %, every star left a residual in every visit, and a
    satellite streak merged with them into footprints kept as persistent
    (streak recall 37 % instead of 97 %). So the computed size grows to
    hold the wing; an explicit ``size`` is used as given.
    """
    expect_settings(model_psf, ModelPsf, "model_psf", "model_psf")
    factor, amplitude = model_psf.wing_fwhm_factor, model_psf.wing_amplitude
    size = model_psf.size
    if size is None:
        size = int(core_fwhm_px * model_psf.size_factor + 0.5)
        if model_psf.min_size is not None:
            size = max(size, int(model_psf.min_size))
        if model_psf.max_size is not None:
            size = min(size, int(model_psf.max_size))
        if amplitude > 0:
            wing_sigma = core_fwhm_px * factor / psf_kernels.FWHM_PER_SIGMA
            size = max(size, 2 * math.ceil(4.0 * wing_sigma) + 1)
    size = int(size) + 1 - int(size) % 2
    return psf_kernels.model_psf_image(
        size, core_fwhm_px, wing_fwhm_factor=factor, wing_amplitude=amplitude
    )


@attrs.frozen(eq=False)
class PsfMatching:
    """The PSF matching of a set of warps (from :func:`psf_matching`).

    Attributes
    ----------
    model_core_fwhm_px : float
        FWHM of the model PSF's Gaussian core, pixels.
    model_psf : numpy.ndarray
        The model PSF stamp (:func:`model_psf_stamp`).
    kernels : numpy.ndarray
        ``(visit, k, k)`` matching kernels, each summing to 1 (a delta for a
        warp flagged too wide).
    input_fwhm_px : numpy.ndarray
        ``(visit,)`` FWHM of each warp's PSF (adaptive moments,
        :func:`dcr_dask.kernels.psf.psf_fwhm_px`), pixels.
    too_wide : numpy.ndarray of bool
        ``(visit,)`` warps whose PSF is wider than the model (left unconvolved).
    residuals : numpy.ndarray
        ``(visit,)`` relative residual of each kernel
        (:func:`dcr_dask.kernels.psf.matching_residual`; 0 for a warp left unconvolved).
    """

    model_core_fwhm_px: float
    model_psf: np.ndarray
    kernels: np.ndarray
    input_fwhm_px: np.ndarray
    too_wide: np.ndarray
    residuals: np.ndarray

    @property
    def model_fwhm_px(self) -> float:
        """FWHM of the model PSF (adaptive moments, core and wing together), pixels."""
        return psf_kernels.psf_fwhm_px(self.model_psf)

    @property
    def model_sigma_px(self) -> float:
        """Gaussian sigma of :attr:`model_fwhm_px`, pixels."""
        return self.model_fwhm_px / psf_kernels.FWHM_PER_SIGMA

    @property
    def kernel_size(self) -> int:
        """Width of the kernels, pixels."""
        return int(self.kernels.shape[-1])


def gaussian_stamp(fwhm_px: float) -> np.ndarray:
    """The stamp that stands for the PSF of a warp known only by its ``PSF-FWHM``.

    Parameters
    ----------
    fwhm_px : float
        FWHM, pixels, > 0.

    Returns
    -------
    numpy.ndarray
        A pixel-integrated Gaussian (:func:`dcr_dask.kernels.psf.gaussian_psf_image`),
        odd and at least 3 FWHM on each side of its centre.
    """
    size = max(_MIN_PSF_STAMP, 2 * math.ceil(3.0 * fwhm_px) + 1)
    return psf_kernels.gaussian_psf_image(size, fwhm_px)


def visit_psf_stamps(warps: xr.Dataset) -> list[np.ndarray]:
    """The PSF stamp of each visit: its PSF HDU, else a Gaussian of ``psf_fwhm_px``.

    Parameters
    ----------
    warps : xarray.Dataset
        Warps in the ``open_warps`` layout (``psf``, ``has_psf``, ``psf_fwhm_px``).

    Returns
    -------
    list of numpy.ndarray
        One odd, square, centred float64 stamp per visit (not normalised).

    Raises
    ------
    ValueError
        If a visit has neither a PSF HDU nor a positive ``psf_fwhm_px``.
    """
    visits = warps["visit"].values
    has_psf = (
        np.asarray(warps["has_psf"].values, dtype=bool)
        if "has_psf" in warps.coords
        else np.full(len(visits), "psf" in warps.data_vars)
    )
    fwhm = (
        np.asarray(warps["psf_fwhm_px"].values, dtype=np.float64)
        if "psf_fwhm_px" in warps.coords
        else np.full(len(visits), np.nan)
    )
    cube = np.asarray(warps["psf"].values, dtype=np.float64) if "psf" in warps.data_vars else None
    stamps = []
    for i, visit in enumerate(visits):
        if has_psf[i] and cube is not None:
            stamps.append(cube[i])
        elif np.isfinite(fwhm[i]) and fwhm[i] > 0:
            stamps.append(gaussian_stamp(float(fwhm[i])))
        else:
            raise ValueError(
                f"visit {visit} has neither a PSF HDU nor a positive PSF-FWHM "
                f"(psf_fwhm_px = {fwhm[i]!r}); its warp cannot be PSF-matched"
            )
    return stamps


def psf_matching(
    warps: xr.Dataset,
    settings: PsfMatchingSettings,
    *,
    widen: float | None = MODEL_PSF_WIDEN,
) -> PsfMatching:
    """Choose the model PSF and compute each warp's matching kernel (eager, small).

    Parameters
    ----------
    warps : xarray.Dataset
        Direct warps; uses the ``psf`` variable and ``has_psf``/``psf_fwhm_px``
        coordinates (``open_warps`` layout).
    settings : PsfMatchingSettings
        The model PSF (its core FWHM ``defaultFwhm``, its wing and stamp size:
        :func:`model_psf_stamp`) and ``matchingKernelSize``.
    widen : float or None
        The model's core is at least ``widen`` times the narrowest core that
        every warp can be matched to without sharpening
        (:func:`dcr_dask.kernels.psf.min_model_core_fwhm_px`, :func:`model_psf_fwhm`);
        None keeps ``defaultFwhm``.

    Returns
    -------
    PsfMatching

    Raises
    ------
    ValueError
        If ``matchingKernelSize`` is even or not positive, or a visit has no
        PSF information (the message names the visit).

    Notes
    -----
    A kernel whose matched PSF misses the model by more than
    :data:`MATCHING_RESIDUAL_WARN` (e.g. a kernel too small for the PSF's
    wings) is reported with a warning naming the visit; the residuals are
    kept in the result and the run metadata.
    """
    expect_settings(settings, PsfMatchingSettings, "settings", "psf_matching_settings")
    size = settings.kernel_size
    if isinstance(size, bool) or int(size) != size or size < 1 or size % 2 != 1:
        raise ValueError(f"matchingKernelSize = {size!r} must be a positive odd number of pixels")
    stamps = visit_psf_stamps(warps)
    visits = warps["visit"].values
    model_psf = settings.model_psf
    factor, amplitude = model_psf.wing_fwhm_factor, model_psf.wing_amplitude
    input_fwhm = np.array([psf_kernels.psf_fwhm_px(stamp) for stamp in stamps])
    needed = np.array(
        [
            psf_kernels.min_model_core_fwhm_px(
                stamp, wing_fwhm_factor=factor, wing_amplitude=amplitude
            )
            for stamp in stamps
        ]
    )
    core_fwhm = model_psf_fwhm(needed, model_psf.default_fwhm_px, widen)
    model = model_psf_stamp(model_psf, core_fwhm)
    too_wide = needed > core_fwhm * (1.0 + 1e-9)
    kernels = np.empty((len(stamps), size, size))
    residuals = np.zeros(len(stamps))
    # One BLAS thread: each kernel is a size² × size² solve (441² by default), far too
    # small for threads. With two OpenBLAS threads on a loaded machine their
    # spin-waiting made each solve cost 0.4-0.7 CPU s instead of 0.006 (the run's
    # client process, unlike Dask's workers, has multithreaded BLAS;
    # benchmarks/README.md, "bench_end_to_end.py").
    with threadpool_limits(limits=1, user_api="blas"):
        for i, stamp in enumerate(stamps):
            if too_wide[i]:
                logger.warning(
                    "visit %s: PSF (FWHM %.3f px) is wider than the model PSF (core FWHM %.3f px; "
                    "it needs at least %.3f px); the warp is left unconvolved (not sharpened) and "
                    "flagged psf_too_wide",
                    visits[i],
                    input_fwhm[i],
                    core_fwhm,
                    needed[i],
                )
                kernels[i] = psf_kernels.delta_kernel(size)
                continue
            kernels[i] = psf_kernels.matching_kernel(stamp, model, size)
            residuals[i] = psf_kernels.matching_residual(stamp, kernels[i], model)
            if residuals[i] > MATCHING_RESIDUAL_WARN:
                logger.warning(
                    "visit %s: its PSF-matching kernel misses the model PSF by %.1f %% (relative "
                    "L2); differences with this warp keep residuals at every source. A larger "
                    "matchingKernelSize (now %d) may help",
                    visits[i],
                    100 * residuals[i],
                    size,
                )
    logger.info(
        "model PSF: core FWHM %.3f px%s (defaultFwhm %.3f px; widest input %.3f px, needing "
        "a core of %.3f px); matching residuals %.2f-%.2f %%",
        core_fwhm,
        f" with a wing x{factor:g} at {amplitude:g}" if amplitude > 0 else "",
        model_psf.default_fwhm_px,
        input_fwhm.max(),
        needed.max(),
        100 * residuals.min(),
        100 * residuals.max(),
    )
    return PsfMatching(core_fwhm, model, kernels, input_fwhm, too_wide, residuals)


def _convolve(array: da.Array, kernels: np.ndarray, halo: int) -> da.Array:
    """Convolve each visit of a ``(visit, y, x)`` array with its kernel, with a reflected halo."""
    size = kernels.shape[-1]
    stack = da.from_array(kernels, chunks=(array.chunks[0], size, size))
    return map_yx_overlap(
        psf_kernels.convolve_block,
        array,
        halo=halo,
        boundary="reflect",
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
        whole=[stack],
    )


def match_psfs(
    warps: xr.Dataset,
    settings: PsfMatchingSettings,
    *,
    matching: PsfMatching | None = None,
    widen: float | None = MODEL_PSF_WIDEN,
) -> xr.Dataset:
    """PSF-matched warps made from direct warps (lazy).

    Parameters
    ----------
    warps : xarray.Dataset
        Direct warps ``(visit, y, x)`` (``open_warps`` layout).
    settings : PsfMatchingSettings
        The model PSF and kernel size (through :func:`psf_matching`).
    matching : PsfMatching, optional
        Kernels already computed; default :func:`psf_matching`.
    widen : float or None
        Passed to :func:`psf_matching`.

    Returns
    -------
    xarray.Dataset
        ``image``, ``variance`` (float32) and ``mask`` (int32) with the warps'
        chunks, coordinates and tile attributes, plus the coordinates
        ``psf_too_wide`` and ``input_psf_fwhm_px`` along ``visit`` and the
        attributes ``model_psf_fwhm_px`` and ``matching_kernel_size``. Pixels
        whose image or variance is not finite are treated as ``NO_DATA``
        (image 0) before convolving; ``NO_DATA`` and every other plane grow by
        half the kernel. Beyond the tile's edges the images are reflected.
    """
    if matching is None:
        matching = psf_matching(warps, settings, widen=widen)
    if matching.kernels.shape[0] != warps.sizes["visit"]:
        raise ValueError(
            f"{matching.kernels.shape[0]} matching kernels for {warps.sizes['visit']} visits"
        )
    planes = MaskPlanes(warps.attrs["mask_planes"])
    no_data = np.int32(planes.value(["NO_DATA"]))
    image, variance, mask = pixel_arrays(warps)
    finite = da.isfinite(image) & da.isfinite(variance)
    image = da.where(finite, image, 0.0).astype(np.float32)
    variance = da.where(finite, variance, 0.0).astype(np.float32)
    mask = da.where(finite, mask, mask | no_data).astype(np.int32)
    halo = psf_matching_halo(matching.kernel_size)
    matched_mask = map_yx_overlap(
        psf_kernels.grow_mask_block,
        mask,
        halo=halo,
        boundary="reflect",
        dtype=np.int32,
        half_width=halo,
    )
    dims = ("visit", "y", "x")
    coords = {name: coord for name, coord in warps.coords.items() if "visit" in coord.dims}
    coords.update({"y": warps["y"], "x": warps["x"]})
    coords["psf_too_wide"] = ("visit", matching.too_wide.copy())
    coords["input_psf_fwhm_px"] = ("visit", matching.input_fwhm_px.copy())
    coords["psf_matching_residual"] = ("visit", matching.residuals.copy())
    attrs_ = {key: warps.attrs[key] for key in TILE_ATTRS if key in warps.attrs}
    attrs_.update(
        model_psf_fwhm_px=matching.model_fwhm_px,
        model_psf_core_fwhm_px=matching.model_core_fwhm_px,
        matching_kernel_size=matching.kernel_size,
    )
    return xr.Dataset(
        {
            "image": (dims, _convolve(image, matching.kernels, halo)),
            "variance": (dims, _convolve(variance, matching.kernels**2, halo)),
            "mask": (dims, matched_mask),
        },
        coords=coords,
        attrs=attrs_,
    )
