"""Model kernels against independent references: analytic Gaussians, whole-pixel
slicing, direct loops and hand-worked numbers; the forward model and back-projection
as adjoint operators; and a tiny end-to-end fit of a two-sub-band sky."""

import numpy as np
import pytest
from scipy import ndimage

from dcr_dask.kernels.convergence import (
    calculate_gain,
    convergence_metric,
    significance_image,
)
from dcr_dask.kernels.model import (
    amplify,
    apply_model_weights,
    back_project,
    coadd_from_model,
    condition,
    forward_model,
    forward_models,
    initial_model,
    iterate_block,
    model_weights,
    residuals,
    subband_weights,
    update_model,
    visit_weights,
)
from dcr_dask.kernels.regularize import background_noise
from dcr_dask.kernels.shift import shift_image


def _gaussian(shape, yc, xc, sigma):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return np.exp(-0.5 * ((yy - yc) ** 2 + (xx - xc) ** 2) / sigma**2)


def _slice_shift(image, dy, dx, periodic=False):
    """Whole-pixel shift written with slicing (zeros in) or np.roll (periodic)."""
    if periodic:
        return np.roll(image, (dy, dx), axis=(0, 1))
    out = np.zeros_like(image)
    ny, nx = image.shape
    out[max(dy, 0) : ny + min(dy, 0), max(dx, 0) : nx + min(dx, 0)] = image[
        max(-dy, 0) : ny + min(-dy, 0), max(-dx, 0) : nx + min(-dx, 0)
    ]
    return out


def _smooth_field(rng, shape, margin=6):
    field = ndimage.gaussian_filter(rng.normal(size=shape), (0, 2.5, 2.5))
    field[:, :margin] = field[:, -margin:] = 0.0
    field[:, :, :margin] = field[:, :, -margin:] = 0.0
    return field


# ----------------------------------------------------------------- start


def test_initial_model_splits_the_template_evenly():
    rng = np.random.default_rng(0)
    template = rng.normal(size=(6, 7))
    variance = rng.uniform(1, 2, size=(6, 7))
    planes, plane_variance = initial_model(template, variance, 3)
    assert planes.shape == (3, 6, 7) and planes.dtype == np.float32
    np.testing.assert_allclose(planes.sum(axis=0), template, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(plane_variance * 3, variance, rtol=1e-6)


def test_visit_weight_is_the_inverse_clipped_mean_variance():
    # hand-worked MEANCLIP: median 3, IQR 2 -> keep |x - 3| <= 3·0.7413·2, i.e. 1..4;
    # mean 2.5, std 1.29 -> second pass keeps 1..4 again
    values = np.array([1.0, 2.0, 3.0, 4.0, 100.0, 7.0])
    good = np.array([True, True, True, True, True, False])
    variances = np.stack([values, np.full(6, 4.0)])[:, None, :]
    goods = np.stack([good, np.ones(6, bool)])[:, None, :]
    weights = visit_weights(variances, goods, clip_sigma=3.0, clip_iterations=2)
    np.testing.assert_allclose(weights, [1 / 2.5, 1 / 4.0])
    airmass = np.array([1.2, 2.0])
    np.testing.assert_allclose(
        visit_weights(variances, goods, clip_sigma=3.0, clip_iterations=2, airmass=airmass),
        weights * airmass,
    )


def test_visit_weight_resists_outliers():
    rng = np.random.default_rng(1)
    variance = rng.normal(10.0, 0.5, size=(1, 50, 50))
    variance[0, :3, :] = 1e4  # a hot strip
    variance[0, 10, 10] = np.nan
    weight = visit_weights(
        variance, np.ones_like(variance, bool), clip_sigma=3.0, clip_iterations=2
    )
    assert weight[0] == pytest.approx(1 / 10.0, rel=0.01)


def test_visit_without_valid_variance_gets_zero_weight():
    with pytest.warns(RuntimeWarning, match="visit 0"):
        weights = visit_weights(
            np.zeros((1, 4, 4)), np.ones((1, 4, 4), bool), clip_sigma=3.0, clip_iterations=2
        )
    assert weights[0] == 0.0


def _holey_mask(rng, shape):
    good = rng.uniform(size=shape) > 0.15
    good[:, 10:13, 4:9] = False  # a hole
    return good


@pytest.mark.parametrize("method", ["spline", "fourier"])
def test_subband_weights_and_n_image_match_a_direct_loop(method):
    rng = np.random.default_rng(2)
    n_visits, n_sub, shape = 4, 3, (20, 22)
    good = _holey_mask(rng, (n_visits, *shape))
    shifts = rng.integers(-2, 3, size=(n_visits, n_sub, 2))
    inverse, n_image = subband_weights(good, shifts.astype(float), method=method, order=3)
    periodic = method == "fourier"
    coverage = np.zeros((n_sub, *shape))
    for s in range(n_sub):
        for v in range(n_visits):
            back = _slice_shift(good[v].astype(float), -shifts[v, s, 0], -shifts[v, s, 1], periodic)
            coverage[s] += back
    expected_inverse = np.zeros_like(coverage)
    expected_n = np.zeros(coverage.shape, dtype=int)
    for y in range(shape[0]):
        for x in range(shape[1]):
            if all(coverage[s, y, x] > 1 for s in range(n_sub)):
                for s in range(n_sub):
                    expected_inverse[s, y, x] = 1 / coverage[s, y, x]
                    expected_n[s, y, x] = coverage[s, y, x]
    assert inverse.dtype == np.float32 and n_image.dtype == np.uint16
    np.testing.assert_allclose(inverse, expected_inverse, atol=1e-6)
    np.testing.assert_array_equal(n_image, expected_n)
    assert np.any(expected_n == 0) and np.any(expected_n == n_visits)


# ----------------------------------------------------------------- forward model


def test_amplify_scales_the_departures_from_the_mean():
    model = np.array([[[1.0]], [[3.0]]])
    np.testing.assert_allclose(amplify(model, 3.0)[:, 0, 0], [-1.0, 5.0])
    np.testing.assert_allclose(amplify(model, 1.0), model)
    np.testing.assert_allclose(amplify(model, 0.5), model)  # <= 1 is ignored, as the reference


@pytest.mark.parametrize(("method", "tolerance"), [("fourier", 1e-9), ("spline", 3e-3)])
def test_forward_model_of_gaussians_matches_the_analytic_templates(method, tolerance):
    shape = (40, 44)
    centre = (19.3, 21.8)
    fluxes = [2.0, 1.0, 0.5]
    model = np.array([f * _gaussian(shape, *centre, 2.2) for f in fluxes])
    rng = np.random.default_rng(3)
    shifts = rng.uniform(-1.5, 1.5, size=(4, 3, 2, 2))
    shifts[1, 2, 1] = shifts[1, 2, 0]  # one collapsed split
    templates = forward_models(model, shifts, accelerate=1.0, method=method, order=3)
    for v in range(4):
        expected = np.zeros(shape)
        for s, flux in enumerate(fluxes):
            for dy, dx in shifts[v, s]:
                expected += 0.5 * flux * _gaussian(shape, centre[0] + dy, centre[1] + dx, 2.2)
        assert np.max(np.abs(templates[v] - expected)) < tolerance * max(fluxes)
        single = forward_model(model, shifts[v], accelerate=1.0, method=method, order=3)
        np.testing.assert_allclose(single, templates[v], atol=1e-12)


@pytest.mark.parametrize("method", ["spline", "fourier"])
def test_forward_model_of_a_colourless_model_is_the_shifted_template(method):
    shape = (30, 30)
    template = 3 * _gaussian(shape, 14.0, 15.5, 2.0) + _gaussian(shape, 9.0, 20.0, 1.5)
    model = np.repeat(template[None] / 3, 3, axis=0)
    rng = np.random.default_rng(4)
    # every sub-band shifted alike in each visit: the template moves as a whole
    visit_shift = rng.uniform(-1, 1, size=(5, 1, 1, 2))
    shifts = np.repeat(visit_shift, 3, axis=1)
    templates = forward_models(model, shifts, accelerate=3.0, method=method, order=3)
    for v in range(5):
        dy, dx = visit_shift[v, 0, 0]
        moved = 3 * _gaussian(shape, 14.0 + dy, 15.5 + dx, 2.0) + _gaussian(
            shape, 9.0 + dy, 20.0 + dx, 1.5
        )
        # Fourier: exact but periodic (a source 9 pixels from the edge wraps at 1e-6)
        assert np.max(np.abs(templates[v] - moved)) < (1e-5 if method == "fourier" else 1e-2)


@pytest.mark.parametrize(
    ("method", "rtol"), [("fourier", 1e-12), ("sinc", 1e-12), ("spline", 1e-6)]
)
def test_back_projection_is_the_adjoint_of_the_forward_model(method, rtol):
    rng = np.random.default_rng(5)
    n_visits, n_sub, shape = 5, 3, (40, 44)
    model = _smooth_field(rng, (n_sub, *shape))
    residual = _smooth_field(rng, (n_visits, *shape))
    shifts = rng.uniform(-2, 2, size=(n_visits, n_sub, 2))
    forward = forward_models(model, shifts[:, :, None, :], accelerate=1.0, method=method, order=3)
    backward = back_project(residual, shifts, np.ones((n_sub, *shape)), method=method, order=3)
    lhs = np.sum(forward * residual)
    rhs = np.sum(model * backward)
    assert lhs == pytest.approx(rhs, rel=rtol)


def test_fourier_and_spline_agree_on_smooth_images():
    shape = (36, 40)
    rng = np.random.default_rng(6)
    model = np.array([_gaussian(shape, 17 + s, 20 - s, 2.5) * (1 + s) for s in range(3)])
    shifts = rng.uniform(-1.5, 1.5, size=(4, 3, 2, 2))
    spline = forward_models(model, shifts, accelerate=2.0, method="spline", order=3)
    fourier = forward_models(model, shifts, accelerate=2.0, method="fourier", order=3)
    assert np.max(np.abs(spline - fourier)) < 5e-3 * np.max(np.abs(fourier))
    residual = np.array([_gaussian(shape, 18, 19, 2.5) * (v - 1.5) for v in range(4)])
    ones = np.ones((3, *shape))
    spline_back = back_project(residual, shifts[:, :, 0], ones, method="spline", order=3)
    fourier_back = back_project(residual, shifts[:, :, 0], ones, method="fourier", order=3)
    assert np.max(np.abs(spline_back - fourier_back)) < 5e-3 * np.max(np.abs(fourier_back))


# ----------------------------------------------------------------- update


def test_residuals_are_zero_on_bad_pixels_even_if_the_image_is_nan():
    images = np.array([[[1.0, np.nan, 3.0]]])
    templates = np.array([[[0.5, 0.5, np.inf]]])
    good = np.array([[[True, False, True]]])
    np.testing.assert_array_equal(residuals(images, templates, good), [[[0.5, 0.0, 0.0]]])


def test_back_projection_is_a_mean_of_residuals_over_covering_visits():
    rng = np.random.default_rng(7)
    n_visits, shape = 4, (16, 18)
    truth = rng.normal(size=shape)
    good = np.ones((n_visits, *shape), bool)
    shifts = rng.integers(-2, 3, size=(n_visits, 2, 2)).astype(float)
    # each visit's residual is the same image seen through the visit's shift of sub-band 0
    residual = np.array(
        [_slice_shift(truth, int(shifts[v, 0, 0]), int(shifts[v, 0, 1])) for v in range(n_visits)]
    )
    interior = (slice(3, -3), slice(3, -3))
    for weights in (None, np.array([1.0, 2.0, 0.5, 4.0])):
        inverse, _ = subband_weights(good, shifts, method="spline", order=3, visit_weights=weights)
        delta = back_project(
            residual, shifts, inverse, method="spline", order=3, visit_weights=weights
        )
        np.testing.assert_allclose(delta[0][interior], truth[interior], atol=1e-6)


def test_visit_weights_give_a_weighted_mean_and_equal_weights_change_nothing():
    n_visits, shape = 3, (8, 8)
    levels = np.array([1.0, 2.0, 6.0])
    residual = levels[:, None, None] * np.ones((n_visits, *shape))
    good = np.ones((n_visits, *shape), bool)
    shifts = np.zeros((n_visits, 1, 2))
    weights = np.array([3.0, 1.0, 0.0])
    inverse, _ = subband_weights(good, shifts, method="fourier", order=3, visit_weights=weights)
    delta = back_project(
        residual, shifts, inverse, method="fourier", order=3, visit_weights=weights
    )
    np.testing.assert_allclose(delta, (3 * 1.0 + 1 * 2.0) / 4, rtol=1e-6)
    plain_inverse, _ = subband_weights(good, shifts, method="fourier", order=3)
    plain = back_project(residual, shifts, plain_inverse, method="fourier", order=3)
    equal = back_project(
        residual, shifts, plain_inverse, method="fourier", order=3, visit_weights=np.full(3, 7.0)
    )
    np.testing.assert_array_equal(equal, plain)
    np.testing.assert_allclose(plain, 3.0, rtol=1e-6)


def test_update_keeps_the_old_value_where_the_new_one_is_not_finite():
    model = np.array([[[1.0, 2.0, 3.0]]])
    delta = np.array([[[0.5, np.nan, -np.inf]]])
    np.testing.assert_array_equal(update_model(model, delta), [[[1.5, 2.0, 3.0]]])


@pytest.mark.parametrize("gain", [1.0, 3.0])
def test_conditioning_an_unchanged_model_changes_nothing(gain):
    model = np.random.default_rng(8).normal(size=(3, 5, 6))
    np.testing.assert_allclose(condition(model, model, gain), model, rtol=1e-14)


def test_conditioning_averages_with_the_gain():
    model = np.random.default_rng(9).normal(size=(3, 5, 6))
    np.testing.assert_allclose(condition(3 * model, model, 1.0), 2 * model, rtol=1e-14)


def test_model_weights_are_a_normalised_gaussian_around_detections():
    detected = np.zeros((31, 31), bool)
    detected[15, 15] = True
    weights = model_weights(detected, 3.0)
    assert weights.dtype == np.float32
    expected = _gaussian((31, 31), 15, 15, 3.0)
    near = _gaussian((31, 31), 15, 15, 1.0) > 0  # within scipy's 4-sigma truncation
    near = (np.abs(np.mgrid[0:31, 0:31] - 15) <= 12).all(axis=0) & near
    np.testing.assert_allclose(weights[near], expected[near], rtol=1e-5, atol=1e-7)
    assert not model_weights(np.zeros((5, 5), bool), 3.0).any()


def test_model_weights_blend_toward_the_template():
    new = np.array([[[4.0, 4.0]], [[2.0, 2.0]]])
    template = np.array([[10.0, 10.0]])
    weights = np.array([[1.0, 0.25]])
    out = apply_model_weights(new, template, weights, 2)
    np.testing.assert_allclose(out[:, 0, 0], [4.0, 2.0])
    np.testing.assert_allclose(out[:, 0, 1], [0.25 * 4 + 0.75 * 5, 0.25 * 2 + 0.75 * 5])


def test_coadd_is_the_sum_of_the_amplified_planes():
    model = np.random.default_rng(10).normal(size=(3, 4, 5))
    planes, coadd = coadd_from_model(model, 3.0)
    assert planes.dtype == coadd.dtype == np.float32
    mean = model.mean(axis=0)
    np.testing.assert_allclose(planes, 3 * (model - mean) + mean, rtol=1e-5, atol=1e-6)
    # amplification moves flux between planes but keeps their sum
    np.testing.assert_allclose(coadd, model.sum(axis=0), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------- one block


def _block_case(method):
    rng = np.random.default_rng(11)
    shape, n_visits = (32, 32), 5
    truth = np.array([40 * _gaussian(shape, 15, 16, 1.8), 20 * _gaussian(shape, 16, 15, 1.8)])
    shifts = rng.uniform(-1.2, 1.2, size=(n_visits, 2, 1, 2))
    images = forward_models(truth, shifts, accelerate=1.0, method=method, order=3)
    good = np.ones(images.shape, bool)
    inverse, _ = subband_weights(good, shifts[:, :, 0], method=method, order=3)
    return truth, images, good, shifts, inverse


@pytest.mark.parametrize("method", ["spline", "fourier", "sinc"])
def test_the_true_model_is_a_fixed_point(method):
    truth, images, good, shifts, inverse = _block_case(method)
    new = iterate_block(
        truth,
        images,
        good,
        shifts,
        shifts[:, :, 0],
        inverse,
        gain=1.0,
        accelerate=1.0,
        method=method,
        order=3,
        regularize_iterations=0.0,
        regularize_frequency=0.0,
        regularization_width=2,
    )
    assert new.dtype == np.float32
    np.testing.assert_allclose(new, truth, atol=1e-4)


def _regularized_case(regularize_iterations, regularize_frequency):
    """The fourier block case from the mean of its planes, with regularizing settings."""
    truth, images, good, shifts, inverse = _block_case("fourier")
    start = np.repeat(truth.mean(axis=0, keepdims=True), 2, axis=0)
    settings = dict(
        gain=0.7,
        accelerate=3.0,
        method="fourier",
        order=3,
        regularize_iterations=regularize_iterations,
        regularize_frequency=regularize_frequency,
        regularization_width=2,
        background=truth.sum(axis=0) < 1,
    )
    return start, images, good, shifts, inverse, settings


def test_given_templates_are_used_instead_of_recomputed():
    start, images, good, shifts, inverse, settings = _regularized_case(2.0, 4.0)
    recomputed = iterate_block(start, images, good, shifts, shifts[:, :, 0], inverse, **settings)
    templates = forward_models(start, shifts, accelerate=3.0, method="fourier", order=3)
    reused = iterate_block(
        start, images, good, shifts, shifts[:, :, 0], inverse, templates=templates, **settings
    )
    np.testing.assert_array_equal(reused, recomputed)


def test_the_frequency_clamp_reaches_the_regularization():
    start, images, good, shifts, inverse, settings = _regularized_case(0.0, 2.0)
    truth = _block_case("fourier")[0]
    out = {
        clamp: iterate_block(
            start, images, good, shifts, shifts[:, :, 0], inverse, frequency_clamp=clamp, **settings
        )
        for clamp in ("planes", "smoothed")
    }
    assert np.abs(out["planes"] - out["smoothed"]).max() > 1e-3 * truth.max()
    with pytest.raises(ValueError, match="clamp"):
        iterate_block(
            start, images, good, shifts, shifts[:, :, 0], inverse, frequency_clamp="x", **settings
        )


def test_a_two_subband_sky_is_recovered():
    """Two stars of opposite colours seen through 8 visits' DCR; fit from their mean."""
    shape, n_visits, psf = (64, 64), 8, 1.5
    rng = np.random.default_rng(1)
    amplitude = np.linspace(0.6, 1.6, n_visits)
    angle = rng.permutation(np.deg2rad(np.linspace(-70, 70, n_visits)))
    direction = np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    # sub-band edges in units of the visit's amplitude: blue (1, 0), red (0, -1)
    edges = np.array([[1.0, 0.0], [0.0, -1.0]])
    split = np.stack([edges @ [0.75, 0.25], edges @ [0.25, 0.75]], axis=-1)
    shifts = amplitude[:, None, None, None] * split[None, :, :, None] * direction[:, None, None]
    unsplit = amplitude[:, None, None] * edges.mean(axis=1)[None, :, None] * direction[:, None]
    stars = [(26.0, 28.5, (120.0, 40.0)), (38.5, 37.0, (40.0, 120.0))]
    truth = np.zeros((2, *shape))
    images = np.zeros((n_visits, *shape))
    for yc, xc, fluxes in stars:
        for s, flux in enumerate(fluxes):
            truth[s] += flux * _gaussian(shape, yc, xc, psf)
            for v in range(n_visits):
                for dy, dx in shifts[v, s]:
                    images[v] += 0.5 * flux * _gaussian(shape, yc + dy, xc + dx, psf)
    noise = 0.5
    images += rng.normal(0, noise, size=images.shape)
    good = rng.uniform(size=images.shape) > 0.01
    images[~good] = np.nan
    template = np.nanmean(np.where(good, images, np.nan), axis=0)
    detected = template > 9 * noise / np.sqrt(n_visits)
    model, _ = initial_model(template, np.ones(shape), 2)
    inverse, _ = subband_weights(good, unsplit, method="fourier", order=3)
    weights = model_weights(detected, 3.0)
    convergence_mask = np.repeat(detected[None], n_visits, axis=0)

    def error(current):
        planes, _ = coadd_from_model(current, 3.0)
        return np.sqrt(np.mean((planes - truth) ** 2)), planes

    errors = [error(model)[0]]
    metrics, gains = [], []
    for _ in range(10):
        templates = forward_models(model, shifts, accelerate=3.0, method="fourier", order=3)
        significance = significance_image(model, background_noise(model[1], ~detected, border=3))
        metric, _ = convergence_metric(images, templates, good, convergence_mask, significance)
        metrics.append(metric)
        gains.append(calculate_gain(metrics, gains, 1.0, True))
        model = iterate_block(
            model,
            images,
            good,
            shifts,
            unsplit,
            inverse,
            gain=gains[-1],
            accelerate=3.0,
            method="fourier",
            order=3,
            regularize_iterations=2.0,
            regularize_frequency=4.0,
            regularization_width=2,
            background=~detected,
            template_image=template,
            model_weights=weights,
            templates=templates,
        )
        errors.append(error(model)[0])
    _, planes = error(model)
    assert np.all(np.diff(errors) < 0), errors
    assert errors[-1] < 0.7 * errors[0]
    assert np.all(np.diff(metrics) < 0), metrics
    colour = (planes[0] - planes[1]).ravel()
    true_colour = (truth[0] - truth[1]).ravel()
    assert np.corrcoef(colour, true_colour)[0, 1] > 0.9
    for s in range(2):
        assert np.corrcoef(planes[s].ravel(), truth[s].ravel())[0, 1] > 0.9


# ----------------------------------------------------------------- fast paths against loops


def _masked_case(shape=(32, 36), n_visits=5, n_sub=3, seed=30):
    rng = np.random.default_rng(seed)
    model = np.array(
        [
            (20 + 10 * s) * _gaussian(shape, 15 + s, 17 - s, 1.8) + _gaussian(shape, 9, 25, 1.4)
            for s in range(n_sub)
        ]
    )
    model[:, 6:-6, 6:-6] += 0.3 * rng.normal(size=(n_sub, shape[0] - 12, shape[1] - 12))
    shifts = rng.uniform(-1.6, 1.6, size=(n_visits, n_sub, 2, 2))
    shifts[0, 1, 1] = shifts[0, 1, 0]  # one collapsed split
    unsplit = shifts.mean(axis=2)
    good = rng.uniform(size=(n_visits, *shape)) > 0.05
    good[1, :, 20:22] = False  # a bad column pair
    images = rng.normal(50, 5, size=(n_visits, *shape))
    images[~good] = np.nan  # bad pixels hold garbage
    images[2, 3, 4] = np.inf  # and one unflagged non-finite pixel
    return model, images, good, shifts, unsplit


def _straightforward_iteration(model, images, good, shifts, unsplit, inverse, method, weights):
    """Steps 1-4 and 7 written as plain loops over visits and sub-bands with shift_image."""
    planes = amplify(model, 3.0)
    n_visits, n_sub = unsplit.shape[:2]
    relative = np.ones(n_visits) if weights is None else weights / weights.mean()
    total = np.zeros(model.shape)
    for v in range(n_visits):
        template = sum(
            shift_image(planes[s], shifts[v, s], method=method, order=3) for s in range(n_sub)
        )
        with np.errstate(invalid="ignore"):
            residual = np.where(good[v], images[v] - template, 0.0)
        residual[~np.isfinite(residual)] = 0.0
        for s in range(n_sub):
            total[s] += relative[v] * shift_image(
                residual, unsplit[v, s], method=method, order=3, inverse=True
            )
    new = model + total * inverse
    return (0.7 * new + model) / 1.7


@pytest.mark.parametrize(
    ("method", "precision", "rtol"),
    [
        ("spline", None, 1e-12),
        ("fourier", "double", 1e-12),
        ("sinc", "double", 1e-12),
        ("fourier", "single", 2e-6),
        ("sinc", "single", 2e-6),
    ],
)
def test_streamed_iteration_is_the_straightforward_loop(method, precision, rtol):
    model, images, good, shifts, unsplit = _masked_case()
    weights = np.array([1.0, 2.0, 0.5, 1.5, 3.0])
    inverse = np.random.default_rng(31).uniform(0.1, 0.3, size=model.shape).astype(np.float32)
    expected = _straightforward_iteration(
        model, images, good, shifts, unsplit, inverse, method, weights
    )
    settings = dict(
        gain=0.7,
        accelerate=3.0,
        method=method,
        order=3,
        regularize_iterations=0.0,
        regularize_frequency=0.0,
        regularization_width=2,
        visit_weights=weights,
        precision=precision,
    )
    new = iterate_block(model, images, good, shifts, unsplit, inverse, **settings)
    # the output is float32: allow its rounding on top of the method's precision
    scale = np.abs(expected).max()
    np.testing.assert_allclose(new, expected, rtol=0, atol=(rtol + 1e-7) * scale)
    templates = forward_models(
        model, shifts, accelerate=3.0, method=method, order=3, precision=precision
    )
    reused = iterate_block(
        model, images, good, shifts, unsplit, inverse, templates=templates, **settings
    )
    np.testing.assert_array_equal(reused, new)
    # a gain given as a function, asked for once after every template was shown to observe
    seen: dict[int, np.ndarray] = {}
    asked: list[int] = []

    def gain() -> float:
        asked.append(len(seen))
        return 0.7

    settings["gain"] = gain
    observed = iterate_block(
        model,
        images,
        good,
        shifts,
        unsplit,
        inverse,
        observe=lambda v, t: seen.__setitem__(v, t.copy()),
        **settings,
    )
    np.testing.assert_array_equal(observed, new)
    assert asked == [images.shape[0]]
    for v, template in seen.items():
        np.testing.assert_allclose(template, templates[v], rtol=0, atol=(rtol + 1e-7) * scale)


@pytest.mark.parametrize(("method", "precision"), [("fourier", "double"), ("sinc", "single")])
def test_spectral_subband_weights_match_a_direct_loop_for_fractional_shifts(method, precision):
    rng = np.random.default_rng(32)
    n_visits, n_sub, shape = 6, 3, (30, 32)
    good = _holey_mask(rng, (n_visits, *shape))
    good[:, 18:21, :] = False  # rows seen by no visit, and their edges by few
    unsplit = rng.uniform(-2.6, 2.6, size=(n_visits, n_sub, 2))
    weights = np.array([1.0, 0.5, 2.0, 1.0, 1.5, 0.2])
    relative = weights / weights.mean()
    coverage = np.zeros((n_sub, *shape))
    weighted = np.zeros((n_sub, *shape))
    counts = np.zeros((n_sub, *shape), dtype=int)
    for v in range(n_visits):
        for s in range(n_sub):
            shifted = shift_image(good[v].astype(float), -unsplit[v, s], method=method)
            coverage[s] += shifted
            weighted[s] += relative[v] * shifted
            whole = np.rint(-unsplit[v, s]).astype(int)
            counts[s] += np.roll(good[v], tuple(whole), axis=(0, 1))  # periodic, as the method
    covered = np.all(coverage > 1 + 1e-3, axis=0) & np.all(weighted > 0, axis=0)
    inverse, n_image = subband_weights(
        good, unsplit, method=method, order=3, visit_weights=weights, precision=precision
    )
    expected = np.where(covered, 1 / np.where(covered, weighted, 1), 0.0)
    np.testing.assert_allclose(inverse, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(n_image, np.where(covered, counts, 0))
    assert np.any(~covered) and np.any((n_image > 0) & (n_image < n_visits))
    # W_s keeps the ringing of the shifted masks: not clipped to the number of visits
    assert coverage[:, covered].max() > n_visits


def test_spline_subband_weights_are_the_reference_calculation():
    """``calculateNImage``: float32 sum of spline-shifted flags, rint per visit, W > 1."""
    rng = np.random.default_rng(33)
    n_visits, n_sub, shape = 5, 2, (26, 28)
    good = _holey_mask(rng, (n_visits, *shape))
    unsplit = rng.uniform(-2.2, 2.2, size=(n_visits, n_sub, 2))
    weight_sum = np.zeros((n_sub, *shape), dtype=np.float32)
    n_sum = np.zeros((n_sub, *shape), dtype=np.int64)
    for v in range(n_visits):
        flags = good[v].astype(np.float64)
        for s in range(n_sub):
            shifted = ndimage.shift(flags, -unsplit[v, s], order=3, mode="constant")
            weight_sum[s] += shifted
            n_sum[s] += np.rint(shifted).astype(np.int64)
    covered = np.all(weight_sum > 1, axis=0)
    inverse, n_image = subband_weights(good, unsplit, method="spline", order=3)
    np.testing.assert_allclose(
        inverse, np.where(covered, 1 / np.where(covered, weight_sum, 1), 0), rtol=1e-6
    )
    np.testing.assert_array_equal(n_image, np.where(covered, n_sum, 0))


def test_padding_to_a_fast_length_changes_only_the_halo():
    """A prime-sized block (padded for the FFT) matches the same pixels of a bigger block."""
    model, images, good, shifts, unsplit = _masked_case(shape=(96, 96), seed=34)
    images = np.where(good, np.nan_to_num(images, posinf=0.0), 0.0)
    inverse = np.full(model.shape, 0.2, dtype=np.float32)
    settings = dict(
        gain=1.0,
        accelerate=2.0,
        method="sinc",
        order=3,
        regularize_iterations=0.0,
        regularize_frequency=0.0,
        regularization_width=2,
        precision="double",
    )
    whole = iterate_block(model, images, good, shifts, unsplit, inverse, **settings)
    cut = (slice(None), slice(5, 72), slice(9, 80))  # 67 x 71 pixels, primes
    part = iterate_block(
        model[cut], images[cut], good[cut], shifts, unsplit, inverse[cut], **settings
    )
    halo = 2 * (2 + 12)  # twice (largest shift + sinc half width)
    inner = (slice(None), slice(halo, 67 - halo), slice(halo, 71 - halo))
    assert part[inner].size > 0
    np.testing.assert_allclose(part[inner], whole[cut][inner], rtol=1e-6)


def test_single_precision_follows_double_and_bad_precisions_are_refused():
    model, _, _, shifts, _ = _masked_case(seed=35)
    double = forward_models(model, shifts, accelerate=3.0, method="sinc", order=3)
    single = forward_models(
        model, shifts, accelerate=3.0, method="sinc", order=3, precision="single"
    )
    assert np.max(np.abs(single - double)) < 1e-6 * np.abs(double).max()
    with pytest.raises(ValueError, match="precision"):
        forward_models(model, shifts, accelerate=3.0, method="sinc", order=3, precision="half")


@pytest.mark.parametrize("accelerate", [1.0, 3.0])
@pytest.mark.parametrize("order", [0, 1, 3, 5])
def test_spline_templates_of_every_order_are_shifted_amplified_planes(order, accelerate):
    model, _, _, shifts, _ = _masked_case(seed=36)
    planes = amplify(model, accelerate)
    templates = forward_models(model, shifts, accelerate=accelerate, method="spline", order=order)
    for v in range(len(shifts)):
        expected = sum(
            shift_image(planes[s], shifts[v, s], method="spline", order=order)
            for s in range(len(planes))
        )
        np.testing.assert_allclose(templates[v], expected, rtol=0, atol=1e-12 * planes.max())
