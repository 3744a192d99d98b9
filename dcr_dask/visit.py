"""Immutable descriptions of one visit: the site, the weather and the pointing.

These classes hold what the primary header of a warp says (docs/file-formats.md,
"Visit keywords"), after validation and after missing optional values have been
filled in. They carry no pixels and know nothing of files; the parser lives in
:mod:`dcr_dask.io.metadata` and the quantities derived from them (hour angle,
parallactic angle, refraction) in :mod:`dcr_dask.physics.geometry` and
:mod:`dcr_dask.physics.refraction`.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Observatory:
    """Location of the telescope.

    Parameters
    ----------
    longitude_deg : float
        Geodetic longitude, degrees, East positive.
    latitude_deg : float
        Geodetic latitude, degrees.
    elevation_m : float
        Height above sea level, metres.
    """

    longitude_deg: float
    latitude_deg: float
    elevation_m: float


@attrs.frozen
class Weather:
    """Ambient conditions that set the refraction.

    Parameters
    ----------
    temperature_c : float
        Air temperature, degrees Celsius.
    pressure_pa : float
        Air pressure, pascals.
    humidity_pct : float
        Relative humidity, percent (0-100).
    defaulted : tuple of str
        Header keywords (``AIRTEMP``, ``AIRPRESS``, ``HUMIDITY``) that were
        absent and whose values were filled in from the observatory elevation.
    """

    temperature_c: float
    pressure_pa: float
    humidity_pct: float
    defaulted: tuple[str, ...] = ()


@attrs.frozen
class VisitInfo:
    """Metadata of one visit, validated and completed.

    Parameters
    ----------
    visit : int
        Visit identifier (``EXPID``, ``IDNUM``, ``VISIT`` or the Butler's data
        id), unique within a run.
    band : str
        Band (or, failing that, physical filter) name.
    observatory : Observatory
        Site of the telescope.
    weather : Weather
        Conditions at mid-exposure.
    era_deg : float
        Earth rotation angle at mid-exposure, degrees (``AVG-ERA`` or computed
        from the mid-exposure time).
    boresight_ra_deg, boresight_dec_deg : float
        ICRS position of the boresight, degrees.
    boresight_alt_deg : float
        Boresight altitude (elevation), degrees, in (0, 90].
    boresight_airmass : float
        Boresight airmass, >= 1.
    mjd : float or None
        Mid-exposure time as a UT1 MJD (from ``MJD-AVG-UT1``, or converted from ``DATE-AVG``),
        or None when only ``AVG-ERA`` is known.
    boresight_az_deg : float or None
        Boresight azimuth, degrees, if given.
    exptime_s : float or None
        Exposure time, seconds.
    rotang_deg : float or None
        Camera rotator angle, degrees (recorded only).
    rottype : str or None
        Type of the rotator angle (recorded only).
    psf_fwhm_px : float or None
        PSF full width at half maximum, pixels, if known from the header, the
        afw archive or the stars (:attr:`psf_source` says which).
    magzero : float or None
        Photometric zero point of the image, magnitudes.
    bunit : str or None
        Flux unit of the image.
    filename : str or None
        File the metadata came from, for messages.
    visit_source : str or None
        Header keyword the visit id was read from (``EXPID``, ``IDNUM``, ...).
    band_source : str or None
        Header keyword or archive entry the band was read from.
    psf_source : str or None
        Where the PSF came from: ``PSF-FWHM``, ``PSF HDU``, ``archive <class>``,
        ``archive ExposureSummaryStats psfSigma`` or ``measured from <n> stars``.

    Notes
    -----
    The three ``*_source`` fields record provenance only and take no part in
    comparisons.
    """

    visit: int
    band: str
    observatory: Observatory
    weather: Weather
    era_deg: float
    boresight_ra_deg: float
    boresight_dec_deg: float
    boresight_alt_deg: float
    boresight_airmass: float
    mjd: float | None = None
    boresight_az_deg: float | None = None
    exptime_s: float | None = None
    rotang_deg: float | None = None
    rottype: str | None = None
    psf_fwhm_px: float | None = None
    magzero: float | None = None
    bunit: str | None = None
    filename: str | None = None
    visit_source: str | None = attrs.field(default=None, eq=False)
    band_source: str | None = attrs.field(default=None, eq=False)
    psf_source: str | None = attrs.field(default=None, eq=False)
