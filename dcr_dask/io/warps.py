"""Open a set of warp files as one lazy xarray Dataset on the tile grid.

:func:`open_warps` first checks *every* file (headers only: see
:func:`dcr_dask.io.fits.check_warp`) and the set as a whole, and raises one
:class:`~dcr_dask.errors.InputErrors` that lists every problem, each naming the
file and the keyword or HDU. Only then does it build the Dataset, whose pixel
variables are Dask arrays: nothing but headers (and the small PSF HDUs) is read
until a chunk is computed, and a chunk reads only its own section of each file.

Dataset layout (``open_warps``)
-------------------------------
Dimensions ``(visit, y, x)``; ``visit`` sorted by visit id.

- ``image`` float32, ``mask`` int32, ``variance`` float32, chunked
  ``(visits_per_chunk, chunk_y, chunk_x)``.
- ``psf`` float32 ``(visit, psf_y, psf_x)`` (in memory), present when at least
  one file has a PSF HDU: every PSF padded with zeros, centred, to the largest
  size; all zeros for a visit without one. ``psf_y``, ``psf_x`` are pixel
  offsets from the PSF centre.
- Coordinates ``visit`` (int64), ``y``, ``x`` (int64 tile pixel indices) and,
  along ``visit``: ``band``, ``mjd`` (UT1 MJD), ``era_deg``, ``ra_deg``,
  ``dec_deg``, ``alt_deg``, ``az_deg``, ``airmass``, ``longitude_deg``,
  ``latitude_deg``, ``elevation_m``, ``temperature_c``, ``pressure_pa``,
  ``humidity_pct``, ``weather_defaulted`` (comma-joined header keywords),
  ``exptime_s``, ``psf_fwhm_px``, ``magzero``, ``rotang_deg``, ``rottype``,
  ``bunit``, ``filename``, ``visit_source``, ``band_source``, ``psf_source``
  (where the visit id, the band and the PSF came from; float64 NaN or ``""``
  where unknown), ``has_psf`` (bool).
- Attributes ``mask_planes`` (dict plane name -> bit, the run layout),
  ``wcs_header`` (the tile WCS as FITS header text, one card a line) and
  ``tile_shape`` ``[ny, nx]``.

Pixel conventions
-----------------
Every mask is remapped to one run layout,
``run_layout(<all file layouts>, extra=["CLIPPED", "NO_DATA", "REJECTED"])``.
Tile pixels that a warp does not cover have image 0, variance 0 and
``NO_DATA``. Pixels whose IMAGE or VARIANCE is not finite get ``NO_DATA``, and
their image and variance are set to 0 (their other mask bits are kept), so the
arrays hold no NaN: consumers must weight by the mask, never by the variance
alone.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Sequence
from typing import Any

import attrs
import dask.array as da
import numpy as np
import xarray as xr
from astropy.wcs import WCS
from dask.base import tokenize

from dcr_dask.errors import InputError, InputErrors
from dcr_dask.io import fits as fits_io
from dcr_dask.masks import MaskPlanes, run_layout
from dcr_dask.visit import Observatory, VisitInfo, Weather

__all__ = [
    "RUN_PLANES",
    "WCS_TOLERANCE_PX",
    "mask_planes",
    "open_psf_matched",
    "open_template",
    "open_warps",
    "tile_wcs",
    "visit_infos",
]

#: Planes every run layout holds besides those of the files.
RUN_PLANES = ("CLIPPED", "NO_DATA", "REJECTED")

#: Largest allowed difference, pixels, between two warps' tile WCSs anywhere on the tile.
WCS_TOLERANCE_PX = 0.01

#: The fields of ``_RECORD``, in order (NumPy types ``dtype.names`` as possibly None).
_FIELDS = ("image", "mask", "variance")
_RECORD = np.dtype({"names": list(_FIELDS), "formats": ["<f4", "<i4", "<f4"]})

#: Per-visit float coordinates: name -> VisitInfo attribute path.
_FLOAT_COORDS = {
    "mjd": "mjd",
    "era_deg": "era_deg",
    "ra_deg": "boresight_ra_deg",
    "dec_deg": "boresight_dec_deg",
    "alt_deg": "boresight_alt_deg",
    "az_deg": "boresight_az_deg",
    "airmass": "boresight_airmass",
    "longitude_deg": "observatory.longitude_deg",
    "latitude_deg": "observatory.latitude_deg",
    "elevation_m": "observatory.elevation_m",
    "temperature_c": "weather.temperature_c",
    "pressure_pa": "weather.pressure_pa",
    "humidity_pct": "weather.humidity_pct",
    "exptime_s": "exptime_s",
    "psf_fwhm_px": "psf_fwhm_px",
    "magzero": "magzero",
    "rotang_deg": "rotang_deg",
}

#: Per-visit string coordinates: name -> VisitInfo attribute.
_STR_COORDS = {
    "band": "band",
    "rottype": "rottype",
    "bunit": "bunit",
    "filename": "filename",
    "visit_source": "visit_source",
    "band_source": "band_source",
    "psf_source": "psf_source",
}

#: String coordinates that record provenance only (optional when reading a store).
_PROVENANCE_COORDS = ("visit_source", "band_source", "psf_source")


# --------------------------------------------------------------------------- lazy pixel access


@attrs.frozen(eq=False)
class _StackReader:
    """Array-like ``(file, y, x)`` view of warp files on the tile grid, for ``da.from_array``.

    Indexing reads the requested tile section of each requested file with
    :func:`dcr_dask.io.fits.read_warp_pixels` and returns a record array with
    fields ``image``, ``mask`` (remapped to ``planes``) and ``variance``.
    """

    paths: tuple[str, ...]
    layouts: tuple[fits_io.WarpLayout, ...]
    tile_shape: tuple[int, int]
    planes: MaskPlanes
    token: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.paths), *self.tile_shape)

    @property
    def ndim(self) -> int:
        return 3

    @property
    def dtype(self) -> np.dtype:
        return _RECORD

    def __dask_tokenize__(self) -> str:
        return self.token

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        ranges, drop = [], []
        for index, size in zip(key, self.shape, strict=True):
            if isinstance(index, int | np.integer):
                start = int(index) + (size if index < 0 else 0)
                ranges.append(range(start, start + 1))
                drop.append(True)
            elif isinstance(index, slice):
                ranges.append(range(*index.indices(size)))
                drop.append(False)
            else:
                raise TypeError(f"warp readers take ints and slices, not {index!r}")
        files, rows, cols = ranges
        out = np.empty((len(files), len(rows), len(cols)), dtype=_RECORD)
        if out.size:
            y0, y1 = min(rows), max(rows) + 1
            x0, x1 = min(cols), max(cols) + 1
            contiguous = rows.step == 1 and cols.step == 1
            pick = () if contiguous else np.ix_(np.asarray(rows) - y0, np.asarray(cols) - x0)
            for i, f in enumerate(files):
                planes = fits_io.read_warp_pixels(
                    self.paths[f],
                    self.layouts[f],
                    slice(y0, y1),
                    slice(x0, x1),
                    mask_planes=self.planes,
                )
                for field, values in zip(_FIELDS, planes, strict=True):
                    out[field][i] = values[pick]
        return out[tuple(0 if d else slice(None) for d in drop)]


def _field(block: np.ndarray, name: str) -> np.ndarray:
    return np.ascontiguousarray(block[name])


def _normalise_chunks(chunks: int | Sequence[int], visits_per_chunk: int) -> tuple[int, int, int]:
    yx = (chunks, chunks) if isinstance(chunks, int | np.integer) else tuple(chunks)
    if len(yx) != 2 or not all(isinstance(c, int | np.integer) and c > 0 for c in yx):
        raise ValueError(f"chunks must be a positive int or (chunk_y, chunk_x), got {chunks!r}")
    if not (isinstance(visits_per_chunk, int | np.integer) and visits_per_chunk > 0):
        raise ValueError(f"visits_per_chunk must be a positive int, got {visits_per_chunk!r}")
    return int(visits_per_chunk), int(yx[0]), int(yx[1])


def _pixel_arrays(
    layouts: Sequence[fits_io.WarpLayout],
    tile_shape: tuple[int, int],
    planes: MaskPlanes,
    chunks: tuple[int, int, int],
) -> dict[str, da.Array]:
    """Lazy ``image``, ``mask``, ``variance`` of shape ``(file, ny, nx)``; one read per chunk."""
    # Absolute paths: workers of a distributed cluster may run in another directory.
    paths = tuple(os.path.abspath(layout.filename) for layout in layouts)
    stats = [(os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in paths]
    token = tokenize(paths, stats, tile_shape, sorted(planes.bits.items()), chunks)
    reader = _StackReader(paths, tuple(layouts), tile_shape, planes, token)
    records = da.from_array(
        reader,
        chunks=chunks,
        name=f"read-warps-{token}",
        meta=np.empty((0, 0, 0), dtype=_RECORD),
        asarray=True,
        lock=False,
    )
    return {
        field: records.map_blocks(
            _field,
            field,
            dtype=_RECORD[field],
            meta=np.empty((0, 0, 0), dtype=_RECORD[field]),
            name=f"{field}-{token}",
        )
        for field in _FIELDS
    }


# --------------------------------------------------------------------------- checks


def _wcs_offset_px(reference: WCS, other: WCS, tile_shape: tuple[int, int]) -> float:
    """Largest pixel distance between two WCSs over a 3x3 grid spanning the tile."""
    ny, nx = tile_shape
    y, x = np.meshgrid([0.0, (ny - 1) / 2, ny - 1.0], [0.0, (nx - 1) / 2, nx - 1.0])
    with np.errstate(invalid="ignore"):
        ra, dec = reference.pixel_to_world_values(x.ravel(), y.ravel())
        px, py = other.world_to_pixel_values(ra, dec)
    offset = np.hypot(px - x.ravel(), py - y.ravel())
    return float(offset.max()) if np.all(np.isfinite(offset)) else float("inf")


def _check_files(
    paths: Sequence[str | os.PathLike[str]], *, with_visit: bool, need_psf: bool = False
) -> tuple[list[fits_io.WarpCheck], list[InputError]]:
    """Check every file; return the good ones (sorted by visit id) and all problems."""
    checks = [fits_io.check_warp(path, visit=with_visit, need_psf=need_psf) for path in paths]
    errors = [error for check in checks for error in check.errors]
    good = [check for check in checks if not check.errors]
    if with_visit:
        good.sort(key=lambda check: _visits([check])[0].visit)
    return good, errors


def _visits(checks: Sequence[fits_io.WarpCheck]) -> list[VisitInfo]:
    visits = [check.visit for check in checks]
    assert all(visit is not None for visit in visits)
    return visits  # type: ignore[return-value]


def _layouts(checks: Sequence[fits_io.WarpCheck]) -> list[fits_io.WarpLayout]:
    layouts = [check.layout for check in checks]
    assert all(layout is not None for layout in layouts)
    return layouts  # type: ignore[return-value]


def _check_visit_set(checks: Sequence[fits_io.WarpCheck]) -> list[InputError]:
    """Duplicate visit ids and mixed bands."""
    errors = []
    visits = _visits(checks)
    by_id = collections.defaultdict(list)
    for visit in visits:
        by_id[visit.visit].append(str(visit.filename))
    for visit_id, names in by_id.items():
        if len(names) > 1:
            errors += [
                InputError(
                    f"visit {visit_id} appears {len(names)} times: {', '.join(names)}",
                    filename=name,
                    keyword="EXPID",
                )
                for name in names
            ]
    bands = collections.Counter(visit.band for visit in visits)
    if len(bands) > 1:
        common = bands.most_common(1)[0][0]
        errors += [
            InputError(
                f"band {visit.band!r} differs from band {common!r} of "
                f"{bands[common]} other warp(s); all warps of a run must be of one band",
                filename=visit.filename,
                keyword="FILTER/BAND",
            )
            for visit in visits
            if visit.band != common
        ]
    return errors


def _check_tile(
    layouts: Sequence[fits_io.WarpLayout],
    tile_shape: tuple[int, int] | None,
    reference_wcs: WCS | None,
    reference_name: str,
) -> tuple[tuple[int, int], WCS | None, list[InputError]]:
    """Offsets that do not fit the tile and WCSs that differ from the tile's."""
    errors = []
    for layout in layouts:
        x0, y0 = layout.xy0
        (ys, xs) = layout.tile_slices
        if x0 < 0 or y0 < 0:
            errors.append(
                InputError(
                    f"the warp starts at tile pixel (x0, y0) = ({x0}, {y0}); negative offsets "
                    "lie outside the tile",
                    filename=layout.filename,
                    keyword="IMAGE LTV1/LTV2",
                )
            )
        elif tile_shape is not None and (ys.stop > tile_shape[0] or xs.stop > tile_shape[1]):
            errors.append(
                InputError(
                    f"the warp (shape {layout.shape}, x0, y0 = {layout.xy0}) extends to "
                    f"(y, x) = ({ys.stop}, {xs.stop}), past the tile of shape {tuple(tile_shape)}",
                    filename=layout.filename,
                    keyword="IMAGE NAXIS1/NAXIS2",
                )
            )
    if tile_shape is None:
        tile_shape = (
            max((layout.tile_slices[0].stop for layout in layouts), default=0),
            max((layout.tile_slices[1].stop for layout in layouts), default=0),
        )
    tile_shape = (int(tile_shape[0]), int(tile_shape[1]))
    if reference_wcs is None and layouts:
        reference_wcs, reference_name = layouts[0].wcs, f"the tile WCS of {layouts[0].filename}"
    for layout in layouts:
        assert reference_wcs is not None
        offset = _wcs_offset_px(reference_wcs, layout.wcs, tile_shape)
        if offset > WCS_TOLERANCE_PX:
            errors.append(
                InputError(
                    f"the WCS differs from {reference_name} by up to {offset:.3g} pixel on the "
                    f"tile (tolerance {WCS_TOLERANCE_PX} pixel); all warps must share the tile WCS",
                    filename=layout.filename,
                    keyword="IMAGE WCS",
                )
            )
    return tile_shape, reference_wcs, errors


def _run_planes(
    layouts: Sequence[fits_io.WarpLayout], given: MaskPlanes | None
) -> tuple[MaskPlanes | None, list[InputError]]:
    """The run's mask layout; with ``given``, check that it holds every file's planes."""
    if given is None:
        try:
            return run_layout(*(layout.mask_planes for layout in layouts), extra=RUN_PLANES), []
        except ValueError as exc:
            return None, [InputError(str(exc), keyword="MASK")]
    errors = []
    for layout in layouts:
        missing = sorted(set(layout.mask_planes.bits) - set(given.bits))
        if missing:
            errors.append(
                InputError(
                    f"mask planes {', '.join(missing)} are not in the run's layout "
                    f"({', '.join(given.names)})",
                    filename=layout.filename,
                    keyword="MASK",
                )
            )
    return given, errors


def _raise(errors: list[InputError]) -> None:
    if errors:
        raise InputErrors(errors)


# --------------------------------------------------------------------------- Datasets


def _attribute(visit: VisitInfo, path: str) -> Any:
    value: Any = visit
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _visit_coords(visits: Sequence[VisitInfo]) -> dict[str, tuple[str, np.ndarray]]:
    coords: dict[str, tuple[str, np.ndarray]] = {}
    for name, path in _FLOAT_COORDS.items():
        values = [_attribute(v, path) for v in visits]
        coords[name] = ("visit", np.array([np.nan if x is None else x for x in values], float))
    for name, attr in _STR_COORDS.items():
        values = [getattr(v, attr) for v in visits]
        coords[name] = ("visit", np.array(["" if x is None else x for x in values], dtype=str))
    defaulted = [",".join(v.weather.defaulted) for v in visits]
    coords["weather_defaulted"] = ("visit", np.array(defaulted, dtype=str))
    return coords


def _psf_cube(psfs: Sequence[np.ndarray | None]) -> np.ndarray:
    size = max(psf.shape[0] for psf in psfs if psf is not None)
    cube = np.zeros((len(psfs), size, size), dtype=np.float32)
    for i, psf in enumerate(psfs):
        if psf is not None:
            pad = (size - psf.shape[0]) // 2
            cube[i, pad : pad + psf.shape[0], pad : pad + psf.shape[1]] = psf
    return cube


def _tile_attrs(tile_shape: tuple[int, int], wcs: WCS, planes: MaskPlanes) -> dict[str, Any]:
    return {
        "mask_planes": dict(planes.bits),
        "wcs_header": fits_io.wcs_to_header_text(wcs),
        "tile_shape": [int(tile_shape[0]), int(tile_shape[1])],
    }


def _warp_dataset(
    checks: Sequence[fits_io.WarpCheck],
    tile_shape: tuple[int, int],
    wcs: WCS,
    planes: MaskPlanes,
    chunks: tuple[int, int, int],
) -> xr.Dataset:
    visits = _visits(checks)
    arrays = _pixel_arrays(_layouts(checks), tile_shape, planes, chunks)
    dims = ("visit", "y", "x")
    data_vars: dict[str, Any] = {name: (dims, array) for name, array in arrays.items()}
    coords: dict[str, Any] = {
        "visit": ("visit", np.array([v.visit for v in visits], dtype=np.int64)),
        "y": ("y", np.arange(tile_shape[0], dtype=np.int64)),
        "x": ("x", np.arange(tile_shape[1], dtype=np.int64)),
        **_visit_coords(visits),
        "has_psf": ("visit", np.array([check.psf is not None for check in checks], dtype=bool)),
    }
    if any(check.psf is not None for check in checks):
        cube = _psf_cube([check.psf for check in checks])
        half = cube.shape[1] // 2
        data_vars["psf"] = (("visit", "psf_y", "psf_x"), cube)
        coords["psf_y"] = ("psf_y", np.arange(-half, half + 1, dtype=np.int64))
        coords["psf_x"] = ("psf_x", np.arange(-half, half + 1, dtype=np.int64))
    return xr.Dataset(data_vars, coords=coords, attrs=_tile_attrs(tile_shape, wcs, planes))


def open_warps(
    paths: Sequence[str | os.PathLike[str]],
    *,
    chunks: int | Sequence[int] = (2000, 2000),
    visits_per_chunk: int = 1,
    tile_shape: Sequence[int] | None = None,
    tile_wcs: WCS | None = None,
    need_psf: bool = False,
) -> xr.Dataset:
    """Open warp files as one lazy Dataset ``(visit, y, x)`` on the tile grid.

    Parameters
    ----------
    paths : sequence of str or path-like
        One warp file per visit (docs/file-formats.md, "Input warps").
    chunks : int or (int, int)
        Chunk size ``(chunk_y, chunk_x)`` of the pixel variables, pixels.
    visits_per_chunk : int
        Visits in one chunk along ``visit``.
    tile_shape : (int, int), optional
        ``(ny, nx)`` of the tile, pixels. Default: from (0, 0) to the largest
        extent of the warps.
    tile_wcs : astropy.wcs.WCS, optional
        The tile WCS, which every warp must match. Default: that of the warp
        with the smallest visit id.
    need_psf : bool
        Every warp must have a PSF width: a warp with no ``PSF-FWHM``, no PSF
        HDU and no afw archive PSF that can be read has it measured from its
        stars (reading the central section of its pixels), and one where that
        fails too is an error. Without it such warps get ``psf_fwhm_px`` NaN.

    Returns
    -------
    xarray.Dataset
        The layout described in the module docstring; pixel variables are
        Dask arrays and, unless ``need_psf`` measured stars, no pixel has been
        read.

    Raises
    ------
    InputErrors
        Listing every problem of every file and of the set: unreadable,
        truncated or malformed files, bad visit metadata, with ``need_psf``
        a warp whose PSF width is known from nowhere, duplicate visit
        ids, mixed bands, WCSs that differ from the tile's by more than
        :data:`WCS_TOLERANCE_PX`, warps with negative offsets or extending
        past ``tile_shape``, and an empty ``paths``.
    ValueError
        If ``chunks`` or ``visits_per_chunk`` is not a positive size.
    """
    chunks3 = _normalise_chunks(chunks, visits_per_chunk)
    if len(paths) == 0:
        raise InputErrors([InputError("no warp files were given")])
    checks, errors = _check_files(paths, with_visit=True, need_psf=need_psf)
    errors += _check_visit_set(checks)
    reference = "the tile WCS given" if tile_wcs is not None else ""
    shape = None if tile_shape is None else (int(tile_shape[0]), int(tile_shape[1]))
    layouts = _layouts(checks)
    shape, wcs, tile_errors = _check_tile(layouts, shape, tile_wcs, reference)
    planes, plane_errors = _run_planes(layouts, None)
    _raise(errors + tile_errors + plane_errors)
    assert wcs is not None and planes is not None
    return _warp_dataset(checks, shape, wcs, planes, chunks3)


def _like_settings(
    like: xr.Dataset | None,
    tile_shape: Sequence[int] | None,
    tile_wcs_: WCS | None,
    chunks: int | Sequence[int] | None,
    planes: MaskPlanes | None,
) -> tuple[tuple[int, int] | None, WCS | None, int | Sequence[int], MaskPlanes | None]:
    """Fill settings left as None from a Dataset made by this module."""
    if like is not None:
        tile_shape = tile_shape if tile_shape is not None else tuple(like.attrs["tile_shape"])
        tile_wcs_ = tile_wcs_ if tile_wcs_ is not None else tile_wcs(like)
        planes = planes if planes is not None else mask_planes(like)
        if chunks is None and like["image"].chunks is not None:
            chunks = (like["image"].chunksizes["y"][0], like["image"].chunksizes["x"][0])
    shape = None if tile_shape is None else (int(tile_shape[0]), int(tile_shape[1]))
    return shape, tile_wcs_, chunks if chunks is not None else (2000, 2000), planes


def open_template(
    path: str | os.PathLike[str],
    *,
    like: xr.Dataset | None = None,
    tile_shape: Sequence[int] | None = None,
    tile_wcs: WCS | None = None,
    chunks: int | Sequence[int] | None = None,
    mask_planes: MaskPlanes | None = None,
) -> xr.Dataset:
    """Open a template coadd (docs/file-formats.md) as a lazy Dataset ``(y, x)``.

    Parameters
    ----------
    path : str or path-like
        The template: IMAGE/MASK/VARIANCE on the tile grid; no visit metadata.
    like : xarray.Dataset, optional
        A Dataset from :func:`open_warps`; supplies the defaults of the
        following four arguments.
    tile_shape : (int, int), optional
        ``(ny, nx)`` of the tile, pixels. Default: the template's extent.
    tile_wcs : astropy.wcs.WCS, optional
        The tile WCS the template must match. Default: the template's own.
    chunks : int or (int, int), optional
        Chunk size ``(chunk_y, chunk_x)``, pixels; default (2000, 2000).
    mask_planes : MaskPlanes, optional
        Bit layout of the returned mask; it must hold every plane of the
        template. Default: the run layout of the template's planes.

    Returns
    -------
    xarray.Dataset
        ``image`` float32, ``mask`` int32, ``variance`` float32 on ``(y, x)``,
        with the same conventions and attributes as :func:`open_warps`.

    Raises
    ------
    InputErrors
        Listing every problem of the file and of its fit to the tile.
    """
    shape, wcs, chunks, planes = _like_settings(like, tile_shape, tile_wcs, chunks, mask_planes)
    chunks3 = _normalise_chunks(chunks, 1)
    checks, errors = _check_files([path], with_visit=False)
    layouts = _layouts(checks)
    reference = "the tile WCS given" if wcs is not None else ""
    shape, wcs, tile_errors = _check_tile(layouts, shape, wcs, reference)
    planes, plane_errors = _run_planes(layouts, planes)
    _raise(errors + tile_errors + plane_errors)
    assert wcs is not None and planes is not None
    arrays = _pixel_arrays(layouts, shape, planes, chunks3)
    return xr.Dataset(
        {name: (("y", "x"), array[0]) for name, array in arrays.items()},
        coords={
            "y": ("y", np.arange(shape[0], dtype=np.int64)),
            "x": ("x", np.arange(shape[1], dtype=np.int64)),
        },
        attrs={**_tile_attrs(shape, wcs, planes), "filename": str(path)},
    )


def open_psf_matched(
    paths: Sequence[str | os.PathLike[str]],
    like: xr.Dataset,
    *,
    chunks: int | Sequence[int] | None = None,
    visits_per_chunk: int | None = None,
) -> xr.Dataset:
    """Open PSF-matched warps (docs/file-formats.md) that pair with direct warps.

    Parameters
    ----------
    paths : sequence of str or path-like
        One PSF-matched warp per visit, in the direct-warp layout.
    like : xarray.Dataset
        The direct warps, from :func:`open_warps`. Their tile shape, tile
        WCS, mask layout and (by default) chunks are used, and the visit ids
        (``EXPID``) must match them one-to-one.
    chunks : int or (int, int), optional
        Chunk size ``(chunk_y, chunk_x)``; default: that of ``like``.
    visits_per_chunk : int, optional
        Visits in one chunk; default: that of ``like``.

    Returns
    -------
    xarray.Dataset
        The layout of :func:`open_warps`, with the visits of ``like`` in the
        same order.

    Raises
    ------
    InputErrors
        Every problem :func:`open_warps` finds, plus visits of ``like`` with
        no PSF-matched warp, PSF-matched warps whose visit is not in ``like``,
        bands that differ from ``like``'s, and mask planes that ``like``'s
        layout lacks.
    """
    shape, wcs, chunks, planes = _like_settings(like, None, None, chunks, None)
    if visits_per_chunk is None:
        visit_chunks = like["image"].chunksizes.get("visit", (1,))
        visits_per_chunk = int(visit_chunks[0]) if visit_chunks else 1
    chunks3 = _normalise_chunks(chunks, visits_per_chunk)
    if len(paths) == 0:
        raise InputErrors([InputError("no PSF-matched warp files were given")])
    checks, errors = _check_files(paths, with_visit=True)
    errors += _check_visit_set(checks)
    direct = dict(zip(like["visit"].values.tolist(), like["filename"].values.tolist(), strict=True))
    bands = set(like["band"].values.tolist())
    visits = _visits(checks)
    for visit in visits:
        if visit.visit not in direct:
            errors.append(
                InputError(
                    f"visit {visit.visit} has no direct warp",
                    filename=visit.filename,
                    keyword="EXPID",
                )
            )
        if visit.band not in bands:
            errors.append(
                InputError(
                    f"band {visit.band!r} differs from the direct warps' "
                    f"{', '.join(map(repr, sorted(bands)))}",
                    filename=visit.filename,
                    keyword="FILTER/BAND",
                )
            )
    found = {visit.visit for visit in visits}
    errors += [
        InputError(
            f"visit {visit} (direct warp {name}) has no valid PSF-matched warp", keyword="EXPID"
        )
        for visit, name in direct.items()
        if visit not in found
    ]
    layouts = _layouts(checks)
    _, _, tile_errors = _check_tile(layouts, shape, wcs, "the tile WCS of the direct warps")
    planes, plane_errors = _run_planes(layouts, planes)
    _raise(errors + tile_errors + plane_errors)
    assert shape is not None and wcs is not None and planes is not None
    return _warp_dataset(checks, shape, wcs, planes, chunks3)


# --------------------------------------------------------------------------- accessors


def _optional(value: Any) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value


def _optional_str(value: Any) -> str | None:
    return str(value) or None


def visit_infos(ds: xr.Dataset) -> list[VisitInfo]:
    """Rebuild the :class:`~dcr_dask.visit.VisitInfo` of every visit from the coordinates.

    Parameters
    ----------
    ds : xarray.Dataset
        A Dataset from :func:`open_warps` (or a store written from one).

    Returns
    -------
    list of VisitInfo
        In the order of ``ds.visit``; equal to the metadata read from the
        files (NaN and ``""`` become None).
    """
    out = []
    for i in range(ds.sizes["visit"]):
        c = {
            name: ds.coords[name].values[i]
            for name in (*_FLOAT_COORDS, *_STR_COORDS)
            if name in ds.coords
        }
        # Stores written before the provenance coordinates existed lack them.
        c.update({name: "" for name in _PROVENANCE_COORDS if name not in c})
        defaulted = str(ds.coords["weather_defaulted"].values[i])
        out.append(
            VisitInfo(
                visit=int(ds.coords["visit"].values[i]),
                band=str(c["band"]),
                observatory=Observatory(
                    float(c["longitude_deg"]), float(c["latitude_deg"]), float(c["elevation_m"])
                ),
                weather=Weather(
                    float(c["temperature_c"]),
                    float(c["pressure_pa"]),
                    float(c["humidity_pct"]),
                    tuple(defaulted.split(",")) if defaulted else (),
                ),
                era_deg=float(c["era_deg"]),
                boresight_ra_deg=float(c["ra_deg"]),
                boresight_dec_deg=float(c["dec_deg"]),
                boresight_alt_deg=float(c["alt_deg"]),
                boresight_airmass=float(c["airmass"]),
                mjd=_optional(c["mjd"]),
                boresight_az_deg=_optional(c["az_deg"]),
                exptime_s=_optional(c["exptime_s"]),
                rotang_deg=_optional(c["rotang_deg"]),
                rottype=_optional_str(c["rottype"]),
                psf_fwhm_px=_optional(c["psf_fwhm_px"]),
                magzero=_optional(c["magzero"]),
                bunit=_optional_str(c["bunit"]),
                filename=_optional_str(c["filename"]),
                visit_source=_optional_str(c["visit_source"]),
                band_source=_optional_str(c["band_source"]),
                psf_source=_optional_str(c["psf_source"]),
            )
        )
    return out


def tile_wcs(ds: xr.Dataset) -> WCS:
    """The tile WCS of a Dataset made by this module.

    Parameters
    ----------
    ds : xarray.Dataset
        A Dataset with the ``wcs_header`` attribute.

    Returns
    -------
    astropy.wcs.WCS
        The WCS in tile pixel coordinates (0-based pixel ``(x, y)`` is
        ``ds.x``, ``ds.y``).
    """
    return fits_io.wcs_from_header_text(ds.attrs["wcs_header"])


def mask_planes(ds: xr.Dataset) -> MaskPlanes:
    """The mask-plane layout of a Dataset made by this module.

    Parameters
    ----------
    ds : xarray.Dataset
        A Dataset with the ``mask_planes`` attribute.

    Returns
    -------
    MaskPlanes
        The bit of every plane of ``ds.mask``.
    """
    return MaskPlanes(ds.attrs["mask_planes"])
