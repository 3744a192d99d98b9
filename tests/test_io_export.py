"""Tests of the FITS export of an output store (dcr_dask.io.export)."""

from __future__ import annotations

import os

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.wcs import WCS

import dcr_dask
from dcr_dask.errors import InputError
from dcr_dask.io.export import export_fits
from dcr_dask.io.store import make_output_dataset, open_output, write_output
from dcr_dask.masks import MaskPlanes, run_layout

S, NY, NX = 3, 20, 24
WAVE_MIN = [400.0, 450.0, 500.0]
WAVE_MAX = [450.0, 500.0, 550.0]


def _tile_wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [12.5, 10.5]
    wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    return wcs


def _store(tmp_path, *, y0: int = 0, x0: int = 0):
    rng = np.random.default_rng(7)
    planes = run_layout(extra=["CLIPPED"])
    model = xr.DataArray(
        da.from_array(rng.normal(size=(S, NY, NX)).astype(np.float32), chunks=(1, 7, 12)),
        dims=("subfilter", "y", "x"),
        coords={"y": np.arange(NY) + y0, "x": np.arange(NX) + x0},
    )
    ds = make_output_dataset(
        model,
        da.from_array(rng.random((NY, NX)).astype(np.float32), chunks=(7, 12)),
        da.from_array(rng.integers(0, 2**16, size=(NY, NX)).astype(np.int32), chunks=(7, 12)),
        np.full((S, NY, NX), 2),
        wavelength_min_nm=WAVE_MIN,
        wavelength_max_nm=WAVE_MAX,
        mask_planes=planes,
        wcs_header=_tile_wcs().to_header().tostring(),
        config={"dcrNumSubfilters": S},
        inputs=[{"visit": 1, "weight": 1.0}],
        convergence=[],
    )
    return write_output(ds, tmp_path / "run.zarr"), planes


def _check_image_hdus(hdul, image, mask, variance, planes, wcs):
    assert [hdu.name for hdu in hdul] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE"]
    assert hdul[0].data is None
    for hdu, dtype, expected in (
        (hdul[1], np.float32, image),
        (hdul[2], np.int32, mask),
        (hdul[3], np.float32, variance),
    ):
        assert hdu.data.dtype.kind == np.dtype(dtype).kind
        assert hdu.data.dtype.itemsize == np.dtype(dtype).itemsize
        np.testing.assert_array_equal(hdu.data, expected)
        assert WCS(hdu.header).wcs.compare(wcs.wcs, tolerance=1e-12)
    assert MaskPlanes.from_header(hdul[2].header) == planes
    assert hdul[2].header["MP_DETECTED_NEGATIVE"] == planes.bit("DETECTED_NEGATIVE")


def test_export_writes_one_mef_per_subband_and_the_coadd(tmp_path):
    path, planes = _store(tmp_path)
    files = export_fits(path, tmp_path / "fits")
    assert [f.name for f in files] == [
        "run_subfilter0.fits",
        "run_subfilter1.fits",
        "run_subfilter2.fits",
        "run_coadd.fits",
    ]
    ds = open_output(path).compute()
    mask = ds["mask"].values
    wcs = WCS(fits.Header.fromstring(ds.attrs["wcs_header"]))
    for index, file in enumerate(files[:S]):
        with fits.open(file) as hdul:
            _check_image_hdus(
                hdul,
                ds["dcr_model"].values[index],
                mask,
                ds["variance"].values / np.float32(S),
                planes,
                wcs,
            )
            header = hdul[0].header
            assert header["SUBFILT"] == index
            assert header["WAVEMIN"] == WAVE_MIN[index]
            assert header["WAVEMAX"] == WAVE_MAX[index]
            assert header["DCRDASKV"] == dcr_dask.__version__
    with fits.open(files[-1]) as hdul:
        _check_image_hdus(hdul, ds["coadd"].values, mask, ds["variance"].values, planes, wcs)
        assert "SUBFILT" not in hdul[0].header
        assert hdul[0].header["NSUBFILT"] == S
        assert (hdul[0].header["WAVEMIN"], hdul[0].header["WAVEMAX"]) == (400.0, 550.0)
    assert [name for name in os.listdir(tmp_path / "fits") if name.startswith(".")] == []


def test_offset_tile_section_keeps_the_sky_position(tmp_path):
    path, _ = _store(tmp_path, y0=3, x0=5)
    files = export_fits(path, tmp_path / "fits", prefix="section")
    assert files[-1].name == "section_coadd.fits"
    with fits.open(files[0]) as hdul:
        header = hdul["IMAGE"].header
        assert (header["LTV1"], header["LTV2"]) == (-5, -3)
        hdu_sky = WCS(header).pixel_to_world_values(0, 0)
    tile_sky = _tile_wcs().pixel_to_world_values(5, 3)
    np.testing.assert_allclose(hdu_sky, tile_sky, rtol=0, atol=1e-12)


def test_existing_files_are_kept_unless_overwrite(tmp_path):
    path, _ = _store(tmp_path)
    files = export_fits(path, tmp_path / "fits")
    files[-1].unlink()
    mtime = files[0].stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_fits(path, tmp_path / "fits")
    assert not files[-1].exists()  # nothing was written
    assert files[0].stat().st_mtime_ns == mtime
    assert export_fits(path, tmp_path / "fits", overwrite=True) == files
    assert files[-1].exists()


def test_export_of_a_non_output_store_names_it(tmp_path):
    plain = tmp_path / "plain.zarr"
    plain.mkdir()
    with pytest.raises(InputError) as info:
        export_fits(plain, tmp_path / "fits")
    assert str(plain) in str(info.value)
