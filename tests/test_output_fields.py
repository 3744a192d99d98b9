"""What the reference does to a finished coadd, done here: ``doInterp``/``interpImage``
(NO_DATA pixels filled and flagged INTRP), ``doMaskBrightObjects``/``brightObjectMaskName``
(a ds9 region file, through astropy-regions) and ``doAttachTransmissionCurve`` (the
filter curve in the store and the FITS exports)."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from astropy.io import fits
from distributed import Client, LocalCluster

import dcr_dask
from dcr_dask.cli import main
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.errors import ConfigError, InapplicableFieldWarning, InputError
from dcr_dask.graph.bright_objects import bright_object_mask
from dcr_dask.graph.interp import TAPER_PX, InterpSettings, fallback_value, interpolate_holes
from dcr_dask.io.export import export_fits
from dcr_dask.io.fits import write_warp
from dcr_dask.io.regions import read_bright_object_regions
from dcr_dask.io.store import make_output_dataset, open_output, transmission_array, write_output
from dcr_dask.masks import MaskPlanes
from dcr_dask.physics.bands import standard_band
from dcr_dask.physics.transmission import read_transmission
from dcr_dask.settings import coadd_transmission
from dcr_dask.simulate import SimulationSpec, simulate_tile

# --------------------------------------------------------------------------- interpolation


def _holes() -> np.ndarray:
    holes = np.zeros((10, 23), dtype=bool)
    holes[1, 4:17] = True  # interior, longer than a chunk
    holes[3, :9] = True  # left edge, longer than the taper
    holes[5, 20:] = True  # right edge, shorter than the taper
    holes[7, :] = True  # a whole row
    holes[8, 2] = True  # one pixel
    return holes


def _image(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(5.0, 2.0, (2, 10, 23)).astype(np.float32)


def _fill(image, holes, chunks=(1, 4, 5), **kwargs) -> np.ndarray:
    return interpolate_holes(
        da.from_array(image, chunks=chunks), da.from_array(holes, chunks=chunks[1:]), **kwargs
    ).compute()


def test_interior_holes_are_the_straight_line_between_their_ends():
    image, holes = _image(), _holes()
    filled = _fill(image, holes, fallback=np.array([9.0, -9.0]), empty_value=0.0)
    for plane in range(2):
        for row in (1, 8):
            good = ~holes[row]
            expected = np.interp(np.arange(23), np.flatnonzero(good), image[plane, row, good])
            np.testing.assert_allclose(filled[plane, row], expected, rtol=1e-6)
    assert np.array_equal(filled[:, ~holes], image[:, ~holes])  # good pixels untouched


def test_edge_runs_taper_to_the_fallback_and_empty_rows_hold_it():
    image, holes = _image(), _holes()
    fallback = np.array([9.0, -4.0])
    filled = _fill(image, holes, fallback=fallback, empty_value=fallback)
    for plane in range(2):
        # left edge: good pixel at x = 9; x = 9 - d for d = 1..9
        near = image[plane, 3, 9]
        for d in range(1, 10):
            weight = min(d, TAPER_PX + 1) / (TAPER_PX + 1)
            expected = near + (fallback[plane] - near) * weight
            assert filled[plane, 3, 9 - d] == pytest.approx(expected, rel=1e-6)
        assert np.all(filled[plane, 3, : 9 - TAPER_PX] == np.float32(fallback[plane]))
        near = image[plane, 5, 19]  # right edge: 3 pixels, all within the taper
        expected = [near + (fallback[plane] - near) * d / (TAPER_PX + 1) for d in (1, 2, 3)]
        np.testing.assert_allclose(filled[plane, 5, 20:], expected, rtol=1e-6)
        assert np.all(filled[plane, 7] == np.float32(fallback[plane]))


def test_without_the_fallback_the_nearest_value_reaches_the_edge():
    image, holes = _image(), _holes()
    filled = _fill(image, holes, fallback=None, empty_value=np.inf)
    assert np.all(filled[:, 3, :9] == image[:, 3, 9:10])
    assert np.all(filled[:, 5, 20:] == image[:, 5, 19:20])
    assert np.all(np.isinf(filled[:, 7]))


def test_transpose_interpolates_along_columns_and_chunks_do_not_matter():
    image, holes = _image(), _holes()
    by_columns = _fill(image, holes, along_columns=True, fallback=np.array([1.0, 2.0]))
    by_rows_of_transpose = _fill(
        np.ascontiguousarray(image.transpose(0, 2, 1)),
        holes.T.copy(),
        chunks=(1, 5, 4),
        fallback=np.array([1.0, 2.0]),
    ).transpose(0, 2, 1)
    np.testing.assert_array_equal(by_columns, by_rows_of_transpose)
    whole = _fill(image, holes, chunks=(2, 10, 23), along_columns=True, fallback=[1.0, 2.0])
    np.testing.assert_array_equal(by_columns, whole)
    assert not np.array_equal(by_columns, _fill(image, holes, fallback=np.array([1.0, 2.0])))


@pytest.mark.parametrize(
    ("kind", "statistic"),
    [("MEAN", np.mean), ("MEDIAN", np.median), ("USER", lambda values: -2.5)],
)
@pytest.mark.parametrize("negative_allowed", [True, False])
def test_fallback_value_is_the_statistic_of_the_good_pixels(kind, statistic, negative_allowed):
    image = _image() - np.float32(5.5)  # statistics near -0.5: the clamp to 0 shows
    holes = _holes()
    image[:, holes] = 1e6  # hole pixels never count
    settings = InterpSettings(
        True,
        fallback_type=kind,
        fallback_user_value=-2.5,
        negative_fallback_allowed=negative_allowed,
    )
    value = fallback_value(
        da.from_array(image, chunks=(1, 4, 5)), da.from_array(holes, chunks=(4, 5)), settings
    ).compute()
    expected = np.array([statistic(image[k][~holes].astype(np.float64)) for k in range(2)])
    if not negative_allowed:
        expected = np.maximum(expected, 0.0)
    np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-9)
    assert negative_allowed == bool(np.any(value < 0))


def test_meanclip_fallback_ignores_outliers():
    image = np.full((1, 10, 23), 3.0, np.float32)
    image[0, 0, :4] = 500.0  # outliers a plain mean would follow
    holes = np.zeros((10, 23), bool)
    settings = InterpSettings(True, fallback_type="MEANCLIP")
    clipped = fallback_value(da.from_array(image), da.from_array(holes), settings).compute()
    plain = fallback_value(
        da.from_array(image), da.from_array(holes), InterpSettings(True, fallback_type="MEAN")
    ).compute()
    assert clipped[0] == pytest.approx(3.0) and plain[0] > 10.0


# --------------------------------------------------------------------------- bright objects


@pytest.fixture(scope="module")
def tile():
    return simulate_tile(
        SimulationSpec(
            shape=(48, 48), airmasses=(1.05, 1.3, 1.6, 1.9), n_stars=5, n_galaxies=1, seed=5
        )
    )


def _write_regions(path: Path, text: str) -> Path:
    path.write_text("# Region file format: DS9 version 4.1\n" + text)
    return path


def test_a_region_file_masks_exactly_the_pixels_whose_centre_is_inside(tile, tmp_path):
    centre = tile.wcs.pixel_to_world(30.0, 12.0)
    scale = 3600.0 * float(np.sqrt(abs(np.linalg.det(tile.wcs.pixel_scale_matrix))))
    radius = 4.3 * scale  # arcsec
    path = _write_regions(
        tmp_path / "bright.reg",
        "image\ncircle(11,21,5.5)\nbox(40,40,6,4,0)\n-circle(11,21,1.2)\n"
        f'icrs\ncircle({centre.ra.deg:.8f},{centre.dec.deg:.8f},{radius:.5f}")\n',
    )
    regions = read_bright_object_regions(path, tile.wcs, (48, 48))
    mask = bright_object_mask(regions, ((20, 28), (16, 16, 16))).compute()
    yy, xx = np.mgrid[0:48, 0:48]
    # ds9 image coordinates are 1-based: circle(11, 21) is 0-based pixel (10, 20)
    pixel_circle = np.hypot(xx - 10, yy - 20) < 5.5
    hole = np.hypot(xx - 10, yy - 20) < 1.2
    box = (np.abs(xx - 39) < 3) & (np.abs(yy - 39) < 2)
    sky = tile.wcs.pixel_to_world(xx.ravel(), yy.ravel())
    sky_circle = (sky.separation(centre).arcsec < radius).reshape(48, 48)
    expected = (pixel_circle & ~hole) | box | sky_circle
    assert sky_circle.sum() > 40 and box.sum() == 5 * 3
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("image\ncircle(10,10\n", "not a ds9 region file|cannot be parsed"),
        ("image\nfrobnicate(1,2,3)\n", "cannot be parsed"),
        ("image\npoint(10,10)\n", "region 1 \\(point\\) has no area"),
        ("", "holds no region"),
    ],
)
def test_a_bad_region_file_is_an_error_naming_it(tile, tmp_path, text, match):
    path = _write_regions(tmp_path / "bad.reg", text)
    with pytest.raises(InputError, match=match) as info:
        read_bright_object_regions(path, tile.wcs, (48, 48))
    assert str(path) in str(info.value)


def test_a_missing_region_file_and_an_off_tile_region(tile, tmp_path):
    with pytest.raises(InputError, match="no such region file"):
        read_bright_object_regions(tmp_path / "missing.reg", tile.wcs, (48, 48))
    path = _write_regions(tmp_path / "off.reg", "image\ncircle(10,10,3)\ncircle(300,10,3)\n")
    with pytest.warns(UserWarning, match=r"off\.reg: region 2 \(circle\) lies wholly off"):
        regions = read_bright_object_regions(path, tile.wcs, (48, 48))
    assert len(regions.include) == 1 and regions.off_tile == ("region 2 (circle)",)


def test_masking_bright_objects_needs_a_file_at_validation(capsys):
    config = DcrAssembleCoaddConfig(doMaskBrightObjects=True)
    with pytest.raises(ConfigError, match=r"'doMaskBrightObjects'.*brightObjectMaskFile"):
        config.validate()
    assert main(["config", "validate", "--set", "doMaskBrightObjects=true"]) == 1
    assert "--bright-object-mask" in capsys.readouterr().err
    config = DcrAssembleCoaddConfig(brightObjectMaskFile="bright.reg")
    with pytest.warns(InapplicableFieldWarning, match="doMaskBrightObjects is False"):
        config.validate()


# --------------------------------------------------------------------------- transmission


def test_the_attached_curve_is_the_band_s_or_the_file_s(tmp_path):
    standard = coadd_transmission(DcrAssembleCoaddConfig(band="r"))
    expected = standard_band("r").transmission()
    assert standard.band == "r" and "lsst-r" in standard.source
    np.testing.assert_array_equal(standard.transmission.throughput, expected.throughput)
    curve = tmp_path / "mine.dat"
    curve.write_text("400 0\n450 1\n500 1\n550 0\n")
    given = coadd_transmission(DcrAssembleCoaddConfig(transmissionCurve=str(curve)), "g")
    assert given.band == "g" and str(curve) in given.source
    np.testing.assert_array_equal(given.transmission.wavelength_nm, [400, 450, 500, 550])
    with pytest.raises(ConfigError, match=r"'doAttachTransmissionCurve'.*band"):
        coadd_transmission(DcrAssembleCoaddConfig(effectiveWavelength=478.0, bandwidth=147.0))


def test_the_curve_goes_into_the_store_and_every_fits_export(tmp_path):
    curve = standard_band("g").transmission()
    n_sub, ny, nx = 2, 6, 5
    dataset = make_output_dataset(
        np.ones((n_sub, ny, nx), np.float32),
        np.ones((ny, nx), np.float32),
        np.zeros((ny, nx), np.int32),
        np.ones((n_sub, ny, nx), np.uint16),
        wavelength_min_nm=[400.0, 480.0],
        wavelength_max_nm=[480.0, 560.0],
        mask_planes=MaskPlanes({"NO_DATA": 8}),
        wcs_header="",
        config={},
        inputs=[{"visit": 1}],
        convergence={},
        transmission=transmission_array(
            curve.wavelength_nm, curve.throughput, band="g", source="standard band lsst-g"
        ),
    )
    store = write_output(dataset, tmp_path / "coadd.zarr")
    back = open_output(store)
    np.testing.assert_array_equal(back["transmission"].values, curve.throughput)
    np.testing.assert_array_equal(back["transmission_wavelength"].values, curve.wavelength_nm)
    assert back["transmission"].attrs["band"] == "g"
    for path in export_fits(store, tmp_path / "fits"):
        with fits.open(path) as hdus:
            table = hdus["TRANSMISSION"]
            assert table.header["BAND"] == "g" and "lsst-g" in table.header["TRSOURCE"]
            assert table.columns["WAVELENGTH"].unit == "nm"
            np.testing.assert_array_equal(table.data["THROUGHPUT"], curve.throughput)
            np.testing.assert_array_equal(table.data["WAVELENGTH"], curve.wavelength_nm)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


#: Holes no visit covers: an interior strip, a block at the left edge.
def _no_data(shape) -> np.ndarray:
    holes = np.zeros(shape, dtype=bool)
    holes[10:30, 20:24] = True
    holes[36:44, :10] = True
    return holes


@pytest.fixture(scope="module")
def warps(tile, tmp_path_factory):
    directory = tmp_path_factory.mktemp("warps")
    no_data = np.int32(tile.mask_planes.value(["NO_DATA"]))
    holes = _no_data((48, 48))
    paths = []
    for v, info in enumerate(tile.visits):
        mask = tile.masks[v].copy()
        mask[holes] |= no_data
        paths.append(
            write_warp(
                directory / f"visit_{info.visit}.fits",
                tile.images[v],
                mask,
                tile.variances[v],
                mask_planes=tile.mask_planes,
                wcs=tile.wcs,
                visit=info,
                psf=tile.psfs[v],
            )
        )
    regions = _write_regions(directory.parent / "bright.reg", "image\ncircle(31,31,4.5)\n")
    return paths, regions


FAST = ["--set", "subregionSize=[48,48]", "--set", "maxNumIter=3"]


@pytest.mark.slow
def test_a_run_fills_holes_masks_bright_objects_and_attaches_the_curve(
    tile, warps, client, tmp_path
):
    paths, regions = warps
    output = tmp_path / "coadd.zarr"
    args = ["run", *map(str, paths), "--output", str(output), *FAST]
    args += ["--scheduler", client.scheduler.address, "--bright-object-mask", str(regions)]
    args += ["--set", "doAttachTransmissionCurve=true", "--set", "brightObjectMaskName=STARS"]
    assert main(args) == 0
    ds = open_output(output)
    planes = MaskPlanes(ds.attrs["mask_planes"])
    mask = ds["mask"].values
    # the coadd's NO_DATA: the warps' holes, grown by CompareWarp where the PSF-matched
    # warps cannot supply pixels (their matching kernel reaches into the holes)
    holes = (mask & (1 << planes.bit("NO_DATA"))) != 0
    assert holes[_no_data((48, 48))].all() and not holes.all()
    # doInterp (the default): every NO_DATA pixel is filled and flagged INTRP, and only those
    assert np.array_equal((mask & (1 << planes.bit("INTRP"))) != 0, holes)
    model = ds["dcr_model"].values
    record = ds.attrs["interpolation"]
    assert record["pixels"] == holes.sum() and record["fallback_type"] == "MEDIAN"
    for y in range(48):  # rows with one interior run: the straight line between its ends
        run = np.flatnonzero(holes[y])
        if run.size and run[0] > 0 and run[-1] < 47 and np.ptp(run) == run.size - 1:
            ends = [run[0] - 1, run[-1] + 1]
            for s in range(model.shape[0]):
                line = np.interp(run, ends, model[s, y, ends])
                np.testing.assert_allclose(model[s, y, run], line, rtol=1e-5, atol=1e-6)
            interior_rows = True
    assert interior_rows
    edge_row = next(y for y in range(48) if holes[y, : TAPER_PX + 2].all())
    far = np.flatnonzero(holes[edge_row])[: -(TAPER_PX + 1)]  # beyond the taper
    np.testing.assert_allclose(
        model[:, edge_row, far], np.array(record["fallback_values"])[:, None] + 0 * far, rtol=1e-6
    )
    np.testing.assert_allclose(ds["coadd"].values, model.sum(axis=0), rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(ds["variance"].values[holes]))
    # doMaskBrightObjects with a renamed plane: exactly the pixels of the circle
    yy, xx = np.mgrid[0:48, 0:48]
    inside = np.hypot(xx - 30, yy - 30) < 4.5
    assert np.array_equal((mask & (1 << planes.bit("STARS"))) != 0, inside)
    assert ds.attrs["bright_objects"]["file"] == str(regions)
    # doAttachTransmissionCurve: the warps' band (g), read back from the FITS export by astropy
    assert ds["transmission"].attrs["band"] == tile.visits[0].band
    assert main(["export-fits", str(output), str(tmp_path / "fits")]) == 0
    with fits.open(tmp_path / "fits" / "coadd_coadd.fits") as hdus:
        curve = read_transmission(
            Path(dcr_dask.__file__).parent / "physics" / "data" / "bands" / "lsst-g.dat"
        )
        np.testing.assert_array_equal(hdus["TRANSMISSION"].data["THROUGHPUT"], curve.throughput)
        assert hdus["MASK"].header["MP_STARS"] == planes.bit("STARS")


def test_a_bad_region_file_stops_the_run_before_the_cluster(warps, tmp_path, monkeypatch, capsys):
    from dcr_dask.running import pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("the cluster was started")

    monkeypatch.setattr(pipeline, "dask_client", refuse)
    paths, _ = warps
    bad = _write_regions(tmp_path / "bad.reg", "image\npoint(3,3)\n")
    output = tmp_path / "coadd.zarr"
    args = ["run", *map(str, paths), "--output", str(output), "--bright-object-mask", str(bad)]
    assert main(args) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # one line, after the INFO log
    assert f"{bad}: region 1 (point) has no area" in last and "Traceback" not in last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.reg"]
