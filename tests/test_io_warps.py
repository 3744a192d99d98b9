"""Opening warp sets as lazy Datasets on the tile grid: contents, laziness and bad sets."""

import attrs
import dask
import numpy as np
import pytest
from astropy.io import fits

from dcr_dask.errors import InputErrors
from dcr_dask.io import fits as fits_io
from dcr_dask.io import warps
from dcr_dask.io.fits import read_warp_header, write_warp
from dcr_dask.io.metadata import parse_visit_header
from dcr_dask.io.warps import (
    mask_planes,
    open_psf_matched,
    open_template,
    open_warps,
    visit_infos,
)
from dcr_dask.masks import MaskPlanes

TILE = (40, 50)


def _plane(mask: np.ndarray, bits: dict[str, int], name: str) -> np.ndarray:
    return (mask >> bits[name]) & 1 == 1


def _problems(excinfo) -> str:
    assert isinstance(excinfo.value, InputErrors)
    return str(excinfo.value)


@pytest.fixture
def afw_set(tmp_path, tile_wcs, write_afw, visit_header):
    """Three hand-made afw files: shuffled mask bits, partial coverage, NaNs."""
    rng = np.random.default_rng(0)
    specs = {
        # visit: (xy0, shape, bits)
        11: ((0, 0), (40, 50), {"BAD": 0, "SAT": 1, "CR": 3, "NO_DATA": 8}),
        5: ((10, 5), (20, 30), {"BAD": 4, "SAT": 0, "CR": 7, "NO_DATA": 2, "FOO": 9}),
        8: ((30, 25), (15, 20), {"NO_DATA": 0, "BAD": 1}),
    }
    truth = {}
    for visit, (xy0, shape, bits) in specs.items():
        image = rng.normal(size=shape).astype(np.float32)
        variance = rng.uniform(1, 2, size=shape).astype(np.float32)
        names = {name: rng.uniform(size=shape) < 0.2 for name in bits if name != "NO_DATA"}
        mask = np.zeros(shape, np.int32)
        for name, on in names.items():
            mask[on] |= 1 << bits[name]
        if visit == 8:
            image[3, 4] = np.nan
            variance[5, 6] = np.nan
        path = tmp_path / f"v{visit}.fits"
        write_afw(
            path,
            header=visit_header(visit),
            image=image,
            mask=mask,
            variance=variance,
            bits=bits,
            wcs=tile_wcs,
            xy0=xy0,
        )
        truth[visit] = {"xy0": xy0, "image": image, "variance": variance, "planes": names}
        truth[visit]["path"] = path
    return truth


def test_hand_made_files_land_on_the_tile_grid(afw_set):
    paths = [afw_set[v]["path"] for v in (11, 5, 8)]
    ds = open_warps(paths, chunks=(16, 16)).compute()
    assert ds.visit.values.tolist() == [5, 8, 11]
    assert ds.attrs["tile_shape"] == list(TILE)
    bits = ds.attrs["mask_planes"]
    assert {"FOO", "CLIPPED", "REJECTED", "NO_DATA", "CR"} <= set(bits)
    for i, visit in enumerate(ds.visit.values.tolist()):
        truth = afw_set[visit]
        (x0, y0), (ny, nx) = truth["xy0"], truth["image"].shape
        inside = (slice(y0, y0 + ny), slice(x0, x0 + nx))
        covered = np.zeros(TILE, bool)
        covered[inside] = True
        finite = np.isfinite(truth["image"]) & np.isfinite(truth["variance"])
        image = ds.image.values[i]
        mask = ds.mask.values[i]
        variance = ds.variance.values[i]
        no_data = _plane(mask, bits, "NO_DATA")
        np.testing.assert_array_equal(no_data[~covered], True)
        np.testing.assert_array_equal(no_data[inside], ~finite)
        np.testing.assert_array_equal(image[~covered], 0)
        np.testing.assert_array_equal(variance[~covered], 0)
        np.testing.assert_array_equal(image[inside], np.where(finite, truth["image"], 0))
        np.testing.assert_array_equal(variance[inside], np.where(finite, truth["variance"], 0))
        for name, on in truth["planes"].items():
            np.testing.assert_array_equal(_plane(mask, bits, name)[inside], on, err_msg=name)
        for name in set(bits) - set(truth["planes"]) - {"NO_DATA"}:
            assert not _plane(mask, bits, name).any(), name
    assert ds.image.dtype == np.float32 and ds.mask.dtype == np.int32
    assert ds.variance.dtype == np.float32


def test_write_warp_round_trip(tmp_path, tile_wcs, visit_header):
    rng = np.random.default_rng(1)
    planes = MaskPlanes({"BAD": 0, "SAT": 1, "NO_DATA": 8})
    written = {}
    for visit, psf_size, changes in (
        (3, 3, {"BORE-ROTANG": 10.0, "ROTTYPE": "SKY", "MAGZERO": 31.4}),
        (1, 5, {"PSF-FWHM": 3.2, "AVG-ERA": 99.0, "DATE-AVG": None}),
        (2, None, {"AIRTEMP": None, "HUMIDITY": None}),
    ):
        image = rng.normal(size=TILE).astype(np.float32)
        mask = (rng.uniform(size=TILE) < 0.1).astype(np.int32)
        variance = rng.uniform(1, 2, size=TILE).astype(np.float32)
        psf = None if psf_size is None else rng.uniform(size=(psf_size, psf_size))
        path = write_warp(
            tmp_path / f"w{visit}.fits",
            image,
            mask,
            variance,
            mask_planes=planes,
            wcs=tile_wcs,
            visit=parse_visit_header(visit_header(visit, changes), "x"),
            psf=psf,
            bunit="nJy",
        )
        written[visit] = (path, image, mask, variance, psf)
    ds = open_warps([written[v][0] for v in (3, 1, 2)], chunks=(25, 25))
    assert ds.visit.dtype == np.int64 and ds.visit.values.tolist() == [1, 2, 3]
    assert ds.y.dtype == np.int64 and ds.x.values.tolist() == list(range(50))
    assert visit_infos(ds) == [read_warp_header(written[v][0])[0] for v in (1, 2, 3)]
    y, x = np.mgrid[0:40:13, 0:50:7]
    np.testing.assert_allclose(
        warps.tile_wcs(ds).pixel_to_world_values(x, y), tile_wcs.pixel_to_world_values(x, y)
    )
    assert mask_planes(ds).bits == ds.attrs["mask_planes"]
    assert ds.has_psf.values.tolist() == [True, False, True]
    assert ds.psf.shape == (3, 5, 5) and ds.psf_y.values.tolist() == [-2, -1, 0, 1, 2]
    np.testing.assert_allclose(ds.psf.values[0], written[1][4] / written[1][4].sum(), rtol=1e-6)
    np.testing.assert_allclose(
        ds.psf.values[2, 1:4, 1:4], written[3][4] / written[3][4].sum(), rtol=1e-6
    )
    assert ds.psf.values[1].sum() == 0 and ds.psf.values[2, 0].sum() == 0
    assert np.isnan(ds.mjd.values[0]) and ds.era_deg.values[0] == 99.0
    assert ds.rottype.values.tolist() == ["", "", "SKY"]
    assert ds.weather_defaulted.values.tolist() == ["", "AIRTEMP,HUMIDITY", ""]
    assert ds.bunit.values.tolist() == ["nJy"] * 3
    run = mask_planes(ds)
    for i, visit in enumerate((1, 2, 3)):
        _, image, mask, variance, _ = written[visit]
        np.testing.assert_array_equal(ds.image.values[i], image)
        np.testing.assert_array_equal(ds.variance.values[i], variance)
        np.testing.assert_array_equal(ds.mask.values[i], run.remap(mask, planes))


def test_chunks_follow_the_arguments(afw_set):
    paths = [afw_set[v]["path"] for v in (11, 5, 8)]
    ds = open_warps(paths, chunks=(16, 20), visits_per_chunk=2)
    assert ds.image.chunks == ((2, 1), (16, 16, 8), (20, 20, 10))
    assert ds.mask.chunks == ds.variance.chunks == ds.image.chunks
    square = open_warps(paths, chunks=32)
    assert square.image.chunks == ((1, 1, 1), (32, 8), (32, 18))
    with pytest.raises(ValueError, match="chunks"):
        open_warps(paths, chunks=(0, 10))


def test_open_reads_no_pixels_and_a_chunk_reads_only_its_part(afw_set, monkeypatch):
    calls = []
    original = fits_io.read_warp_pixels

    def counting(path, layout, y_slice, x_slice, **kwargs):
        calls.append((layout.filename, y_slice, x_slice))
        return original(path, layout, y_slice, x_slice, **kwargs)

    monkeypatch.setattr(fits_io, "read_warp_pixels", counting)
    paths = [afw_set[v]["path"] for v in (11, 5, 8)]
    ds = open_warps(paths, chunks=(16, 16), visits_per_chunk=1)
    assert calls == []
    n_chunks = ds.image.data.npartitions
    assert n_chunks == 3 * 3 * 4
    # One read and one field task per chunk (plus the reader): grows with chunks, not pixels.
    assert len(ds.image.data.__dask_graph__()) <= 2 * n_chunks + 1
    block = ds.isel(visit=2, y=slice(16, 32), x=slice(0, 16))
    image, mask = dask.compute(block.image, block.mask)
    assert len(calls) == 1
    assert calls[0][1:] == (slice(16, 32), slice(0, 16))
    np.testing.assert_array_equal(image.values, afw_set[11]["image"][16:32, 0:16])
    assert mask.shape == (16, 16)


def test_strided_and_integer_selections(afw_set):
    ds = open_warps([afw_set[v]["path"] for v in (11, 5, 8)], chunks=(16, 16))
    full = ds.compute()
    for selection in ((1, slice(None, None, 3), 9), (slice(None), slice(30, 2, -4), -1)):
        for name in ("image", "mask", "variance"):
            np.testing.assert_array_equal(
                ds[name].data[selection].compute(), full[name].values[selection]
            )


def test_duplicate_visits(afw_set, afw_warp):
    copy = afw_warp("copy_of_5.fits", visit=5)
    with pytest.raises(InputErrors) as info:
        open_warps([afw_set[5]["path"], copy, afw_set[11]["path"]])
    message = _problems(info)
    assert f"{copy}: EXPID: visit 5 appears 2 times" in message
    assert f"{afw_set[5]['path']}: EXPID" in message


def test_mismatched_wcs(afw_set, afw_warp, make_wcs):
    odd = afw_warp("odd.fits", visit=40, wcs=make_wcs(crval=(150.0, -29.9997)))
    with pytest.raises(InputErrors) as info:
        open_warps([afw_set[11]["path"], odd])
    assert f"{odd}: IMAGE WCS: the WCS differs" in _problems(info)
    # Below the tolerance is fine.
    close = afw_warp("close.fits", visit=41, wcs=make_wcs(crval=(150.0, -30.0 + 1e-9)))
    open_warps([afw_set[11]["path"], close])


def test_wcs_differs_from_the_given_tile_wcs(afw_set, make_wcs):
    with pytest.raises(InputErrors) as info:
        open_warps([afw_set[11]["path"]], tile_wcs=make_wcs(scale_deg=0.25 / 3600))
    assert f"{afw_set[11]['path']}: IMAGE WCS" in _problems(info)


def test_warp_that_does_not_fit_the_tile(afw_set, afw_warp):
    with pytest.raises(InputErrors) as info:
        open_warps([afw_set[11]["path"], afw_set[8]["path"]], tile_shape=(35, 50))
    message = _problems(info)
    assert f"{afw_set[11]['path']}: IMAGE NAXIS1/NAXIS2" in message
    assert f"{afw_set[8]['path']}: IMAGE NAXIS1/NAXIS2" in message
    negative = afw_warp("neg.fits", visit=30, shape=(10, 10), xy0=(-3, 2))
    with pytest.raises(InputErrors) as info:
        open_warps([negative])
    assert f"{negative}: IMAGE LTV1/LTV2: the warp starts at tile pixel (x0, y0) = (-3, 2)" in (
        _problems(info)
    )


def test_mixed_bands(afw_set, afw_warp, visit_header):
    red = afw_warp("red.fits", header=visit_header(77, {"FILTER": "r"}))
    with pytest.raises(InputErrors) as info:
        open_warps([afw_set[11]["path"], afw_set[5]["path"], red])
    assert f"{red}: FILTER/BAND: band 'r' differs from band 'g'" in _problems(info)


def test_empty_list():
    with pytest.raises(InputErrors, match="no warp files"):
        open_warps([])


def test_every_problem_of_every_file_is_reported_together(
    tmp_path, afw_set, afw_warp, visit_header
):
    unreadable = tmp_path / "junk.fits"
    unreadable.write_bytes(b"\0" * 100)
    truncated = afw_warp("trunc.fits", visit=60)
    truncated.write_bytes(truncated.read_bytes()[:-4000])
    bad_header = afw_warp("hdr.fits", header=visit_header(61, {"BORE-ALT": 0.0, "OBS-LAT": None}))
    duplicate = afw_warp("dup.fits", visit=11)
    with pytest.raises(InputErrors) as info:
        open_warps([afw_set[11]["path"], unreadable, truncated, bad_header, duplicate])
    message = _problems(info)
    for culprit in (
        f"{unreadable}: cannot read",
        f"{truncated}: VARIANCE",
        f"{bad_header}: BORE-ALT",
        f"{bad_header}: OBS-LAT",
        f"{duplicate}: EXPID",
    ):
        assert culprit in message, message
    assert len(info.value.errors) >= 6


def test_template(tmp_path, afw_set, tile_wcs, make_wcs):
    ds = open_warps([afw_set[v]["path"] for v in (11, 5)], chunks=(16, 16))
    rng = np.random.default_rng(2)
    planes = MaskPlanes({"NO_DATA": 3, "BAD": 0, "CR": 5})
    image = rng.normal(size=TILE).astype(np.float32)
    mask = np.where(rng.uniform(size=TILE) < 0.3, 1 << 5, 0).astype(np.int32)
    path = write_warp(tmp_path / "t.fits", image, mask, image**2, mask_planes=planes, wcs=tile_wcs)
    template = open_template(path, like=ds)
    assert template.image.dims == ("y", "x") and template.image.chunks == (
        (16, 16, 8),
        (16,) * 3 + (2,),
    )
    assert template.attrs["mask_planes"] == ds.attrs["mask_planes"]
    np.testing.assert_array_equal(template.image.values, image)
    np.testing.assert_array_equal(
        _plane(template.mask.values, ds.attrs["mask_planes"], "CR"), mask != 0
    )
    own = open_template(path, chunks=(40, 50))
    assert own.attrs["tile_shape"] == list(TILE) and "FOO" not in own.attrs["mask_planes"]

    odd_planes = MaskPlanes({"NO_DATA": 3, "WEIRD": 4})
    odd = write_warp(
        tmp_path / "odd.fits",
        image[:10, :10],
        np.zeros((10, 10), np.int32),
        image[:10, :10] ** 2,
        mask_planes=odd_planes,
        wcs=make_wcs(crval=(150.0, -29.99)),
        xy0=(45, 0),
    )
    with pytest.raises(InputErrors) as info:
        open_template(odd, like=ds)
    message = _problems(info)
    assert f"{odd}: MASK: mask planes WEIRD are not in the run's layout" in message
    assert f"{odd}: IMAGE WCS" in message
    assert f"{odd}: IMAGE NAXIS1/NAXIS2" in message


def test_psf_matched_pairs_with_the_direct_warps(tmp_path, afw_set, afw_warp, visit_header):
    direct = open_warps([afw_set[v]["path"] for v in (11, 5, 8)], chunks=(16, 16))
    matched = {
        v: afw_warp(f"pm{v}.fits", visit=v, bits={"BAD": 3, "NO_DATA": 1}) for v in (11, 5, 8)
    }
    ds = open_psf_matched(list(matched.values()), like=direct)
    assert ds.visit.values.tolist() == direct.visit.values.tolist()
    assert ds.attrs["mask_planes"] == direct.attrs["mask_planes"]
    assert ds.image.chunks == direct.image.chunks
    assert ds.filename.values.tolist() == [str(matched[v]) for v in (5, 8, 11)]

    extra = afw_warp("pm99.fits", visit=99)
    with pytest.raises(InputErrors) as info:
        open_psf_matched([matched[11], matched[5], extra], like=direct)
    message = _problems(info)
    assert f"EXPID: visit 8 (direct warp {afw_set[8]['path']}) has no valid PSF-matched warp" in (
        message
    )
    assert f"{extra}: EXPID: visit 99 has no direct warp" in message


def test_visit_infos_round_trip_exactly(afw_set):
    paths = [afw_set[v]["path"] for v in (11, 5, 8)]
    ds = open_warps(paths)
    expected = sorted((read_warp_header(p)[0] for p in paths), key=lambda v: v.visit)
    assert visit_infos(ds) == expected
    assert visit_infos(ds.isel(visit=[2, 0])) == [expected[2], expected[0]]
    assert attrs.evolve(expected[0], mjd=None) != expected[0]


def test_hierarch_primary_keywords_from_a_plain_astropy_file(tmp_path, tile_wcs, visit_header):
    hdus = [fits.PrimaryHDU(header=visit_header(4))]
    for name, dtype in (("IMAGE", np.float32), ("MASK", np.int32), ("VARIANCE", np.float32)):
        hdus.append(fits.ImageHDU(np.ones(TILE, dtype), header=tile_wcs.to_header(), name=name))
    hdus[2].header["HIERARCH MP_NO_DATA"] = 8
    fits.HDUList(hdus).writeto(tmp_path / "plain.fits")
    ds = open_warps([tmp_path / "plain.fits"])
    assert ds.airmass.values.tolist() == [1.1547]
