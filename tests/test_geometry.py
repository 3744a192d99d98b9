"""Tests of dcr_dask.physics.geometry: angles against astropy and GalSim, directions, shifts."""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import AltAz, EarthLocation, HADec, SkyCoord
from astropy.time import Time
from astropy.utils import iers
from astropy.wcs import WCS

from dcr_dask.physics.geometry import (
    VisitGeometry,
    airmass_from_altitude,
    altitude_deg,
    buffer_size_px,
    east_angle_deg,
    elevation_from_airmass,
    hour_angle_deg,
    north_angle_deg,
    parallactic_angle_deg,
    pixel_scale_arcsec,
    subband_shifts_px,
    subfilter_edges_nm,
    visit_geometry,
    zenith_direction_deg,
)
from dcr_dask.physics.refraction import differential_refraction_rad
from dcr_dask.physics.transmission import Transmission
from dcr_dask.visit import Observatory, VisitInfo, Weather

RUBIN = Observatory(longitude_deg=-70.7494, latitude_deg=-30.2444, elevation_m=2663.0)
WEATHER = Weather(temperature_c=10.0, pressure_pa=74000.0, humidity_pct=40.0)
SCALE_ARCSEC = 0.2
RAD_TO_ARCSEC = 180.0 / math.pi * 3600.0


@pytest.fixture(autouse=True, scope="module")
def _no_iers_download():
    """The machine is offline: astropy must use its bundled IERS tables."""
    with iers.conf.set_temp("auto_download", False):
        yield


def make_wcs(
    north_deg: float = 0.0,
    *,
    flipped: bool = False,
    crval: tuple[float, float] = (150.0, -40.0),
    shape: tuple[int, int] = (201, 301),
    scale_arcsec: float = SCALE_ARCSEC,
    ctype: tuple[str, str] = ("RA---TAN", "DEC--TAN"),
) -> WCS:
    """TAN WCS with North at ``north_deg`` from +y toward +x; East 90° clockwise of it, or
    counter-clockwise if ``flipped``. The tangent point is the central pixel."""
    theta = math.radians(north_deg)
    north = np.array([math.sin(theta), math.cos(theta)])  # pixel (x, y) per unit step North
    east_angle = theta + (math.pi / 2 if flipped else -math.pi / 2)
    east = np.array([math.sin(east_angle), math.cos(east_angle)])
    pixels_per_world = np.column_stack([east, north]) * (3600.0 / scale_arcsec)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = list(ctype)
    wcs.wcs.crval = list(crval)
    wcs.wcs.crpix = [(shape[1] + 1) / 2.0, (shape[0] + 1) / 2.0]
    wcs.wcs.cd = np.linalg.inv(pixels_per_world)
    wcs.wcs.set()
    wcs.pixel_shape = (shape[1], shape[0])
    return wcs


def make_visit(
    hour_angle: float = 35.0,
    dec: float = -40.0,
    *,
    era_deg: float = 100.0,
    weather: Weather = WEATHER,
) -> VisitInfo:
    """A visit pointed at the given hour angle and declination from Rubin's site."""
    ra = (era_deg + RUBIN.longitude_deg - hour_angle) % 360.0
    alt = float(altitude_deg(hour_angle, dec, RUBIN.latitude_deg))
    return VisitInfo(
        visit=1,
        band="g",
        observatory=RUBIN,
        weather=weather,
        era_deg=era_deg,
        boresight_ra_deg=ra,
        boresight_dec_deg=dec,
        boresight_alt_deg=alt,
        boresight_airmass=float(airmass_from_altitude(alt)),
    )


def _centre(wcs: WCS) -> tuple[float, float]:
    return wcs.wcs.crpix[0] - 1.0, wcs.wcs.crpix[1] - 1.0


def _wrap(angle_deg):
    return (np.asarray(angle_deg) + 180.0) % 360.0 - 180.0


# --------------------------------------------------------------------------
# Angles on the sky
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("era", "lon", "ra", "expected"),
    [(10.0, -70.0, 300.0, 0.0), (0.0, 0.0, 180.0, 180.0), (0.0, 0.0, -180.0, 180.0),
     (200.0, 0.0, 10.0, -170.0), (0.0, 30.0, 0.0, 30.0), (350.0, 20.0, 0.0, 10.0)],
)  # fmt: skip
def test_hour_angle_wraps_to_half_open_interval(era, lon, ra, expected):
    assert hour_angle_deg(era, lon, ra) == pytest.approx(expected, abs=1e-12)


def test_hour_angle_is_vectorised():
    ha = hour_angle_deg(np.array([0.0, 90.0, 270.0]), 0.0, 0.0)
    np.testing.assert_allclose(ha, [0.0, 90.0, -90.0])


HA_GRID = np.array([-150.0, -60.0, -20.0, -1.0, 0.5, 30.0, 75.0, 170.0])
DEC_GRID = np.array([-80.0, -70.0, -30.0, 10.0, -5.0, 20.0, 40.0, 60.0])


@pytest.mark.parametrize("latitude", [-30.2444, 19.8, 60.0])
def test_parallactic_and_altitude_agree_with_astropy_altaz(latitude):
    """q is the position angle, at the source, of a point a little above it in AltAz."""
    location = EarthLocation.from_geodetic(0.0 * u.deg, latitude * u.deg, 0.0 * u.m)
    time = Time("2021-06-01T04:00:00", scale="utc")
    hadec = HADec(location=location, obstime=time, pressure=0 * u.hPa)
    altaz = AltAz(location=location, obstime=time, pressure=0 * u.hPa)
    source = SkyCoord(ha=HA_GRID * u.deg, dec=DEC_GRID * u.deg, frame=hadec)
    horizontal = source.transform_to(altaz)
    above = SkyCoord(az=horizontal.az, alt=horizontal.alt + 0.01 * u.deg, frame=altaz)
    above = above.transform_to(hadec)
    # Hour angle grows westward; as a longitude growing eastward it is -HA.
    position_angle = SkyCoord(-source.ha, source.dec).position_angle(SkyCoord(-above.ha, above.dec))
    theirs = position_angle.wrap_at(180 * u.deg).rad

    ours = np.radians(parallactic_angle_deg(HA_GRID, DEC_GRID, latitude))
    assert np.max(np.abs(np.angle(np.exp(1j * (ours - theirs))))) < 1e-6
    np.testing.assert_allclose(
        altitude_deg(HA_GRID, DEC_GRID, latitude), horizontal.alt.deg, atol=1e-8
    )


def test_parallactic_angle_agrees_with_galsim():
    galsim = pytest.importorskip("galsim")
    from galsim.dcr import zenith_parallactic_angles

    for latitude in (-30.2444, 45.0):
        for ha, dec in zip(HA_GRID, DEC_GRID, strict=True):
            _, q = zenith_parallactic_angles(
                galsim.CelestialCoord(40.0 * galsim.degrees, dec * galsim.degrees),
                HA=ha * galsim.degrees,
                latitude=latitude * galsim.degrees,
            )
            ours = parallactic_angle_deg(ha, dec, latitude)
            assert _wrap(ours - q.deg) == pytest.approx(0.0, abs=1e-6)


def test_parallactic_angle_signs_and_symmetry():
    # East of the meridian (HA < 0) the zenith is West of North, and vice versa;
    # on the meridian South of the zenith the zenith is due North, North of it due South.
    assert (
        parallactic_angle_deg(-30.0, -40.0, -30.0) < 0 < parallactic_angle_deg(30.0, -40.0, -30.0)
    )
    assert parallactic_angle_deg(0.0, -60.0, -30.0) == pytest.approx(0.0, abs=1e-12)
    assert abs(parallactic_angle_deg(0.0, 0.0, -30.0)) == pytest.approx(180.0)
    np.testing.assert_allclose(
        parallactic_angle_deg(HA_GRID, DEC_GRID, 20.0),
        -parallactic_angle_deg(-HA_GRID, DEC_GRID, 20.0),
        atol=1e-12,
    )


def test_airmass_is_the_secant_and_inverts():
    alt = np.array([90.0, 60.0, 41.8103149, 30.0, 10.0])
    airmass = airmass_from_altitude(alt)
    np.testing.assert_allclose(airmass, 1.0 / np.cos(np.radians(90.0 - alt)))
    assert airmass_from_altitude(30.0) == pytest.approx(2.0)
    np.testing.assert_allclose(elevation_from_airmass(airmass), alt)
    assert elevation_from_airmass(1.0) == pytest.approx(90.0)


@pytest.mark.parametrize("airmass", [0.99, -1.0, float("nan"), float("inf")])
def test_airmass_below_one_raises_naming_it(airmass):
    with pytest.raises(ValueError, match=f"airmass {airmass:g}"):
        elevation_from_airmass(airmass)


@pytest.mark.parametrize("alt", [0.0, -10.0, 95.0])
def test_altitude_outside_range_raises_for_airmass(alt):
    with pytest.raises(ValueError, match=f"{alt:g} deg"):
        airmass_from_altitude(alt)


# --------------------------------------------------------------------------
# Directions on the tile grid
# --------------------------------------------------------------------------

Q_VALUES = np.array([-170.0, -95.0, -30.0, 0.0, 12.5, 60.0, 135.0])


def test_north_up_east_left_zenith_is_minus_q():
    wcs = make_wcs()
    x, y = _centre(wcs)
    assert north_angle_deg(wcs, x, y) == pytest.approx(0.0, abs=1e-7)
    assert east_angle_deg(wcs, x, y) == pytest.approx(-90.0, abs=1e-7)
    np.testing.assert_allclose(
        _wrap(zenith_direction_deg(Q_VALUES, wcs, x, y) + Q_VALUES), 0.0, atol=1e-7
    )


def test_flipped_east_right_zenith_is_plus_q():
    wcs = make_wcs(flipped=True)
    x, y = _centre(wcs)
    assert np.linalg.det(wcs.wcs.cd) > 0  # the flipped parity
    assert east_angle_deg(wcs, x, y) == pytest.approx(90.0, abs=1e-7)
    np.testing.assert_allclose(
        _wrap(zenith_direction_deg(Q_VALUES, wcs, x, y) - Q_VALUES), 0.0, atol=1e-7
    )


@pytest.mark.parametrize("rotation", [90.0, 33.0, -120.0, 180.0])
@pytest.mark.parametrize("flipped", [False, True])
def test_rotated_wcs_rotates_the_zenith_direction(rotation, flipped):
    wcs = make_wcs(rotation, flipped=flipped)
    x, y = _centre(wcs)
    assert _wrap(north_angle_deg(wcs, x, y) - rotation) == pytest.approx(0.0, abs=1e-7)
    expected = rotation + Q_VALUES if flipped else rotation - Q_VALUES
    np.testing.assert_allclose(
        _wrap(zenith_direction_deg(Q_VALUES, wcs, x, y) - expected), 0.0, atol=1e-7
    )


def test_a_north_up_east_left_cd_matrix_built_by_hand():
    # North along +x and East along +y: a 90° rotation of the usual orientation.
    s = SCALE_ARCSEC / 3600.0
    wcs = make_wcs()
    wcs.wcs.cd = [[0.0, s], [s, 0.0]]
    wcs.wcs.set()
    x, y = _centre(wcs)
    assert north_angle_deg(wcs, x, y) == pytest.approx(90.0, abs=1e-7)
    assert east_angle_deg(wcs, x, y) == pytest.approx(0.0, abs=1e-7)
    assert zenith_direction_deg(25.0, wcs, x, y) == pytest.approx(65.0, abs=1e-7)


def test_north_points_at_the_pole_on_a_polar_tile():
    # Tangent point on the North celestial pole: North everywhere points to it.
    wcs = make_wcs(crval=(0.0, 90.0), shape=(101, 101), scale_arcsec=60.0)
    xs = np.array([0.0, 100.0, 20.0, 77.0])
    ys = np.array([0.0, 30.0, 90.0, 50.0])
    pole_x, pole_y = _centre(wcs)
    expected = np.degrees(np.arctan2(pole_x - xs, pole_y - ys))
    np.testing.assert_allclose(_wrap(north_angle_deg(wcs, xs, ys) - expected), 0.0, atol=1e-6)


def test_north_of_a_galactic_wcs_is_equatorial_north():
    wcs = make_wcs(crval=(60.0, 20.0), ctype=("GLON-TAN", "GLAT-TAN"))
    x, y = _centre(wcs)
    centre = SkyCoord(l=60.0 * u.deg, b=20.0 * u.deg, frame="galactic")
    pole = SkyCoord(ra=0.0 * u.deg, dec=90.0 * u.deg, frame="icrs").galactic
    # Position angle of the celestial pole, measured from galactic North through galactic East,
    # which on this Galactic-North-up, East-left grid is the angle -PA from +y toward +x.
    pa_of_pole = centre.position_angle(pole).deg
    assert _wrap(north_angle_deg(wcs, x, y) + pa_of_pole) == pytest.approx(0.0, abs=1e-6)


def test_pixel_scale_of_a_tan_tile():
    wcs = make_wcs(33.0)
    x, y = _centre(wcs)
    assert pixel_scale_arcsec(wcs, x, y) == pytest.approx(SCALE_ARCSEC, rel=1e-8)
    scales = pixel_scale_arcsec(wcs, [0.0, 300.0], [0.0, 200.0])
    np.testing.assert_allclose(scales, SCALE_ARCSEC, rtol=1e-6)  # TAN: nearly constant


def test_non_celestial_wcs_is_refused():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["LINEAR", "LINEAR"]
    with pytest.raises(ValueError, match="celestial"):
        north_angle_deg(wcs, 0.0, 0.0)


# --------------------------------------------------------------------------
# Visit geometry
# --------------------------------------------------------------------------


def test_visit_geometry_at_the_boresight_uses_the_header_values():
    visit = make_visit(35.0, -40.0)
    wcs = make_wcs()
    geometry = visit_geometry(visit, wcs)
    assert isinstance(geometry, VisitGeometry)
    assert (geometry.x_px, geometry.y_px) == (150.0, 100.0)
    assert geometry.hour_angle_deg == pytest.approx(35.0)
    assert geometry.parallactic_angle_deg == pytest.approx(
        parallactic_angle_deg(35.0, -40.0, RUBIN.latitude_deg)
    )
    assert geometry.altitude_deg == visit.boresight_alt_deg
    assert geometry.airmass == visit.boresight_airmass
    assert geometry.zenith_direction_deg == pytest.approx(-geometry.parallactic_angle_deg, abs=1e-7)
    assert geometry.pixel_scale_arcsec == pytest.approx(SCALE_ARCSEC)
    assert not geometry.local
    # Away from the centre only the WCS quantities change.
    corner = visit_geometry(visit, wcs, 0.0, 0.0)
    assert corner.parallactic_angle_deg == geometry.parallactic_angle_deg
    assert corner.altitude_deg == geometry.altitude_deg


def test_visit_geometry_needs_a_position_or_the_tile_size():
    wcs = make_wcs()
    wcs.pixel_shape = None
    with pytest.raises(ValueError, match="x and y"):
        visit_geometry(make_visit(), wcs)
    with pytest.raises(ValueError, match="both"):
        visit_geometry(make_visit(), make_wcs(), 3.0, None)


def test_local_geometry_matches_the_boresight_at_the_boresight_and_differs_far_from_it():
    visit = make_visit(35.0, -40.0)
    wcs = make_wcs(crval=(visit.boresight_ra_deg, -40.0), shape=(301, 301), scale_arcsec=36.0)
    x, y = _centre(wcs)
    here = visit_geometry(visit, wcs, x, y, local=True)
    assert here.local
    assert here.hour_angle_deg == pytest.approx(35.0, abs=1e-9)
    assert here.altitude_deg == pytest.approx(visit.boresight_alt_deg, abs=1e-9)
    assert here.airmass == pytest.approx(visit.boresight_airmass, abs=1e-9)
    corner = visit_geometry(visit, wcs, 0.0, 0.0, local=True)
    sky = wcs.pixel_to_world(0.0, 0.0)
    ha = hour_angle_deg(visit.era_deg, RUBIN.longitude_deg, sky.ra.deg)
    assert corner.ra_deg == pytest.approx(sky.ra.deg)
    assert corner.parallactic_angle_deg == pytest.approx(
        parallactic_angle_deg(ha, sky.dec.deg, RUBIN.latitude_deg)
    )
    assert abs(corner.parallactic_angle_deg - here.parallactic_angle_deg) > 0.5
    assert abs(corner.airmass - here.airmass) > 0.01


def test_local_geometry_below_the_horizon_raises():
    visit = make_visit(35.0, -40.0)
    wcs = make_wcs(crval=(visit.boresight_ra_deg + 150.0, 60.0))
    with pytest.raises(ValueError, match="below the horizon"):
        visit_geometry(visit, wcs, 0.0, 0.0, local=True)


@pytest.mark.parametrize(
    ("rotation", "flipped"), [(0.0, False), (0.0, True), (-62.0, False), (140.0, True)]
)
def test_zenith_direction_agrees_with_astropy_altaz_through_the_wcs(rotation, flipped):
    """End to end: move a pixel toward the zenith in astropy's AltAz, map it back by the WCS.

    At J2000.0 ICRS and the equator of date coincide to arcseconds, so the hour
    angle from ERA + longitude − RA is astropy's to about 0.01°.
    """
    time = Time("2000-01-01T12:00:00", scale="utc")
    era = float(time.earth_rotation_angle(0.0 * u.deg).deg)
    visit = make_visit(-50.0, -65.0, era_deg=era)
    wcs = make_wcs(
        rotation,
        flipped=flipped,
        crval=(visit.boresight_ra_deg, -65.0),
        shape=(301, 301),
        scale_arcsec=36.0,
    )
    location = EarthLocation.from_geodetic(
        RUBIN.longitude_deg * u.deg, RUBIN.latitude_deg * u.deg, RUBIN.elevation_m * u.m
    )
    altaz = AltAz(location=location, obstime=time, pressure=0 * u.hPa)
    for x, y in [(150.0, 150.0), (0.0, 0.0), (300.0, 40.0)]:
        horizontal = wcs.pixel_to_world(x, y).transform_to(altaz)
        above = SkyCoord(az=horizontal.az, alt=horizontal.alt + 0.05 * u.deg, frame=altaz)
        x1, y1 = wcs.world_to_pixel(above.transform_to("icrs"))
        theirs = math.degrees(math.atan2(x1 - x, y1 - y))
        geometry = visit_geometry(visit, wcs, x, y, local=True)
        assert _wrap(geometry.zenith_direction_deg - theirs) == pytest.approx(0.0, abs=0.005)
        assert geometry.altitude_deg == pytest.approx(horizontal.alt.deg, abs=0.02)


# --------------------------------------------------------------------------
# Sub-bands and shifts
# --------------------------------------------------------------------------


def test_subfilter_edges_split_the_band_evenly():
    edges = subfilter_edges_nm(500.0, 100.0, 4)
    np.testing.assert_allclose(edges, [[450, 475], [475, 500], [500, 525], [525, 550]])
    assert subfilter_edges_nm(480.0, 140.0, 1).tolist() == [[410.0, 550.0]]


@pytest.mark.parametrize(("bandwidth", "n"), [(0.0, 3), (-10.0, 3), (100.0, 0), (100.0, 2.5)])
def test_subfilter_edges_refuse_bad_arguments(bandwidth, n):
    with pytest.raises(ValueError):
        subfilter_edges_nm(500.0, bandwidth, n)


G_BAND = {"effective_wavelength_nm": 482.0, "bandwidth_nm": 148.0, "n_subfilters": 3}


def _zenith_unit(geometry: VisitGeometry) -> np.ndarray:
    a = math.radians(geometry.zenith_direction_deg)
    return np.array([math.cos(a), math.sin(a)])


@pytest.mark.parametrize(
    "wcs", [make_wcs(), make_wcs(flipped=True), make_wcs(70.0)], ids=["std", "flip", "rot"]
)
def test_blue_moves_toward_the_zenith_and_red_away(wcs):
    visit = make_visit(40.0, -60.0)
    x, y = _centre(wcs)
    shifts = subband_shifts_px(visit, wcs, x, y, **G_BAND)
    assert shifts.shape == (3, 1, 2)
    geometry = visit_geometry(visit, wcs, x, y)
    along = shifts[:, 0, :] @ _zenith_unit(geometry)
    assert along[0] > 0 > along[-1]
    assert np.all(np.diff(along) < 0)
    # Every shift lies on the line of the zenith direction.
    across = shifts[:, 0, :] @ np.array([-_zenith_unit(geometry)[1], _zenith_unit(geometry)[0]])
    np.testing.assert_allclose(across, 0.0, atol=1e-12)
    # Size: the mean differential refraction at the two edges, in pixels.
    edges = subfilter_edges_nm(482.0, 148.0, 3)
    dcr = differential_refraction_rad(edges, 482.0, visit.boresight_alt_deg, WEATHER, RUBIN)
    np.testing.assert_allclose(along, dcr.mean(axis=1) * RAD_TO_ARCSEC / SCALE_ARCSEC, rtol=1e-7)


def test_north_up_shift_direction_is_minus_q_in_numpy_order():
    visit = make_visit(40.0, -60.0)
    wcs = make_wcs()
    q = math.radians(parallactic_angle_deg(40.0, -60.0, RUBIN.latitude_deg))
    dy, dx = subband_shifts_px(visit, wcs, *_centre(wcs), **G_BAND)[0, 0]
    d = math.hypot(dy, dx)
    assert dy == pytest.approx(d * math.cos(-q), abs=1e-9)
    assert dx == pytest.approx(d * math.sin(-q), abs=1e-9)


def test_split_shifts_bracket_the_unsplit_one():
    visit = make_visit(50.0, -70.0)
    wcs = make_wcs()
    x, y = _centre(wcs)
    unsplit = subband_shifts_px(visit, wcs, x, y, **G_BAND)
    split = subband_shifts_px(visit, wcs, x, y, split=True, split_threshold_px=0.0, **G_BAND)
    assert split.shape == (3, 2, 2)
    np.testing.assert_allclose(split.mean(axis=1), unsplit[:, 0], atol=1e-12)
    edges = subfilter_edges_nm(482.0, 148.0, 3)
    d = differential_refraction_rad(edges, 482.0, visit.boresight_alt_deg, WEATHER, RUBIN)
    d_px = d * RAD_TO_ARCSEC / SCALE_ARCSEC
    expected = np.stack(
        [0.75 * d_px[:, 0] + 0.25 * d_px[:, 1], 0.25 * d_px[:, 0] + 0.75 * d_px[:, 1]], 1
    )
    np.testing.assert_allclose(np.hypot(split[..., 0], split[..., 1]), np.abs(expected), rtol=1e-7)


def test_split_threshold_merges_only_close_pairs():
    visit = make_visit(50.0, -70.0)
    wcs = make_wcs()
    x, y = _centre(wcs)
    split = subband_shifts_px(visit, wcs, x, y, split=True, split_threshold_px=0.0, **G_BAND)
    gaps = np.hypot(*(split[:, 0] - split[:, 1]).T)
    assert gaps[0] > gaps[-1]  # air disperses more in the blue
    threshold = 0.5 * (gaps[0] + gaps[-1])
    merged = subband_shifts_px(visit, wcs, x, y, split=True, split_threshold_px=threshold, **G_BAND)
    np.testing.assert_array_equal(merged[0], split[0])  # far apart: kept
    np.testing.assert_allclose(merged[-1, 0], split[-1].mean(axis=0))  # close: both at midpoint
    np.testing.assert_array_equal(merged[-1, 0], merged[-1, 1])
    everything = subband_shifts_px(visit, wcs, x, y, split=True, split_threshold_px=1e9, **G_BAND)
    unsplit = subband_shifts_px(visit, wcs, x, y, **G_BAND)
    np.testing.assert_allclose(everything, np.repeat(unsplit, 2, axis=1), atol=1e-12)


def test_throughput_mode_with_a_flat_curve_is_the_plain_mean_over_each_half():
    visit = make_visit(50.0, -70.0)
    wcs = make_wcs()
    x, y = _centre(wcs)
    flat = Transmission(wavelength_nm=[300.0, 700.0], throughput=[1.0, 1.0])
    weighted = subband_shifts_px(
        visit,
        wcs,
        x,
        y,
        split=True,
        split_threshold_px=0.0,
        mode="throughput",
        transmission=flat,
        **G_BAND,
    )
    geometry = visit_geometry(visit, wcs, x, y)
    along = weighted @ _zenith_unit(geometry)
    # Reference: a plain mean over a fine uniform grid of each half sub-band.
    for s, (lo, hi) in enumerate(subfilter_edges_nm(482.0, 148.0, 3)):
        for k, (a, b) in enumerate([(lo, 0.5 * (lo + hi)), (0.5 * (lo + hi), hi)]):
            grid = np.linspace(a, b, 4001)
            dcr = differential_refraction_rad(grid, 482.0, visit.boresight_alt_deg, WEATHER, RUBIN)
            expected = dcr.mean() * RAD_TO_ARCSEC / SCALE_ARCSEC
            assert along[s, k] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    # Refraction is nearly linear across a sub-band, so the edges mode is close.
    edges_mode = subband_shifts_px(visit, wcs, x, y, split=True, split_threshold_px=0.0, **G_BAND)
    np.testing.assert_allclose(weighted, edges_mode, atol=0.05)


def test_throughput_mode_follows_the_transmission():
    visit = make_visit(50.0, -70.0)
    wcs = make_wcs()
    x, y = _centre(wcs)
    # A narrow line at 440 nm in the first sub-band (408-457.3 nm), flat elsewhere.
    wavelength = [400.0, 439.0, 440.0, 441.0, 560.0]
    throughput = [1e-6, 1e-6, 1.0, 1e-6, 1e-6]
    spike = Transmission(wavelength_nm=wavelength, throughput=throughput)
    shifts = subband_shifts_px(visit, wcs, x, y, mode="throughput", transmission=spike, **G_BAND)
    geometry = visit_geometry(visit, wcs, x, y)
    along = shifts[0, 0] @ _zenith_unit(geometry)
    at_line = differential_refraction_rad(440.0, 482.0, visit.boresight_alt_deg, WEATHER, RUBIN)
    assert along == pytest.approx(at_line * RAD_TO_ARCSEC / SCALE_ARCSEC, rel=0.01)


def test_throughput_mode_errors():
    visit = make_visit()
    wcs = make_wcs()
    with pytest.raises(ValueError, match="transmission"):
        subband_shifts_px(visit, wcs, 0.0, 0.0, mode="throughput", **G_BAND)
    with pytest.raises(ValueError, match="mode"):
        subband_shifts_px(visit, wcs, 0.0, 0.0, mode="middle", **G_BAND)
    red_only = Transmission(wavelength_nm=[500.0, 600.0], throughput=[1.0, 1.0])
    with pytest.raises(ValueError, match="throughput is zero"):
        subband_shifts_px(visit, wcs, 0.0, 0.0, mode="throughput", transmission=red_only, **G_BAND)


def test_sub_band_outside_the_refraction_range_raises_naming_the_wavelength():
    with pytest.raises(ValueError, match="wavelength 200 nm"):
        subband_shifts_px(
            make_visit(),
            make_wcs(),
            0.0,
            0.0,
            effective_wavelength_nm=250.0,
            bandwidth_nm=100.0,
            n_subfilters=2,
        )


def test_shifts_grow_with_airmass():
    wcs = make_wcs()
    x, y = _centre(wcs)
    sizes = [
        np.abs(subband_shifts_px(make_visit(ha, -30.0), wcs, x, y, **G_BAND)).max()
        for ha in (0.0, 30.0, 60.0)
    ]
    assert sizes[0] < sizes[1] < sizes[2]


def test_buffer_size():
    assert buffer_size_px(np.array([[[0.3, -2.3]], [[1.0, 0.0]]])) == 4
    assert buffer_size_px(np.array([[[2.0, 0.0]]])) == 3
    assert buffer_size_px(np.zeros((3, 1, 2))) == 1
    assert buffer_size_px(np.zeros((0, 1, 2))) == 1
    visit = make_visit(60.0, -70.0)
    wcs = make_wcs()
    shifts = subband_shifts_px(
        visit, wcs, *_centre(wcs), split=True, split_threshold_px=0.0, **G_BAND
    )
    assert buffer_size_px(shifts) == math.ceil(np.abs(shifts).max()) + 1
    assert buffer_size_px(shifts) > 3  # several pixels of DCR at 0.2 arcsec/pixel
