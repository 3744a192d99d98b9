"""Footprint detection kernels: afw's rules, and exactness on blocks given the halo."""

import attrs
import numpy as np
import pytest
from scipy import ndimage

from dcr_dask.kernels.detection import (
    DetectionSettings,
    footprint_mask,
    grow_radius,
    grow_stencil,
    keep_components,
    remove_small_components,
    threshold_masks,
)


def test_threshold_is_inclusive_in_both_polarities_and_ignores_nan():
    signal = np.array([[5.0, 4.99, -5.0, -4.99, np.nan]])
    positive, negative = threshold_masks(signal, 5.0, "both")
    assert positive.tolist() == [[True, False, False, False, False]]
    assert negative.tolist() == [[False, False, True, False, False]]
    positive, negative = threshold_masks(signal, 5.0, "positive")
    assert negative is None and positive.sum() == 1


def test_grow_radius_rounds_as_afw():
    assert grow_radius(0.4, 1.98) == 1  # int(0.79 + 0.5)
    assert grow_radius(2.4, 1.98) == 5  # int(4.75 + 0.5)
    assert grow_radius(0.0, 2.0) == 0
    with pytest.raises(ValueError, match="PSF sigma"):
        grow_radius(1.0, 0.0)


def test_grow_stencils_are_a_disc_and_a_diamond():
    disc = grow_stencil(2, isotropic=True)
    diamond = grow_stencil(2, isotropic=False)
    assert disc.sum() == 13 and diamond.sum() == 13
    assert disc[0, 2] and not disc[0, 1] and disc[1, 1]  # (1, 1) is inside a radius-2 disc
    assert not diamond[0, 1] and diamond[1, 1]
    assert grow_stencil(3, True).sum() == 29 and grow_stencil(3, False).sum() == 25


def test_small_components_are_dropped_eight_connected():
    mask = np.zeros((9, 9), bool)
    mask[2, 2] = mask[3, 3] = mask[4, 4] = True  # 3 pixels, diagonal: one component
    mask[6:8, 6:8] = True  # 4 pixels
    kept = remove_small_components(mask, 4)
    assert kept[6:8, 6:8].all() and not kept[2:5, 2:5].any()
    assert remove_small_components(mask, 3).sum() == 7
    edge = np.zeros((5, 5), bool)
    edge[0, 1] = True  # touches the block's border: may continue beyond it, kept
    assert remove_small_components(edge, 4)[0, 1]


def _whole_image_reference(signal, settings):
    """Union of footprints on a whole image, written out with scipy on each polarity."""
    out = np.zeros(signal.shape, bool)
    stencil = grow_stencil(settings.grow_px, settings.isotropic)
    for sign in (1.0, -1.0):
        with np.errstate(invalid="ignore"):
            above = sign * signal >= settings.threshold
        labels, n = ndimage.label(above, structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        kept = (sizes >= settings.min_pixels)[labels] & above
        out |= ndimage.binary_dilation(kept, structure=stencil) if settings.grow_px else kept
    return out


def test_footprint_mask_on_haloed_blocks_equals_the_whole_image():
    rng = np.random.default_rng(4)
    signal = ndimage.gaussian_filter(rng.normal(size=(60, 70)), 1.0) * 6.0
    signal[10, 12] = np.nan
    settings = DetectionSettings(
        threshold=2.0, polarity="both", min_pixels=5, grow_px=2, isotropic=True
    )
    whole = _whole_image_reference(signal, settings)
    halo = settings.halo
    assert halo == 6
    # Beyond the image the graph layer pads with NaN, never above threshold.
    padded = np.pad(signal, halo, constant_values=np.nan)
    np.testing.assert_array_equal(footprint_mask(padded, settings)[halo:-halo, halo:-halo], whole)
    for y0 in range(0, 60, 17):
        for x0 in range(0, 70, 23):
            y1, x1 = min(y0 + 17, 60), min(x0 + 23, 70)
            block = padded[y0 : y1 + 2 * halo, x0 : x1 + 2 * halo]
            core = footprint_mask(block, settings)[halo:-halo, halo:-halo]
            np.testing.assert_array_equal(core, whole[y0:y1, x0:x1])


def test_leading_axes_are_independent():
    signal = np.zeros((2, 10, 10))
    signal[0, 4:6, 4:6] = 10.0
    settings = DetectionSettings(threshold=5.0, min_pixels=4, grow_px=1)
    mask = footprint_mask(signal, settings)
    assert mask[0].sum() == 12 and not mask[1].any()


def test_unsupported_settings_name_the_field():
    with pytest.raises(ValueError, match="thresholdType = 'stdev'"):
        DetectionSettings(threshold=5.0, threshold_type="stdev")
    with pytest.raises(ValueError, match="thresholdPolarity"):
        DetectionSettings(threshold=5.0, polarity="up")
    with pytest.raises(ValueError, match="thresholdValue"):
        DetectionSettings(threshold=-1.0)


# ----------------------------------------------------------------- includeThresholdMultiplier


def _peak_tested_reference(signal, settings):
    """Union of footprints on a whole image with afw's peak test, written out with scipy."""
    out = np.zeros(signal.shape, bool)
    stencil = grow_stencil(settings.grow_px, settings.isotropic)
    signs = {"positive": (1.0,), "negative": (-1.0,), "both": (1.0, -1.0)}[settings.polarity]
    for sign in signs:
        with np.errstate(invalid="ignore"):
            above = sign * signal >= settings.threshold
        labels, n = ndimage.label(above, structure=np.ones((3, 3)))
        index = np.arange(1, n + 1)
        sizes = ndimage.sum_labels(above, labels, index)
        peaks = ndimage.maximum(sign * signal, labels, index)
        keep = (sizes >= settings.min_pixels) & (
            peaks >= settings.threshold * settings.include_multiplier
        )
        kept = np.concatenate([[False], keep])[labels]
        out |= ndimage.binary_dilation(kept, structure=stencil) if settings.grow_px else kept
    return out


def _two_footprints(sign=1.0):
    """A 4x6 footprint at 5.5 peaking at 9 in one corner, and a 4x6 one at 6 peaking at 7."""
    signal = np.zeros((20, 30))
    signal[2:6, 2:8] = 5.5
    signal[2, 2] = 9.0  # reaches 5 x 1.5 = 7.5 at one pixel
    signal[12:16, 15:21] = 6.0
    signal[13, 17] = 7.0  # its peak stays below 7.5
    return sign * signal


def test_a_footprint_is_kept_whole_only_if_it_reaches_the_include_threshold():
    signal = _two_footprints()
    settings = DetectionSettings(threshold=5.0, include_multiplier=1.5)
    assert settings.peak_test and settings.include_threshold == 7.5
    mask = footprint_mask(signal, settings)
    expected = np.zeros(signal.shape, bool)
    expected[2:6, 2:8] = True  # the whole extent at 5, not just the pixel at 9
    np.testing.assert_array_equal(mask, expected)
    # grown: the kept footprint grows as usual, the dropped one leaves nothing
    grown = footprint_mask(signal, attrs.evolve(settings, grow_px=2, isotropic=False))
    np.testing.assert_array_equal(
        grown, ndimage.binary_dilation(expected, structure=grow_stencil(2, False))
    )
    # the peak test is inclusive, as the threshold is
    signal[13, 17] = 7.5
    assert footprint_mask(signal, settings)[12:16, 15:21].all()


def test_min_pixels_still_applies_with_the_peak_test():
    signal = _two_footprints()
    signal[10, 2] = 50.0  # one bright pixel: reaches the include threshold, too small
    signal[10, 4:6] = 8.0  # two pixels of a second one
    settings = DetectionSettings(threshold=5.0, min_pixels=3, include_multiplier=1.5)
    mask = footprint_mask(signal, settings)
    assert not mask[10].any() and mask[2:6, 2:8].all() and mask.sum() == 24
    assert footprint_mask(signal, attrs.evolve(settings, min_pixels=1))[10].sum() == 3


def test_the_peak_test_in_negative_and_both_polarities():
    settings = DetectionSettings(threshold=5.0, polarity="negative", include_multiplier=1.5)
    negative = footprint_mask(_two_footprints(-1.0), settings)
    assert negative[2:6, 2:8].all() and negative.sum() == 24
    # a positive footprint is not searched, however bright
    assert not footprint_mask(_two_footprints(1.0), settings).any()
    # "both": the bright negative and the bright positive are kept, the faint ones are not
    signal = _two_footprints(-1.0) + _two_footprints(1.0)[:, ::-1]
    both = footprint_mask(signal, attrs.evolve(settings, polarity="both"))
    assert both[2:6, 2:8].all() and both[2:6, -8:-2].all() and both.sum() == 48
    # a footprint of one sign is not kept by a peak of the other sign beside it
    signal = np.zeros((10, 10))
    signal[4, 2:5] = 6.0
    signal[4, 5] = -20.0
    assert footprint_mask(signal, attrs.evolve(settings, polarity="both")).tolist() == (
        (signal == -20.0).tolist()
    )


@pytest.mark.parametrize("polarity", ["positive", "negative", "both"])
def test_the_peak_test_equals_a_scipy_reference_on_a_whole_image(polarity):
    rng = np.random.default_rng(8)
    signal = ndimage.gaussian_filter(rng.normal(size=(2, 50, 60)), (0, 0.8, 0.8)) * 4.0
    signal[0, 10, 12] = np.nan
    for min_pixels, grow in ((1, 0), (4, 2)):
        settings = DetectionSettings(
            threshold=1.5,
            polarity=polarity,
            min_pixels=min_pixels,
            grow_px=grow,
            include_multiplier=1.6,
        )
        mask = footprint_mask(signal, settings)
        for visit in range(2):
            np.testing.assert_array_equal(
                mask[visit], _peak_tested_reference(signal[visit], settings)
            )
        # a whole image: NaN padding changes nothing (no border exemption as on blocks)
        padded = np.pad(signal, ((0, 0), (3, 3), (3, 3)), constant_values=np.nan)
        np.testing.assert_array_equal(footprint_mask(padded, settings)[:, 3:-3, 3:-3], mask)
        # the test drops footprints (so this checks something), never adds pixels
        unfiltered = footprint_mask(padded, attrs.evolve(settings, include_multiplier=1.0))
        unfiltered = unfiltered[:, 3:-3, 3:-3]
        assert mask.sum() < unfiltered.sum() and not (mask & ~unfiltered).any()


def test_keep_components_tests_border_components_like_any_other():
    mask = np.zeros((6, 6), bool)
    mask[0, 1:3] = True  # touches the border: complete here, so too small
    mask[3:5, 3:5] = True
    include = np.zeros_like(mask)
    include[0, 1] = include[4, 4] = True
    assert keep_components(mask, include, 3).sum() == 4
    assert keep_components(mask, include, 2).sum() == 6
    include[4, 4] = False
    assert keep_components(mask, include, 2).sum() == 2


@pytest.mark.parametrize("multiplier", [0.0, 0.5, 1.0])
def test_a_multiplier_of_one_or_less_keeps_every_footprint_as_before(multiplier):
    rng = np.random.default_rng(4)
    signal = ndimage.gaussian_filter(rng.normal(size=(40, 50)), 1.0) * 6.0
    before = DetectionSettings(threshold=2.0, polarity="both", min_pixels=5, grow_px=2)
    settings = attrs.evolve(before, include_multiplier=multiplier)
    assert not settings.peak_test and settings.halo == before.halo
    padded = np.pad(signal, settings.halo, constant_values=np.nan)
    np.testing.assert_array_equal(footprint_mask(padded, settings), footprint_mask(padded, before))
    halo = settings.halo
    np.testing.assert_array_equal(
        footprint_mask(padded, settings)[halo:-halo, halo:-halo],
        _whole_image_reference(signal, settings),
    )
    # on a block, border components are still kept whatever their size (the halo argument)
    edge = np.zeros((5, 5))
    edge[0, 1] = 3.0
    assert footprint_mask(edge, settings)[0, 1]


def test_a_multiplier_at_a_threshold_of_zero_keeps_every_footprint():
    settings = DetectionSettings(threshold=0.0, include_multiplier=3.0)
    assert not settings.peak_test


@pytest.mark.parametrize("multiplier", [np.nan, -0.5, np.inf])
def test_a_bad_include_multiplier_names_the_field(multiplier):
    with pytest.raises(ValueError, match=rf"includeThresholdMultiplier = {multiplier!r}"):
        DetectionSettings(threshold=5.0, include_multiplier=multiplier)


def _faint_star_field(seed=3, n=64, flux=200.0, sigma_psf=1.6, sky=5.0):
    """A faint Gaussian star (matched-filter S/N 7, peak pixel S/N 2.5) on white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    star = flux * np.exp(-((yy - 30.3) ** 2 + (xx - 33.6) ** 2) / (2 * sigma_psf**2))
    star /= 2 * np.pi * sigma_psf**2
    image = star + rng.normal(0.0, sky, (n, n))
    return image, np.full((n, n), sky**2), star


def test_smoothed_significance_is_unit_noise_and_finds_a_faint_star():
    from dcr_dask.kernels.detection import smoothed_significance

    image, variance, star = _faint_star_field()
    valid = np.ones(image.shape, bool)
    # noise alone: the smoothed image's significance has unit spread (away from the edges)
    noise_only = smoothed_significance(image - star, variance, valid, 1.6)[10:-10, 10:-10]
    assert np.nanstd(noise_only) == pytest.approx(1.0, rel=0.15)
    significance = smoothed_significance(image, variance, valid, 1.6)
    peak = np.unravel_index(np.nanargmax(significance), image.shape)
    assert abs(peak[0] - 30.3) <= 2 and abs(peak[1] - 33.6) <= 2
    assert significance[30, 34] > 5.0  # the matched filter reaches 5 sigma ...
    assert (image / 5.0)[28:33, 31:37].max() < 5.0  # ... which no single pixel does
    # invalid pixels carry no weight: masking the star's far side leaves a finite value
    valid[:, 40:] = False
    masked = smoothed_significance(image, variance, valid, 1.6)
    assert np.isfinite(masked[30, 34]) and np.isnan(masked[30, 55])
    with pytest.raises(ValueError, match="smoothing sigma"):
        smoothed_significance(image, variance, valid, 0.0)


def test_smoothed_source_detection_is_chunk_independent():
    import dask
    import xarray as xr

    from dcr_dask.config import DcrAssembleCoaddConfig
    from dcr_dask.graph.detect import detect_sources
    from dcr_dask.settings import source_detection

    image, variance, _ = _faint_star_field()
    config = DcrAssembleCoaddConfig().detectModelSources
    found = []
    for chunk in (64, 17):
        dataset = xr.Dataset(
            {"image": (("y", "x"), image), "variance": (("y", "x"), variance)}
        ).chunk({"y": chunk, "x": chunk})
        with dask.config.set(scheduler="synchronous"):
            found.append(
                detect_sources(
                    dataset, source_detection(config), psf_sigma_px=1.6, smooth=True
                ).values
            )
    np.testing.assert_array_equal(found[0], found[1])
    assert found[0][30, 34] and found[0].sum() < 200  # the star, grown by 2.4 sigma; no noise
    config.thresholdType = "value"
    with pytest.raises(ValueError, match="pixel_stdev"):
        detect_sources(dataset, source_detection(config), psf_sigma_px=1.6, smooth=True)
