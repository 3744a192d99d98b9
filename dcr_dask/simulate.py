"""Synthetic DCR tiles with known truth, for demos, tests and benchmarks.

A simulated tile is a set of warps on one TAN pixel grid, written in the warp
layout dcr_dask reads (docs/file-formats.md, "Input warps"), plus what no real data set has: the
noise-free sky in each sub-band and each visit's noise-free image.

The physics is rendered independently of the DCR engine. Each source has a
power-law spectrum ``f_λ ∝ (λ/λ_eff)^α``; its light is sampled at many
wavelengths across the band, each sample is displaced toward the zenith by its
own differential refraction (Stone 1996, through :mod:`dcr_dask.physics.refraction`),
and each displaced copy is integrated exactly over the pixels with the visit's
PSF, so no interpolation or resampling is involved. A Gaussian PSF (the
default) is a product of error-function differences; a Moffat PSF, whose
power-law wings a Gaussian model PSF cannot match, is rendered from its
closed-form transfer function, with the pixel response and the aliases of the
pixel grid, by FFT. The PSF may widen toward the blue (chromatic seeing). The
engine instead shifts whole sub-band images, so agreement between the two is
a real check. :func:`default_demo_spec` is the idealised tile the package was
first tuned on; :func:`realistic_spec` is closer to real warps.

:func:`simulate_tile` returns a tile in memory; ``write_simulation(spec,
directory)`` writes the same files visit by visit as it simulates them, so
that a tile may be larger than memory (benchmarks/README.md,
"bench_simulate.py").
"""

from __future__ import annotations

import functools
import json
import logging
import math
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypedDict

import attrs
import numpy as np
from astropy.wcs import WCS
from scipy import fft as sp_fft
from scipy import ndimage, optimize
from scipy.special import erf, gammaln, kve

from dcr_dask.kernels.psf import FWHM_PER_SIGMA
from dcr_dask.masks import MaskPlanes, run_layout
from dcr_dask.physics import geometry, refraction
from dcr_dask.physics.bands import standard_band
from dcr_dask.visit import Observatory, VisitInfo, Weather

if TYPE_CHECKING:
    from dcr_dask.io.npz import NpzWriter

__all__ = [
    "PSF_PROFILES",
    "RUBIN_OBSERVATORY",
    "SimulatedTile",
    "SimulationPaths",
    "SimulationSpec",
    "Source",
    "default_demo_spec",
    "point_source_flux_at_snr",
    "realistic_spec",
    "simulate_tile",
    "standard_band_spec",
    "write_simulation",
]

log = logging.getLogger(__name__)

#: Rubin Observatory on Cerro Pachón.
RUBIN_OBSERVATORY = Observatory(
    longitude_deg=-70.749417, latitude_deg=-30.244639, elevation_m=2663.0
)

#: Radial profiles :class:`SimulationSpec` can give the visit PSFs.
PSF_PROFILES = ("gaussian", "moffat")

_SQRT2 = math.sqrt(2.0)
# Earth rotation angle, IERS Conventions (2010) eq. 5.15:
# ERA(UT1) = 360° × (0.7790572732640 + 1.00273781191135448 × (JD_UT1 − 2451545.0)).
_ERA_AT_J2000_TURNS = 0.7790572732640
_ERA_RATE_TURNS_PER_DAY = 1.00273781191135448
_MJD_J2000 = 51544.5


@attrs.frozen
class SimulationSpec:
    """What to simulate.

    Parameters
    ----------
    shape : tuple of int
        Tile size ``(ny, nx)``, pixels.
    airmasses : sequence of float
        Target airmass of each fitted visit (>= the field's transit airmass).
        Visits alternate east and west of the meridian.
    holdout_airmasses : sequence of float
        Airmasses of extra visits written apart (``holdout/``), to test
        DCR-matched templates on visits the fit has not seen.
    band : str
        Band name written to the headers.
    effective_wavelength_nm, bandwidth_nm : float
        The band: a flat throughput between ``λ_eff ± bandwidth/2``, nm.
    n_subfilters : int
        Number of sub-bands of the truth images.
    wavelength_samples : int
        Wavelengths per sub-band at which each source is rendered.
    pixel_scale_arcsec : float
        Pixel scale of the tile, arcsec per pixel.
    ra_deg, dec_deg : float
        Tile centre, ICRS degrees.
    observatory : Observatory
        Site; defaults to Rubin.
    weather : Weather or None
        Conditions of every visit; None uses the standard atmosphere at the
        site's elevation (keywords then left out of the headers).
    psf_profile : {"gaussian", "moffat"}
        Radial profile of the visit PSFs. ``"gaussian"`` has no wings, so a
        Gaussian model PSF matches it exactly; ``"moffat"``,
        ``I(r) ∝ (1 + r²/α²)^-β``, has the power-law wings of atmospheric
        seeing (Moffat 1969; Trujillo et al. 2001).
    psf_beta_range : tuple of float
        Range from which each visit's Moffat index β is drawn (uniform, > 1);
        used only by ``"moffat"``.
    seeing_fwhm_px : tuple of float
        Range from which each visit's PSF FWHM at the band's effective
        wavelength is drawn (uniform), pixels: the half-maximum full width of
        the profile before pixel integration.
    seeing_wavelength_exponent : float
        Chromatic seeing: the PSF of each wavelength sample has the FWHM
        ``seeing × (λ/λ_eff)^exponent``; Kolmogorov turbulence gives -0.2,
        0 makes the PSF achromatic.
    truth_psf_fwhm_px : float or None
        PSF of the truth sub-band images; None uses the median visit seeing.
    n_stars, n_galaxies : int
        Numbers of point sources and small round galaxies.
    star_flux_range : tuple of float
        Range of total fluxes (log-uniform), image units.
    n_faint_stars : int
        Point sources added after the others (last in the catalogue), with
        fluxes drawn from a power-law count distribution, down to the
        detection limit.
    faint_flux_range : tuple of float
        Range of their total fluxes, image units; :func:`realistic_spec` puts
        the low end at a single-visit point-source S/N of 5.
    faint_count_slope : float
        Their differential counts, ``dN/dF ∝ F^-slope`` (> 1 gives more faint
        than bright stars; 2.5 is a Euclidean population).
    spectral_index_range : tuple of float
        Range of the power-law index α of ``f_λ ∝ λ^α``; negative is blue.
    galaxy_sigma_px : tuple of float
        Range of the galaxies' Gaussian sigma, pixels.
    sky_sigma : float
        Background noise per pixel, image units.
    gain : float
        Source Poisson noise: variance of a pixel is ``sky_sigma² + flux/gain``.
    saturation : float or None
        Pixels of a visit's noise-free image above this are clipped and
        flagged ``SAT``; None disables.
    detected_plane : bool
        Define the ``DETECTED`` plane (False leaves it, and its ``MP_DETECTED``
        keyword, out of the masks) and set it where a visit's noise-free image exceeds
        ``detection_sigma × sky_sigma``, grown by ``detection_grow_sigma``
        PSF sigmas, as single-visit source detection marks its footprints.
    detection_sigma : float
        See ``detected_plane``.
    detection_grow_sigma : float
        Growth of the detected footprints, in units of the visit's PSF sigma
        (Rubin's detection grows them by 2.4).
    streak_visits : sequence of int
        Indices of visits crossed by a satellite streak (plain flux, not masked).
    cosmic_rays_per_visit : int
        Cosmic-ray hits added to every visit (plain flux, not masked).
    bad_columns : int
        Columns flagged ``BAD`` (and zeroed) in every visit.
    psf_stamp_size : int
        Size of the PSF HDU written with each warp (odd), pixels. The PSF is
        cut to this stamp and renormalised to a sum of 1; the fraction of its
        light the stamp holds is ``SimulatedTile.psf_stamp_flux``.
    seed : int
        Seed of the random generator: the same spec gives the same tile.
    """

    shape: tuple[int, int] = (256, 256)
    airmasses: tuple[float, ...] = (1.02, 1.1, 1.2, 1.3, 1.45, 1.6, 1.75, 2.0)
    holdout_airmasses: tuple[float, ...] = ()
    band: str = "g"
    effective_wavelength_nm: float = 478.0
    bandwidth_nm: float = 147.0
    n_subfilters: int = 3
    wavelength_samples: int = 8
    pixel_scale_arcsec: float = 0.2
    ra_deg: float = 150.0
    dec_deg: float = -25.0
    observatory: Observatory = RUBIN_OBSERVATORY
    weather: Weather | None = None
    psf_profile: str = "gaussian"
    psf_beta_range: tuple[float, float] = (2.5, 4.8)
    seeing_fwhm_px: tuple[float, float] = (3.0, 4.5)
    seeing_wavelength_exponent: float = 0.0
    truth_psf_fwhm_px: float | None = None
    n_stars: int = 40
    n_galaxies: int = 10
    star_flux_range: tuple[float, float] = (2.0e3, 2.0e5)
    n_faint_stars: int = 0
    faint_flux_range: tuple[float, float] = (100.0, 2.0e3)
    faint_count_slope: float = 2.0
    spectral_index_range: tuple[float, float] = (-3.0, 2.0)
    galaxy_sigma_px: tuple[float, float] = (1.0, 2.5)
    sky_sigma: float = 5.0
    gain: float = 1.0
    saturation: float | None = None
    detected_plane: bool = True
    detection_sigma: float = 5.0
    detection_grow_sigma: float = 2.4
    streak_visits: tuple[int, ...] = ()
    cosmic_rays_per_visit: int = 0
    bad_columns: int = 0
    psf_stamp_size: int = 25
    seed: int = 1

    def __attrs_post_init__(self) -> None:
        problems = []
        if len(self.shape) != 2 or min(self.shape) < 24:
            problems.append(f"shape {self.shape!r} must be two sizes of at least 24 pixels")
        if not self.airmasses:
            problems.append("airmasses must name at least one visit")
        for airmass in (*self.airmasses, *self.holdout_airmasses):
            if not airmass >= 1.0:
                problems.append(f"airmass {airmass!r} is below 1")
        if self.n_subfilters < 1 or self.wavelength_samples < 1:
            problems.append("n_subfilters and wavelength_samples must be at least 1")
        if self.psf_stamp_size % 2 != 1:
            problems.append(f"psf_stamp_size {self.psf_stamp_size} must be odd")
        if self.psf_profile not in PSF_PROFILES:
            problems.append(f"psf_profile {self.psf_profile!r} is not one of {PSF_PROFILES}")
        if not 1.0 < self.psf_beta_range[0] <= self.psf_beta_range[1]:
            problems.append(f"psf_beta_range {self.psf_beta_range!r} must be ordered and > 1")
        if not 0.0 < self.seeing_fwhm_px[0] <= self.seeing_fwhm_px[1]:
            problems.append(f"seeing_fwhm_px {self.seeing_fwhm_px!r} must be ordered and > 0")
        if self.n_faint_stars < 0:
            problems.append(f"n_faint_stars {self.n_faint_stars} is negative")
        if not 0.0 < self.faint_flux_range[0] < self.faint_flux_range[1]:
            problems.append(f"faint_flux_range {self.faint_flux_range!r} must be ordered and > 0")
        for index in self.streak_visits:
            if not 0 <= index < len(self.airmasses):
                problems.append(f"streak visit index {index} is not a visit")
        if problems:
            raise ValueError("bad SimulationSpec: " + "; ".join(problems))


@attrs.frozen
class Source:
    """One simulated source.

    Parameters
    ----------
    x, y : float
        Position on the tile at the band's effective wavelength, pixels
        (0-based, pixel centres at integers).
    flux : float
        Total flux over the band, image units.
    spectral_index : float
        Power-law index α of ``f_λ ∝ (λ/λ_eff)^α``.
    sigma_px : float
        Intrinsic Gaussian sigma (0 for a point source), pixels.
    subband_flux : tuple of float
        Flux in each sub-band, blue first; sums to ``flux``.
    """

    x: float
    y: float
    flux: float
    spectral_index: float
    sigma_px: float
    subband_flux: tuple[float, ...]

    @property
    def is_star(self) -> bool:
        """True for a point source."""
        return self.sigma_px == 0.0


@attrs.frozen
class SimulatedTile:
    """A simulated tile held in memory.

    Attributes
    ----------
    spec : SimulationSpec
        What was simulated.
    wcs : astropy.wcs.WCS
        Tile WCS (TAN, North up, East left).
    mask_planes : MaskPlanes
        Bit layout of the masks.
    visits : list of VisitInfo
        Metadata of the fitted visits, then of the held-out ones.
    holdout : numpy.ndarray of bool
        True for held-out visits, per entry of ``visits``.
    images, variances : numpy.ndarray
        ``(visit, y, x)`` float32 warps.
    masks : numpy.ndarray
        ``(visit, y, x)`` int32 masks.
    psfs : numpy.ndarray
        ``(visit, n, n)`` PSF of each visit as rendered: the band average of
        the chromatic PSF for a flat spectrum (``f_λ`` constant), without
        DCR, integrated over the pixels, centred on the stamp's central
        pixel, cut to the stamp and normalised to a sum of 1.
    psf_fwhm_px : numpy.ndarray
        FWHM of each visit's PSF, pixels (the ``PSF-FWHM`` keyword): the
        half-maximum full width of the radial profile of ``psfs`` before pixel
        integration and truncation, which :func:`dcr_dask.kernels.psf.gaussian_psf_image`
        turns back into a stamp for a Gaussian. Equal to ``seeing_fwhm_px``
        when the seeing is achromatic.
    seeing_fwhm_px : numpy.ndarray
        FWHM of each visit's PSF at the band's effective wavelength, pixels.
    psf_beta : numpy.ndarray
        Moffat index β of each visit's PSF (NaN for other profiles).
    psf_stamp_flux : numpy.ndarray
        Fraction of each visit's PSF light inside its stamp, before the
        stamp is renormalised.
    shifts_px : numpy.ndarray
        ``(visit, subfilter, 2)`` mean ``(dy, dx)`` DCR displacement of each
        sub-band's light for a flat spectrum, pixels.
    true_images : numpy.ndarray
        ``(visit, y, x)`` noise-free, artifact-free visit images.
    true_subbands : numpy.ndarray
        ``(subfilter, y, x)`` noise-free sky per sub-band, without DCR, at
        the truth PSF.
    artifacts : numpy.ndarray of bool
        ``(visit, y, x)`` pixels touched by a streak or a cosmic ray.
    sources : list of Source
        The catalogue.
    wavelength_edges_nm : numpy.ndarray
        ``(subfilter, 2)`` sub-band edges, nm.
    truth_psf_fwhm_px : float
        PSF FWHM of ``true_subbands``, pixels.
    """

    spec: SimulationSpec
    wcs: WCS
    mask_planes: MaskPlanes
    visits: list[VisitInfo]
    holdout: np.ndarray
    images: np.ndarray
    variances: np.ndarray
    masks: np.ndarray
    psfs: np.ndarray
    psf_fwhm_px: np.ndarray
    seeing_fwhm_px: np.ndarray
    psf_beta: np.ndarray
    psf_stamp_flux: np.ndarray
    shifts_px: np.ndarray
    true_images: np.ndarray
    true_subbands: np.ndarray
    artifacts: np.ndarray
    sources: list[Source]
    wavelength_edges_nm: np.ndarray
    truth_psf_fwhm_px: float


def make_tile_wcs(
    shape: tuple[int, int], ra_deg: float, dec_deg: float, scale_arcsec: float
) -> WCS:
    """Build a North-up, East-left TAN WCS centred on the tile.

    Parameters
    ----------
    shape : tuple of int
        Tile size ``(ny, nx)``, pixels.
    ra_deg, dec_deg : float
        Centre of the tile, ICRS degrees.
    scale_arcsec : float
        Pixel scale, arcsec per pixel.

    Returns
    -------
    astropy.wcs.WCS
        The tile WCS.
    """
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra_deg, dec_deg]
    wcs.wcs.crpix = [(shape[1] + 1) / 2.0, (shape[0] + 1) / 2.0]
    scale = scale_arcsec / 3600.0
    wcs.wcs.cd = [[-scale, 0.0], [0.0, scale]]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.set()
    return wcs


def _hour_angle_for_airmass(airmass: float, dec_deg: float, latitude_deg: float) -> float:
    """Hour angle (degrees, >= 0) at which a source of declination ``dec`` has ``airmass``."""
    altitude = float(geometry.elevation_from_airmass(airmass))
    lat, dec, alt = np.radians([latitude_deg, dec_deg, altitude])
    cos_ha = (np.sin(alt) - np.sin(lat) * np.sin(dec)) / (np.cos(lat) * np.cos(dec))
    if cos_ha > 1.0 + 1e-12:
        transit = float(geometry.airmass_from_altitude(90.0 - abs(latitude_deg - dec_deg)))
        raise ValueError(
            f"airmass {airmass} is below the field's transit airmass {transit:.4f} "
            f"(dec {dec_deg}°, latitude {latitude_deg}°)"
        )
    if cos_ha < -1.0:
        raise ValueError(f"airmass {airmass} is never reached at dec {dec_deg}°")
    return math.degrees(math.acos(min(cos_ha, 1.0)))


def _mjd_for_era(era_deg: float, near_mjd: float = 61000.0) -> float:
    """UT1 MJD close to ``near_mjd`` at which the Earth rotation angle is ``era_deg``."""
    days = near_mjd - _MJD_J2000
    era_now = 360.0 * ((_ERA_AT_J2000_TURNS + _ERA_RATE_TURNS_PER_DAY * days) % 1.0)
    delta = (era_deg - era_now) % 360.0
    return near_mjd + delta / 360.0 / _ERA_RATE_TURNS_PER_DAY


def _pixel_integrated_gaussian(
    edges: np.ndarray, centre: np.ndarray, sigma: np.ndarray
) -> np.ndarray:
    """Integral of unit 1-D Gaussians over pixels; ``edges`` (n+1,), ``centre``/``sigma`` (k,)."""
    z = (edges[None, :] - centre[:, None]) / (sigma[:, None] * _SQRT2)
    cdf = 0.5 * erf(z)
    return np.diff(cdf, axis=1)


def _render(
    shape: tuple[int, int],
    y: np.ndarray,
    x: np.ndarray,
    flux: np.ndarray | Sequence[float],
    sigma: np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Add pixel-integrated circular Gaussians to an image.

    Each Gaussian is evaluated on a stamp of ±6 sigma around its centre; the
    separable integral makes it exact to floating point within the stamp.
    """
    image = np.zeros(shape, dtype=np.float64) if out is None else out
    for yc, xc, f, s in zip(y, x, flux, sigma, strict=True):
        half = math.ceil(6.0 * s) + 1
        y0, y1 = max(math.floor(yc) - half, 0), min(math.floor(yc) + half + 1, shape[0])
        x0, x1 = max(math.floor(xc) - half, 0), min(math.floor(xc) + half + 1, shape[1])
        if y0 >= y1 or x0 >= x1:
            continue
        gy = _pixel_integrated_gaussian(np.arange(y0, y1 + 1) - 0.5, np.array([yc]), np.array([s]))[
            0
        ]
        gx = _pixel_integrated_gaussian(np.arange(x0, x1 + 1) - 0.5, np.array([xc]), np.array([s]))[
            0
        ]
        image[y0:y1, x0:x1] += f * np.outer(gy, gx)
    return image


# Level below which the optical transfer function is neglected: aliases of the
# pixel grid where it is smaller are left out, which changes a pixel by less
# than this fraction of the source's flux.
_OTF_FLOOR = 1e-9
# The Fourier renderer's periodic grid is padded so that light wraps around
# only where a PSF has fallen below this fraction of its peak.
_WRAP_LEVEL = 1e-6
# Grid of the tabulated Moffat transfer function, in z = 2π q α.
_MOFFAT_OTF_STEP = 5e-4
_MOFFAT_OTF_ZMAX = 50.0


def _moffat_alpha(fwhm: np.ndarray | float, beta: np.ndarray | float) -> np.ndarray:
    """Moffat scale α (pixels) of a profile of half-maximum full width ``fwhm``."""
    return np.asarray(fwhm) / (2.0 * np.sqrt(2.0 ** (1.0 / np.asarray(beta)) - 1.0))


@functools.lru_cache(maxsize=128)
def _moffat_otf_table(beta: float) -> tuple[np.ndarray, np.ndarray]:
    """The Moffat transfer function and its increments on a uniform grid of ``z = 2π q α``.

    The Hankel transform of ``I(r) = (β-1)/(πα²) (1 + r²/α²)^-β`` is
    ``2/Γ(β-1) (z/2)^(β-1) K_(β-1)(z)`` (Gradshteyn & Ryzhik 6.565.4 with
    ν = 0, μ = β-1). The grid step keeps the interpolation error below
    ``step²/8 · max|OTF''| < 1e-7``.
    """
    nu = beta - 1.0
    z = np.arange(0.0, _MOFFAT_OTF_ZMAX + _MOFFAT_OTF_STEP, _MOFFAT_OTF_STEP)
    otf = np.ones_like(z)
    zz = z[1:]
    otf[1:] = np.exp(nu * np.log(zz / 2.0) - zz + np.log(kve(nu, zz)) - gammaln(nu) + math.log(2))
    return otf, np.append(np.diff(otf), 0.0)


def _otf(profile: str, rho: np.ndarray, fwhm: float, beta: float) -> np.ndarray:
    """Optical transfer function of a unit-flux radial PSF at ``rho`` cycles per pixel."""
    if profile == "gaussian":
        sigma = fwhm / FWHM_PER_SIGMA
        return np.exp(-2.0 * math.pi**2 * sigma**2 * rho**2)
    table, increment = _moffat_otf_table(float(beta))
    # Linear interpolation on the uniform grid (np.interp's search is slower).
    u = rho * (2.0 * math.pi * float(_moffat_alpha(fwhm, beta)) / _MOFFAT_OTF_STEP)
    cell = np.minimum(u.astype(np.intp), table.size - 1)
    return np.where(cell < table.size - 1, table[cell] + increment[cell] * (u - cell), 0.0)


def _otf_support(profile: str, fwhm: float, beta: float) -> float:
    """Frequency (cycles per pixel) beyond which the transfer function is below ``_OTF_FLOOR``."""
    if profile == "gaussian":
        sigma = fwhm / FWHM_PER_SIGMA
        return math.sqrt(math.log(1.0 / _OTF_FLOOR) / 2.0) / (math.pi * sigma)
    table, _ = _moffat_otf_table(float(beta))
    z_cut = (np.nonzero(table >= _OTF_FLOOR)[0][-1] + 1) * _MOFFAT_OTF_STEP
    return float(z_cut / (2.0 * math.pi * _moffat_alpha(fwhm, beta)))


def _radial_profile(
    profile: str, r: np.ndarray | float, fwhm: np.ndarray | float, beta: float
) -> np.ndarray:
    """Surface brightness of unit-flux radial PSFs at radius ``r`` (pixels), per pixel².

    ``r`` and ``fwhm`` broadcast against each other.
    """
    r = np.asarray(r, dtype=np.float64)
    if profile == "gaussian":
        sigma = np.asarray(fwhm) / FWHM_PER_SIGMA
        return np.exp(-0.5 * (r / sigma) ** 2) / (2.0 * math.pi * sigma**2)
    alpha = _moffat_alpha(fwhm, beta)
    return (beta - 1.0) / (math.pi * alpha**2) * (1.0 + (r / alpha) ** 2) ** (-beta)


def _wrap_radius(profile: str, fwhm: float, beta: float) -> float:
    """Radius (pixels) beyond which the PSF is below ``_WRAP_LEVEL`` of its peak."""
    if profile == "gaussian":
        return fwhm / FWHM_PER_SIGMA * math.sqrt(2.0 * math.log(1.0 / _WRAP_LEVEL))
    alpha = float(_moffat_alpha(fwhm, beta))
    return alpha * math.sqrt(_WRAP_LEVEL ** (-1.0 / beta) - 1.0)


def _half_maximum_fwhm(profile: str, fwhm: np.ndarray, weights: np.ndarray, beta: float) -> float:
    """Half-maximum full width (pixels) of the mixture ``Σ_l w_l I_l(r)`` of radial PSFs."""

    def mixture(r: float) -> float:
        return float(weights @ _radial_profile(profile, r, fwhm, beta))

    half = 0.5 * mixture(0.0)
    radius = optimize.brentq(lambda r: mixture(r) - half, 0.5 * fwhm.min(), 0.5 * fwhm.max())
    return 2.0 * radius


def _render_fourier(
    shape: tuple[int, int],
    y: np.ndarray,
    x: np.ndarray,
    sigma: np.ndarray,
    sample_flux: np.ndarray,
    fwhm: np.ndarray,
    beta: np.ndarray,
    shifts: np.ndarray,
    profile: str,
    *,
    pad: int = 0,
) -> np.ndarray:
    """Noise-free images of several visits of one catalogue, through radial PSFs.

    Each source (a point, or a circular Gaussian of sigma ``sigma``) sends the
    flux ``sample_flux[:, l]`` through wavelength sample ``l``, displaced by
    ``shifts[v, l]`` ``(dy, dx)`` pixels and seen through a PSF of FWHM
    ``fwhm[v, l]`` (Moffat index ``beta[v]``). The image is built from its
    discrete-time Fourier transform, which is known in closed form: at
    frequency ``q`` (cycles per pixel) each source contributes
    ``Σ_n OTF(|q+n|) G(|q+n|) sinc(q_y+n_y) sinc(q_x+n_x) e^{-2πi (q+n)·(p+d)}``,
    the sinc factors being the exact integral over a pixel and the sum over
    integer ``n`` the aliases of the pixel grid, kept while the transfer
    function is above ``_OTF_FLOOR``. Sampling that transform on a grid padded
    beyond the tile and inverting it by FFT gives the pixel values without
    truncating any stamp; light wraps around the padded grid only where the
    PSF is below ``_WRAP_LEVEL`` of its peak, or farther than ``pad`` more
    pixels. The source sums are matrix products, shared by all visits.

    Returns
    -------
    numpy.ndarray
        ``(visit, ny, nx)`` float64 images.
    """
    n_visits, n_samples = fwhm.shape
    margin = _fourier_margin(profile, fwhm, beta)
    padded = [sp_fft.next_fast_len(n + margin + pad, real=True) for n in shape]
    qy = np.fft.fftfreq(padded[0])
    qx = np.fft.rfftfreq(padded[1])
    q_max = np.array(
        [_otf_support(profile, float(fwhm[v].min()), float(beta[v])) for v in range(n_visits)]
    )
    # Aliases by the nearest distance of q + n to 0 (q_y in [-1/2, 1/2), q_x in [0, 1/2]).
    reach = math.ceil(q_max.max()) + 1
    aliases = {
        (ny, nx): math.hypot(max(abs(ny) - 0.5, 0.0), nx if nx > 0 else max(-nx - 0.5, 0.0))
        for ny in range(-reach, reach + 1)
        for nx in range(-reach, reach + 1)
    }
    terms = []
    for (ny, nx), distance in aliases.items():
        seen_by = np.nonzero(distance < q_max)[0]
        if seen_by.size == 0:
            continue
        ky, kx = qy + ny, qx + nx
        ey = np.exp(-2j * math.pi * np.outer(y, ky) - 2.0 * math.pi**2 * np.outer(sigma**2, ky**2))
        ex = np.exp(-2j * math.pi * np.outer(x, kx) - 2.0 * math.pi**2 * np.outer(sigma**2, kx**2))
        pixel = np.outer(np.sinc(ky), np.sinc(kx))
        rho = np.hypot(ky[:, None], kx[None, :])
        terms.append((ky, kx, ey.T.copy(), ex, pixel, rho, seen_by))
    spectra = np.zeros((n_visits, padded[0], qx.size), dtype=np.complex128)
    for sample in range(n_samples):
        for ky, kx, ey_t, ex, pixel, rho, seen_by in terms:
            sources = (ey_t @ (sample_flux[:, sample, None] * ex)) * pixel
            for v in seen_by:
                dy, dx = shifts[v, sample]
                phase = np.outer(np.exp(-2j * math.pi * ky * dy), np.exp(-2j * math.pi * kx * dx))
                spectra[v] += _otf(profile, rho, fwhm[v, sample], beta[v]) * phase * sources
    images = sp_fft.irfft2(spectra, s=padded, axes=(1, 2))
    return images[:, : shape[0], : shape[1]]


def _fourier_margin(profile: str, fwhm: np.ndarray, beta: np.ndarray) -> int:
    """Padding (pixels) of the Fourier renderer's grid: the widest PSF's wrap radius."""
    widest = int(np.argmin(beta)) if profile == "moffat" else 0
    return math.ceil(_wrap_radius(profile, float(fwhm.max()), float(beta[widest])))


#: Side (pixels) of the blocks in which the Fourier renderer draws a tile larger
#: than one block, so that its memory is bounded by a block and its time grows
#: with the tile's area (whole, with the number of sources times the area).
_RENDER_BLOCK = 512


def _render_fourier_blocks(
    shape: tuple[int, int],
    catalogue: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    fwhm: np.ndarray,
    beta: np.ndarray,
    shifts: np.ndarray,
    profile: str,
    out: _VisitStack,
) -> None:
    """:func:`_render_fourier` into ``out[visit, y, x]``, block by block.

    ``catalogue`` is ``(y, x, sigma, sample_flux)``. A tile of at most
    ``_RENDER_BLOCK`` pixels a side is rendered whole. A larger one is cut
    into blocks of that side; each is rendered from the sources within
    ``reach`` of it (the widest PSF's wrap radius, plus six galaxy sigmas and
    the largest DCR shift) on a grid padded by ``reach`` more, so that none
    of their light wraps onto the block. What is left out (the light of
    farther sources, and a nearer source's beyond ``reach``) is below
    ``_WRAP_LEVEL`` of a PSF's peak, the level at which a whole tile wraps.
    """
    y, x, sigma, sample_flux = catalogue
    block = _RENDER_BLOCK
    if max(shape) <= block:
        out[:, :, :] = _render_fourier(shape, y, x, sigma, sample_flux, fwhm, beta, shifts, profile)
        return
    reach = (
        _fourier_margin(profile, fwhm, beta)
        + math.ceil(6.0 * float(sigma.max(initial=0.0)))
        + math.ceil(float(np.abs(shifts).max(initial=0.0)))
    )
    for y0 in range(0, shape[0], block):
        for x0 in range(0, shape[1], block):
            h, w = min(block, shape[0] - y0), min(block, shape[1] - x0)
            near = (y >= y0 - reach) & (y < y0 + h + reach)
            near &= (x >= x0 - reach) & (x < x0 + w + reach)
            out[:, y0 : y0 + h, x0 : x0 + w] = _render_fourier(
                (h, w),
                y[near] - y0,
                x[near] - x0,
                sigma[near],
                sample_flux[near],
                fwhm,
                beta,
                shifts,
                profile,
                pad=reach,
            )


def _wavelength_grid(spec: SimulationSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sub-band edges (S, 2), sample wavelengths (S, K) and weights (S, K), flat throughput."""
    edges = geometry.subfilter_edges_nm(
        spec.effective_wavelength_nm, spec.bandwidth_nm, spec.n_subfilters
    )
    k = spec.wavelength_samples
    frac = (np.arange(k) + 0.5) / k
    samples = edges[:, :1] + (edges[:, 1:] - edges[:, :1]) * frac[None, :]
    widths = np.broadcast_to((edges[:, 1:] - edges[:, :1]) / k, samples.shape)
    return edges, samples, np.array(widths)


def _power_law(
    rng: np.random.Generator, low: float, high: float, slope: float, size: int
) -> np.ndarray:
    """Draws from ``dN/dF ∝ F^-slope`` on ``[low, high]``, by inverting its distribution."""
    u = rng.uniform(0.0, 1.0, size)
    if slope == 1.0:
        return low * (high / low) ** u
    k = 1.0 - slope
    return (low**k + u * (high**k - low**k)) ** (1.0 / k)


def point_source_flux_at_snr(
    snr: float, sky_sigma: float, fwhm_px: float, *, profile: str = "gaussian", beta: float = 3.5
) -> float:
    """Flux of a point source detected at a given S/N on a sky-limited image.

    Parameters
    ----------
    snr : float
        Signal-to-noise ratio of PSF-weighted photometry.
    sky_sigma : float
        Background noise per pixel, image units.
    fwhm_px : float
        PSF half-maximum full width, pixels.
    profile : {"gaussian", "moffat"}
        PSF profile.
    beta : float
        Moffat index (``"moffat"`` only).

    Returns
    -------
    float
        ``snr · sky_sigma · sqrt(n_eff)``, image units, with the noise-equivalent
        area ``n_eff = 1/∫I²`` of the continuous PSF: ``4πσ²`` for a Gaussian,
        ``πα²(2β-1)/(β-1)²`` for a Moffat. Pixel integration makes the true
        ``1/Σp²`` slightly larger (by about 1 % at 4 pixels FWHM).
    """
    if profile == "gaussian":
        n_eff = 4.0 * math.pi * (fwhm_px / FWHM_PER_SIGMA) ** 2
    elif profile == "moffat":
        alpha = float(_moffat_alpha(fwhm_px, beta))
        n_eff = math.pi * alpha**2 * (2.0 * beta - 1.0) / (beta - 1.0) ** 2
    else:
        raise ValueError(f"profile {profile!r} is not one of {PSF_PROFILES}")
    return snr * sky_sigma * math.sqrt(n_eff)


def _draw_sources(
    spec: SimulationSpec, rng: np.random.Generator, samples: np.ndarray, widths: np.ndarray
) -> list[Source]:
    ny, nx = spec.shape
    margin = 8.0
    n = spec.n_stars + spec.n_galaxies
    x = rng.uniform(margin, nx - 1 - margin, n)
    y = rng.uniform(margin, ny - 1 - margin, n)
    lo, hi = np.log(spec.star_flux_range)
    flux = np.exp(rng.uniform(lo, hi, n))
    index = rng.uniform(*spec.spectral_index_range, n)
    sigma = np.zeros(n)
    sigma[spec.n_stars :] = rng.uniform(*spec.galaxy_sigma_px, spec.n_galaxies)
    if spec.n_faint_stars:
        m = spec.n_faint_stars
        x = np.concatenate([x, rng.uniform(margin, nx - 1 - margin, m)])
        y = np.concatenate([y, rng.uniform(margin, ny - 1 - margin, m)])
        flux = np.concatenate(
            [flux, _power_law(rng, *spec.faint_flux_range, spec.faint_count_slope, m)]
        )
        index = np.concatenate([index, rng.uniform(*spec.spectral_index_range, m)])
        sigma = np.concatenate([sigma, np.zeros(m)])
        n += m
    sources = []
    for i in range(n):
        density = (samples / spec.effective_wavelength_nm) ** index[i] * widths
        share = density.sum(axis=1) / density.sum()
        sources.append(
            Source(
                x=float(x[i]),
                y=float(y[i]),
                flux=float(flux[i]),
                spectral_index=float(index[i]),
                sigma_px=float(sigma[i]),
                subband_flux=tuple(float(v) for v in flux[i] * share),
            )
        )
    return sources


def _visit_info(spec: SimulationSpec, visit_id: int, airmass: float, east: bool) -> VisitInfo:
    obs = spec.observatory
    ha = _hour_angle_for_airmass(airmass, spec.dec_deg, obs.latitude_deg)
    ha = -ha if east else ha
    era = (ha + spec.ra_deg - obs.longitude_deg) % 360.0
    alt = float(geometry.altitude_deg(ha, spec.dec_deg, obs.latitude_deg))
    weather = spec.weather or refraction.default_weather(obs.elevation_m)
    return VisitInfo(
        visit=visit_id,
        band=spec.band,
        observatory=obs,
        weather=weather,
        era_deg=era,
        mjd=_mjd_for_era(era),
        boresight_ra_deg=spec.ra_deg,
        boresight_dec_deg=spec.dec_deg,
        boresight_alt_deg=alt,
        boresight_airmass=float(geometry.airmass_from_altitude(alt)),
        exptime_s=30.0,
    )


def simulate_tile(spec: SimulationSpec | None = None) -> SimulatedTile:
    """Simulate a tile of warps with DCR, and its truth.

    Parameters
    ----------
    spec : SimulationSpec, optional
        What to simulate; the defaults make a 256² g-band tile of 8 visits.

    Returns
    -------
    SimulatedTile
        Warps, metadata and truth, in memory.

    Notes
    -----
    The whole tile is held in memory, every visit at once; ``write_simulation(spec,
    directory)`` writes the same files from the spec visit by visit, for tiles
    larger than memory.
    """
    plan, rng = _plan_tile(spec or SimulationSpec())
    stack_shape = (len(plan.visits), *plan.spec.shape)
    images = np.zeros(stack_shape, dtype=np.float32)
    variances = np.zeros_like(images)
    true_images = np.zeros_like(images)
    masks = np.zeros(stack_shape, dtype=np.int32)
    artifacts = np.zeros(stack_shape, dtype=bool)
    for v, visit in enumerate(_simulate_visits(plan, rng, np.zeros)):
        images[v], variances[v], masks[v], true_images[v], artifacts[v] = visit
    # the plan holds every attribute of the tile but its pixels, under the same names
    planned = {
        field.name: getattr(plan, field.name)
        for field in attrs.fields(SimulatedTile)
        if hasattr(plan, field.name)
    }
    return SimulatedTile(
        **planned,
        images=images,
        variances=variances,
        masks=masks,
        true_images=true_images,
        true_subbands=np.stack(list(_true_subband_images(plan))),
        artifacts=artifacts,
    )


@attrs.frozen
class _TilePlan:
    """A tile before its pixels: what :class:`SimulatedTile` holds but the images.

    The attributes of the same names as :class:`SimulatedTile`'s are the
    same; ``catalogue`` is ``(y, x, sigma, sample_flux)`` with
    ``sample_flux`` of shape ``(source, sample)``, and ``sample_fwhm`` and
    ``sample_shifts`` the PSF FWHM and the ``(dy, dx)`` DCR displacement of
    each visit and wavelength sample.
    """

    spec: SimulationSpec
    wcs: WCS
    mask_planes: MaskPlanes
    visits: list[VisitInfo]
    holdout: np.ndarray
    psfs: np.ndarray
    psf_fwhm_px: np.ndarray
    seeing_fwhm_px: np.ndarray
    psf_beta: np.ndarray
    psf_stamp_flux: np.ndarray
    shifts_px: np.ndarray
    sources: list[Source]
    wavelength_edges_nm: np.ndarray
    truth_psf_fwhm_px: float
    catalogue: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    sample_fwhm: np.ndarray
    sample_shifts: np.ndarray


def _plan_tile(spec: SimulationSpec) -> tuple[_TilePlan, np.random.Generator]:
    """Draw the sources, the visits and their PSFs; the generator continues with the noise."""
    rng = np.random.default_rng(spec.seed)
    wcs = make_tile_wcs(spec.shape, spec.ra_deg, spec.dec_deg, spec.pixel_scale_arcsec)
    edges, samples, widths = _wavelength_grid(spec)
    sources = _draw_sources(spec, rng, samples, widths)
    airmasses = list(spec.airmasses) + list(spec.holdout_airmasses)
    holdout = np.arange(len(airmasses)) >= len(spec.airmasses)
    seeing, beta = _draw_seeing(spec, rng, len(airmasses))
    truth_fwhm = float(spec.truth_psf_fwhm_px or np.median(seeing[~holdout]))
    # PSF FWHM of each visit and wavelength sample (chromatic seeing), and the
    # flat-spectrum weight of each sample.
    chromatic = (samples.ravel() / spec.effective_wavelength_nm) ** spec.seeing_wavelength_exponent
    sample_fwhm = seeing[:, None] * chromatic[None, :]
    flat_weight = widths.ravel() / widths.sum()
    src_y, src_x, src_sigma, sample_flux = _source_arrays(spec, sources, samples, widths)
    visits, psf_fwhm, sample_shifts, shifts = _simulated_visits(
        spec, wcs, airmasses, samples, seeing, (sample_fwhm, flat_weight, beta)
    )
    stamps = _psf_stamps(spec, sample_fwhm, beta, flat_weight)
    psf_stamp_flux = stamps.sum(axis=(1, 2))
    plan = _TilePlan(
        spec=spec,
        wcs=wcs,
        mask_planes=_simulation_planes(spec),
        visits=visits,
        holdout=holdout,
        psfs=(stamps / psf_stamp_flux[:, None, None]).astype(np.float32),
        psf_fwhm_px=psf_fwhm,
        seeing_fwhm_px=seeing,
        psf_beta=beta,
        psf_stamp_flux=psf_stamp_flux,
        shifts_px=shifts,
        sources=sources,
        wavelength_edges_nm=edges,
        truth_psf_fwhm_px=truth_fwhm,
        catalogue=(src_y, src_x, src_sigma, sample_flux.reshape(len(sources), -1)),
        sample_fwhm=sample_fwhm,
        sample_shifts=sample_shifts,
    )
    log.info(
        "simulating %d visits of %dx%d pixels with %d sources",
        len(visits),
        spec.shape[0],
        spec.shape[1],
        len(sources),
    )
    return plan, rng


class _VisitStack(Protocol):
    """A ``(visit, y, x)`` float64 stack, written in blocks and read a visit at a time."""

    def __getitem__(self, visit: int, /) -> np.ndarray: ...

    def __setitem__(self, key: tuple[slice, slice, slice], value: np.ndarray, /) -> None: ...


class _DiskStack:
    """A :class:`_VisitStack` in a scratch file, for a tile larger than memory."""

    def __init__(self, path: Path, shape: tuple[int, int, int]) -> None:
        self.path, self.shape = path, shape
        with path.open("wb") as scratch:
            scratch.truncate(math.prod(shape) * np.dtype(np.float64).itemsize)

    def __getitem__(self, visit: int, /) -> np.ndarray:
        size = self.shape[1] * self.shape[2]
        offset = visit * size * np.dtype(np.float64).itemsize
        return np.fromfile(self.path, dtype=np.float64, count=size, offset=offset).reshape(
            self.shape[1:]
        )

    def __setitem__(self, key: tuple[slice, slice, slice], value: np.ndarray, /) -> None:
        # mapped for one block only: the pages written are the page cache's, not the process's
        stack = np.memmap(self.path, dtype=np.float64, mode="r+", shape=self.shape)
        stack[key] = value
        stack.flush()
        del stack


def _simulate_visits(
    plan: _TilePlan,
    rng: np.random.Generator,
    stack: Callable[[tuple[int, int, int]], _VisitStack],
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Each visit in turn: image, variance (float32), mask, noise-free image (float32), artifacts.

    Only one visit is in memory at a time, but for the Fourier renderer's
    noise-free images of every visit, drawn block by block into
    ``stack((visit, y, x))`` first.
    """
    spec = plan.spec
    true_image = _true_image_renderer(plan, stack)
    for v in range(len(plan.visits)):
        true = true_image(v)
        image, variance, mask, artifact = _observe_visit(
            spec,
            rng,
            plan.mask_planes,
            true,
            plan.seeing_fwhm_px[v] / FWHM_PER_SIGMA,
            streak=v in spec.streak_visits,
        )
        visit = (
            image.astype(np.float32),
            variance.astype(np.float32),
            mask,
            true.astype(np.float32),
            artifact,
        )
        del true, image, variance  # the float64 copies, before the next visit is drawn
        yield visit


def _simulation_planes(spec: SimulationSpec) -> MaskPlanes:
    """The mask planes of the simulated warps: the run layout, less DETECTED if asked."""
    planes = run_layout()
    if not spec.detected_plane:
        # Like warps from a pipeline that did not detect: no plane, no MP_DETECTED keyword.
        planes = MaskPlanes({n: b for n, b in planes.bits.items() if n != "DETECTED"})
    return planes


def _draw_seeing(
    spec: SimulationSpec, rng: np.random.Generator, n_visits: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the seeing FWHM (pixels) and Moffat index (NaN for Gaussians) of each visit."""
    seeing = rng.uniform(*spec.seeing_fwhm_px, n_visits)
    if spec.psf_profile == "moffat":
        beta = rng.uniform(*spec.psf_beta_range, n_visits)
    else:
        beta = np.full(n_visits, np.nan)
    return seeing, beta


def _source_arrays(
    spec: SimulationSpec, sources: Sequence[Source], samples: np.ndarray, widths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source ``y``, ``x``, ``sigma`` and flux per wavelength sample ``(source, S, K)``."""
    src_x = np.array([s.x for s in sources])
    src_y = np.array([s.y for s in sources])
    src_sigma = np.array([s.sigma_px for s in sources])
    src_index = np.array([s.spectral_index for s in sources])
    src_flux = np.array([s.flux for s in sources])
    # Flux of each source in each wavelength sample: (source, S, K).
    density = (samples[None] / spec.effective_wavelength_nm) ** src_index[:, None, None] * widths[
        None
    ]
    sample_flux = src_flux[:, None, None] * density / density.sum(axis=(1, 2), keepdims=True)
    return src_y, src_x, src_sigma, sample_flux


def _true_subband_images(plan: _TilePlan) -> Iterator[np.ndarray]:
    """The true sky of each sub-band ``(ny, nx)`` float32 in turn, seen with the truth PSF."""
    spec = plan.spec
    src_y, src_x, src_sigma, _ = plan.catalogue
    truth_sigma = np.hypot(plan.truth_psf_fwhm_px / FWHM_PER_SIGMA, src_sigma)
    for b in range(spec.n_subfilters):
        flux = [s.subband_flux[b] for s in plan.sources]
        yield _render(spec.shape, src_y, src_x, flux, truth_sigma).astype(np.float32)


def _simulated_visits(
    spec: SimulationSpec,
    wcs: WCS,
    airmasses: Sequence[float],
    samples: np.ndarray,
    seeing: np.ndarray,
    psf_widths: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[list[VisitInfo], np.ndarray, np.ndarray, np.ndarray]:
    """Each visit's metadata, PSF FWHM, and DCR shifts per wavelength sample and sub-band."""
    sample_fwhm, flat_weight, beta = psf_widths
    n_visits = len(airmasses)
    centre_y, centre_x = (spec.shape[0] - 1) / 2.0, (spec.shape[1] - 1) / 2.0
    visits: list[VisitInfo] = []
    psf_fwhm = np.zeros(n_visits)
    # (dy, dx) DCR displacement of each visit and wavelength sample, pixels.
    sample_shifts = np.zeros((n_visits, samples.size, 2))
    shifts = np.zeros((n_visits, spec.n_subfilters, 2))
    for v, airmass in enumerate(airmasses):
        info = _visit_info(spec, visit_id=1000 + v, airmass=airmass, east=(v % 2 == 0))
        geo = geometry.visit_geometry(info, wcs, centre_x, centre_y)
        angle = math.radians(geo.zenith_direction_deg)
        dcr_px = (
            np.degrees(
                refraction.differential_refraction_rad(
                    samples,
                    spec.effective_wavelength_nm,
                    info.boresight_alt_deg,
                    info.weather,
                    info.observatory,
                )
            )
            * 3600.0
            / geo.pixel_scale_arcsec
        )
        sample_shifts[v, :, 0] = dcr_px.ravel() * math.cos(angle)
        sample_shifts[v, :, 1] = dcr_px.ravel() * math.sin(angle)
        shifts[v, :, 0] = dcr_px.mean(axis=1) * math.cos(angle)
        shifts[v, :, 1] = dcr_px.mean(axis=1) * math.sin(angle)
        psf_fwhm[v] = (
            seeing[v]
            if spec.seeing_wavelength_exponent == 0.0
            else _half_maximum_fwhm(spec.psf_profile, sample_fwhm[v], flat_weight, beta[v])
        )
        visits.append(attrs.evolve(info, psf_fwhm_px=float(psf_fwhm[v])))
    return visits, psf_fwhm, sample_shifts, shifts


def _observe_visit(
    spec: SimulationSpec,
    rng: np.random.Generator,
    planes: MaskPlanes,
    true: np.ndarray,
    psf_sigma: float,
    *,
    streak: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One visit's artifacts, noise, DETECTED footprints, saturation and bad columns."""
    shape = spec.shape
    observed = true.copy()
    artifact = np.zeros(shape, dtype=bool)
    if streak:
        observed += _streak(shape, rng, artifact, peak=20.0 * spec.sky_sigma, sigma=psf_sigma)
    for _ in range(spec.cosmic_rays_per_visit):
        _cosmic_ray(observed, artifact, rng, amplitude=40.0 * spec.sky_sigma)
    # sky_sigma² + clip(true) / gain and observed + noise · sqrt(variance), in place
    variance = np.clip(true, 0.0, None)
    variance /= spec.gain
    variance += spec.sky_sigma**2
    noise = rng.standard_normal(shape)
    noise *= np.sqrt(variance)
    image = observed
    image += noise
    del noise
    mask = np.zeros(shape, dtype=np.int32)
    if spec.detected_plane:
        footprints = true > spec.detection_sigma * spec.sky_sigma
        grow = round(spec.detection_grow_sigma * psf_sigma)
        if grow > 0:
            disk = np.hypot(*np.mgrid[-grow : grow + 1, -grow : grow + 1]) <= grow
            footprints = ndimage.binary_dilation(footprints, structure=disk)
        mask[footprints] |= 1 << planes.bit("DETECTED")
    if spec.saturation is not None:
        saturated = image > spec.saturation
        image[saturated] = spec.saturation
        mask[saturated] |= 1 << planes.bit("SAT")
    for column in rng.choice(shape[1], size=spec.bad_columns, replace=False):
        image[:, column] = 0.0
        mask[:, column] |= 1 << planes.bit("BAD")
    return image, variance, mask, artifact


def _true_image_renderer(
    plan: _TilePlan, stack: Callable[[tuple[int, int, int]], _VisitStack]
) -> Callable[[int], np.ndarray]:
    """``visit -> (ny, nx)`` float64 noise-free image of that visit.

    Gaussian PSFs are separable: a visit is rendered when asked for, stamp by
    stamp with exact pixel integrals (:func:`_render`). Other profiles go
    through their transfer function (:func:`_render_fourier`), whose source
    sums are shared by all visits: every visit is rendered at once, block by
    block (:func:`_render_fourier_blocks`), into ``stack((visit, y, x))``.
    """
    spec = plan.spec
    y, x, sigma, sample_flux = plan.catalogue
    n_visits, n_samples = plan.sample_fwhm.shape
    if spec.psf_profile != "gaussian":
        images = stack((n_visits, *spec.shape))
        _render_fourier_blocks(
            spec.shape,
            plan.catalogue,
            plan.sample_fwhm,
            plan.psf_beta,
            plan.sample_shifts,
            spec.psf_profile,
            images,
        )
        return images.__getitem__

    def render(v: int) -> np.ndarray:
        psf_sigma = plan.sample_fwhm[v] / FWHM_PER_SIGMA
        return _render(
            spec.shape,
            np.repeat(y, n_samples) + np.tile(plan.sample_shifts[v, :, 0], len(y)),
            np.repeat(x, n_samples) + np.tile(plan.sample_shifts[v, :, 1], len(x)),
            sample_flux.reshape(-1),
            np.hypot(psf_sigma[None, :], sigma[:, None]).reshape(-1),
        )

    return render


def _psf_stamps(
    spec: SimulationSpec, sample_fwhm: np.ndarray, beta: np.ndarray, flat_weight: np.ndarray
) -> np.ndarray:
    """``(visit, n, n)`` float64 PSF stamps, not yet normalised.

    The flat-spectrum (``flat_weight``) band average of each visit's PSF
    without DCR, centred on the central pixel, rendered as the images are.
    """
    n_visits = sample_fwhm.shape[0]
    size = spec.psf_stamp_size
    if spec.psf_profile != "gaussian":
        centre = np.array([size // 2], dtype=np.float64)
        return _render_fourier(
            (size, size),
            centre,
            centre,
            np.zeros(1),
            flat_weight[None, :],
            sample_fwhm,
            beta,
            np.zeros((*sample_fwhm.shape, 2)),
            spec.psf_profile,
        )
    stamps = np.zeros((n_visits, size, size))
    stamp_edges = np.arange(-(size // 2), size // 2 + 2) - 0.5
    for v in range(n_visits):
        # One stamp per distinct PSF width, weighted by its share of the band.
        widths, inverse = np.unique(sample_fwhm[v] / FWHM_PER_SIGMA, return_inverse=True)
        weight = np.bincount(inverse, weights=flat_weight)
        profiles = _pixel_integrated_gaussian(stamp_edges, np.zeros(widths.size), widths)
        stamps[v] = np.einsum("u,uy,ux->yx", weight / weight.sum(), profiles, profiles)
    return stamps


def _streak(
    shape: tuple[int, int],
    rng: np.random.Generator,
    artifact: np.ndarray,
    *,
    peak: float,
    sigma: float,
) -> np.ndarray:
    """A straight satellite trail across the tile with a Gaussian cross-section."""
    ny, nx = shape
    yy, xx = np.ogrid[0:ny, 0:nx]
    angle = rng.uniform(0.0, math.pi)
    cy, cx = rng.uniform(0.3, 0.7) * ny, rng.uniform(0.3, 0.7) * nx
    distance = (yy - cy) * math.cos(angle) - (xx - cx) * math.sin(angle)
    trail = peak * np.exp(-0.5 * (distance / sigma) ** 2)
    artifact |= trail > 0.05 * peak
    return trail


def _cosmic_ray(
    image: np.ndarray, artifact: np.ndarray, rng: np.random.Generator, *, amplitude: float
) -> None:
    """A sharp hit of one to three pixels in a short line."""
    ny, nx = image.shape
    y, x = int(rng.integers(2, ny - 2)), int(rng.integers(2, nx - 2))
    length = int(rng.integers(1, 4))
    dy, dx = [(0, 1), (1, 0), (1, 1)][int(rng.integers(0, 3))]
    for step in range(length):
        image[y + step * dy, x + step * dx] += amplitude * rng.uniform(1.0, 3.0)
        artifact[y + step * dy, x + step * dx] = True


class SimulationPaths(TypedDict):
    """What :func:`write_simulation` wrote: the warp files, and the truth files."""

    warps: list[Path]
    holdout: list[Path]
    truth: Path
    catalog: Path


def write_simulation(
    tile: SimulatedTile | SimulationSpec, directory: str | Path, *, overwrite: bool = False
) -> SimulationPaths:
    """Write a simulated tile as warp files, with its truth.

    Layout::

        directory/warps/visit_<id>.fits     fitted visits (docs/file-formats.md)
        directory/holdout/visit_<id>.fits   held-out visits, if any
        directory/truth.npz                 truth arrays
        directory/truth.json                catalogue, shifts and spec

    Parameters
    ----------
    tile : SimulatedTile or SimulationSpec
        The simulation, or what to simulate. A spec is simulated as it is
        written, one visit at a time, so that the tile may be larger than
        memory: the files are those ``write_simulation(simulate_tile(spec))``
        writes, array for array. What is in memory at once is one visit's
        float64 temporaries (about 50 bytes a pixel), or, with Moffat PSFs,
        the Fourier renderer's blocks of every visit; that renderer first
        draws every visit's noise-free image into a scratch file (8 bytes a
        pixel a visit) in a hidden folder of ``directory``, deleted when done.
    directory : str or Path
        Where to write; created if needed.
    overwrite : bool
        Replace files that exist; only files dcr_dask wrote are replaced
        (:func:`dcr_dask.io.ownership.check_output`, checked before anything
        is written).

    Returns
    -------
    SimulationPaths
        ``{"warps": [...], "holdout": [...], "truth": path, "catalog": path}``.
    """
    from dcr_dask.io.atomic import atomic_file
    from dcr_dask.io.npz import NpzWriter
    from dcr_dask.io.ownership import WRITER_ATTR, check_output, writer

    directory = Path(directory)
    meta: SimulatedTile | _TilePlan
    if isinstance(tile, SimulationSpec):
        meta, rng = _plan_tile(tile)
    else:
        meta, rng = tile, None
    targets = [
        directory / ("holdout" if held else "warps") / f"visit_{info.visit}.fits"
        for info, held in zip(meta.visits, meta.holdout, strict=True)
    ]
    truth, catalog = directory / "truth.npz", directory / "truth.json"
    for target in [*targets, truth, catalog]:
        check_output(target, overwrite=overwrite)
    directory.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix=".simulate-scratch-", dir=directory) as scratch,
        atomic_file(truth, overwrite=overwrite) as truth_tmp,
        NpzWriter(truth_tmp) as npz,
    ):
        npz.add(WRITER_ATTR, np.array(writer()))
        subbands: Iterable[np.ndarray]
        visits: Iterable[tuple[np.ndarray, ...]]
        if isinstance(meta, SimulatedTile):
            subbands = meta.true_subbands
            visits = zip(
                meta.images,
                meta.variances,
                meta.masks,
                meta.true_images,
                meta.artifacts,
                strict=True,
            )
        else:
            assert rng is not None
            subbands = _true_subband_images(meta)
            visits = _simulate_visits(
                meta, rng, lambda shape: _DiskStack(Path(scratch) / "true_images.f64", shape)
            )
        _write_truth_subbands(npz, meta, subbands)
        _write_visits(npz, meta, visits, targets, Path(scratch), overwrite=overwrite)
        npz.add("shifts_px", meta.shifts_px)
        npz.add("wavelength_edges_nm", meta.wavelength_edges_nm)
        npz.add("visit", np.array([v.visit for v in meta.visits]))
        npz.add("holdout", meta.holdout)
    catalog.write_text(
        json.dumps(
            {
                WRITER_ATTR: writer(),
                "spec": attrs.asdict(meta.spec),
                "truth_psf_fwhm_px": meta.truth_psf_fwhm_px,
                "visits": [v.visit for v in meta.visits],
                "holdout": meta.holdout.tolist(),
                "psf_fwhm_px": meta.psf_fwhm_px.tolist(),
                "sources": [attrs.asdict(s) for s in meta.sources],
            },
            indent=1,
        )
    )
    return {
        "warps": [t for t in targets if t.parent.name == "warps"],
        "holdout": [t for t in targets if t.parent.name == "holdout"],
        "truth": truth,
        "catalog": catalog,
    }


def _write_truth_subbands(
    npz: NpzWriter, meta: SimulatedTile | _TilePlan, subbands: Iterable[np.ndarray]
) -> None:
    """The ``true_subbands`` member of ``truth.npz``, a sub-band at a time."""
    shape = (meta.spec.n_subfilters, *meta.spec.shape)
    with npz.member("true_subbands", shape, np.float32) as write:
        for image in subbands:
            write(image)


def _write_visits(
    npz: NpzWriter,
    meta: SimulatedTile | _TilePlan,
    visits: Iterable[tuple[np.ndarray, ...]],
    targets: Sequence[Path],
    scratch: Path,
    *,
    overwrite: bool,
) -> None:
    """Each visit's warp file, and the ``true_images`` and ``artifacts`` members of ``truth.npz``.

    One member of an archive is written at a time: the artifact masks wait in
    a scratch file until the noise-free images are written.
    """
    from dcr_dask.io.fits import write_warp

    stack_shape = (len(meta.visits), *meta.spec.shape)
    held = scratch / "artifacts.bool"
    with npz.member("true_images", stack_shape, np.float32) as write_true, held.open("wb") as out:
        for v, (image, variance, mask, true, artifact) in enumerate(visits):
            targets[v].parent.mkdir(parents=True, exist_ok=True)
            write_warp(
                targets[v],
                image,
                mask,
                variance,
                mask_planes=meta.mask_planes,
                wcs=meta.wcs,
                visit=meta.visits[v],
                psf=meta.psfs[v],
                overwrite=overwrite,
            )
            write_true(true)
            np.ascontiguousarray(artifact, dtype=bool).tofile(out)
    with npz.member("artifacts", stack_shape, bool) as write, held.open("rb") as artifacts:
        for _ in range(stack_shape[0]):
            write(np.fromfile(artifacts, dtype=bool, count=math.prod(stack_shape[1:])))


def default_demo_spec(shape: Sequence[int] = (256, 256), seed: int = 1) -> SimulationSpec:
    """The tile the README's demo command simulates.

    Parameters
    ----------
    shape : sequence of int
        Tile size ``(ny, nx)``, pixels.
    seed : int
        Random seed.

    Returns
    -------
    SimulationSpec
        A g-band tile, 12 visits at airmass 1.0-2.0 on both sides of the
        meridian, two held-out visits near airmass 1.9, a streak and cosmic rays.
    """
    return SimulationSpec(
        shape=(int(shape[0]), int(shape[1])),
        airmasses=(1.01, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4, 1.5, 1.6, 1.75, 1.9, 2.0),
        holdout_airmasses=(1.88, 1.92),
        streak_visits=(3,),
        cosmic_rays_per_visit=5,
        seed=seed,
    )


_R_AIRMASSES: tuple[float, ...]
_R_AIRMASSES = (1.01, 1.04, 1.07, 1.1, 1.14, 1.18, 1.22, 1.27, 1.32, 1.38, 1.44, 1.5, 1.57)
_R_AIRMASSES += (1.64, 1.72, 1.8)
#: Bands :func:`realistic_spec` knows: effective wavelength and bandwidth (nm),
#: fitted and held-out airmasses.
_REALISTIC_BANDS = {
    "g": (
        478.0,
        147.0,
        (1.01, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4, 1.5, 1.6, 1.75, 1.9, 2.0),
        (1.88, 1.92),
    ),
    "r": (
        622.0,
        140.0,
        _R_AIRMASSES,
        (1.74, 1.78),
    ),
    "i": (756.0, 129.0, _R_AIRMASSES, (1.74, 1.78)),
    "z": (868.0, 104.0, _R_AIRMASSES, (1.74, 1.78)),
}


def realistic_spec(
    shape: Sequence[int] = (256, 256), seed: int = 1, band: str = "g"
) -> SimulationSpec:
    """A tile closer to real warps than :func:`default_demo_spec`.

    Parameters
    ----------
    shape : sequence of int
        Tile size ``(ny, nx)``, pixels.
    seed : int
        Random seed.
    band : {"g", "r", "i", "z"}
        ``"g"``: 478 nm, 147 nm wide, the demo's 12 visits at airmass
        1.01-2.0 and two held out near 1.9. ``"r"``: 622 nm, 140 nm wide,
        16 visits at airmass 1.01-1.8 and two held out near 1.76; ``"i"``
        (756 nm, 129 nm) and ``"z"`` (868 nm, 104 nm) have r's visits, with
        less DCR.

    Returns
    -------
    SimulationSpec
        Moffat PSFs (β 2.5-4.8) with chromatic seeing ``∝ λ^-0.2``, 3-5 pixel
        (0.6"-1.0") FWHM at 0.2"/pixel, a 55-pixel PSF stamp that holds the
        wings, no ``DETECTED`` plane, per 256² pixels 40 bright stars, 10
        galaxies and 150 faint stars down to a single-visit S/N of 5 at 4
        pixels FWHM (the counts scale with the tile's area), a satellite
        streak in visit 3 and five cosmic rays per visit.

    Raises
    ------
    ValueError
        If ``band`` is not one of the known bands.
    """
    if band not in _REALISTIC_BANDS:
        raise ValueError(f"band {band!r} is not one of {sorted(_REALISTIC_BANDS)}")
    wavelength, bandwidth, airmasses, holdout = _REALISTIC_BANDS[band]
    seeing, beta, sky_sigma = (3.0, 5.0), (2.5, 4.8), 5.0
    faintest = point_source_flux_at_snr(
        5.0, sky_sigma, float(np.mean(seeing)), profile="moffat", beta=float(np.mean(beta))
    )
    area = int(shape[0]) * int(shape[1]) / 256.0**2
    defaults = SimulationSpec()
    return SimulationSpec(
        shape=(int(shape[0]), int(shape[1])),
        airmasses=airmasses,
        holdout_airmasses=holdout,
        band=band,
        effective_wavelength_nm=wavelength,
        bandwidth_nm=bandwidth,
        psf_profile="moffat",
        psf_beta_range=beta,
        seeing_fwhm_px=seeing,
        seeing_wavelength_exponent=-0.2,
        sky_sigma=sky_sigma,
        n_stars=max(1, round(defaults.n_stars * area)),
        n_galaxies=round(defaults.n_galaxies * area),
        n_faint_stars=round(150 * area),
        faint_flux_range=(faintest, SimulationSpec().star_flux_range[0]),
        detected_plane=False,
        streak_visits=(3,),
        cosmic_rays_per_visit=5,
        psf_stamp_size=55,
        seed=seed,
    )


def standard_band_spec(
    band: str, shape: Sequence[int] = (256, 256), seed: int = 1
) -> SimulationSpec:
    """:func:`realistic_spec` at a standard band (:mod:`dcr_dask.physics.bands`).

    The tile gets the band's effective wavelength and bandwidth (a flat
    throughput across ``λ_eff ± bandwidth/2``, as every simulated tile) and
    its warps carry ``band`` as their band, so a run on them without any band
    setting uses the same numbers. The visits are those of the realistic
    g-band tile for bands bluer than 550 nm, else those of the r-band tile.

    Parameters
    ----------
    band : str
        Name or alias of a standard band (``"g"``, ``"lsst-r"``, ``"hsc-i2"``).
    shape : sequence of int
        Tile size ``(ny, nx)``, pixels.
    seed : int
        Random seed.

    Returns
    -------
    SimulationSpec

    Raises
    ------
    ValueError
        If ``band`` is not a standard band (the message lists the known ones).
    """
    standard = standard_band(band)
    base = realistic_spec(
        shape=shape, seed=seed, band="g" if standard.effective_wavelength_nm < 550.0 else "r"
    )
    return attrs.evolve(
        base,
        band=band,
        effective_wavelength_nm=standard.effective_wavelength_nm,
        bandwidth_nm=standard.bandwidth_nm,
    )
