"""Footprint detection kernels: afw's rules, and exactness on blocks given the halo."""

import numpy as np
import pytest
from scipy import ndimage

from dcr_dask.detection import (
    DetectionSettings,
    footprint_mask,
    grow_radius,
    grow_stencil,
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
