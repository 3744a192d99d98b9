"""afw-style warp files: writing, header-only reading, section reads and every bad input."""

import attrs
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, Sip

from dcr_dask.errors import InputError, InputErrors
from dcr_dask.io.fits import (
    check_warp,
    read_warp_header,
    read_warp_pixels,
    read_warp_psf,
    wcs_from_header_text,
    wcs_to_header_text,
    write_warp,
)
from dcr_dask.io.metadata import parse_visit_header
from dcr_dask.masks import MaskPlanes

PLANES = MaskPlanes({"BAD": 0, "SAT": 1, "DETECTED_NEGATIVE": 6, "NO_DATA": 8})


@pytest.fixture
def arrays():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(12, 17)).astype(np.float32)
    mask = np.zeros((12, 17), dtype=np.int32)
    mask[2, 3] = 1 << 6
    mask[4, 5] = 0b11
    variance = rng.uniform(1, 2, size=(12, 17)).astype(np.float32)
    return image, mask, variance


def _same_sky(a: WCS, b: WCS, shape=(40, 50)) -> None:
    y, x = np.mgrid[0 : shape[0] : 7, 0 : shape[1] : 9]
    np.testing.assert_allclose(
        a.pixel_to_world_values(x, y), b.pixel_to_world_values(x, y), rtol=0, atol=1e-10
    )


def _errors(path, *, visit=True) -> list[InputError]:
    check = check_warp(path, visit=visit)
    assert check.layout is None and check.errors
    return check.errors


def _assert_named(errors, filename, keyword) -> None:
    assert any(str(filename) in str(error) and keyword in str(error) for error in errors), (
        "\n".join(map(str, errors))
    )


def test_write_warp_is_afw_style(tmp_path, arrays, tile_wcs, visit_header):
    image, mask, variance = arrays
    visit = parse_visit_header(visit_header(5), "in.fits")
    psf = np.outer([1, 2, 1], [1, 2, 1])
    path = write_warp(
        tmp_path / "w.fits",
        image,
        mask,
        variance,
        mask_planes=PLANES,
        wcs=tile_wcs,
        visit=visit,
        psf=psf,
        xy0=(7, 3),
        bunit="nJy",
        primary_header={"OBSERVER": "me", "NAXIS": 5},
    )
    with fits.open(path) as hdul:
        assert [hdu.name for hdu in hdul] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE", "PSF"]
        assert hdul[0].data is None
        assert hdul[0].header["EXPID"] == 5 and hdul[0].header["OBSERVER"] == "me"
        assert hdul[0].header["BORE-AIRMASS"] == 1.1547
        assert hdul["IMAGE"].data.dtype == np.dtype(">f4")
        assert hdul["MASK"].data.dtype == np.dtype(">i4")
        assert hdul["VARIANCE"].data.dtype == np.dtype(">f4")
        np.testing.assert_array_equal(hdul["IMAGE"].data, image)
        np.testing.assert_array_equal(hdul["MASK"].data, mask)
        np.testing.assert_array_equal(hdul["VARIANCE"].data, variance)
        np.testing.assert_allclose(hdul["PSF"].data, psf / 16)
        assert hdul["IMAGE"].header["BUNIT"] == "nJy"
        mask_header = hdul["MASK"].header
        assert {k: mask_header[k] for k in mask_header if k.startswith("MP_")} == {
            "MP_BAD": 0,
            "MP_SAT": 1,
            "MP_DETECTED_NEGATIVE": 6,
            "MP_NO_DATA": 8,
        }
        for name in ("IMAGE", "MASK", "VARIANCE"):
            header = hdul[name].header
            assert (header["LTV1"], header["LTV2"]) == (-7, -3)
            assert (header["CRVAL1A"], header["CRVAL2A"]) == (7, 3)
            assert header["CRPIX1"] == tile_wcs.wcs.crpix[0] - 7
            assert header["CRPIX2"] == tile_wcs.wcs.crpix[1] - 3
            # The HDU WCS at HDU pixel (0, 0) is the tile WCS at tile pixel (7, 3).
            np.testing.assert_allclose(
                WCS(header).pixel_to_world_values(0, 0), tile_wcs.pixel_to_world_values(7, 3)
            )
    assert list(tmp_path.iterdir()) == [path]


def test_header_round_trip(tmp_path, arrays, tile_wcs, visit_header):
    image, mask, variance = arrays
    visit = parse_visit_header(visit_header(5), "x")
    path = write_warp(
        tmp_path / "w.fits",
        image,
        mask,
        variance,
        mask_planes=PLANES,
        wcs=tile_wcs,
        visit=visit,
        psf=np.pad([[1.0]], 2),
        xy0=(7, 3),
        bunit="nJy",
    )
    read_visit, layout = read_warp_header(path)
    assert read_visit == attrs.evolve(visit, filename=str(path), bunit="nJy")
    assert layout.shape == (12, 17) and layout.xy0 == (7, 3)
    assert layout.tile_slices == (slice(3, 15), slice(7, 24))
    assert layout.mask_planes == PLANES
    assert layout.has_psf and layout.psf_shape == (5, 5) and layout.bunit == "nJy"
    np.testing.assert_allclose(layout.wcs.wcs.crpix, tile_wcs.wcs.crpix)
    _same_sky(layout.wcs, tile_wcs)
    np.testing.assert_array_equal(read_warp_psf(path, layout), np.pad([[1.0]], 2))


def test_sip_wcs_survives_the_pixel_origin_shift(tmp_path, arrays, tile_wcs):
    wcs = tile_wcs.deepcopy()
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    a = np.zeros((3, 3))
    b = np.zeros((3, 3))
    a[2, 0], b[0, 2] = 2e-5, -3e-5
    wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    wcs.wcs.set()
    path = write_warp(
        tmp_path / "w.fits", *arrays, mask_planes=PLANES, wcs=wcs, xy0=(20, 11), bunit=None
    )
    layout = check_warp(path, visit=False).layout
    assert layout is not None and layout.wcs.sip is not None
    _same_sky(layout.wcs, wcs)


def test_wcs_header_text_round_trip(tile_wcs):
    text = wcs_to_header_text(tile_wcs)
    assert text.splitlines()[0].startswith("WCSAXES")
    _same_sky(wcs_from_header_text(text), tile_wcs)
    _same_sky(wcs_from_header_text(tile_wcs.to_header().tostring()), tile_wcs)


def test_coadd_without_visit(tmp_path, arrays, tile_wcs):
    extra = fits.Header([("SIMPLE", True), ("NAXIS", 0), ("ORIGIN", "test", "who made it")])
    path = write_warp(
        tmp_path / "c.fits", *arrays, mask_planes=PLANES, wcs=tile_wcs, primary_header=extra
    )
    assert check_warp(path, visit=False).errors == []
    primary = fits.getheader(path)
    assert primary["ORIGIN"] == "test" and primary.comments["ORIGIN"] == "who made it"
    assert "EXPID" not in primary
    with pytest.raises(InputErrors) as info:
        read_warp_header(path)
    assert "EXPID" in str(info.value) and "c.fits" in str(info.value)


def test_write_refuses_overwrite_and_bad_arrays(tmp_path, arrays, tile_wcs):
    path = write_warp(tmp_path / "w.fits", *arrays, mask_planes=PLANES, wcs=tile_wcs)
    with pytest.raises(FileExistsError):
        write_warp(path, *arrays, mask_planes=PLANES, wcs=tile_wcs)
    write_warp(path, *arrays, mask_planes=PLANES, wcs=tile_wcs, overwrite=True)
    image, mask, variance = arrays
    with pytest.raises(ValueError, match="odd square"):
        write_warp(
            tmp_path / "x.fits", *arrays, mask_planes=PLANES, wcs=tile_wcs, psf=np.ones((4, 4))
        )
    with pytest.raises(ValueError, match="one shape"):
        write_warp(tmp_path / "x.fits", image, mask, variance[1:], mask_planes=PLANES, wcs=tile_wcs)
    with pytest.raises(ValueError, match="does not name"):
        write_warp(tmp_path / "x.fits", image, mask | 4, variance, mask_planes=PLANES, wcs=tile_wcs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.fits"]


def test_read_pixels_on_the_tile_grid(tmp_path, arrays, tile_wcs):
    image, mask, variance = arrays
    image[5, 6] = np.nan
    variance[7, 1] = np.nan
    mask[7, 1] = 1
    path = write_warp(tmp_path / "w.fits", *arrays, mask_planes=PLANES, wcs=tile_wcs, xy0=(7, 3))
    layout = check_warp(path, visit=False).layout
    run = MaskPlanes({"NO_DATA": 0, "SAT": 2, "BAD": 5, "DETECTED_NEGATIVE": 9})
    img, msk, var = read_warp_pixels(path, layout, slice(0, 20), slice(0, 30), mask_planes=run)
    assert img.dtype == np.float32 and msk.dtype == np.int32 and var.dtype == np.float32
    inside = (slice(3, 15), slice(7, 24))
    outside = np.ones((20, 30), bool)
    outside[inside] = False
    assert np.all(msk[outside] == 1) and np.all(img[outside] == 0) and np.all(var[outside] == 0)
    expected = image.copy()
    expected[5, 6] = expected[7, 1] = 0
    np.testing.assert_array_equal(img[inside], expected)
    assert msk[3 + 2, 7 + 3] == 1 << 9
    assert msk[3 + 4, 7 + 5] == (1 << 5) | (1 << 2)
    assert msk[3 + 5, 7 + 6] == 1  # NaN image -> NO_DATA
    assert msk[3 + 7, 7 + 1] == (1 << 5) | 1  # NaN variance: NO_DATA added, BAD kept
    assert var[3 + 7, 7 + 1] == 0 and img[3 + 7, 7 + 1] == 0
    # A section beyond the warp never opens the file.
    path.unlink()
    img, msk, var = read_warp_pixels(path, layout, slice(30, 35), slice(0, 5), mask_planes=run)
    assert np.all(msk == 1) and not img.any()


def test_hand_made_afw_file_with_alternate_wcs_only(tmp_path, tile_wcs, write_afw, visit_header):
    local = tile_wcs.deepcopy()
    local.wcs.crpix = local.wcs.crpix - [4, 2]
    header = local.to_header()
    header.update({"CRPIX1A": 1.0, "CRPIX2A": 1.0, "CRVAL1A": 4.0, "CRVAL2A": 2.0})
    header.update({"CTYPE1A": "LINEAR", "CTYPE2A": "LINEAR"})
    hdus = [fits.PrimaryHDU(header=visit_header(3))]
    for name, dtype in (("IMAGE", np.float32), ("MASK", np.int32), ("VARIANCE", np.float32)):
        hdus.append(fits.ImageHDU(np.ones((5, 6), dtype), header=header, name=name))
    hdus[2].header["MP_BAD"] = 0
    hdus[2].header["HIERARCH MP_NO_DATA"] = 1
    fits.HDUList(hdus).writeto(tmp_path / "a.fits")
    _, layout = read_warp_header(tmp_path / "a.fits")
    assert layout.xy0 == (4, 2)
    _same_sky(layout.wcs, tile_wcs)


# --------------------------------------------------------------------------- bad inputs


def test_unreadable_file(tmp_path):
    path = tmp_path / "notes.fits"
    path.write_text("this is not FITS\n" * 300)
    _assert_named(_errors(path), path, "cannot read")
    _assert_named(_errors(tmp_path / "absent.fits"), tmp_path / "absent.fits", "cannot read")


@pytest.mark.parametrize("cut", [100, 2880 + 100, 5000])
def test_truncated_file(tmp_path, afw_warp, cut):
    path = afw_warp()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - cut])
    errors = _errors(path)
    assert any("truncated" in str(e) or "missing" in str(e) for e in errors)
    _assert_named(errors, path, "VARIANCE")


def test_missing_hdu(afw_warp):
    path = afw_warp(skip=("MASK",))
    _assert_named(_errors(path), path, "MASK")


def test_wrong_pixel_type(afw_warp):
    path = afw_warp(image=np.zeros((40, 50), np.float64), mask=np.zeros((40, 50), np.int16))
    errors = _errors(path)
    _assert_named(errors, path, "IMAGE: pixels must be float32")
    _assert_named(errors, path, "MASK: pixels must be int32")


def test_shapes_that_differ(afw_warp):
    path = afw_warp(variance=np.ones((40, 49), np.float32))
    _assert_named(_errors(path), path, "IMAGE/MASK/VARIANCE: shapes differ")


def test_wrong_dimensions(afw_warp):
    path = afw_warp(image=np.ones((2, 40, 50), np.float32))
    _assert_named(_errors(path), path, "IMAGE: must be a non-empty 2-d image")


@pytest.mark.parametrize(
    ("psf", "message"),
    [
        (np.full((4, 4), 1 / 16, np.float32), "odd square"),
        (np.full((3, 5), 1 / 15, np.float32), "odd square"),
        (np.full((3, 3), 1.0, np.float32), "sums to 9"),
    ],
)
def test_bad_psf(afw_warp, psf, message):
    path = afw_warp(psf=psf)
    errors = _errors(path)
    _assert_named(errors, path, "PSF")
    assert any(message in str(e) for e in errors)


def test_missing_wcs(afw_warp):
    path = afw_warp(wcs=None)
    _assert_named(_errors(path), path, "IMAGE WCS")


def test_bad_mask_plane_keywords(tmp_path, afw_warp):
    path = afw_warp(bits={"BAD": 0, "SAT": 0})
    _assert_named(_errors(path), path, "MASK: bad mask-plane keywords")


def test_disagreeing_pixel_origins(tmp_path, afw_warp):
    path = afw_warp(xy0=(2, 3))
    with fits.open(path, mode="update") as hdul:
        hdul["MASK"].header["LTV1"] = -5
    _assert_named(_errors(path), path, "pixel origins (x0, y0) differ")


def test_several_problems_of_one_file_are_reported_together(afw_warp, visit_header):
    header = visit_header(changes={"BORE-ALT": 95.0, "OBS-ELEV": None})
    path = afw_warp(header=header, skip=("VARIANCE",), psf=np.ones((2, 2), np.float32))
    with pytest.raises(InputErrors) as info:
        read_warp_header(path)
    message = str(info.value)
    for culprit in ("BORE-ALT", "OBS-ELEV", "VARIANCE", "PSF"):
        assert f"{path}: {culprit}" in message
