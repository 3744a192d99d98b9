"""Where the zenith is, seen from a source and on the tile grid, and the DCR shifts that follow.

The conventions implemented here (described for users in docs/file-formats.md,
"Geometry from the keywords"):

- hour angle ``HA = ERA + OBS-LONG − RA``, wrapped to (−180°, 180°], positive
  West of the meridian;
- parallactic angle ``q``: the angle at the source from the direction of North
  to the direction of the zenith, measured through East;
- a shift of ``d`` pixels toward the zenith, whose direction on the tile grid
  makes the angle ``a`` with +y measured toward +x, is
  ``(dy, dx) = (d cos a, d sin a)`` in NumPy (y, x) order; ``a = −q`` on a
  North-up, East-left tile.

The direction of the zenith on the grid is built from the tile WCS (the
directions of North and East at the point), never from the camera rotator, so
flipped, rotated and skewed tile WCSs all work. Pixel coordinates are 0-based,
as astropy's WCS uses them.

The hour angle combines the Earth rotation angle with ICRS right ascensions,
as Rubin does. Strictly it needs the right ascension of date (CIRS); the
difference is precession, a few tenths of a degree this century, which moves
the direction of DCR by as much and changes its size by far less.
"""

from __future__ import annotations

import math
from typing import Literal

import astropy.units as u
import attrs
import numpy as np
import numpy.typing as npt
from astropy.coordinates import SkyCoord, offset_by
from astropy.wcs import WCS

from dcr_dask.physics.refraction import (
    _checked_elevation_deg,
    _first_values,
    differential_refraction_rad,
)
from dcr_dask.physics.transmission import Transmission, band_average
from dcr_dask.visit import VisitInfo

__all__ = [
    "VisitGeometry",
    "airmass_from_altitude",
    "altitude_deg",
    "buffer_size_px",
    "east_angle_deg",
    "elevation_from_airmass",
    "hour_angle_deg",
    "north_angle_deg",
    "parallactic_angle_deg",
    "pixel_scale_arcsec",
    "subband_shifts_px",
    "subfilter_edges_nm",
    "visit_geometry",
    "zenith_direction_deg",
]

# Step along the sky used to differentiate the WCS: small enough that the
# projection is linear over it, large enough to stay far above rounding.
_WCS_STEP_ARCSEC = 1.0

# Weights of the two edges of a sub-band at its two split points.
_SPLIT_WEIGHTS = np.array([[0.75, 0.25], [0.25, 0.75]])

_ARCSEC_PER_RAD = 180.0 / math.pi * 3600.0


# --------------------------------------------------------------------------
# Spherical astronomy on the local sky
# --------------------------------------------------------------------------


def hour_angle_deg(
    era_deg: npt.ArrayLike, longitude_deg: npt.ArrayLike, ra_deg: npt.ArrayLike
) -> np.ndarray | float:
    """Local hour angle from the Earth rotation angle.

    ``HA = ERA + longitude − RA``, wrapped to (−180, 180] degrees.

    Parameters
    ----------
    era_deg : array_like
        Earth rotation angle, degrees.
    longitude_deg : array_like
        Observatory longitude, degrees, East positive.
    ra_deg : array_like
        Right ascension of the source, degrees.

    Returns
    -------
    ndarray or float
        Hour angle, degrees, in (−180, 180]; positive West of the meridian
        (after transit). Shaped as the broadcast of the inputs.
    """
    raw = np.asarray(era_deg, dtype=float) + np.asarray(longitude_deg, dtype=float)
    raw = raw - np.asarray(ra_deg, dtype=float)
    return (180.0 - np.mod(180.0 - raw, 360.0))[()]


def parallactic_angle_deg(
    hour_angle_deg: npt.ArrayLike, dec_deg: npt.ArrayLike, latitude_deg: npt.ArrayLike
) -> np.ndarray | float:
    """Parallactic angle: position angle of the zenith seen from the source.

    ``q = atan2(sin H cos φ, sin φ cos δ − cos φ sin δ cos H)``, the
    spherical-triangle formula for the angle at the source between the
    directions of the North celestial pole and of the zenith, measured from
    North through East (e.g. Meeus, *Astronomical Algorithms*, Eq. 14.1, there
    divided through by cos φ). Positive West of the meridian, where the zenith
    lies East of North.

    Parameters
    ----------
    hour_angle_deg : array_like
        Hour angle of the source, degrees, positive West.
    dec_deg : array_like
        Declination of the source, degrees.
    latitude_deg : array_like
        Geodetic latitude of the observatory, degrees.

    Returns
    -------
    ndarray or float
        Parallactic angle, degrees, in (−180, 180].
    """
    h = np.radians(hour_angle_deg)
    dec = np.radians(dec_deg)
    lat = np.radians(latitude_deg)
    q = np.arctan2(
        np.sin(h) * np.cos(lat), np.sin(lat) * np.cos(dec) - np.cos(lat) * np.sin(dec) * np.cos(h)
    )
    return np.degrees(q)[()]


def altitude_deg(
    hour_angle_deg: npt.ArrayLike, dec_deg: npt.ArrayLike, latitude_deg: npt.ArrayLike
) -> np.ndarray | float:
    """Geometric (unrefracted) altitude of a source.

    ``sin a = sin φ sin δ + cos φ cos δ cos H``.

    Parameters
    ----------
    hour_angle_deg : array_like
        Hour angle of the source, degrees.
    dec_deg : array_like
        Declination of the source, degrees.
    latitude_deg : array_like
        Geodetic latitude of the observatory, degrees.

    Returns
    -------
    ndarray or float
        Altitude above the horizon, degrees, in [−90, 90]; refraction would
        raise it by about an arcminute at 45°.
    """
    h = np.radians(hour_angle_deg)
    dec = np.radians(dec_deg)
    lat = np.radians(latitude_deg)
    sin_alt = np.sin(lat) * np.sin(dec) + np.cos(lat) * np.cos(dec) * np.cos(h)
    return np.degrees(np.arcsin(np.clip(sin_alt, -1.0, 1.0)))[()]


def airmass_from_altitude(alt_deg: npt.ArrayLike) -> np.ndarray | float:
    """Plane-parallel airmass, the secant of the zenith distance.

    ``X = 1 / sin(alt)``; within 0.3 % of the refined formulas (Hardie, Young)
    up to airmass 2.

    Parameters
    ----------
    alt_deg : array_like
        Altitude, degrees, in (0, 90].

    Returns
    -------
    ndarray or float
        Airmass, >= 1.

    Raises
    ------
    ValueError
        If an altitude lies outside (0, 90] degrees; the message names it.
    """
    alt = _checked_elevation_deg(alt_deg)
    return (1.0 / np.sin(np.radians(alt)))[()]


def elevation_from_airmass(airmass: npt.ArrayLike) -> np.ndarray | float:
    """Elevation (altitude) at which the secant airmass takes a value.

    The inverse of :func:`airmass_from_altitude`, ``alt = arcsin(1/X)``, for
    headers that give ``BORE-AIRMASS`` but no ``BORE-ALT``.

    Parameters
    ----------
    airmass : array_like
        Airmass, finite and >= 1.

    Returns
    -------
    ndarray or float
        Elevation, degrees, in (0, 90].

    Raises
    ------
    ValueError
        If an airmass is below 1 or not finite; the message names it.
    """
    x = np.asarray(airmass, dtype=float)
    bad = ~((x >= 1.0) & np.isfinite(x))
    if np.any(bad):
        raise ValueError(f"airmass {_first_values(x[bad])} is not a finite number >= 1")
    return np.degrees(np.arcsin(1.0 / x))[()]


# --------------------------------------------------------------------------
# Directions on the tile grid, from its WCS
# --------------------------------------------------------------------------


def _sky_axes_px(wcs: WCS, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Pixel displacements per arcsecond toward celestial North and East.

    Central differences of the WCS over ±1 arcsec along the great circles
    toward North (position angle 0) and East (90) in ICRS, whatever the WCS's
    own celestial frame.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS of the tile.
    x, y : array_like
        0-based pixel position(s).

    Returns
    -------
    north, east : ndarray
        Arrays of shape ``(..., 2)`` holding ``(dx, dy)`` per arcsecond.
    """
    _check_celestial(wcs)
    x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    centre = wcs.pixel_to_world(x, y).icrs
    position_angles = np.array([0.0, 180.0, 90.0, 270.0]).reshape((4,) + (1,) * x.ndim)
    lon, lat = offset_by(
        centre.ra,
        centre.dec,
        position_angles * u.deg,
        _WCS_STEP_ARCSEC * u.arcsec,
    )
    px, py = wcs.world_to_pixel(SkyCoord(lon, lat, frame="icrs"))
    displacement = np.stack([px, py], axis=-1) / (2.0 * _WCS_STEP_ARCSEC)
    north = displacement[0] - displacement[1]
    east = displacement[2] - displacement[3]
    return north, east


def _angle_from_y_toward_x(vector_xy: np.ndarray) -> np.ndarray | float:
    """Angle of ``(dx, dy)`` vectors from +y toward +x, degrees."""
    return np.degrees(np.arctan2(vector_xy[..., 0], vector_xy[..., 1]))[()]


def north_angle_deg(wcs: WCS, x: npt.ArrayLike, y: npt.ArrayLike) -> np.ndarray | float:
    """Direction of celestial North on the pixel grid.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS of the tile (any celestial frame; North
        is that of ICRS).
    x, y : array_like
        0-based pixel position(s) at which to evaluate it.

    Returns
    -------
    ndarray or float
        Angle, degrees in (−180, 180], from the +y axis toward the +x axis:
        0 when North is up (+y), 90 when it points along +x.
    """
    north, _ = _sky_axes_px(wcs, x, y)
    return _angle_from_y_toward_x(north)


def east_angle_deg(wcs: WCS, x: npt.ArrayLike, y: npt.ArrayLike) -> np.ndarray | float:
    """Direction of celestial East on the pixel grid.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS of the tile.
    x, y : array_like
        0-based pixel position(s).

    Returns
    -------
    ndarray or float
        Angle, degrees in (−180, 180], from +y toward +x: −90 on the usual
        East-left grid, +90 on a flipped (East-right) one.
    """
    _, east = _sky_axes_px(wcs, x, y)
    return _angle_from_y_toward_x(east)


def zenith_direction_deg(
    parallactic_angle_deg: npt.ArrayLike, wcs: WCS, x: npt.ArrayLike, y: npt.ArrayLike
) -> np.ndarray | float:
    """Direction of the zenith on the tile grid.

    The zenith lies at position angle ``q`` on the sky, i.e. along
    ``cos q · N + sin q · E`` with ``N`` and ``E`` the pixel displacements of a
    unit step toward North and East at the point (the columns of the local
    Jacobian of the WCS). On a North-up, East-left grid this is ``a = −q``; on
    a flipped grid ``a = +q``; rotating the WCS rotates ``a`` with it.

    Parameters
    ----------
    parallactic_angle_deg : array_like
        Parallactic angle ``q``, degrees (North through East). Broadcast
        against ``x`` and ``y``.
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS of the tile.
    x, y : array_like
        0-based pixel position(s).

    Returns
    -------
    ndarray or float
        Angle ``a``, degrees in (−180, 180], from +y toward +x, such that a
        shift of ``d`` pixels toward the zenith is ``(dy, dx) = (d cos a, d sin a)``.
    """
    north, east = _sky_axes_px(wcs, x, y)
    q = np.radians(np.asarray(parallactic_angle_deg, dtype=float))[..., np.newaxis]
    return _angle_from_y_toward_x(np.cos(q) * north + np.sin(q) * east)


def pixel_scale_arcsec(wcs: WCS, x: npt.ArrayLike, y: npt.ArrayLike) -> np.ndarray | float:
    """Local pixel scale of the tile: the side of a square of equal area.

    ``sqrt(pixel area on the sky)``, from the local Jacobian of the WCS; for
    the square pixels of a tile the same in every direction.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS of the tile.
    x, y : array_like
        0-based pixel position(s).

    Returns
    -------
    ndarray or float
        Pixel scale, arcseconds per pixel.
    """
    north, east = _sky_axes_px(wcs, x, y)
    return _scale_from_axes(north, east)[()]


def _scale_from_axes(north: np.ndarray, east: np.ndarray) -> np.ndarray:
    """Arcsec per pixel from the pixel displacements per arcsec toward North and East."""
    pixels_per_arcsec2 = np.abs(north[..., 0] * east[..., 1] - north[..., 1] * east[..., 0])
    return 1.0 / np.sqrt(pixels_per_arcsec2)


def _check_celestial(wcs: WCS) -> None:
    """Refuse a WCS that is not a plain two-dimensional celestial one."""
    if not isinstance(wcs, WCS):
        raise TypeError(f"expected an astropy.wcs.WCS, not {type(wcs).__name__}")
    if wcs.pixel_n_dim != 2 or not wcs.has_celestial or wcs.world_n_dim != 2:
        raise ValueError(
            f"the tile WCS must be two-dimensional and celestial, not {list(wcs.wcs.ctype)}"
        )


# --------------------------------------------------------------------------
# Geometry of one visit
# --------------------------------------------------------------------------


@attrs.frozen
class VisitGeometry:
    """DCR geometry of one visit at one position on the tile.

    Parameters
    ----------
    x_px, y_px : float
        0-based tile pixel at which the WCS quantities were evaluated.
    ra_deg, dec_deg : float
        ICRS position used for the hour and parallactic angles, degrees: the
        boresight, or the pixel's own position when ``local``.
    hour_angle_deg : float
        Hour angle, degrees, in (−180, 180].
    parallactic_angle_deg : float
        Parallactic angle ``q``, degrees, North through East.
    altitude_deg : float
        Elevation used for the refraction, degrees: ``BORE-ALT`` (observed), or
        the geometric altitude of the pixel when ``local``.
    airmass : float
        ``BORE-AIRMASS``, or the secant airmass of the pixel when ``local``.
    zenith_direction_deg : float
        Direction ``a`` of the zenith on the tile grid, degrees from +y toward +x.
    pixel_scale_arcsec : float
        Pixel scale of the tile at the position, arcsec per pixel.
    local : bool
        Whether RA/Dec, altitude and airmass are those of the pixel rather
        than the boresight's.
    """

    x_px: float
    y_px: float
    ra_deg: float
    dec_deg: float
    hour_angle_deg: float
    parallactic_angle_deg: float
    altitude_deg: float
    airmass: float
    zenith_direction_deg: float
    pixel_scale_arcsec: float
    local: bool = False

    def shift_px(self, offset_arcsec: npt.ArrayLike) -> np.ndarray:
        """Pixel shifts toward the zenith for offsets on the sky.

        Parameters
        ----------
        offset_arcsec : array_like
            Offsets toward the zenith, arcseconds (negative: away from it),
            e.g. differential refractions.

        Returns
        -------
        ndarray
            Array of shape ``offset_arcsec.shape + (2,)`` holding
            ``(dy, dx) = (d cos a, d sin a)`` with ``d`` the offset in pixels.
        """
        d_px = np.asarray(offset_arcsec, dtype=float) / self.pixel_scale_arcsec
        a = math.radians(self.zenith_direction_deg)
        return np.stack([d_px * math.cos(a), d_px * math.sin(a)], axis=-1)


def visit_geometry(
    visit: VisitInfo,
    wcs: WCS,
    x: float | None = None,
    y: float | None = None,
    *,
    local: bool = False,
) -> VisitGeometry:
    """DCR geometry of a visit at a position on the tile.

    By default, as Rubin does, the hour angle comes from ``AVG-ERA``,
    ``OBS-LONG`` and ``BORE-RA``, the parallactic angle from it, ``BORE-DEC``
    and ``OBS-LAT``, and the altitude and airmass are ``BORE-ALT`` and
    ``BORE-AIRMASS``; the position ``(x, y)`` then only sets the direction of
    the zenith on the grid and the pixel scale. With ``local=True`` the RA and
    Dec are those of pixel ``(x, y)`` from the WCS and the hour angle,
    parallactic angle, geometric altitude and secant airmass are computed
    there, which matters on tiles of a degree or more.

    Parameters
    ----------
    visit : VisitInfo
        Metadata of the visit.
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS of the tile.
    x, y : float, optional
        0-based tile pixel, e.g. the centre of a subregion. Both or neither;
        if neither, the centre of the tile, which needs ``wcs.pixel_shape``.
    local : bool, optional
        Evaluate RA/Dec, altitude, airmass and parallactic angle at the pixel
        rather than at the boresight.

    Returns
    -------
    VisitGeometry

    Raises
    ------
    ValueError
        If only one of ``x`` and ``y`` is given, the tile size is unknown when
        neither is, or (``local``) the pixel is below the horizon.
    """
    x, y = _position_or_centre(wcs, x, y)
    north, east = _sky_axes_px(wcs, x, y)
    site = visit.observatory
    if local:
        position = wcs.pixel_to_world(x, y).icrs
        ra, dec = float(position.ra.deg), float(position.dec.deg)
        hour_angle = float(hour_angle_deg(visit.era_deg, site.longitude_deg, ra))
        altitude = float(altitude_deg(hour_angle, dec, site.latitude_deg))
        if not altitude > 0.0:
            raise ValueError(
                f"visit {visit.visit}: pixel ({x:g}, {y:g}) at RA {ra:.5f}, Dec {dec:.5f} deg "
                f"is {altitude:.3f} deg below the horizon"
            )
        airmass = float(airmass_from_altitude(altitude))
    else:
        ra, dec = visit.boresight_ra_deg, visit.boresight_dec_deg
        hour_angle = float(hour_angle_deg(visit.era_deg, site.longitude_deg, ra))
        altitude, airmass = visit.boresight_alt_deg, visit.boresight_airmass
    q = float(parallactic_angle_deg(hour_angle, dec, site.latitude_deg))
    q_rad = math.radians(q)
    zenith = float(_angle_from_y_toward_x(math.cos(q_rad) * north + math.sin(q_rad) * east))
    return VisitGeometry(
        x_px=x,
        y_px=y,
        ra_deg=ra,
        dec_deg=dec,
        hour_angle_deg=hour_angle,
        parallactic_angle_deg=q,
        altitude_deg=float(altitude),
        airmass=float(airmass),
        zenith_direction_deg=zenith,
        pixel_scale_arcsec=float(_scale_from_axes(north, east)),
        local=local,
    )


def _position_or_centre(wcs: WCS, x: float | None, y: float | None) -> tuple[float, float]:
    """The given pixel, or the centre of the tile when none is given."""
    if x is None and y is None:
        if wcs.pixel_shape is None:
            raise ValueError(
                "the tile WCS does not know the tile size (no NAXIS1/NAXIS2): pass x and y"
            )
        nx, ny = wcs.pixel_shape
        return (nx - 1) / 2.0, (ny - 1) / 2.0
    if x is None or y is None:
        raise ValueError("give both x and y, or neither for the tile centre")
    return float(x), float(y)


# --------------------------------------------------------------------------
# Sub-bands and their shifts
# --------------------------------------------------------------------------


def subfilter_edges_nm(
    effective_wavelength_nm: float, bandwidth_nm: float, n_subfilters: int
) -> np.ndarray:
    """Edges of the sub-bands that split a band evenly in wavelength.

    With ``lo = λ_eff − bw/2``, sub-band ``s`` spans
    ``[lo + s·bw/S, lo + (s+1)·bw/S)``.

    Parameters
    ----------
    effective_wavelength_nm : float
        Effective (central) wavelength of the band, nm.
    bandwidth_nm : float
        Width of the band, nm, > 0.
    n_subfilters : int
        Number of sub-bands ``S``, >= 1.

    Returns
    -------
    ndarray
        Array of shape ``(S, 2)``: the blue and red edge of each sub-band, nm,
        blue sub-band first.

    Raises
    ------
    ValueError
        If ``bandwidth_nm`` is not positive or ``n_subfilters`` not a positive integer.
    """
    if not (isinstance(n_subfilters, int | np.integer) and n_subfilters >= 1):
        raise ValueError(f"n_subfilters must be an integer >= 1, not {n_subfilters!r}")
    if not (math.isfinite(bandwidth_nm) and bandwidth_nm > 0.0):
        raise ValueError(f"bandwidth {bandwidth_nm!r} nm must be finite and positive")
    if not math.isfinite(effective_wavelength_nm):
        raise ValueError(f"effective wavelength {effective_wavelength_nm!r} nm is not finite")
    lo = effective_wavelength_nm - bandwidth_nm / 2.0
    step = bandwidth_nm / n_subfilters
    s = np.arange(n_subfilters, dtype=float)[:, np.newaxis]
    return lo + (s + np.array([0.0, 1.0])) * step


def subband_shifts_px(
    visit: VisitInfo,
    wcs: WCS,
    x: float | None,
    y: float | None,
    *,
    effective_wavelength_nm: float,
    bandwidth_nm: float,
    n_subfilters: int,
    split: bool = False,
    split_threshold_px: float = 0.1,
    local: bool = False,
    mode: Literal["edges", "throughput"] = "edges",
    transmission: Transmission | None = None,
    at: VisitGeometry | None = None,
) -> np.ndarray:
    """DCR shift of each sub-band of a band, for one visit at one tile position.

    The shift of a sub-band is its differential refraction relative to the
    band's effective wavelength (:func:`dcr_dask.physics.refraction.differential_refraction_rad`)
    at the visit's elevation, converted to pixels with the local pixel scale
    and laid along the direction of the zenith (:func:`visit_geometry`).
    Positive refraction (blue sub-bands) moves toward the zenith.

    ``mode="edges"`` (Rubin's): with ``d0``, ``d1`` the differential
    refraction at the blue and red edge of the sub-band, the unsplit shift is
    ``(d0 + d1)/2``; split, the two shifts are ``0.75·d0 + 0.25·d1`` and
    ``0.25·d0 + 0.75·d1``. ``mode="throughput"``: the differential refraction
    averaged over the sub-band with the transmission curve as weight
    (:func:`dcr_dask.physics.transmission.band_average`); split, over each half of the
    sub-band. In both modes, when the two split shifts of a sub-band differ by
    less than ``split_threshold_px``, both are replaced by their midpoint.

    Parameters
    ----------
    visit : VisitInfo
        Metadata of the visit (site, weather, pointing).
    wcs : astropy.wcs.WCS
        Two-dimensional celestial WCS of the tile.
    x, y : float or None
        0-based tile pixel (e.g. a subregion centre); None for the tile centre.
    effective_wavelength_nm : float
        Effective wavelength of the band, nm: the reference of the
        differential refraction.
    bandwidth_nm : float
        Width of the band, nm.
    n_subfilters : int
        Number of sub-bands ``S``.
    split : bool, optional
        Give two shifts per sub-band (``splitSubfilters``).
    split_threshold_px : float, optional
        Pixels; split shifts closer than this are merged (``splitThreshold``).
    local : bool, optional
        Evaluate the geometry at the pixel instead of the boresight
        (see :func:`visit_geometry`).
    mode : {"edges", "throughput"}, optional
        How a sub-band's refraction is averaged over its wavelengths.
    transmission : Transmission, optional
        The band's transmission curve; required when ``mode="throughput"``.
    at : VisitGeometry, optional
        The visit's geometry at ``(x, y)`` with ``local``
        (:func:`visit_geometry`), when the caller has it already; it is then
        not computed again.

    Returns
    -------
    ndarray
        Array of shape ``(S, K, 2)``, ``K = 2`` if ``split`` else 1, of
        ``(dy, dx)`` shifts in pixels, blue sub-band first.

    Raises
    ------
    ValueError
        For an unknown ``mode``, a missing ``transmission``, a negative
        threshold, sub-band edges outside the range of the refraction formula
        (naming the wavelength), or a sub-band without throughput.
    """
    if mode not in ("edges", "throughput"):
        raise ValueError(f"mode must be 'edges' or 'throughput', not {mode!r}")
    if mode == "throughput" and transmission is None:
        raise ValueError("mode='throughput' needs the band's transmission curve")
    if not split_threshold_px >= 0.0:
        raise ValueError(f"split_threshold_px {split_threshold_px!r} must be >= 0")
    geometry = at if at is not None else visit_geometry(visit, wcs, x, y, local=local)
    edges = subfilter_edges_nm(effective_wavelength_nm, bandwidth_nm, n_subfilters)

    def dcr_arcsec(wavelength_nm: npt.ArrayLike) -> np.ndarray:
        offset = differential_refraction_rad(
            wavelength_nm,
            effective_wavelength_nm,
            geometry.altitude_deg,
            visit.weather,
            visit.observatory,
        )
        return np.asarray(offset) * _ARCSEC_PER_RAD

    # Evaluated in both modes: refuses sub-band edges outside the formula's range, naming them.
    at_edges = dcr_arcsec(edges)
    if transmission is None or mode == "edges":
        offsets = at_edges @ _SPLIT_WEIGHTS.T if split else at_edges.mean(axis=1, keepdims=True)
    else:
        middle = edges.mean(axis=1)
        intervals = (
            np.stack([edges[:, 0], middle, middle, edges[:, 1]], axis=1).reshape(-1, 2, 2)
            if split
            else edges[:, np.newaxis, :]
        )
        offsets = np.array(
            [
                [band_average(transmission, dcr_arcsec, lo, hi) for lo, hi in row]
                for row in intervals
            ]
        )
    offsets_px = offsets / geometry.pixel_scale_arcsec
    if split:
        close = np.abs(offsets_px[:, 0] - offsets_px[:, 1]) < split_threshold_px
        offsets[close] = offsets[close].mean(axis=1, keepdims=True)
    return geometry.shift_px(offsets)


def buffer_size_px(shifts: npt.ArrayLike) -> int:
    """Halo needed around a subregion so that every shifted pixel comes from inside it.

    ``ceil(max |shift component|) + 1``, over every visit, sub-band and split
    point, and over both axes: the halo is per axis, as in Rubin's
    ``DcrAssembleCoaddTask``.

    Parameters
    ----------
    shifts : array_like
        Shifts in pixels, any shape ending in 2 (``(dy, dx)``), e.g. the output
        of :func:`subband_shifts_px` or a stack of them over visits.

    Returns
    -------
    int
        Buffer size, pixels, >= 1.

    Raises
    ------
    ValueError
        If a shift is not finite.
    """
    array = np.asarray(shifts, dtype=float)
    if array.size == 0:
        return 1
    if not np.all(np.isfinite(array)):
        raise ValueError("shifts must be finite")
    return math.ceil(float(np.max(np.abs(array)))) + 1
