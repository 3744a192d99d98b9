"""Cosmic rays on the direct warps (``doFindCosmicRays``): the sharpness kernel on stars
that GalSim draws (Kolmogorov, off-centre, up to 10^4 sigma), its graph on chunks, and
the config that drives it."""

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from dcr_dask.config import DcrAssembleCoaddConfig, reference_overrides
from dcr_dask.errors import ConfigError
from dcr_dask.graph.cosmic_rays import CosmicRaySettings, find_cosmic_rays, visit_contrasts
from dcr_dask.kernels import cosmic_rays as kernels
from dcr_dask.masks import MaskPlanes
from dcr_dask.settings import cosmic_ray_settings

galsim = pytest.importorskip("galsim")

SHAPE = (96, 96)
SKY_SIGMA = 10.0


def _kolmogorov(fwhm_px: float):
    return galsim.Kolmogorov(fwhm=fwhm_px)  # pixel scale 1


def _stamp(fwhm_px: float, size: int = 25) -> np.ndarray:
    return _kolmogorov(fwhm_px).drawImage(nx=size, ny=size, scale=1.0).array


def _scene(seed: int, fwhm_px: float):
    """A noisy image of Kolmogorov stars (peaks 5 to 10^4 sigma, any sub-pixel centre)
    and, separately, the cosmic rays added to it: single pixels, lines along rows,
    columns and diagonals, on empty sky, on stars and at the edges."""
    rng = np.random.default_rng(seed)
    image = galsim.ImageF(SHAPE[1], SHAPE[0], scale=1.0)
    psf = _kolmogorov(fwhm_px)
    peak_per_flux = _stamp(fwhm_px).max()
    stars = []
    for _ in range(25):
        x, y = rng.uniform(6, SHAPE[1] - 6), rng.uniform(6, SHAPE[0] - 6)
        peak = SKY_SIGMA * 10 ** rng.uniform(0.7, 4.0)
        psf.withFlux(peak / peak_per_flux).drawImage(
            image=image, center=galsim.PositionD(x + 1, y + 1), add_to_image=True
        )
        stars.append((y, x, peak))
    truth = image.array.astype(np.float64)
    variance = SKY_SIGMA**2 + np.maximum(truth, 0.0)  # gain 1
    noisy = truth + rng.normal(size=SHAPE) * np.sqrt(variance)
    rays = np.zeros(SHAPE, dtype=bool)
    amplitude = np.zeros(SHAPE)
    # single pixels and three-pixel lines along rows, columns and diagonals, moved to where
    # the sky is empty (a cosmic ray on a star as bright as itself is the other test's)
    shapes = [[(0, 0)], [(0, 0), (0, 1), (0, 2)], [(0, 0), (1, 0), (2, 0)]]
    shapes += [[(0, 0), (1, 1), (2, 2)], [(0, 2), (1, 1), (2, 0)]]
    empty = ndimage.maximum_filter(truth, size=7) < 2 * SKY_SIGMA
    tracks = []
    for pixels in shapes * 2:
        y, x = rng.choice(np.argwhere(empty[1 : SHAPE[0] - 3, 1 : SHAPE[1] - 3])) + 1
        tracks.append([(y + dy, x + dx) for dy, dx in pixels])
    # and single pixels on each edge, not in a corner (no direction has two neighbours there)
    interior = np.zeros(SHAPE, dtype=bool)
    interior[1:-1, :] = interior[:, 1:-1] = True
    interior[[0, 0, -1, -1], [0, -1, 0, -1]] = False
    for y, x in ((0, None), (SHAPE[0] - 1, None), (None, 0), (None, SHAPE[1] - 1)):
        free = np.argwhere(empty & interior)
        free = free[free[:, 0] == y] if y is not None else free[free[:, 1] == x]
        if len(free):
            tracks.append([tuple(free[rng.integers(len(free))])])
    for track in tracks:
        for y, x in track:
            rays[y, x] = True
            amplitude[y, x] = SKY_SIGMA * rng.uniform(40, 120)
    # and one on the peak of each star of 20-200 sigma, three times as bright as it (on
    # a star as bright as itself a cosmic ray is within what a sharper PSF could give, and
    # is kept: the margin of cosmicRayCond3Fac2)
    peaks = (truth == ndimage.maximum_filter(truth, size=5)) & (truth > 20 * SKY_SIGMA)
    for y, x in np.argwhere(peaks & (truth < 200 * SKY_SIGMA)):
        rays[y, x] = True
        amplitude[y, x] = 3.0 * truth[y, x]
    return noisy + amplitude, noisy, variance, rays, truth


def _found(image, variance, fwhm_px, **kwargs):
    contrast = kernels.psf_contrast(_stamp(fwhm_px))[None]
    valid = np.ones((1, *SHAPE), dtype=bool)
    return kernels.find_cosmic_rays(image[None], variance[None], valid, contrast, **kwargs)[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("fwhm_px", [2.5, 4.0, 6.0])
def test_cosmic_rays_are_found_and_stars_are_left_alone(seed, fwhm_px):
    with_rays, without, variance, rays, _ = _scene(seed, fwhm_px)
    found = _found(with_rays, variance, fwhm_px)
    assert found[rays].all(), f"missed {np.argwhere(rays & ~found).tolist()}"
    near = np.zeros(SHAPE, dtype=bool)
    for y, x in np.argwhere(rays):
        near[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3] = True
    assert not found[~near].any(), f"stars flagged at {np.argwhere(found & ~near).tolist()}"
    # the same stars without the cosmic rays: nothing, however bright
    assert not _found(without, variance, fwhm_px).any()


def test_a_psf_broader_than_the_stars_is_covered_by_the_margin():
    """cosmicRayCond3Fac2 = 0.6: stars 15 % sharper than the PSF model are not flagged."""
    _, without, variance, _, _ = _scene(4, 3.0)
    contrast = kernels.psf_contrast(_stamp(3.0 * 1.15))[None]
    valid = np.ones((1, *SHAPE), dtype=bool)
    assert not kernels.find_cosmic_rays(without[None], variance[None], valid, contrast).any()


def test_the_sharpness_test_decides_not_the_brightness():
    """A star at 10^4 sigma is kept; the same peak with dark neighbours is a cosmic ray;
    a cosmic ray below minSigma is not."""
    stamp = _stamp(3.0, size=21)
    star = np.zeros((21, 21))
    star += stamp / stamp.max() * 1e5
    variance = np.full_like(star, SKY_SIGMA**2) + star
    contrast = kernels.psf_contrast(stamp)[None]
    valid = np.ones((1, 21, 21), dtype=bool)
    assert not kernels.find_cosmic_rays(star[None], variance[None], valid, contrast).any()
    spike = np.zeros((21, 21))
    spike[10, 10] = 1e5
    found = kernels.find_cosmic_rays(spike[None], variance[None], valid, contrast, grow=0)[0]
    assert found.sum() == 1 and found[10, 10]
    faint = np.zeros((21, 21))
    faint[10, 10] = 8.0 * SKY_SIGMA
    flat = np.full((1, 21, 21), SKY_SIGMA**2)
    assert kernels.find_cosmic_rays(faint[None], flat, valid, contrast)[0, 10, 10]
    assert not kernels.find_cosmic_rays(faint[None], flat, valid, contrast, min_sigma=9.0).any()


def test_growth_and_invalid_pixels():
    image = np.zeros((1, 15, 15))
    image[0, 7, 7] = 1000.0
    variance = np.ones_like(image)
    contrast = kernels.gaussian_contrast(1.5)[None]
    valid = np.ones_like(image, dtype=bool)
    grown = kernels.find_cosmic_rays(image, variance, valid, contrast, grow=1)[0]
    assert grown.sum() == 9 and grown[6:9, 6:9].all()
    twice = kernels.find_cosmic_rays(image, variance, valid, contrast, grow=2)[0]
    assert twice.sum() == 25
    # growth stays within the valid pixels; an invalid pixel is never tested
    valid[0, 6, 6] = False
    grown = kernels.find_cosmic_rays(image, variance, valid, contrast, grow=1)[0]
    assert grown.sum() == 8 and not grown[6, 6]
    valid[0, 7, 7] = False
    assert not kernels.find_cosmic_rays(image, variance, valid, contrast).any()
    # invalid neighbours are not read as dark: a pixel whose only valid neighbours in every
    # direction are as bright as a star's allow is kept
    star = np.zeros((1, 15, 15))
    yy, xx = np.mgrid[-7:8, -7:8]
    stamp = np.exp(-0.5 * (yy**2 + xx**2))
    star[0] = 1e4 * stamp
    valid = np.ones_like(star, dtype=bool)
    valid[0, 7, 8] = valid[0, 8, 7] = valid[0, 8, 8] = valid[0, 8, 6] = False
    contrast = kernels.gaussian_contrast(1.0)[None]
    assert not kernels.find_cosmic_rays(star, np.ones_like(star), valid, contrast).any()


def test_psf_contrast():
    sigma = 1.7
    half = 12
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    gaussian = np.exp(-(yy**2 + xx**2) / (2 * sigma**2))
    np.testing.assert_allclose(kernels.psf_contrast(gaussian), kernels.gaussian_contrast(sigma))
    # sharper PSFs have larger contrasts, diagonals more than the axes
    broad, sharp = kernels.psf_contrast(_stamp(5.0)), kernels.psf_contrast(_stamp(2.5))
    assert np.all(sharp > broad) and np.all(broad > 1.0)
    assert sharp[2] > sharp[0]
    delta = np.zeros((5, 5))
    delta[2, 2] = 1.0
    assert np.isinf(kernels.psf_contrast(delta)).all()
    with pytest.raises(ValueError, match="on its border"):
        kernels.psf_contrast(np.eye(5)[::-1] * np.arange(5))
    with pytest.raises(ValueError, match="no positive peak"):
        kernels.psf_contrast(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="expected"):
        kernels.psf_contrast(np.zeros(5))
    with pytest.raises(ValueError, match="sigma_px"):
        kernels.gaussian_contrast(0.0)
    with pytest.raises(ValueError, match="contrast has shape"):
        kernels.find_cosmic_rays(
            np.zeros((2, 5, 5)), np.ones((2, 5, 5)), np.ones((2, 5, 5), bool), np.ones((1, 4))
        )


# --------------------------------------------------------------------------- the graph


def _warps(n_visits: int = 3, chunk: int = 24, with_psf: bool = True):
    planes = MaskPlanes({"NO_DATA": 8, "SAT": 1})
    images, variances, truths = [], [], []
    for seed in range(n_visits):
        with_rays, _, variance, rays, _ = _scene(10 + seed, 3.0)
        # cosmic rays on the chunk boundaries too
        rng = np.random.default_rng(seed)
        empty = ndimage.maximum_filter(with_rays - np.where(rays, with_rays, 0), size=5)
        empty = np.argwhere(empty < 4 * SKY_SIGMA)
        for axis, line in ((0, chunk - 1), (0, chunk), (1, 2 * chunk - 1), (1, chunk)):
            free = empty[empty[:, axis] == line]
            y, x = free[rng.integers(len(free))]
            with_rays[y, x] += 80 * SKY_SIGMA
            rays[y, x] = True
        images.append(with_rays)
        variances.append(variance)
        truths.append(rays)
    mask = np.zeros((n_visits, *SHAPE), dtype=np.int32)
    mask[0, 10, 10] = 1 << 8  # a cosmic ray under NO_DATA is not reported
    data = {
        "image": (("visit", "y", "x"), np.array(images, np.float32)),
        "variance": (("visit", "y", "x"), np.array(variances, np.float32)),
        "mask": (("visit", "y", "x"), mask),
    }
    if with_psf:
        data["psf"] = (("visit", "psf_y", "psf_x"), np.array([_stamp(3.0)] * n_visits))
    warps = xr.Dataset(data, coords={"visit": np.arange(100, 100 + n_visits)})
    warps.attrs["mask_planes"] = planes.bits
    chunks = {"visit": 1, "y": chunk, "x": chunk}
    return warps.chunk(chunks), np.array(truths), mask


def test_the_graph_is_lazy_and_exact_on_every_chunk():
    warps, rays, mask = _warps()
    settings = CosmicRaySettings(bad_mask_planes=("NO_DATA",))
    found = find_cosmic_rays(warps, settings, fallback_sigma_px=1.3)
    assert isinstance(found.data, da.Array)
    assert found.data.chunks == warps["image"].data.chunks
    result = found.values
    valid = (mask & (1 << 8)) == 0
    whole = kernels.find_cosmic_rays(
        warps["image"].values,
        warps["variance"].values,
        valid,
        visit_contrasts(warps, 1.3),
    )
    np.testing.assert_array_equal(result, whole)
    assert result[rays & valid].all()
    assert not result[0, 10, 10]
    assert found.dims == ("visit", "y", "x")
    np.testing.assert_array_equal(found["visit"].values, warps["visit"].values)


def test_without_psf_stamps_a_gaussian_of_the_median_sigma_is_used():
    warps, _, _ = _warps(n_visits=1, with_psf=False)
    np.testing.assert_allclose(visit_contrasts(warps, 1.3), kernels.gaussian_contrast(1.3)[None])
    # an unusable stamp falls back too
    warps, _, _ = _warps(n_visits=2)
    warps["psf"][1] = 0.0
    contrast = visit_contrasts(warps, 2.0)
    np.testing.assert_allclose(contrast[1], kernels.gaussian_contrast(2.0))
    np.testing.assert_allclose(contrast[0], kernels.psf_contrast(_stamp(3.0)))


def test_disabled_finds_nothing_and_variance_scale_is_checked():
    warps, _, _ = _warps(n_visits=2)
    off = find_cosmic_rays(warps, CosmicRaySettings(enabled=False), 1.3)
    assert not off.values.any()
    with pytest.raises(ValueError, match="variance_scale has shape"):
        find_cosmic_rays(warps, CosmicRaySettings(), 1.3, variance_scale=np.ones(3))
    # a larger variance hides the faintest: never more pixels than without
    scaled = find_cosmic_rays(warps, CosmicRaySettings(), 1.3, variance_scale=np.full(2, 4.0))
    plain = find_cosmic_rays(warps, CosmicRaySettings(), 1.3)
    assert scaled.values.sum() <= plain.values.sum()


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("min_sigma", 0.0, "cosmicRayMinSigma"),
        ("cond3_fac", -1.0, "cosmicRayCond3Fac"),
        ("cond3_fac2", 0.0, "cosmicRayCond3Fac2"),
        ("cond3_fac2", 1.5, "cosmicRayCond3Fac2"),
        ("grow", -1, "cosmicRayGrow"),
    ],
)
def test_settings_are_checked(field, value, match):
    with pytest.raises(ValueError, match=match):
        CosmicRaySettings(**{field: value})


# --------------------------------------------------------------------------- the config


def test_the_config_drives_the_search_and_the_reference_preset_turns_it_off():
    config = DcrAssembleCoaddConfig()
    settings = cosmic_ray_settings(config)
    assert settings == CosmicRaySettings(
        enabled=True,
        min_sigma=6.0,
        cond3_fac=2.5,
        cond3_fac2=0.6,
        grow=1,
        bad_mask_planes=tuple(config.badMaskPlanes),
    )
    config.update(cosmicRayMinSigma=8.0, cosmicRayCond3Fac2=0.5, cosmicRayGrow=0)
    settings = cosmic_ray_settings(config)
    assert (settings.min_sigma, settings.cond3_fac2, settings.grow) == (8.0, 0.5, 0)
    config.update(**reference_overrides())
    assert not cosmic_ray_settings(config).enabled


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cosmicRayMinSigma", 0.0),
        ("cosmicRayCond3Fac", -0.5),
        ("cosmicRayCond3Fac2", 0.0),
        ("cosmicRayCond3Fac2", 1.2),
        ("cosmicRayGrow", -1),
    ],
)
def test_bad_values_are_refused_by_name(field, value):
    config = DcrAssembleCoaddConfig()
    setattr(config, field, value)
    with pytest.raises(ConfigError, match=field):
        config.validate()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("doFindCosmicRays", False),
        ("cosmicRayMinSigma", 60.0),
        ("cosmicRayCond3Fac", 60.0),
        ("cosmicRayCond3Fac2", 0.2),
        ("cosmicRayGrow", 0),
    ],
)
def test_each_field_changes_what_is_found(field, value):
    """Through the config, as the pipeline reads it (running.pipeline._with_cosmic_rays)."""
    warps, _, _ = _warps(n_visits=1)
    config = DcrAssembleCoaddConfig()
    default = find_cosmic_rays(warps, cosmic_ray_settings(config), 1.3).values
    setattr(config, field, value)
    config.validate()
    changed = find_cosmic_rays(warps, cosmic_ray_settings(config), 1.3).values
    assert default.sum() > 0
    assert changed.sum() < default.sum()
