"""The ingest store: the warps of a run, written once into Zarr in compute-sized chunks.

Reading FITS warps is slow and their natural chunk is a whole visit; the
iterations want the cube ``(visit, y, x)`` in chunks of one (or a few) visits
by one subregion. :func:`ingest_warps` rewrites the lazy Dataset of
:func:`dcr_dask.io.warps.open_warps` into such a Zarr (format 3) store once,
chunk by chunk on the current dask scheduler, and later runs open the store
with :func:`open_ingested`.

Completeness and reuse
----------------------
The store is built under a temporary name and renamed when complete
(:mod:`dcr_dask.io.atomic`). Two group attributes make its state readable:

``dcr_dask_ingest_fingerprint``
    Written with the first metadata: a hash of the inputs
    (:func:`input_fingerprint`). Its presence marks the directory as an
    ingest store.
``dcr_dask_complete``
    Written last, after every chunk: the list of data variables that are
    whole. A store without it, or whose list lacks ``image``, ``mask`` or
    ``variance``, is incomplete and is never opened as if it were complete.

:func:`ingest_warps` on an existing path then does one of four things:

* complete store, same fingerprint: nothing is written; the store is opened
  (logged at INFO);
* complete store, different fingerprint: :class:`FileExistsError`, unless
  ``overwrite=True``, which replaces it. Silently replacing would discard
  artifact masks and hide a mix-up of inputs;
* incomplete ingest store (a writer that did not finish without the atomic
  rename, e.g. an interrupted :func:`write_visit_masks` on an older store or a
  partial copy): replaced, with a warning, since nothing in it can be trusted;
* anything else (not an ingest store): :class:`FileExistsError`, unless
  ``overwrite=True`` and the directory is another store dcr_dask wrote
  (:mod:`dcr_dask.io.ownership`); dcr_dask never deletes a directory it did
  not write.

Per-visit masks
---------------
:func:`write_visit_masks` adds a variable (for example ``artifacts``,
``(visit, y, x)`` uint8) to a complete store. Zarr cannot rename an array
inside a group, so the variable is not atomic by rename: its name is removed
from ``dcr_dask_complete``, the array is written, and the name is added back
as the last write. :func:`open_ingested` drops (with a warning) any data
variable not listed, so a crash mid-write is never read as a mask.
:func:`write_artifact_masks` stores CompareWarp's ``artifacts`` and ``no_data``
masks this way (:data:`dcr_dask.masks.ARTIFACT_VARIABLES`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import dask.base
import numpy as np
import xarray as xr
import zarr

from dcr_dask.errors import InputError
from dcr_dask.io.ownership import WRITER_ATTR
from dcr_dask.io.store import (
    open_zarr_store,
    to_json_attr,
    update_group_attrs,
    write_zarr,
    write_zarr_chunks,
)
from dcr_dask.masks import ARTIFACT_VARIABLES

__all__ = [
    "COMPLETE_ATTR",
    "FINGERPRINT_ATTR",
    "artifact_mask_dataset",
    "ingest_warps",
    "input_fingerprint",
    "open_ingested",
    "write_artifact_masks",
    "write_visit_masks",
]

logger = logging.getLogger(__name__)

#: Group attribute holding the fingerprint of the inputs.
FINGERPRINT_ATTR = "dcr_dask_ingest_fingerprint"
#: Group attribute, written last, listing the data variables that are whole.
COMPLETE_ATTR = "dcr_dask_complete"
#: Version of the store layout; part of the fingerprint, so a new layout re-ingests.
INGEST_FORMAT = 1

#: Data variables every warp Dataset has, with their dims and stored dtypes.
WARP_VARIABLES: dict[str, tuple[tuple[str, ...], np.dtype]] = {
    "image": (("visit", "y", "x"), np.dtype(np.float32)),
    "mask": (("visit", "y", "x"), np.dtype(np.int32)),
    "variance": (("visit", "y", "x"), np.dtype(np.float32)),
}
_PSF = ("psf", ("visit", "psf_y", "psf_x"), np.dtype(np.float32))
_ABSENT, _COMPLETE, _INCOMPLETE, _FOREIGN = "absent", "complete", "incomplete", "foreign"


def _chunk_layout(chunks: tuple[int, int], visits_per_chunk: int) -> dict[str, int]:
    """Validate the requested chunking and return it by dimension."""
    sizes = {"visit": visits_per_chunk, "y": chunks[0], "x": chunks[1]}
    if len(chunks) != 2 or any(int(size) != size or size < 1 for size in sizes.values()):
        raise ValueError(
            f"chunks must be two positive integers (y, x) and visits_per_chunk a positive "
            f"integer; got chunks={chunks!r}, visits_per_chunk={visits_per_chunk!r}"
        )
    return {dim: int(size) for dim, size in sizes.items()}


def _check_warps(warps: xr.Dataset) -> None:
    """Raise ValueError if ``warps`` lacks what an ingest store needs."""
    expected = dict(WARP_VARIABLES)
    if _PSF[0] in warps.data_vars:
        expected[_PSF[0]] = _PSF[1:]
    for name, (dims, _) in expected.items():
        if name not in warps.data_vars:
            raise ValueError(f"warps have no {name!r} variable")
        if warps[name].dims != dims:
            raise ValueError(
                f"warps variable {name!r} has dims {warps[name].dims}, expected {dims}"
            )
    if "visit" not in warps.coords:
        raise ValueError("warps have no 'visit' coordinate")


def _digest(values: Any) -> str:
    """Hash the values of a small array (a coordinate) without a Python loop for numbers."""
    values = np.asarray(values)
    if values.dtype.kind in "biufcmM":
        data = values.dtype.str.encode() + np.ascontiguousarray(values).tobytes()
    else:
        data = json.dumps([str(item) for item in values.ravel().tolist()]).encode()
    return hashlib.sha256(repr(values.shape).encode() + data).hexdigest()


def _file_record(filename: str) -> list[Any]:
    """Absolute path, size (bytes) and modification time (ns) of one input file."""
    path = os.path.abspath(filename)
    try:
        stat = os.stat(path)
    except OSError:
        return [path, None, None]
    return [path, stat.st_size, stat.st_mtime_ns]


def input_fingerprint(
    warps: xr.Dataset, *, chunks: tuple[int, int] = (2000, 2000), visits_per_chunk: int = 1
) -> str:
    """Hash what determines the content of an ingest store, without reading pixels.

    Parameters
    ----------
    warps : xarray.Dataset
        The warps, as from :func:`dcr_dask.io.warps.open_warps`.
    chunks : tuple of int
        Chunk size along ``(y, x)``, pixels.
    visits_per_chunk : int
        Chunk size along ``visit``.

    Returns
    -------
    str
        A SHA-256 hex digest of: the path, size and modification time of each
        file in the ``filename`` coordinate; the attributes; the names, dims,
        shapes and dtypes of the data variables; the values of every
        coordinate (the per-visit metadata); the chunking; and the store
        layout version.

    Notes
    -----
    If there is no ``filename`` coordinate, or a visit has an empty file name
    (warps made in memory, e.g. by :mod:`dcr_dask.simulate`), the data
    variables are identified by :func:`dask.base.tokenize` instead: a hash of
    the pixels for NumPy data already in memory, the graph name for dask data.
    """
    layout = _chunk_layout(chunks, visits_per_chunk)
    record: dict[str, Any] = {
        "format": INGEST_FORMAT,
        "chunks": layout,
        "attrs": to_json_attr(dict(warps.attrs), "warps.attrs"),
        "variables": {
            str(name): [[str(dim) for dim in var.dims], list(var.shape), var.dtype.str]
            for name, var in warps.data_vars.items()
        },
        "coords": {str(name): _digest(coord.values) for name, coord in warps.coords.items()},
    }
    filenames = (
        [str(name) for name in np.asarray(warps["filename"].values).ravel()]
        if "filename" in warps.coords
        else []
    )
    if filenames and all(filenames):
        record["files"] = [_file_record(name) for name in filenames]
    else:
        record["pixels"] = {
            str(name): dask.base.tokenize(var.data) for name, var in warps.data_vars.items()
        }
    text = json.dumps(record, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _store_state(path: Path) -> tuple[str, dict[str, Any]]:
    """Classify ``path``: absent, complete or incomplete ingest store, or foreign."""
    if not (path.exists() or path.is_symlink()):
        return _ABSENT, {}
    try:
        attrs = dict(zarr.open_group(path, mode="r").attrs)
    except (zarr.errors.BaseZarrError, OSError, ValueError):
        return _FOREIGN, {}
    if FINGERPRINT_ATTR not in attrs:
        return _FOREIGN, attrs
    complete = attrs.get(COMPLETE_ATTR)
    if isinstance(complete, list) and set(WARP_VARIABLES) <= set(complete):
        return _COMPLETE, attrs
    return _INCOMPLETE, attrs


def _storable_coord(var: xr.Variable) -> xr.Variable:
    """Load a coordinate and give strings the variable-length type Zarr v3 specifies."""
    var = var.load()
    if var.dtype.kind in "UT":
        var = var.astype(object)
    return var


def _prepare(warps: xr.Dataset, layout: Mapping[str, int], fingerprint: str) -> xr.Dataset:
    """The Dataset to write: data rechunked to ``layout`` and cast, coords loaded."""
    dtypes = {name: dtype for name, (_, dtype) in WARP_VARIABLES.items()}
    dtypes[_PSF[0]] = _PSF[2]
    data_vars = {}
    for name, var in warps.data_vars.items():
        variable = var.variable.astype(dtypes.get(str(name), var.dtype), copy=False)
        data_vars[name] = variable.chunk({dim: layout.get(str(dim), -1) for dim in variable.dims})
    coords = {name: _storable_coord(coord.variable) for name, coord in warps.coords.items()}
    attrs = to_json_attr(dict(warps.attrs), "warps.attrs")
    attrs[FINGERPRINT_ATTR] = fingerprint
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def ingest_warps(
    warps: xr.Dataset,
    store_path: str | os.PathLike[str],
    *,
    chunks: tuple[int, int] = (2000, 2000),
    visits_per_chunk: int = 1,
    fingerprint: str | None = None,
    client: Any = None,
    overwrite: bool = False,
) -> xr.Dataset:
    """Write the warps once into a chunked Zarr store, or reuse the store if it is current.

    Parameters
    ----------
    warps : xarray.Dataset
        Lazy warps ``(visit, y, x)`` with ``image`` (float32), ``mask``
        (int32), ``variance`` (float32), optional ``psf``
        ``(visit, psf_y, psf_x)``, per-visit coordinates and the attributes
        ``mask_planes``, ``wcs_header`` and ``tile_shape``.
    store_path : str or path-like
        Location of the store, on a filesystem every dask worker sees.
    chunks : tuple of int
        Zarr chunk size along ``(y, x)``, pixels (normally ``subregionSize``).
    visits_per_chunk : int
        Zarr chunk size along ``visit``.
    fingerprint : str or None
        Identity of the inputs; default :func:`input_fingerprint` of
        ``warps`` with this chunking. A string given here is used as is and
        must change whenever the inputs or the chunking do.
    client : distributed.Client or None
        Cluster to compute on; None uses the current dask scheduler.
    overwrite : bool
        Replace an existing store made from different inputs, or another
        store dcr_dask wrote; a directory dcr_dask did not write is never
        replaced.

    Returns
    -------
    xarray.Dataset
        The store opened with :func:`open_ingested`.

    Raises
    ------
    FileExistsError
        If ``store_path`` holds a complete store of different inputs, or
        something that is not an ingest store, and ``overwrite`` is False;
        (:class:`~dcr_dask.errors.OutputError`) if it holds something
        dcr_dask did not write, whatever ``overwrite``.
    ValueError
        If ``warps`` lacks a required variable or the chunking is invalid.

    Notes
    -----
    Every Zarr chunk is computed and written by its own dask task (the
    input is rechunked to the store's chunks, so at most a few input chunks
    per task are in memory), never the whole cube. See the module docstring
    for what happens when the store exists.
    """
    path = Path(store_path)
    _check_warps(warps)
    layout = _chunk_layout(chunks, visits_per_chunk)
    if fingerprint is None:
        fingerprint = input_fingerprint(warps, chunks=chunks, visits_per_chunk=visits_per_chunk)
    state, attrs = _store_state(path)
    if state == _COMPLETE:
        if attrs[FINGERPRINT_ATTR] == fingerprint:
            logger.info("%s is a complete ingest store of these warps; not re-ingesting", path)
            return open_ingested(path)
        if not overwrite:
            raise FileExistsError(
                f"{path} is an ingest store of different inputs (or chunking); pass "
                "overwrite=True to replace it, or choose another store path"
            )
    elif state == _INCOMPLETE:
        logger.warning("%s is an incomplete ingest store; ingesting again", path)
    elif state == _FOREIGN and not overwrite:
        raise FileExistsError(
            f"{path} exists and is not a dcr_dask ingest store; choose another store path "
            "(overwrite=True replaces it only if dcr_dask wrote it)"
        )
    ds = _prepare(warps, layout, fingerprint)
    logger.info("ingesting %d visits into %s", ds.sizes["visit"], path)
    write_zarr(
        ds,
        path,
        overwrite=state != _ABSENT,
        client=client,
        final_attrs={COMPLETE_ATTR: [str(name) for name in ds.data_vars]},
    )
    return open_ingested(path)


def open_ingested(store_path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a complete ingest store lazily.

    Parameters
    ----------
    store_path : str or path-like
        The store written by :func:`ingest_warps`.

    Returns
    -------
    xarray.Dataset
        Dask-backed data variables with one dask chunk per Zarr chunk;
        per-visit coordinates loaded (strings as ``str``); the attributes of
        the warps (``mask_planes`` as a dict, ``wcs_header``, ``tile_shape``
        as a list). Visit masks whose writing did not finish are left out
        (logged as a warning).

    Raises
    ------
    FileNotFoundError
        If ``store_path`` does not exist.
    InputError
        If ``store_path`` is not an ingest store, or is incomplete.
    """
    return _open_complete(Path(store_path))[0]


def _open_complete(path: Path) -> tuple[xr.Dataset, dict[str, Any]]:
    """Open a complete ingest store; also return its raw group attributes."""
    state, attrs = _store_state(path)
    if state == _ABSENT:
        raise FileNotFoundError(f"{path}: no such ingest store")
    if state == _FOREIGN:
        raise InputError(
            "not a dcr_dask ingest store", filename=str(path), keyword=FINGERPRINT_ATTR
        )
    if state == _INCOMPLETE:
        raise InputError(
            "incomplete ingest store (its writer did not finish); run ingest_warps again",
            filename=str(path),
            keyword=COMPLETE_ATTR,
        )
    ds = open_zarr_store(path)
    complete = set(attrs[COMPLETE_ATTR])
    unfinished = [name for name in ds.data_vars if name not in complete]
    if unfinished:
        logger.warning("%s: ignoring unfinished variables %s", path, unfinished)
        ds = ds.drop_vars(unfinished)
    ds.attrs = {
        key: value
        for key, value in ds.attrs.items()
        if key not in (FINGERPRINT_ATTR, COMPLETE_ATTR, WRITER_ATTR)
    }
    return ds, attrs


def write_visit_masks(
    store_path: str | os.PathLike[str],
    name: str,
    data_array: xr.DataArray,
    *,
    overwrite: bool = False,
    client: Any = None,
) -> None:
    """Add a per-visit mask variable (e.g. ``artifacts``) to a complete ingest store.

    Parameters
    ----------
    store_path : str or path-like
        A complete ingest store.
    name : str
        Name of the new variable; not one of the warp variables or coordinates.
    data_array : xarray.DataArray
        Dims a subset of the store's (normally ``(visit, y, x)``), sizes as in
        the store; if it has a ``visit`` coordinate it must equal the store's.
        Its dtype is kept (use uint8 for masks). It is rechunked to the store's
        chunks and written chunk by chunk.
    overwrite : bool
        Replace a complete variable of that name. An unfinished one is always
        replaced.
    client : distributed.Client or None
        Cluster to compute on; None uses the current dask scheduler.

    Raises
    ------
    InputError
        If the store is missing or incomplete.
    ValueError
        If ``name`` is taken (and ``overwrite`` is False) or reserved, or the
        array does not fit the store.

    Notes
    -----
    Not atomic by rename (see the module docstring): the name is listed in
    ``dcr_dask_complete`` only after the last chunk is written, and
    :func:`open_ingested` ignores unlisted variables. Do not call this
    concurrently on one store.
    """
    path = Path(store_path)
    ds, attrs = _open_complete(path)
    if name in WARP_VARIABLES or name == _PSF[0] or name in ds.coords:
        raise ValueError(f"{name!r} is reserved in an ingest store")
    complete = [str(item) for item in attrs[COMPLETE_ATTR]]
    if name in complete and not overwrite:
        raise ValueError(
            f"{path} already has a variable {name!r}; pass overwrite=True to replace it"
        )
    for dim in data_array.dims:
        if dim not in ds.sizes or data_array.sizes[dim] != ds.sizes[dim]:
            raise ValueError(
                f"{name} has {dim!r} of size {data_array.sizes[dim]}; the store at {path} "
                f"has sizes {dict(ds.sizes)}"
            )
    if "visit" in data_array.coords and not np.array_equal(
        data_array["visit"].values, ds["visit"].values
    ):
        raise ValueError(
            f"{name} has visits {data_array['visit'].values}; the store has {ds['visit'].values}"
        )

    store_chunks: dict[Hashable, int] = {
        dim: sizes[0] for dim, sizes in ds["image"].chunksizes.items()
    }
    variable = data_array.variable.chunk(
        {dim: store_chunks.get(dim, -1) for dim in data_array.dims}
    )
    variable.attrs = to_json_attr(dict(data_array.attrs), f"{name}.attrs")
    remaining = [item for item in complete if item != name]
    group = zarr.open_group(path, mode="r+")
    if name in group:
        # One group object for both writes: deleting a member rewrites the group
        # metadata (for the consolidated listing) with the attributes it holds.
        group.attrs[COMPLETE_ATTR] = remaining
        del group[name]
    # mode="a" replaces the group attributes with the Dataset's: pass them on unchanged.
    new = xr.Dataset({name: variable}, attrs={**attrs, COMPLETE_ATTR: remaining})
    write_zarr_chunks(new, path, mode="a", client=client)
    update_group_attrs(path, {COMPLETE_ATTR: [*remaining, name]})


def write_artifact_masks(
    store_path: str | os.PathLike[str],
    masks: xr.Dataset,
    *,
    overwrite: bool = False,
    client: Any = None,
) -> None:
    """Store ``artifacts`` and ``no_data`` beside the warps in an ingest store.

    A run keeps them in a store of their own instead (``artifact_masks.zarr`` in
    its work directory, :func:`artifact_mask_dataset`), so that its ingest store
    is never written after the ingest.

    Parameters
    ----------
    store_path : str or path-like
        A complete ingest store (:func:`dcr_dask.io.ingest.ingest_warps`) of
        the same warps.
    masks : xarray.Dataset
        From :func:`dcr_dask.graph.compare_warp.find_artifacts`: the variables
        named in :data:`dcr_dask.masks.ARTIFACT_VARIABLES`.
    overwrite : bool
        Replace masks already stored.
    client : distributed.Client or None
        Cluster to compute on; None uses the current dask scheduler.

    Notes
    -----
    Each variable is written chunk by chunk as uint8 with
    :func:`write_visit_masks`, which lists it as complete
    only after its last chunk.
    """
    stored = artifact_mask_dataset(masks)
    for name in ARTIFACT_VARIABLES:
        write_visit_masks(store_path, name, stored[name], overwrite=overwrite, client=client)


def artifact_mask_dataset(masks: xr.Dataset) -> xr.Dataset:
    """CompareWarp's per-visit masks as dcr_dask stores them (lazy).

    Parameters
    ----------
    masks : xarray.Dataset
        The variables named in :data:`dcr_dask.masks.ARTIFACT_VARIABLES`
        (from :func:`dcr_dask.graph.artifacts.find_artifacts`).

    Returns
    -------
    xarray.Dataset
        Each variable as uint8 on its ``visit``/``y``/``x`` coordinates, with
        the mask plane it sets in its ``plane`` attribute.
    """
    variables = {}
    for name, plane in ARTIFACT_VARIABLES.items():
        array = masks[name]
        variables[name] = xr.DataArray(
            array.data.astype(np.uint8),
            dims=array.dims,
            coords={c: array[c].values for c in array.coords if c in ("visit", "y", "x")},
            attrs={"plane": plane},
        )
    return xr.Dataset(variables)
