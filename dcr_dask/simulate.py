"""Synthetic DCR tiles with known truth, for demos, tests and benchmarks.

A simulated tile is a set of warps on one TAN pixel grid, written to the data
contract (DATA_CONTRACT.md, section 1), plus what no real data set has: the
noise-free sky in each sub-band and each visit's noise-free image.

The physics is rendered independently of the DCR engine. Each source has a
power-law spectrum ``f_λ ∝ (λ/λ_eff)^α``; its light is sampled at many
wavelengths across the band, each sample is displaced toward the zenith by its
own differential refraction (Stone 1996, through :mod:`dcr_dask.refraction`),
and each displaced copy is integrated exactly over the pixels with the visit's
Gaussian PSF (a product of error-function differences, so no interpolation or
resampling is involved). The engine instead shifts whole sub-band images, so
agreement between the two is a real check.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import attrs
import numpy as np
from astropy.wcs import WCS
from scipy import ndimage
from scipy.special import erf

from dcr_dask import geometry, refraction
from dcr_dask.masks import MaskPlanes, run_layout
from dcr_dask.visit import Observatory, VisitInfo, Weather

__all__ = [
    "RUBIN_OBSERVATORY",
    "SimulatedTile",
    "SimulationSpec",
    "Source",
    "simulate_tile",
    "write_simulation",
]

log = logging.getLogger(__name__)

#: Rubin Observatory on Cerro Pachón.
RUBIN_OBSERVATORY = Observatory(
    longitude_deg=-70.749417, latitude_deg=-30.244639, elevation_m=2663.0
)

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
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
    seeing_fwhm_px : tuple of float
        Range from which each visit's Gaussian PSF FWHM is drawn, pixels.
    truth_psf_fwhm_px : float or None
        PSF of the truth sub-band images; None uses the median visit seeing.
    n_stars, n_galaxies : int
        Numbers of point sources and small round galaxies.
    star_flux_range : tuple of float
        Range of total fluxes (log-uniform), image units.
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
        Set ``DETECTED`` where a visit's noise-free image exceeds
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
        Size of the PSF HDU written with each warp (odd), pixels.
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
    seeing_fwhm_px: tuple[float, float] = (3.0, 4.5)
    truth_psf_fwhm_px: float | None = None
    n_stars: int = 40
    n_galaxies: int = 10
    star_flux_range: tuple[float, float] = (2.0e3, 2.0e5)
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
        ``(visit, n, n)`` normalised PSF images.
    psf_fwhm_px : numpy.ndarray
        FWHM of each visit's PSF, pixels.
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
    flux: np.ndarray,
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


def _draw_sources(spec: SimulationSpec, rng: np.random.Generator, samples, widths) -> list[Source]:
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
    """
    spec = spec or SimulationSpec()
    rng = np.random.default_rng(spec.seed)
    shape = spec.shape
    wcs = make_tile_wcs(shape, spec.ra_deg, spec.dec_deg, spec.pixel_scale_arcsec)
    planes = run_layout()
    edges, samples, widths = _wavelength_grid(spec)
    sources = _draw_sources(spec, rng, samples, widths)
    airmasses = list(spec.airmasses) + list(spec.holdout_airmasses)
    n_visits = len(airmasses)
    holdout = np.arange(n_visits) >= len(spec.airmasses)
    seeing = rng.uniform(*spec.seeing_fwhm_px, n_visits)
    truth_fwhm = float(spec.truth_psf_fwhm_px or np.median(seeing[~holdout]))

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

    truth_sigma = np.hypot(truth_fwhm / _FWHM_PER_SIGMA, src_sigma)
    true_subbands = np.stack(
        [
            _render(shape, src_y, src_x, [s.subband_flux[b] for s in sources], truth_sigma)
            for b in range(spec.n_subfilters)
        ]
    ).astype(np.float32)

    centre_y, centre_x = (shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0
    visits: list[VisitInfo] = []
    shifts = np.zeros((n_visits, spec.n_subfilters, 2))
    true_images = np.zeros((n_visits, *shape), dtype=np.float32)
    images = np.zeros_like(true_images)
    variances = np.zeros_like(true_images)
    masks = np.zeros((n_visits, *shape), dtype=np.int32)
    artifacts = np.zeros((n_visits, *shape), dtype=bool)
    psfs = np.zeros((n_visits, spec.psf_stamp_size, spec.psf_stamp_size), dtype=np.float32)
    half = spec.psf_stamp_size // 2
    stamp_edges = np.arange(-half, half + 2) - 0.5
    for v, airmass in enumerate(airmasses):
        info = _visit_info(spec, visit_id=1000 + v, airmass=airmass, east=(v % 2 == 0))
        info = attrs.evolve(info, psf_fwhm_px=float(seeing[v]))
        visits.append(info)
        geo = geometry.visit_geometry(info, wcs, centre_x, centre_y)
        scale = geo.pixel_scale_arcsec
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
            / scale
        )
        shifts[v, :, 0] = dcr_px.mean(axis=1) * math.cos(angle)
        shifts[v, :, 1] = dcr_px.mean(axis=1) * math.sin(angle)
        psf_sigma = seeing[v] / _FWHM_PER_SIGMA
        sigma = np.hypot(psf_sigma, src_sigma)
        n_samples = dcr_px.size
        true = _render(
            shape,
            np.repeat(src_y, n_samples) + np.tile(dcr_px.ravel() * math.cos(angle), len(sources)),
            np.repeat(src_x, n_samples) + np.tile(dcr_px.ravel() * math.sin(angle), len(sources)),
            sample_flux.reshape(-1),
            np.repeat(sigma, n_samples),
        )
        true_images[v] = true
        g1 = _pixel_integrated_gaussian(stamp_edges, np.array([0.0]), np.array([psf_sigma]))[0]
        psf = np.outer(g1, g1)
        psfs[v] = psf / psf.sum()

        observed = true.copy()
        artifact = np.zeros(shape, dtype=bool)
        if v in spec.streak_visits:
            observed += _streak(shape, rng, artifact, peak=20.0 * spec.sky_sigma, sigma=psf_sigma)
        for _ in range(spec.cosmic_rays_per_visit):
            _cosmic_ray(observed, artifact, rng, amplitude=40.0 * spec.sky_sigma)
        variance = spec.sky_sigma**2 + np.clip(true, 0.0, None) / spec.gain
        image = observed + rng.standard_normal(shape) * np.sqrt(variance)
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
        images[v] = image
        variances[v] = variance
        masks[v] = mask
        artifacts[v] = artifact
    log.info(
        "simulated %d visits of %dx%d pixels with %d sources",
        n_visits,
        shape[0],
        shape[1],
        len(sources),
    )
    return SimulatedTile(
        spec=spec,
        wcs=wcs,
        mask_planes=planes,
        visits=visits,
        holdout=holdout,
        images=images,
        variances=variances,
        masks=masks,
        psfs=psfs,
        psf_fwhm_px=seeing,
        shifts_px=shifts,
        true_images=true_images,
        true_subbands=true_subbands,
        artifacts=artifacts,
        sources=sources,
        wavelength_edges_nm=edges,
        truth_psf_fwhm_px=truth_fwhm,
    )


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
    yy, xx = np.mgrid[0:ny, 0:nx]
    angle = rng.uniform(0.0, math.pi)
    cy, cx = rng.uniform(0.3, 0.7) * ny, rng.uniform(0.3, 0.7) * nx
    distance = (yy - cy) * math.cos(angle) - (xx - cx) * math.sin(angle)
    trail = peak * np.exp(-0.5 * (distance / sigma) ** 2)
    artifact |= trail > 0.05 * peak
    return trail


def _cosmic_ray(
    image: np.ndarray, artifact: np.ndarray, rng: np.random.Generator, *, amplitude: float
):
    """A sharp hit of one to three pixels in a short line."""
    ny, nx = image.shape
    y, x = int(rng.integers(2, ny - 2)), int(rng.integers(2, nx - 2))
    length = int(rng.integers(1, 4))
    dy, dx = [(0, 1), (1, 0), (1, 1)][int(rng.integers(0, 3))]
    for step in range(length):
        image[y + step * dy, x + step * dx] += amplitude * rng.uniform(1.0, 3.0)
        artifact[y + step * dy, x + step * dx] = True


def write_simulation(
    tile: SimulatedTile, directory: str | Path, *, overwrite: bool = False
) -> dict[str, object]:
    """Write a simulated tile to the data contract, with its truth.

    Layout::

        directory/warps/visit_<id>.fits     fitted visits (contract section 1)
        directory/holdout/visit_<id>.fits   held-out visits, if any
        directory/truth.npz                 truth arrays
        directory/truth.json                catalogue, shifts and spec

    Parameters
    ----------
    tile : SimulatedTile
        The simulation.
    directory : str or Path
        Where to write; created if needed.
    overwrite : bool
        Replace files that exist; only files dcr_dask wrote are replaced
        (:func:`dcr_dask.io.ownership.check_output`, checked before anything
        is written).

    Returns
    -------
    dict
        ``{"warps": [...], "holdout": [...], "truth": path, "catalog": path}``.
    """
    from dcr_dask.io.fits import write_warp
    from dcr_dask.io.ownership import WRITER_ATTR, check_output, writer

    directory = Path(directory)
    targets = [
        directory / ("holdout" if held else "warps") / f"visit_{info.visit}.fits"
        for info, held in zip(tile.visits, tile.holdout, strict=True)
    ]
    truth, catalog = directory / "truth.npz", directory / "truth.json"
    for target in [*targets, truth, catalog]:
        check_output(target, overwrite=overwrite)
    paths: dict[str, list[Path]] = {"warps": [], "holdout": []}
    for v, (info, path) in enumerate(zip(tile.visits, targets, strict=True)):
        kind = path.parent.name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_warp(
            path,
            tile.images[v],
            tile.masks[v],
            tile.variances[v],
            mask_planes=tile.mask_planes,
            wcs=tile.wcs,
            visit=info,
            psf=tile.psfs[v],
            overwrite=overwrite,
        )
        paths[kind].append(path)
    np.savez_compressed(
        truth,
        **{WRITER_ATTR: np.array(writer())},
        true_subbands=tile.true_subbands,
        true_images=tile.true_images,
        artifacts=tile.artifacts,
        shifts_px=tile.shifts_px,
        wavelength_edges_nm=tile.wavelength_edges_nm,
        visit=np.array([v.visit for v in tile.visits]),
        holdout=tile.holdout,
    )
    catalog.write_text(
        json.dumps(
            {
                WRITER_ATTR: writer(),
                "spec": attrs.asdict(tile.spec),
                "truth_psf_fwhm_px": tile.truth_psf_fwhm_px,
                "visits": [v.visit for v in tile.visits],
                "holdout": tile.holdout.tolist(),
                "psf_fwhm_px": tile.psf_fwhm_px.tolist(),
                "sources": [attrs.asdict(s) for s in tile.sources],
            },
            indent=1,
        )
    )
    return {**paths, "truth": truth, "catalog": catalog}


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
