"""Zarr stores: writing them whole, and the output store of a run.

The output store is the product of a run (docs/file-formats.md, "Output store"): one
Zarr (format 3) store that ``xarray.open_zarr`` opens, holding

========== ================== ======= =======================================
variable   dims               dtype   meaning
========== ================== ======= =======================================
dcr_model  (subfilter, y, x)  float32 flux of the true sky in each sub-band
coadd      (y, x)             float32 sum of the sub-bands
variance   (y, x)             float32 variance of ``coadd``
mask       (y, x)             int32   coadd mask; bits in ``mask_planes``
n_image    (subfilter, y, x)  uint16  visits contributing to each pixel
artifacts  (visit, y, x)      uint8   optional: per-visit artifact masks
transmission (transmission_wavelength) float64 optional: the filter's throughput
psf        (psf_y, psf_x)     float32 optional: the coadd's PSF, summing to 1
========== ================== ======= =======================================

with the coordinates ``subfilter`` (``wavelength_min``, ``wavelength_max`` in
nm), ``y`` and ``x`` (tile pixel indices), and the attributes ``mask_planes``,
``wcs_header``, ``config``, ``inputs``, ``convergence`` and
``dcr_dask_version``.

Attributes are stored as native JSON in the store's metadata, so a plain
``xr.open_zarr`` returns the nested dictionaries and lists. JSON has no NaN or
infinity; they are written as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (the Zarr v3 convention for fill values) and turned back into
floats by :func:`open_output`.

The Zarr helpers (:func:`write_zarr`, :func:`write_zarr_chunks`,
:func:`update_group_attrs`, :func:`open_zarr_store`, :func:`to_json_attr`,
:func:`from_json_attr`, :func:`compute`) are shared with the ingest store
(:mod:`dcr_dask.io.ingest`).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec

from dcr_dask._version import __version__
from dcr_dask.errors import InputError
from dcr_dask.io.atomic import atomic_directory
from dcr_dask.io.ownership import WRITER_ATTR, writer
from dcr_dask.kernels.model import coadd_of_planes
from dcr_dask.masks import MaskPlanes
from dcr_dask.progress import progress_enabled, track

__all__ = [
    "OUTPUT_VARIABLES",
    "compute",
    "from_json_attr",
    "make_output_dataset",
    "open_output",
    "open_zarr_store",
    "to_json_attr",
    "transmission_array",
    "update_group_attrs",
    "write_output",
    "write_zarr",
    "write_zarr_chunks",
]

#: Compressor of every data variable written by dcr_dask.
COMPRESSORS = (BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"),)

#: Zarr chunk edge (pixels) used along ``y`` and ``x`` for in-memory variables.
DEFAULT_CHUNK_PX = 2048

#: Required variables of an output store: dims and dtype.
OUTPUT_VARIABLES: dict[str, tuple[tuple[str, ...], np.dtype]] = {
    "dcr_model": (("subfilter", "y", "x"), np.dtype(np.float32)),
    "coadd": (("y", "x"), np.dtype(np.float32)),
    "variance": (("y", "x"), np.dtype(np.float32)),
    "mask": (("y", "x"), np.dtype(np.int32)),
    "n_image": (("subfilter", "y", "x"), np.dtype(np.uint16)),
}
#: ``(name, dims, dtype)`` of an optional output variable.
_Variable = tuple[str, tuple[str, ...], np.dtype]
_ARTIFACTS: _Variable = ("artifacts", ("visit", "y", "x"), np.dtype(np.uint8))
_TRANSMISSION: _Variable = ("transmission", ("transmission_wavelength",), np.dtype(np.float64))
_PSF: _Variable = ("psf", ("psf_y", "psf_x"), np.dtype(np.float32))
_OUTPUT_COORDS = ("subfilter", "wavelength_min", "wavelength_max", "y", "x")
_OUTPUT_ATTRS = ("mask_planes", "wcs_header", "config", "inputs", "convergence", "dcr_dask_version")

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def to_json_attr(value: Any, name: str = "attribute") -> Any:
    """Convert an attribute value to plain JSON types.

    Parameters
    ----------
    value : object
        Nested mappings, sequences, NumPy arrays and scalars, strings, paths,
        numbers, booleans and None.
    name : str
        Name of the attribute, for the error message.

    Returns
    -------
    object
        The same structure built of dict (with str keys), list, str, int,
        float, bool and None. Tuples and arrays become lists; non-finite
        floats become ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``.

    Raises
    ------
    TypeError
        If the value holds something JSON cannot represent.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.ndarray):
        return to_json_attr(value.tolist(), name)
    if isinstance(value, np.generic):
        return to_json_attr(value.item(), name)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(key): to_json_attr(item, f"{name}[{key!r}]") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_attr(item, f"{name}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"{name} = {value!r} ({type(value).__name__}) cannot be stored as JSON")


def from_json_attr(value: Any) -> Any:
    """Undo the non-finite float encoding of :func:`to_json_attr`.

    Parameters
    ----------
    value : object
        An attribute as read from a store.

    Returns
    -------
    object
        The same structure with ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``
        strings turned back into floats.
    """
    if isinstance(value, str):
        return _NONFINITE.get(value, value)
    if isinstance(value, Mapping):
        return {key: from_json_attr(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_json_attr(item) for item in value]
    return value


@contextlib.contextmanager
def _quiet_consolidation() -> Iterator[None]:
    """Silence zarr's notice that v3 consolidated metadata is not yet in the spec.

    dcr_dask consolidates on purpose: without it ``xr.open_zarr`` warns and
    lists the store file by file, which is slow on shared filesystems.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        yield


def compute(obj: Any, client: Any = None, label: str | None = None) -> Any:
    """Compute a dask collection on ``client``, or on the current scheduler.

    Parameters
    ----------
    obj : dask collection
        What to compute (for example the delayed result of ``to_zarr``), or a list
        of them (a list of values is returned).
    client : distributed.Client or None
        Cluster to run on; None uses dask's current scheduler (a default
        ``distributed.Client`` if one exists, else the threaded scheduler).
    label : str, optional
        Name of the stage; with a client and progress on
        (:mod:`dcr_dask.progress`), its progress is drawn under this name.

    Returns
    -------
    object
        The computed value.

    Notes
    -----
    If the computation fails or is interrupted, what is left of it is cancelled
    and, for up to :data:`CANCEL_WAIT_S`, the workers' running tasks are waited
    for, so that a temporary store deleted after the failure is not written to again.
    """
    if client is None:
        return dask.compute(obj)[0]
    future = client.compute(obj)  # a list gives a list of futures
    try:
        if label is not None and progress_enabled():
            track(future, label)
        return client.gather(future)
    except BaseException:
        _cancel(client, future)
        raise


#: Seconds :func:`compute` waits, after a failure, for the workers' running tasks to end.
CANCEL_WAIT_S = 10.0


def _cancel(client: Any, future: Any) -> None:
    """Cancel what is left of a failed computation and wait (at most
    :data:`CANCEL_WAIT_S`) until no worker runs a task, so that no chunk is written
    into a temporary store after it has been deleted. Best effort: a scheduler that
    has gone away is not waited for."""
    if getattr(client, "status", "running") != "running":  # the scheduler is gone
        return
    with contextlib.suppress(Exception):
        client.cancel(future, force=True)
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline:
            running = client.run(lambda dask_worker: dask_worker.state.executing_count)
            if not any(running.values()):
                return
            time.sleep(0.1)


def _regular_chunks(var: xr.DataArray) -> xr.DataArray:
    """Give ``var`` dask chunks that Zarr can store one to one.

    Zarr chunks are equal along a dimension except the last, which may be
    shorter. Dask arrays whose chunks are not like that are rechunked to
    their largest chunk; NumPy arrays are chunked ``1`` along non-pixel
    dimensions and :data:`DEFAULT_CHUNK_PX` along ``y`` and ``x``.
    """
    if var.chunks is None:
        return var.chunk({dim: DEFAULT_CHUNK_PX if dim in ("y", "x") else 1 for dim in var.dims})
    target = {}
    for dim, sizes in zip(var.dims, var.chunks, strict=True):
        if any(size != sizes[0] for size in sizes[:-1]) or sizes[-1] > sizes[0]:
            target[dim] = max(sizes)
    return var.chunk(target) if target else var


def write_zarr_chunks(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    *,
    mode: Literal["w", "a"] = "w",
    client: Any = None,
) -> None:
    """Write a Dataset into a consolidated Zarr format-3 store, one task per chunk.

    Parameters
    ----------
    ds : xarray.Dataset
        What to write. Data variables must be dask-backed with chunks Zarr can
        store (see :func:`_regular_chunks`); each dask chunk becomes one Zarr
        chunk, compressed with :data:`COMPRESSORS`, computed and written by
        its own task, so nothing is loaded whole. Attributes must already be
        JSON (:func:`to_json_attr`).
    path : str or path-like
        Store location on a filesystem that every dask worker sees.
    mode : {"w", "a"}
        ``"w"`` creates the store; ``"a"`` adds variables to an existing one
        (and replaces its group attributes with ``ds.attrs``, as xarray does).
    client : distributed.Client or None
        Cluster to compute on; None uses the current dask scheduler.
    """
    ds = ds.drop_encoding()
    encoding = {name: {"compressors": COMPRESSORS} for name in ds.data_vars}
    with _quiet_consolidation():
        delayed = ds.to_zarr(
            path,
            mode=mode,
            zarr_format=3,
            consolidated=True,
            encoding=encoding,
            compute=False,
        )
    name = Path(path).name
    if name.startswith(".") and ".tmp-" in name:  # an atomic write's hidden sibling
        name = name[1:].split(".tmp-")[0]
    compute(delayed, client, label=f"write {name}")


def write_zarr(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    client: Any = None,
    final_attrs: Mapping[str, Any] | None = None,
) -> None:
    """Write a Dataset as a new, whole Zarr format-3 store.

    Parameters
    ----------
    ds : xarray.Dataset
        What to write, as for :func:`write_zarr_chunks`.
    path : str or path-like
        Store location on a filesystem that every dask worker sees.
    overwrite : bool
        Replace an existing ``path`` once the new store is complete.
    client : distributed.Client or None
        Cluster to compute on; None uses the current dask scheduler.
    final_attrs : mapping or None
        Group attributes (JSON) set after every chunk is written: the last
        write to the store, so a reader that finds them knows the rest is there.
        The ownership marker :data:`dcr_dask.io.ownership.WRITER_ATTR` is
        always added, so that ``overwrite`` may later replace the store.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    dcr_dask.errors.OutputError
        If ``path`` exists, ``overwrite`` is True and dcr_dask did not write it.

    Notes
    -----
    The store is built under a hidden temporary name beside ``path`` and
    renamed when complete (:func:`dcr_dask.io.atomic.atomic_directory`); a
    failure, including one in a dask task, deletes the temporary.
    """
    with atomic_directory(path, overwrite=overwrite) as tmp:
        # marked from its first metadata on, so that a later write may remove it if this
        # one is interrupted (dcr_dask.io.atomic.remove_stale_temporaries)
        write_zarr_chunks(ds.assign_attrs({WRITER_ATTR: writer()}), tmp, mode="w", client=client)
        update_group_attrs(tmp, {**(final_attrs or {}), WRITER_ATTR: writer()})


def update_group_attrs(path: str | os.PathLike[str], attrs: Mapping[str, Any]) -> None:
    """Set attributes of a store's root group in one metadata write.

    Parameters
    ----------
    path : str or path-like
        The store.
    attrs : mapping
        JSON attributes to add or replace. The consolidated metadata, which
        lives in the same ``zarr.json``, is kept.
    """
    group = zarr.open_group(path, mode="r+", zarr_format=3)
    group.attrs.update(dict(attrs))


def _loaded_coord(var: xr.Variable) -> xr.Variable:
    """Load a small coordinate; strings get NumPy's ``str`` dtype (Zarr gives StringDType)."""
    var = var.load()
    if var.dtype.kind in "OT":
        var = var.copy(data=np.asarray(var.values.tolist(), dtype=str))
    return var


def open_zarr_store(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a dcr_dask Zarr store lazily, with the chunks it was written with.

    Parameters
    ----------
    path : str or path-like
        The store.

    Returns
    -------
    xarray.Dataset
        Dask-backed variables, one dask chunk per Zarr chunk; coordinates
        without ``y`` or ``x`` (per-visit and per-sub-band metadata) loaded,
        strings as ``str``;
        attributes with non-finite floats decoded (:func:`from_json_attr`).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    InputError
        If ``path`` is not a Zarr store.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such Zarr store")
    try:
        ds = xr.open_zarr(path, chunks={})
    except (zarr.errors.BaseZarrError, OSError, ValueError) as error:
        raise InputError(f"not a readable Zarr store ({error})", filename=str(path)) from error
    small = {
        name: _loaded_coord(coord.variable)
        for name, coord in ds.coords.items()
        if name not in ds.indexes and not {"y", "x"} & set(coord.dims)
    }
    ds = ds.assign_coords(small)
    ds.attrs = {key: from_json_attr(value) for key, value in ds.attrs.items()}
    return ds


def _as_dataarray(name: str, value: Any, dims: tuple[str, ...], dtype: np.dtype) -> xr.DataArray:
    """Label an array (NumPy, dask or DataArray) with ``dims`` and cast it lazily."""
    if isinstance(value, xr.DataArray):
        if set(value.dims) != set(dims):
            raise ValueError(f"{name} has dims {value.dims}, expected {dims}")
        array = value.transpose(*dims)
    else:
        if np.ndim(value) != len(dims):
            raise ValueError(f"{name} has {np.ndim(value)} dimensions, expected {dims}")
        array = xr.DataArray(value, dims=dims)
    return array.astype(dtype, copy=False).rename(name)


def _pixel_coords(arrays: Sequence[xr.DataArray]) -> dict[Hashable, np.ndarray]:
    """The ``y`` and ``x`` coordinates that the arrays carry, checked to agree."""
    coords: dict[Hashable, np.ndarray] = {}
    for array in arrays:
        for dim in ("y", "x"):
            if dim in array.coords:
                values = np.asarray(array[dim].values)
                if dim in coords and not np.array_equal(coords[dim], values):
                    raise ValueError(f"{array.name} has different {dim} coordinates")
                coords.setdefault(dim, values)
    return coords


def transmission_array(
    wavelength_nm: Any, throughput: Any, *, band: str, source: str
) -> xr.DataArray:
    """The filter curve as the output store holds it (``doAttachTransmissionCurve``).

    Parameters
    ----------
    wavelength_nm : array-like
        Vacuum wavelengths, nm, increasing.
    throughput : array-like
        Throughput at each wavelength (dimensionless).
    band : str
        The band the curve describes.
    source : str
        Where the curve came from (a file, or a standard band).

    Returns
    -------
    xarray.DataArray
        ``transmission`` (float64) along ``transmission_wavelength`` (nm), one
        chunk, with the attributes ``band``, ``source`` and ``units``.
    """
    wavelength = np.asarray(wavelength_nm, dtype=np.float64)
    values = np.asarray(throughput, dtype=np.float64)
    if wavelength.ndim != 1 or values.shape != wavelength.shape:
        raise ValueError("wavelength_nm and throughput must be 1-D arrays of one length")
    return xr.DataArray(
        values,
        dims=_TRANSMISSION[1],
        coords={
            "transmission_wavelength": ("transmission_wavelength", wavelength, {"units": "nm"})
        },
        attrs={"band": str(band), "source": str(source), "units": "throughput"},
        name="transmission",
    ).chunk({"transmission_wavelength": -1})


def make_output_dataset(
    dcr_model: Any,
    variance: Any,
    mask: Any,
    n_image: Any,
    *,
    wavelength_min_nm: Sequence[float],
    wavelength_max_nm: Sequence[float],
    mask_planes: MaskPlanes | Mapping[str, int],
    wcs_header: str,
    config: Any,
    inputs: Sequence[Mapping[str, Any]],
    convergence: Mapping[str, Any] | Sequence[Any],
    artifacts: Any = None,
    transmission: xr.DataArray | None = None,
    psf: np.ndarray | None = None,
    psf_attrs: Mapping[str, Any] | None = None,
    extra_attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Assemble the output Dataset of a run (docs/file-formats.md, "Output store").

    Nothing is computed: dask inputs stay lazy, and ``coadd`` is their lazy sum.

    Parameters
    ----------
    dcr_model : array-like or xarray.DataArray, shape (S, ny, nx)
        Sky flux in each of the ``S`` sub-bands (the unit of the warps).
    variance : array-like or xarray.DataArray, shape (ny, nx)
        Variance of the coadd, flux unit squared.
    mask : array-like or xarray.DataArray, shape (ny, nx)
        Coadd mask, bits as in ``mask_planes``.
    n_image : array-like or xarray.DataArray, shape (S, ny, nx)
        Number of visits contributing to each sub-band pixel; stored as
        uint16 (counts above 65535 do not fit).
    wavelength_min_nm, wavelength_max_nm : sequence of float, length S
        Wavelength range of each sub-band, nm.
    mask_planes : MaskPlanes or mapping of str to int
        Bit of each mask plane.
    wcs_header : str
        Tile WCS as FITS header text (``astropy.wcs.WCS.to_header().tostring()``).
    config : mapping or object with ``toDict()``
        The full run configuration.
    inputs : sequence of mapping
        One record per visit (``visit``, ``weight``, ``airmass``,
        ``parallactic_angle_deg``, ``psf_fwhm_px``, ...).
    convergence : mapping or sequence
        Convergence history of every subregion.
    artifacts : array-like or xarray.DataArray, shape (V, ny, nx), optional
        Per-visit artifact masks (nonzero = masked). Its ``visit`` coordinate is
        taken from the DataArray if it has one, else from ``inputs``.
    transmission : xarray.DataArray, optional
        The filter curve (:func:`transmission_array`), stored as it is.
    psf : numpy.ndarray, optional
        The coadd's PSF: an odd square stamp, stored normalised to sum 1 as
        ``psf`` ``(psf_y, psf_x)`` float32 with the pixel offsets from its
        centre as coordinates.
    psf_attrs : mapping, optional
        Attributes of ``psf`` (how it was made); finite JSON values.
    extra_attrs : mapping, optional
        More attributes; may not reuse the names above.

    Returns
    -------
    xarray.Dataset
        The output Dataset. ``y`` and ``x`` are the pixel coordinates of the
        inputs that carry them (they must agree), else ``0 .. n - 1``.

    Raises
    ------
    ValueError
        If shapes, lengths or attribute names are inconsistent.
    """
    variables = _output_variables(
        {"dcr_model": dcr_model, "variance": variance, "mask": mask, "n_image": n_image}
    )
    n_sub, ny, nx = variables["dcr_model"].shape
    records = _input_records(inputs)
    if artifacts is not None:
        variables["artifacts"] = _artifacts_variable(artifacts, records)
    psf_coords: dict[str, Any] = {}
    if psf is not None:
        variables["psf"], psf_coords = _psf_variable(psf, psf_attrs)
    coords: dict[Hashable, np.ndarray] = {
        "y": np.arange(ny, dtype=np.int64),
        "x": np.arange(nx, dtype=np.int64),
    }
    coords.update(_pixel_coords(list(variables.values())))
    _check_sizes(variables, {"subfilter": n_sub, "y": ny, "x": nx})
    wave_min, wave_max = _subband_edges(wavelength_min_nm, wavelength_max_nm, n_sub)
    attrs = _output_attrs(mask_planes, wcs_header, config, records, convergence, extra_attrs or {})
    return xr.Dataset(
        _data_vars(variables, transmission),
        coords={
            **coords,
            **psf_coords,
            "subfilter": np.arange(n_sub, dtype=np.int64),
            "wavelength_min": ("subfilter", wave_min, {"units": "nm"}),
            "wavelength_max": ("subfilter", wave_max, {"units": "nm"}),
        },
        attrs=attrs,
    )


def _data_vars(
    variables: Mapping[str, xr.DataArray], transmission: xr.DataArray | None
) -> dict[str, xr.DataArray]:
    """The data variables without their coordinates (but ``visit``), and ``transmission``."""
    data_vars = {
        name: var.drop_vars([c for c in var.coords if c != "visit"])
        for name, var in variables.items()
    }
    if transmission is not None:
        if transmission.dims != _TRANSMISSION[1] or transmission.dtype != _TRANSMISSION[2]:
            raise ValueError("transmission must come from transmission_array()")
        data_vars["transmission"] = transmission
    return data_vars


def _output_variables(arrays: Mapping[str, Any]) -> dict[str, xr.DataArray]:
    """The four input arrays as labelled, cast DataArrays, plus their lazy ``coadd``."""
    variables = {
        name: _as_dataarray(name, value, *OUTPUT_VARIABLES[name]) for name, value in arrays.items()
    }
    model = variables["dcr_model"]
    data = model.data
    summed = (
        da.map_blocks(coadd_of_planes, data.rechunk({0: -1}), drop_axis=0, dtype=np.float32)
        if isinstance(data, da.Array)
        else coadd_of_planes(data)
    )
    first = model.isel(subfilter=0, drop=True)
    variables["coadd"] = xr.DataArray(summed, dims=first.dims, coords=first.coords, name="coadd")
    return variables


def _input_records(inputs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The per-visit records as plain dicts, each checked to name its ``visit``."""
    records = [dict(record) for record in inputs]
    if any("visit" not in record for record in records):
        raise ValueError("every record of inputs needs a 'visit'")
    return records


def _artifacts_variable(artifacts: Any, records: Sequence[Mapping[str, Any]]) -> xr.DataArray:
    """The ``artifacts`` variable, with its ``visit`` coordinate (else taken from ``records``)."""
    art = _as_dataarray("artifacts", artifacts, *_ARTIFACTS[1:])
    if "visit" not in art.coords:
        if art.sizes["visit"] != len(records):
            raise ValueError(
                f"artifacts has {art.sizes['visit']} visits but inputs has {len(records)}"
            )
        art = art.assign_coords(visit=[int(record["visit"]) for record in records])
    return art


def _psf_variable(
    psf: np.ndarray, psf_attrs: Mapping[str, Any] | None
) -> tuple[xr.DataArray, dict[str, Any]]:
    """The checked, normalised ``psf`` variable and its ``psf_y``/``psf_x`` coordinates."""
    stamp = np.asarray(psf, dtype=np.float64)
    total = stamp.sum()
    if stamp.ndim != 2 or stamp.shape[0] != stamp.shape[1] or stamp.shape[0] % 2 != 1:
        raise ValueError(f"psf of shape {stamp.shape} must be an odd square stamp")
    if not (np.all(np.isfinite(stamp)) and total > 0):
        raise ValueError("psf must be finite with a positive sum")
    half = stamp.shape[0] // 2
    offsets = np.arange(-half, half + 1, dtype=np.int64)
    stamp32 = (stamp / total).astype(np.float32)
    variable = xr.DataArray(
        # one chunk: a stamp is small
        da.from_array(stamp32, chunks=stamp32.shape),
        dims=_PSF[1],
        attrs=dict(psf_attrs or {}),
        name="psf",
    )
    return variable, {"psf_y": offsets, "psf_x": offsets}


def _check_sizes(variables: Mapping[str, xr.DataArray], expected: Mapping[Hashable, int]) -> None:
    """Raise ValueError at the first variable whose ``subfilter``, ``y`` or ``x`` size differs."""
    for name, var in variables.items():
        for dim, size in var.sizes.items():
            if dim in expected and size != expected[dim]:
                raise ValueError(f"{name} has {dim} of size {size}, expected {expected[dim]}")


def _subband_edges(
    wavelength_min_nm: Sequence[float], wavelength_max_nm: Sequence[float], n_sub: int
) -> tuple[np.ndarray, np.ndarray]:
    """The sub-band edges as float64 arrays, checked to number ``n_sub`` and to increase."""
    wave_min = np.asarray(wavelength_min_nm, dtype=np.float64)
    wave_max = np.asarray(wavelength_max_nm, dtype=np.float64)
    if wave_min.shape != (n_sub,) or wave_max.shape != (n_sub,):
        raise ValueError(f"wavelength_min_nm and wavelength_max_nm need {n_sub} values each")
    if np.any(wave_min >= wave_max):
        raise ValueError("every sub-band needs wavelength_min_nm < wavelength_max_nm")
    return wave_min, wave_max


def _output_attrs(
    mask_planes: MaskPlanes | Mapping[str, int],
    wcs_header: str,
    config: Any,
    records: list[dict[str, Any]],
    convergence: Mapping[str, Any] | Sequence[Any],
    extra_attrs: Mapping[str, Any],
) -> dict[str, Any]:
    """The attributes of the output Dataset; ``extra_attrs`` may not reuse a reserved name."""
    planes = mask_planes if isinstance(mask_planes, MaskPlanes) else MaskPlanes(mask_planes)
    attrs: dict[str, Any] = {
        "mask_planes": dict(planes.bits),
        "wcs_header": str(wcs_header),
        "config": config.toDict() if hasattr(config, "toDict") else dict(config),
        "inputs": records,
        "convergence": convergence,
        "dcr_dask_version": __version__,
    }
    for key, value in extra_attrs.items():
        if key in attrs:
            raise ValueError(f"extra_attrs may not set the reserved attribute {key!r}")
        attrs[key] = value
    return attrs


def _check_output(ds: xr.Dataset, where: str) -> None:
    """Raise InputError naming ``where`` and what is missing if ``ds`` is not an output."""

    def fail(message: str, keyword: str) -> None:
        raise InputError(f"not a dcr_dask output store: {message}", filename=where, keyword=keyword)

    expected = dict(OUTPUT_VARIABLES)
    for name, dims, dtype in (_ARTIFACTS, _TRANSMISSION, _PSF):
        if name in ds.data_vars:
            expected[name] = (dims, dtype)
    for name, (dims, dtype) in expected.items():
        if name not in ds.data_vars:
            fail(f"variable {name!r} is missing", name)
        var = ds[name]
        if var.dims != dims or var.dtype != dtype:
            fail(f"variable {name!r} is {var.dims} {var.dtype}, expected {dims} {dtype}", name)
    for name in _OUTPUT_COORDS:
        if name not in ds.coords:
            fail(f"coordinate {name!r} is missing", name)
    for name in _OUTPUT_ATTRS:
        if name not in ds.attrs:
            fail(f"attribute {name!r} is missing", name)


def write_output(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    client: Any = None,
) -> Path:
    """Write an output Dataset as a Zarr format-3 store, atomically.

    Parameters
    ----------
    ds : xarray.Dataset
        As made by :func:`make_output_dataset`. Dask variables are computed
        chunk by chunk while they are written; nothing is loaded whole.
    path : str or path-like
        Store location (by convention ending in ``.zarr``) on a filesystem that
        every dask worker sees.
    overwrite : bool
        Replace an existing store once the new one is complete.
    client : distributed.Client or None
        Cluster to compute on; None uses the current dask scheduler.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InputError
        If ``ds`` lacks a variable, coordinate or attribute of an output store.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.

    Notes
    -----
    The store is written under a temporary name and renamed when complete, so
    a store at ``path`` is always whole; a failure leaves ``path`` as it was.
    """
    _check_output(ds, "output dataset")
    ds = ds.copy()
    for name in ds.data_vars:
        ds[name] = _regular_chunks(ds[name])
    ds.attrs = {key: to_json_attr(value, key) for key, value in ds.attrs.items()}
    write_zarr(ds, path, overwrite=overwrite, client=client)
    return Path(path)


def open_output(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open an output store lazily and check that it is one.

    The store opens with plain ``xr.open_zarr(path)`` too; this function also
    validates it and decodes non-finite floats in the attributes.

    Parameters
    ----------
    path : str or path-like
        The store.

    Returns
    -------
    xarray.Dataset
        Dask-backed variables with the stored chunks; attributes ``config``
        (dict), ``inputs`` (list of dict), ``convergence``, ``mask_planes``
        (dict), ``wcs_header`` (str) and ``dcr_dask_version``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    InputError
        If ``path`` is not a Zarr store, or lacks a variable, coordinate or
        attribute of an output store; the message names the path and what is
        missing.
    """
    ds = open_zarr_store(path)
    _check_output(ds, str(path))
    return ds
