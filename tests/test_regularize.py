"""Regularization kernels: clamps hit extended outliers only, colourless and smoothly
coloured models pass unchanged, and the noise level matches a direct loop."""

import numpy as np
import pytest
from scipy import ndimage

from dcr_dask.kernels.regularize import (
    _opening_structure,
    _surviving,
    apply_thresholds,
    background_noise,
    regularize_frequency,
    regularize_iterations,
)


def _gaussian(shape, yc, xc, sigma):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.exp(-0.5 * ((yy - yc) ** 2 + (xx - xc) ** 2) / sigma**2)


def _sources(shape=(42, 40), seed=5, n_planes=3, noise=5.0, flux_range=2.0):
    """Planes with the same point sources at different fluxes, plus uniform noise."""
    rng = np.random.default_rng(seed)
    positions = rng.uniform(6, min(shape) - 6, size=(5, 2))
    planes = []
    for _ in range(n_planes):
        plane = rng.uniform(0, noise, size=shape)
        for yc, xc in positions:
            plane += rng.uniform(1, flux_range) * 20 * noise * _gaussian(shape, yc, xc, 2.0)
        planes.append(plane)
    return np.array(planes)


def test_isolated_outliers_are_left_alone_and_extended_ones_clamped():
    image = np.ones((30, 30))
    image[5, 5] = 10.0  # one noisy pixel
    yy, xx = np.mgrid[0:30, 0:30]
    excess = np.abs(yy - 18) + np.abs(xx - 18) <= 3  # an extended excess: a diamond of radius 3
    image[excess] = 10.0
    image[3:5, 20:22] = -5.0  # a small deficit, narrower than the opening
    deficit = np.abs(yy - 25) + np.abs(xx - 6) <= 2  # an extended deficit: exactly the structure
    image[deficit] = -5.0
    out = apply_thresholds(image, np.zeros_like(image), np.full_like(image, 2.0), width=2)
    assert out[5, 5] == 10.0
    assert np.all(out[excess] == 2.0)
    assert np.all(out[3:5, 20:22] == -5.0)
    assert np.all(out[deficit] == 0.0)
    untouched = ~(excess | deficit)
    np.testing.assert_array_equal(out[untouched], image[untouched])


def test_thresholds_clamp_exactly_the_pixels_surviving_an_iterated_opening():
    rng = np.random.default_rng(1)
    image = ndimage.gaussian_filter(rng.normal(size=(3, 40, 40)), 2.0) * 10
    high = np.full_like(image, 0.5)
    out = apply_thresholds(image, None, high, width=2)
    for s in range(3):
        # independent: scipy's opening with the default cross iterated twice
        flagged = ndimage.binary_opening(image[s] > 0.5, iterations=2)
        expected = np.where(flagged, 0.5, image[s])
        np.testing.assert_array_equal(out[s], expected)
        assert flagged.any() and not np.all(image[s][~flagged] <= 0.5)


def test_regularize_iterations_limits_large_changes_but_not_everything():
    old = _sources()
    rng = np.random.default_rng(7)
    new = old + rng.uniform(0, 1, size=old.shape) * old.max()
    out = regularize_iterations(new, old, 2.0, 2)
    assert np.max(new) > np.max(out - old)
    assert np.all(out <= new)
    clamped = out == np.abs(old) * 2.0
    still_high = out > np.abs(old) * 2.0
    assert clamped.mean() > 0.5, "the extended excess is clamped"
    assert still_high.any(), "narrow excursions (here along the border) survive"


def test_regularize_iterations_leaves_an_unchanged_model_alone():
    old = _sources()
    np.testing.assert_array_equal(regularize_iterations(old, old, 2.0, 2), old)


def test_frequency_regularization_keeps_a_colourless_model():
    flat = np.full((3, 24, 26), 4.0)
    out = regularize_frequency(flat, flat, 4.0, 2, noise=1.5)
    np.testing.assert_allclose(out, flat, rtol=1e-12)


def test_frequency_regularization_keeps_a_smooth_colour_without_noise():
    # every plane a fixed multiple of one positive image: the relative spectrum is
    # constant, so with no noise offset each plane is rebuilt exactly
    profile = 1.0 + 50 * _gaussian((32, 32), 15.3, 16.2, 4.0)
    colours = np.array([1.2, 1.0, 0.8])
    planes = colours[:, None, None] * profile
    out = regularize_frequency(planes, planes, 4.0, 2, noise=0.0)
    np.testing.assert_allclose(out, planes, rtol=1e-9)


def test_frequency_regularization_reduces_large_variations_between_planes():
    planes = _sources(flux_range=10.0)
    template = planes.mean(axis=0)
    background = template < 30
    noise = background_noise(planes[0], background)
    out = regularize_frequency(planes, planes, 2.0, 2, noise)
    for s in range(3):
        assert np.max(out[s] - template) < np.max(planes[s] - template)


def test_frequency_regularization_suppresses_chromatic_sidelobes():
    planes = _sources(noise=0.1, flux_range=2.0)
    template = planes.mean(axis=0)
    rng = np.random.default_rng(11)
    lobes = np.zeros_like(planes[0])
    for yc, xc in rng.uniform(8, 32, size=(5, 2)):
        lobes += 50 * _gaussian(lobes.shape, yc, xc, 1.5)
    dirty = planes.copy()
    for s, sign in enumerate([-1.0, 0.0, 1.0]):
        dirty[s] += sign * (np.roll(lobes, 4, axis=1) + np.roll(lobes, -4, axis=1))
    noise = background_noise(dirty[0], template < 1.0)
    out = regularize_frequency(dirty, planes, 2.0, 2, noise)
    for s in (0, 2):
        assert np.sum(np.abs(out[s] - template)) < np.sum(np.abs(dirty[s] - template))


def test_frequency_regularization_skips_a_block_without_positive_reference():
    new = np.random.default_rng(0).normal(size=(2, 10, 10))
    old = -np.ones((2, 10, 10))
    np.testing.assert_array_equal(regularize_frequency(new, old, 4.0, 2, 1.0), new)


def test_frequency_regularization_rejects_a_zero_width():
    with pytest.raises(ValueError, match="regularizationWidth"):
        regularize_frequency(np.ones((2, 8, 8)), np.ones((2, 8, 8)), 4.0, 0, 1.0)


def test_background_noise_matches_a_direct_loop():
    rng = np.random.default_rng(2)
    plane = rng.normal(3.0, 2.0, size=(20, 23))
    background = rng.uniform(size=plane.shape) > 0.3
    values = []
    for y in range(20):
        for x in range(23):
            if 5 <= y < 15 and 5 <= x < 18 and background[y, x]:
                values.append(plane[y, x])
    mean = sum(values) / len(values)
    expected = (sum((value - mean) ** 2 for value in values) / len(values)) ** 0.5
    assert background_noise(plane, background) == pytest.approx(expected, rel=1e-12)
    assert background_noise(plane, np.zeros_like(background)) == 0.0
    assert background_noise(plane, background, border=12) == 0.0


@pytest.mark.parametrize("seeing_sigma_px", [1.3, 1.9])
def test_the_smoothed_clamp_keeps_a_sharp_colourless_star_that_the_planes_clamp_cuts(
    seeing_sigma_px,
):
    # a star sharper than the regularization's smoothing (sigma 2 px) and of no colour at
    # all: smooth_ref peaks at s^2/(s^2 + 4) of its peak, so the reference's clamp of the
    # sharp planes against it reshapes the core though every plane equals the mean
    star = 1000.0 * _gaussian((41, 41), 20.2, 19.7, seeing_sigma_px)
    planes = np.stack([star, star, star]) + 0.0
    for factor in (2.0, 4.0):
        for clamp in ("smoothed", "smoothedColour"):
            kept = regularize_frequency(planes, planes, factor, 2, noise=0.0, clamp=clamp)
            np.testing.assert_allclose(kept, planes, rtol=1e-9, atol=1e-9)
        cut = regularize_frequency(planes, planes, factor, 2, noise=0.0, clamp="planes")
        # 0.6-11 % of the flux gained or lost in one step (repeated at every iteration)
        assert abs(cut.sum() / planes.sum() - 1.0) > 0.005


@pytest.mark.parametrize("clamp", ["smoothed", "smoothedColour"])
def test_the_smoothed_clamp_bounds_the_smoothed_colour(clamp):
    rng = np.random.default_rng(3)
    star = 1000.0 * _gaussian((41, 41), 20.0, 20.0, 2.5)
    colours = np.array([4.0, 1.0, 0.25])  # the extreme planes 16x apart
    planes = colours[:, None, None] * star + rng.uniform(0, 1, size=(3, 41, 41))
    out = regularize_frequency(planes, planes, 4.0, 2, noise=0.0, clamp=clamp)
    ratio = out[:, 20, 20] / planes.mean(axis=0)[20, 20]
    # sqrt(4) = 2 bounds the smoothed ratio; the sharpening may overshoot it slightly
    assert ratio[0] < 2.2 and ratio[2] > 0.45
    assert ratio[0] > 1.8 and ratio[2] < 0.55


def _moffat_star(shape, centre, fwhm, flux, beta=3.0):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    star = (1.0 + ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / alpha**2) ** -beta
    return flux * star / star.sum()


def _ring_percent(image, centre):
    """Highest local maximum 2.5-14 px from ``centre``, percent of the image's peak (0 if none)."""
    yy, xx = np.indices(image.shape)
    radius = np.hypot(yy - centre[0], xx - centre[1])
    maxima = (image == ndimage.maximum_filter(image, size=3)) & (radius > 2.5) & (radius < 14)
    return 100.0 * image[maxima].max() / image.max() if maxima.any() else 0.0


def test_the_smoothed_colour_clamp_leaves_no_ring_where_the_smoothed_clamp_makes_one():
    # a bright colourless star (4.5 px FWHM, Moffat) and a fit step that sharpens its core
    # hard (toward 2 px, overshooting 3x), as the fit keeps asking where the visits' PSFs
    # differ: 'smoothed' sharpens the smoothed mean ratio of the step, which multiplies the
    # old wings into local maxima 1.3 % of the peak (they grow with each iteration on the
    # package's Moffat tiles, benchmarks/README.md); 'smoothedColour' leaves that ratio smooth
    shape, centre = (41, 41), (20.2, 19.7)
    old = np.stack([_moffat_star(shape, centre, 4.5, 5e4)] * 4)
    sharper = np.stack([_moffat_star(shape, centre, 2.0, 5e4)] * 4)
    new = old + 3.0 * (sharper - old)
    ring = {
        clamp: _ring_percent(
            regularize_frequency(new, old, 4.0, 2, 2.5, clamp=clamp).sum(axis=0), centre
        )
        for clamp in ("planes", "smoothed", "smoothedColour")
    }
    assert ring["smoothed"] > 1.0, ring
    assert ring["smoothedColour"] == 0.0 and ring["planes"] == 0.0, ring


def test_the_smoothed_colour_clamp_scales_the_old_sum_by_the_smoothed_mean_ratio():
    # the sum of the planes is S * m * ref: the old mean times the mean over the sub-bands
    # of the clipped ratios of smoothed images, with no sharpening; the colours are sharpened
    rng = np.random.default_rng(4)
    old = _sources(n_planes=4, noise=1.0, flux_range=6.0, seed=8)
    new = old * rng.uniform(0.5, 1.5, size=old.shape)
    out = regularize_frequency(new, old, 4.0, 2, noise=1.0, clamp="smoothedColour")
    offset = 3.0 * 1.0 / 4.0
    reference = old.mean(axis=0)
    smooth_ref = ndimage.gaussian_filter(reference, 2, mode="constant") + offset
    ratio = (ndimage.gaussian_filter(new, (0, 2, 2), mode="constant") + offset) / smooth_ref
    mean_ratio = np.clip(ratio, 0.5, 2.0).mean(axis=0)
    np.testing.assert_allclose(out.sum(axis=0), 4 * mean_ratio * reference, rtol=1e-9)
    sharpened = regularize_frequency(new, old, 4.0, 2, noise=1.0, clamp="smoothed")
    assert not np.allclose(sharpened.sum(axis=0), out.sum(axis=0), rtol=1e-3)


def test_an_unknown_clamp_is_refused():
    with pytest.raises(ValueError, match="clamp"):
        regularize_frequency(np.ones((2, 8, 8)), np.ones((2, 8, 8)), 4.0, 2, 0.0, clamp="x")


@pytest.mark.parametrize("shape", [(4, 64, 48), (3, 17, 9), (1, 2, 5), (2, 1, 7), (1, 3, 3)])
@pytest.mark.parametrize("width", [1, 2, 3])
def test_surviving_equals_binary_opening_by_the_diamond(shape, width):
    # the shifted-view opening is ndimage.binary_opening by the diamond, borders included
    rng = np.random.default_rng(width)
    for share in (0.3, 0.6, 0.9):
        flags = rng.random(shape) < share
        expected = ndimage.binary_opening(flags, structure=_opening_structure(width))
        np.testing.assert_array_equal(_surviving(flags, width), expected)
