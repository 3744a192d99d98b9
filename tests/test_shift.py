"""Shift kernels against independent references: slicing for whole pixels,
analytic Gaussians for sub-pixel shifts."""

import numpy as np
import pytest

from dcr_dask.shift import (
    fourier_phase,
    fourier_phase_factors,
    fourier_shift,
    shift_image,
    spline_prefilter,
    spline_shift,
)


def _gaussian(shape, yc, xc, sigma):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.exp(-0.5 * ((yy - yc) ** 2 + (xx - xc) ** 2) / sigma**2)


def _slice_shift(image, dy, dx):
    """Whole-pixel shift with zeros shifted in, written with slicing only."""
    out = np.zeros_like(image)
    ny, nx = image.shape
    out[max(dy, 0) : ny + min(dy, 0), max(dx, 0) : nx + min(dx, 0)] = image[
        max(-dy, 0) : ny + min(-dy, 0), max(-dx, 0) : nx + min(-dx, 0)
    ]
    return out


@pytest.mark.parametrize("method", ["spline", "fourier"])
@pytest.mark.parametrize(("dy", "dx"), [(2, 0), (0, -3), (1, 2)])
def test_whole_pixel_shifts_match_slicing(method, dy, dx):
    rng = np.random.default_rng(3)
    image = np.zeros((32, 40))
    image[6:-6, 6:-6] = rng.normal(size=(20, 28))
    out = shift_image(image, (dy, dx), method=method)
    np.testing.assert_allclose(out, _slice_shift(image, dy, dx), atol=1e-9)


@pytest.mark.parametrize(("method", "tolerance"), [("fourier", 1e-9), ("spline", 2e-3)])
def test_subpixel_shift_of_a_gaussian_matches_the_analytic_one(method, tolerance):
    shape = (48, 48)
    image = _gaussian(shape, 23.0, 24.0, 2.0)
    out = shift_image(image, (0.37, -1.61), method=method, order=3)
    expected = _gaussian(shape, 23.37, 22.39, 2.0)
    assert np.max(np.abs(out - expected)) < tolerance


def test_fourier_is_more_accurate_than_every_spline_order():
    shape = (40, 40)
    image = _gaussian(shape, 20.0, 19.0, 1.5)
    expected = _gaussian(shape, 20.25, 19.8, 1.5)
    fourier_error = np.abs(fourier_shift(image, (0.25, 0.8)) - expected).max()
    for order in range(1, 6):
        spline_error = np.abs(spline_shift(image, (0.25, 0.8), order=order) - expected).max()
        assert fourier_error < spline_error


def test_split_shift_is_the_mean_of_the_two_shifts():
    image = _gaussian((32, 32), 15.0, 16.0, 1.8)
    points = np.array([[0.2, -0.4], [0.9, 0.3]])
    for method in ("spline", "fourier"):
        both = shift_image(image, points, method=method)
        mean = 0.5 * (
            shift_image(image, points[0], method=method)
            + shift_image(image, points[1], method=method)
        )
        np.testing.assert_allclose(both, mean, atol=1e-12)


def test_inverse_undoes_the_shift():
    image = _gaussian((40, 40), 19.5, 20.0, 2.5)
    there = shift_image(image, (0.6, -0.3), method="fourier")
    back = shift_image(there, (0.6, -0.3), method="fourier", inverse=True)
    np.testing.assert_allclose(back, image, atol=1e-10)


def test_prefilter_is_reusable_across_shifts():
    image = _gaussian((30, 30), 14.2, 15.1, 1.7)
    coefficients = spline_prefilter(image, 3)
    for shift in [(0.3, 0.1), (-1.2, 0.7)]:
        np.testing.assert_allclose(
            spline_shift(coefficients, shift, prefiltered=True),
            spline_shift(image, shift),
            atol=1e-12,
        )


def test_fourier_shift_wraps_only_within_the_shift_of_the_edge():
    image = np.zeros((32, 32))
    image[:, -2:] = 1.0  # content at the right edge
    out = fourier_shift(image, (0.0, 2.0))
    # the two columns re-enter on the left; everything they could affect far from
    # both edges stays at ringing level only for non-integer shifts, exactly 0 here
    np.testing.assert_allclose(out[:, :2], 1.0, atol=1e-12)
    np.testing.assert_allclose(out[:, 2:], 0.0, atol=1e-12)


def test_bad_shifts_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        fourier_phase((8, 8), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        shift_image(np.zeros((8, 8)), (np.nan, 0.0))
    with pytest.raises(ValueError, match="unknown shift method"):
        shift_image(np.zeros((8, 8)), (0.0, 0.0), method="cubic")


def test_phase_factors_rebuild_the_phase_ramp():
    shape = (12, 15)
    points = np.array([[0.3, -1.2], [-0.8, 0.45]])
    y_factors, x_factors = fourier_phase_factors(shape, points)
    assert y_factors.shape == (2, 12) and x_factors.shape == (2, 8)
    # direct evaluation of exp(-2πi (ky dy + kx dx)) on every frequency, one loop per point
    ky = np.fft.fftfreq(shape[0])
    kx = np.fft.rfftfreq(shape[1])
    expected = np.zeros((12, 8), dtype=complex)
    for dy, dx in points:
        for i, fy in enumerate(ky):
            for j, fx in enumerate(kx):
                expected[i, j] += np.exp(-2j * np.pi * (fy * dy + fx * dx)) / len(points)
    rebuilt = np.mean(y_factors[:, :, None] * x_factors[:, None, :], axis=0)
    np.testing.assert_allclose(rebuilt, expected, atol=1e-12)
    np.testing.assert_allclose(fourier_phase(shape, points), expected, atol=1e-12)


def test_sinc_shift_is_accurate_and_local():
    shape = (64, 64)
    image = _gaussian(shape, 31.0, 30.0, 1.7)
    out = shift_image(image, (0.37, -1.61), method="sinc")
    expected = _gaussian(shape, 31.37, 28.39, 1.7)
    assert np.max(np.abs(out - expected)) < 2e-4
    # compact support: a pixel far beyond |shift| + half width is untouched by a change
    from dcr_dask.shift import SINC_HALF_WIDTH_PX

    changed = image.copy()
    changed[:, :4] += 1.0
    reach = 4 + 2 + SINC_HALF_WIDTH_PX
    difference = shift_image(changed, (0.37, -1.61), method="sinc") - out
    assert np.max(np.abs(difference[:, reach : shape[1] - reach])) < 1e-12
    # the exact phase ramp, in contrast, reaches everywhere
    ramp = shift_image(changed, (0.37, -1.61), method="fourier") - shift_image(
        image, (0.37, -1.61), method="fourier"
    )
    assert np.max(np.abs(ramp[:, reach : shape[1] - reach])) > 1e-4
