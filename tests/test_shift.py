"""Shift kernels against independent references: slicing for whole pixels,
analytic Gaussians for sub-pixel shifts; the fast paths (separable spline taps,
single-precision spectral grid) against the straightforward formulations."""

import numpy as np
import pytest
from scipy import ndimage

from dcr_dask.kernels.shift import (
    SINC_HALF_WIDTH_PX,
    SINC_KAISER_BETA,
    SpectralGrid,
    _sinc_kernels,
    fourier_phase,
    fourier_phase_factors,
    fourier_shift,
    shift_factors,
    shift_image,
    spline_prefilter,
    spline_shift,
    spline_translate,
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
    from dcr_dask.kernels.shift import SINC_HALF_WIDTH_PX

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


# ----------------------------------------------------------------- fast paths


def _shift_cases():
    """Orders 0-5 with fractional, whole, near-whole, half-pixel and out-of-range shifts."""
    rng = np.random.default_rng(20)
    cases = []
    for trial in range(120):
        shape = tuple(int(n) for n in rng.integers(5, 30, size=2))
        order = trial % 6
        kind = trial // 6 % 5
        if kind == 0:
            shift = rng.uniform(-4, 4, 2)
        elif kind == 1:
            shift = rng.integers(-4, 5, 2).astype(float)
        elif kind == 2:
            shift = rng.integers(-4, 5, 2) + rng.choice([1e-12, -1e-12, 1e-17, 1 - 1e-16], 2)
        elif kind == 3:
            shift = rng.integers(-4, 5, 2) + 0.5
        else:
            shift = rng.uniform(-40, 40, 2)
        cases.append((rng.normal(size=shape), order, shift))
    return cases


def test_spline_translate_matches_ndimage_shift_edges_included():
    for image, order, shift in _shift_cases():
        coefficients = spline_prefilter(image, order)
        expected = ndimage.shift(
            coefficients, shift, order=order, mode="constant", cval=0.0, prefilter=False
        )
        out = spline_translate(coefficients, shift, order)
        scale = max(1.0, np.abs(coefficients).max())
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("order", [1, 3, 5])
def test_spline_shift_is_ndimage_shift_with_its_prefilter(order):
    rng = np.random.default_rng(21)
    image = rng.normal(size=(33, 29))
    points = np.array([[0.3, -1.7], [2.6, 0.4]])
    expected = 0.5 * sum(ndimage.shift(image, p, order=order, mode="constant") for p in points)
    np.testing.assert_allclose(spline_shift(image, points, order=order), expected, atol=1e-12)


def test_sinc_kernels_are_the_normalised_windowed_sinc():
    n, deltas = 40, np.array([0.37, -2.5, 3.0, -0.999])
    kernels = _sinc_kernels(n, deltas, SINC_HALF_WIDTH_PX)
    for kernel, delta in zip(kernels, deltas, strict=True):
        expected = np.zeros(n)
        base = int(np.floor(delta))
        for tap in range(base - SINC_HALF_WIDTH_PX + 1, base + SINC_HALF_WIDTH_PX + 1):
            t = tap - delta
            window = np.i0(SINC_KAISER_BETA * np.sqrt(max(0.0, 1 - (t / SINC_HALF_WIDTH_PX) ** 2)))
            expected[tap % n] += np.sinc(t) * window
        np.testing.assert_allclose(kernel, expected / expected.sum(), atol=1e-14)
    with pytest.raises(ValueError, match="too short"):
        _sinc_kernels(2 * SINC_HALF_WIDTH_PX - 1, deltas, SINC_HALF_WIDTH_PX)


@pytest.mark.parametrize("precision", ["double", "single"])
@pytest.mark.parametrize("shape", [(24, 30), (37, 41)])
def test_spectral_grid_products_match_full_array_formulas(precision, shape):
    rng = np.random.default_rng(22)
    grid = SpectralGrid(shape, precision)
    assert grid.padded == (shape == (37, 41))  # 37 and 41 are primes: padded to 40, 42
    images = rng.normal(size=(3, *shape))
    spectra = grid.zeros(3)
    for j, image in enumerate(images):
        spectra[j] = grid.transform(image)
    # the transform is the zero-padded real FFT
    padded = np.zeros((3, *grid.fft_shape))
    padded[:, : shape[0], : shape[1]] = images
    reference = np.fft.rfft2(padded)
    tolerance = 1e-12 if precision == "double" else 2e-5
    scale = np.abs(reference).max()
    np.testing.assert_allclose(spectra, reference, atol=tolerance * scale)
    np.testing.assert_allclose(grid.invert(spectra[0].copy()), images[0], atol=tolerance * 10)
    point_sets = [np.array([[0.3, -1.2], [1.1, 0.4]]), np.array([[-0.7, 2.2]]), np.zeros((1, 2))]
    factors = [grid.factors(p, "sinc", 1.0 / len(p)) for p in point_sets]
    full = [
        np.mean(
            [
                np.outer(y, x)
                for y, x in zip(*shift_factors(grid.fft_shape, p, "sinc"), strict=True)
            ],
            axis=0,
        )
        for p in point_sets
    ]
    combined = grid.combine(grid.zeros(), reference.astype(grid.complex_dtype), factors)
    expected = sum(f * r for f, r in zip(full, reference, strict=True))
    np.testing.assert_allclose(combined, expected, atol=tolerance * 10 * scale)
    totals = grid.zeros(3)
    totals += reference.astype(grid.complex_dtype)
    grid.spread(totals, reference[1].astype(grid.complex_dtype), factors)
    np.testing.assert_allclose(
        totals, reference + np.array(full) * reference[1], atol=tolerance * 10 * scale
    )


def test_spectral_grid_shift_is_the_method_shift_of_the_padded_image():
    rng = np.random.default_rng(23)
    image = np.zeros((37, 41))
    image[6:-6, 6:-6] = rng.normal(size=(25, 29))
    grid = SpectralGrid(image.shape, "double")
    spectrum = grid.transform(image)
    for method in ("fourier", "sinc"):
        points = np.array([[0.6, -1.3], [1.4, 0.2]])
        factors = grid.factors(points, method, 1.0 / len(points))
        out = grid.invert(grid.combine(grid.zeros(), spectrum[None], [factors]))
        padded = np.zeros(grid.fft_shape)
        padded[:37, :41] = image
        expected = shift_image(padded, points, method=method)[:37, :41]
        np.testing.assert_allclose(out, expected, atol=1e-12)


@pytest.mark.parametrize("method", ["fourier", "sinc"])
@pytest.mark.parametrize("precision", ["single", "double"])
def test_factor_sets_equal_the_factors_of_each_set(method, precision):
    # the iteration makes a block's factors in one batch; they must be those of one call per
    # set of shift_factors (SpectralGrid.factors is one set of factor_sets: not a reference)
    grid = SpectralGrid((37, 50), precision)
    rng = np.random.default_rng(3)
    point_sets = [rng.uniform(-4, 4, size=(k, 2)) for k in (1, 2, 2, 1, 2)]
    scales = [0.5, 1.0, 0.25, 1.7, 0.5]
    batch = grid.factor_sets(point_sets, method, scales)
    for (y, x), points, scale in zip(batch, point_sets, scales, strict=True):
        y_one, x_one = shift_factors(grid.fft_shape, points, method)
        y_one, x_one = (y_one * scale).astype(grid.complex_dtype), x_one.astype(grid.complex_dtype)
        np.testing.assert_array_equal(y, y_one)
        np.testing.assert_array_equal(x, x_one)
    assert grid.factor_sets([], method, []) == []


def test_spectral_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="precision"):
        SpectralGrid((8, 8), "half")
    grid = SpectralGrid((8, 8))
    with pytest.raises(ValueError, match="does not match"):
        grid.transform(np.zeros((8, 9)))
    with pytest.raises(ValueError, match="does not match"):
        grid.invert(np.zeros(grid.spectrum_shape, dtype=np.complex128))
