"""The accuracy figures' centroid: a template is charged for where stars are, not their width."""

from __future__ import annotations

import galsim
import numpy as np
import pytest

from dcr_dask import truth


def _star(fwhm_arcsec: float, x: float, y: float, flux: float = 1e5, size: int = 48) -> np.ndarray:
    image = galsim.ImageD(size, size, scale=0.2)
    galsim.Kolmogorov(fwhm=fwhm_arcsec).withFlux(flux).drawImage(
        image=image, center=galsim.PositionD(x + 1, y + 1)
    )
    return image.array


@pytest.mark.parametrize("fwhm", [0.6, 0.8, 1.0])
def test_weighted_centroid_finds_the_centre_whatever_the_seeing(fwhm):
    y, x = truth.weighted_centroid(_star(fwhm, 23.37, 24.81), 24.0, 23.0)
    assert abs(x - 23.37) < 2e-3 and abs(y - 24.81) < 2e-3


def test_offsets_ignore_the_width_and_measure_the_shift():
    sky = _star(0.8, 23.37, 24.81)
    narrower = _star(0.6, 23.37, 24.81)
    shifted = _star(0.6, 23.37 + 0.25, 24.81)
    positions = np.array([[25.0, 23.0]])
    assert truth.centroid_offsets(narrower, sky, positions)[0] < 2e-3
    assert truth.centroid_offsets(shifted, sky, positions)[0] == pytest.approx(0.25, abs=3e-3)
    # A square window cut at the nearest pixel charges the narrower PSF for its width.
    ty, tx = truth.centroid(sky, 25.0, 23.0)
    cy, cx = truth.centroid(narrower, round(ty), round(tx), iterations=0)
    wy, wx = truth.centroid(sky, round(ty), round(tx), iterations=0)
    assert np.hypot(cy - wy, cx - wx) > 0.01


def test_a_neighbour_outside_the_weight_does_not_move_the_centre():
    sky = _star(0.8, 23.37, 24.81) + _star(0.8, 40.0, 24.0, flux=5e3, size=48)
    y, x = truth.weighted_centroid(sky, 24.0, 23.0)
    assert abs(x - 23.37) < 5e-3 and abs(y - 24.81) < 5e-3


def test_unmeasurable_centres_are_nan_and_left_out_of_the_rms():
    sky = _star(0.8, 23.37, 24.81)
    offsets = truth.centroid_offsets(sky, sky, np.array([[24.8, 23.4], [2.0, 2.0]]))
    assert offsets[0] < 1e-4 and np.isnan(offsets[1])
    assert np.isnan(truth.weighted_centroid(np.zeros((48, 48)), 24.0, 24.0)[0])


def test_a_centre_captured_by_another_peak_counts_as_unmeasured():
    sky = _star(0.8, 23.37, 24.81)
    elsewhere = _star(0.8, 23.37 + 12.0, 24.81)  # the same star 12 px away: a lost centre
    positions = np.array([[24.8, 23.4]])
    assert np.isnan(truth.centroid_offsets(elsewhere, sky, positions)[0])
    assert truth.centroid_offsets(elsewhere, sky, positions, max_offset_px=20.0)[0] > 9.0
    near = _star(0.8, 23.37 + 2.0, 24.81)  # a DCR-sized offset is measured
    assert truth.centroid_offsets(near, sky, positions)[0] == pytest.approx(2.0, abs=0.05)


def test_matched_difference_absorbs_one_kernel_and_a_background():
    """A PSF change and a shift of the whole image (one kernel) leave nothing."""
    from scipy import ndimage, signal

    from dcr_dask.truth import matched_difference

    rng = np.random.default_rng(0)
    template = ndimage.gaussian_filter(rng.normal(size=(64, 64)), 1.5)
    kernel = np.zeros((7, 7))
    kernel[3, 3], kernel[2, 4], kernel[4, 3] = 0.5, 0.3, 0.2
    image = signal.convolve2d(template, kernel, mode="same") + 0.7
    difference, fitted = matched_difference(template, image, kernel_size=7)
    np.testing.assert_allclose(fitted, kernel, atol=1e-10)
    assert np.isnan(difference[:3]).all() and np.isnan(difference[:, -3:]).all()
    assert np.nanmax(np.abs(difference)) < 1e-10


def test_matched_difference_keeps_shifts_that_differ_between_sources():
    """Two stars shifted opposite ways (DCR of opposite colours): no one kernel
    absorbs both, so a dipole remains; the same shift for both leaves nothing."""
    from dcr_dask.kernels.psf import gaussian_psf_image
    from dcr_dask.truth import matched_difference

    def stars(shift_a, shift_b):
        image = np.zeros((48, 48))
        for (y, x), shift in (((14, 14), shift_a), ((34, 34), shift_b)):
            stamp = ndimage_shift(gaussian_psf_image(15, 3.0), (shift, 0.0))
            image[y - 7 : y + 8, x - 7 : x + 8] += 1000.0 * stamp
        return image

    from scipy.ndimage import shift as ndimage_shift

    template = stars(0.0, 0.0)
    same, _ = matched_difference(template, stars(0.6, 0.6), kernel_size=5)
    opposite, _ = matched_difference(template, stars(0.6, -0.6), kernel_size=5)
    # (the spline shift is not exactly a convolution: a trace is left)
    assert np.nanmax(np.abs(same)) < 0.03 * np.nanmax(np.abs(opposite))
    assert np.nanmax(np.abs(opposite)) > 10.0


def test_matched_difference_refuses_bad_shapes_and_kernels():
    from dcr_dask.truth import matched_difference

    with pytest.raises(ValueError, match="one shape"):
        matched_difference(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError, match="kernel_size = 4"):
        matched_difference(np.zeros((8, 8)), np.zeros((8, 8)), kernel_size=4)
    with pytest.raises(ValueError, match="too small"):
        matched_difference(np.zeros((8, 8)), np.zeros((8, 8)), kernel_size=9)
