"""afw-style multi-extension FITS files: one warp (or coadd) per file.

The layout (docs/file-formats.md, "Input warps") follows Rubin's
``afw`` ``ExposureF``: an empty primary HDU with the visit metadata, then
``IMAGE`` (float32), ``MASK`` (int32, planes named by ``MP_<PLANE>`` keywords)
and ``VARIANCE`` (float32), and optionally ``PSF`` (float32, odd square,
normalised to a sum of 1) and afw's table archive.

The readers accept what afw has written over the years: HDUs named by
``EXTNAME``, else ``EXTTYPE`` (before 2021-05), else found at positions 1-3;
uint16 masks (``BZERO = 32768``, before 2017), widened to int32. A warp without
``PSF-FWHM`` and a PSF HDU gets its PSF width from the archive
(:mod:`dcr_dask.io.afw_archive`) or, when asked, from its stars
(:mod:`dcr_dask.kernels.psf_stars`).

Pixel origin (``xy0``)
----------------------
A warp may cover only part of the tile. As afw does, the HDU of a warp whose
first pixel sits at tile pixel ``(x0, y0)`` carries

- the tile WCS shifted so that ``CRPIX`` refers to the HDU's own pixels
  (``CRPIX_hdu = CRPIX_tile - (x0, y0)``),
- ``LTV1 = -x0``, ``LTV2 = -y0``, and
- afw's alternate WCS ``A`` (``CTYPE1A = 'LINEAR'``, ``CRPIX1A = 1``,
  ``CRVAL1A = x0``, ...), from which afw itself reads ``xy0``.

The readers take ``xy0`` from ``LTV1``/``LTV2``, else from the ``A`` WCS, else
(0, 0); the two must agree when both are present. :class:`WarpLayout` holds the
WCS in *tile* pixel coordinates, i.e. shifted back by ``xy0``.

Reading is split in two: :func:`check_warp` / :func:`read_warp_header` read
headers only (and the small PSF), :func:`read_warp_pixels` reads the part of
the pixels that falls in one tile section, so that a lazy Dask chunk reads
only what it needs.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS, FITSFixedWarning, Sip

from dcr_dask._version import __version__
from dcr_dask.errors import InputError, raise_collected
from dcr_dask.io.afw_archive import (
    DECODED_PSF_CLASSES,
    archive_filter_label,
    archive_psf,
    archive_summary_psf_sigma,
)
from dcr_dask.io.atomic import atomic_file
from dcr_dask.io.metadata import check_visit_header, visit_to_header
from dcr_dask.io.ownership import FITS_KEYWORD
from dcr_dask.kernels.psf import FWHM_PER_SIGMA
from dcr_dask.kernels.psf_stars import MIN_STARS, measure_psf_fwhm
from dcr_dask.masks import MaskPlanes
from dcr_dask.visit import VisitInfo

__all__ = [
    "PSF_SUM_TOLERANCE",
    "WarpCheck",
    "WarpLayout",
    "check_warp",
    "image_hdu_header",
    "read_visit_file",
    "read_warp_header",
    "read_warp_pixels",
    "read_warp_psf",
    "shift_wcs",
    "wcs_from_header_text",
    "wcs_to_header_text",
    "write_warp",
    "xy0_header_cards",
]

#: Largest allowed ``|sum(PSF) - 1|`` of a ``PSF`` HDU.
PSF_SUM_TOLERANCE = 1e-3

#: The image HDUs every warp has, in file order.
IMAGE_HDUS = ("IMAGE", "MASK", "VARIANCE")

#: Required ``BITPIX`` of each HDU: float32 pixels, int32 mask.
_BITPIX = {"IMAGE": -32, "MASK": 32, "VARIANCE": -32, "PSF": -32}

#: Keywords that describe the HDU structure and are never copied from a user header.
_STRUCTURAL = {"SIMPLE", "BITPIX", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT", "EXTNAME", "END"}
_STRUCTURAL |= {"BSCALE", "BZERO"}


def _structural(keyword: str) -> bool:
    keyword = keyword.upper()
    return keyword in _STRUCTURAL or keyword.startswith("NAXIS")


# --------------------------------------------------------------------------- WCS helpers


def shift_wcs(wcs: WCS, dx: float, dy: float) -> WCS:
    """Move the pixel origin of a WCS.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        A 2-d WCS (linear, celestial, optionally with SIP distortion).
    dx, dy : float
        Pixels added to ``CRPIX1`` and ``CRPIX2``. The returned WCS maps
        pixel ``(x + dx, y + dy)`` to what ``wcs`` maps ``(x, y)`` to.

    Returns
    -------
    astropy.wcs.WCS
        A shifted copy; ``wcs`` is unchanged.
    """
    out = wcs.deepcopy()
    out.wcs.crpix = out.wcs.crpix + np.array([dx, dy], dtype=float)
    if out.sip is not None:
        out.sip = Sip(out.sip.a, out.sip.b, out.sip.ap, out.sip.bp, out.wcs.crpix)
    out.wcs.set()
    return out


def wcs_to_header_text(wcs: WCS) -> str:
    """Serialise a WCS as FITS header text (cards separated by newlines).

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        The WCS.

    Returns
    -------
    str
        ``wcs.to_header(relax=True)`` as text, one 80-character card a line;
        :func:`wcs_from_header_text` reads it back.
    """
    return wcs.to_header(relax=True).tostring(sep="\n")


def wcs_from_header_text(text: str) -> WCS:
    """Read a WCS written by :func:`wcs_to_header_text`.

    Parameters
    ----------
    text : str
        FITS header cards separated by newlines (or concatenated 80-character
        cards, as ``Header.tostring()`` writes them by default).

    Returns
    -------
    astropy.wcs.WCS
        The WCS.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(fits.Header.fromstring(text, sep="\n" if "\n" in text else ""))


def xy0_header_cards(xy0: tuple[int, int]) -> list[tuple[str, Any, str]]:
    """afw's header cards for the pixel origin of an HDU.

    Parameters
    ----------
    xy0 : tuple of int
        ``(x0, y0)``: tile pixel of the HDU's first pixel.

    Returns
    -------
    list of tuple
        ``(keyword, value, comment)``: ``LTV1``/``LTV2`` (``-x0``, ``-y0``)
        and afw's alternate ``A`` WCS (``CRVAL1A = x0``, ...), from which
        afw itself reads ``xy0``.
    """
    x0, y0 = xy0
    return [
        ("LTV1", -x0, "-x0: HDU pixel origin on the tile grid"),
        ("LTV2", -y0, "-y0: HDU pixel origin on the tile grid"),
        ("CTYPE1A", "LINEAR", "Type of projection"),
        ("CTYPE2A", "LINEAR", "Type of projection"),
        ("CRPIX1A", 1.0, "Column Pixel Coordinate of Reference"),
        ("CRPIX2A", 1.0, "Row Pixel Coordinate of Reference"),
        ("CRVAL1A", float(x0), "Column pixel of Reference Pixel"),
        ("CRVAL2A", float(y0), "Row pixel of Reference Pixel"),
        ("CUNIT1A", "PIXEL", "Column unit"),
        ("CUNIT2A", "PIXEL", "Row unit"),
    ]


# --------------------------------------------------------------------------- writing


def _checked_psf(psf: np.ndarray) -> np.ndarray:
    psf = np.asarray(psf, dtype=np.float64)
    if psf.ndim != 2 or psf.shape[0] != psf.shape[1] or psf.shape[0] % 2 == 0:
        raise ValueError(f"the PSF must be an odd square image, got shape {psf.shape}")
    total = psf.sum()
    if not (np.all(np.isfinite(psf)) and total > 0):
        raise ValueError("the PSF must be finite with a positive sum")
    return (psf / total).astype(np.float32)


def image_hdu_header(
    wcs: WCS,
    xy0: tuple[int, int] = (0, 0),
    *,
    extname: str,
    mask_planes: MaskPlanes | None = None,
    bunit: str | None = None,
) -> fits.Header:
    """Header cards of one afw-style image HDU (IMAGE, MASK or VARIANCE).

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        The tile WCS, in tile pixel coordinates.
    xy0 : tuple of int
        ``(x0, y0)``: tile pixel of the HDU's first pixel. The WCS is shifted
        so that ``CRPIX`` refers to the HDU's own pixels, and ``LTV1``/``LTV2``
        and afw's alternate ``A`` WCS record the origin.
    extname : str
        ``EXTTYPE`` of the HDU (afw writes it beside ``EXTNAME``).
    mask_planes : MaskPlanes, optional
        For a MASK HDU: the ``MP_<PLANE> = bit`` cards.
    bunit : str, optional
        For an IMAGE HDU: the flux unit.

    Returns
    -------
    astropy.io.fits.Header
        The cards, without the structural keywords (BITPIX, NAXIS...).
    """
    x0, y0 = int(xy0[0]), int(xy0[1])
    header = fits.Header.fromstring(wcs_to_header_text(shift_wcs(wcs, -x0, -y0)), sep="\n")
    header["EXTTYPE"] = (extname, "afw extension type")
    header["INHERIT"] = (True, "inherit the primary header")
    for key, value, comment in xy0_header_cards((x0, y0)):
        header[key] = (value, comment)
    if bunit is not None:
        header["BUNIT"] = (bunit, "flux unit")
    if mask_planes is not None:
        for key, bit, comment in mask_planes.to_header_cards():
            header[f"HIERARCH {key}" if len(key) > 8 else key] = (bit, comment)
    return header


def write_warp(
    path: str | os.PathLike[str],
    image: np.ndarray,
    mask: np.ndarray,
    variance: np.ndarray,
    *,
    mask_planes: MaskPlanes,
    wcs: WCS,
    visit: VisitInfo | None = None,
    primary_header: Mapping[str, Any] | None = None,
    psf: np.ndarray | None = None,
    xy0: tuple[int, int] = (0, 0),
    bunit: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an afw-style warp (or, without ``visit``, a coadd) FITS file.

    Parameters
    ----------
    path : str or path-like
        Output file. It is written under a temporary name in the same
        directory and renamed when complete, so it is always whole.
    image : numpy.ndarray
        2-d flux, any linear unit (``bunit``); written as float32.
    mask : numpy.ndarray of int
        2-d bit mask, same shape, bits numbered as in ``mask_planes``;
        written as int32.
    variance : numpy.ndarray
        2-d variance of ``image``, same shape, unit ``bunit`` squared;
        written as float32.
    mask_planes : MaskPlanes
        The bit of each plane, written as ``MP_<PLANE>`` keywords.
    wcs : astropy.wcs.WCS
        The celestial WCS of the *tile* (pixel coordinates of the tile grid).
    visit : VisitInfo, optional
        Visit metadata for the primary header (:func:`visit_to_header`).
        Leave out for a coadd or template.
    primary_header : mapping, optional
        More primary-header keywords; the visit keywords win on conflict.
    psf : numpy.ndarray, optional
        Odd square PSF image at the tile centre; normalised to a sum of 1 and
        written as the ``PSF`` HDU.
    xy0 : tuple of int
        ``(x0, y0)``: tile pixel of the first pixel of the arrays, for a warp
        that covers only part of the tile.
    bunit : str, optional
        Flux unit of ``image`` (``BUNIT``); defaults to ``visit.bunit``.
    overwrite : bool
        Replace an existing file, if dcr_dask wrote it (its primary header
        has ``DCRDASKV``, which every file written here gets).

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ValueError
        If the arrays are not 2-d of one shape, the mask sets bits that
        ``mask_planes`` does not name, the PSF is not an odd square with a
        positive sum, or ``wcs`` is not celestial.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    image, mask, variance = _checked_warp_arrays(image, mask, variance, mask_planes)
    if not wcs.has_celestial or wcs.naxis != 2:
        raise ValueError("wcs must be a 2-d celestial WCS")
    x0, y0 = int(xy0[0]), int(xy0[1])
    bunit = bunit if bunit is not None else (visit.bunit if visit is not None else None)

    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [
        fits.PrimaryHDU(header=_warp_primary_header(visit, primary_header))
    ]
    for name, data in (
        ("IMAGE", image.astype(np.float32)),
        ("MASK", mask.astype(np.int32)),
        ("VARIANCE", variance.astype(np.float32)),
    ):
        header = image_hdu_header(
            wcs,
            (x0, y0),
            extname=name,
            mask_planes=mask_planes if name == "MASK" else None,
            bunit=bunit if name == "IMAGE" else None,
        )
        hdus.append(fits.ImageHDU(data=data, header=header, name=name))
    if psf is not None:
        hdus.append(fits.ImageHDU(data=_checked_psf(psf), name="PSF"))
    with atomic_file(path, overwrite=overwrite) as tmp:
        fits.HDUList(hdus).writeto(tmp)
    return path


def _checked_warp_arrays(
    image: np.ndarray, mask: np.ndarray, variance: np.ndarray, mask_planes: MaskPlanes
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixel arrays of :func:`write_warp`, checked: 2-d, one shape, named mask bits."""
    image = np.asarray(image)
    mask = np.asarray(mask)
    variance = np.asarray(variance)
    if image.ndim != 2 or mask.shape != image.shape or variance.shape != image.shape:
        raise ValueError(
            f"image, mask and variance must be 2-d of one shape; got {image.shape}, "
            f"{mask.shape}, {variance.shape}"
        )
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"the mask must be of an integer dtype, got {mask.dtype}")
    known = mask_planes.value(mask_planes.names)
    used = int(np.bitwise_or.reduce(mask, axis=None)) if mask.size else 0
    if used & ~known:
        raise ValueError(f"the mask sets bits {used & ~known:#x} that mask_planes does not name")
    return image, mask, variance


def _warp_primary_header(
    visit: VisitInfo | None, primary_header: Mapping[str, Any] | None
) -> fits.Header:
    """The primary header of :func:`write_warp`: extra cards, the visit's, the owner mark."""
    primary = fits.Header()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        if isinstance(primary_header, fits.Header):
            primary.extend(c for c in primary_header.cards if not _structural(c.keyword))
        elif primary_header is not None:
            for key, value in primary_header.items():
                if not _structural(key):
                    primary[key] = value
        if visit is not None:
            primary.update(visit_to_header(visit))
        # The ownership marker: overwrite may replace only files dcr_dask wrote.
        primary[FITS_KEYWORD] = (__version__, "written by dcr_dask")
    return primary


# --------------------------------------------------------------------------- reading headers


@attrs.frozen
class WarpLayout:
    """What the headers of one warp file say about its pixels.

    Parameters
    ----------
    filename : str
        The file.
    shape : tuple of int
        ``(ny, nx)`` of the IMAGE, MASK and VARIANCE HDUs, pixels.
    xy0 : tuple of int
        ``(x0, y0)``: tile pixel of the HDUs' first pixel (afw order, x first).
    mask_planes : MaskPlanes
        The file's mask-plane numbering (``MP_*`` keywords of MASK).
    wcs : astropy.wcs.WCS
        The celestial WCS in *tile* pixel coordinates (the HDU WCS with
        ``CRPIX`` shifted back by ``xy0``).
    hdus : dict of str to int
        Index in the file of each named HDU.
    psf_shape : tuple of int or None
        ``(n, n)`` of the PSF HDU, or None if there is none.
    bunit : str or None
        ``BUNIT`` of the IMAGE HDU.
    hdu_lookup : str
        How the image HDUs were found: ``EXTNAME``, ``EXTTYPE`` (afw before
        2021-05) or ``position`` (HDUs 1-3, older files).
    mask_bitpix : int
        ``BITPIX`` of the MASK HDU: 32, or 16 for afw's uint16 masks (before
        2017), which are widened to int32 on reading.
    """

    filename: str
    shape: tuple[int, int]
    xy0: tuple[int, int]
    mask_planes: MaskPlanes
    wcs: WCS = attrs.field(eq=False, repr=False)
    hdus: dict[str, int] = attrs.field(factory=dict)
    psf_shape: tuple[int, int] | None = None
    bunit: str | None = None
    hdu_lookup: str = "EXTNAME"
    mask_bitpix: int = 32

    @property
    def has_psf(self) -> bool:
        """True if the file has a PSF HDU."""
        return self.psf_shape is not None

    @property
    def tile_slices(self) -> tuple[slice, slice]:
        """``(y, x)`` slices of the tile grid that the HDUs cover."""
        (ny, nx), (x0, y0) = self.shape, self.xy0
        return slice(y0, y0 + ny), slice(x0, x0 + nx)


@attrs.frozen
class WarpCheck:
    """The result of checking one warp file.

    Parameters
    ----------
    visit : VisitInfo or None
        The visit metadata (None if not asked for or not valid).
    layout : WarpLayout or None
        The pixel layout (None if the headers are not valid).
    psf : numpy.ndarray or None
        The PSF image, float32, if the file has a valid one.
    errors : list of InputError
        Every problem found, each naming the file and the keyword or HDU.
    """

    visit: VisitInfo | None
    layout: WarpLayout | None
    psf: np.ndarray | None = attrs.field(eq=False, repr=False)
    errors: list[InputError]


def _integral(value: object) -> int | None:
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    return None


def _xy0_from_header(
    header: fits.Header, fail: Callable[[str, str], None]
) -> tuple[int, int] | None:
    """``(x0, y0)`` from ``LTV1/2`` or afw's ``A`` WCS; None if the header states none."""
    ltv = None
    if "LTV1" in header or "LTV2" in header:
        ltv1, ltv2 = (_integral(header.get(key, 0)) for key in ("LTV1", "LTV2"))
        if ltv1 is None or ltv2 is None:
            fail(
                "LTV1/LTV2", f"must be integers, got {header.get('LTV1')!r}, {header.get('LTV2')!r}"
            )
            return None
        ltv = (-ltv1, -ltv2)
    alt = None
    keys = ("CRPIX1A", "CRPIX2A", "CRVAL1A", "CRVAL2A")
    if all(key in header for key in keys) and header["CRPIX1A"] == 1 and header["CRPIX2A"] == 1:
        crval1, crval2 = (_integral(header[key]) for key in ("CRVAL1A", "CRVAL2A"))
        if crval1 is None or crval2 is None:
            fail("CRVAL1A/CRVAL2A", "the afw pixel origin must be integers")
            return None
        alt = (crval1, crval2)
    if ltv is not None and alt is not None and ltv != alt:
        fail("LTV1/LTV2", f"pixel origin {ltv} disagrees with CRVAL1A/CRVAL2A {alt}")
        return None
    return ltv if ltv is not None else alt


def _read_wcs(header: fits.Header, fail: Callable[[str, str], None]) -> WCS | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, naxis=2)
    except Exception as exc:  # astropy.wcs raises many exception types on bad headers
        fail("WCS", f"cannot read the WCS: {exc}")
        return None
    if not wcs.has_celestial:
        fail("WCS", "no celestial WCS (CTYPE1/2 = 'RA---TAN', 'DEC--TAN', ...)")
        return None
    return wcs


def _check_psf_pixels(hdu: Any, fail: Callable[[str | None, str], None]) -> np.ndarray | None:
    psf = np.array(hdu.data, dtype=np.float32)
    total = float(psf.sum(dtype=np.float64))
    if not np.all(np.isfinite(psf)):
        fail("PSF", "has non-finite pixels")
        return None
    if abs(total - 1.0) > PSF_SUM_TOLERANCE:
        fail("PSF", f"sums to {total:.6g}, not 1 (tolerance {PSF_SUM_TOLERANCE:g})")
        return None
    return psf


def check_warp(
    path: str | os.PathLike[str], *, visit: bool = True, need_psf: bool = False
) -> WarpCheck:
    """Read and check the headers of one warp (or coadd) file, without its pixels.

    Parameters
    ----------
    path : str or path-like
        The file.
    visit : bool
        Also parse the visit metadata of the primary header (False for a
        template coadd, which has none).
    need_psf : bool
        With ``visit``, a warp with neither a ``PSF-FWHM`` keyword nor a PSF
        HDU always gets its PSF FWHM from the afw archive when it can (a
        Gaussian PSF, else the summary statistics' ``psfSigma``); with
        ``need_psf`` it is else measured from its stars (this reads the central
        section of the pixels), and if that fails too it is an error.
        :attr:`VisitInfo.psf_source` records where the PSF came from.

    Returns
    -------
    WarpCheck
        The layout, the visit metadata and the PSF if all is well, and the
        list of every problem found: an unreadable or truncated file, a
        missing HDU, a wrong ``BITPIX`` or ``NAXIS``, IMAGE/MASK/VARIANCE
        shapes or pixel origins that differ, bad ``MP_*`` keywords or none at all, a missing
        or unreadable WCS, a PSF that is not an odd square or does not sum to
        1, and every problem of the visit metadata.

    Notes
    -----
    Only headers are read, plus the PSF HDU (a few kB) to check its sum.
    """
    name = str(path)
    errors: list[InputError] = []

    def fail(keyword: str | None, message: str) -> None:
        errors.append(InputError(message, filename=name, keyword=keyword))

    with warnings.catch_warnings():
        # astropy warns about truncation and bad padding; the checks below report them.
        warnings.simplefilter("ignore", AstropyWarning)
        try:
            size = os.path.getsize(path)
            hdul = fits.open(path, memmap=True, lazy_load_hdus=True)
        except (OSError, ValueError) as exc:
            fail(None, f"cannot read the file as FITS: {exc}")
            return WarpCheck(None, None, None, errors)
        with hdul:
            try:
                headers = [hdu.header for hdu in hdul]
            except (OSError, ValueError) as exc:
                fail(None, f"cannot read the FITS headers: {exc}")
                return WarpCheck(None, None, None, errors)
            return _check_open_file(hdul, headers, name, size, visit, need_psf, errors, fail)


def _check_open_file(
    hdul: fits.HDUList,
    headers: list[fits.Header],
    name: str,
    size: int,
    with_visit: bool,
    need_psf: bool,
    errors: list[InputError],
    fail: Callable[[str | None, str], None],
) -> WarpCheck:
    """The checks of :func:`check_warp` on an open file."""
    hdus, lookup = _find_hdus(headers)
    broken = _truncated_hdus(hdul, headers, hdus, size, fail)
    visit_info = None
    if with_visit:
        label = archive_filter_label(hdul, headers)
        visit_info, visit_errors = check_visit_header(headers[0], name, filter_label=label)
        errors.extend(visit_errors)
    shapes, origins = _check_image_hdus(headers, hdus, broken, fail)
    xy0 = _common_xy0(shapes, origins, fail)
    planes = _read_mask_planes(headers, hdus, fail)
    wcs = None
    if "IMAGE" in hdus:
        wcs = _read_wcs(headers[hdus["IMAGE"]], lambda key, msg: fail(f"IMAGE {key}", msg))
    psf = None
    if "PSF" in shapes and "PSF" not in broken:
        n_y, n_x = shapes["PSF"]
        if n_y != n_x or n_y % 2 == 0:
            fail("PSF", f"must be an odd square image, got shape {shapes['PSF']}")
        else:
            psf = _check_psf_pixels(hdul[hdus["PSF"]], fail)

    if errors:
        return WarpCheck(None, None, None, errors)
    assert planes is not None and wcs is not None
    bunit = headers[hdus["IMAGE"]].get("BUNIT")
    bunit = bunit.strip() if isinstance(bunit, str) else None
    layout = WarpLayout(
        filename=name,
        shape=shapes["IMAGE"],
        xy0=xy0,
        mask_planes=planes,
        wcs=shift_wcs(wcs, xy0[0], xy0[1]),
        hdus=hdus,
        psf_shape=shapes.get("PSF"),
        bunit=bunit,
        hdu_lookup=lookup,
        mask_bitpix=int(headers[hdus["MASK"]]["BITPIX"]),
    )
    if visit_info is not None:
        visit_info = attrs.evolve(visit_info, bunit=bunit)
        if psf is not None and visit_info.psf_source is None:
            visit_info = attrs.evolve(visit_info, psf_source="PSF HDU")
        elif visit_info.psf_source is None:
            visit_info = _psf_from_archive_or_stars(
                hdul, headers, layout, visit_info, fail, stars=need_psf
            )
            if errors:
                return WarpCheck(None, None, None, errors)
    return WarpCheck(visit_info, layout, psf, [])


def _truncated_hdus(
    hdul: fits.HDUList,
    headers: list[fits.Header],
    hdus: Mapping[str, int],
    size: int,
    fail: Callable[[str | None, str], None],
) -> set[str]:
    """Report every HDU whose data run past the end of the file; return their names."""
    broken: set[str] = set()
    names = {index: extname for extname, index in hdus.items()}
    for index, header in enumerate(headers):
        extname = names.get(index, str(header.get("EXTNAME", "")).strip().upper())
        info = hdul.fileinfo(index)
        end = info["datLoc"] + info["datSpan"]
        if end > size:
            broken.add(extname)
            fail(
                extname or f"HDU {index}",
                f"file is truncated: this HDU ends at byte {end} but the file has {size} bytes",
            )
    return broken


def _check_image_hdus(
    headers: list[fits.Header],
    hdus: Mapping[str, int],
    broken: set[str],
    fail: Callable[[str | None, str], None],
) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """Report every missing or malformed image HDU (adding it to ``broken``); return the
    shape of each well-formed one and the pixel origin of each of IMAGE, MASK, VARIANCE."""
    shapes: dict[str, tuple[int, int]] = {}
    origins: dict[str, tuple[int, int]] = {}
    for extname in (*IMAGE_HDUS, "PSF"):
        if extname not in hdus:
            if extname != "PSF":
                fail(
                    extname,
                    f"HDU with EXTNAME = '{extname}' is missing (nor EXTTYPE = '{extname}', nor "
                    "IMAGE, MASK, VARIANCE at HDUs 1-3 after an empty primary HDU)",
                )
            continue
        header = headers[hdus[extname]]
        bitpix = header.get("BITPIX")
        scaling = (header.get("BSCALE", 1), header.get("BZERO", 0))
        uint16_mask = extname == "MASK" and bitpix == 16 and scaling == (1, 32768)
        if not uint16_mask and (bitpix != _BITPIX[extname] or scaling[1] != 0):
            wanted = "int32 (or afw's old uint16)" if extname == "MASK" else "float32"
            fail(
                extname,
                f"pixels must be {wanted} (BITPIX = {_BITPIX[extname]}), got BITPIX = {bitpix}"
                + (f", BZERO = {scaling[1]}" if scaling[1] != 0 else ""),
            )
            broken.add(extname)
        naxis = header.get("NAXIS", 0)
        if naxis != 2 or header.get("NAXIS1", 0) < 1 or header.get("NAXIS2", 0) < 1:
            fail(extname, f"must be a non-empty 2-d image, got NAXIS = {naxis}")
            broken.add(extname)
            continue
        shapes[extname] = (int(header["NAXIS2"]), int(header["NAXIS1"]))
        if extname != "PSF":

            def fail_in(key: str, msg: str, e: str = extname) -> None:
                fail(f"{e} {key}", msg)

            xy0 = _xy0_from_header(header, fail_in)
            if xy0 is not None:
                origins[extname] = xy0
    return shapes, origins


def _common_xy0(
    shapes: Mapping[str, tuple[int, int]],
    origins: Mapping[str, tuple[int, int]],
    fail: Callable[[str | None, str], None],
) -> tuple[int, int]:
    """Report IMAGE/MASK/VARIANCE shapes or origins that differ; return the IMAGE origin."""
    if len({shapes[e] for e in IMAGE_HDUS if e in shapes}) > 1:
        text = ", ".join(f"{e} {shapes[e]}" for e in IMAGE_HDUS if e in shapes)
        fail("IMAGE/MASK/VARIANCE", f"shapes differ: {text}")
    if len(set(origins.values())) > 1:
        text = ", ".join(f"{e} {xy}" for e, xy in origins.items())
        fail("IMAGE/MASK/VARIANCE", f"pixel origins (x0, y0) differ: {text}")
    return origins.get("IMAGE") or next(iter(origins.values()), (0, 0))


def _read_mask_planes(
    headers: list[fits.Header], hdus: Mapping[str, int], fail: Callable[[str | None, str], None]
) -> MaskPlanes | None:
    """The ``MP_*`` planes of the MASK HDU, or None (reported) if bad, absent or none."""
    if "MASK" not in hdus:
        return None
    try:
        planes = MaskPlanes.from_header(headers[hdus["MASK"]])
    except (TypeError, ValueError) as exc:
        fail("MASK", f"bad mask-plane keywords: {exc}")
        return None
    if not planes.bits:
        # afw keeps the plane names nowhere else: every bit would be ignored
        fail(
            "MASK MP_*",
            "the MASK HDU has no MP_<PLANE> keywords, so none of its bits can be "
            "named (NO_DATA, BAD, SAT, ... would all be ignored); write the planes "
            "as afw does (e.g. MP_NO_DATA = 8)",
        )
        return None
    return planes


def _find_hdus(headers: list[fits.Header]) -> tuple[dict[str, int], str]:
    """Index of each image HDU, found as afw finds it, and how it was found.

    By ``EXTNAME``; else (afw before 2021-05 wrote only ``EXTTYPE``) by
    ``EXTTYPE``; else, when no HDU names IMAGE, MASK or VARIANCE at all and the
    primary HDU holds no data, IMAGE, MASK and VARIANCE are HDUs 1, 2 and 3 (as
    afw's own reader takes them).
    """
    hdus: dict[str, int] = {}
    lookup = "EXTNAME"
    for keyword in ("EXTNAME", "EXTTYPE"):
        for index, header in enumerate(headers):
            if index == 0 or header.get("XTENSION") != "IMAGE":
                continue
            extname = str(header.get(keyword, "")).strip().upper()
            if extname in _BITPIX and extname not in hdus:
                hdus[extname] = index
                if keyword == "EXTTYPE":
                    lookup = "EXTTYPE"
    if not any(extname in hdus for extname in IMAGE_HDUS) and len(headers) >= 4:
        images = all(headers[i].get("XTENSION") == "IMAGE" for i in (1, 2, 3))
        if images and headers[0].get("NAXIS", 0) == 0:
            hdus.update(dict(zip(IMAGE_HDUS, (1, 2, 3), strict=True)))
            lookup = "position"
    return hdus, lookup


#: Most pixels (per side) of the central section in which stars are measured.
STAR_SECTION_PX = 2048

#: Mask planes whose pixels are not used to measure stars.
_STAR_BAD_PLANES = ("BAD", "SAT", "CR", "EDGE", "NO_DATA", "SUSPECT", "INTRP", "SENSOR_EDGE")


def _psf_from_archive_or_stars(
    hdul: fits.HDUList,
    headers: list[fits.Header],
    layout: WarpLayout,
    visit: VisitInfo,
    fail: Callable[[str | None, str], None],
    *,
    stars: bool,
) -> VisitInfo:
    """Fill in the PSF FWHM of a warp with no ``PSF-FWHM`` and no PSF HDU.

    From the afw archive (:mod:`dcr_dask.io.afw_archive`): a Gaussian PSF, else
    ``psfSigma`` of the summary statistics; else, with ``stars``, measured from
    the stars of the central (at most :data:`STAR_SECTION_PX` square) section
    of the image (:func:`dcr_dask.kernels.psf_stars.measure_psf_fwhm`), and an error
    naming the file when that fails too.
    """
    found = archive_psf(hdul, headers)
    if found is not None and found.fwhm_px is not None:
        return attrs.evolve(
            visit, psf_fwhm_px=found.fwhm_px, psf_source=f"archive {found.class_name}"
        )
    sigma = archive_summary_psf_sigma(hdul, headers)
    if sigma is not None:
        return attrs.evolve(
            visit,
            psf_fwhm_px=FWHM_PER_SIGMA * sigma,
            psf_source="archive ExposureSummaryStats psfSigma",
        )
    if not stars:
        return visit
    ny, nx = layout.shape
    cy, cx = max(0, (ny - STAR_SECTION_PX) // 2), max(0, (nx - STAR_SECTION_PX) // 2)
    section = (slice(cy, cy + STAR_SECTION_PX), slice(cx, cx + STAR_SECTION_PX))
    image = np.array(hdul[layout.hdus["IMAGE"]].section[section], dtype=np.float64)
    if layout.mask_bitpix == 32:
        mask = np.array(hdul[layout.hdus["MASK"]].section[section], dtype=np.int64)
    else:  # astropy does not scale (BZERO) a memory-mapped section
        with fits.open(layout.filename, memmap=False) as unmapped:
            mask = np.array(unmapped[layout.hdus["MASK"]].data[section], dtype=np.int64)
    variance = np.array(hdul[layout.hdus["VARIANCE"]].section[section], dtype=np.float64)
    bad = (mask & layout.mask_planes.value(_STAR_BAD_PLANES, missing_ok=True)) != 0
    measured = measure_psf_fwhm(image, bad=bad, variance=variance)
    if measured is not None:
        return attrs.evolve(
            visit,
            psf_fwhm_px=measured.fwhm_px,
            psf_source=f"measured from {measured.n_stars} stars",
        )
    if found is None:
        archive = "no PSF in an afw archive"
    else:
        archive = (
            f"an archive {found.class_name}, which is not decoded (only "
            f"{', '.join(DECODED_PSF_CLASSES)} are)"
        )
    fail(
        "PSF",
        f"no PSF: no PSF-FWHM keyword, no PSF HDU, {archive}, no psfSigma in the summary "
        f"statistics, and fewer than {MIN_STARS} bright isolated unmasked stars to measure "
        "the PSF from; add PSF-FWHM (pixels) to the primary header",
    )
    return visit


def read_visit_file(path: str | os.PathLike[str]) -> tuple[VisitInfo, WCS | None]:
    """Read the visit metadata of a warp, or of a file holding only its header.

    Parameters
    ----------
    path : str or path-like
        A warp (docs/file-formats.md, "Input warps"), or a FITS file whose primary
        HDU carries the visit keywords.

    Returns
    -------
    visit : VisitInfo
        The visit metadata (band from the header, else the afw archive).
    wcs : astropy.wcs.WCS or None
        The IMAGE HDU's WCS in tile pixel coordinates (shifted by its
        ``LTV1/LTV2`` origin), or None for a header-only file.

    Raises
    ------
    InputError, InputErrors
        Naming the file and keyword: an unreadable file, an unparsable card,
        bad visit metadata, or an IMAGE HDU whose WCS cannot be read.
    """
    name = str(path)
    errors: list[InputError] = []

    def fail(keyword: str | None, message: str) -> None:
        errors.append(InputError(message, filename=name, keyword=keyword))

    wcs = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        try:
            with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
                headers = [hdu.header for hdu in hdul]
                visit, visit_errors = check_visit_header(
                    headers[0], name, filter_label=archive_filter_label(hdul, headers)
                )
                errors += visit_errors
                hdus, _ = _find_hdus(headers)
                if "IMAGE" in hdus:
                    header = headers[hdus["IMAGE"]]
                    xy0 = _xy0_from_header(header, lambda key, msg: fail(f"IMAGE {key}", msg))
                    image_wcs = _read_wcs(header, lambda key, msg: fail(f"IMAGE {key}", msg))
                    if image_wcs is not None and xy0 is not None:
                        wcs = shift_wcs(image_wcs, xy0[0], xy0[1])
        except (OSError, ValueError) as exc:
            fail(None, f"cannot read the file as FITS: {exc}")
    raise_collected(errors)
    assert visit is not None
    return visit, wcs


def read_warp_header(path: str | os.PathLike[str]) -> tuple[VisitInfo, WarpLayout]:
    """Read the visit metadata and the pixel layout of a warp, without its pixels.

    Parameters
    ----------
    path : str or path-like
        The warp file.

    Returns
    -------
    visit : VisitInfo
        The validated visit metadata (``bunit`` from the IMAGE HDU).
    layout : WarpLayout
        Shape, pixel origin, mask planes, tile WCS and PSF shape.

    Raises
    ------
    InputError or InputErrors
        One or all of the problems :func:`check_warp` finds.
    """
    check = check_warp(path)
    raise_collected(check.errors)
    assert check.visit is not None and check.layout is not None
    return check.visit, check.layout


def read_warp_psf(path: str | os.PathLike[str], layout: WarpLayout) -> np.ndarray | None:
    """Read the PSF HDU of a warp.

    Parameters
    ----------
    path : str or path-like
        The warp file.
    layout : WarpLayout
        Its layout, from :func:`read_warp_header`.

    Returns
    -------
    numpy.ndarray or None
        The PSF, float32, odd square, summing to 1; None if the file has none.
    """
    if not layout.has_psf:
        return None
    with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
        return np.array(hdul[layout.hdus["PSF"]].data, dtype=np.float32)


# --------------------------------------------------------------------------- reading pixels


def _bounds(index: slice, name: str) -> tuple[int, int]:
    if not isinstance(index, slice) or index.step not in (None, 1):
        raise ValueError(f"{name} must be a slice with step 1, got {index!r}")
    if index.start is None or index.stop is None or index.start < 0 or index.stop < index.start:
        raise ValueError(f"{name} must have explicit 0 <= start <= stop, got {index!r}")
    return int(index.start), int(index.stop)


def read_warp_pixels(
    path: str | os.PathLike[str],
    layout: WarpLayout,
    y_slice: slice,
    x_slice: slice,
    *,
    mask_planes: MaskPlanes | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read one section of the tile grid from a warp.

    Only the part of the file that overlaps the section is read (FITS
    section reads); the file is not opened at all if there is no overlap.

    Parameters
    ----------
    path : str or path-like
        The warp file.
    layout : WarpLayout
        Its layout, from :func:`read_warp_header`.
    y_slice, x_slice : slice
        The section, in *tile* pixel indices (explicit ``start`` and ``stop``,
        step 1). It may extend beyond the warp.
    mask_planes : MaskPlanes, optional
        Bit layout of the returned mask (must name ``NO_DATA`` and every plane
        of the file); default: the file's own.

    Returns
    -------
    image : numpy.ndarray of float32
        Flux; 0 where the warp has no data.
    mask : numpy.ndarray of int32
        Mask in the ``mask_planes`` numbering.
    variance : numpy.ndarray of float32
        Variance; 0 where the warp has no data.

    Notes
    -----
    Tile pixels outside the warp, and pixels where IMAGE or VARIANCE is not
    finite (NaN, or inf), get ``NO_DATA`` set, image 0 and variance 0; other
    mask bits of a non-finite pixel are kept.
    """
    (ys, ye), (xs, xe) = _bounds(y_slice, "y_slice"), _bounds(x_slice, "x_slice")
    planes = mask_planes if mask_planes is not None else layout.mask_planes
    no_data = np.int32(planes.value(["NO_DATA"], missing_ok=False))
    image = np.zeros((ye - ys, xe - xs), dtype=np.float32)
    variance = np.zeros_like(image)
    mask = np.full(image.shape, no_data, dtype=np.int32)
    (wy, wx) = layout.tile_slices
    oy0, oy1 = max(ys, wy.start), min(ye, wy.stop)
    ox0, ox1 = max(xs, wx.start), min(xe, wx.stop)
    if oy0 >= oy1 or ox0 >= ox1:
        return image, mask, variance
    section = (slice(oy0 - wy.start, oy1 - wy.start), slice(ox0 - wx.start, ox1 - wx.start))
    # astropy scales (BZERO) a section of afw's old uint16 masks only without memory mapping.
    with fits.open(path, memmap=layout.mask_bitpix == 32, lazy_load_hdus=True) as hdul:
        img = np.array(hdul[layout.hdus["IMAGE"]].section[section], dtype=np.float32)
        msk = np.array(hdul[layout.hdus["MASK"]].section[section], dtype=np.int32)
        var = np.array(hdul[layout.hdus["VARIANCE"]].section[section], dtype=np.float32)
    msk = planes.remap(msk, layout.mask_planes)
    bad = ~(np.isfinite(img) & np.isfinite(var))
    img[bad] = 0.0
    var[bad] = 0.0
    msk[bad] |= no_data
    out = (slice(oy0 - ys, oy1 - ys), slice(ox0 - xs, ox1 - xs))
    image[out], mask[out], variance[out] = img, msk, var
    return image, mask, variance
