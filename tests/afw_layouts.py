"""Test writers that lay out a warp as afw (and the Butler) wrote it in each era.

Written with astropy alone, following afw's source:

- primary header: ``VisitInfo.cc`` ``setVisitInfoMetadata`` (a value is written
  only when finite; ``IDNUM`` since 2021-06; ``EXPID`` from VisitInfo until
  2023-06 and from ``ExposureInfo::getId`` since 2021-09, a per-detector id),
  ``ExposureInfo::_startWriteFits`` (``AR_HDU``, ``ARCHIVE_ID_<KEY>`` since
  2019-06 and ``<KEY>_ID``), no ``FILTER`` since 2020-11, and the Butler's
  provenance (obs_base ``add_provenance_to_fits_header``: ``LSST BUTLER ID``,
  ``RUN``, ``DATASETTYPE`` and ``DATAID <DIM>`` for the data id's required
  dimensions);
- image HDUs: ``EXTTYPE`` (and since 2021-05 ``EXTNAME``), the WCS, ``LTV1/2``
  and the ``A`` WCS of ``xy0``; masks uint16 (``BITPIX = 16``,
  ``BZERO = 32768``) before 2017-06;
- the table archive (``OutputArchive.cc``): ``ARCHIVE_INDEX`` (columns ``id``,
  ``cat.archive``, ``cat.persistable``, ``row0``, ``nrows``, ``name``,
  ``module``), then ``ARCHIVE_DATA`` tables with ``AR_CATN``, ``AR_NAME`` and
  (since 2021-05) ``EXTNAME``; ``GaussianPsf`` (``dimensions_x``,
  ``dimensions_y``, ``sigma``), ``FilterLabel`` (flag bits ``band_exists``,
  ``physical_exists``; ``band``, ``physical``), ``ExposureSummaryStats`` (a
  YAML blob in the ``bytes`` column).

Eras (``ERAS``):

``current``
    ``EXTNAME`` + ``EXTTYPE``; ``IDNUM``, a per-detector ``EXPID``, the Butler's
    ``LSST BUTLER DATAID VISIT``; no ``FILTER`` (band only in the
    ``FilterLabel``); ``GaussianPsf`` and ``ExposureSummaryStats``.
``2020``
    ``EXTTYPE`` only; ``EXPID`` (the visit), no ``IDNUM``, no ``FILTER``;
    ``FilterLabel`` and ``GaussianPsf`` tables without ``EXTNAME``.
``old``
    no ``EXTNAME``/``EXTTYPE`` (HDUs by position); uint16 mask; ``EXPID``,
    ``FILTER``; ``TIME-MID`` (UTC) instead of ``DATE-AVG``/``MJD-AVG-UT1``/
    ``AVG-ERA``; neither ``BORE-ALT`` nor ``BORE-AIRMASS``; the PSF named by
    ``PSF_ID`` only.

``psf="stars"`` leaves every PSF out (no archive PSF, no summary statistics),
so that the reader must measure the stars.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from dcr_dask.io.metadata import _date_from_ut1_mjd
from dcr_dask.kernels.psf import FWHM_PER_SIGMA
from dcr_dask.masks import MaskPlanes
from dcr_dask.visit import VisitInfo

ERAS = ("current", "2020", "old")

#: Detector of the per-detector exposure id ``EXPID = visit * 200 + detector`` (HSC style).
DETECTOR = 42


def _card(key: str) -> str:
    return f"HIERARCH {key}" if len(key) > 8 or " " in key else key


def _set(header: fits.Header, key: str, value: object, comment: str = "") -> None:
    """Set a card as cfitsio writes afw's PropertyList (HIERARCH beyond 8 characters)."""
    if isinstance(value, float) and not np.isfinite(value):
        return  # afw's setDouble: only finite values
    card = _card(key)
    header[card] = (value, "" if card.startswith("HIERARCH") else comment)


def _tai(mjd_ut1: float) -> Time:
    """The TAI time of a UT1 MJD (UT1-UTC from astropy's bundled table, as the reader)."""
    return Time(_date_from_ut1_mjd(mjd_ut1), format="isot", scale="tai")


def _tai_date(mjd_ut1: float) -> str:
    """``DATE-AVG`` as afw writes it: TAI, nanoseconds, no zone."""
    tai = _tai(mjd_ut1)
    return tai.strftime("%Y-%m-%dT%H:%M:%S") + f"{tai.datetime.microsecond / 1e6:.9f}"[1:]


def primary_header(visit: VisitInfo, era: str) -> fits.Header:
    """The primary header of a warp of ``visit`` written by afw (and the Butler) of ``era``."""
    h = fits.Header()
    _set(h, "EXPTIME", visit.exptime_s if visit.exptime_s is not None else 30.0)
    _set(h, "DARKTIME", 30.5)
    assert visit.mjd is not None
    if era == "old":
        _set(h, "TIME-MID", _tai(visit.mjd).utc.isot + "Z", "Mid of exposure (UTC)")
    else:
        _set(h, "DATE-AVG", _tai_date(visit.mjd), "TAI date at middle of observation")
        _set(h, "TIMESYS", "TAI")
        _set(h, "MJD-AVG-UT1", visit.mjd, "UT1 MJD date at ctr of obs")
        _set(h, "AVG-ERA", visit.era_deg, "Earth rot ang at ctr of obs (deg)")
    _set(h, "BORE-RA", visit.boresight_ra_deg, "ICRS RA (deg) at boresight")
    _set(h, "BORE-DEC", visit.boresight_dec_deg, "ICRS Dec (deg) at boresight")
    if visit.boresight_az_deg is not None:
        _set(h, "BORE-AZ", visit.boresight_az_deg, "Refr app topo az (deg) at bore")
    if era != "old":
        _set(h, "BORE-ALT", visit.boresight_alt_deg, "Refr app topo alt (deg) at bore")
        _set(h, "BORE-AIRMASS", visit.boresight_airmass, "Airmass at boresight")
    _set(h, "BORE-ROTANG", 12.5, "Rotation angle (deg) at boresight")
    _set(h, "ROTTYPE", "SKY", "Type of rotation angle")
    _set(h, "OBS-LONG", visit.observatory.longitude_deg, "Telescope longitude (+E, deg)")
    _set(h, "OBS-LAT", visit.observatory.latitude_deg, "Telescope latitude (deg)")
    _set(h, "OBS-ELEV", visit.observatory.elevation_m, "Telescope elevation (m)")
    weather = visit.weather
    for key, value, comment in (
        ("AIRTEMP", weather.temperature_c, "Outside air temperature (C)"),
        ("AIRPRESS", weather.pressure_pa, "Outdoor air pressure (P)"),
        ("HUMIDITY", weather.humidity_pct, "Relative humidity (%)"),
    ):
        if key not in weather.defaulted:  # afw: NaN (unknown) is not written
            _set(h, key, value, comment)
    if era == "current":
        _set(h, "INSTRUMENT", "HSC", "Short name of the instrument that took this data")
        _set(h, "IDNUM", visit.visit, "identifier of this full focal plane exposure")
        _set(h, "HAS-SIMULATED-CONTENT", False)
        # ExposureInfo::getId: a per-detector id, not the visit.
        _set(h, "EXPID", visit.visit * 200 + DETECTOR)
        _set(h, "LSST BUTLER ID", f"00000000-0000-4000-8000-{visit.visit:012d}")
        _set(h, "LSST BUTLER RUN", "u/someone/warps")
        _set(h, "LSST BUTLER DATASETTYPE", "deepCoadd_directWarp")
        _set(h, "LSST BUTLER DATAID INSTRUMENT", "HSC", "Data identifier")
        _set(h, "LSST BUTLER DATAID PATCH", 41, "Data identifier")
        _set(h, "LSST BUTLER DATAID SKYMAP", "hsc_rings_v1", "Data identifier")
        _set(h, "LSST BUTLER DATAID TRACT", 9813, "Data identifier")
        _set(h, "LSST BUTLER DATAID VISIT", visit.visit, "Data identifier")
    else:
        _set(h, "EXPID", visit.visit)
    if era == "old":
        _set(h, "FILTER", visit.band)
    return h


def image_header(wcs: WCS, xy0: tuple[int, int], name: str, era: str) -> fits.Header:
    """Header of one image HDU (IMAGE, MASK or VARIANCE) in ``era``'s layout."""
    x0, y0 = xy0
    local = wcs.deepcopy()
    local.wcs.crpix = local.wcs.crpix - np.array([x0, y0])
    h = fits.Header()
    if era == "current":
        h["EXTNAME"] = name
    if era in ("current", "2020"):
        h["EXTTYPE"] = name
    h["INHERIT"] = True
    h.update(local.to_header())
    h["CRVAL1A"], h["CRVAL2A"] = float(x0), float(y0)
    h["CRPIX1A"], h["CRPIX2A"] = 1.0, 1.0
    h["CTYPE1A"], h["CTYPE2A"] = "LINEAR", "LINEAR"
    h["CUNIT1A"], h["CUNIT2A"] = "PIXEL", "PIXEL"
    h["LTV1"], h["LTV2"] = float(-x0), float(-y0)
    return h


def _archive_table(columns: list[fits.Column], names: list[str], catn: int, era: str):
    hdu = fits.BinTableHDU.from_columns(columns)
    h = hdu.header
    h["EXTTYPE"] = "ARCHIVE_DATA"
    h["AR_CATN"] = (catn, "# of this catalog relative to the start of this archive")
    for name in names:
        h.append(("AR_NAME", name, "Class name for objects stored here"), end=True)
    if era == "current":
        h["EXTNAME"] = names[-1]
    _set(h, "AFW_TABLE_VERSION", 3)
    return hdu


def archive_hdus(
    era: str,
    *,
    band: str | None,
    physical: str | None,
    psf_sigma: float | None,
    summary_psf_sigma: float | None,
) -> tuple[list[fits.BinTableHDU], dict[str, int]]:
    """afw's table archive: the index and one data table per object.

    Returns the HDUs and the archive id of each component (``FILTER``,
    ``PSF``, ``SUMMARY_STATS``).
    """
    entries = []  # (component, class name, module, columns, header extras)
    if band is not None and era != "old":
        flags = np.array([[band is not None, physical is not None]])
        entries.append(
            (
                "FILTER",
                "FilterLabel",
                "lsst.afw.image",
                [
                    fits.Column(name="flags", format="2X", array=flags),
                    fits.Column(name="band", format="32A", array=np.array([band or ""])),
                    fits.Column(name="physical", format="32A", array=np.array([physical or ""])),
                ],
                {"TFLAG1": "band_exists", "TFLAG2": "physical_exists", "FLAGCOL": 1},
            )
        )
    if psf_sigma is not None:
        entries.append(
            (
                "PSF",
                "GaussianPsf",
                "lsst.afw.detection",
                [
                    fits.Column(name="dimensions_x", format="J", array=np.array([41])),
                    fits.Column(name="dimensions_y", format="J", array=np.array([41])),
                    fits.Column(
                        name="sigma", format="D", unit="pixel", array=np.array([psf_sigma])
                    ),
                ],
                {},
            )
        )
    if summary_psf_sigma is not None and era == "current":
        stats = {"version": 0, "psfSigma": summary_psf_sigma, "psfArea": float("nan")}
        stats["raCorners"] = [float("nan")] * 4
        blob = np.frombuffer(yaml.dump(stats, encoding="utf-8"), dtype=np.uint8)
        column = np.empty(1, dtype=object)
        column[0] = blob
        entries.append(
            (
                "SUMMARY_STATS",
                "ExposureSummaryStats",
                "lsst.afw.image",
                [fits.Column(name="bytes", format="QB", array=column)],
                {},
            )
        )
    ids = {}
    data = []
    rows = []
    for catn, (component, name, module, columns, extras) in enumerate(entries, start=1):
        ids[component] = catn + 1  # archive ids start at 1; leave 1 to another object
        hdu = _archive_table(columns, [name], catn, era)
        for key, value in extras.items():
            hdu.header[key] = value
        data.append(hdu)
        rows.append((ids[component], catn, 0, 0, 1, name, module))
    index = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="id", format="J", array=np.array([r[0] for r in rows], dtype=int)),
            fits.Column(name="cat.archive", format="J", array=np.array([r[1] for r in rows])),
            fits.Column(name="cat.persistable", format="J", array=np.array([r[2] for r in rows])),
            fits.Column(name="row0", format="J", array=np.array([r[3] for r in rows])),
            fits.Column(name="nrows", format="J", array=np.array([r[4] for r in rows])),
            fits.Column(name="name", format="64A", array=np.array([r[5] for r in rows])),
            fits.Column(name="module", format="64A", array=np.array([r[6] for r in rows])),
        ]
    )
    index.header["EXTTYPE"] = "ARCHIVE_INDEX"
    if era == "current":
        index.header["EXTNAME"] = "ARCHIVE_INDEX"
    index.header["AR_CATN"] = (0, "# of this catalog relative to the start of this archive")
    index.header["AR_NCAT"] = (len(data) + 1, "# of catalogs in this archive")
    _set(index.header, "AFW_TABLE_VERSION", 3)
    return [index, *data], ids


def write_afw_warp(
    path: Path,
    *,
    era: str,
    visit: VisitInfo,
    image: np.ndarray,
    mask: np.ndarray,
    variance: np.ndarray,
    planes: MaskPlanes,
    wcs: WCS,
    psf: str = "archive",
    physical: str | None = None,
    xy0: tuple[int, int] = (0, 0),
) -> Path:
    """Write one warp as afw of ``era`` wrote it.

    Parameters
    ----------
    psf : {"archive", "stars"}
        ``archive``: a ``GaussianPsf`` of ``visit.psf_fwhm_px`` (and, in the
        current era, the same sigma as the summary statistics' ``psfSigma``);
        ``stars``: no PSF anywhere in the file.
    """
    assert era in ERAS and psf in ("archive", "stars")
    primary = primary_header(visit, era)
    sigma = None
    if psf == "archive":
        assert visit.psf_fwhm_px is not None
        sigma = visit.psf_fwhm_px / FWHM_PER_SIGMA
    tables, ids = archive_hdus(
        era,
        band=visit.band,
        physical=physical if physical is not None else f"HSC-{visit.band.upper()}",
        psf_sigma=sigma,
        summary_psf_sigma=sigma,
    )
    _set(primary, "AR_HDU", 5, "HDU (1-indexed) containing the archive")
    for component, archive_id in ids.items():
        if era != "old":
            _set(primary, f"ARCHIVE_ID_{component}", archive_id)
        _set(primary, f"{component}_ID", archive_id)
    hdus: list = [fits.PrimaryHDU(header=primary)]
    for name, data in (("IMAGE", image), ("MASK", mask), ("VARIANCE", variance)):
        header = image_header(wcs, xy0, name, era)
        if name == "MASK":
            for key, bit, _ in planes.to_header_cards():
                header[_card(key)] = bit
        if name == "MASK" and era == "old":
            hdu = fits.ImageHDU(data=np.asarray(data).astype(np.uint16), header=header)
        else:
            dtype = np.int32 if name == "MASK" else np.float32
            hdu = fits.ImageHDU(data=np.asarray(data).astype(dtype), header=header)
        hdus.append(hdu)
    fits.HDUList([*hdus, *tables]).writeto(path)
    return path
