"""Visit metadata in FITS headers: parse and validate, and write back.

The primary header of a warp carries the visit metadata
(docs/file-formats.md, "Visit keywords"), with afw's VisitInfo keyword names.
:func:`check_visit_header` reads them into a :class:`~dcr_dask.visit.VisitInfo`
and collects *every* problem it finds; :func:`parse_visit_header` raises them.
:func:`visit_to_header` is the inverse, for writers and the simulator.

Time and Earth rotation angle
-----------------------------
The geometry needs only the Earth rotation angle (ERA) at mid-exposure. It is
read from ``AVG-ERA`` when present; otherwise it is computed from the UT1 time
with the IAU 2000 formula (``erfa.era00``). The UT1 time is ``MJD-AVG-UT1``
when present, else ``DATE-AVG`` (in the ``TIMESYS`` scale; TAI when absent, as
afw writes it) converted to UTC and corrected by UT1-UTC from the IERS-A table
bundled with astropy. No IERS file is ever downloaded: for dates the bundled
table does not cover, UT1 is taken equal to UTC. That error is below 0.9 s of
time (UT1-UTC is kept within 0.9 s by leap seconds), i.e. below 14 arcsec of
ERA, far below what matters for refraction.

:attr:`VisitInfo.mjd <dcr_dask.visit.VisitInfo.mjd>` is always a UT1 MJD,
whichever keyword it came from, so that ``visit_to_header`` writes back
exactly what was read.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeGuard

import erfa
import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.utils import iers

from dcr_dask.errors import InputError, raise_collected
from dcr_dask.physics import geometry, refraction
from dcr_dask.visit import Observatory, VisitInfo, Weather

log = logging.getLogger(__name__)

__all__ = [
    "BAND_KEYS",
    "PHYSICAL_FILTER_KEYS",
    "VISIT_KEYS",
    "check_visit_header",
    "parse_visit_header",
    "visit_to_header",
]

#: Time scales accepted in ``TIMESYS`` (FITS names); converted without IERS data.
_TIMESYS = ("TAI", "UTC", "TT", "UT1")

# Physical ranges of the visit keywords (docs/file-formats.md, "Visit keywords"). Each is
# wide enough for any real visit; what lies outside is a wrong unit or a broken writer.

#: An angle that wraps (``BORE-RA``, ``BORE-AZ``, ``AVG-ERA``, ``OBS-LONG``), degrees: any
#: value means the same modulo 360 (afw normalises them), but a number beyond one turn
#: either way is not in degrees.
_TURN_DEG = 360.0

#: Mid-exposure time, UT1 MJD: 1950-01-01 to 2100-01-01. Outside lie a JD given as an MJD
#: (2.46e6), a zero MJD (1858) or seconds since an epoch.
_MJD_RANGE = (33282.0, 88069.0)

#: Observatory elevation, metres: the lowest dry land (the Dead Sea shore, -430 m) to the
#: top of the standard atmosphere's troposphere (excluded), where the weather defaults end.
_MIN_ELEVATION_M = -500.0

#: Air temperature, degrees Celsius: beyond any weather on Earth (-89 to 57 degC); a
#: temperature in kelvin (above 173 K for air) falls above it.
_AIRTEMP_RANGE_C = (-100.0, 100.0)

#: Air pressure, pascals: from about 16 km up (the standard atmosphere's 10 kPa) to above
#: the highest sea-level record (108.5 kPa); a pressure in hPa or mbar falls below it.
_AIRPRESS_RANGE_PA = (10_000.0, 120_000.0)

#: Largest magnitude of a photometric zero point: its sign depends on the flux unit
#: (about 31.4 for nJy, 0 for maggies, -48.6 for erg/s/cm2/Hz), but beyond 100 mag (a flux
#: ratio of 1e40) the number is not a zero point, e.g. a flux scale such as ``FLUXMAG0``.
_MAGZERO_LIMIT = 100.0

_MJD_EXPECT = (
    f"a mid-exposure time between 1950 and 2100 (MJD {_MJD_RANGE[0]:.0f} to "
    f"{_MJD_RANGE[1]:.0f}; a Julian date is not an MJD)"
)


def _in_turn(value: float) -> bool:
    return -_TURN_DEG <= value <= _TURN_DEG


def _mjd_in_range(mjd: float) -> bool:
    return _MJD_RANGE[0] <= mjd <= _MJD_RANGE[1]


def _is_number(value: object) -> TypeGuard[float | np.integer | np.floating]:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _is_int(value: object) -> TypeGuard[int | np.integer]:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


class _HeaderReader:
    """Typed access to one header that records problems instead of raising."""

    def __init__(self, header: Mapping[str, Any], filename: str):
        self.header = header
        self.filename = filename
        self.errors: list[InputError] = []

    def error(self, keyword: str | None, message: str) -> None:
        self.errors.append(InputError(message, filename=self.filename, keyword=keyword))

    def has(self, key: str) -> bool:
        return key in self.header

    def _value(self, key: str, required: bool) -> object | None:
        if key not in self.header:
            if required:
                self.error(key, "required keyword is missing")
            return None
        try:
            value = self.header[key]
        except (fits.VerifyError, ValueError) as exc:  # a card astropy cannot parse
            self.error(key, f"the header card cannot be parsed as FITS: {exc}")
            return None
        if value is None or isinstance(value, fits.card.Undefined):
            self.error(key, "keyword has no value")
            return None
        return value

    def number(
        self,
        key: str,
        *,
        required: bool = False,
        check: Callable[[float], bool] | None = None,
        expect: str = "",
    ) -> float | None:
        """A finite float; ``check`` and ``expect`` state an allowed range."""
        value = self._value(key, required)
        if value is None:
            return None
        if not _is_number(value):
            self.error(key, f"expected a number, got {type(value).__name__} {value!r}")
            return None
        number = float(value)
        if not math.isfinite(number):
            self.error(key, f"value {value!r} is not finite")
            return None
        if check is not None and not check(number):
            self.error(key, f"value {value!r} is outside the allowed range: {expect}")
            return None
        return number

    def integer(self, key: str, *, required: bool = False) -> int | None:
        value = self._value(key, required)
        if value is None:
            return None
        if not _is_int(value):
            self.error(key, f"expected an integer, got {type(value).__name__} {value!r}")
            return None
        return int(value)

    def string(self, key: str, *, required: bool = False, nonempty: bool = False) -> str | None:
        value = self._value(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.error(key, f"expected a string, got {type(value).__name__} {value!r}")
            return None
        value = value.strip()
        if nonempty and not value:
            self.error(key, "value is an empty string")
            return None
        return value


@functools.lru_cache(maxsize=1)
def _bundled_iers_a() -> iers.IERS_A:
    """The IERS-A table shipped with astropy (never downloaded)."""
    return iers.IERS_A.open(iers.IERS_A_FILE)


def _ut1_minus_utc_s(utc: Time) -> float:
    """UT1-UTC from the bundled IERS-A table, or 0 s where it has no value.

    Parameters
    ----------
    utc : astropy.time.Time
        A scalar time in the UTC scale.

    Returns
    -------
    float
        UT1-UTC, seconds; 0 (error below 0.9 s) outside the table.
    """
    dut1, status = _bundled_iers_a().ut1_utc(utc, return_status=True)
    if int(status) < 0:
        log.debug("UT1-UTC unknown at MJD %.5f (no IERS download); using UT1 = UTC", utc.mjd)
        return 0.0
    return float(dut1.to_value("s"))


def _ut1_mjd_from_date(date: str, timesys: str) -> float:
    """UT1 MJD of an ISO-8601 date in a FITS time scale."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        time = Time(date, format="fits", scale=timesys.lower())
        if timesys == "UT1":
            return float(time.mjd)
        utc = time.utc
        return float(utc.mjd) + _ut1_minus_utc_s(utc) / 86400.0


def _date_from_ut1_mjd(mjd_ut1: float) -> str:
    """TAI ISO-8601 date of a UT1 MJD (the inverse of :func:`_ut1_mjd_from_date`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        guess = Time(mjd_ut1, format="mjd", scale="utc")
        utc = Time(mjd_ut1 - _ut1_minus_utc_s(guess) / 86400.0, format="mjd", scale="utc")
        return str(utc.tai.isot)


def _era_deg(mjd_ut1: float) -> float:
    """Earth rotation angle (IAU 2000, ``erfa.era00``) of a UT1 MJD, degrees in [0, 360)."""
    return float(np.degrees(erfa.era00(2400000.5, mjd_ut1)))


def _date_in_range(reader: _HeaderReader, key: str, date: str, mjd: float) -> float | None:
    """``mjd`` (of the date ``date`` read from ``key``) if it is in range, else None and an
    error."""
    if _mjd_in_range(mjd):
        return mjd
    reader.error(
        key, f"value {date!r} (UT1 MJD {mjd:.3f}) is outside the allowed range: " + _MJD_EXPECT
    )
    return None


def _read_time(reader: _HeaderReader) -> tuple[float | None, float | None]:
    """Return ``(mjd_ut1, era_deg)``; the ERA is computed from the time if not given."""
    n_errors = len(reader.errors)
    mjd = reader.number("MJD-AVG-UT1", check=_mjd_in_range, expect=_MJD_EXPECT)
    era = reader.number("AVG-ERA", check=_in_turn, expect="[-360, 360] deg")
    date = reader.string("DATE-AVG", nonempty=True)
    date_mjd = None
    if date is not None:
        timesys = reader.string("TIMESYS")
        if date.endswith("Z"):
            date = date[:-1]
            timesys = timesys or "UTC"
        timesys = (timesys or "TAI").upper()
        if timesys not in _TIMESYS:
            reader.error("TIMESYS", f"time scale {timesys!r} is not one of {', '.join(_TIMESYS)}")
        else:
            try:
                date_mjd = _ut1_mjd_from_date(date, timesys)
            except (ValueError, TypeError) as exc:
                reader.error("DATE-AVG", f"cannot parse {date!r} as an ISO-8601 date: {exc}")
            else:
                date_mjd = _date_in_range(reader, "DATE-AVG", date, date_mjd)
    if mjd is None:
        mjd = date_mjd
    present = ("MJD-AVG-UT1", "AVG-ERA", "DATE-AVG")
    if mjd is None and era is None and not any(reader.has(key) for key in present):
        # afw's last resort (files before 2017): TIME-MID, in UTC whatever TIMESYS says.
        mid = reader.string("TIME-MID", nonempty=True)
        if mid is not None:
            try:
                mjd = _ut1_mjd_from_date(mid[:-1] if mid.endswith("Z") else mid, "UTC")
            except (ValueError, TypeError) as exc:
                reader.error("TIME-MID", f"cannot parse {mid!r} as an ISO-8601 date: {exc}")
            else:
                mjd = _date_in_range(reader, "TIME-MID", mid, mjd)
    ok = len(reader.errors) == n_errors
    if ok and mjd is None and era is None and not any(reader.has(key) for key in present):
        reader.error(
            "DATE-AVG/MJD-AVG-UT1",
            "required keyword is missing: the mid-exposure time needs DATE-AVG (+ TIMESYS) "
            "or MJD-AVG-UT1 (or AVG-ERA, or TIME-MID in UTC)",
        )
        ok = False
    if ok and era is None and mjd is not None:
        era = _era_deg(mjd)
    return mjd, era


def _read_pointing(
    reader: _HeaderReader,
    era: float | None,
    ra: float | None,
    dec: float | None,
    longitude: float | None,
    latitude: float | None,
) -> tuple[float | None, float | None]:
    """Return ``(altitude_deg, airmass)``, each derived from the other if absent.

    afw writes ``BORE-ALT`` and ``BORE-AIRMASS`` only when they are finite; when
    both are absent the (geometric) altitude follows from the hour angle, the
    declination and the latitude.
    """
    alt = reader.number(
        "BORE-ALT", check=lambda v: 0.0 < v <= 90.0, expect="altitude must be in (0, 90] deg"
    )
    airmass = reader.number("BORE-AIRMASS", check=lambda v: v >= 1.0, expect="airmass must be >= 1")
    has_alt, has_airmass = reader.has("BORE-ALT"), reader.has("BORE-AIRMASS")
    if not has_alt and not has_airmass:
        if era is None or ra is None or dec is None or longitude is None or latitude is None:
            return None, None  # the missing time, pointing or site is reported already
        hour_angle = geometry.hour_angle_deg(era, longitude, ra)
        alt = float(geometry.altitude_deg(hour_angle, dec, latitude))
        if not 0.0 < alt <= 90.0:
            reader.error(
                "BORE-ALT/BORE-AIRMASS",
                f"absent, and the altitude computed from the hour angle {hour_angle:.3f} deg, "
                f"BORE-DEC and OBS-LAT is {alt:.3f} deg, below the horizon",
            )
            return None, None
        return alt, float(geometry.airmass_from_altitude(alt))
    if alt is None and airmass is not None and not has_alt:
        alt = float(geometry.elevation_from_airmass(airmass))
    if airmass is None and alt is not None and not has_airmass:
        airmass = float(geometry.airmass_from_altitude(alt))
    return alt, airmass


#: Keywords of the visit id, in the order they are used: the Butler's data id, afw's
#: VisitInfo id (since 2021), ``VISIT``, and ``EXPID`` (afw's exposure id until 2023,
#: which for some cameras is a per-detector id).
VISIT_KEYS = ("LSST BUTLER DATAID VISIT", "IDNUM", "VISIT", "EXPID")

#: Keywords of the band, in the order they are used (the archive's ``FilterLabel`` band
#: comes after the first two, its physical filter last).
BAND_KEYS = ("BAND", "LSST BUTLER DATAID BAND")
PHYSICAL_FILTER_KEYS = ("FILTER", "LSST BUTLER DATAID PHYSICAL_FILTER")


def _read_visit_id(reader: _HeaderReader) -> tuple[int | None, str | None]:
    for key in VISIT_KEYS:
        if reader.has(key):
            return reader.integer(key), key
    reader.error(
        "EXPID/VISIT",
        f"required keyword is missing (give one of {', '.join(VISIT_KEYS)})",
    )
    return None, None


def _read_band(
    reader: _HeaderReader, filter_label: tuple[str | None, str | None]
) -> tuple[str | None, str | None]:
    label_band, label_physical = filter_label
    sources: list[tuple[str, str | None]] = [(key, None) for key in BAND_KEYS]
    sources.append(("FilterLabel band", label_band))
    sources += [(key, None) for key in PHYSICAL_FILTER_KEYS]
    sources.append(("FilterLabel physical", label_physical))
    for key, value in sources:
        if key.startswith("FilterLabel"):
            if value:
                return value, f"archive {key}"
        elif reader.has(key):
            return reader.string(key, nonempty=True), key
    reader.error(
        "FILTER/BAND",
        "required keyword is missing (give one of "
        f"{', '.join(BAND_KEYS + PHYSICAL_FILTER_KEYS)}, or a FilterLabel in the afw archive)",
    )
    return None, None


def _read_boresight(
    reader: _HeaderReader,
) -> tuple[float | None, float | None, float | None, float | None, str | None]:
    """Read ``BORE-RA``, ``BORE-DEC`` (required), ``BORE-AZ``, ``BORE-ROTANG``, ``ROTTYPE``."""
    ra = reader.number("BORE-RA", required=True, check=_in_turn, expect="[-360, 360] deg")
    dec = reader.number(
        "BORE-DEC", required=True, check=lambda v: -90.0 <= v <= 90.0, expect="[-90, 90] deg"
    )
    az = reader.number("BORE-AZ", check=_in_turn, expect="[-360, 360] deg")
    rotang = reader.number("BORE-ROTANG")
    rottype = reader.string("ROTTYPE")
    return ra, dec, az, rotang, rottype


def _read_site_position(reader: _HeaderReader) -> tuple[float | None, float | None]:
    """Read the required ``OBS-LONG`` and ``OBS-LAT`` (deg)."""
    longitude = reader.number("OBS-LONG", required=True, check=_in_turn, expect="[-360, 360] deg")
    latitude = reader.number(
        "OBS-LAT", required=True, check=lambda v: -90.0 <= v <= 90.0, expect="[-90, 90] deg"
    )
    return longitude, latitude


def _read_weather(reader: _HeaderReader) -> tuple[float | None, float | None, float | None]:
    """Read the optional ``AIRTEMP`` (degC), ``AIRPRESS`` (Pa) and ``HUMIDITY`` (%)."""
    low_c, high_c = _AIRTEMP_RANGE_C
    temperature = reader.number(
        "AIRTEMP",
        check=lambda v: low_c <= v <= high_c,
        expect=f"[{low_c:.0f}, {high_c:.0f}] degC (air temperature in Celsius, not kelvin)",
    )
    low_pa, high_pa = _AIRPRESS_RANGE_PA
    pressure = reader.number(
        "AIRPRESS",
        check=lambda v: low_pa <= v <= high_pa,
        expect=f"[{low_pa:.0f}, {high_pa:.0f}] Pa (air pressure in pascals, not hPa or mbar)",
    )
    humidity = reader.number("HUMIDITY", check=lambda v: 0.0 <= v <= 100.0, expect="[0, 100] %")
    return temperature, pressure, humidity


def _read_psf_and_zero_point(reader: _HeaderReader) -> tuple[float | None, float | None]:
    """Read the optional ``PSF-FWHM`` (pixels) and ``MAGZERO`` (mag)."""
    psf_fwhm = reader.number("PSF-FWHM", check=lambda v: v > 0.0, expect="> 0 pixel")
    magzero = reader.number(
        "MAGZERO",
        check=lambda v: abs(v) <= _MAGZERO_LIMIT,
        expect=f"[-{_MAGZERO_LIMIT:.0f}, {_MAGZERO_LIMIT:.0f}] mag (a zero point in magnitudes)",
    )
    return psf_fwhm, magzero


def check_visit_header(
    header: Mapping[str, Any],
    filename: str | Path,
    *,
    filter_label: tuple[str | None, str | None] = (None, None),
) -> tuple[VisitInfo | None, list[InputError]]:
    """Read and validate the visit metadata of a primary header.

    Parameters
    ----------
    header : mapping
        The primary header (an :class:`astropy.io.fits.Header` or any mapping
        of keyword to value).
    filename : str or Path
        The file the header came from; it names the culprit in messages and is
        recorded in :attr:`VisitInfo.filename`.
    filter_label : tuple of (str or None)
        ``(band, physical)`` of the file's afw ``FilterLabel`` archive entry,
        used when no band keyword is present.

    Returns
    -------
    visit : VisitInfo or None
        The metadata, or None if there was any problem.
    errors : list of InputError
        Every problem found, each naming the file and the keyword.

    Notes
    -----
    Required: the visit id (int), the first present of :data:`VISIT_KEYS`
    (recorded in :attr:`VisitInfo.visit_source`); the band (str): ``BAND``,
    ``LSST BUTLER DATAID BAND``, the FilterLabel band, ``FILTER``,
    ``LSST BUTLER DATAID PHYSICAL_FILTER``, the FilterLabel physical filter,
    the first present (:attr:`VisitInfo.band_source`); ``BORE-RA``,
    ``BORE-DEC`` (deg), ``OBS-LONG``, ``OBS-LAT`` (deg), ``OBS-ELEV`` (m); the
    time: ``MJD-AVG-UT1`` (d), else ``DATE-AVG`` (+ ``TIMESYS``, default TAI),
    else ``TIME-MID`` (UTC), or at least ``AVG-ERA`` (deg). ``BORE-ALT`` (deg,
    in (0, 90]) and ``BORE-AIRMASS`` (>= 1) each follow from the other; when
    both are absent (afw writes them only when finite) the geometric altitude
    is computed from the hour angle, ``BORE-DEC`` and ``OBS-LAT``. Numbers must
    be finite ints or floats (not strings, not booleans), within the physical
    ranges of docs/file-formats.md, "Visit keywords". Missing weather
    (``AIRTEMP`` degC, ``AIRPRESS`` Pa, ``HUMIDITY`` %) is filled in by
    :func:`dcr_dask.physics.refraction.default_weather`.
    """
    name = str(filename)
    reader = _HeaderReader(header, name)

    visit, visit_source = _read_visit_id(reader)
    band, band_source = _read_band(reader, filter_label)
    exptime = reader.number("EXPTIME", check=lambda v: v >= 0.0, expect="must be >= 0 s")
    mjd, era = _read_time(reader)
    ra, dec, az, rotang, rottype = _read_boresight(reader)
    longitude, latitude = _read_site_position(reader)
    alt, airmass = _read_pointing(reader, era, ra, dec, longitude, latitude)
    elevation = reader.number(
        "OBS-ELEV",
        required=True,
        check=lambda v: _MIN_ELEVATION_M <= v < refraction.MAX_ELEVATION_M,
        expect=f"[{_MIN_ELEVATION_M:.0f}, {refraction.MAX_ELEVATION_M:.0f}) m above sea level",
    )
    temperature, pressure, humidity = _read_weather(reader)
    psf_fwhm, magzero = _read_psf_and_zero_point(reader)

    if reader.errors:
        return None, reader.errors
    assert visit is not None and band is not None and era is not None
    assert ra is not None and dec is not None and alt is not None and airmass is not None
    assert longitude is not None and latitude is not None and elevation is not None
    weather: Weather = refraction.default_weather(
        elevation,
        temperature_c=temperature,
        pressure_pa=pressure,
        humidity_pct=humidity,
    )
    info = VisitInfo(
        visit=visit,
        band=band,
        observatory=Observatory(longitude, latitude, elevation),
        weather=weather,
        era_deg=era,
        boresight_ra_deg=ra,
        boresight_dec_deg=dec,
        boresight_alt_deg=alt,
        boresight_airmass=airmass,
        mjd=mjd,
        boresight_az_deg=az,
        exptime_s=exptime,
        rotang_deg=rotang,
        rottype=rottype,
        psf_fwhm_px=psf_fwhm,
        psf_source="PSF-FWHM" if psf_fwhm is not None else None,
        magzero=magzero,
        filename=name,
        visit_source=visit_source,
        band_source=band_source,
    )
    return info, []


def parse_visit_header(header: Mapping[str, Any], filename: str | Path) -> VisitInfo:
    """Read and validate the visit metadata of a primary header, or raise.

    Parameters
    ----------
    header : mapping
        The primary header.
    filename : str or Path
        The file the header came from, for messages.

    Returns
    -------
    VisitInfo
        The validated metadata, with missing optional values filled in.

    Raises
    ------
    InputError
        If there is one problem; it names the file and the keyword.
    InputErrors
        If there are several; all of them are listed.

    See Also
    --------
    check_visit_header : the same, returning the problems instead.
    """
    info, errors = check_visit_header(header, filename)
    raise_collected(errors)
    assert info is not None
    return info


def visit_to_header(visit: VisitInfo) -> fits.Header:
    """Write the visit metadata as afw-style primary-header keywords.

    Parameters
    ----------
    visit : VisitInfo
        The metadata.

    Returns
    -------
    astropy.io.fits.Header
        ``EXPID``, ``FILTER``, the time (``MJD-AVG-UT1`` and a derived TAI
        ``DATE-AVG`` when :attr:`VisitInfo.mjd` is known, and ``AVG-ERA``),
        pointing, site, the weather keywords that were *not* defaulted, and
        the optional keywords that are known. Parsing it with
        :func:`parse_visit_header` gives ``visit`` back (except
        :attr:`VisitInfo.filename` and :attr:`VisitInfo.bunit`, which live
        outside the primary header). Floats are exact whenever astropy can
        write their shortest repr (20 characters at most).
    """
    header = fits.Header()
    header["EXPID"] = (int(visit.visit), "visit identifier")
    header["FILTER"] = (visit.band, "filter / band name")
    optional: list[tuple[str, float | str | None, str]] = [
        ("EXPTIME", visit.exptime_s, "exposure time (s)"),
    ]
    if visit.mjd is not None:
        header["DATE-AVG"] = (_date_from_ut1_mjd(visit.mjd), "TAI date at middle of observation")
        header["TIMESYS"] = "TAI"
    optional += [
        ("MJD-AVG-UT1", visit.mjd, "UT1 MJD date at ctr of obs"),
        ("AVG-ERA", visit.era_deg, "Earth rot ang at ctr of obs (deg)"),
        ("BORE-RA", visit.boresight_ra_deg, "ICRS RA (deg) at boresight"),
        ("BORE-DEC", visit.boresight_dec_deg, "ICRS Dec (deg) at boresight"),
        ("BORE-AZ", visit.boresight_az_deg, "Refr app topo az (deg) at bore"),
        ("BORE-ALT", visit.boresight_alt_deg, "Refr app topo alt (deg) at bore"),
        ("BORE-AIRMASS", visit.boresight_airmass, "Airmass at boresight"),
        ("BORE-ROTANG", visit.rotang_deg, "Rotation angle (deg) at boresight"),
        ("ROTTYPE", visit.rottype, "Type of rotation angle"),
        ("OBS-LONG", visit.observatory.longitude_deg, "Telescope longitude (+E, deg)"),
        ("OBS-LAT", visit.observatory.latitude_deg, "Telescope latitude (deg)"),
        ("OBS-ELEV", visit.observatory.elevation_m, "Telescope elevation (m)"),
    ]
    weather = visit.weather
    value: float | str | None
    for key, value, comment in (
        ("AIRTEMP", weather.temperature_c, "Outside air temperature (C)"),
        ("AIRPRESS", weather.pressure_pa, "Outdoor air pressure (Pa)"),
        ("HUMIDITY", weather.humidity_pct, "Relative humidity (%)"),
    ):
        if key not in weather.defaulted:
            optional.append((key, value, comment))
    optional += [
        ("PSF-FWHM", visit.psf_fwhm_px, "PSF FWHM (pixel)"),
        ("MAGZERO", visit.magzero, "photometric zero point (mag)"),
    ]
    for key, value, comment in optional:
        if value is not None:
            card = f"HIERARCH {key}" if len(key) > 8 else key
            header[card] = (float(value) if _is_number(value) else value, comment)
    return header
