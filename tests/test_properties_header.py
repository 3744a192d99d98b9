"""Property-based tests (hypothesis) of the visit-header parser of warps.

Valid visit metadata, written into a real FITS warp in each layout afw has written over
the years (tests/afw_layouts.py) and in dcr_dask's own (``write_warp``), reads back to the
same values; a single invalid, non-finite or missing keyword is refused with an
:class:`~dcr_dask.errors.InputError` naming the keyword and the file (never a raw
``KeyError``/``ValueError``/``TypeError``); cards the parser does not read change nothing.
The examples are fixed and bounded by the hypothesis profile of tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import math
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from afw_layouts import ERAS, write_afw_warp
from astropy.io import fits
from conftest import _make_tile_wcs
from hypothesis import example, given
from hypothesis import strategies as st

from dcr_dask.errors import DcrDaskError, InputError
from dcr_dask.io.fits import read_warp_header, write_warp
from dcr_dask.io.metadata import (
    BAND_KEYS,
    PHYSICAL_FILTER_KEYS,
    VISIT_KEYS,
    _era_deg,
    check_visit_header,
)
from dcr_dask.masks import MaskPlanes
from dcr_dask.physics import geometry, refraction
from dcr_dask.physics.bands import accepted_band_names
from dcr_dask.visit import Observatory, VisitInfo

#: afw_layouts writes afw's long HIERARCH comments, which astropy truncates.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Card is too long:astropy.io.fits.verify.VerifyWarning"
)

#: afw's eras of tests/afw_layouts.py, and dcr_dask's own writer.
LAYOUTS = (*ERAS, "dcr_dask")

_SHAPE = (8, 10)
_PLANES = MaskPlanes({"BAD": 0, "SAT": 1, "NO_DATA": 8})
_WCS = _make_tile_wcs()

# --------------------------------------------------------------------------- strategies


def _finite(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def visits(draw: st.DrawFn) -> VisitInfo:
    """A physically consistent visit: its altitude is the geometric one of its pointing.

    afw's oldest layout has no ``BORE-ALT``, so the reader computes the altitude from
    the hour angle; drawing the pointing by hour angle keeps every visit above 5 deg.
    """
    latitude = draw(_finite(-70.0, 70.0))
    longitude = draw(_finite(-180.0, 180.0))
    elevation = draw(_finite(-100.0, 5500.0))
    mjd = draw(_finite(51544.0, 62000.0))  # 2000 to 2028
    era = _era_deg(mjd)
    hour_angle = draw(_finite(-80.0, 80.0))
    dec = draw(_finite(max(-89.5, latitude - 60.0), min(89.5, latitude + 60.0)))
    alt = float(geometry.altitude_deg(hour_angle, dec, latitude))
    if not alt > 5.0:  # rare: keep the example, move the pointing to the meridian
        hour_angle, dec = 0.0, latitude
        alt = 90.0
    ra = (era + longitude - hour_angle) % 360.0
    weather = refraction.default_weather(
        elevation,
        temperature_c=draw(_optional(_finite(-40.0, 40.0))),
        pressure_pa=draw(_optional(_finite(50_000.0, 105_000.0))),
        humidity_pct=draw(_optional(_finite(0.0, 100.0))),
    )
    return VisitInfo(
        visit=draw(st.integers(0, 2**31 - 1)),
        band=draw(st.sampled_from(accepted_band_names())),
        observatory=Observatory(longitude, latitude, elevation),
        weather=weather,
        era_deg=era,
        boresight_ra_deg=ra,
        boresight_dec_deg=dec,
        boresight_alt_deg=alt,
        boresight_airmass=float(geometry.airmass_from_altitude(alt)),
        mjd=mjd,
        boresight_az_deg=draw(_optional(_finite(0.0, 359.999))),
        exptime_s=draw(_finite(0.0, 3600.0)),
        rotang_deg=draw(_optional(_finite(-180.0, 180.0))),
        rottype=draw(_optional(st.sampled_from(["SKY", "HORIZON", "MOUNT"]))),
        psf_fwhm_px=draw(_finite(1.5, 8.0)),
        magzero=draw(_optional(_finite(20.0, 35.0))),
    )


#: A visit that exercises the edges: zenith, the date line, defaulted weather, 0 s.
_EDGE_VISIT = VisitInfo(
    visit=0,
    band="HSC-I2",
    observatory=Observatory(180.0, 0.0, -100.0),
    weather=refraction.default_weather(-100.0),
    era_deg=_era_deg(51544.0),
    boresight_ra_deg=(_era_deg(51544.0) + 180.0) % 360.0,
    boresight_dec_deg=0.0,
    boresight_alt_deg=90.0,
    boresight_airmass=1.0,
    mjd=51544.0,
    exptime_s=0.0,
    psf_fwhm_px=1.5,
)


def _edge_of_ranges(mjd: float, ra: float, high: bool) -> VisitInfo:
    """A visit at the zenith whose every ranged keyword is at one end of its allowed range
    (docs/file-formats.md, "Visit keywords"): all legitimate, all must be read."""
    era = _era_deg(mjd)
    longitude = (ra - era + 180.0) % 360.0 - 180.0  # hour angle 0
    elevation = 10_999.0 if high else -500.0
    return VisitInfo(
        visit=1,
        band="r",
        observatory=Observatory(longitude, 0.0, elevation),
        weather=refraction.default_weather(
            elevation,
            temperature_c=100.0 if high else -100.0,
            pressure_pa=120_000.0 if high else 10_000.0,
            humidity_pct=100.0 if high else 0.0,
        ),
        era_deg=era,
        boresight_ra_deg=ra,
        boresight_dec_deg=0.0,
        boresight_alt_deg=90.0,
        boresight_airmass=1.0,
        mjd=mjd,
        boresight_az_deg=-360.0 if high else 360.0,
        exptime_s=0.0,
        psf_fwhm_px=1.5,
        magzero=100.0 if high else -100.0,
    )


#: The low and the high ends of every range: 1950, RA -360 deg (0 h), 500 m below sea level,
#: -100 degC, 10 kPa, dry, zero point -100; and 2100, RA 360 deg, 10999 m, 100 degC, 120 kPa,
#: saturated, zero point 100.
_LOW_EDGES = _edge_of_ranges(33282.0, -360.0, high=False)
_HIGH_EDGES = _edge_of_ranges(88069.0, 360.0, high=True)

# --------------------------------------------------------------------------- files


@contextmanager
def _warp(visit: VisitInfo, layout: str) -> Iterator[Path]:
    """A real warp of ``visit`` in ``layout``, in a fresh directory for this example
    (pytest's function-scoped ``tmp_path`` is shared by all examples of one test)."""
    zeros = np.zeros(_SHAPE, dtype=np.float32)
    arrays = {"image": zeros, "mask": zeros.astype(np.int32), "variance": zeros + 1.0}
    with tempfile.TemporaryDirectory(prefix="dcr-props-") as directory:
        path = Path(directory) / f"{layout}.fits"
        if layout == "dcr_dask":
            write_warp(path, **arrays, mask_planes=_PLANES, wcs=_WCS, visit=visit)
        else:
            write_afw_warp(path, era=layout, visit=visit, planes=_PLANES, wcs=_WCS, **arrays)
        yield path


def _edit_primary(path: Path, images: list[str], remove: tuple[str, ...] = ()) -> None:
    """Remove keywords from, and append cards (80-character images, possibly not standard
    FITS) to, the primary header."""
    cards = [fits.Card.fromstring(image) for image in images]
    with fits.open(path, mode="update") as hdul:
        header = hdul[0].header
        for key in remove + tuple(card.keyword for card in cards):
            if key not in ("COMMENT", "HISTORY", ""):
                header.remove(key, ignore_missing=True, remove_all=True)
        for card in cards:
            header.append(card, end=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            hdul.flush(output_verify="ignore")


def _raw_card(key: str, value_text: str) -> str:
    """A card image with ``value_text`` as is (``NaN``, ``1E400``: not valid FITS numbers)."""
    name = f"HIERARCH {key} =" if len(key) > 8 else f"{key:<8}="
    return f"{name} {value_text:>20}"


def _card(key: str, value: Any) -> str:
    """The image of a standard card (kept as text: hypothesis prints examples)."""
    return fits.Card(f"HIERARCH {key}" if len(key) > 8 or " " in key else key, value).image


# --------------------------------------------------------------------------- round trip


def _assert_same_visit(got: VisitInfo, want: VisitInfo, layout: str) -> None:
    """``got`` holds ``want``'s values: exact ids and names, floats within what the layout
    stores (afw's ``TIME-MID`` of the oldest layout is rounded to 1 ms)."""
    old = layout == "old"
    assert got.visit == want.visit
    assert got.band == want.band
    close = {"rel_tol": 1e-12, "abs_tol": 1e-9}
    assert math.isclose(got.boresight_ra_deg, want.boresight_ra_deg, **close)
    assert math.isclose(got.boresight_dec_deg, want.boresight_dec_deg, **close)
    for name in ("longitude_deg", "latitude_deg", "elevation_m"):
        assert math.isclose(
            getattr(got.observatory, name), getattr(want.observatory, name), **close
        )
    assert got.weather.defaulted == want.weather.defaulted
    for name in ("temperature_c", "pressure_pa", "humidity_pct"):
        assert math.isclose(getattr(got.weather, name), getattr(want.weather, name), **close)
    assert math.isclose(got.mjd, want.mjd, rel_tol=0, abs_tol=2e-8 if old else 1e-9)
    era_error = abs((got.era_deg - want.era_deg + 180.0) % 360.0 - 180.0)
    assert era_error <= (1e-5 if old else 1e-9)
    assert math.isclose(
        got.boresight_alt_deg, want.boresight_alt_deg, abs_tol=1e-4 if old else 1e-9
    )
    assert math.isclose(
        got.boresight_airmass, want.boresight_airmass, rel_tol=1e-5 if old else 1e-12
    )
    assert got.exptime_s == pytest.approx(want.exptime_s, rel=1e-12, abs=1e-12)
    if want.boresight_az_deg is None:
        assert got.boresight_az_deg is None
    else:
        assert math.isclose(got.boresight_az_deg, want.boresight_az_deg, **close)
    assert got.psf_fwhm_px == pytest.approx(want.psf_fwhm_px, rel=1e-9)
    if layout == "dcr_dask":  # every optional value the own writer stores
        assert got.rottype == want.rottype
        for name in ("rotang_deg", "magzero"):
            mine, theirs = getattr(got, name), getattr(want, name)
            assert (mine is None and theirs is None) or math.isclose(mine, theirs, **close)


@given(visit=visits(), layout=st.sampled_from(LAYOUTS))
@pytest.mark.filterwarnings("ignore:ERFA function:erfa.ErfaWarning")  # afw_layouts at 1950, 2100
@example(visit=_EDGE_VISIT, layout="old")
@example(visit=_EDGE_VISIT, layout="dcr_dask")
@example(visit=_LOW_EDGES, layout="old")
@example(visit=_LOW_EDGES, layout="dcr_dask")
@example(visit=_HIGH_EDGES, layout="current")
@example(visit=_HIGH_EDGES, layout="dcr_dask")
def test_valid_visit_keywords_read_back_in_every_layout(visit, layout):
    with _warp(visit, layout) as path:
        got, _ = read_warp_header(path)
        assert got.filename == str(path)
    _assert_same_visit(got, visit, layout)


# --------------------------------------------------------------------------- invalid values


def _outside(low: float, high: float, margin: float = 1e6) -> st.SearchStrategy[float]:
    """Finite values below ``low`` or above ``high`` (neither included)."""
    return _finite(low - margin, low).filter(lambda v: v < low) | _finite(
        high, high + margin
    ).filter(lambda v: v > high)


#: Keywords with a physical range, and values outside it (docs/file-formats.md, "Visit
#: keywords").
_OUT_OF_RANGE: dict[str, st.SearchStrategy[float]] = {
    "BORE-DEC": _outside(-90.0, 90.0),
    "OBS-LAT": _outside(-90.0, 90.0),
    "OBS-LONG": _outside(-360.0, 360.0),
    "BORE-RA": _outside(-360.0, 360.0),
    "BORE-AZ": _outside(-360.0, 360.0),
    "AVG-ERA": _outside(-360.0, 360.0),
    "MJD-AVG-UT1": _outside(33282.0, 88069.0, margin=3e6) | st.sampled_from([0.0, 2460000.5]),
    "BORE-ALT": _finite(-90.0, 0.0) | _finite(90.0001, 1e3),
    "BORE-AIRMASS": _finite(-10.0, 0.9999),
    "EXPTIME": _finite(-1e5, -1e-9),
    "AIRTEMP": _outside(-100.0, 100.0) | st.sampled_from([273.15, 288.0]),  # kelvin
    "AIRPRESS": _outside(10_000.0, 120_000.0) | st.sampled_from([0.0, 743.0, 1013.25]),  # hPa
    "HUMIDITY": _outside(0.0, 100.0, margin=1e4),
    "PSF-FWHM": _finite(-100.0, 0.0),
    "OBS-ELEV": _finite(11_000.0, 1e8) | _finite(-1e6, -500.0).filter(lambda v: v < -500),
    "MAGZERO": _outside(-100.0, 100.0) | st.sampled_from([6.3e10]),  # a FLUXMAG0
}

#: Every numeric keyword the parser reads.
_NUMBERS = (*_OUT_OF_RANGE, "BORE-ROTANG")

#: Non-finite numbers as they appear in headers astropy cannot write (nor read as numbers).
_NON_FINITE = st.sampled_from(["NaN", "nan", "Inf", "-Infinity", "1E400", "-1.0E999"])

_FITS_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


@st.composite
def bad_keywords(draw: st.DrawFn) -> tuple[str, str, str]:
    """``(layout, keyword, card)``: one card that makes an otherwise valid header invalid."""
    kind = draw(st.sampled_from(["range", "non-finite", "type", "integer", "string", "time"]))
    layout = draw(st.sampled_from(LAYOUTS))
    if kind == "range":
        key = draw(st.sampled_from(sorted(_OUT_OF_RANGE)))
        return layout, key, _card(key, draw(_OUT_OF_RANGE[key]))
    if kind == "non-finite":
        key = draw(st.sampled_from(_NUMBERS))
        return layout, key, _raw_card(key, draw(_NON_FINITE))
    if kind == "type":  # a string (even one that looks like a number) or a boolean
        key = draw(st.sampled_from(_NUMBERS))
        value = draw(_FITS_TEXT | st.booleans() | _finite(-1e3, 1e3).map(repr))
        return layout, key, _card(key, value)
    if kind == "integer":  # the visit id: the first of VISIT_KEYS wins, so set that one
        key = VISIT_KEYS[0]
        value = draw(_FITS_TEXT | st.booleans() | _finite(-1e9, 1e9).filter(lambda v: v != int(v)))
        return layout, key, _card(key, value)
    if kind == "string":  # the band: the first of BAND_KEYS wins
        key = BAND_KEYS[0]
        value = draw(st.integers(-(2**40), 2**40) | _finite(-1e3, 1e3) | st.booleans())
        return layout, key, _card(key, value)
    # the time: a date that is not ISO-8601, or a time scale that is not one
    layout = draw(st.sampled_from([layout for layout in LAYOUTS if layout != "old"]))
    key = draw(st.sampled_from(["DATE-AVG", "TIMESYS"]))
    if key == "DATE-AVG":
        value = draw(_FITS_TEXT.filter(lambda text: not re.fullmatch(r"\s*", text)))
        year = draw(st.integers(1000, 1949) | st.integers(2100, 9999))  # out of range
        out = f"{year:04d}-12-31T23:00:00"
        value = draw(st.sampled_from([value, out, "2024-13-01T00:00:00", "2024-02-30T25:61:00"]))
    else:
        value = draw(
            _FITS_TEXT.filter(lambda t: t.strip().upper() not in ("TAI", "UTC", "TT", "UT1", ""))
        )
    return layout, key, _card(key, value)


def _assert_names(error: BaseException, path: Path, keyword: str) -> None:
    """``error`` is the package's own, and one of its problems names ``keyword`` in ``path``."""
    assert isinstance(error, DcrDaskError), repr(error)
    problems = getattr(error, "errors", [error])
    assert all(isinstance(problem, InputError) for problem in problems)
    assert any(
        problem.filename == str(path) and keyword in (problem.keyword or "") for problem in problems
    ), str(error)
    assert str(path) in str(error) and keyword in str(error)


def _valid_date(text: str) -> bool:
    """True if ``text`` happens to be a date astropy reads between 1950 and 2100 (then
    DATE-AVG is not invalid)."""
    from astropy.time import Time

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # erfa's "dubious year"
            time = Time(text.strip().removesuffix("Z"), format="fits", scale="tai")
    except (ValueError, TypeError):
        return False
    return 33282.0 <= time.mjd <= 88069.0


@given(visit=visits(), bad=bad_keywords())
@example(visit=_EDGE_VISIT, bad=("dcr_dask", "BORE-RA", _raw_card("BORE-RA", "NaN")))
@example(visit=_EDGE_VISIT, bad=("old", "OBS-ELEV", _card("OBS-ELEV", 11_000.0)))
@example(visit=_EDGE_VISIT, bad=("current", "MAGZERO", _raw_card("MAGZERO", "1E400")))
@example(visit=_EDGE_VISIT, bad=("2020", "AIRPRESS", _card("AIRPRESS", 743.0)))
@example(visit=_EDGE_VISIT, bad=("dcr_dask", "MJD-AVG-UT1", _card("MJD-AVG-UT1", 2460000.5)))
@example(visit=_EDGE_VISIT, bad=("dcr_dask", "DATE-AVG", _card("DATE-AVG", "1858-11-17T00:00:00")))
@example(visit=_EDGE_VISIT, bad=("old", "TIME-MID", _card("TIME-MID", "2200-01-01T00:00:00Z")))
def test_invalid_keyword_is_named_with_the_file(visit, bad):
    layout, keyword, card = bad
    value = fits.Card.fromstring(card).value if keyword == "DATE-AVG" else None
    if isinstance(value, str) and _valid_date(value):
        return  # hypothesis drew a valid date: nothing to refuse
    with _warp(visit, layout) as path:
        _edit_primary(path, [card])
        with pytest.raises(Exception) as info:
            read_warp_header(path)
        _assert_names(info.value, path, keyword)


#: Keywords whose absence leaves a required value unknown, and the keyword the error names.
_REQUIRED = {
    "BORE-RA": ("BORE-RA",),
    "BORE-DEC": ("BORE-DEC",),
    "OBS-LONG": ("OBS-LONG",),
    "OBS-LAT": ("OBS-LAT",),
    "OBS-ELEV": ("OBS-ELEV",),
    "EXPID/VISIT": VISIT_KEYS,
    "DATE-AVG/MJD-AVG-UT1": ("DATE-AVG", "MJD-AVG-UT1", "AVG-ERA", "TIME-MID", "TIMESYS"),
    "FILTER/BAND": BAND_KEYS + PHYSICAL_FILTER_KEYS,
}


@given(
    visit=visits(),
    layout=st.sampled_from(LAYOUTS),
    missing=st.sets(st.sampled_from(sorted(_REQUIRED)), min_size=1, max_size=3),
)
def test_missing_required_keywords_are_each_named(visit, layout, missing):
    if layout in ("current", "2020"):
        missing.discard("FILTER/BAND")  # the band is in the archive's FilterLabel too
        if not missing:
            return
    remove = tuple(key for group in sorted(missing) for key in _REQUIRED[group])
    with _warp(visit, layout) as path:
        _edit_primary(path, [], remove=remove)
        with pytest.raises(Exception) as info:
            read_warp_header(path)
        for group in missing:
            _assert_names(info.value, path, group)


# --------------------------------------------------------------------------- unrelated cards


class _Recording(Mapping[str, Any]):
    """A header that records every keyword the parser looks at."""

    def __init__(self, header: fits.Header):
        self.header, self.seen = header, set()

    def __getitem__(self, key: str) -> Any:
        self.seen.add(key)
        return self.header[key]

    def __contains__(self, key: object) -> bool:
        self.seen.add(str(key))
        return key in self.header

    def __iter__(self) -> Iterator[str]:
        return iter(self.header)

    def __len__(self) -> int:
        return len(self.header)


def _keywords_read() -> frozenset[str]:
    """Every primary-header keyword the visit parser looks at, in every layout."""
    seen: set[str] = set()
    for layout in LAYOUTS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            stack = contextlib.ExitStack()
            path = stack.enter_context(_warp(_EDGE_VISIT, layout))
        with stack:
            recording = _Recording(fits.getheader(path))
            check_visit_header(recording, path)
            seen |= recording.seen
    return frozenset(key.upper() for key in seen)


_READ = _keywords_read()
#: Reserved by FITS, afw's archive (``AR_HDU``, ``<KEY>_ID``, ``ARCHIVE_ID_<KEY>``), the
#: WCS, the mask planes and dcr_dask's ownership marker.
_RESERVED = re.compile(
    r"(SIMPLE|BITPIX|NAXIS\d*|EXTEND|END|BLANK|BSCALE|BZERO|BUNIT|EXTNAME|EXTTYPE|XTENSION|"
    r"PCOUNT|GCOUNT|INHERIT|CONTINUE|DCRDASKV|AR_.*|ARCHIVE.*|.*_ID|MP_.*|LTV\d|LTM.*|"
    r"C(TYPE|RVAL|RPIX|DELT|UNIT|ROTA)\d.*|CD\d_\d.*|PC\d_\d.*|PV\d.*|PS\d.*|WCS.*|"
    r"RADE.*|EQUINOX.*|EPOCH|[LM][OA][NT]POLE.*|[AB]P?_.*|MJD-OBS|DATE-OBS)"
)
_KEYWORD = st.from_regex(r"\A[A-Z][A-Z0-9_-]{0,7}\Z").filter(
    lambda key: key not in _READ and not _RESERVED.fullmatch(key)
)
_VALUES = st.integers(-(2**62), 2**62) | _finite(-1e300, 1e300) | st.booleans() | _FITS_TEXT
_EXTRA_CARDS = st.lists(
    st.tuples(_KEYWORD, _VALUES).map(lambda kv: _card(*kv))
    | st.tuples(st.sampled_from(["COMMENT", "HISTORY"]), _FITS_TEXT).map(lambda kv: _card(*kv))
    | st.tuples(st.from_regex(r"\AXTRA [A-Z][A-Z0-9 _-]{0,20}[A-Z0-9]\Z"), _VALUES).map(
        lambda kv: _card(*kv)
    ),
    max_size=12,
    unique_by=lambda image: fits.Card.fromstring(image).keyword,
)


def test_keywords_read_are_found():
    """The set the strategy avoids is what the parser reads (it must not be empty)."""
    assert {"BORE-RA", "OBS-ELEV", "EXPID", "DATE-AVG", "HUMIDITY"} <= _READ


@given(visit=visits(), layout=st.sampled_from(LAYOUTS), extra=_EXTRA_CARDS)
def test_unrelated_cards_change_nothing(visit, layout, extra):
    with _warp(visit, layout) as path:
        before, layout_before = read_warp_header(path)
        _edit_primary(path, extra)
        after, layout_after = read_warp_header(path)
    assert after == before
    assert (after.visit_source, after.band_source, after.psf_source) == (
        before.visit_source,
        before.band_source,
        before.psf_source,
    )
    assert layout_after == layout_before
