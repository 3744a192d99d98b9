"""Tests of dcr_dask.physics.refraction against independent codes (ERFA via astropy, GalSim)."""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.time import Time
from astropy.utils import iers

from dcr_dask.physics.refraction import (
    MAX_WAVELENGTH_NM,
    MIN_WAVELENGTH_NM,
    default_weather,
    differential_refraction_rad,
    refraction_rad,
)
from dcr_dask.visit import Observatory, Weather

RUBIN = Observatory(longitude_deg=-70.7494, latitude_deg=-30.2444, elevation_m=2663.0)
RUBIN_WEATHER = Weather(temperature_c=10.0, pressure_pa=74000.0, humidity_pct=40.0)

# (effective wavelength, bandwidth) in nm, roughly those of the LSST u, g and r filters.
BANDS = {"u": (367.0, 66.0), "g": (482.0, 148.0), "r": (622.0, 140.0)}
AIRMASSES = np.array([1.05, 1.2, 1.5, 1.75, 2.0])
RAD_TO_ARCSEC = 180.0 / math.pi * 3600.0


@pytest.fixture(autouse=True, scope="module")
def _no_iers_download():
    """The machine is offline: astropy must use its bundled IERS tables."""
    with iers.conf.set_temp("auto_download", False):
        yield


def _band_wavelengths(effective_nm: float, bandwidth_nm: float) -> np.ndarray:
    """Edges and inner sub-band edges (three sub-bands) of a band, blue to red."""
    return effective_nm + bandwidth_nm * np.array([-0.5, -1.0 / 6.0, 1.0 / 6.0, 0.5])


def _astropy_apparent_altitude_deg(
    true_alt_deg: np.ndarray, wavelength_nm: float, weather: Weather, site: Observatory
) -> np.ndarray:
    """Observed altitude from astropy's AltAz frame (ERFA refraction), for unrefracted altitudes."""
    location = EarthLocation.from_geodetic(
        site.longitude_deg * u.deg, site.latitude_deg * u.deg, site.elevation_m * u.m
    )
    time = Time("2021-06-01T04:00:00", scale="utc")
    vacuum = AltAz(location=location, obstime=time, pressure=0 * u.hPa)
    source = SkyCoord(
        az=np.full_like(true_alt_deg, 120.0) * u.deg, alt=true_alt_deg * u.deg, frame=vacuum
    )
    air = AltAz(
        location=location,
        obstime=time,
        pressure=weather.pressure_pa * u.Pa,
        temperature=weather.temperature_c * u.deg_C,
        relative_humidity=weather.humidity_pct / 100.0,
        obswl=wavelength_nm * u.nm,
    )
    return source.transform_to(air).alt.deg


def _buck_vapour_pressure_kpa(temperature_c: float, humidity_pct: float) -> float:
    """Water vapour pressure from the Buck (1981) saturation formula, kPa."""
    saturation_hpa = 6.1121 * math.exp(17.502 * temperature_c / (240.97 + temperature_c))
    return humidity_pct / 100.0 * saturation_hpa / 10.0


# --------------------------------------------------------------------------
# Default weather
# --------------------------------------------------------------------------


def test_default_weather_at_sea_level_is_the_standard_atmosphere():
    weather = default_weather(0.0)
    assert weather.temperature_c == pytest.approx(15.0)
    assert weather.pressure_pa == pytest.approx(101325.0)
    assert weather.humidity_pct == pytest.approx(40.0)
    assert weather.defaulted == ("AIRTEMP", "AIRPRESS", "HUMIDITY")


@pytest.mark.parametrize(
    ("elevation_m", "temperature_c", "pressure_pa"),
    # U.S. Standard Atmosphere 1976, published table values.
    [(1000.0, 8.5, 89876.0), (2000.0, 2.0, 79495.0), (3000.0, -4.5, 70121.0)],
)
def test_default_weather_follows_the_standard_atmosphere_tables(
    elevation_m, temperature_c, pressure_pa
):
    weather = default_weather(elevation_m)
    assert weather.temperature_c == pytest.approx(temperature_c, abs=1e-6)
    assert weather.pressure_pa == pytest.approx(pressure_pa, rel=2e-4)


def test_default_weather_keeps_measured_values_and_records_the_others():
    weather = default_weather(2663.0, temperature_c=7.5, humidity_pct=12.0)
    assert weather.temperature_c == 7.5
    assert weather.humidity_pct == 12.0
    assert weather.defaulted == ("AIRPRESS",)
    assert default_weather(0.0, 1.0, 90000.0, 50.0).defaulted == ()


@pytest.mark.parametrize("elevation_m", [11000.0, float("nan")])
def test_default_weather_refuses_elevations_outside_the_troposphere(elevation_m):
    with pytest.raises(ValueError, match="elevation"):
        default_weather(elevation_m)


# --------------------------------------------------------------------------
# Basic behaviour and validation
# --------------------------------------------------------------------------


def test_refraction_is_zero_at_the_zenith_and_grows_toward_the_horizon():
    elevations = np.array([90.0, 70.0, 50.0, 30.0, 20.0])
    r = refraction_rad(500.0, elevations, RUBIN_WEATHER, RUBIN)
    assert r[0] == pytest.approx(0.0, abs=1e-15)
    assert np.all(np.diff(r) > 0)


def test_refraction_near_the_zenith_follows_the_refractivity_of_standard_air():
    # Near the zenith R ≈ (n − 1) tan z to within the small corrections for the
    # Earth's curvature and gravity (a few parts in a thousand). Edlén (1966)
    # gives n − 1 of standard air (15 °C, 101325 Pa, dry) independently of Owens.
    sigma2 = (1.0e3 / 550.0) ** 2
    edlen = (8342.54 + 2406147.0 / (130.0 - sigma2) + 15998.0 / (38.9 - sigma2)) * 1e-8
    weather = default_weather(0.0, humidity_pct=0.0)
    r = refraction_rad(550.0, 80.0, weather, Observatory(0.0, 45.0, 0.0))
    assert r / math.tan(math.radians(10.0)) == pytest.approx(edlen, rel=3e-3)


def test_refraction_broadcasts_wavelength_against_elevation():
    wavelengths = np.array([400.0, 500.0, 600.0])[:, np.newaxis]
    elevations = np.array([30.0, 45.0, 60.0, 80.0])
    r = refraction_rad(wavelengths, elevations, RUBIN_WEATHER, RUBIN)
    assert r.shape == (3, 4)
    assert np.all(np.diff(r, axis=0) < 0)  # blue is refracted more
    assert isinstance(refraction_rad(500.0, 45.0, RUBIN_WEATHER, RUBIN), float)


def test_differential_refraction_is_positive_for_blue_and_antisymmetric():
    blue = differential_refraction_rad(400.0, 480.0, 40.0, RUBIN_WEATHER, RUBIN)
    red = differential_refraction_rad(560.0, 480.0, 40.0, RUBIN_WEATHER, RUBIN)
    assert blue > 0 > red
    assert differential_refraction_rad(480.0, 400.0, 40.0, RUBIN_WEATHER, RUBIN) == pytest.approx(
        -blue, rel=1e-12
    )


@pytest.mark.parametrize("wavelength", [229.9, 2059.5, 10.0, float("nan")])
def test_wavelength_outside_the_valid_range_raises_naming_the_value(wavelength):
    with pytest.raises(ValueError, match=f"wavelength {wavelength:g} nm") as info:
        refraction_rad([500.0, wavelength], 45.0, RUBIN_WEATHER, RUBIN)
    assert f"{MIN_WAVELENGTH_NM:g}-{MAX_WAVELENGTH_NM:g}" in str(info.value)


def test_reference_wavelength_outside_the_valid_range_raises():
    with pytest.raises(ValueError, match="wavelength 3000 nm"):
        differential_refraction_rad(500.0, 3000.0, 45.0, RUBIN_WEATHER, RUBIN)


def test_the_range_ends_are_valid():
    r = refraction_rad([MIN_WAVELENGTH_NM, MAX_WAVELENGTH_NM], 45.0, RUBIN_WEATHER, RUBIN)
    assert np.all(np.isfinite(r)) and np.all(r > 0)


@pytest.mark.parametrize("elevation", [0.0, -5.0, 90.5, float("nan")])
def test_elevation_outside_0_90_raises_naming_the_value(elevation):
    with pytest.raises(ValueError, match=f"elevation {elevation:g} deg"):
        refraction_rad(500.0, elevation, RUBIN_WEATHER, RUBIN)


@pytest.mark.parametrize(
    ("weather", "what"),
    [
        (Weather(-300.0, 74000.0, 40.0), "temperature"),
        (Weather(10.0, -1.0, 40.0), "pressure"),
        (Weather(10.0, 74000.0, 120.0), "humidity"),
    ],
)
def test_unphysical_weather_raises(weather, what):
    with pytest.raises(ValueError, match=what):
        refraction_rad(500.0, 45.0, weather, RUBIN)


def test_dry_air_is_handled_and_humidity_barely_matters():
    dry = refraction_rad(500.0, 45.0, Weather(10.0, 74000.0, 0.0), RUBIN)
    wet = refraction_rad(500.0, 45.0, Weather(10.0, 74000.0, 100.0), RUBIN)
    assert np.isfinite(dry)
    assert wet < dry  # water vapour is less refractive than the dry air it displaces
    assert wet == pytest.approx(dry, rel=5e-3)


# --------------------------------------------------------------------------
# Against independent implementations
# --------------------------------------------------------------------------


def _relative_errors_vs_astropy(weather: Weather, site: Observatory) -> dict[str, float]:
    true_alt = np.degrees(np.arcsin(1.0 / AIRMASSES))
    worst = {}
    for band, (effective, width) in BANDS.items():
        reference_alt = _astropy_apparent_altitude_deg(true_alt, effective, weather, site)
        errors = []
        for wavelength in _band_wavelengths(effective, width):
            theirs = _astropy_apparent_altitude_deg(true_alt, wavelength, weather, site)
            theirs = np.radians(theirs - reference_alt)
            ours = differential_refraction_rad(wavelength, effective, reference_alt, weather, site)
            errors.append(np.abs(ours / theirs - 1.0))
        worst[band] = float(np.max(errors))
    return worst


@pytest.mark.parametrize(
    ("weather", "site"),
    [(RUBIN_WEATHER, RUBIN), (default_weather(0.0), Observatory(0.0, 45.0, 0.0))],
    ids=["rubin", "sea-level"],
)
def test_differential_refraction_agrees_with_astropy_erfa(weather, site):
    """astropy's AltAz frame refracts with ERFA's eraRefco (A tan z + B tan³ z)."""
    worst = _relative_errors_vs_astropy(weather, site)
    # ERFA's dispersion of air is a short Cauchy-type series that departs most
    # from Owens' (and Edlén's, see the GalSim test) in the ultraviolet.
    # Measured: u 2.3-2.6 %, g 0.7-0.9 %, r 0.15-0.3 %.
    assert worst["u"] < 0.03, worst
    assert worst["g"] < 0.015, worst
    assert worst["r"] < 0.01, worst


def test_differential_refraction_agrees_with_galsim():
    """GalSim refracts with the Filippenko (1982) / Edlén dispersion of air, plane-parallel."""
    galsim = pytest.importorskip("galsim")
    from galsim.dcr import get_refraction

    weather = RUBIN_WEATHER
    kwargs = {
        "temperature": weather.temperature_c + 273.15,
        "pressure": weather.pressure_pa / 1000.0,
        "H2O_pressure": _buck_vapour_pressure_kpa(weather.temperature_c, weather.humidity_pct),
    }
    worst = 0.0
    for airmass in AIRMASSES:
        elevation = math.degrees(math.asin(1.0 / airmass))
        zenith = galsim.Angle(90.0 - elevation, galsim.degrees)
        for effective, width in BANDS.values():
            wavelengths = _band_wavelengths(effective, width)
            theirs = get_refraction(wavelengths, zenith, **kwargs) - get_refraction(
                effective, zenith, **kwargs
            )
            ours = differential_refraction_rad(wavelengths, effective, elevation, weather, RUBIN)
            worst = max(worst, float(np.max(np.abs(ours / theirs - 1.0))))
    assert worst < 0.01  # measured: 0.4 % (u), 0.6 % (g), 0.65 % (r)


def test_absolute_refraction_agrees_with_astropy_erfa():
    true_alt = np.degrees(np.arcsin(1.0 / AIRMASSES))
    observed = _astropy_apparent_altitude_deg(true_alt, 550.0, RUBIN_WEATHER, RUBIN)
    theirs = np.radians(observed - true_alt)
    ours = refraction_rad(550.0, observed, RUBIN_WEATHER, RUBIN)
    np.testing.assert_allclose(ours, theirs, rtol=0.01)
