"""Renderer-agnostic scores of a DCR run, for benchmarks/bench_realistic.py.

Everything here needs only what any renderer can provide (:class:`Truth`): the
held-out visits' noise-free images, the star catalogue with each star's
single-visit S/N, the fitted visits' noise-free images and the artifact truth
masks. Nothing here knows how the tile was made.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from dcr_dask.truth import centroid_offsets, matched_difference

#: Pixels this close to an artifact are left out of the "bright pixels clipped" score.
NEAR_ARTIFACT_PX = 10


@dataclasses.dataclass(frozen=True)
class Truth:
    """What scoring needs from a renderer.

    Attributes
    ----------
    holdout_true : numpy.ndarray
        ``(held-out visit, y, x)`` noise-free images of the held-out visits.
    fitted_true : numpy.ndarray
        ``(fitted visit, y, x)`` noise-free images of the fitted visits.
    fitted_visits : list of int
        Visit ids of ``fitted_true`` (and of the artifact masks), in that order.
    streak, cosmic_rays : numpy.ndarray of bool
        ``(fitted visit, y, x)`` artifact truth masks.
    sources : numpy.ndarray
        ``(n, 3)`` x, y (0-based pixels) and flux of every source (for isolation).
    star_index : numpy.ndarray of int
        Rows of ``sources`` that are stars.
    star_snr : numpy.ndarray
        Single-visit S/N of each star of ``star_index``.
    sky_sigma : float
        Sky noise per pixel of one visit, image units.
    """

    holdout_true: np.ndarray
    fitted_true: np.ndarray
    fitted_visits: list[int]
    streak: np.ndarray
    cosmic_rays: np.ndarray
    sources: np.ndarray
    star_index: np.ndarray
    star_snr: np.ndarray
    sky_sigma: float


def star_classes(
    truth: Truth,
    cuts: dict[str, tuple[float, float]],
    *,
    edge_px: float = 16.0,
    isolation_px: float = 12.0,
    neighbour_share: float = 0.05,
) -> dict[str, np.ndarray]:
    """Isolated stars away from the edges in each S/N class.

    A star is isolated when no other source within ``isolation_px`` has more
    than ``neighbour_share`` of its flux.

    Parameters
    ----------
    truth : Truth
    cuts : dict of str to (float, float)
        Class name to the S/N range ``[lo, hi)``.
    edge_px, isolation_px, neighbour_share : float
        See above.

    Returns
    -------
    dict of str to numpy.ndarray
        Class name to ``(n, 2)`` star positions ``(x, y)``.
    """
    ny, nx = truth.holdout_true.shape[1:]
    xy, flux = truth.sources[:, :2], truth.sources[:, 2]
    keep = []
    for row in truth.star_index:
        x, y = xy[row]
        inside = edge_px <= x < nx - edge_px and edge_px <= y < ny - edge_px
        distance = np.hypot(*(xy - xy[row]).T)
        crowded = (distance < isolation_px) & (flux > neighbour_share * flux[row])
        crowded[row] = False
        keep.append(inside and not crowded.any())
    keep = np.array(keep, bool)
    return {
        name: xy[truth.star_index[keep & (truth.star_snr >= lo) & (truth.star_snr < hi)]]
        for name, (lo, hi) in cuts.items()
    }


def centroid_errors(image: np.ndarray, true: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """Centre offsets (px) of ``stars`` (``(n, 2)`` x, y) between ``image`` and noise-free ``true``.

    Centres are fixed points of a Gaussian-weighted first moment
    (:func:`dcr_dask.truth.centroid_offsets`): the same sky drawn with another
    seeing scores ~0, so a template is not charged for its PSF width. (A
    square window cut at the nearest pixel charged 0.15-0.30 of the plain
    coadd's error for 0.6" instead of 0.8" seeing.)
    """
    return centroid_offsets(image, true, np.asarray(stars, float)[:, ::-1])


def centroid_rms(images: list[np.ndarray], truth: Truth, stars: np.ndarray) -> float:
    """RMS centroid error of ``stars`` over the held-out visits (one image per visit), px."""
    if len(stars) == 0:
        return float("nan")
    errors = [
        centroid_errors(im, tr, stars) for im, tr in zip(images, truth.holdout_true, strict=True)
    ]
    return float(np.sqrt(np.nanmean(np.concatenate(errors) ** 2)))


def noise_share(
    noisy: np.ndarray, noise_free: np.ndarray, truth: Truth, stars: np.ndarray
) -> float:
    """Share of an image's centroid error that its noise alone causes.

    ``RMS(e_noisy - e_noise_free) / RMS(e_noisy)`` over the held-out visits,
    where ``e`` are the centroid errors (:func:`centroid_errors`) of ``stars``
    in ``noisy`` and in the same image made from noise-free warps. For the
    plain coadd it says how far below its error a template made of the same
    visits could hope to go at that S/N: a template whose centroids are
    perfect but whose noise equals the plain coadd's scores this ratio.

    Parameters
    ----------
    noisy, noise_free : numpy.ndarray
        ``(y, x)`` the image from the noisy warps and from the noise-free ones.
    truth : Truth
        Held-out truth.
    stars : numpy.ndarray
        ``(n, 2)`` x, y of the stars.

    Returns
    -------
    float
        The ratio; NaN without stars.
    """
    if len(stars) == 0:
        return float("nan")
    noise, total = [], []
    for true in truth.holdout_true:
        errors = centroid_errors(noisy, true, stars)
        noise.append(errors - centroid_errors(noise_free, true, stars))
        total.append(errors)
    rms = [float(np.sqrt(np.nanmean(np.concatenate(e) ** 2))) for e in (noise, total)]
    return rms[0] / rms[1]


def source_rms(images: list[np.ndarray], truth: Truth, sigma: float = 5.0) -> float:
    """RMS of (image - truth) over held-out source pixels (truth > ``sigma`` sky sigmas)."""
    residuals = [
        (im - tr)[tr > sigma * truth.sky_sigma]
        for im, tr in zip(images, truth.holdout_true, strict=True)
    ]
    return float(np.sqrt(np.mean(np.concatenate(residuals) ** 2)))


#: Width of the kernel :func:`difference_rms` fits, pixels (PSF FWHM 3-7 px on these tiles).
DIFFERENCE_KERNEL_PX = 11


def difference_rms(images: list[np.ndarray], truth: Truth, sigma: float = 5.0) -> float:
    """RMS of what image differencing leaves, over held-out source pixels.

    Each template is convolved with the kernel (and offset) that best matches
    it to its held-out visit's noise-free image
    (:func:`dcr_dask.truth.matched_difference`), as difference imaging would;
    the residual is taken where the truth exceeds ``sigma`` sky sigmas. PSF
    differences between the template and the visit are absorbed; DCR that
    differs from source to source is not.
    """
    residuals = []
    for image, true in zip(images, truth.holdout_true, strict=True):
        difference, _ = matched_difference(image, true, kernel_size=DIFFERENCE_KERNEL_PX)
        use = (true > sigma * truth.sky_sigma) & np.isfinite(difference)
        residuals.append(difference[use])
    return float(np.sqrt(np.mean(np.concatenate(residuals) ** 2)))


def artifact_scores(clipped: np.ndarray, truth: Truth) -> dict[str, float]:
    """Recall of streak and cosmic-ray pixels, and share of bright source pixels clipped.

    Parameters
    ----------
    clipped : numpy.ndarray of bool
        ``(fitted visit, y, x)`` the run's ``artifacts``, in ``truth.fitted_visits`` order.
    truth : Truth

    Returns
    -------
    dict
        ``streak``, ``cosmic`` (recall, NaN without such pixels) and ``bright clipped``
        (share of pixels whose truth exceeds 10 sky sigmas, farther than
        :data:`NEAR_ARTIFACT_PX` from any artifact, that were clipped).
    """
    artifacts = truth.streak | truth.cosmic_rays
    near = np.array([ndimage.binary_dilation(a, iterations=NEAR_ARTIFACT_PX) for a in artifacts])
    bright = (truth.fitted_true > 10.0 * truth.sky_sigma) & ~near

    def share(mask: np.ndarray) -> float:
        return float(clipped[mask].mean()) if mask.any() else float("nan")

    return {
        "streak": share(truth.streak),
        "cosmic": share(truth.cosmic_rays),
        "bright clip": share(bright),
    }
