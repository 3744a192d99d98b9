"""Atmospheric refraction of starlight as a function of wavelength.

The refraction follows Stone (1996), *An Accurate Method for Computing
Atmospheric Refraction*, PASP 108, 1051: a closed formula, accurate at the
zenith distances of imaging surveys, with the wavelength dependence (the
dispersion of air) that Differential Chromatic Refraction (DCR) is made of.
The refraction ``R`` is the angle by which a source appears higher than it
would without an atmosphere:

``R = κ (n − 1) (1 − β) tan z − κ (n − 1) (β − (n − 1)/2) tan³ z``

the two-term expansion of the refraction integral of Stone (1996, Sect. 2),
where ``z`` is the zenith distance, ``κ`` the local gravity relative to that
at sea level on the equator (Stone 1996, Eq. 10), ``β = H₀/r₀ =
0.001254 · T/273.15`` the ratio of the height of the isothermal atmosphere to
the radius of the Earth, and ``n`` the refractive index of moist air at the
observatory from the dispersion formula of Owens (1967) as Stone gives it
(Eqs. 14-16), with the water vapour pressure from the relative humidity through
the dew point (Eqs. 18 and 20).

Everything here is a pure, vectorised NumPy function of plain floats in the
units of their names; the site and the weather come as the attrs classes of
:mod:`dcr_dask.visit`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from dcr_dask.visit import Observatory, Weather

__all__ = [
    "DEFAULT_HUMIDITY_PCT",
    "MAX_ELEVATION_M",
    "MAX_WAVELENGTH_NM",
    "MIN_WAVELENGTH_NM",
    "default_weather",
    "differential_refraction_rad",
    "refraction_rad",
]

MIN_WAVELENGTH_NM = 230.0
"""Shortest wavelength (nm) at which Stone's (1996) dispersion formula is valid."""

MAX_WAVELENGTH_NM = 2059.0
"""Longest wavelength (nm) at which Stone's (1996) dispersion formula is valid."""

DEFAULT_HUMIDITY_PCT = 40.0
"""Relative humidity (percent) assumed when a header gives none; typical of observatory sites."""

# International Standard Atmosphere (ISO 2533:1975; identical to the U.S.
# Standard Atmosphere 1976 below 11 km): sea-level state and the constant
# temperature lapse rate of the troposphere.
_ISA_SEA_LEVEL_TEMPERATURE_K = 288.15
_ISA_SEA_LEVEL_PRESSURE_PA = 101325.0
_ISA_LAPSE_RATE_K_PER_M = 0.0065
_ISA_TROPOPAUSE_M = 11000.0
_STANDARD_GRAVITY_M_S2 = 9.80665
_MOLAR_MASS_DRY_AIR_KG_MOL = 0.0289644
_GAS_CONSTANT_J_MOL_K = 8.3144598
_ISA_PRESSURE_EXPONENT = (
    _STANDARD_GRAVITY_M_S2
    * _MOLAR_MASS_DRY_AIR_KG_MOL
    / (_GAS_CONSTANT_J_MOL_K * _ISA_LAPSE_RATE_K_PER_M)
)

MAX_ELEVATION_M = _ISA_TROPOPAUSE_M
"""Observatory elevation (m) from which :func:`default_weather` refuses: the tropopause of the
standard atmosphere, above which its troposphere does not apply."""

_ZERO_CELSIUS_K = 273.15
_PA_PER_MBAR = 100.0
_PA_PER_MMHG = 133.322387415


def default_weather(
    elevation_m: float,
    temperature_c: float | None = None,
    pressure_pa: float | None = None,
    humidity_pct: float | None = None,
) -> Weather:
    """Complete the weather at a site, filling missing values from a standard atmosphere.

    Temperature and pressure come from the troposphere of the International
    Standard Atmosphere (ISO 2533; the same as the U.S. Standard Atmosphere
    1976 below 11 km): 15 °C and 101325 Pa at sea level, a temperature lapse
    rate of 6.5 K/km, and hydrostatic equilibrium, so that
    ``T = 288.15 K − 0.0065 K/m · h`` and
    ``P = 101325 Pa · (T/288.15 K)^(g M / (R L)) ≈ 101325 Pa · (T/288.15 K)^5.2559``.
    The standard pressure does not depend on a measured temperature. The
    humidity defaults to :data:`DEFAULT_HUMIDITY_PCT` (40 %).

    Parameters
    ----------
    elevation_m : float
        Height of the observatory above sea level, metres; below 11000 m.
    temperature_c : float, optional
        Measured air temperature, degrees Celsius (header ``AIRTEMP``).
    pressure_pa : float, optional
        Measured air pressure, pascals (header ``AIRPRESS``).
    humidity_pct : float, optional
        Measured relative humidity, percent (header ``HUMIDITY``).

    Returns
    -------
    Weather
        The measured values where given and the standard ones elsewhere; its
        ``defaulted`` names the header keywords (``AIRTEMP``, ``AIRPRESS``,
        ``HUMIDITY``) whose values were filled in, in that order.

    Raises
    ------
    ValueError
        If ``elevation_m`` is not finite or lies above the tropopause of the
        standard atmosphere (11000 m), where its troposphere does not apply.
    """
    if not math.isfinite(elevation_m) or elevation_m >= MAX_ELEVATION_M:
        raise ValueError(
            f"observatory elevation {elevation_m!r} m is outside the troposphere of the "
            f"standard atmosphere (below {MAX_ELEVATION_M:.0f} m)"
        )
    standard_temperature_k = _ISA_SEA_LEVEL_TEMPERATURE_K - _ISA_LAPSE_RATE_K_PER_M * elevation_m
    defaulted = []
    if temperature_c is None:
        temperature_c = standard_temperature_k - _ZERO_CELSIUS_K
        defaulted.append("AIRTEMP")
    if pressure_pa is None:
        pressure_pa = _ISA_SEA_LEVEL_PRESSURE_PA * (
            standard_temperature_k / _ISA_SEA_LEVEL_TEMPERATURE_K
        ) ** (_ISA_PRESSURE_EXPONENT)
        defaulted.append("AIRPRESS")
    if humidity_pct is None:
        humidity_pct = DEFAULT_HUMIDITY_PCT
        defaulted.append("HUMIDITY")
    return Weather(
        temperature_c=float(temperature_c),
        pressure_pa=float(pressure_pa),
        humidity_pct=float(humidity_pct),
        defaulted=tuple(defaulted),
    )


def refraction_rad(
    wavelength_nm: npt.ArrayLike,
    elevation_deg: npt.ArrayLike,
    weather: Weather,
    observatory: Observatory,
) -> npt.NDArray[np.float64] | np.float64:
    """Atmospheric refraction of light of one wavelength at one elevation (Stone 1996).

    ``R = κ (n − 1) (1 − β) tan z − κ (n − 1) (β − (n − 1)/2) tan³ z``: the
    two-term expansion of Stone (1996, Sect. 2), with ``κ`` from Eq. 10,
    ``β = 0.001254 · T/273.15``, and ``n − 1`` from Eqs. 14-16, 18 and 20 (see
    the module docstring). The elevation is the observed (refracted) one, as a
    telescope reports it; at the zenith distances where the formula is
    accurate the difference from the unrefracted elevation changes ``R`` by
    less than a part in a thousand.

    Parameters
    ----------
    wavelength_nm : array_like
        Vacuum wavelength, nm, within [:data:`MIN_WAVELENGTH_NM`,
        :data:`MAX_WAVELENGTH_NM`].
    elevation_deg : array_like
        Elevation (altitude) of the source above the horizon, degrees, in
        (0, 90]. Broadcast against ``wavelength_nm``.
    weather : Weather
        Temperature (°C), pressure (Pa) and relative humidity (%) at the
        observatory.
    observatory : Observatory
        Site; its latitude (degrees) and height (m) set the local gravity.

    Returns
    -------
    ndarray or float
        Refraction, radians, positive: the source appears higher by this much.
        Shaped as the broadcast of the inputs (a float for scalar inputs).

    Raises
    ------
    ValueError
        If a wavelength lies outside the range where the dispersion formula is
        valid, an elevation outside (0, 90] degrees, or the weather is
        unphysical; the message names the offending value.
    """
    wavelength = _checked_wavelength_nm(wavelength_nm)
    elevation = _checked_elevation_deg(elevation_deg)
    _check_weather(weather)
    gamma = _refractivity(wavelength, weather)
    temperature_k = weather.temperature_c + _ZERO_CELSIUS_K
    # Height of the isothermal atmosphere over the radius of the Earth (Stone 1996, Sect. 2).
    beta = 0.001254 * temperature_k / _ZERO_CELSIUS_K
    kappa = _gravity_ratio(observatory.latitude_deg, observatory.elevation_m)
    tan_z = np.tan(np.radians(90.0 - elevation))
    result = kappa * gamma * ((1.0 - beta) * tan_z - (beta - gamma / 2.0) * tan_z**3)
    return result[()]


def differential_refraction_rad(
    wavelength_nm: npt.ArrayLike,
    reference_wavelength_nm: npt.ArrayLike,
    elevation_deg: npt.ArrayLike,
    weather: Weather,
    observatory: Observatory,
) -> npt.NDArray[np.float64] | np.float64:
    """Refraction at one wavelength minus the refraction at a reference wavelength.

    Air is more refractive for blue light, so the result is positive for
    ``wavelength_nm < reference_wavelength_nm``: blue light appears closer to
    the zenith than light at the reference wavelength.

    Parameters
    ----------
    wavelength_nm : array_like
        Vacuum wavelength, nm, within [:data:`MIN_WAVELENGTH_NM`,
        :data:`MAX_WAVELENGTH_NM`].
    reference_wavelength_nm : array_like
        Reference vacuum wavelength (usually the effective wavelength of the
        band), nm, within the same range.
    elevation_deg : array_like
        Observed elevation of the source, degrees, in (0, 90].
    weather : Weather
        Conditions at the observatory.
    observatory : Observatory
        Site of the telescope.

    Returns
    -------
    ndarray or float
        ``R(λ) − R(λ_ref)``, radians, shaped as the broadcast of the inputs.

    Raises
    ------
    ValueError
        As :func:`refraction_rad`, for either wavelength or the elevation.
    """
    # A numpy scalar takes [()] (it returns its value), but numpy's stubs declare no
    # __getitem__ on np.float64.
    return (
        refraction_rad(wavelength_nm, elevation_deg, weather, observatory)
        - refraction_rad(reference_wavelength_nm, elevation_deg, weather, observatory)
    )[()]  # type: ignore[index]


def _refractivity(wavelength_nm: np.ndarray, weather: Weather) -> np.ndarray:
    """Refractivity ``n − 1`` of moist air (Stone 1996, Eqs. 14-16; Owens 1967).

    Parameters
    ----------
    wavelength_nm : ndarray
        Vacuum wavelength, nm.
    weather : Weather
        Temperature, total pressure and relative humidity.

    Returns
    -------
    ndarray
        ``n − 1`` (dimensionless), shaped as ``wavelength_nm``.
    """
    temperature_k = weather.temperature_c + _ZERO_CELSIUS_K
    water_mbar = _water_vapour_pressure_mbar(weather.temperature_c, weather.humidity_pct)
    dry_mbar = weather.pressure_pa / _PA_PER_MBAR - water_mbar
    # Density factors of dry air (Eq. 15) and of water vapour (Eq. 16).
    dry_density = (dry_mbar / temperature_k) * (
        1.0 + dry_mbar * (57.90e-8 - 9.3250e-4 / temperature_k + 0.25844 / temperature_k**2)
    )
    water_density = (water_mbar / temperature_k) * (
        1.0
        + water_mbar
        * (1.0 + 3.7e-4 * water_mbar)
        * (
            -2.37321e-3
            + 2.23366 / temperature_k
            - 710.792 / temperature_k**2
            + 7.75141e4 / temperature_k**3
        )
    )
    # Dispersion of the two components, with the wavenumber in inverse microns (Eq. 14).
    sigma2 = (1.0e3 / wavelength_nm) ** 2
    dry_term = 2371.34 + 683939.7 / (130.0 - sigma2) + 4547.3 / (38.9 - sigma2)
    water_term = 6487.31 + sigma2 * (58.058 + sigma2 * (-0.71150 + sigma2 * 0.08851))
    return (dry_term * dry_density + water_term * water_density) * 1.0e-8


def _water_vapour_pressure_mbar(temperature_c: float, humidity_pct: float) -> float:
    """Partial pressure of water vapour from temperature and relative humidity.

    The dew point follows from the relative humidity (Stone 1996, Eq. 20) and
    the vapour pressure from the dew point (Eq. 18, a polynomial in mmHg).

    Parameters
    ----------
    temperature_c : float
        Air temperature, degrees Celsius.
    humidity_pct : float
        Relative humidity, percent.

    Returns
    -------
    float
        Water vapour pressure, millibars (hPa); 0 for dry air.
    """
    if humidity_pct == 0.0:
        return 0.0
    x = math.log(humidity_pct / 100.0)
    a = 17.2694
    b = 238.3
    dew_point_c = (
        b
        * ((temperature_c + b) * x + a * temperature_c)
        / ((temperature_c + b) * (a - x) - a * temperature_c)
    )
    t = dew_point_c
    pressure_mmhg = 4.50874 + t * (
        0.341724 + t * (0.0106778 + t * (0.184889e-3 + t * (0.238294e-5 + t * 0.203447e-7)))
    )
    return pressure_mmhg * _PA_PER_MMHG / _PA_PER_MBAR


def _gravity_ratio(latitude_deg: float, height_m: float) -> float:
    """Local gravity relative to that at sea level on the equator, κ (Stone 1996, Eq. 10).

    Parameters
    ----------
    latitude_deg : float
        Geodetic latitude, degrees.
    height_m : float
        Height above sea level, metres.

    Returns
    -------
    float
        κ, dimensionless, close to 1.
    """
    phi = math.radians(latitude_deg)
    return (
        1.0
        + 0.005302 * math.sin(phi) ** 2
        - 0.00000583 * math.sin(2.0 * phi) ** 2
        - 0.000000315 * height_m
    )


def _checked_wavelength_nm(wavelength_nm: npt.ArrayLike) -> np.ndarray:
    """Wavelengths as a float array, refusing those outside Stone's range."""
    wavelength = np.asarray(wavelength_nm, dtype=float)
    bad = ~((wavelength >= MIN_WAVELENGTH_NM) & (wavelength <= MAX_WAVELENGTH_NM))
    if np.any(bad):
        raise ValueError(
            f"wavelength {_first_values(wavelength[bad])} nm is outside "
            f"{MIN_WAVELENGTH_NM:g}-{MAX_WAVELENGTH_NM:g} nm, the range where the refraction "
            "formula of Stone (1996) is valid"
        )
    return wavelength


def _checked_elevation_deg(elevation_deg: npt.ArrayLike) -> np.ndarray:
    """Elevations as a float array, refusing those outside (0, 90] degrees."""
    elevation = np.asarray(elevation_deg, dtype=float)
    bad = ~((elevation > 0.0) & (elevation <= 90.0))
    if np.any(bad):
        raise ValueError(f"elevation {_first_values(elevation[bad])} deg is outside (0, 90] deg")
    return elevation


def _first_values(values: np.ndarray) -> str:
    """The first few distinct values of an array, for an error message."""
    return ", ".join(f"{value:g}" for value in np.unique(values)[:5])


def _check_weather(weather: Weather) -> None:
    """Refuse weather that no atmosphere has."""
    if not weather.temperature_c > -_ZERO_CELSIUS_K:
        raise ValueError(f"air temperature {weather.temperature_c!r} °C is below absolute zero")
    if not (math.isfinite(weather.pressure_pa) and weather.pressure_pa >= 0.0):
        raise ValueError(f"air pressure {weather.pressure_pa!r} Pa must be finite and >= 0")
    if not 0.0 <= weather.humidity_pct <= 100.0:
        raise ValueError(f"relative humidity {weather.humidity_pct!r} % is outside [0, 100] %")
