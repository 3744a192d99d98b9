"""Warps as afw and the Butler wrote them in each era (tests/afw_layouts.py): read to the
same geometry, pixels and masks as the canonical file, PSF from the archive or the stars,
and a full run on a set of them."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest
from afw_layouts import ERAS, archive_hdus, primary_header, write_afw_warp
from astropy.convolution import discretize_model
from astropy.io import fits
from astropy.modeling.models import Gaussian2D, Moffat2D
from conftest import cli_spec
from distributed import Client, LocalCluster

import dcr_dask
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.errors import InputErrors
from dcr_dask.io.fits import check_warp, read_warp_pixels, write_warp
from dcr_dask.io.metadata import check_visit_header
from dcr_dask.io.warps import open_warps, visit_infos
from dcr_dask.kernels.psf_stars import measure_psf_fwhm
from dcr_dask.simulate import simulate_tile

#: The tile of the command-line tests with enough stars that every visit has three
#: bright isolated ones (the PSF-from-stars layouts need them).
SPEC = attrs.evolve(cli_spec(), n_stars=20, n_galaxies=2)


@pytest.fixture(scope="module")
def tile():
    return simulate_tile(SPEC)


def _canonical(path, tile, v):
    """dcr_dask's own layout: PSF-FWHM in the header, no PSF HDU."""
    return write_warp(
        path,
        tile.images[v],
        tile.masks[v],
        tile.variances[v],
        mask_planes=tile.mask_planes,
        wcs=tile.wcs,
        visit=tile.visits[v],
    )


def _era(path, tile, v, era, psf):
    return write_afw_warp(
        path,
        era=era,
        visit=tile.visits[v],
        image=tile.images[v],
        mask=tile.masks[v],
        variance=tile.variances[v],
        planes=tile.mask_planes,
        wcs=tile.wcs,
        psf=psf,
    )


# --------------------------------------------------------------------------- one file


@pytest.mark.parametrize("psf", ["archive", "stars"])
@pytest.mark.parametrize("era", ERAS)
def test_each_era_reads_like_the_canonical_file(tmp_path, tile, era, psf):
    v = 3  # airmass 1.7: the altitude matters
    reference = check_warp(_canonical(tmp_path / "canonical.fits", tile, v), need_psf=True)
    check = check_warp(_era(tmp_path / f"{era}.fits", tile, v, era, psf), need_psf=True)
    assert not check.errors, check.errors
    ref, got = reference.visit, check.visit
    assert got.visit == ref.visit and got.band == ref.band
    assert got.era_deg == pytest.approx(ref.era_deg, abs=1e-5)  # TIME-MID: 1 ms
    assert got.boresight_alt_deg == pytest.approx(ref.boresight_alt_deg, abs=1e-4)
    assert got.boresight_airmass == pytest.approx(ref.boresight_airmass, rel=1e-5)
    assert got.weather == ref.weather and got.observatory == ref.observatory
    assert check.layout.shape == reference.layout.shape
    assert check.layout.xy0 == reference.layout.xy0
    assert check.layout.hdu_lookup == {"current": "EXTNAME", "2020": "EXTTYPE"}.get(era, "position")
    assert check.layout.mask_bitpix == (16 if era == "old" else 32)
    assert check.layout.mask_planes == reference.layout.mask_planes
    centre = np.array([[0.0, 0.0], [95.0, 95.0], [40.0, 70.0]])
    np.testing.assert_allclose(
        check.layout.wcs.wcs_pix2world(centre, 0), reference.layout.wcs.wcs_pix2world(centre, 0)
    )
    section = (slice(0, 96), slice(0, 96))
    want = read_warp_pixels(reference.layout.filename, reference.layout, *section)
    have = read_warp_pixels(check.layout.filename, check.layout, *section)
    for a, b in zip(have, want, strict=True):
        np.testing.assert_array_equal(a, b)
    truth = tile.visits[v].psf_fwhm_px
    if psf == "archive":
        assert got.psf_fwhm_px == pytest.approx(truth, rel=1e-12)
        assert got.psf_source == "archive GaussianPsf"
    else:
        # The simulated stars are widened by the DCR within the band (12 % at airmass
        # 1.7), which the simulator's nominal PSF leaves out.
        assert got.psf_fwhm_px == pytest.approx(truth, rel=0.15)
        assert got.psf_source.startswith("measured from ")


def test_sources_of_the_visit_id_and_band(tmp_path, tile):
    visit = tile.visits[0]
    current = primary_header(visit, "current")
    info, errors = check_visit_header(current, "x.fits", filter_label=("g", "HSC-G"))
    assert not errors
    # The Butler's data id wins over IDNUM and the per-detector EXPID.
    assert info.visit == visit.visit and current["EXPID"] != visit.visit
    assert (info.visit_source, info.band_source) == (
        "LSST BUTLER DATAID VISIT",
        "archive FilterLabel band",
    )
    del current["LSST BUTLER DATAID VISIT"]
    info, _ = check_visit_header(current, "x.fits", filter_label=("g", "HSC-G"))
    assert (info.visit, info.visit_source) == (visit.visit, "IDNUM")
    current["HIERARCH LSST BUTLER DATAID BAND"] = "r"
    info, _ = check_visit_header(current, "x.fits", filter_label=("g", "HSC-G"))
    assert (info.band, info.band_source) == ("r", "LSST BUTLER DATAID BAND")
    del current["LSST BUTLER DATAID BAND"]
    info, _ = check_visit_header(current, "x.fits", filter_label=(None, "HSC-G"))
    assert (info.band, info.band_source) == ("HSC-G", "archive FilterLabel physical")
    current["HIERARCH LSST BUTLER DATAID PHYSICAL_FILTER"] = "HSC-G2"
    info, _ = check_visit_header(current, "x.fits")
    assert (info.band, info.band_source) == ("HSC-G2", "LSST BUTLER DATAID PHYSICAL_FILTER")
    del current["LSST BUTLER DATAID PHYSICAL_FILTER"]
    _, errors = check_visit_header(current, "x.fits")
    assert [e.keyword for e in errors] == ["FILTER/BAND"]
    assert "FilterLabel" in str(errors[0])


def test_altitude_below_the_horizon_is_an_error(tile):
    visit = tile.visits[0]
    header = primary_header(visit, "old")
    header["BORE-RA"] = (header["BORE-RA"] + 180.0) % 360.0  # transits 12 h later
    header["BORE-DEC"] = 60.0
    _, errors = check_visit_header(header, "x.fits")
    assert [e.keyword for e in errors] == ["BORE-ALT/BORE-AIRMASS"]
    assert "below the horizon" in str(errors[0])


def test_summary_stats_psf_sigma_when_the_psf_is_not_decoded(tmp_path, tile):
    """A PiffPsf is not decoded: psfSigma of ExposureSummaryStats gives the width."""
    path = _era(tmp_path / "piff.fits", tile, 0, "current", "archive")
    with fits.open(path, mode="update") as hdul:
        for hdu in hdul[4:]:
            if hdu.header.get("EXTNAME") == "GaussianPsf":
                hdu.header["EXTNAME"] = "PiffPsf"
                hdu.header["AR_NAME"] = "PiffPsf"
        index = hdul["ARCHIVE_INDEX"].data
        index["name"][index["name"] == "GaussianPsf"] = "PiffPsf"
    check = check_warp(path, need_psf=True)
    assert not check.errors
    assert check.visit.psf_source == "archive ExposureSummaryStats psfSigma"
    assert check.visit.psf_fwhm_px == pytest.approx(tile.visits[0].psf_fwhm_px, rel=1e-12)


def test_archive_tables_are_found_by_catalog_number(tile):
    tables, ids = archive_hdus(
        "2020", band="g", physical=None, psf_sigma=1.5, summary_psf_sigma=None
    )
    assert set(ids) == {"FILTER", "PSF"}
    assert [t.header["AR_CATN"] for t in tables] == [0, 1, 2]
    assert all("EXTNAME" not in t.header for t in tables)


# --------------------------------------------------------------------------- PSF from stars


def _star_field(model, fwhm, beta, seed, shape=(256, 256), n=40):
    rng = np.random.default_rng(seed)
    image = np.zeros(shape)
    for _ in range(n):
        y, x = rng.uniform(12, shape[0] - 12, 2)
        flux = 10 ** rng.uniform(3.5, 5.0)
        if model == "gaussian":
            s = fwhm / (2 * math.sqrt(2 * math.log(2)))
            profile = Gaussian2D(flux / (2 * math.pi * s * s), x, y, s, s)
        else:
            alpha = fwhm / (2 * math.sqrt(2 ** (1 / beta) - 1))
            profile = Moffat2D(flux * (beta - 1) / (math.pi * alpha**2), x, y, alpha, beta)
        image += discretize_model(
            profile, (0, shape[1]), (0, shape[0]), mode="oversample", factor=10
        )
    variance = 25.0 + image
    return image + 100.0 + rng.normal(size=shape) * np.sqrt(variance), variance


@pytest.mark.parametrize(
    ("model", "fwhm", "beta"),
    [
        ("gaussian", 2.5, None),
        ("gaussian", 4.5, None),
        ("moffat", 3.0, 2.5),
        ("moffat", 4.0, 3.5),
        ("moffat", 3.5, 4.8),
    ],
)
def test_stars_give_the_fwhm_of_gaussian_and_moffat_psfs(model, fwhm, beta):
    image, variance = _star_field(model, fwhm, beta, seed=int(fwhm * 10))
    measured = measure_psf_fwhm(image, variance=variance)
    assert measured is not None and measured.n_stars >= 5
    assert measured.fwhm_px == pytest.approx(fwhm, rel=0.05)


def test_masked_and_blended_stars_are_left_out():
    image, variance = _star_field("gaussian", 3.0, None, seed=5)
    bad = np.zeros(image.shape, bool)
    bad[:, :] = True
    assert measure_psf_fwhm(image, bad=bad, variance=variance) is None
    flat = np.random.default_rng(1).normal(100.0, 5.0, size=(128, 128))
    assert measure_psf_fwhm(flat, variance=np.full(flat.shape, 25.0)) is None


# --------------------------------------------------------------------------- full runs


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _config():
    config = DcrAssembleCoaddConfig()
    config.update(effectiveWavelength=478.0, bandwidth=147.0, subregionSize=[96, 96], maxNumIter=3)
    return config


def _fitted(tile):
    return [v for v in range(len(tile.visits)) if not tile.holdout[v]]


@pytest.fixture(scope="module")
def canonical_run(tile, client, tmp_path_factory):
    directory = tmp_path_factory.mktemp("canonical")
    paths = [_canonical(directory / f"v{v}.fits", tile, v) for v in _fitted(tile)]
    return dcr_dask.run(_config(), paths, output=directory / "coadd.zarr", client=client)


@pytest.mark.slow
@pytest.mark.parametrize("psf", ["archive", "stars"])
def test_a_run_on_every_era_matches_the_canonical_run(tile, client, canonical_run, tmp_path, psf):
    """Two visits in each era's layout, none with a PSF HDU."""
    paths = [
        _era(tmp_path / f"v{v}.fits", tile, v, ERAS[i % len(ERAS)], psf)
        for i, v in enumerate(_fitted(tile))
    ]
    result = dcr_dask.run(_config(), paths, output=tmp_path / "coadd.zarr", client=client)
    inputs = open_warps(paths, need_psf=True)
    sources = {v.psf_source.split(" ")[0] for v in visit_infos(inputs)}
    assert sources == ({"archive"} if psf == "archive" else {"measured"})
    reference = canonical_run
    scale = float(np.abs(reference["coadd"].values).max())
    difference = float(np.abs(result["coadd"].values - reference["coadd"].values).max())
    if psf == "archive":
        # sigma -> FWHM round trip: the same to float32 rounding.
        np.testing.assert_array_equal(result["mask"].values, reference["mask"].values)
        assert difference < 1e-5 * scale
    else:
        # The stars' FWHMs (widened by the DCR within the band, up to 15 %) set a wider
        # model PSF: the artifact masks and the coadd differ a little.
        assert difference < 0.05 * scale, (difference, scale)


def test_no_psf_anywhere_fails_before_any_work(tmp_path, tile):
    """No PSF-FWHM, no PSF HDU, no archive PSF and no stars: an error naming the file,
    raised before a cluster starts, and nothing written."""
    paths = [_era(tmp_path / f"v{v}.fits", tile, v, "current", "stars") for v in (0, 1)]
    empty = tmp_path / "v0.fits"
    with fits.open(empty, mode="update") as hdul:
        hdul[1].data[:] = np.random.default_rng(0).normal(0.0, 5.0, hdul[1].data.shape)
    output = tmp_path / "coadd.zarr"
    with pytest.raises(InputErrors) as info:
        dcr_dask.run(_config(), paths, output=output, client=None)
    assert str(empty) in str(info.value) and "no PSF" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v0.fits", "v1.fits"]


def test_no_psf_anywhere_fails_on_the_command_line_before_a_cluster_starts(
    tmp_path, tile, monkeypatch, capsys
):
    """``dcr-dask run``: the same error as one line, before any cluster starts."""
    from dcr_dask.cli import main
    from dcr_dask.running import pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("a cluster was started before the inputs were checked")

    monkeypatch.setattr(pipeline, "dask_client", refuse)
    paths = [_era(tmp_path / f"v{v}.fits", tile, v, "current", "stars") for v in (0, 1)]
    with fits.open(paths[0], mode="update") as hdul:
        hdul[1].data[:] = np.random.default_rng(0).normal(0.0, 5.0, hdul[1].data.shape)
    output = tmp_path / "coadd.zarr"
    argv = ["run", *map(str, paths), "--output", str(output)]
    argv += ["--set", "effectiveWavelength=478", "--set", "bandwidth=147"]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert str(paths[0]) in err and "no PSF" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v0.fits", "v1.fits"]
