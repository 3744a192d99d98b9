"""The run's work-directory stores are written a band of chunk rows per graph on a
tile of many chunks, and hold exactly what one graph would have written."""

from __future__ import annotations

from types import SimpleNamespace

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

from dcr_dask.io.ownership import is_own
from dcr_dask.running import pipeline


def _dataset(ny: int = 70, nx: int = 80, chunk: int = 16) -> xr.Dataset:
    rng = np.random.default_rng(7)
    image = rng.normal(size=(3, ny, nx)).astype(np.float32)
    mask = rng.integers(0, 4, size=(3, ny, nx)).astype(np.uint8)
    return xr.Dataset(
        {
            "image": (("visit", "y", "x"), da.from_array(image, chunks=(2, chunk, chunk)) * 2),
            "mask": (("visit", "y", "x"), da.from_array(mask, chunks=(1, chunk, chunk))),
            "scale": (("visit",), da.from_array(np.array([1.0, 2.0, 3.0]), chunks=2) + 1),
            "weight": (("y", "x"), np.ones((ny, nx), np.float32)),
        },
        coords={"visit": [11, 12, 13], "y": np.arange(ny), "x": np.arange(nx)},
        attrs={"band": "g"},
    )


def _threads(n: int) -> SimpleNamespace:
    info = {f"tcp://w{k}": {"nthreads": 1} for k in range(n)}
    return SimpleNamespace(scheduler_info=lambda: {"workers": info})


def test_bands_have_four_chunks_per_thread_and_small_tiles_one_graph():
    dataset = _dataset()  # 5 chunk rows of 5 chunks
    assert pipeline._rows_per_batch(dataset, _threads(2)) == 2  # 8 chunks: 2 rows of 5
    assert pipeline._rows_per_batch(dataset, _threads(1)) == 1
    assert pipeline._rows_per_batch(dataset, _threads(5)) == 4  # 20 chunks: 4 of 5 rows
    assert pipeline._rows_per_batch(dataset, _threads(7)) is None  # a band is the whole tile
    assert pipeline._rows_per_batch(dataset, None) is None
    assert pipeline._rows_per_batch(dataset.compute(), _threads(2)) is None  # nothing lazy


def test_a_store_written_in_bands_equals_the_dataset(tmp_path, monkeypatch):
    dataset = _dataset()
    labels = []
    compute = pipeline.compute

    def recording(obj, client=None, label=None):
        labels.append(label)
        return compute(obj, client, label)

    monkeypatch.setattr(pipeline, "compute", recording)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        stored = pipeline._checkpoint(dataset, tmp_path / "stage.zarr", client)
        # the per-visit variable, then 3 bands of 2, 2 and 1 chunk rows
        assert labels == [
            "write stage.zarr",
            "write stage.zarr rows 0-32",
            "write stage.zarr rows 32-64",
            "write stage.zarr rows 64-70",
        ]
        loaded = stored.load()
        xr.testing.assert_equal(loaded, dataset.compute())
        for name in dataset.variables:
            assert loaded[name].dtype == dataset[name].dtype, name
        assert loaded.attrs["band"] == "g"
    assert is_own(tmp_path / "stage.zarr")
    reopened = xr.open_zarr(tmp_path / "stage.zarr", zarr_format=3, consolidated=False)
    assert reopened["image"].encoding["chunks"] == (2, 16, 16)
    assert reopened["mask"].dtype == np.uint8


def test_a_failed_band_leaves_the_error_and_no_later_band(tmp_path, monkeypatch):
    dataset = _dataset()

    def fail(block):
        raise RuntimeError("band failed")

    broken = dataset["image"].data.map_blocks(
        lambda b, block_info=None: fail(b) if block_info[0]["chunk-location"][1] == 2 else b,
        dtype=np.float32,
    )
    dataset = dataset.assign(image=dataset["image"].copy(data=broken))
    labels = []
    compute = pipeline.compute
    monkeypatch.setattr(
        pipeline,
        "compute",
        lambda obj, client=None, label=None: (labels.append(label), compute(obj, client, label))[1],
    )
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
        pytest.raises(RuntimeError, match="band failed"),
    ):
        pipeline._checkpoint(dataset, tmp_path / "stage.zarr", client)
    assert labels[-1] == "write stage.zarr rows 32-64"  # chunk row 2 is in the second band
