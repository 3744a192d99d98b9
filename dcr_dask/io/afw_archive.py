"""The afw table archive of an ``ExposureF`` file, read with astropy alone.

afw stores an Exposure's components (PSF, filter label, summary statistics,
photometric calibration, ...) after the IMAGE, MASK and VARIANCE HDUs as an
*archive* of binary tables (``afw/table/io/OutputArchive.cc``):

- an index table (``EXTTYPE = 'ARCHIVE_INDEX'``, ``AR_CATN = 0``, ``AR_NCAT``
  catalogs in all) with one row per catalog of each object: columns ``id``
  (archive id), ``cat.archive`` (the ``AR_CATN`` of the data table),
  ``cat.persistable``, ``row0``, ``nrows``, ``name`` (class name) and
  ``module``;
- data tables (``EXTTYPE = 'ARCHIVE_DATA'``, ``AR_CATN = n``, ``AR_NAME`` the
  class names stored there, and since 2021 ``EXTNAME`` the last of them).

The primary header names each component's archive id: ``ARCHIVE_ID_<KEY>``
(and, for older readers, ``<KEY>_ID``), e.g. ``ARCHIVE_ID_PSF``,
``ARCHIVE_ID_FILTER``, ``ARCHIVE_ID_SUMMARY_STATS``.

What is decoded
---------------
- PSF: ``GaussianPsf`` (afw) and ``SingleGaussianPsf`` (meas_algorithms),
  columns ``dimensions_x``, ``dimensions_y``, ``sigma`` (pixels); and
  ``DoubleGaussianPsf`` (``sigma1``, ``sigma2``, ``b``), whose FWHM is that of
  the sum of the two Gaussians. ``PiffPsf``, ``PcaPsf``, ``CoaddPsf`` and every
  other PSF class are *not* decoded (they need the Science Pipelines to
  evaluate); callers fall back to the summary statistics or to the stars.
- ``FilterLabel``: columns ``band`` and ``physical`` (strings; an empty string
  means unset, as the ``band_exists``/``physical_exists`` flags say).
- ``ExposureSummaryStats``: a YAML document in the byte-array column ``bytes``;
  its ``psfSigma`` (pixels, the PSF's Gaussian-equivalent sigma) is read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import yaml
from astropy.io import fits
from scipy import optimize

from dcr_dask.kernels.psf import FWHM_PER_SIGMA

__all__ = [
    "DECODED_PSF_CLASSES",
    "ArchivePsf",
    "archive_filter_label",
    "archive_psf",
    "archive_summary_psf_sigma",
]

#: Archive PSF classes whose width is read (others are reported by name only).
DECODED_PSF_CLASSES = ("GaussianPsf", "SingleGaussianPsf", "DoubleGaussianPsf")


@attrs.frozen
class ArchivePsf:
    """The PSF component of an archive.

    Parameters
    ----------
    class_name : str
        afw class name of the PSF (``GaussianPsf``, ``PiffPsf``, ...).
    fwhm_px : float or None
        FWHM, pixels, when the class is one of :data:`DECODED_PSF_CLASSES`.
    """

    class_name: str
    fwhm_px: float | None


def _column(table: fits.FITS_rec, *names: str) -> np.ndarray | None:
    """The first of ``names`` that is a column of ``table`` (afw wrote '.' or '_')."""
    columns = {name.lower(): name for name in table.columns.names}
    for name in names:
        if name.lower() in columns:
            return table[columns[name.lower()]]
    return None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return str(value).strip()


class _Archive:
    """Index rows of an archive, and its data tables by ``AR_CATN``."""

    def __init__(self, hdul: fits.HDUList, headers: Sequence[fits.Header]):
        self.hdul = hdul
        self.primary = headers[0]
        self.catalogs: dict[int, int] = {}
        self.index: list[dict[str, Any]] = []
        index_hdu = None
        for i, header in enumerate(headers):
            if header.get("XTENSION") != "BINTABLE":
                continue
            kind = _text(header.get("EXTTYPE", header.get("EXTNAME", "")))
            catn = header.get("AR_CATN")
            if kind == "ARCHIVE_INDEX" and index_hdu is None:
                index_hdu = i
            elif kind == "ARCHIVE_DATA" and isinstance(catn, int) and catn not in self.catalogs:
                self.catalogs[catn] = i
        if index_hdu is None:
            return
        table = hdul[index_hdu].data
        columns = [
            _column(table, "id"),
            _column(table, "cat.archive", "cat_archive"),
            _column(table, "cat.persistable", "cat_persistable"),
            _column(table, "row0"),
            _column(table, "nrows"),
            _column(table, "name"),
        ]
        found = [column for column in columns if column is not None]
        if len(found) != len(columns):
            return
        ids, cat_archive, cat_persistable, row0, nrows, name = found
        for i in range(len(table)):
            self.index.append(
                {
                    "id": int(ids[i]),
                    "cat_archive": int(cat_archive[i]),
                    "cat_persistable": int(cat_persistable[i]),
                    "row0": int(row0[i]),
                    "nrows": int(nrows[i]),
                    "name": _text(name[i]),
                }
            )

    def component_id(self, key: str) -> int | None:
        """Archive id of an ExposureInfo component (``ARCHIVE_ID_<key>`` or ``<key>_ID``)."""
        for keyword in (f"ARCHIVE_ID_{key}", f"{key}_ID"):
            value = self.primary.get(keyword)
            if isinstance(value, int | np.integer) and not isinstance(value, bool) and value > 0:
                return int(value)
        return None

    def rows(self, archive_id: int) -> tuple[str, fits.FITS_rec] | None:
        """Class name and rows of the first catalog of one archived object."""
        for entry in self.index:
            if entry["id"] == archive_id and entry["cat_persistable"] == 0:
                hdu = self.catalogs.get(entry["cat_archive"])
                if hdu is None:
                    return None
                data = self.hdul[hdu].data
                start = entry["row0"]
                return entry["name"], data[start : start + entry["nrows"]]
        return None

    def component(self, key: str) -> tuple[str, fits.FITS_rec] | None:
        archive_id = self.component_id(key)
        return None if archive_id is None else self.rows(archive_id)


def _double_gaussian_fwhm(sigma1: float, sigma2: float, b: float) -> float:
    """FWHM of ``exp(-r²/2σ1²) + b·exp(-r²/2σ2²)``, pixels."""

    def profile(r: float) -> float:
        return math.exp(-0.5 * (r / sigma1) ** 2) + b * math.exp(-0.5 * (r / sigma2) ** 2)

    half = 0.5 * profile(0.0)
    upper = 10.0 * max(sigma1, sigma2)
    return 2.0 * optimize.brentq(lambda r: profile(r) - half, 0.0, upper)


def _positive(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) and value > 0 else None


def archive_psf(hdul: fits.HDUList, headers: Sequence[fits.Header]) -> ArchivePsf | None:
    """The PSF component of an afw Exposure file.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        The open file.
    headers : sequence of astropy.io.fits.Header
        The headers of ``hdul`` (already read).

    Returns
    -------
    ArchivePsf or None
        None when the file has no archive or no PSF component in it; else the
        class name and, for :data:`DECODED_PSF_CLASSES`, the FWHM in pixels.
    """
    found = _Archive(hdul, headers).component("PSF")
    if found is None:
        return None
    name, rows = found
    if name not in DECODED_PSF_CLASSES or len(rows) != 1:
        return ArchivePsf(name, None)
    if name == "DoubleGaussianPsf":
        columns = [_column(rows, key) for key in ("sigma1", "sigma2", "b")]
        values = [v for v in columns if v is not None]
        if len(values) != len(columns):
            return ArchivePsf(name, None)
        sigma1, sigma2 = _positive(values[0][0]), _positive(values[1][0])
        b = float(values[2][0])
        if sigma1 is None or sigma2 is None or not (math.isfinite(b) and b >= 0):
            return ArchivePsf(name, None)
        return ArchivePsf(name, _double_gaussian_fwhm(sigma1, sigma2, b))
    sigma = _column(rows, "sigma")
    value = None if sigma is None else _positive(sigma[0])
    return ArchivePsf(name, None if value is None else FWHM_PER_SIGMA * value)


def archive_filter_label(
    hdul: fits.HDUList, headers: Sequence[fits.Header]
) -> tuple[str | None, str | None]:
    """Band and physical filter of the ``FilterLabel`` component.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        The open file.
    headers : sequence of astropy.io.fits.Header
        The headers of ``hdul``.

    Returns
    -------
    band, physical : str or None
        Each None when unset or when there is no ``FilterLabel`` component.
    """
    found = _Archive(hdul, headers).component("FILTER")
    if found is None or found[0] != "FilterLabel" or len(found[1]) != 1:
        return None, None
    rows = found[1]
    out = []
    for key in ("band", "physical"):
        column = _column(rows, key)
        text = _text(column[0]) if column is not None else ""
        out.append(text or None)
    return out[0], out[1]


def archive_summary_psf_sigma(hdul: fits.HDUList, headers: Sequence[fits.Header]) -> float | None:
    """``psfSigma`` of the ``ExposureSummaryStats`` component, pixels.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        The open file.
    headers : sequence of astropy.io.fits.Header
        The headers of ``hdul``.

    Returns
    -------
    float or None
        The sigma, or None when absent, not finite or not positive (afw writes
        NaN when it was not measured), or unreadable.
    """
    found = _Archive(hdul, headers).component("SUMMARY_STATS")
    if found is None or found[0] != "ExposureSummaryStats" or len(found[1]) != 1:
        return None
    column = _column(found[1], "bytes")
    if column is None:
        return None
    blob = bytes(np.asarray(column[0], dtype=np.uint8))
    try:
        stats = yaml.safe_load(blob)
    except yaml.YAMLError:
        return None
    if not isinstance(stats, dict) or "psfSigma" not in stats:
        return None
    try:
        return _positive(stats["psfSigma"])
    except (TypeError, ValueError):
        return None
