"""Tests of the ingest store (dcr_dask.io.ingest)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from astropy.wcs import WCS
from distributed import Client, LocalCluster, get_task_stream

from dcr_dask.errors import InputError
from dcr_dask.io import ingest
from dcr_dask.io.ingest import (
    COMPLETE_ATTR,
    ingest_warps,
    input_fingerprint,
    open_ingested,
    write_visit_masks,
)

NV, NY, NX, NPSF = 3, 20, 24, 5


def _tile_wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [12.5, 10.5]
    wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    return wcs


def _make_warps(directory: Path | None, seed: int = 0, image: da.Array | None = None) -> xr.Dataset:
    """Warps as open_warps returns them; files in ``directory`` stand in for the FITS files."""
    rng = np.random.default_rng(seed)
    visits = np.array([101, 102, 105], dtype=np.int64)
    if directory is not None:
        filenames = []
        for visit in visits:
            path = directory / f"warp_{visit}.fits"
            path.write_bytes(b"not really FITS")
            filenames.append(str(path))
    else:
        filenames = [""] * NV
    per_visit = {
        "band": ["r", "r", "r"],
        "mjd": [60000.1, 60000.2, 60000.3],
        "era_deg": [10.0, 40.0, 70.0],
        "airmass": [1.05, 1.3, 1.8],
        "temperature_c": [10.0, np.nan, 8.5],
        "weather_defaulted": ["", "AIRTEMP", "AIRTEMP,HUMIDITY"],
        "rottype": ["SKY", "SKY", "SKY"],
        "filename": filenames,
        "psf_fwhm_px": [3.1, 3.5, np.nan],
    }
    if image is None:
        image = da.from_array(rng.normal(size=(NV, NY, NX)).astype(np.float32), chunks=(1, NY, NX))
    shape = (NV, NY, NX)
    return xr.Dataset(
        {
            "image": (("visit", "y", "x"), image),
            "mask": (
                ("visit", "y", "x"),
                da.from_array(rng.integers(0, 512, size=shape, dtype=np.int32), chunks=(1, NY, NX)),
            ),
            "variance": (
                ("visit", "y", "x"),
                da.from_array(rng.random(size=shape, dtype=np.float32), chunks=(1, NY, NX)),
            ),
            "psf": (
                ("visit", "psf_y", "psf_x"),
                da.from_array(rng.random(size=(NV, NPSF, NPSF), dtype=np.float32), chunks=1),
            ),
        },
        coords={
            "visit": visits,
            "y": np.arange(NY, dtype=np.int64),
            "x": np.arange(NX, dtype=np.int64),
            **{name: ("visit", values) for name, values in per_visit.items()},
        },
        attrs={
            "mask_planes": {"BAD": 0, "SAT": 1, "NO_DATA": 8, "DETECTED_NEGATIVE": 6},
            "wcs_header": _tile_wcs().to_header().tostring(),
            "tile_shape": [NY, NX],
        },
    )


def _failing(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
    if block_info is not None and block_info[0]["chunk-location"][0] == NV - 1:
        raise RuntimeError("simulated failure in a dask task")
    return block


def _leftovers(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.startswith(".")]


def _mtimes(store: Path) -> dict[str, int]:
    return {str(path): path.stat().st_mtime_ns for path in store.rglob("*") if path.is_file()}


def _forbid_writes(monkeypatch) -> None:
    def no_write(*args, **kwargs):
        raise AssertionError("the store was written again")

    monkeypatch.setattr(ingest, "write_zarr", no_write)


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def test_round_trip_arrays_coords_attrs_and_chunks(tmp_path):
    warps = _make_warps(tmp_path)
    store = tmp_path / "ingest.zarr"
    ds = ingest_warps(warps, store, chunks=(8, 10), visits_per_chunk=2)

    xr.testing.assert_identical(ds.compute(), warps.compute())
    for name in warps.coords:
        assert ds[name].dtype == warps[name].dtype, name
    for name in warps.data_vars:
        assert ds[name].dtype == warps[name].dtype, name
    assert isinstance(ds.attrs["mask_planes"], dict)

    group = zarr.open_group(store, mode="r")
    assert group.metadata.zarr_format == 3
    assert group["image"].chunks == (2, 8, 10)
    assert group["mask"].chunks == (2, 8, 10)
    assert group["psf"].chunks == (2, NPSF, NPSF)
    assert len(group["image"].compressors) == 1
    assert ds["image"].chunks == ((2, 1), (8, 8, 4), (10, 10, 4))
    assert _leftovers(tmp_path) == []


def test_reingest_is_skipped_when_complete_and_unchanged(tmp_path, monkeypatch, caplog):
    warps = _make_warps(tmp_path)
    store = tmp_path / "ingest.zarr"
    ingest_warps(warps, store, chunks=(8, 10))
    before = _mtimes(store)

    _forbid_writes(monkeypatch)
    # Same files, different dask graph: still the same inputs.
    again = warps.chunk({"visit": 1, "y": 5})
    with caplog.at_level(logging.INFO, logger="dcr_dask.io.ingest"):
        ds = ingest_warps(again, store, chunks=(8, 10))
    assert "not re-ingesting" in caplog.text
    assert _mtimes(store) == before
    np.testing.assert_array_equal(ds["image"].values, warps["image"].values)


def test_changed_inputs_raise_unless_overwrite(tmp_path):
    warps = _make_warps(tmp_path)
    store = tmp_path / "ingest.zarr"
    ingest_warps(warps, store, chunks=(8, 10))
    fingerprint = input_fingerprint(warps, chunks=(8, 10))

    first = Path(warps["filename"].values[0])
    stat = first.stat()
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert input_fingerprint(warps, chunks=(8, 10)) != fingerprint
    with pytest.raises(FileExistsError, match="different inputs"):
        ingest_warps(warps, store, chunks=(8, 10))

    # Different chunking is a different store too.
    assert input_fingerprint(warps, chunks=(8, 12)) != input_fingerprint(warps, chunks=(8, 10))

    changed = _make_warps(tmp_path, seed=1)
    ds = ingest_warps(changed, store, chunks=(8, 10), overwrite=True)
    np.testing.assert_array_equal(ds["image"].values, changed["image"].values)


def test_incomplete_store_is_not_taken_for_complete(tmp_path, caplog):
    warps = _make_warps(tmp_path)
    store = tmp_path / "ingest.zarr"
    ingest_warps(warps, store, chunks=(8, 10))
    group = zarr.open_group(store, mode="r+")
    del group.attrs[COMPLETE_ATTR]

    with pytest.raises(InputError, match="incomplete") as info:
        open_ingested(store)
    assert str(store) in str(info.value)

    before = _mtimes(store)
    with caplog.at_level(logging.WARNING, logger="dcr_dask.io.ingest"):
        ds = ingest_warps(warps, store, chunks=(8, 10))
    assert "incomplete" in caplog.text
    assert _mtimes(store) != before
    xr.testing.assert_identical(ds.compute(), warps.compute())


def test_crash_during_write_leaves_nothing(tmp_path):
    image = da.from_array(np.ones((NV, NY, NX), np.float32), chunks=(1, NY, NX))
    warps = _make_warps(tmp_path, image=image.map_blocks(_failing, dtype=np.float32))
    store = tmp_path / "ingest.zarr"
    with pytest.raises(RuntimeError, match="simulated failure"):
        ingest_warps(warps, store, chunks=(8, 10))
    assert not store.exists()
    assert _leftovers(tmp_path) == []


def test_foreign_directory_is_not_replaced_without_overwrite(tmp_path):
    store = tmp_path / "ingest.zarr"
    store.mkdir()
    (store / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a dcr_dask ingest store"):
        ingest_warps(_make_warps(tmp_path), store)
    assert (store / "precious.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="not a dcr_dask ingest store"):
        open_ingested(store)


def test_in_memory_warps_are_fingerprinted_by_their_pixels():
    first = _make_warps(None, seed=0)
    assert input_fingerprint(first) == input_fingerprint(_make_warps(None, seed=0))
    assert input_fingerprint(first) != input_fingerprint(_make_warps(None, seed=1))


def test_runs_on_a_distributed_client(tmp_path, client):
    warps = _make_warps(tmp_path)
    store = tmp_path / "ingest.zarr"
    with get_task_stream(client) as stream:
        ds = ingest_warps(warps, store, chunks=(8, 10), client=client)
    assert len(stream.data) > 0
    xr.testing.assert_identical(ds.compute(scheduler=client), warps.compute())


def test_visit_masks_are_added_and_survive_reuse(tmp_path, monkeypatch):
    warps = _make_warps(tmp_path)
    store = tmp_path / "ingest.zarr"
    ingest_warps(warps, store, chunks=(8, 10))
    rng = np.random.default_rng(3)
    masks = xr.DataArray(
        rng.integers(0, 2, size=(NV, NY, NX), dtype=np.uint8),
        dims=("visit", "y", "x"),
        coords={"visit": warps["visit"].values},
        attrs={"long_name": "artifact mask"},
    )
    write_visit_masks(store, "artifacts", masks)

    ds = open_ingested(store)
    assert ds["artifacts"].dtype == np.uint8
    assert ds["artifacts"].chunks == ds["image"].chunks
    np.testing.assert_array_equal(ds["artifacts"].values, masks.values)
    assert ds["artifacts"].attrs["long_name"] == "artifact mask"
    assert set(ds.attrs) == {"mask_planes", "wcs_header", "tile_shape"}

    with pytest.raises(ValueError, match="already has"):
        write_visit_masks(store, "artifacts", masks)
    write_visit_masks(store, "artifacts", 1 - masks, overwrite=True)
    np.testing.assert_array_equal(open_ingested(store)["artifacts"].values, 1 - masks.values)

    _forbid_writes(monkeypatch)
    ds = ingest_warps(warps, store, chunks=(8, 10))
    assert "artifacts" in ds


def test_unfinished_visit_mask_is_ignored(tmp_path, caplog):
    warps = _make_warps(tmp_path)
    store = tmp_path / "ingest.zarr"
    ingest_warps(warps, store, chunks=(8, 10))
    good = xr.DataArray(np.ones((NV, NY, NX), np.uint8), dims=("visit", "y", "x"))
    failing = da.ones((NV, NY, NX), dtype=np.uint8, chunks=(1, NY, NX)).map_blocks(
        _failing, dtype=np.uint8
    )
    with pytest.raises(RuntimeError, match="simulated failure"):
        write_visit_masks(store, "artifacts", xr.DataArray(failing, dims=("visit", "y", "x")))

    with caplog.at_level(logging.WARNING, logger="dcr_dask.io.ingest"):
        ds = open_ingested(store)
    assert "artifacts" not in ds
    assert "unfinished" in caplog.text

    write_visit_masks(store, "artifacts", good)
    np.testing.assert_array_equal(open_ingested(store)["artifacts"].values, good.values)

    # A failed overwrite leaves neither the old masks nor a part of the new ones.
    with pytest.raises(RuntimeError, match="simulated failure"):
        write_visit_masks(
            store, "artifacts", xr.DataArray(failing, dims=("visit", "y", "x")), overwrite=True
        )
    assert "artifacts" not in open_ingested(store)


def test_visit_mask_must_fit_the_store(tmp_path):
    warps = _make_warps(tmp_path)
    store = tmp_path / "ingest.zarr"
    ingest_warps(warps, store, chunks=(8, 10))
    with pytest.raises(ValueError, match="size"):
        write_visit_masks(
            store,
            "artifacts",
            xr.DataArray(np.ones((NV, NY, NX + 1), np.uint8), dims=("visit", "y", "x")),
        )
    with pytest.raises(ValueError, match="visits"):
        write_visit_masks(
            store,
            "artifacts",
            xr.DataArray(
                np.ones((NV, NY, NX), np.uint8),
                dims=("visit", "y", "x"),
                coords={"visit": [1, 2, 3]},
            ),
        )
    with pytest.raises(ValueError, match="reserved"):
        write_visit_masks(store, "image", warps["image"])
