"""Export an output store to afw-style multi-extension FITS files.

One MEF per sub-band and one for the coadd (docs/file-formats.md, "FITS
exports"), laid out like an afw ``ExposureF`` so that Rubin tools read them:

===== ========== ======= ================================================
HDU   EXTNAME    dtype   content
===== ========== ======= ================================================
0     (primary)  none    ``SUBFILT`` (sub-band files), ``NSUBFILT``,
                         ``WAVEMIN``/``WAVEMAX`` (nm), ``DCRDASKV``
1     IMAGE      float32 sub-band model ``A_s``, or the coadd
2     MASK       int32   the coadd mask; ``MP_<PLANE> = bit`` keywords
3     VARIANCE   float32 ``var(coadd) / S`` for a sub-band, ``var(coadd)``
                         for the coadd (docs/algorithm.md, "The coadd and
                         outputs")
4     PSF        float32 the coadd's PSF (the store's ``psf``), the same in
                         every file; absent for a store without one
5     TRANSMISSION table only when the store holds the filter curve
                         (``doAttachTransmissionCurve``): ``WAVELENGTH``
                         (nm), ``THROUGHPUT``; ``BAND``, ``TRSOURCE`` (HDU 4
                         if the store has no PSF)
===== ========== ======= ================================================

The ``PSF`` HDU is the one a warp may carry (an odd square stamp summing to
1, ``EXTTYPE = 'PSF'``), with ``PSFFWHM`` (pixels) and ``PSFMETH``
(``inputs``, ``model`` or ``measured``); it has no WCS (its pixels are offsets).

Every image HDU carries the tile WCS from the store's ``wcs_header`` and the
afw keywords ``EXTTYPE``, ``INHERIT``, ``LTV1``/``LTV2`` and the alternate ``A`` WCS
(:func:`dcr_dask.io.fits.image_hdu_header`, shared with the warp writer).

Images are streamed to disk one strip of dask chunks at a time
(:class:`astropy.io.fits.StreamingHDU`), so memory holds one strip, not a
plane; each file is written under a temporary name and renamed when whole.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from astropy.io import fits

from dcr_dask.io.atomic import atomic_file
from dcr_dask.io.fits import image_hdu_header, wcs_from_header_text
from dcr_dask.io.ownership import check_output
from dcr_dask.io.store import compute, open_output
from dcr_dask.masks import MaskPlanes

__all__ = ["export_fits"]

_BITPIX = {np.dtype(np.float32): -32, np.dtype(np.int32): 32}


def _stream_image(
    path: Path, extname: str, data: da.Array, cards: fits.Header, client: Any
) -> None:
    """Append one 2-D image HDU to ``path``, computing it one strip of chunks at a time."""
    dtype = np.dtype(data.dtype)
    ny, nx = data.shape
    header = fits.Header()
    header["XTENSION"] = "IMAGE"
    header["BITPIX"] = _BITPIX[dtype]
    header["NAXIS"] = 2
    header["NAXIS1"] = nx
    header["NAXIS2"] = ny
    header["PCOUNT"] = 0
    header["GCOUNT"] = 1
    header["EXTNAME"] = extname
    header.extend(cards)
    # A str, not a Path: astropy takes the name of a Path-like for a file in the cwd.
    stream = fits.StreamingHDU(os.fspath(path), header)
    try:
        start = 0
        for rows in data.chunks[0]:
            strip = compute(data[start : start + rows], client)
            stream.write(np.ascontiguousarray(strip, dtype=dtype))
            start += rows
    finally:
        stream.close()


def _write_mef(
    path: Path,
    primary: fits.Header,
    images: Sequence[tuple[str, da.Array, fits.Header]],
    *,
    tables: Sequence[fits.BinTableHDU] = (),
    overwrite: bool,
    client: Any,
    psf: fits.ImageHDU | None = None,
) -> None:
    """Write a primary HDU, image extensions, the small PSF HDU and then tables to ``path``.

    The file appears atomically.
    """
    with atomic_file(path, overwrite=overwrite) as tmp:
        fits.PrimaryHDU(header=primary).writeto(tmp)
        for extname, data, cards in images:
            _stream_image(tmp, extname, data, cards, client)
        if psf is not None:
            fits.append(os.fspath(tmp), psf.data, psf.header)
        for table in tables:
            fits.append(tmp, table.data, table.header)


def _transmission_hdu(curve: Any) -> fits.BinTableHDU:
    """The store's filter curve as a ``TRANSMISSION`` binary table."""
    hdu = fits.BinTableHDU.from_columns(
        [
            fits.Column(
                name="WAVELENGTH",
                format="D",
                unit="nm",
                array=np.asarray(curve["transmission_wavelength"].values, dtype=np.float64),
            ),
            fits.Column(
                name="THROUGHPUT", format="D", array=np.asarray(curve.values, dtype=np.float64)
            ),
        ],
        name="TRANSMISSION",
    )
    hdu.header["BAND"] = (str(curve.attrs.get("band", "")), "band the curve describes")
    hdu.header["TRSOURCE"] = (str(curve.attrs.get("source", "")), "where the curve came from")
    return hdu


def _psf_hdu(ds: Any) -> fits.ImageHDU | None:
    """The store's ``psf`` as the ``PSF`` HDU of an exported file, or None without one."""
    if "psf" not in ds.data_vars:
        return None
    header = fits.Header()
    header["EXTNAME"] = "PSF"
    header["EXTTYPE"] = "PSF"
    attrs = ds["psf"].attrs
    if "fwhm_px" in attrs:
        header["PSFFWHM"] = (float(attrs["fwhm_px"]), "[pixel] FWHM, adaptive second moments")
    if "method" in attrs:
        header["PSFMETH"] = (str(attrs["method"]), "inputs/model: visits' PSFs combined; measured")
    return fits.ImageHDU(np.asarray(ds["psf"].values, dtype=np.float32), header=header)


def export_fits(
    store_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    prefix: str | None = None,
    overwrite: bool = False,
    client: Any = None,
) -> list[Path]:
    """Write an output store as afw-style FITS files: one per sub-band and one coadd.

    Parameters
    ----------
    store_path : str or path-like
        An output store (:func:`dcr_dask.io.store.write_output`).
    output_dir : str or path-like
        Directory for the files; created if needed.
    prefix : str or None
        File name prefix; default the store's name without ``.zarr``. Files
        are ``<prefix>_subfilter<i>.fits`` for ``i = 0 .. S - 1`` and
        ``<prefix>_coadd.fits``.
    overwrite : bool
        Replace existing files that dcr_dask wrote. If False and any target
        exists, or True and a target was not written by dcr_dask, nothing is
        written.
    client : distributed.Client or None
        Cluster to compute on; None uses the current dask scheduler.

    Returns
    -------
    list of pathlib.Path
        The sub-band files in sub-band order, then the coadd file.

    Raises
    ------
    dcr_dask.errors.OutputError
        If a target file exists and ``overwrite`` is False, or it exists and
        dcr_dask did not write it, or ``output_dir`` is (inside) the store.
    dcr_dask.errors.InputError
        If ``store_path`` is not an output store.

    Notes
    -----
    Each file is written atomically; if one fails, those written before it
    remain.
    """
    store_path = Path(store_path)
    ds = open_output(store_path)
    if prefix is None:
        prefix = store_path.name.removesuffix(".zarr")
    n_sub = ds.sizes["subfilter"]
    targets = _export_targets(store_path, Path(output_dir), prefix, n_sub, overwrite)

    x0, y0 = int(ds["x"].values[0]), int(ds["y"].values[0])
    wcs = wcs_from_header_text(ds.attrs["wcs_header"])
    image_cards = image_hdu_header(wcs, (x0, y0), extname="IMAGE")
    variance_cards = image_hdu_header(wcs, (x0, y0), extname="VARIANCE")
    mask_cards = image_hdu_header(
        wcs, (x0, y0), extname="MASK", mask_planes=MaskPlanes(ds.attrs["mask_planes"])
    )
    mask = ds["mask"].data
    variance = ds["variance"].data
    wave_min = ds["wavelength_min"].values
    wave_max = ds["wavelength_max"].values
    tables = [_transmission_hdu(ds["transmission"].load())] if "transmission" in ds else []
    psf = _psf_hdu(ds)
    version = str(ds.attrs["dcr_dask_version"])

    for index in range(n_sub):
        _write_mef(
            targets[index],
            _primary_header(index, n_sub, wave_min[index], wave_max[index], version),
            [
                ("IMAGE", ds["dcr_model"].data[index], image_cards),
                ("MASK", mask, mask_cards),
                ("VARIANCE", (variance / np.float32(n_sub)).astype(np.float32), variance_cards),
            ],
            tables=tables,
            overwrite=overwrite,
            client=client,
            psf=psf,
        )
    _write_mef(
        targets[-1],
        _primary_header(None, n_sub, wave_min.min(), wave_max.max(), version),
        [
            ("IMAGE", ds["coadd"].data, image_cards),
            ("MASK", mask, mask_cards),
            ("VARIANCE", variance, variance_cards),
        ],
        tables=tables,
        overwrite=overwrite,
        client=client,
        psf=psf,
    )
    return targets


def _export_targets(
    store_path: Path, output_dir: Path, prefix: str, n_sub: int, overwrite: bool
) -> list[Path]:
    """The files of :func:`export_fits`, sub-bands then coadd, each checked writable."""
    targets = [output_dir / f"{prefix}_subfilter{i}.fits" for i in range(n_sub)]
    targets.append(output_dir / f"{prefix}_coadd.fits")
    for target in targets:
        check_output(target, inputs=[store_path], overwrite=overwrite)
    return targets


def _primary_header(
    index: int | None, n_sub: int, low: float, high: float, version: str
) -> fits.Header:
    """The primary header of an exported file: sub-band (None: the coadd), range, version."""
    header = fits.Header()
    if index is not None:
        header["SUBFILT"] = (index, "sub-band index")
    header["NSUBFILT"] = (n_sub, "number of sub-bands of the DCR model")
    header["WAVEMIN"] = (float(low), "[nm] shortest wavelength")
    header["WAVEMAX"] = (float(high), "[nm] longest wavelength")
    header["DCRDASKV"] = (version, "dcr_dask version")
    return header
