"""Visit metadata: parsing, validation (every problem named) and writing back."""

import math

import erfa
import numpy as np
import pytest
from astropy.time import Time
from astropy.utils import iers

from dcr_dask.errors import InputError, InputErrors
from dcr_dask.io.metadata import check_visit_header, parse_visit_header, visit_to_header
from dcr_dask.physics import geometry
from dcr_dask.visit import Observatory, VisitInfo, Weather

FILE = "visit_7.fits"


def _astropy_era_deg(time: Time) -> float:
    """ERA from astropy with its bundled IERS tables only (no download)."""
    with iers.conf.set_temp("auto_download", False), iers.conf.set_temp("auto_max_age", None):
        return float(time.earth_rotation_angle(0.0).deg)


def _single_error(header, keyword):
    with pytest.raises(InputError) as info:
        parse_visit_header(header, FILE)
    assert FILE in str(info.value)
    assert keyword in str(info.value)
    assert info.value.filename == FILE
    return info.value


def test_valid_header_is_read(visit_header):
    visit = parse_visit_header(visit_header(7), FILE)
    assert visit.visit == 7
    assert visit.band == "g"
    assert visit.exptime_s == 30.0
    assert visit.boresight_ra_deg == 150.0 and visit.boresight_dec_deg == -30.0
    assert visit.boresight_alt_deg == 60.0 and visit.boresight_airmass == 1.1547
    assert visit.boresight_az_deg == 120.0
    assert visit.observatory == Observatory(-70.749417, -30.244639, 2663.0)
    assert visit.weather == Weather(10.0, 74000.0, 20.0, ())
    assert visit.filename == FILE
    assert visit.rotang_deg is None and visit.magzero is None


def test_era_from_tai_date_matches_astropy(visit_header):
    visit = parse_visit_header(visit_header(), FILE)
    expected = _astropy_era_deg(Time("2024-03-01T05:00:00", scale="tai"))
    assert visit.era_deg == pytest.approx(expected, abs=1e-6)
    assert visit.mjd == pytest.approx(Time("2024-03-01T05:00:00", scale="tai").ut1.mjd, abs=1e-9)


def test_era_from_utc_date_and_from_ut1_mjd(visit_header):
    utc = parse_visit_header(
        visit_header(changes={"DATE-AVG": "2023-07-01T01:02:03.5", "TIMESYS": "UTC"}), FILE
    )
    assert utc.era_deg == pytest.approx(
        _astropy_era_deg(Time("2023-07-01T01:02:03.5", scale="utc")), abs=1e-6
    )
    ut1 = parse_visit_header(
        visit_header(changes={"DATE-AVG": None, "MJD-AVG-UT1": 60100.25}), FILE
    )
    assert ut1.mjd == 60100.25
    assert ut1.era_deg == pytest.approx(
        _astropy_era_deg(Time(60100.25, format="mjd", scale="ut1")), abs=1e-8
    )


def test_date_beyond_iers_tables_uses_ut1_equal_utc(visit_header):
    visit = parse_visit_header(visit_header(changes={"DATE-AVG": "2095-06-01T00:00:00"}), FILE)
    with pytest.warns(erfa.ErfaWarning):
        utc = Time("2095-06-01T00:00:00", scale="tai").utc
    assert visit.mjd == pytest.approx(utc.mjd, abs=1e-9)


def test_avg_era_wins_and_alone_is_enough(visit_header):
    visit = parse_visit_header(visit_header(changes={"AVG-ERA": 12.5}), FILE)
    assert visit.era_deg == 12.5
    alone = parse_visit_header(visit_header(changes={"AVG-ERA": 12.5, "DATE-AVG": None}), FILE)
    assert alone.era_deg == 12.5 and alone.mjd is None


def test_altitude_and_airmass_complete_each_other(visit_header):
    from_airmass = parse_visit_header(visit_header(changes={"BORE-ALT": None}), FILE)
    assert from_airmass.boresight_alt_deg == pytest.approx(
        float(geometry.elevation_from_airmass(1.1547))
    )
    from_alt = parse_visit_header(visit_header(changes={"BORE-AIRMASS": None}), FILE)
    assert from_alt.boresight_airmass == pytest.approx(1 / math.sin(math.radians(60.0)))


def test_missing_weather_is_defaulted_and_recorded(visit_header):
    changes = {"AIRTEMP": None, "AIRPRESS": None, "HUMIDITY": None}
    visit = parse_visit_header(visit_header(changes=changes), FILE)
    assert visit.weather.defaulted == ("AIRTEMP", "AIRPRESS", "HUMIDITY")
    assert visit.weather.temperature_c == pytest.approx(15.0 - 6.5 * 2.663)
    assert visit.weather.humidity_pct == 40.0
    header = visit_to_header(visit)
    assert not {"AIRTEMP", "AIRPRESS", "HUMIDITY"} & set(header)


def test_band_and_visit_aliases(visit_header):
    visit = parse_visit_header(
        visit_header(changes={"EXPID": None, "VISIT": 9, "BAND": "r", "FILTER": "r_57"}), FILE
    )
    assert visit.visit == 9 and visit.band == "r"


def test_visit_to_header_round_trips(visit_header):
    visit = VisitInfo(
        visit=123456789012,
        band="i",
        observatory=Observatory(-70.7494, -30.2446, 2663.0),
        weather=Weather(5.25, 73500.0, 40.0, ("HUMIDITY",)),
        era_deg=201.123456789,
        boresight_ra_deg=10.123456789012,
        boresight_dec_deg=-45.5,
        boresight_alt_deg=48.75,
        boresight_airmass=1.3321,
        mjd=60400.123456789,
        boresight_az_deg=211.0,
        exptime_s=30.0,
        rotang_deg=-12.5,
        rottype="SKY",
        psf_fwhm_px=3.4,
        magzero=31.4,
        filename=FILE,
    )
    header = visit_to_header(visit)
    assert header["EXPID"] == 123456789012 and header["TIMESYS"] == "TAI"
    assert "HUMIDITY" not in header and header["AIRTEMP"] == 5.25
    assert parse_visit_header(header, FILE) == visit


def test_derived_date_matches_mjd(visit_header):
    visit = parse_visit_header(
        visit_header(changes={"DATE-AVG": None, "MJD-AVG-UT1": 60400.5}), FILE
    )
    header = visit_to_header(visit)
    del header["MJD-AVG-UT1"]
    del header["AVG-ERA"]
    again = parse_visit_header(header, FILE)
    assert abs(again.mjd - 60400.5) * 86400 < 1e-3


@pytest.mark.parametrize(
    ("removed", "named"),
    [
        (("EXPID",), "EXPID"),
        (("FILTER",), "FILTER"),
        (("BORE-RA",), "BORE-RA"),
        (("BORE-DEC",), "BORE-DEC"),
        (("OBS-LONG",), "OBS-LONG"),
        (("OBS-LAT",), "OBS-LAT"),
        (("OBS-ELEV",), "OBS-ELEV"),
        (("DATE-AVG",), "DATE-AVG"),
    ],
)
def test_missing_required_keyword(visit_header, removed, named):
    error = _single_error(visit_header(changes=dict.fromkeys(removed)), named)
    assert "missing" in str(error)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("EXPID", "seven"),
        ("EXPID", 7.0),
        ("EXPID", True),
        ("FILTER", 3),
        ("BORE-RA", "150.0"),
        ("OBS-ELEV", False),
        ("DATE-AVG", 60000.0),
    ],
)
def test_keyword_of_wrong_type(visit_header, key, value):
    error = _single_error(visit_header(changes={key: value}), key)
    assert "expected" in str(error)


@pytest.mark.parametrize("airmass", [0.99, 0.0, -1.0])
def test_airmass_below_one(visit_header, airmass):
    _single_error(visit_header(changes={"BORE-AIRMASS": airmass, "BORE-ALT": None}), "BORE-AIRMASS")


@pytest.mark.parametrize("altitude", [0.0, 95.0, -10.0])
def test_altitude_outside_range(visit_header, altitude):
    error = _single_error(visit_header(changes={"BORE-ALT": altitude}), "BORE-ALT")
    assert "(0, 90]" in str(error)


@pytest.mark.parametrize(
    ("key", "value"),
    [("OBS-LAT", 91.0), ("BORE-DEC", -90.5), ("HUMIDITY", 120.0), ("AIRPRESS", 0.0)],
)
def test_values_outside_range(visit_header, key, value):
    _single_error(visit_header(changes={key: value}), key)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("BORE-RA", 400.0),
        ("BORE-RA", -361.0),
        ("BORE-AZ", 1e4),
        ("AVG-ERA", 720.0),
        ("MJD-AVG-UT1", 2460371.5),  # a Julian date
        ("MJD-AVG-UT1", 0.0),
        ("DATE-AVG", "1858-11-17T00:00:00"),
        ("DATE-AVG", "2200-01-01T00:00:00"),
        ("OBS-ELEV", -501.0),
        ("OBS-ELEV", 11000.0),
        ("AIRTEMP", 283.15),  # kelvin
        ("AIRTEMP", -120.0),
        ("AIRPRESS", 743.0),  # hPa
        ("AIRPRESS", 2e5),
        ("MAGZERO", 6.3e10),  # a FLUXMAG0
        ("MAGZERO", -101.0),
    ],
)
def test_values_outside_physical_range_name_file_keyword_and_value(visit_header, key, value):
    error = _single_error(visit_header(changes={key: value}), key)
    assert error.keyword == key
    assert "outside the allowed range" in str(error)
    assert repr(value) in str(error)


def test_legitimate_values_at_the_edges_are_accepted(visit_header):
    edges = {
        "BORE-RA": 360.0,
        "BORE-AZ": -90.0,  # a mount's cable-wrapped azimuth
        "AVG-ERA": 0.0,
        "BORE-ALT": 90.0,
        "BORE-AIRMASS": 1.0,
        "OBS-ELEV": -430.0,  # the Dead Sea shore
        "AIRTEMP": -89.2,
        "AIRPRESS": 10_000.0,
        "HUMIDITY": 0.0,
        "MAGZERO": -48.6,  # erg/s/cm2/Hz
        "EXPTIME": 0.0,
    }
    visit = parse_visit_header(visit_header(changes=edges), FILE)
    assert visit.boresight_ra_deg == 360.0 and visit.boresight_az_deg == -90.0
    assert visit.boresight_alt_deg == 90.0 and visit.boresight_airmass == 1.0
    assert visit.observatory.elevation_m == -430.0 and visit.magzero == -48.6
    assert visit.weather.humidity_pct == 0.0 and visit.weather.defaulted == ()
    for date in ("1950-01-01T00:00:00", "2099-12-31T00:00:00"):
        assert parse_visit_header(visit_header(changes={"DATE-AVG": date}), FILE).mjd is not None


def test_range_problems_are_reported_together_with_the_others(visit_header):
    header = visit_header(
        changes={"EXPID": None, "BORE-RA": 400.0, "AIRPRESS": 743.0, "OBS-ELEV": 12000.0}
    )
    visit, errors = check_visit_header(header, FILE)
    assert visit is None
    assert {error.keyword for error in errors} == {"EXPID/VISIT", "BORE-RA", "AIRPRESS", "OBS-ELEV"}
    assert all(error.filename == FILE for error in errors)


@pytest.mark.parametrize(("key", "value"), [("BORE-DEC", math.nan), ("OBS-ELEV", math.inf)])
def test_non_finite_value(visit_header, key, value):
    header = dict(visit_header())
    header[key] = value
    error = _single_error(header, key)
    assert "not finite" in str(error)


def test_elevation_above_standard_atmosphere(visit_header):
    _single_error(visit_header(changes={"OBS-ELEV": 12000.0}), "OBS-ELEV")


def test_bad_time_keywords(visit_header):
    _single_error(visit_header(changes={"DATE-AVG": "yesterday"}), "DATE-AVG")
    _single_error(visit_header(changes={"TIMESYS": "LOCAL"}), "TIMESYS")


def test_all_problems_of_a_header_are_reported_together(visit_header):
    header = visit_header(
        changes={"EXPID": None, "BORE-ALT": 95.0, "OBS-LAT": "north", "FILTER": None}
    )
    visit, errors = check_visit_header(header, FILE)
    assert visit is None
    keywords = {error.keyword for error in errors}
    assert keywords == {"EXPID/VISIT", "BORE-ALT", "OBS-LAT", "FILTER/BAND"}
    with pytest.raises(InputErrors) as info:
        parse_visit_header(header, FILE)
    message = str(info.value)
    assert "4 problem(s)" in message
    for keyword in keywords:
        assert f"{FILE}: {keyword}" in message


def test_numpy_scalars_are_numbers(visit_header):
    header = dict(visit_header())
    header["BORE-RA"] = np.float32(150.0)
    header["EXPID"] = np.int64(7)
    visit = parse_visit_header(header, FILE)
    assert visit.visit == 7 and visit.boresight_ra_deg == 150.0
