"""Stacking kernels against direct per-pixel loops written from afw's description."""

import math

import numpy as np
import pytest

from dcr_dask.kernels.stack import (
    IQR_TO_SIGMA,
    StackSettings,
    afw_clipped_mean,
    clipped_mean,
    quantiles,
    stack_block,
    weighted_mean,
)

SAT, BAD, NO_DATA, CLIPPED, REJECTED, DETECTED, NOT_DEBLENDED = (1, 2, 4, 8, 16, 32, 64)


def test_weighted_mean_matches_a_pixel_loop():
    rng = np.random.default_rng(5)
    images = rng.normal(size=(4, 5, 6))
    variances = rng.uniform(0.5, 2.0, size=(4, 5, 6))
    good = rng.uniform(size=(4, 5, 6)) > 0.3
    good[:, 0, 0] = False
    weights = np.array([1.0, 2.0, 0.5, 3.0])
    mean, var, n = weighted_mean(images, variances, good, weights)
    for y in range(5):
        for x in range(6):
            use = [v for v in range(4) if good[v, y, x]]
            assert n[y, x] == len(use)
            if not use:
                assert mean[y, x] == 0 and np.isinf(var[y, x])
                continue
            wsum = sum(weights[v] for v in use)
            expected = sum(weights[v] * images[v, y, x] for v in use) / wsum
            expected_var = sum(weights[v] ** 2 * variances[v, y, x] for v in use) / wsum**2
            np.testing.assert_allclose(mean[y, x], expected, rtol=1e-5)
            np.testing.assert_allclose(var[y, x], expected_var, rtol=1e-5)


# ----------------------------------------------------------------------------- a direct loop


def _percentile(sorted_values, fraction):
    """afw's ``percentile``: linear interpolation at index fraction·(n - 1)."""
    n = len(sorted_values)
    if n == 1:
        return sorted_values[0]
    index = fraction * (n - 1)
    low = int(index)
    high = min(low + 1, n - 1)
    return (low + 1 - index) * sorted_values[low] + (index - low) * sorted_values[high]


def _moments(xs, ws):
    """Weighted mean and de-biased weighted variance, written out."""
    sw = sum(ws)
    sw2 = sum(w * w for w in ws)
    mean = sum(w * x for w, x in zip(ws, xs, strict=True)) / sw
    if sw * sw == sw2:
        return mean, math.nan
    biased = sum(w * (x - mean) ** 2 for w, x in zip(ws, xs, strict=True)) / sw
    return mean, biased * sw * sw / (sw * sw - sw2)


def reference_stack_pixel(x, var, mask, w, s):
    """One output pixel of afw's statisticsStack as AssembleCoadd configures it."""
    mask = [m & ~s.remove_mask for m in mask]
    good = [
        i
        for i in range(len(x))
        if mask[i] & s.bad_mask == 0 and math.isfinite(x[i]) and math.isfinite(var[i])
    ]
    rejected = [i for i in range(len(x)) if i not in good]
    out_mask = 0
    for i in good:
        out_mask |= mask[i]
    for bit, threshold in s.propagation:
        lost = sum(w[i] for i in rejected if mask[i] >> bit & 1)
        total = sum(w[i] for i in good) + lost
        if total > 0 and lost / total > threshold:
            out_mask |= 1 << bit
    for source, target in s.rejection_map:
        if any(mask[i] & source for i in rejected):
            out_mask |= target
    if not good:
        return 0.0, math.inf, out_mask | s.no_data_mask, 0
    values = sorted(x[i] for i in good)
    kept = list(good)
    if s.statistic == "MEDIAN":
        value = _percentile(values, 0.5)
    elif s.statistic == "MEANCLIP":
        median = _percentile(values, 0.5)
        iqr = _percentile(values, 0.75) - _percentile(values, 0.25)
        mean = spread = math.nan
        for it in range(s.clip_iter):
            spread = 0.0 if spread < 0 else spread
            center = median if it == 0 else mean
            half = (
                s.sigma_clip * math.sqrt(spread)
                if it > 0 and len(good) > 1
                else (s.sigma_clip * IQR_TO_SIGMA * iqr)
            )
            if math.isnan(center) or math.isnan(half):
                mean = math.nan
                break
            kept = [i for i in good if abs(x[i] - center) <= half]
            if kept:
                mean, spread = _moments([x[i] for i in kept], [w[i] for i in kept])
            else:
                mean = spread = math.nan
        value = mean
        if len(kept) < len(good):
            out_mask |= s.clipped_mask
    else:
        value = _moments([x[i] for i in good], [w[i] for i in good])[0]
    if not math.isfinite(value):
        return 0.0, math.inf, out_mask | s.no_data_mask, len(good)
    ws = [w[i] for i in kept]
    sw = sum(ws)
    if s.calc_error_from_input_variance:
        variance = sum(w[i] ** 2 * var[i] for i in kept) / sw**2
    else:
        spread = _moments([x[i] for i in kept], ws)[1]
        variance = spread * sum(wi * wi for wi in ws) / sw**2
    if s.statistic == "MEDIAN":
        variance *= math.pi / 2
    if not math.isfinite(variance):
        variance = math.inf
    return value, variance, out_mask, len(good)


def _random_stack(seed, n_visits=7, shape=(6, 5)):
    rng = np.random.default_rng(seed)
    images = rng.normal(10.0, 1.0, size=(n_visits, *shape))
    images[rng.uniform(size=images.shape) < 0.1] += 40.0  # outliers to clip
    variances = rng.uniform(0.5, 2.0, size=images.shape)
    masks = np.zeros(images.shape, np.int32)
    masks[rng.uniform(size=images.shape) < 0.15] |= SAT
    masks[rng.uniform(size=images.shape) < 0.1] |= BAD
    masks[rng.uniform(size=images.shape) < 0.2] |= DETECTED
    masks[rng.uniform(size=images.shape) < 0.2] |= NOT_DEBLENDED
    masks[:, 0, 0] |= NO_DATA  # no good input at all
    masks[1:, 0, 1] |= NO_DATA  # a single good input
    images[2, 1, 1] = np.nan  # a non-finite input is rejected
    weights = rng.uniform(0.5, 2.0, size=n_visits)
    return images, variances, masks, weights


SETTINGS = [
    StackSettings(statistic="MEAN", bad_mask=SAT | BAD | NO_DATA, no_data_mask=NO_DATA),
    StackSettings(
        statistic="MEANCLIP",
        sigma_clip=2.5,
        clip_iter=3,
        bad_mask=NO_DATA | BAD | SAT,
        remove_mask=NOT_DEBLENDED,
        propagation=((0, 0.1),),
        rejection_map=((BAD | SAT, REJECTED),),
        clipped_mask=CLIPPED,
        no_data_mask=NO_DATA,
    ),
    StackSettings(
        statistic="MEANCLIP",
        sigma_clip=3.0,
        clip_iter=2,
        calc_error_from_input_variance=False,
        bad_mask=NO_DATA,
        clipped_mask=CLIPPED,
        no_data_mask=NO_DATA,
    ),
    StackSettings(
        statistic="MEDIAN", bad_mask=NO_DATA | BAD, propagation=((0, 0.3),), no_data_mask=NO_DATA
    ),
    StackSettings(
        statistic="MEDIAN",
        calc_error_from_input_variance=False,
        bad_mask=NO_DATA,
        no_data_mask=NO_DATA,
    ),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: s.statistic)
def test_stack_block_matches_a_direct_loop(settings):
    for seed in (0, 1):
        images, variances, masks, weights = _random_stack(seed)
        image, variance, mask, n_image = stack_block(images, variances, masks, weights, settings)
        assert image.dtype == np.float32 and mask.dtype == np.int32 and n_image.dtype == np.uint16
        for y in range(images.shape[1]):
            for x in range(images.shape[2]):
                want = reference_stack_pixel(
                    images[:, y, x].tolist(),
                    variances[:, y, x].tolist(),
                    masks[:, y, x].tolist(),
                    weights.tolist(),
                    settings,
                )
                np.testing.assert_allclose(image[y, x], want[0], rtol=1e-6, atol=1e-6)
                np.testing.assert_allclose(variance[y, x], want[1], rtol=1e-5)
                assert mask[y, x] == want[2], (y, x)
                assert n_image[y, x] == want[3]


def test_mask_rules_on_a_hand_made_pixel():
    settings = SETTINGS[1]
    images = np.array([1.0, 1.1, 0.9, 1.0, 50.0])[:, None, None]
    variances = np.ones_like(images)
    masks = np.array([DETECTED | NOT_DEBLENDED, 0, SAT, 0, 0], np.int32)[:, None, None]
    weights = np.ones(5)
    image, variance, mask, n_image = stack_block(images, variances, masks, weights, settings)
    # SAT input rejected (weight fraction 1/5 > 0.1): SAT propagated and REJECTED set;
    # the outlier is sigma-clipped: CLIPPED; NOT_DEBLENDED removed; DETECTED kept.
    assert mask[0, 0] == SAT | REJECTED | CLIPPED | DETECTED
    assert n_image[0, 0] == 4
    np.testing.assert_allclose(image[0, 0], 1.0333333, rtol=1e-6)
    np.testing.assert_allclose(variance[0, 0], 1.0 / 3.0, rtol=1e-6)


def test_afw_clipped_mean_of_a_sample():
    values = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    # median 3, IQR 2: pass 0 keeps |x - 3| <= 2.5·0.7413·2 = 3.71 -> 1..4 (mean 2.5);
    # pass 1 keeps |x - 2.5| <= 2.5·std(1..4) = 3.23 -> the same.
    assert afw_clipped_mean(values, 2.5, 2) == pytest.approx(2.5)
    assert np.isnan(afw_clipped_mean(np.array([]), 3.0, 2))
    assert afw_clipped_mean(np.array([7.0]), 3.0, 3) == 7.0


def test_clipped_mean_undefined_cases_are_nan():
    values = np.array([[1.0, 5.0], [1.0, 5.0], [9.0, 5.0]])
    good = np.array([[True, False], [False, False], [False, False]])
    mean, kept = clipped_mean(values, good, np.ones((3, 1)), 3.0, 2)
    assert mean[0] == 1.0 and kept[0, 0]
    assert np.isnan(mean[1]) and not kept[:, 1].any()


def test_quantiles_agree_with_numpy():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(9, 20))
    good = rng.uniform(size=values.shape) > 0.3
    good[:, 0] = True
    got = quantiles(values, good, (0.25, 0.5, 0.75))
    for j in range(values.shape[1]):
        sample = values[good[:, j], j]
        if sample.size:
            np.testing.assert_allclose(got[:, j], np.percentile(sample, [25, 50, 75]), atol=1e-12)
        else:
            assert np.isnan(got[:, j]).all()


def test_bad_settings_are_rejected_with_the_field_name():
    with pytest.raises(ValueError, match="statistic = 'MODE'"):
        StackSettings(statistic="MODE")
    with pytest.raises(ValueError, match="clipIter"):
        StackSettings(statistic="MEANCLIP", clip_iter=0)
    with pytest.raises(ValueError, match="maskPropagationThresholds"):
        StackSettings(propagation=((40, 0.1),))
    images, variances, masks, weights = _random_stack(0)
    with pytest.raises(ValueError, match="weights"):
        stack_block(images, variances, masks, weights[:3], SETTINGS[0])
