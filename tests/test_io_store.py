"""Tests of the output store (dcr_dask.io.store) and of atomic writing (dcr_dask.io.atomic)."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from astropy.wcs import WCS
from dask.callbacks import Callback

import dcr_dask
from dcr_dask.errors import InputError, OutputError
from dcr_dask.io.atomic import atomic_directory, atomic_file
from dcr_dask.io.ownership import WRITER_ATTR, writer
from dcr_dask.io.store import (
    OUTPUT_VARIABLES,
    from_json_attr,
    make_output_dataset,
    open_output,
    to_json_attr,
    transmission_array,
    write_output,
)
from dcr_dask.kernels.model import coadd_of_planes
from dcr_dask.masks import MaskPlanes, run_layout

S, NY, NX = 3, 20, 24


def _tile_wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [12.5, 10.5]
    wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    return wcs


def _output(seed: int = 0, dcr_model: da.Array | None = None, **kwargs) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    if dcr_model is None:
        dcr_model = da.from_array(
            rng.normal(size=(S, NY, NX)).astype(np.float32), chunks=(1, 8, 12)
        )
    planes = run_layout(extra=["CLIPPED"])
    arguments = {
        "wavelength_min_nm": [400.0, 450.0, 500.0],
        "wavelength_max_nm": [450.0, 500.0, 550.0],
        "mask_planes": planes,
        "wcs_header": _tile_wcs().to_header().tostring(),
        "config": {"dcrNumSubfilters": S, "effectiveWavelength": 476.31, "detect": {"nSigma": 5.0}},
        "inputs": [
            {
                "visit": 101,
                "weight": 1.0,
                "airmass": 1.1,
                "parallactic_angle_deg": 30.0,
                "psf_fwhm_px": 3.2,
            },
            {
                "visit": 102,
                "weight": 0.5,
                "airmass": 1.6,
                "parallactic_angle_deg": -45.0,
                "psf_fwhm_px": math.nan,
            },
        ],
        "convergence": [{"subregion": [0, 0], "metric": [1.0, 0.2, math.inf]}],
    }
    arguments.update(kwargs)
    return make_output_dataset(
        dcr_model,
        da.from_array(rng.random((NY, NX)), chunks=(8, 12)),
        rng.integers(0, 2 ** planes.bit("CLIPPED"), size=(NY, NX)),
        da.from_array(rng.integers(0, 10, size=(S, NY, NX)), chunks=(1, 8, 12)),
        **arguments,
    )


def _failing(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
    if block_info is not None and block_info[0]["chunk-location"][0] == S - 1:
        raise RuntimeError("simulated failure in a dask task")
    return block


def _leftovers(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.startswith(".")]


def test_output_store_round_trip_with_plain_open_zarr(tmp_path):
    ds = _output()
    path = write_output(ds, tmp_path / "out.zarr")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opened = xr.open_zarr(path)
    for name, (dims, dtype) in OUTPUT_VARIABLES.items():
        assert opened[name].dims == dims, name
        assert opened[name].dtype == dtype, name
        np.testing.assert_array_equal(opened[name].values, ds[name].values)
    np.testing.assert_allclose(
        opened["coadd"].values, opened["dcr_model"].values.sum(axis=0), rtol=1e-6, atol=1e-6
    )
    # the sum is the kernel's, the one home of the coadd (coadd_from_model uses it too)
    np.testing.assert_array_equal(
        opened["coadd"].values, coadd_of_planes(opened["dcr_model"].values)
    )
    np.testing.assert_array_equal(opened["wavelength_min"].values, [400.0, 450.0, 500.0])
    np.testing.assert_array_equal(opened["subfilter"].values, np.arange(S))
    np.testing.assert_array_equal(opened["y"].values, np.arange(NY))
    assert opened.attrs["config"] == ds.attrs["config"]
    assert opened.attrs["mask_planes"] == ds.attrs["mask_planes"]
    assert opened.attrs["dcr_dask_version"] == dcr_dask.__version__
    assert zarr.open_group(path, mode="r").metadata.zarr_format == 3
    assert zarr.open_array(path / "dcr_model", mode="r").chunks == (1, 8, 12)
    # Plain JSON in the store: non-finite floats are strings until open_output decodes them.
    assert opened.attrs["inputs"][1]["psf_fwhm_px"] == "NaN"

    decoded = open_output(path)
    assert decoded.attrs["inputs"][0] == ds.attrs["inputs"][0]
    assert math.isnan(decoded.attrs["inputs"][1]["psf_fwhm_px"])
    assert decoded.attrs["convergence"][0]["metric"] == [1.0, 0.2, math.inf]
    assert MaskPlanes(decoded.attrs["mask_planes"]) == run_layout(extra=["CLIPPED"])
    assert _leftovers(tmp_path) == []


def test_artifacts_take_the_visits_of_the_inputs(tmp_path):
    artifacts = np.zeros((2, NY, NX), np.uint8)
    artifacts[1, 3:5, 4:9] = 1
    ds = _output(artifacts=artifacts)
    assert list(ds["artifacts"].visit.values) == [101, 102]
    opened = open_output(write_output(ds, tmp_path / "out.zarr"))
    assert opened["artifacts"].dtype == np.uint8
    assert opened["artifacts"].dims == ("visit", "y", "x")
    np.testing.assert_array_equal(opened["artifacts"].values, artifacts)
    np.testing.assert_array_equal(opened["visit"].values, [101, 102])


def test_irregular_dask_chunks_are_written(tmp_path):
    model = da.from_array(np.ones((S, NY, NX), np.float32), chunks=((1, 2), (5, 9, 6), (24,)))
    opened = open_output(write_output(_output(dcr_model=model), tmp_path / "out.zarr"))
    np.testing.assert_array_equal(opened["coadd"].values, np.full((NY, NX), S, np.float32))


def test_overwrite_semantics(tmp_path):
    path = tmp_path / "out.zarr"
    write_output(_output(seed=0), path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_output(_output(seed=1), path)
    replacement = _output(seed=1)
    write_output(replacement, path, overwrite=True)
    np.testing.assert_array_equal(
        open_output(path)["dcr_model"].values, replacement["dcr_model"].values
    )
    assert _leftovers(tmp_path) == []


def test_failing_write_leaves_nothing_partial(tmp_path):
    model = da.ones((S, NY, NX), dtype=np.float32, chunks=(1, NY, NX)).map_blocks(
        _failing, dtype=np.float32
    )
    path = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError, match="simulated failure"):
        write_output(_output(dcr_model=model), path)
    assert not path.exists()
    assert _leftovers(tmp_path) == []

    # A failing overwrite leaves the old store whole.
    old = _output(seed=2)
    write_output(old, path)
    with pytest.raises(RuntimeError, match="simulated failure"):
        write_output(_output(dcr_model=model), path, overwrite=True)
    np.testing.assert_array_equal(open_output(path)["dcr_model"].values, old["dcr_model"].values)
    assert _leftovers(tmp_path) == []


def test_open_output_names_the_path_and_the_missing_variable(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.zarr"):
        open_output(tmp_path / "nowhere.zarr")

    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InputError, match="not a readable Zarr store") as info:
        open_output(plain)
    assert str(plain) in str(info.value)

    other = tmp_path / "other.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's note on v3 consolidated metadata
        _output().drop_vars("n_image").drop_attrs().to_zarr(other, zarr_format=3)
    with pytest.raises(InputError, match="'n_image' is missing") as info:
        open_output(other)
    assert str(other) in str(info.value)
    assert info.value.keyword == "n_image"


def test_make_output_dataset_checks_its_arguments():
    with pytest.raises(ValueError, match="wavelength"):
        _output(wavelength_min_nm=[400.0, 450.0])
    with pytest.raises(ValueError, match="wavelength_min_nm < wavelength_max_nm"):
        _output(wavelength_max_nm=[450.0, 440.0, 550.0])
    with pytest.raises(ValueError, match="reserved"):
        _output(extra_attrs={"config": {}})
    with pytest.raises(ValueError, match="artifacts has 3 visits"):
        _output(artifacts=np.zeros((3, NY, NX), np.uint8))
    with pytest.raises(ValueError, match="'visit'"):
        _output(inputs=[{"weight": 1.0}])


def _no_scheduler(*args: object, **kwargs: object) -> None:
    raise AssertionError("make_output_dataset computed a dask graph")


def test_make_output_dataset_computes_nothing():
    """Every input lazy (the artifacts too, with their visit coordinate): nothing runs."""
    starts: list[object] = []

    class Count(Callback):
        def _start(self, dsk: object) -> None:
            starts.append(dsk)

    artifacts = xr.DataArray(
        da.zeros((2, NY, NX), dtype=np.uint8, chunks=(1, 8, 12)),
        dims=("visit", "y", "x"),
        coords={"visit": [101, 102]},
    )
    curve = transmission_array([400.0, 500.0], [0.5, 0.6], band="g", source="test")
    with Count(), dask.config.set(scheduler=_no_scheduler):
        ds = _output(
            artifacts=artifacts,
            transmission=curve,
            psf=np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]),
            psf_attrs={"method": "inputs"},
        )
    assert starts == []
    for name in ("dcr_model", "coadd", "variance", "n_image", "artifacts", "psf"):
        assert isinstance(ds[name].data, da.Array), name
    assert ds["artifacts"]["visit"].values.tolist() == [101, 102]


def test_dataarray_inputs_keep_their_pixel_coordinates():
    model = xr.DataArray(
        np.ones((S, NY, NX), np.float32),
        dims=("subfilter", "y", "x"),
        coords={"y": np.arange(NY) + 100, "x": np.arange(NX) + 200},
    )
    ds = _output(dcr_model=model)
    assert ds["y"].values[0] == 100 and ds["x"].values[0] == 200


def test_json_attrs_round_trip():
    value = {
        "a": (1, 2.5, np.float32(3.0), np.int64(4)),
        "b": np.array([[1.0, np.nan]]),
        "c": {"d": -np.inf, "e": None, "f": True, "g": Path("/x")},
    }
    encoded = to_json_attr(value)
    assert encoded == {
        "a": [1, 2.5, 3.0, 4],
        "b": [[1.0, "NaN"]],
        "c": {"d": "-Infinity", "e": None, "f": True, "g": "/x"},
    }
    decoded = from_json_attr(encoded)
    assert math.isnan(decoded["b"][0][1]) and decoded["c"]["d"] == -math.inf
    with pytest.raises(TypeError, match="config"):
        to_json_attr({"x": object()}, "config")


def test_atomic_directory(tmp_path):
    target = tmp_path / "result"
    with atomic_directory(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".result.tmp-")
        zarr.open_group(tmp, mode="w").attrs[WRITER_ATTR] = writer()  # a store of ours
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"

    with pytest.raises(FileExistsError, match="overwrite=True"), atomic_directory(target):
        pass

    with pytest.raises(KeyError), atomic_directory(target, overwrite=True) as tmp:
        (tmp / "a.txt").write_text("two")
        raise KeyError("boom")
    assert (target / "a.txt").read_text() == "one"
    assert _leftovers(tmp_path) == []

    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(os.listdir(target)) == ["b.txt"]
    assert _leftovers(tmp_path) == []


def test_atomic_file(tmp_path):
    target = tmp_path / "sub" / "file.json"
    one = json.dumps({WRITER_ATTR: writer(), "n": 1})  # a file of ours
    with atomic_file(target) as tmp:
        tmp.write_text(one)
    assert target.read_text() == one
    with pytest.raises(FileExistsError), atomic_file(target):
        pass
    with pytest.raises(ValueError), atomic_file(target, overwrite=True) as tmp:
        tmp.write_text("partial")
        raise ValueError("boom")
    assert target.read_text() == one
    with atomic_file(target, overwrite=True) as tmp:
        tmp.write_text("two")
    assert target.read_text() == "two"
    assert _leftovers(target.parent) == []


def test_atomic_writes_never_replace_what_dcr_dask_did_not_write(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "thesis.txt").write_text("keep me")
    document = tmp_path / "notes.fits"
    document.write_text("not even FITS")
    for target, writer_of in ((folder, atomic_directory), (document, atomic_file)):
        refused = pytest.raises(OutputError, match=f"{target}: this .* not written by dcr_dask")
        with refused, writer_of(target, overwrite=True) as tmp:
            pytest.fail(f"{tmp} was handed out for {target}")
    assert (folder / "thesis.txt").read_text() == "keep me"
    assert document.read_text() == "not even FITS"
    assert _leftovers(tmp_path) == []
