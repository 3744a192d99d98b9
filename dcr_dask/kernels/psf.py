"""PSF matching of warps to the model PSF, as pure NumPy kernels.

CompareWarp compares every visit with a static sky model at one common PSF,
the *model PSF*: each warp is convolved with a small kernel that turns its own
PSF into the model's (docs/algorithm.md, "PSF matching and the static sky
model"). This module computes those
kernels and applies them to in-memory blocks; :mod:`dcr_dask.graph.psf_matching`
maps them over the tile.

Conventions
-----------
- PSF images are odd, square, centred stamps normalised to sum 1; their pixel
  values are the PSF integrated over each pixel (as a warp's PSF HDU,
  docs/file-formats.md, and :mod:`dcr_dask.simulate` have them). A Gaussian of
  FWHM ``w`` pixels is rendered the same way (:func:`gaussian_psf_image`).
- The model PSF is the reference's ``GaussianPsfFactory``: a Gaussian core
  and, with ``addWing``, a second Gaussian ``wingFwhmFactor`` times as wide
  whose peak is ``wingAmplitude`` times the core's (:func:`model_psf_image`).
  Atmospheric PSFs have wings (Kolmogorov, Moffat); a single Gaussian model
  cannot absorb them, and the PSF-matched differences then keep a residual
  at every star.
- The width of a PSF is the FWHM of the Gaussian with the same *adaptive*
  (Gaussian-weighted) second moments (:func:`psf_fwhm_px`), which follows
  the core; unweighted second moments are inflated by the wings (by about
  40 % for atmospheric PSFs).
- The model must be at least as wide as every warp's PSF at every spatial
  frequency, or matching would sharpen (deconvolve) the warp: the smallest
  such core is found from the PSFs' optical transfer functions
  (:func:`min_model_core_fwhm_px`).
- The matching kernel ``K`` (``size × size`` pixels, odd) minimises
  ``‖P ⊛ K − M‖²`` over the full ``(p + size − 1)²`` support of the
  convolution, where ``P`` is the warp's PSF stamp and ``M`` the model PSF
  on that support; it is then scaled to sum 1 so that matching conserves
  flux. How well it worked is ``‖P ⊛ K − M‖ / ‖M‖``
  (:func:`matching_residual`). A ridge term (:data:`RIDGE`, relative to the
  mean diagonal of the normal matrix) keeps the kernel from ringing when
  the model cannot be reached exactly within ``size`` pixels (e.g. a wing
  wider than the kernel): without it, least-squares kernels oscillated with
  negative lobes as deep as their peak and amplified the noise 30-fold; with
  1e-5 the residual grows by at most 0.1 % of the model.
- A warp whose PSF is wider than the model cannot be matched without
  sharpening (deconvolving) it, which amplifies noise; such warps are left
  unconvolved (the kernel is a delta) and reported by the caller.
- Convolving a masked image follows afw: the image with ``K``, the variance
  with ``K²``, and every mask plane is ORed over the kernel's ``size × size``
  footprint (so ``NO_DATA`` and the other planes grow by ``size // 2``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import linalg, ndimage, signal
from scipy.special import erf

__all__ = [
    "FWHM_PER_SIGMA",
    "OTF_FLOOR",
    "RIDGE",
    "SHARPENING_TOLERANCE",
    "convolve_block",
    "delta_kernel",
    "gaussian_blur",
    "gaussian_psf_image",
    "grow_mask_block",
    "matching_kernel",
    "matching_residual",
    "min_model_core_fwhm_px",
    "model_psf_image",
    "psf_fwhm_px",
    "psf_minor_variance",
    "round_psf",
]

#: FWHM of a Gaussian in units of its sigma, ``2·sqrt(2·ln 2)``.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: Ridge added to the normal equations of the kernel fit, relative to their mean diagonal
#: (module docstring).
RIDGE = 1e-5


def _check_odd_size(size: int, name: str) -> int:
    if isinstance(size, bool) or int(size) != size or size < 1 or size % 2 != 1:
        raise ValueError(f"{name} = {size!r} must be a positive odd number of pixels")
    return int(size)


def _check_stamp(psf: np.ndarray, name: str = "PSF") -> np.ndarray:
    psf = np.asarray(psf, dtype=np.float64)
    if psf.ndim != 2 or psf.shape[0] != psf.shape[1] or psf.shape[0] % 2 != 1:
        raise ValueError(f"{name} image of shape {psf.shape} must be square with an odd size")
    total = psf.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError(f"{name} image sums to {total!r}; it must have a positive finite sum")
    return psf / total


def _gaussian_profile(size: int, sigma_px: float) -> np.ndarray:
    """A 1-D Gaussian of ``sigma_px`` integrated over the pixels of an odd, centred row."""
    half = size // 2
    edges = (np.arange(-half, half + 2) - 0.5) / (sigma_px * math.sqrt(2.0))
    return np.diff(0.5 * erf(edges))


def gaussian_psf_image(size: int, fwhm_px: float) -> np.ndarray:
    """A circular Gaussian PSF integrated over the pixels of an odd, centred stamp.

    Parameters
    ----------
    size : int
        Stamp width and height, pixels (odd).
    fwhm_px : float
        Full width at half maximum, pixels.

    Returns
    -------
    numpy.ndarray of float64
        ``(size, size)``, normalised to sum 1.

    Raises
    ------
    ValueError
        If ``size`` is not odd and positive or ``fwhm_px`` is not positive.
    """
    return model_psf_image(size, fwhm_px)


def model_psf_image(
    size: int, fwhm_px: float, *, wing_fwhm_factor: float = 1.0, wing_amplitude: float = 0.0
) -> np.ndarray:
    """The model PSF of ``GaussianPsfFactory``: a Gaussian core plus an optional wing.

    Parameters
    ----------
    size : int
        Stamp width and height, pixels (odd).
    fwhm_px : float
        FWHM of the Gaussian core, pixels (``modelPsf.defaultFwhm``).
    wing_fwhm_factor : float
        FWHM of the wing Gaussian over the core's (``wingFwhmFactor``).
    wing_amplitude : float
        Peak of the wing over the core's peak (``wingAmplitude``); 0 (no
        wing, ``addWing = False``) gives a single Gaussian.

    Returns
    -------
    numpy.ndarray of float64
        ``(size, size)``, integrated over the pixels and normalised to sum 1.
        The wing carries ``b·f² / (1 + b·f²)`` of the flux (``b`` the
        amplitude, ``f`` the factor): 38 % with the reference's 0.1 and 2.5.

    Raises
    ------
    ValueError
        If ``size`` is not odd and positive, or a width or the amplitude is
        not finite and positive (amplitude: non-negative).
    """
    size = _check_odd_size(size, "PSF stamp size")
    if not (np.isfinite(fwhm_px) and fwhm_px > 0):
        raise ValueError(f"PSF FWHM = {fwhm_px!r} pixels must be finite and positive")
    if not (np.isfinite(wing_fwhm_factor) and wing_fwhm_factor > 0):
        raise ValueError(f"wingFwhmFactor = {wing_fwhm_factor!r} must be finite and positive")
    if not (np.isfinite(wing_amplitude) and wing_amplitude >= 0):
        raise ValueError(f"wingAmplitude = {wing_amplitude!r} must be finite and non-negative")
    sigma = fwhm_px / FWHM_PER_SIGMA
    core = _gaussian_profile(size, sigma)
    image = np.outer(core, core)
    if wing_amplitude > 0:
        wing = _gaussian_profile(size, sigma * wing_fwhm_factor)
        # peak ratio b of the continuous profiles: flux ratio b·f²
        image = image + wing_amplitude * wing_fwhm_factor**2 * np.outer(wing, wing)
    return image / image.sum()


def _adaptive_sigma2(psf: np.ndarray, offsets: np.ndarray) -> float:
    """Adaptive second moment of a stamp: the ``s²`` at which Gaussian weights of
    ``s`` give a weighted moment of ``s²/2`` per axis (``s = σ`` for a Gaussian)."""
    yy, xx = np.meshgrid(offsets, offsets, indexing="ij")
    cy = cx = 0.0
    s2 = max(float(0.5 * ((psf * yy**2).sum() + (psf * xx**2).sum())), 0.25)
    for _ in range(200):
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        weighted = psf * np.exp(-0.5 * r2 / s2)
        total = weighted.sum()
        if not total > 0:
            raise ValueError("PSF image has no positive flux near its centre")
        cy, cx = (weighted * yy).sum() / total, (weighted * xx).sum() / total
        moment = 0.5 * (weighted * ((yy - cy) ** 2 + (xx - cx) ** 2)).sum() / total
        new = 2.0 * moment
        if not new > 0:
            raise ValueError("PSF image has no positive width")
        if abs(new - s2) <= 1e-12 * s2:
            return new
        s2 = new
    return s2


def psf_minor_variance(psf: np.ndarray) -> float:
    """Variance of a PSF stamp along its narrowest axis: its width across DCR, px².

    Elliptical adaptive second moments (the weight is the Gaussian of the
    moments being measured, iterated to convergence and re-centred, so a
    Gaussian stamp of covariance ``C`` gives back ``C``); the smaller
    eigenvalue. A warp's PSF, measured on its stars, holds the chromatic smear
    of DCR across the band along the parallactic direction (about 5 px in g
    at airmass 2), which the DCR model makes itself from its sub-bands; the
    width across it is the seeing alone.

    Parameters
    ----------
    psf : numpy.ndarray
        Odd, square, centred PSF stamp (any normalisation).

    Returns
    -------
    float
        px², the pixel's own 1/12 px² included (it cancels in the difference
        of two stamps' variances).

    Raises
    ------
    ValueError
        If the stamp is not odd and square, or has no positive flux near its
        centre.
    """
    covariance, _ = _adaptive_covariance(_check_stamp(psf))
    return float(np.linalg.eigvalsh(covariance)[0])


def gaussian_blur(image: np.ndarray, variance: float) -> np.ndarray:
    """An image convolved with a circular Gaussian, zeros beyond its edges.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image (a block, or a PSF stamp).
    variance : float
        The Gaussian's variance, px²; <= 0 leaves the image as it is.

    Returns
    -------
    numpy.ndarray
        float64, the same shape (the Gaussian truncated at 4 sigma).
    """
    if variance <= 0:
        return np.asarray(image, dtype=np.float64)
    return ndimage.gaussian_filter(
        np.asarray(image, dtype=np.float64), math.sqrt(variance), mode="constant", truncate=4.0
    )


def round_psf(psf: np.ndarray) -> np.ndarray:
    """A PSF stamp made round at its width across DCR, and centred.

    A warp's PSF, measured on its stars, is stretched along the parallactic
    direction by DCR's chromatic smear; a DCR coadd has no such smear. The
    stamp is resampled (cubic spline) through the linear map that takes its
    elliptical adaptive moments (:func:`psf_minor_variance`) to round ones of
    the smaller eigenvalue, about their centroid: the radial profile (core
    and wings) is kept, the major axis is shrunk to the minor axis's width,
    and the centroid is moved to the stamp's centre. An ellipticity of the
    seeing itself is removed as well, which a DCR model cannot tell from the
    smear.

    Parameters
    ----------
    psf : numpy.ndarray
        Odd, square, centred PSF stamp (any positive sum).

    Returns
    -------
    numpy.ndarray
        float64 stamp of the same shape, summing to 1.

    Raises
    ------
    ValueError
        If the stamp is not odd and square, or has no positive flux near its
        centre.
    """
    psf = _check_stamp(psf)
    covariance, (cy, cx) = _adaptive_covariance(psf)
    values, vectors = np.linalg.eigh(covariance)
    # output offsets u map to input offsets centroid + A u, A = C^(1/2) / sigma_minor
    matrix = vectors @ np.diag(np.sqrt(values / values[0])) @ vectors.T
    centre = np.array([psf.shape[0] // 2, psf.shape[1] // 2], dtype=np.float64)
    offset = centre + np.array([cy, cx]) - matrix @ centre
    out = ndimage.affine_transform(psf, matrix, offset=offset, order=3, mode="constant")
    total = out.sum()
    if not total > 0:
        raise ValueError("PSF image has no positive flux near its centre")
    return out / total


def _adaptive_covariance(psf: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Elliptical adaptive second moments of a checked stamp: the covariance (px², the
    weight being the Gaussian of it, iterated to convergence) and the centroid (y, x)
    in pixels from the stamp's centre."""
    size = psf.shape[0]
    offsets = np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)
    yy, xx = np.meshgrid(offsets, offsets, indexing="ij")
    s2 = _adaptive_sigma2(psf, offsets)
    covariance = np.array([[s2, 0.0], [0.0, s2]])
    cy = cx = 0.0
    for _ in range(200):
        inverse = np.linalg.inv(covariance)
        dy, dx = yy - cy, xx - cx
        quad = inverse[0, 0] * dy**2 + 2 * inverse[0, 1] * dy * dx + inverse[1, 1] * dx**2
        weighted = psf * np.exp(-0.5 * quad)
        total = weighted.sum()
        if not total > 0:
            raise ValueError("PSF image has no positive flux near its centre")
        cy, cx = (weighted * yy).sum() / total, (weighted * xx).sum() / total
        dy, dx = yy - cy, xx - cx
        myy = (weighted * dy * dy).sum() / total
        mxx = (weighted * dx * dx).sum() / total
        mxy = (weighted * dy * dx).sum() / total
        new = 2.0 * np.array([[myy, mxy], [mxy, mxx]])
        if not (new[0, 0] > 0 and np.linalg.det(new) > 0):
            raise ValueError("PSF image has no positive width")
        done = np.abs(new - covariance).max() <= 1e-10 * np.abs(new).max()
        covariance = new
        if done:
            break
    return covariance, (float(cy), float(cx))


def psf_fwhm_px(psf: np.ndarray) -> float:
    """FWHM of the Gaussian with the same adaptive second moments as a PSF stamp.

    Parameters
    ----------
    psf : numpy.ndarray
        Odd, square, centred PSF stamp (any normalisation).

    Returns
    -------
    float
        Pixels. The adaptive moment is measured with Gaussian weights matched
        to the stamp's own width (iterated to convergence, re-centred), so it
        follows the PSF's core: unweighted second moments of an atmospheric
        PSF are inflated by its wings (about 40 % for a Moffat profile of
        beta 2.5), adaptive ones are not. The result is the FWHM of the
        pixel-integrated Gaussian stamp (:func:`gaussian_psf_image`) whose
        adaptive moment is the same, so a Gaussian stamp gives back its FWHM
        exactly. Adaptive weights still see some of the wings: on GalSim
        stamps of 4 px FWHM the result is 5.6 % above the half-maximum width
        for a Kolmogorov profile and 8.5 %, 12.6 % and 16.9 % above it for
        Moffat profiles of beta 4.5, 3.2 and 2.5 (unweighted moments: about
        40 % at beta 2.5).

    Raises
    ------
    ValueError
        If the stamp is not odd and square, or has no positive sum.
    """
    psf = _check_stamp(psf)
    size = psf.shape[0]
    offsets = np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)
    target = _adaptive_sigma2(psf, offsets)

    def adaptive_of(fwhm: float) -> float:
        return _adaptive_sigma2(gaussian_psf_image(size, fwhm), offsets)

    # the pixel integration adds about 1/12 px² to a Gaussian's moment; refine by secant steps
    fwhm = FWHM_PER_SIGMA * math.sqrt(max(target - 1.0 / 12.0, 0.01))
    previous: float | None = None
    previous_value: float | None = None
    for _ in range(20):
        value = adaptive_of(fwhm) - target
        if abs(value) <= 1e-10 * target:
            break
        if previous is None or value == previous_value:
            step = -value * fwhm / (2.0 * target)
        else:
            assert previous_value is not None  # set together with previous
            step = -value * (fwhm - previous) / (value - previous_value)
        previous, previous_value = fwhm, value
        fwhm = max(fwhm + step, 0.05)
    return float(fwhm)


#: Frequencies at which a warp's PSF transfers less than this are ignored when
#: the model PSF is checked for sharpening (:func:`min_model_core_fwhm_px`).
OTF_FLOOR = 1e-3

#: How far the model's transfer function may exceed a PSF's at any frequency
#: (:func:`min_model_core_fwhm_px`): a relative gain of the matching kernel.
#: Kolmogorov PSFs fall faster than a Gaussian at low frequencies; forbidding
#: any gain there made the model core 1.75 times the PSF's FWHM (7.4 px for
#: 4.2 px PSFs on GalSim tiles), while a 5 % gain, which adds at most 10 % to
#: the noise power of a narrow band of low frequencies, allows 6.6 px and
#: raised CompareWarp's cosmic-ray recall from 71 % to 79-88 %.
SHARPENING_TOLERANCE = 0.05


def min_model_core_fwhm_px(
    psf: np.ndarray,
    *,
    wing_fwhm_factor: float = 1.0,
    wing_amplitude: float = 0.0,
    tolerance: float | None = None,
) -> float:
    """The narrowest model-PSF core that a PSF can be matched to without sharpening.

    Parameters
    ----------
    psf : numpy.ndarray
        The warp's PSF stamp (odd, square, centred).
    wing_fwhm_factor, wing_amplitude : float
        The model's wing (:func:`model_psf_image`).
    tolerance : float, optional
        Relative excess of the model's transfer function over the PSF's that
        is allowed (the matching kernel's largest gain minus 1); default
        :data:`SHARPENING_TOLERANCE`.

    Returns
    -------
    float
        Core FWHM, pixels, of the narrowest model whose transfer function is
        nowhere above the PSF's (to ``tolerance``) at the frequencies where the PSF
        transfers at least :data:`OTF_FLOOR`; matching to any wider model
        only smooths. Found by bisection to 0.1 %.

    Notes
    -----
    The PSF's transfer function is the modulus of the stamp's discrete
    Fourier transform (zero-padded to twice its size); the model's is
    analytic: the Gaussians' transforms times the pixel's ``sinc``, which
    the pixel-integrated stamp carries too.
    """
    psf = _check_stamp(psf)
    n = 2 * psf.shape[0]
    padded = np.zeros((n, n))
    padded[: psf.shape[0], : psf.shape[1]] = psf
    psf_otf = np.abs(np.fft.rfft2(padded))
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]
    use = psf_otf >= OTF_FLOOR
    f2, pixel = (fy**2 + fx**2)[use], np.abs(np.sinc(fy) * np.sinc(fx))[use]
    wing_flux = wing_amplitude * wing_fwhm_factor**2
    core_share, wing_share = 1.0 / (1.0 + wing_flux), wing_flux / (1.0 + wing_flux)
    bound = (1.0 + (SHARPENING_TOLERANCE if tolerance is None else tolerance)) * psf_otf[use]

    def sharpens(fwhm: float) -> bool:
        sigma2 = (fwhm / FWHM_PER_SIGMA) ** 2
        model = core_share * np.exp(-2.0 * math.pi**2 * sigma2 * f2)
        model += wing_share * np.exp(-2.0 * math.pi**2 * sigma2 * wing_fwhm_factor**2 * f2)
        return bool(np.any(model * pixel > bound))

    lo, hi = 0.0, psf_fwhm_px(psf)
    while sharpens(hi):
        lo, hi = hi, 1.5 * hi
    while hi - lo > 1e-3 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if sharpens(mid) else (lo, mid)
    return float(hi)


def delta_kernel(size: int) -> np.ndarray:
    """The identity kernel: 1 at the centre of a ``size × size`` stamp, 0 elsewhere."""
    size = _check_odd_size(size, "matchingKernelSize")
    kernel = np.zeros((size, size))
    kernel[size // 2, size // 2] = 1.0
    return kernel


def _on_support(model: np.ndarray, n: int) -> np.ndarray:
    """A centred odd stamp cropped or zero-padded to ``n × n`` (``n`` odd)."""
    model = np.asarray(model, dtype=np.float64)
    m = model.shape[0]
    if m >= n:
        cut = (m - n) // 2
        return model[cut : cut + n, cut : cut + n]
    pad = (n - m) // 2
    return np.pad(model, pad)


def matching_kernel(psf: np.ndarray, model: np.ndarray, size: int) -> np.ndarray:
    """The kernel that turns a PSF into the model PSF, by least squares.

    Parameters
    ----------
    psf : numpy.ndarray
        The warp's PSF: odd, square, centred stamp of side ``p`` (normalised here).
    model : numpy.ndarray
        The model PSF: odd, square, centred stamp (normalised here), e.g.
        :func:`model_psf_image`; cropped or zero-padded to the
        ``(p + size − 1)²`` support of the convolution.
    size : int
        Kernel width and height, pixels (``matchingKernelSize``; odd).

    Returns
    -------
    numpy.ndarray of float64
        ``(size, size)`` kernel ``K``, summing to 1, such that ``psf ⊛ K``
        approximates the model PSF on the ``(p + size − 1)²`` support of the
        convolution (module docstring).

    Raises
    ------
    ValueError
        For an even or non-positive ``size`` or a bad PSF or model stamp.

    Notes
    -----
    The normal equations are built without the design matrix: ``AᵀA`` holds
    the autocorrelation of the PSF at every pair of kernel offsets and
    ``Aᵀm`` the cross-correlation of the model with the PSF, so the cost is
    that of a ``size² × size²`` solve. The fit does not check that the model is
    wider than the PSF; callers flag such warps and use :func:`delta_kernel`.
    """
    size = _check_odd_size(size, "matchingKernelSize")
    psf = _check_stamp(psf)
    p = psf.shape[0]
    model = _on_support(_check_stamp(model, "model PSF"), p + size - 1)
    autocorrelation = signal.correlate(psf, psf, mode="full")
    centre = p - 1
    offsets = np.arange(size)
    dy = offsets[:, None, None, None] - offsets[None, None, :, None]
    dx = offsets[None, :, None, None] - offsets[None, None, None, :]
    inside = (np.abs(dy) < p) & (np.abs(dx) < p)
    normal = np.where(
        inside,
        autocorrelation[np.clip(centre + dy, 0, 2 * p - 2), np.clip(centre + dx, 0, 2 * p - 2)],
        0.0,
    ).reshape(size * size, size * size)
    rhs = signal.correlate(model, psf, mode="valid").reshape(size * size)
    normal[np.diag_indices_from(normal)] += RIDGE * np.trace(normal) / normal.shape[0]
    kernel = linalg.solve(normal, rhs, assume_a="pos").reshape(size, size)
    return kernel / kernel.sum()


def matching_residual(psf: np.ndarray, kernel: np.ndarray, model: np.ndarray) -> float:
    """How far a matched PSF is from the model: ``‖P ⊛ K − M‖₂ / ‖M‖₂``.

    Parameters
    ----------
    psf, kernel, model : numpy.ndarray
        The warp's PSF, its matching kernel and the model PSF (odd, square,
        centred stamps; the PSF and model are normalised here).

    Returns
    -------
    float
        The relative residual on the support of ``P ⊛ K`` (the model is
        cropped or padded to it); 0 is a perfect match. Gaussian to wider
        Gaussian gives about 1e-6; a kernel too small for the PSF's wings, or
        a model that would need sharpening, gives per cent levels.
    """
    matched = signal.convolve(_check_stamp(psf), np.asarray(kernel, np.float64))
    model = _on_support(_check_stamp(model, "model PSF"), matched.shape[0])
    return float(np.linalg.norm(matched - model) / np.linalg.norm(model))


def convolve_block(images: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Convolve each visit of a block with its own kernel (same-size output).

    Parameters
    ----------
    images : numpy.ndarray
        ``(visit, y, x)`` images (or variances, with squared kernels).
    kernels : numpy.ndarray
        ``(visit, k, k)`` kernels, ``k`` odd, centred.

    Returns
    -------
    numpy.ndarray of float32
        ``(visit, y, x)``. Pixels within ``k // 2`` of the block's edge see
        zeros beyond it; the graph layer gives blocks that halo and trims it.
    """
    images = np.asarray(images, dtype=np.float64)
    kernels = np.asarray(kernels, dtype=np.float64)
    if images.ndim != 3 or kernels.ndim != 3 or kernels.shape[0] != images.shape[0]:
        raise ValueError(
            f"images {images.shape} and kernels {kernels.shape} must be (visit, y, x) and "
            "(visit, k, k) with the same visits"
        )
    out = np.empty(images.shape, dtype=np.float32)
    centre = kernels.shape[-1] // 2
    for v in range(images.shape[0]):
        kernel = kernels[v]
        if kernel[centre, centre] == 1.0 and np.count_nonzero(kernel) == 1:
            out[v] = images[v]  # the identity (a warp left unconvolved): exact and free
        else:
            out[v] = signal.fftconvolve(images[v], kernel, mode="same")
    return out


def grow_mask_block(masks: np.ndarray, half_width: int) -> np.ndarray:
    """OR every mask bit over a ``(2·half_width + 1)²`` box around each pixel.

    Parameters
    ----------
    masks : numpy.ndarray of int
        ``(..., y, x)`` bit masks.
    half_width : int
        Half the box side, pixels (``matchingKernelSize // 2``).

    Returns
    -------
    numpy.ndarray of int32
        Same shape. Pixels within ``half_width`` of the block's edge see
        nothing beyond it (the graph layer adds and trims a halo).
    """
    out = np.asarray(masks, dtype=np.int32).copy()
    if half_width < 0:
        raise ValueError(f"half_width = {half_width!r} must be non-negative")
    for axis in (-2, -1):
        source = out.copy()
        n = source.shape[axis]
        for shift in range(1, min(half_width, n - 1) + 1):
            ahead = [slice(None)] * source.ndim
            behind = [slice(None)] * source.ndim
            ahead[axis], behind[axis] = slice(shift, None), slice(None, n - shift)
            out[tuple(behind)] |= source[tuple(ahead)]
            out[tuple(ahead)] |= source[tuple(behind)]
    return out
