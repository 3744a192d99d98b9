"""The simulator: reproducible, flux-conserving, and its DCR points the right way."""

import math

import numpy as np
import pytest

from dcr_dask.kernels.psf import FWHM_PER_SIGMA
from dcr_dask.physics import geometry
from dcr_dask.simulate import SimulationSpec, default_demo_spec, simulate_tile, write_simulation

SMALL = SimulationSpec(
    shape=(96, 96),
    airmasses=(1.01, 1.5, 2.0),
    holdout_airmasses=(1.9,),
    n_stars=8,
    n_galaxies=2,
    streak_visits=(1,),
    cosmic_rays_per_visit=3,
    seed=7,
)


@pytest.fixture(scope="module")
def tile():
    return simulate_tile(SMALL)


def test_same_seed_same_tile_other_seed_other_tile(tile):
    again = simulate_tile(SMALL)
    np.testing.assert_array_equal(again.images, tile.images)
    other = simulate_tile(SimulationSpec(**{**_spec_kwargs(SMALL), "seed": 8}))
    assert not np.array_equal(other.images, tile.images)


def _spec_kwargs(spec):
    import attrs

    return attrs.asdict(spec, recurse=False)


def test_metadata_follows_the_requested_airmasses_on_both_sides_of_the_meridian(tile):
    airmasses = [v.boresight_airmass for v in tile.visits]
    np.testing.assert_allclose(airmasses, [1.01, 1.5, 2.0, 1.9], rtol=1e-9)
    hour_angles = [
        geometry.hour_angle_deg(v.era_deg, v.observatory.longitude_deg, v.boresight_ra_deg)
        for v in tile.visits
    ]
    assert hour_angles[0] < 0 < hour_angles[1]
    assert tile.holdout.tolist() == [False, False, False, True]


def test_flux_is_conserved_between_subbands_and_visits(tile):
    # sources sit at least 8 px inside the tile, so every stamp is (nearly) whole
    truth_total = tile.true_subbands.sum()
    catalogue_total = sum(s.flux for s in tile.sources)
    np.testing.assert_allclose(truth_total, catalogue_total, rtol=2e-3)
    np.testing.assert_allclose(tile.true_images.sum(axis=(1, 2)), catalogue_total, rtol=2e-3)
    for source in tile.sources:
        np.testing.assert_allclose(sum(source.subband_flux), source.flux, rtol=1e-12)


def test_blue_light_moves_toward_the_zenith_more_than_red(tile):
    v = 2  # airmass 2
    angle = math.radians(
        geometry.visit_geometry(tile.visits[v], tile.wcs, 47.5, 47.5).zenith_direction_deg
    )
    toward_zenith = np.array([math.cos(angle), math.sin(angle)])
    blue = np.array([s.spectral_index for s in tile.sources[: SMALL.n_stars]]).argmin()
    red = np.array([s.spectral_index for s in tile.sources[: SMALL.n_stars]]).argmax()
    offsets = {}
    for name, index in (("blue", blue), ("red", red)):
        star = tile.sources[index]
        yc, xc = _centroid(tile.true_images[v], star.y, star.x)
        offsets[name] = np.dot([yc - star.y, xc - star.x], toward_zenith)
    assert offsets["blue"] > offsets["red"]
    # the bluest sub-band is shifted toward the zenith, the reddest away from it
    assert (
        np.dot(tile.shifts_px[v, 0], toward_zenith)
        > 0
        > np.dot(tile.shifts_px[v, -1], toward_zenith)
    )


def _centroid(image, y, x, radius=9):
    y0, x0 = round(y), round(x)
    stamp = image[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return y0 + (stamp * yy).sum() / stamp.sum(), x0 + (stamp * xx).sum() / stamp.sum()


def test_noise_matches_the_variance_plane_away_from_artifacts(tile):
    pull = (tile.images - tile.true_images) / np.sqrt(tile.variances)
    clean = ~tile.artifacts
    assert abs(pull[clean].std() - 1.0) < 0.02
    assert abs(pull[clean].mean()) < 0.02


def test_artifacts_are_plain_flux_and_recorded(tile):
    assert tile.artifacts[1].sum() > 100  # the streak
    assert all(tile.artifacts[v].sum() >= 1 for v in range(4))  # cosmic rays
    excess = (tile.images - tile.true_images)[tile.artifacts]
    assert np.median(excess) > 3 * SMALL.sky_sigma
    # nothing in the mask flags them: rejection must find them
    from dcr_dask.masks import run_layout

    flagged = run_layout().value(["CR", "CLIPPED", "BAD", "SAT"])
    assert not np.any(tile.masks[tile.artifacts] & flagged)


def test_bad_specs_are_rejected_with_the_reason():
    with pytest.raises(ValueError, match="below 1"):
        SimulationSpec(airmasses=(0.9,))
    with pytest.raises(ValueError, match="odd"):
        SimulationSpec(psf_stamp_size=24)
    with pytest.raises(ValueError, match="transit airmass"):
        simulate_tile(SimulationSpec(shape=(32, 32), airmasses=(1.0,), dec_deg=10.0))


def test_demo_spec_has_holdouts_and_artifacts():
    spec = default_demo_spec(shape=(64, 64))
    assert len(spec.airmasses) == 12 and len(spec.holdout_airmasses) == 2
    assert min(spec.airmasses) <= 1.05 and max(spec.airmasses) >= 2.0


def test_written_simulation_reads_back_to_the_same_arrays_and_metadata(tile, tmp_path):
    import attrs
    from astropy.io import fits

    from dcr_dask.io.warps import open_warps, visit_infos

    paths = write_simulation(tile, tmp_path)
    fitted = ~tile.holdout
    warps = open_warps(paths["warps"], chunks=(40, 40))
    np.testing.assert_array_equal(warps["image"].values, tile.images[fitted])
    np.testing.assert_array_equal(warps["variance"].values, tile.variances[fitted])
    np.testing.assert_array_equal(warps["mask"].values, tile.masks[fitted])
    for read, made in zip(visit_infos(warps), np.array(tile.visits)[fitted], strict=True):
        assert attrs.evolve(read, filename=None) == attrs.evolve(made, filename=None)
    with fits.open(paths["holdout"][0]) as hdus:
        np.testing.assert_array_equal(hdus["IMAGE"].data, tile.images[tile.holdout][0])
        np.testing.assert_allclose(hdus["PSF"].data.sum(), 1.0, rtol=1e-6)
    saved = np.load(paths["truth"])
    np.testing.assert_array_equal(saved["true_subbands"], tile.true_subbands)


# --------------------------------------------------------------------------- realistic PSFs


def _digest(tile):
    import hashlib

    digest = hashlib.sha256()
    for array in (tile.images, tile.variances, tile.masks, tile.psfs, tile.true_images):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(np.asarray(tile.psf_fwhm_px).tobytes())
    return digest.hexdigest()


def test_gaussian_default_output_is_unchanged_bit_for_bit(tile):
    # Computed with the simulator of commit 58bd27e, before the Moffat, chromatic
    # seeing and faint-star options (numpy 2); another platform may round differently.
    assert _digest(tile) == "c67fbac605310cefe143ad8b5d0bd9696cd206b9339b2e9ed327b290f8d35d22"
    np.testing.assert_array_equal(tile.psf_fwhm_px, tile.seeing_fwhm_px)
    np.testing.assert_array_equal([v.psf_fwhm_px for v in tile.visits], tile.seeing_fwhm_px)


# Visits at airmass 1 (the field transits the zenith) have no DCR.
ZENITH = {"dec_deg": -30.244639, "n_galaxies": 0, "spectral_index_range": (0.0, 0.0)}


def _moffat_spec(**overrides):
    settings = {
        "shape": (64, 64),
        "airmasses": (1.0, 1.3),
        "psf_profile": "moffat",
        "seeing_fwhm_px": (3.0, 5.0),
        "psf_stamp_size": 41,
        "n_stars": 1,
        **ZENITH,
        "seed": 6,  # the star sits 20 pixels or more inside the 64² tile
    }
    return SimulationSpec(**{**settings, **overrides})


def _moffat(r, fwhm, beta):
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return (beta - 1.0) / (np.pi * alpha**2) * (1.0 + (r / alpha) ** 2) ** -beta


def _band_average(spec, fwhm, yc, xc, size, exponent, beta, supersample=31):
    """Flat-spectrum band average of Moffat PSFs, pixel-integrated by supersampling."""
    from dcr_dask.physics.geometry import subfilter_edges_nm

    edges = subfilter_edges_nm(spec.effective_wavelength_nm, spec.bandwidth_nm, spec.n_subfilters)
    k = spec.wavelength_samples
    wavelengths = (edges[:, :1] + (edges[:, 1:] - edges[:, :1]) * (np.arange(k) + 0.5) / k).ravel()
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    yy = (np.arange(size)[:, None] + offsets).ravel() - yc
    xx = (np.arange(size)[:, None] + offsets).ravel() - xc
    r = np.hypot(yy[:, None], xx[None, :])
    image = np.zeros_like(r)
    for wavelength in wavelengths:
        scale = (wavelength / spec.effective_wavelength_nm) ** exponent
        image += _moffat(r, fwhm * scale, beta) / len(wavelengths)
    return image.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def test_moffat_psf_hdu_is_a_flat_spectrum_star_seen_at_the_zenith():
    # The star's noise-free image and the PSF HDU both match an independent
    # supersampled band average of Moffat profiles with chromatic seeing.
    spec = _moffat_spec(seeing_wavelength_exponent=-0.2, wavelength_samples=2)
    tile = simulate_tile(spec)
    assert np.all(tile.shifts_px[0] == 0.0)
    fwhm, beta = tile.seeing_fwhm_px[0], tile.psf_beta[0]
    assert spec.psf_beta_range[0] <= beta <= spec.psf_beta_range[1]
    star = tile.sources[0]
    y0, x0 = round(star.y) - 20, round(star.x) - 20
    expected = star.flux * _band_average(spec, fwhm, star.y - y0, star.x - x0, 41, -0.2, beta)
    seen = tile.true_images[0, y0 : y0 + 41, x0 : x0 + 41]
    np.testing.assert_allclose(seen, expected, atol=2e-4 * expected.max())
    stamp = _band_average(spec, fwhm, 20.0, 20.0, 41, -0.2, beta)
    np.testing.assert_allclose(tile.psf_stamp_flux[0], stamp.sum(), rtol=1e-5)
    np.testing.assert_allclose(tile.psfs[0], stamp / stamp.sum(), atol=2e-4 * stamp.max())
    # what the stamp leaves out is at most the light outside its inscribed circle
    alpha = fwhm * 1.05 / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))  # bluest sample
    assert 1.0 - (1.0 + (20 / alpha) ** 2) ** (1.0 - beta) < tile.psf_stamp_flux[0] < 1.0


def _half_maximum_width(stamp):
    """Half-maximum full width of a centred stamp, radially interpolated, pixels."""
    half = stamp.shape[0] // 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    radii, inverse = np.unique(np.round(np.hypot(yy, xx), 9).ravel(), return_inverse=True)
    profile = np.bincount(inverse, stamp.ravel()) / np.bincount(inverse)
    below = np.nonzero(profile < 0.5 * profile[0])[0][0]
    r0, r1, p0, p1 = radii[below - 1], radii[below], profile[below - 1], profile[below]
    return 2.0 * (r0 + (0.5 * profile[0] - p0) * (r1 - r0) / (p1 - p0))


def _second_moment_fwhm(psf):
    """FWHM of the Gaussian with the same unweighted second moments (pixel-corrected)."""
    psf = psf / psf.sum()
    half = psf.shape[0] // 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    second = 0.5 * ((psf * yy**2).sum() + (psf * xx**2).sum()) - 1.0 / 12.0
    return 2.0 * np.sqrt(2.0 * np.log(2.0)) * np.sqrt(second)


@pytest.mark.parametrize("exponent", [0.0, -0.2])
def test_moffat_half_maximum_width_is_the_psf_fwhm_keyword_and_wings_inflate_moments(exponent):
    psf_fwhm_px = _second_moment_fwhm

    # Wide PSFs sampled finely, so that the pixels do not widen the half maximum.
    spec = _moffat_spec(
        shape=(32, 32), seeing_fwhm_px=(16.0, 20.0), psf_stamp_size=121,
        seeing_wavelength_exponent=exponent,
    )  # fmt: skip
    tile = simulate_tile(spec)
    for v in range(2):
        width = _half_maximum_width(tile.psfs[v])
        np.testing.assert_allclose(width, tile.psf_fwhm_px[v], rtol=0.02)
        if exponent == 0.0:
            assert tile.psf_fwhm_px[v] == tile.seeing_fwhm_px[v]
        assert psf_fwhm_px(tile.psfs[v]) > 1.2 * width
    # at the usual sampling the pixels widen the measured half maximum
    coarse = simulate_tile(_moffat_spec(seeing_wavelength_exponent=exponent))
    for v in range(2):
        width = _half_maximum_width(coarse.psfs[v])
        assert coarse.psf_fwhm_px[v] < width < 1.06 * coarse.psf_fwhm_px[v]
        assert psf_fwhm_px(coarse.psfs[v]) > 1.2 * width


def test_chromatic_seeing_widens_blue_light():
    from dcr_dask.kernels.psf import psf_fwhm_px

    def width(exponent, spectral_index):
        # the same star (same seed), at the zenith, with another spectrum
        spec = _moffat_spec(
            spectral_index_range=(spectral_index, spectral_index),
            seeing_wavelength_exponent=exponent,
        )
        tile = simulate_tile(spec)
        y, x = round(tile.sources[0].y), round(tile.sources[0].x)
        return psf_fwhm_px(tile.true_images[0, y - 20 : y + 21, x - 20 : x + 21])

    assert width(-0.2, -3.0) > 1.005 * width(-0.2, 2.0)
    np.testing.assert_allclose(width(0.0, -3.0), width(0.0, 2.0), rtol=1e-6)


def test_without_a_detected_plane_the_masks_do_not_name_it(tmp_path):
    from astropy.io import fits

    from dcr_dask.io.warps import mask_planes, open_warps

    spec = SimulationSpec(**{**_spec_kwargs(SMALL), "detected_plane": False})
    tile = simulate_tile(spec)
    assert "DETECTED" not in tile.mask_planes
    assert not np.any(tile.masks & (1 << 5))  # afw's DETECTED bit
    paths = write_simulation(tile, tmp_path)
    with fits.open(paths["warps"][0]) as hdus:
        assert "MP_DETECTED" not in hdus["MASK"].header
        assert "MP_BAD" in hdus["MASK"].header
    warps = open_warps(paths["warps"])
    assert "DETECTED" in mask_planes(warps)  # the run layout still has the plane
    assert not np.any(warps["mask"].values & mask_planes(warps).value(["DETECTED"]))


def test_faint_stars_reach_the_single_visit_detection_limit():
    from dcr_dask.simulate import point_source_flux_at_snr

    limit = point_source_flux_at_snr(5.0, 5.0, 4.0, profile="moffat", beta=3.5)
    spec = _moffat_spec(
        shape=(96, 96), airmasses=(1.1, 1.3, 1.5, 1.7, 1.9), n_stars=4,
        n_faint_stars=200, faint_flux_range=(limit, 2.0e3), seeing_fwhm_px=(3.5, 4.5),
        psf_beta_range=(3.5, 3.5), psf_stamp_size=31,
    )  # fmt: skip
    tile = simulate_tile(spec)
    faint = np.array([s.flux for s in tile.sources[spec.n_stars :]])
    assert faint.size == 200 and np.all(faint >= limit) and np.all(faint <= 2.0e3)
    assert np.sum(faint < np.sqrt(limit * 2.0e3)) > 2 * np.sum(faint >= np.sqrt(limit * 2.0e3))
    # PSF-weighted S/N of the faintest star in each visit, from the PSF HDU
    snr = faint.min() * np.sqrt((tile.psfs.astype(float) ** 2).sum(axis=(1, 2))) / spec.sky_sigma
    assert 4.0 < np.median(snr) < 5.5


def test_realistic_spec_renders_and_reads_back(tmp_path):
    from astropy.io import fits

    from dcr_dask.io.warps import open_warps
    from dcr_dask.simulate import realistic_spec

    spec = realistic_spec(shape=(64, 64), seed=2)
    assert spec.psf_profile == "moffat" and spec.seeing_wavelength_exponent == -0.2
    assert spec.airmasses == default_demo_spec().airmasses
    assert spec.holdout_airmasses == default_demo_spec().holdout_airmasses
    assert not spec.detected_plane and spec.n_faint_stars > 0 and spec.streak_visits
    red = realistic_spec(band="r")
    assert red.effective_wavelength_nm == 622.0 and red.bandwidth_nm == 140.0
    assert len(red.airmasses) == 16 and max(red.airmasses + red.holdout_airmasses) <= 1.8
    for band, wavelength in (("i", 756.0), ("z", 868.0)):
        redder = realistic_spec(band=band)
        assert redder.effective_wavelength_nm == wavelength
        assert redder.airmasses == red.airmasses
    with pytest.raises(ValueError, match="band 'y'"):
        realistic_spec(band="y")
    tile = simulate_tile(spec)
    assert np.all(tile.psf_stamp_flux > 0.99)
    paths = write_simulation(tile, tmp_path)
    warps = open_warps(paths["warps"], chunks=(32, 32))
    fitted = ~tile.holdout
    np.testing.assert_array_equal(warps["image"].values, tile.images[fitted])
    np.testing.assert_allclose(warps["psf_fwhm_px"].values, tile.psf_fwhm_px[fitted])
    with fits.open(paths["warps"][0]) as hdus:
        assert hdus["PSF"].data.shape == (55, 55)
        assert hdus[0].header["PSF-FWHM"] == pytest.approx(tile.psf_fwhm_px[0])


def test_fourier_renderer_matches_exact_gaussian_pixel_integrals():
    # The transfer-function renderer (Moffat path) given a Gaussian transfer
    # function must reproduce the separable erf renderer: pixel response,
    # aliases, sub-pixel phases, DCR shifts and Gaussian galaxies.
    from dcr_dask.kernels.psf import FWHM_PER_SIGMA as _FWHM_PER_SIGMA
    from dcr_dask.simulate import _render, _render_fourier

    rng = np.random.default_rng(4)
    y, x = rng.uniform(8, 40, 5), rng.uniform(8, 52, 5)
    sigma = np.array([0.0, 0.0, 0.0, 1.3, 2.0])
    flux = rng.uniform(100, 1000, (5, 3))
    fwhm = np.array([[2.0, 2.2, 2.5], [3.5, 3.7, 4.0]])
    shifts = rng.normal(0.0, 0.7, (2, 3, 2))
    images = _render_fourier(
        (48, 60), y, x, sigma, flux, fwhm, np.full(2, np.nan), shifts, "gaussian"
    )
    for v in range(2):
        exact = _render(
            (48, 60),
            np.repeat(y, 3) + np.tile(shifts[v, :, 0], 5),
            np.repeat(x, 3) + np.tile(shifts[v, :, 1], 5),
            flux.reshape(-1),
            np.hypot(fwhm[v][None, :] / _FWHM_PER_SIGMA, sigma[:, None]).reshape(-1),
        )
        np.testing.assert_allclose(images[v], exact, atol=1e-8 * exact.max())


def _assert_same_files(first, second):
    """Two simulation folders hold the same files: FITS HDUs, npz members, JSON."""
    import json

    from astropy.io import fits

    names = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert len([n for n in names if n.suffix == ".fits"]) > 1
    for name in names:
        if name.suffix == ".fits":
            with fits.open(first / name) as one, fits.open(second / name) as two:
                assert [h.name for h in one] == [h.name for h in two]
                for a, b in zip(one, two, strict=True):
                    assert a.header == b.header
                    if a.data is not None:
                        assert a.data.dtype == b.data.dtype
                        np.testing.assert_array_equal(a.data, b.data)
        elif name.suffix == ".npz":
            with np.load(first / name) as one, np.load(second / name) as two:
                assert sorted(one.files) == sorted(two.files)
                for key in one.files:
                    assert one[key].dtype == two[key].dtype
                    np.testing.assert_array_equal(one[key], two[key])
        else:
            assert json.loads((first / name).read_text()) == json.loads((second / name).read_text())


@pytest.mark.parametrize("profile", ["gaussian", "moffat"])
def test_a_spec_written_visit_by_visit_gives_the_files_of_the_tile_in_memory(
    profile, tmp_path, monkeypatch
):
    import dcr_dask.simulate as simulate

    # several Fourier blocks, partial ones at the edges, so the streamed stack is written in parts
    monkeypatch.setattr(simulate, "_RENDER_BLOCK", 40)
    spec = SimulationSpec(
        **{**_spec_kwargs(SMALL), "shape": (96, 72), "saturation": 2000.0, "bad_columns": 2}
    )
    if profile == "moffat":
        spec = _moffat_spec(**{**_spec_kwargs(spec), "psf_profile": "moffat"})
    tile = simulate_tile(spec)
    write_simulation(tile, tmp_path / "memory")
    paths = write_simulation(spec, tmp_path / "streamed")
    _assert_same_files(tmp_path / "memory", tmp_path / "streamed")
    assert sorted(p.name for p in (tmp_path / "streamed").iterdir()) == [
        "holdout", "truth.json", "truth.npz", "warps",
    ]  # fmt: skip
    with np.load(paths["truth"]) as truth:
        np.testing.assert_array_equal(truth["true_images"], tile.true_images)
        np.testing.assert_array_equal(truth["artifacts"], tile.artifacts)
        np.testing.assert_array_equal(truth["true_subbands"], tile.true_subbands)


@pytest.mark.parametrize("profile", ["gaussian", "moffat"])
def test_fourier_blocks_match_the_whole_tile_rendering(profile, monkeypatch):
    import dcr_dask.simulate as simulate

    rng = np.random.default_rng(9)
    n = 60
    catalogue = (
        rng.uniform(-3, 99, n),  # some sources just off the tile
        rng.uniform(-3, 123, n),
        np.where(np.arange(n) < 50, 0.0, rng.uniform(1.0, 2.5, n)),
        rng.uniform(100, 1e4, (n, 3)),
    )
    fwhm = np.array([[3.0, 3.2, 3.5], [4.5, 4.7, 5.0]])
    beta = np.array([2.5, 4.0])
    shifts = rng.normal(0.0, 1.5, (2, 3, 2))
    # the whole tile on a grid padded so far that no light wraps onto it
    unwrapped = simulate._render_fourier(
        (96, 120), *catalogue, fwhm, beta, shifts, profile, pad=300
    )
    monkeypatch.setattr(simulate, "_RENDER_BLOCK", 32)
    blocks = np.full(unwrapped.shape, np.nan)
    simulate._render_fourier_blocks((96, 120), catalogue, fwhm, beta, shifts, profile, blocks)
    # each block leaves out light below _WRAP_LEVEL = 1e-6 of a peak
    np.testing.assert_allclose(blocks, unwrapped, rtol=0, atol=2e-6 * unwrapped.max())
    if profile == "gaussian":  # and both are the exact pixel integrals
        y, x, sigma, flux = catalogue
        for v in range(2):
            exact = simulate._render(
                (96, 120),
                np.repeat(y, 3) + np.tile(shifts[v, :, 0], n),
                np.repeat(x, 3) + np.tile(shifts[v, :, 1], n),
                flux.reshape(-1),
                np.hypot(fwhm[v][None, :] / FWHM_PER_SIGMA, sigma[:, None]).reshape(-1),
            )
            np.testing.assert_allclose(blocks[v], exact, rtol=0, atol=2e-6 * exact.max())


#: Measures the peak memory of writing a spec streamed and simulated in memory, in a
#: process of its own: tracemalloc counts every thread's allocations, and threads that
#: earlier tests leave in the test process (Dask's, distributed's) allocate at any time.
_WRITE_PEAKS = """
import json, sys, tracemalloc
from pathlib import Path
import attrs
import numpy as np
sys.path.insert(0, sys.argv[2])
from test_simulate import SMALL
from dcr_dask.simulate import simulate_tile, write_simulation
tmp = Path(sys.argv[1])
spec = attrs.evolve(SMALL, shape=(128, 128), airmasses=tuple(np.linspace(1.01, 2, 24)))
write_simulation(attrs.evolve(spec, shape=(32, 32)), tmp / "warm-up")  # astropy's tables
float64_visit = 8 * 128 * 128
peaks = {}
for name, tile in (("streamed", lambda: spec), ("in memory", lambda: simulate_tile(spec))):
    tracemalloc.start()
    try:
        write_simulation(tile(), tmp / name)
        peaks[name] = tracemalloc.get_traced_memory()[1] / float64_visit
    finally:
        tracemalloc.stop()
print(json.dumps(peaks))
"""


def test_writing_a_spec_holds_about_one_visit_in_memory(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, "-c", _WRITE_PEAKS, str(tmp_path), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    peaks = json.loads(done.stdout.strip().splitlines()[-1])
    # streamed: a visit's float64 temporaries and the float32 visit being written (about
    # 11 float64 visits); in memory, the 25 visits take 25 × 17 bytes a pixel (images,
    # variances, masks, noise-free images, artifacts), 53 float64 visits
    assert peaks["streamed"] < 16 < 50 < peaks["in memory"], peaks


def test_the_fourier_renderer_draws_a_large_tile_block_by_block_onto_disk(tmp_path, monkeypatch):
    import dcr_dask.simulate as simulate

    monkeypatch.setattr(simulate, "_RENDER_BLOCK", 48)
    rendered, stacks = [], []
    render_fourier, render_blocks = simulate._render_fourier, simulate._render_fourier_blocks

    def fourier(shape, *args, **kwargs):
        rendered.append(shape)
        return render_fourier(shape, *args, **kwargs)

    def blocks(*args):
        stacks.append(args[-1])
        return render_blocks(*args)

    monkeypatch.setattr(simulate, "_render_fourier", fourier)
    monkeypatch.setattr(simulate, "_render_fourier_blocks", blocks)
    spec = _moffat_spec(shape=(96, 80), airmasses=(1.0, 1.3, 1.6), psf_stamp_size=25)
    paths = write_simulation(spec, tmp_path)
    stamps = (spec.psf_stamp_size, spec.psf_stamp_size)
    assert sorted(set(rendered)) == sorted({stamps, (48, 48), (48, 32)})
    assert [type(s).__name__ for s in stacks] == ["_DiskStack"]
    assert not stacks[0].path.exists()  # the scratch folder is gone
    assert len(paths["warps"]) == 3
