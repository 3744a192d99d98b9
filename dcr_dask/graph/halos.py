"""Every halo of the graph layer: how far a chunk must see beyond its own pixels.

A halo is the margin, pixels, by which a chunk is grown (:mod:`dcr_dask.graph.overlap`,
or the fit's own grown blocks in :mod:`dcr_dask.graph.assemble`) so that its core
comes out as if the whole tile had been computed at once. Each formula is here,
named after what needs it:

- :func:`forward_model_halo`: DCR-matched templates (one forward model);
- :func:`halo_px`: the DCR fit's blocks (forward model, back-projection, the
  per-visit PSF blur and regularization);
- :func:`psf_blur_reach`: the per-visit PSF blur of a forward model;
- :func:`psf_matching_halo`: PSF-matching convolution and mask growth;
- :func:`detection_halo`: footprint detection without the peak test;
- :func:`growth_halo`: footprint growth (its radius is :func:`grow_radius`);
- :func:`smoothing_halo`: smoothed (matched-filter) detection.

:func:`smoothing_halo` and :func:`grow_radius` are defined beside the kernels
they serve (:mod:`dcr_dask.kernels.detection`, which cannot import the graph)
and re-exported here; :attr:`dcr_dask.kernels.detection.DetectionSettings.halo`
is the kernel's own definition of :func:`detection_halo`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from dcr_dask.kernels.detection import DetectionSettings, grow_radius, smoothing_halo
from dcr_dask.kernels.shift import INTERPOLATION_REACH_PX

if TYPE_CHECKING:
    from dcr_dask.graph.assemble import FitSettings

__all__ = [
    "detection_halo",
    "forward_model_halo",
    "grow_radius",
    "growth_halo",
    "halo_px",
    "psf_blur_reach",
    "psf_matching_halo",
    "smoothing_halo",
]


def forward_model_halo(max_shift_px: float, method: str) -> int:
    """Halo of one forward model (shifting sub-band planes): the shift plus the interpolation.

    Covers :func:`dcr_dask.graph.template.forward_model_tile` (DCR-matched templates).

    Parameters
    ----------
    max_shift_px : float
        Largest shift component anywhere, pixels.
    method : {"spline", "sinc", "fourier"}
        ``shiftMethod`` (its reach, :data:`dcr_dask.kernels.shift.INTERPOLATION_REACH_PX`).

    Returns
    -------
    int
        ``ceil(max shift) + interpolation reach``, pixels.
    """
    return math.ceil(max_shift_px) + INTERPOLATION_REACH_PX[method]


def psf_blur_reach(max_variance_px2: float) -> int:
    """Reach of the per-visit PSF blur of the forward model: 4 sigma of its widest Gaussian.

    Parameters
    ----------
    max_variance_px2 : float
        Largest variance of the visits' Gaussians (``psfForwardModel="gaussian"``), px².

    Returns
    -------
    int
        ``ceil(4·sqrt(max variance))``, pixels; 0 without blur.
    """
    if not max_variance_px2 > 0:
        return 0
    return math.ceil(4.0 * math.sqrt(max_variance_px2))


def halo_px(max_shift_px: float, settings: FitSettings, max_blur_px2: float = 0.0) -> int:
    """Halo that makes a fit block's core independent of where the block boundaries are.

    Covers the DCR fit (:func:`dcr_dask.graph.assemble.fit_tile`, sized by
    :func:`dcr_dask.running.pipeline.run`).

    Parameters
    ----------
    max_shift_px : float
        Largest DCR shift component of any visit and sub-band, pixels.
    settings : FitSettings
        The fit's settings (shift method, regularization width).
    max_blur_px2 : float
        Largest variance of the visits' PSF blur (``psfForwardModel="gaussian"``),
        px²; 0 without.

    Returns
    -------
    int
        ``2·(ceil(max shift) + interpolation reach)`` (forward model, then
        back-projection: twice :func:`forward_model_halo`), plus twice
        :func:`psf_blur_reach` with a PSF blur, plus the reach of the
        regularization's opening and Gaussian filters, pixels. With
        ``shiftMethod="sinc"`` or ``"spline"`` a block's core is then the same,
        to float32 rounding, however the tile is cut; the ``"fourier"`` phase
        ramp couples every pixel of a block, so its results change slightly
        with the cut.
    """
    reach = 2 * (forward_model_halo(max_shift_px, settings.method) + psf_blur_reach(max_blur_px2))
    if settings.regularize_iterations > 0 or settings.regularize_frequency > 0:
        reach += 4 * settings.regularization_width + 2
    return int(reach)


def psf_matching_halo(kernel_size: int) -> int:
    """Halo of PSF matching: half the (odd) matching kernel.

    Covers the convolution of the image and variance and the growth of the
    mask planes in :func:`dcr_dask.graph.psf_matching.match_psfs`.

    Parameters
    ----------
    kernel_size : int
        Width of the matching kernels (``matchingKernelSize``), pixels.

    Returns
    -------
    int
        ``kernel_size // 2``, pixels.
    """
    return kernel_size // 2


def detection_halo(settings: DetectionSettings) -> int:
    """Halo that makes footprint detection exact on a chunk's core (no peak test).

    Covers :func:`dcr_dask.kernels.detection.footprint_mask` mapped over chunks in
    :mod:`dcr_dask.graph.detect`; with the peak test
    (``includeThresholdMultiplier > 1``) no finite halo is exact and footprints
    are labelled across chunks instead.

    Parameters
    ----------
    settings : DetectionSettings
        Uses ``grow_px`` and ``min_pixels``.

    Returns
    -------
    int
        ``grow_px + max(min_pixels - 1, 0)``, pixels
        (:attr:`dcr_dask.kernels.detection.DetectionSettings.halo`).
    """
    return settings.halo


def growth_halo(settings: DetectionSettings) -> int:
    """Halo of footprint growth: the growth radius.

    Covers the growth of footprints found whole across chunks (peak-tested
    detection in :mod:`dcr_dask.graph.detect`).

    Parameters
    ----------
    settings : DetectionSettings
        Uses ``grow_px`` (:func:`grow_radius` of ``nSigmaToGrow`` and the PSF).

    Returns
    -------
    int
        ``grow_px``, pixels.
    """
    return settings.grow_px
