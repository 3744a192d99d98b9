"""An independent renderer of DCR tiles built on GalSim, to check dcr_dask on realistic data.

Nothing here imports dcr_dask: the geometry comes from astropy, the optics and the
refraction from GalSim, the files are written with astropy alone (afw layout, data
contract section 1). What it renders, per visit:

- **PSF**: ``galsim.ChromaticAtmosphere`` of a Kolmogorov profile with the visit's
  seeing (FWHM at 500 nm, scaling as ``λ^-0.2``), zenith and parallactic angles from
  astropy, and the visit's temperature, pressure and water-vapour pressure, so
  GalSim's own refraction formula (``galsim.dcr.get_refraction``) sets the DCR.
- **Sources**: stars with blackbody SEDs (3500-12000 K) and galaxies (Exponential,
  DeVaucouleurs, Sersic) with redshifted CWW template SEDs, magnitudes from
  power-law number counts (more faint than bright) down to the single-visit 5σ
  limit, all through the LSST bandpass of GalSim's share directory.
- **Artifacts** left as plain flux: one satellite streak in one fitted visit and a
  few cosmic-ray tracks in every visit, with their truth masks.
- **Noise**: sky (a background-subtracted sky level from the band's sky brightness)
  plus source Poisson noise, Gaussian, written in the variance plane.
- **DETECTED** plane only on request, as single-visit processing would set it.

Conventions decided here
------------------------
- **DCR reference wavelength.** The warps are astrometrically calibrated, which
  pins each visit's mean refraction: a source's catalogue position is where its
  light *at the band's effective wavelength* lands (``dcr_reference_nm``, default
  GalSim's ``Bandpass.effective_wavelength``). This is GalSim's
  ``base_wavelength``; the Kolmogorov FWHM given to GalSim is the 500 nm seeing
  scaled to that wavelength, so the seeing is still "FWHM at 500 nm".
- **Angles.** GalSim shifts light of wavelength λ by ``R(λ) - R(λ_ref)`` along
  ``(u, v) = (-sin q, cos q)``, with ``q`` the parallactic angle from North through
  East; ``+v`` is North and ``+u`` West (East is ``-u``). On our North-up,
  East-left tile ``(u, v) = (x, y)``, so a pixel-scale GalSim WCS is the tile WCS
  near its centre and ``q`` is passed unchanged. ``q`` is measured with astropy:
  the position angle, at the source, of a point one arcminute toward the zenith.
- **Time and hour angle.** For a target airmass the hour angle solves the
  spherical triangle (east of the meridian negative), and the time on the night
  of ``date`` is solved so that ``HA = ERA + OBS-LONG - BORE-RA`` (data contract),
  with ERA from astropy. Altitude, azimuth and airmass (``sec z``, no refraction)
  then come from astropy's ``AltAz`` at that time, so they include precession
  and nutation; the airmass written can differ from the target by ~0.01.
- **Humidity.** GalSim takes the water-vapour partial pressure; the header holds
  relative humidity. ``e = RH/100 × e_s(T)`` with Buck's (1996) saturation
  pressure over water, ``e_s = 0.61121 exp((18.678 - T/234.5) T/(257.14 + T))`` kPa,
  ``T`` in °C.
- **Band edges.** The bandpass is truncated where its throughput falls below 1 %
  of its peak (g: 391.7-563.7 nm, r: 540.6-701.5 nm); :func:`band_config` gives
  ``effectiveWavelength`` (GalSim's effective wavelength) and ``bandwidth`` (the
  width between those edges) for dcr_dask.
- **Magnitudes.** ``flux = 10**(-0.4 (mag - MAGZERO))`` in image units (electrons
  in the exposure) with the band's ``magzero``; magnitudes are in the system of
  the truncated bandpass (each SED is normalised to its magnitude there).

Speed and exactness
-------------------
Drawing every object chromatically in every visit is slow, so the band is cut
into ``n_wavelength_bins`` equal bins and each source is drawn as the achromatic
sum, over bins, of its photon flux in the bin times GalSim's monochromatic PSF
(``ChromaticAtmosphere.evaluateAtWavelength``) at the source's *own*
photon-weighted mean wavelength in that bin; galaxies are that sum convolved with
their (achromatic) profile. Within a bin the refraction is nearly linear in λ, so
the centroid of every bin, hence of every source, is exact to better than 0.002
pixel; what is lost is the spread of refraction within a bin (at most
~0.2 px RMS along the zenith in the bluest g bin at airmass 2, added in
quadrature to a ≥1.3 px PSF sigma) and the seeing change within a bin. Against
GalSim's full chromatic ``drawImage`` of a 12000 K star at airmass 1.95 the
difference is below 0.5 % of the peak (``tests/test_galsim_tile.py``). A 256²
tile of 14 visits renders in ~10-20 s on one core.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import astropy.units as u
import galsim
import numpy as np
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from scipy import ndimage

__all__ = [
    "MASK_BITS",
    "RUBIN_SITE",
    "GalSimTile",
    "GalSimTileSpec",
    "Source",
    "VisitGeometry",
    "atmosphere",
    "band_config",
    "band_spec",
    "bandpass",
    "load_truth",
    "point_source_snr",
    "primary_header",
    "relative_humidity_to_h2o_kpa",
    "render_tile",
    "tile_wcs",
    "write_afw_exposure",
    "write_tile",
]

#: Rubin Observatory: longitude (deg, East positive), geodetic latitude (deg), elevation (m).
RUBIN_SITE = (-70.749417, -30.244639, 2663.0)

#: Mask planes of every warp (afw's order for the first nine); DETECTED and
#: DETECTED_NEGATIVE are declared only when the DETECTED plane is written.
MASK_BITS = {
    "BAD": 0,
    "SAT": 1,
    "INTRP": 2,
    "CR": 3,
    "EDGE": 4,
    "DETECTED": 5,
    "DETECTED_NEGATIVE": 6,
    "SUSPECT": 7,
    "NO_DATA": 8,
    "CROSSTALK": 9,
    "NOT_DEBLENDED": 10,
    "UNMASKEDNAN": 11,
    "CLIPPED": 12,
    "SENSOR_EDGE": 13,
    "INEXACT_PSF": 14,
    "REJECTED": 15,
}
_DETECTION_PLANES = ("DETECTED", "DETECTED_NEGATIVE")

#: Per band: LSST zero point of a 30 s exposure (mag giving 1 electron) and dark-sky
#: brightness (mag/arcsec²), rounded from the LSST Science Book / SMTN-002.
_BAND_PHOTOMETRY = {
    "g": (32.2, 22.26),
    "r": (32.06, 21.2),
    "i": (31.86, 20.46),
    "z": (31.47, 19.61),
}
_G_AIRMASSES = (1.01, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4, 1.5, 1.6, 1.75, 1.9, 2.0)
_R_AIRMASSES = (
    *(1.01, 1.03, 1.06, 1.1, 1.14, 1.18, 1.23, 1.28),
    *(1.34, 1.4, 1.47, 1.54, 1.62, 1.7, 1.75, 1.8),
)
_CWW_TYPES = ("E", "Sbc", "Scd", "Im")
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_ERA_DEG_PER_DAY = 360.98564736629


@dataclasses.dataclass(frozen=True)
class GalSimTileSpec:
    """What to render. Defaults: the g-band tile of the package's demo (use :func:`band_spec`).

    Parameters
    ----------
    shape : tuple of int
        Tile size ``(ny, nx)``, pixels.
    band : str
        ``"g"``, ``"r"``, ``"i"`` or ``"z"``: GalSim's ``LSST_<band>.dat`` bandpass, zero
        point and sky.
    airmasses : tuple of float
        Target airmass of each fitted visit; visits alternate east (first) and west.
    holdout_airmasses : tuple of float
        Target airmasses of visits written apart (``holdout/``), continuing the alternation.
    seeing_fwhm_arcsec : tuple of float
        Range of the visits' Kolmogorov FWHM at 500 nm (uniform), arcsec.
    pixel_scale_arcsec : float
        Pixel scale of the tile, arcsec.
    ra_deg, dec_deg : float
        Tile centre (and boresight), ICRS degrees.
    date : str
        UTC date of the night of observation (times are solved near 04:00 UTC).
    star_density_arcmin2, galaxy_density_arcmin2 : float
        Sources per square arcminute (the count is rounded).
    star_mag_range, galaxy_mag_range : tuple of float
        Magnitude ranges; the number counts rise as ``10**(slope × mag)``.
    star_count_slope, galaxy_count_slope : float
        Slopes ``d log10 N / d mag`` of the counts.
    star_temperature_k : tuple of float
        Blackbody temperature range (log-uniform), kelvin.
    galaxy_redshift : tuple of float
        Redshift range (uniform) of the galaxies.
    magzero, sky_mag_arcsec2 : float or None
        Zero point (mag of 1 image unit) and sky brightness; None takes the band's.
    exptime_s : float
        Exposure time written to the headers, seconds.
    gain : float
        Electrons per image unit (source Poisson noise).
    temperature_c, humidity_pct, pressure_kpa : tuple of float
        Ranges (uniform) of each visit's weather.
    n_wavelength_bins : int
        Wavelength bins of the fast chromatic rendering (module docstring).
    dcr_reference_nm : float or None
        Wavelength at which refraction is zero on the tile; None is the band's
        effective wavelength.
    streak_visit : int or None
        Index of the fitted visit crossed by a satellite streak; None for none.
    streak_peak_sigma : tuple of float
        Range of the streak's peak, in sky sigmas.
    cosmic_rays_per_visit : int
        Cosmic-ray tracks added to every visit (fitted and held out).
    artifact_truth_sigma : float
        Artifact truth masks hold pixels where the artifact adds more than this many sky sigmas.
    detected_plane : bool
        Write a DETECTED plane (and declare it); off by default.
    detection_sigma, detection_grow_sigma : float
        DETECTED: PSF-smoothed significance threshold, and growth in PSF sigmas.
    noise_free : bool
        Write the noise-free images (artifacts stay, variance is unchanged).
    psf_stamp_size : int
        Side of the PSF HDU (odd), pixels.
    seed : int
        Random seed: the same spec gives the same tile.
    """

    shape: tuple[int, int] = (256, 256)
    band: str = "g"
    airmasses: tuple[float, ...] = _G_AIRMASSES
    holdout_airmasses: tuple[float, ...] = (1.85, 1.95)
    seeing_fwhm_arcsec: tuple[float, float] = (0.6, 1.0)
    pixel_scale_arcsec: float = 0.2
    ra_deg: float = 150.0
    dec_deg: float = -25.0
    date: str = "2024-01-25"
    star_density_arcmin2: float = 80.0
    galaxy_density_arcmin2: float = 40.0
    star_mag_range: tuple[float, float] = (16.5, 25.0)
    galaxy_mag_range: tuple[float, float] = (19.0, 25.0)
    star_count_slope: float = 0.1
    galaxy_count_slope: float = 0.3
    star_temperature_k: tuple[float, float] = (3500.0, 12000.0)
    galaxy_redshift: tuple[float, float] = (0.05, 1.0)
    magzero: float | None = None
    sky_mag_arcsec2: float | None = None
    exptime_s: float = 30.0
    gain: float = 1.0
    temperature_c: tuple[float, float] = (6.0, 14.0)
    humidity_pct: tuple[float, float] = (10.0, 40.0)
    pressure_kpa: tuple[float, float] = (74.0, 74.6)
    n_wavelength_bins: int = 16
    dcr_reference_nm: float | None = None
    streak_visit: int | None = 3
    streak_peak_sigma: tuple[float, float] = (10.0, 30.0)
    cosmic_rays_per_visit: int = 5
    artifact_truth_sigma: float = 1.0
    detected_plane: bool = False
    detection_sigma: float = 5.0
    detection_grow_sigma: float = 2.4
    noise_free: bool = False
    psf_stamp_size: int = 41
    seed: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.band not in _BAND_PHOTOMETRY:
            problems.append(f"band {self.band!r} is not one of {sorted(_BAND_PHOTOMETRY)}")
        if len(self.shape) != 2 or min(self.shape) < 32:
            problems.append(f"shape {self.shape!r} must be two sizes of at least 32 pixels")
        if not self.airmasses:
            problems.append("airmasses must name at least one visit")
        if self.psf_stamp_size % 2 != 1:
            problems.append(f"psf_stamp_size {self.psf_stamp_size} must be odd")
        if self.streak_visit is not None and not 0 <= self.streak_visit < len(self.airmasses):
            problems.append(f"streak_visit {self.streak_visit} is not a fitted visit")
        if self.n_wavelength_bins < 1:
            problems.append(f"n_wavelength_bins {self.n_wavelength_bins} must be at least 1")
        if problems:
            raise ValueError("bad GalSimTileSpec: " + "; ".join(problems))

    @property
    def zero_point(self) -> float:
        """Magnitude of one image unit (``MAGZERO``)."""
        return self.magzero if self.magzero is not None else _BAND_PHOTOMETRY[self.band][0]

    @property
    def sky_per_pixel(self) -> float:
        """Background-subtracted sky level, image units per pixel (its variance × gain)."""
        mu = self.sky_mag_arcsec2
        mu = mu if mu is not None else _BAND_PHOTOMETRY[self.band][1]
        return 10.0 ** (-0.4 * (mu - self.zero_point)) * self.pixel_scale_arcsec**2

    @property
    def sky_sigma(self) -> float:
        """Sky noise per pixel, image units."""
        return math.sqrt(self.sky_per_pixel / self.gain)


def band_spec(band: str = "g", **changes: object) -> GalSimTileSpec:
    """The preset tile of a band: g (12 visits at airmass 1.01-2.0), r, i or z (16, <= 1.8).

    Parameters
    ----------
    band : str
        ``"g"``, ``"r"``, ``"i"`` or ``"z"``. DCR shrinks from g to z: in i and z
        the sub-bands are the hardest to separate.
    **changes
        Fields of :class:`GalSimTileSpec` to override.

    Returns
    -------
    GalSimTileSpec
    """
    presets = {"g": {"airmasses": _G_AIRMASSES}}
    presets.update({band: {"airmasses": _R_AIRMASSES} for band in ("r", "i", "z")})
    if band not in presets:
        raise ValueError(f"band {band!r} has no preset; use one of {sorted(presets)}")
    fields = {"band": band, **presets[band], **changes}
    return GalSimTileSpec(**fields)  # type: ignore[arg-type]


def bandpass(spec: GalSimTileSpec) -> galsim.Bandpass:
    """GalSim's LSST bandpass of the band, truncated below 1 % of its peak throughput."""
    full = galsim.Bandpass(f"LSST_{spec.band}.dat", wave_type="nm")
    return full.truncate(relative_throughput=0.01)


def band_config(spec: GalSimTileSpec) -> dict[str, float]:
    """dcr_dask config fields of the band: ``effectiveWavelength`` and ``bandwidth``, nm.

    The effective wavelength is GalSim's (throughput-weighted mean wavelength) and
    equals the renderer's DCR reference unless ``dcr_reference_nm`` overrides it; the
    bandwidth is the width between the 1 %-of-peak edges.
    """
    bp = bandpass(spec)
    return {
        "effectiveWavelength": round(float(bp.effective_wavelength), 2),
        "bandwidth": round(float(bp.red_limit - bp.blue_limit), 2),
    }


def relative_humidity_to_h2o_kpa(humidity_pct: float, temperature_c: float) -> float:
    """Water-vapour partial pressure from relative humidity (Buck 1996, over water), kPa.

    Parameters
    ----------
    humidity_pct : float
        Relative humidity, percent.
    temperature_c : float
        Air temperature, °C.

    Returns
    -------
    float
        Partial pressure of water vapour, kPa.
    """
    t = temperature_c
    saturation = 0.61121 * math.exp((18.678 - t / 234.5) * (t / (257.14 + t)))
    return humidity_pct / 100.0 * saturation


def point_source_snr(
    flux: np.ndarray | float, psf: np.ndarray, sky_sigma: float, gain: float
) -> np.ndarray:
    """S/N of a point source measured with the optimal (PSF-weighted) filter in one visit.

    ``S/N = F / sqrt(σ² n_eff + F / gain)`` with ``n_eff = 1 / Σ psf²``.

    Parameters
    ----------
    flux : float or numpy.ndarray
        Total flux, image units.
    psf : numpy.ndarray
        The visit's PSF stamp (normalised here).
    sky_sigma : float
        Sky noise per pixel, image units.
    gain : float
        Electrons per image unit.

    Returns
    -------
    numpy.ndarray
        S/N of each flux.
    """
    psf = np.asarray(psf, float) / np.sum(psf)
    n_eff = 1.0 / np.sum(psf * psf)
    flux = np.asarray(flux, float)
    return flux / np.sqrt(sky_sigma**2 * n_eff + np.clip(flux, 0.0, None) / gain)


@dataclasses.dataclass(frozen=True)
class VisitGeometry:
    """Observing conditions of one visit (all written to its primary header)."""

    visit: int
    holdout: bool
    east: bool
    time_tai: str
    mjd_ut1: float
    era_deg: float
    hour_angle_deg: float
    altitude_deg: float
    azimuth_deg: float
    airmass: float
    parallactic_angle_deg: float
    seeing_fwhm_500_arcsec: float
    temperature_c: float
    pressure_pa: float
    humidity_pct: float
    h2o_pressure_kpa: float


@dataclasses.dataclass(frozen=True)
class Source:
    """One rendered source; ``x, y`` (0-based pixels) is where its light at the DCR
    reference wavelength lands."""

    x: float
    y: float
    mag: float
    flux: float
    is_star: bool
    temperature_k: float | None
    galaxy_type: str | None
    redshift: float | None
    profile: str | None
    half_light_radius_arcsec: float | None
    snr_visit: float


@dataclasses.dataclass(frozen=True)
class GalSimTile:
    """A rendered tile in memory.

    Attributes
    ----------
    spec : GalSimTileSpec
    wcs : astropy.wcs.WCS
        Tile WCS (TAN, North +y, East -x).
    visits : list of VisitGeometry
        Fitted visits, then held-out ones.
    images, variances : numpy.ndarray
        ``(visit, y, x)`` float32 warps as written.
    masks : numpy.ndarray
        ``(visit, y, x)`` int32.
    psfs : numpy.ndarray
        ``(visit, n, n)`` PSF stamps (6000 K star), sum 1.
    true_images : numpy.ndarray
        ``(visit, y, x)`` noise-free, artifact-free images.
    streak, cosmic_rays : numpy.ndarray of bool
        ``(visit, y, x)`` artifact truth masks.
    sources : list of Source
    band_edges_nm : tuple of float
        Truncated band, nm.
    reference_nm : float
        DCR reference wavelength, nm.
    """

    spec: GalSimTileSpec
    wcs: WCS
    visits: list[VisitGeometry]
    images: np.ndarray
    variances: np.ndarray
    masks: np.ndarray
    psfs: np.ndarray
    true_images: np.ndarray
    streak: np.ndarray
    cosmic_rays: np.ndarray
    sources: list[Source]
    band_edges_nm: tuple[float, float]
    reference_nm: float

    @property
    def holdout(self) -> np.ndarray:
        """True for held-out visits, per visit."""
        return np.array([v.holdout for v in self.visits])


def tile_wcs(spec: GalSimTileSpec) -> WCS:
    """North-up, East-left TAN WCS with its reference pixel at the tile centre."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [spec.ra_deg, spec.dec_deg]
    wcs.wcs.crpix = [(spec.shape[1] + 1) / 2.0, (spec.shape[0] + 1) / 2.0]
    scale = spec.pixel_scale_arcsec / 3600.0
    wcs.wcs.cd = [[-scale, 0.0], [0.0, scale]]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.set()
    return wcs


def _site() -> EarthLocation:
    lon, lat, elev = RUBIN_SITE
    return EarthLocation.from_geodetic(lon * u.deg, lat * u.deg, elev * u.m)


def _hour_angle_deg(airmass: float, dec_deg: float) -> float:
    """|HA| at which the field has ``airmass`` (sec z), from the spherical triangle, degrees."""
    lat = math.radians(RUBIN_SITE[1])
    dec = math.radians(dec_deg)
    cos_z = 1.0 / airmass
    cos_ha = (cos_z - math.sin(lat) * math.sin(dec)) / (math.cos(lat) * math.cos(dec))
    if not -1.0 <= cos_ha <= 1.0:
        raise ValueError(f"airmass {airmass} is not reached by a field at dec {dec_deg} deg")
    return math.degrees(math.acos(cos_ha))


def _time_for_hour_angle(spec: GalSimTileSpec, hour_angle_deg: float) -> Time:
    """Time near 04:00 UTC of ``spec.date`` at which ``ERA + OBS-LONG - RA = HA``."""
    target = (hour_angle_deg + spec.ra_deg - RUBIN_SITE[0]) % 360.0
    time = Time(f"{spec.date}T04:00:00", scale="utc", precision=9)
    for _ in range(3):
        era = time.earth_rotation_angle(0.0).deg
        delta = (target - era + 180.0) % 360.0 - 180.0
        time = time + (delta / _ERA_DEG_PER_DAY) * u.day
    return time


def _visit_geometry(
    spec: GalSimTileSpec, index: int, airmass: float, holdout: bool, rng: np.random.Generator
) -> VisitGeometry:
    east = index % 2 == 0
    hour_angle = _hour_angle_deg(airmass, spec.dec_deg) * (-1.0 if east else 1.0)
    time = _time_for_hour_angle(spec, hour_angle)
    frame = AltAz(obstime=time, location=_site())
    source = SkyCoord(spec.ra_deg * u.deg, spec.dec_deg * u.deg, frame="icrs")
    altaz = source.transform_to(frame)
    toward_zenith = SkyCoord(alt=altaz.alt + 1.0 * u.arcmin, az=altaz.az, frame=frame).transform_to(
        "icrs"
    )
    parallactic = source.position_angle(toward_zenith).wrap_at(180 * u.deg).deg
    temperature = float(rng.uniform(*spec.temperature_c))
    humidity = float(rng.uniform(*spec.humidity_pct))
    return VisitGeometry(
        visit=100 + index,
        holdout=holdout,
        east=east,
        time_tai=time.tai.isot,
        mjd_ut1=float(time.ut1.mjd),
        era_deg=float(time.earth_rotation_angle(0.0).deg),
        hour_angle_deg=hour_angle,
        altitude_deg=float(altaz.alt.deg),
        azimuth_deg=float(altaz.az.deg),
        airmass=float(altaz.secz),
        parallactic_angle_deg=float(parallactic),
        seeing_fwhm_500_arcsec=float(rng.uniform(*spec.seeing_fwhm_arcsec)),
        temperature_c=temperature,
        pressure_pa=float(rng.uniform(*spec.pressure_kpa)) * 1000.0,
        humidity_pct=humidity,
        h2o_pressure_kpa=relative_humidity_to_h2o_kpa(humidity, temperature),
    )


def atmosphere(visit: VisitGeometry, reference_nm: float) -> galsim.ChromaticAtmosphere:
    """The visit's chromatic PSF (Kolmogorov, chromatic seeing and GalSim's DCR).

    Parameters
    ----------
    visit : VisitGeometry
        Seeing, angles and weather of the visit.
    reference_nm : float
        Wavelength of zero refraction (GalSim's ``base_wavelength``), nm.

    Returns
    -------
    galsim.ChromaticAtmosphere
    """
    alpha = -0.2
    fwhm = visit.seeing_fwhm_500_arcsec * (reference_nm / 500.0) ** alpha
    return galsim.ChromaticAtmosphere(
        galsim.Kolmogorov(fwhm=fwhm),
        base_wavelength=reference_nm,
        alpha=alpha,
        zenith_angle=(90.0 - visit.altitude_deg) * galsim.degrees,
        parallactic_angle=visit.parallactic_angle_deg * galsim.degrees,
        temperature=visit.temperature_c + 273.15,
        pressure=visit.pressure_pa / 1000.0,
        H2O_pressure=visit.h2o_pressure_kpa,
    )


def _blackbody(temperature_k: float) -> galsim.SED:
    wave = np.linspace(300.0, 1200.0, 901)
    hc_over_k = 1.438776877e7  # nm K
    flambda = wave**-5 / np.expm1(hc_over_k / (wave * temperature_k))
    return galsim.SED(galsim.LookupTable(wave, flambda / flambda.max()), "nm", "flambda")


def _cww(galaxy_type: str, redshift: float) -> galsim.SED:
    sed = galsim.SED(f"CWW_{galaxy_type}_ext.sed", wave_type="Ang", flux_type="flambda")
    return sed.atRedshift(redshift)


class _Bins:
    """Equal wavelength bins of the truncated band, with a fine grid to integrate SEDs."""

    def __init__(self, bp: galsim.Bandpass, n_bins: int, step_nm: float = 0.25):
        edges = np.linspace(bp.blue_limit, bp.red_limit, n_bins + 1)
        n_fine = round((bp.red_limit - bp.blue_limit) / step_nm)
        self.wave = (
            bp.blue_limit + (np.arange(n_fine) + 0.5) * (bp.red_limit - bp.blue_limit) / n_fine
        )
        self.throughput = bp(self.wave)
        self.index = np.clip(np.searchsorted(edges, self.wave, side="right") - 1, 0, n_bins - 1)
        self.n_bins = n_bins

    def split(self, sed: galsim.SED) -> tuple[np.ndarray, np.ndarray]:
        """Share of the SED's photons in each bin, and their mean wavelength in it."""
        photons = sed(self.wave) * self.throughput
        share = np.bincount(self.index, photons, self.n_bins)
        mean = np.bincount(self.index, photons * self.wave, self.n_bins) / np.where(
            share > 0, share, 1.0
        )
        return share / share.sum(), mean


def _magnitudes(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float) -> np.ndarray:
    """Magnitudes with counts ``∝ 10**(slope × mag)`` between ``lo`` and ``hi``."""
    a, b = 10.0 ** (slope * lo), 10.0 ** (slope * hi)
    return np.log10(a + rng.uniform(size=n) * (b - a)) / slope


@dataclasses.dataclass(frozen=True)
class _Drawable:
    """A source ready to draw: position, flux per bin, wavelength per bin, profile."""

    x: float
    y: float
    bin_flux: np.ndarray
    bin_wave: np.ndarray
    profile: galsim.GSObject | None
    extent_px: float


def _draw_catalogue(
    spec: GalSimTileSpec, rng: np.random.Generator, bins: _Bins
) -> tuple[list[dict], list[_Drawable]]:
    ny, nx = spec.shape
    area = ny * nx * (spec.pixel_scale_arcsec / 60.0) ** 2
    n_stars = round(spec.star_density_arcmin2 * area)
    n_galaxies = round(spec.galaxy_density_arcmin2 * area)
    entries, drawables = [], []
    star_mags = _magnitudes(rng, n_stars, *spec.star_mag_range, spec.star_count_slope)
    galaxy_mags = _magnitudes(rng, n_galaxies, *spec.galaxy_mag_range, spec.galaxy_count_slope)
    log_t = np.log(spec.star_temperature_k)
    for k in range(n_stars + n_galaxies):
        x, y = rng.uniform(0, nx - 1), rng.uniform(0, ny - 1)
        star = k < n_stars
        entry: dict = {
            "x": float(x),
            "y": float(y),
            "is_star": star,
            "temperature_k": None,
            "galaxy_type": None,
            "redshift": None,
            "profile": None,
            "half_light_radius_arcsec": None,
        }
        if star:
            mag = float(star_mags[k])
            entry["temperature_k"] = float(np.exp(rng.uniform(*log_t)))
            sed = _blackbody(entry["temperature_k"])
            profile, extent = None, 0.0
        else:
            mag = float(galaxy_mags[k - n_stars])
            kind = _CWW_TYPES[int(rng.choice(4, p=[0.25, 0.3, 0.3, 0.15]))]
            redshift = float(rng.uniform(*spec.galaxy_redshift))
            hlr = float(
                np.clip(10 ** rng.normal(math.log10(0.9) - 0.08 * (mag - 21), 0.15), 0.15, 3)
            )
            if kind == "E":
                name, profile = "DeVaucouleurs", galsim.DeVaucouleurs(half_light_radius=hlr)
            elif kind == "Sbc":
                n = float(rng.uniform(1.0, 3.0))
                name, profile = f"Sersic(n={n:.2f})", galsim.Sersic(n=n, half_light_radius=hlr)
            else:
                name, profile = "Exponential", galsim.Exponential(half_light_radius=hlr)
            ellipticity = float(rng.uniform(0.0, 0.5))
            profile = profile.shear(e=ellipticity, beta=rng.uniform(0, math.pi) * galsim.radians)
            entry.update(
                galaxy_type=kind,
                redshift=redshift,
                profile=f"{name}, e={ellipticity:.2f}",
                half_light_radius_arcsec=hlr,
            )
            sed = _cww(kind, redshift)
            extent = (8.0 if kind == "E" else 4.0) * hlr / spec.pixel_scale_arcsec
        flux = 10.0 ** (-0.4 * (mag - spec.zero_point))
        share, wave = bins.split(sed)
        entry.update(mag=mag, flux=float(flux))
        entries.append(entry)
        drawables.append(_Drawable(x, y, flux * share, wave, profile, extent))
    return entries, drawables


def _effective_psf(atm: galsim.ChromaticAtmosphere, bin_flux, bin_wave) -> galsim.GSObject:
    """Sum over bins of the flux times the monochromatic PSF at the bin's mean wavelength."""
    parts = [
        atm.evaluateAtWavelength(w) * f for f, w in zip(bin_flux, bin_wave, strict=True) if f > 0
    ]
    return galsim.Sum(parts)


def _draw(image: galsim.ImageD, obj: galsim.GSObject, x: float, y: float, radius: float) -> None:
    """Add ``obj`` centred at 0-based ``(x, y)`` within ``radius`` pixels (clipped to the tile)."""
    r = math.ceil(radius)
    bounds = galsim.BoundsI(round(x) + 1 - r, round(x) + 1 + r, round(y) + 1 - r, round(y) + 1 + r)
    bounds = bounds & image.bounds
    if not bounds.isDefined():
        return
    obj.drawImage(image=image[bounds], center=galsim.PositionD(x + 1, y + 1), add_to_image=True)


def _psf_stamp(spec: GalSimTileSpec, atm: galsim.ChromaticAtmosphere, bins: _Bins) -> np.ndarray:
    """The visit's PSF for a 6000 K star, centred on that star's centroid, sum 1."""
    share, wave = bins.split(_blackbody(6000.0))
    psf = _effective_psf(atm, share, wave)
    centroid = psf.centroid
    n = spec.psf_stamp_size
    stamp = psf.shift(-centroid.x, -centroid.y).drawImage(nx=n, ny=n, scale=spec.pixel_scale_arcsec)
    array = stamp.array.astype(np.float64)
    return array / array.sum()


def _streak(spec: GalSimTileSpec, psf: galsim.GSObject, rng: np.random.Generator) -> np.ndarray:
    """A satellite trail across the tile: a thin line convolved with the visit's PSF."""
    ny, nx = spec.shape
    scale = spec.pixel_scale_arcsec
    length = 2.0 * math.hypot(ny, nx) * scale
    angle = rng.uniform(0.0, 180.0)
    x, y = rng.uniform(0.3, 0.7) * (nx - 1), rng.uniform(0.3, 0.7) * (ny - 1)
    line = galsim.Box(0.02, length).rotate(angle * galsim.degrees)
    image = galsim.ImageD(nx, ny, scale=scale)
    galsim.Convolve(line, psf).drawImage(
        image=image, center=galsim.PositionD(x + 1, y + 1), add_to_image=True
    )
    peak = rng.uniform(*spec.streak_peak_sigma) * spec.sky_sigma
    return image.array * (peak / image.array.max())


def _cosmic_ray(spec: GalSimTileSpec, rng: np.random.Generator) -> np.ndarray:
    """A straight cosmic-ray track of 1-8 px, 15-60 sky sigmas per pixel of length."""
    ny, nx = spec.shape
    track = np.zeros(spec.shape)
    length = rng.uniform(1.0, 8.0)
    angle = rng.uniform(0.0, math.pi)
    x0, y0 = rng.uniform(2, nx - 3), rng.uniform(2, ny - 3)
    step = 0.05
    t = np.arange(0.0, length, step)
    xs = np.clip(np.round(x0 + t * math.cos(angle)), 0, nx - 1).astype(int)
    ys = np.clip(np.round(y0 + t * math.sin(angle)), 0, ny - 1).astype(int)
    deposit = rng.uniform(15.0, 60.0) * spec.sky_sigma * step
    np.add.at(track, (ys, xs), deposit)
    return track


def _detected(
    image: np.ndarray, variance: np.ndarray, psf: np.ndarray, spec: GalSimTileSpec, fwhm_px: float
) -> np.ndarray:
    """Single-visit detection: PSF-smoothed significance above threshold, grown."""
    smoothed = ndimage.correlate(image, psf, mode="constant")
    noise = np.sqrt(ndimage.correlate(variance, psf * psf, mode="constant"))
    footprints = smoothed > spec.detection_sigma * noise
    grow = round(spec.detection_grow_sigma * fwhm_px / _FWHM_PER_SIGMA)
    if grow > 0:
        disk = np.hypot(*np.mgrid[-grow : grow + 1, -grow : grow + 1]) <= grow
        footprints = ndimage.binary_dilation(footprints, structure=disk)
    return footprints


def render_tile(spec: GalSimTileSpec | None = None) -> GalSimTile:
    """Render a tile of warps and its truth with GalSim.

    Parameters
    ----------
    spec : GalSimTileSpec, optional
        What to render; the default is the g-band preset at 256².

    Returns
    -------
    GalSimTile
        Warps, metadata and truth, in memory.
    """
    spec = spec or GalSimTileSpec()
    scene_rng, artifact_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(3)
    )
    bp = bandpass(spec)
    reference = float(spec.dcr_reference_nm or bp.effective_wavelength)
    bins = _Bins(bp, spec.n_wavelength_bins)
    entries, drawables = _draw_catalogue(spec, scene_rng, bins)
    targets = [*spec.airmasses, *spec.holdout_airmasses]
    visits = [
        _visit_geometry(spec, k, airmass, k >= len(spec.airmasses), scene_rng)
        for k, airmass in enumerate(targets)
    ]
    ny, nx = spec.shape
    scale = spec.pixel_scale_arcsec
    shape = (len(visits), ny, nx)
    true_images = np.zeros(shape, np.float32)
    images = np.zeros(shape, np.float32)
    variances = np.zeros(shape, np.float32)
    masks = np.zeros(shape, np.int32)
    streaks = np.zeros(shape, bool)
    cosmic = np.zeros(shape, bool)
    psfs = np.zeros((len(visits), spec.psf_stamp_size, spec.psf_stamp_size), np.float32)
    radii = np.geomspace(4.0, 128.0, 60)
    floor = 0.02 * spec.sky_sigma
    for v, visit in enumerate(visits):
        atm = atmosphere(visit, reference)
        psfs[v] = _psf_stamp(spec, atm, bins)
        core = atm.evaluateAtWavelength(reference)
        unit = np.array([core.xValue(r * scale, 0.0) for r in radii]) * scale**2
        true = galsim.ImageD(nx, ny, scale=scale)
        for d in drawables:
            psf = _effective_psf(atm, d.bin_flux, d.bin_wave)
            obj = psf if d.profile is None else galsim.Convolve(d.profile, psf)
            below = np.flatnonzero(d.bin_flux.sum() * unit < floor)
            radius = (radii[below[0]] if below.size else radii[-1]) + d.extent_px
            _draw(true, obj, d.x, d.y, radius)
        true_images[v] = true.array
        observed = true.array.copy()
        if not visit.holdout and v == spec.streak_visit:
            share, wave = bins.split(_blackbody(6000.0))
            trail = _streak(spec, _effective_psf(atm, share, wave), artifact_rng)
            observed += trail
            streaks[v] = trail > spec.artifact_truth_sigma * spec.sky_sigma
        for _ in range(spec.cosmic_rays_per_visit):
            hit = _cosmic_ray(spec, artifact_rng)
            observed += hit
            cosmic[v] |= hit > spec.artifact_truth_sigma * spec.sky_sigma
        variance = (spec.sky_per_pixel + np.clip(observed, 0.0, None)) / spec.gain
        if not spec.noise_free:
            observed = observed + noise_rng.standard_normal(observed.shape) * np.sqrt(variance)
        if spec.detected_plane:
            fwhm_px = visit.seeing_fwhm_500_arcsec * (reference / 500.0) ** -0.2 / scale
            found = _detected(observed, variance, psfs[v].astype(float), spec, fwhm_px)
            masks[v][found] |= 1 << MASK_BITS["DETECTED"]
        images[v] = observed
        variances[v] = variance
    fitted = [k for k, visit in enumerate(visits) if not visit.holdout]
    n_eff = [1.0 / np.sum(psfs[k].astype(float) ** 2) for k in fitted]
    typical = psfs[fitted[int(np.argsort(n_eff)[len(n_eff) // 2])]]
    snr = point_source_snr([e["flux"] for e in entries], typical, spec.sky_sigma, spec.gain)
    sources = [Source(**e, snr_visit=float(s)) for e, s in zip(entries, snr, strict=True)]
    return GalSimTile(
        spec=spec,
        wcs=tile_wcs(spec),
        visits=visits,
        images=images,
        variances=variances,
        masks=masks,
        psfs=psfs,
        true_images=true_images,
        streak=streaks,
        cosmic_rays=cosmic,
        sources=sources,
        band_edges_nm=(float(bp.blue_limit), float(bp.red_limit)),
        reference_nm=reference,
    )


def primary_header(spec: GalSimTileSpec, visit: VisitGeometry) -> fits.Header:
    """The afw VisitInfo keywords of a visit (data contract section 1)."""
    lon, lat, elev = RUBIN_SITE
    header = fits.Header()
    header["EXPID"] = visit.visit
    header["FILTER"] = spec.band
    header["EXPTIME"] = spec.exptime_s
    header["DATE-AVG"] = visit.time_tai
    header["TIMESYS"] = "TAI"
    header["HIERARCH MJD-AVG-UT1"] = visit.mjd_ut1
    header["AVG-ERA"] = visit.era_deg
    header["BORE-RA"] = spec.ra_deg
    header["BORE-DEC"] = spec.dec_deg
    header["BORE-AZ"] = visit.azimuth_deg
    header["BORE-ALT"] = visit.altitude_deg
    header["HIERARCH BORE-AIRMASS"] = visit.airmass
    header["OBS-LONG"] = lon
    header["OBS-LAT"] = lat
    header["OBS-ELEV"] = elev
    header["AIRTEMP"] = visit.temperature_c
    header["AIRPRESS"] = visit.pressure_pa
    header["HUMIDITY"] = visit.humidity_pct
    header["MAGZERO"] = spec.zero_point
    return header


def write_afw_exposure(
    path: Path,
    header: fits.Header,
    wcs: WCS,
    image: np.ndarray,
    mask: np.ndarray,
    variance: np.ndarray,
    bits: dict[str, int],
    psf: np.ndarray | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write an afw-style MEF (empty primary, IMAGE, MASK, VARIANCE[, PSF]) with astropy.

    Parameters
    ----------
    path : Path
        Output file.
    header : astropy.io.fits.Header
        Primary header.
    wcs : astropy.wcs.WCS
        Tile WCS, written into every image HDU.
    image, mask, variance : numpy.ndarray
        Planes, written as float32, int32, float32.
    bits : dict of str to int
        Mask planes, written as ``MP_<PLANE>`` keywords.
    psf : numpy.ndarray, optional
        PSF stamp, float32.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
    """
    local = wcs.to_header()
    local["LTV1"] = 0
    local["LTV2"] = 0
    hdus: list = [fits.PrimaryHDU(header=header)]
    planes = (
        ("IMAGE", image.astype(np.float32)),
        ("MASK", mask.astype(np.int32)),
        ("VARIANCE", variance.astype(np.float32)),
    )
    for name, data in planes:
        h = local.copy()
        if name == "MASK":
            for plane, bit in bits.items():
                h[f"HIERARCH MP_{plane}"] = bit
        hdus.append(fits.ImageHDU(data=data, header=h, name=name))
    if psf is not None:
        hdus.append(fits.ImageHDU(data=psf.astype(np.float32), name="PSF"))
    fits.HDUList(hdus).writeto(path, overwrite=overwrite)
    return path


def write_tile(
    tile: GalSimTile, directory: str | Path, *, overwrite: bool = False
) -> dict[str, object]:
    """Write a rendered tile and its truth.

    Layout::

        directory/warps/visit_<id>.fits     fitted visits
        directory/holdout/visit_<id>.fits   held-out visits
        directory/truth.npz                 true_images, streak, cosmic_rays, psfs (visit, ...),
                                            visit, holdout
        directory/catalog.json              spec, band, visits, sources

    Parameters
    ----------
    tile : GalSimTile
        The rendered tile.
    directory : str or Path
        Where to write; created if needed.
    overwrite : bool
        Replace files that exist.

    Returns
    -------
    dict
        ``{"warps": [Path, ...], "holdout": [Path, ...], "truth": Path, "catalog": Path}``.
    """
    directory = Path(directory)
    spec = tile.spec
    bits = {k: b for k, b in MASK_BITS.items() if spec.detected_plane or k not in _DETECTION_PLANES}
    paths: dict[str, list[Path]] = {"warps": [], "holdout": []}
    for v, visit in enumerate(tile.visits):
        kind = "holdout" if visit.holdout else "warps"
        path = directory / kind / f"visit_{visit.visit}.fits"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_afw_exposure(
            path,
            primary_header(spec, visit),
            tile.wcs,
            tile.images[v],
            tile.masks[v],
            tile.variances[v],
            bits,
            tile.psfs[v],
            overwrite=overwrite,
        )
        paths[kind].append(path)
    truth = directory / "truth.npz"
    np.savez_compressed(
        truth,
        true_images=tile.true_images,
        streak=tile.streak,
        cosmic_rays=tile.cosmic_rays,
        psfs=tile.psfs,
        visit=np.array([v.visit for v in tile.visits]),
        holdout=tile.holdout,
    )
    catalog = directory / "catalog.json"
    catalog.write_text(
        json.dumps(
            {
                "spec": dataclasses.asdict(spec),
                "band_edges_nm": tile.band_edges_nm,
                "reference_nm": tile.reference_nm,
                "band_config": band_config(spec),
                "sky_sigma": spec.sky_sigma,
                "magzero": spec.zero_point,
                "visits": [dataclasses.asdict(v) for v in tile.visits],
                "sources": [dataclasses.asdict(s) for s in tile.sources],
            },
            indent=1,
        )
    )
    return {**paths, "truth": truth, "catalog": catalog}


def load_truth(directory: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """Read ``truth.npz`` and ``catalog.json`` written by :func:`write_tile`."""
    directory = Path(directory)
    with np.load(directory / "truth.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, json.loads((directory / "catalog.json").read_text())


def tile_paths(paths: dict[str, object]) -> Sequence[Path]:
    """All warp files of a :func:`write_tile` result, fitted then held out."""
    return [*paths["warps"], *paths["holdout"]]  # type: ignore[misc]
