"""Convergence metric against a direct pixel loop; the reference's gain tests; the
stopping rules on scripted histories, checked against the reference's loop counts."""

import math

import numpy as np
import pytest

from dcr_dask.kernels.convergence import (
    calculate_gain,
    convergence_metric,
    should_stop,
    significance_image,
)

# ----------------------------------------------------------------- significance and metric


def test_significance_is_reference_plus_three_sigma():
    model = np.array([[[1.0, -3.0]], [[3.0, -1.0]]])
    np.testing.assert_allclose(significance_image(model, 0.5), [[3.5, 3.5]])


def test_significance_of_an_empty_model_is_one():
    np.testing.assert_array_equal(significance_image(np.zeros((3, 4, 5)), 0.0), np.ones((4, 5)))


def _direct_metric(images, templates, good, mask, significance):
    per_visit = []
    for v in range(images.shape[0]):
        numerator = denominator = 0.0
        n = 0
        for y in range(images.shape[1]):
            for x in range(images.shape[2]):
                diff = abs(images[v, y, x] - templates[v, y, x]) * significance[y, x]
                ref = abs(images[v, y, x] + templates[v, y, x]) * significance[y, x] / 2
                if math.isfinite(diff) and good[v, y, x] and mask[v % mask.shape[0], y, x]:
                    numerator += diff
                    denominator += ref
                    n += 1
        per_visit.append(numerator / denominator if n else 0.0)
    return sum(per_visit) / len(per_visit), per_visit


@pytest.mark.parametrize("per_visit_mask", [True, False])
def test_metric_matches_a_direct_loop(per_visit_mask):
    rng = np.random.default_rng(4)
    shape = (4, 9, 11)
    images = rng.normal(10, 3, size=shape)
    templates = images + rng.normal(0, 1, size=shape)
    images[0, 2, 3] = np.nan  # excluded: not finite
    templates[1, 4, 4] = np.inf
    good = rng.uniform(size=shape) > 0.2
    mask = rng.uniform(size=(shape[0] if per_visit_mask else 1, *shape[1:])) > 0.5
    mask[3 % mask.shape[0]] = False  # one visit (or all) without pixels
    significance = rng.uniform(0.5, 2.0, size=shape[1:])
    metric, per_visit = convergence_metric(images, templates, good, mask, significance)
    expected, expected_per_visit = _direct_metric(images, templates, good, mask, significance)
    np.testing.assert_allclose(per_visit, expected_per_visit, rtol=1e-12)
    assert metric == pytest.approx(expected, rel=1e-12)
    assert per_visit[3] == 0.0


def test_metric_without_valid_pixels_is_zero():
    images = np.ones((2, 5, 5))
    metric, per_visit = convergence_metric(
        images, images, np.zeros((2, 5, 5), bool), np.ones((1, 5, 5), bool), np.ones((5, 5))
    )
    assert metric == 0.0
    np.testing.assert_array_equal(per_visit, [0.0, 0.0])


def test_metric_of_a_perfect_fit_is_zero_and_of_no_visits_one():
    images = np.random.default_rng(0).uniform(1, 2, size=(3, 6, 6))
    ones = np.ones((1, 6, 6), bool)
    assert convergence_metric(images, images, ones.repeat(3, 0), ones, np.ones((6, 6)))[0] == 0.0
    empty = np.zeros((0, 6, 6))
    assert convergence_metric(empty, empty, empty.astype(bool), ones, np.ones((6, 6)))[0] == 1.0


# ----------------------------------------------------------------- gain (reference tests)

BASE_GAIN = 0.5


def _perfect_history(gain):
    """Metrics of a fit limited only by its gain: each step closes 1/(1 + gain) of the gap to 0."""
    history = [0.2]
    for i in range(2):
        history.append(history[i] / (gain + 1))
    return history


def test_unbalanced_lists_raise():
    with pytest.raises(ValueError, match="one element longer"):
        calculate_gain([1, 2], [1, 2, 3, 4], BASE_GAIN, True)


def test_no_progressive_gain_returns_the_base():
    gains = [BASE_GAIN, BASE_GAIN]
    assert calculate_gain(_perfect_history(BASE_GAIN), gains, BASE_GAIN, False) == BASE_GAIN
    assert gains == [BASE_GAIN, BASE_GAIN], "the list is not modified"


def test_first_two_steps_use_the_base_gain():
    history = _perfect_history(BASE_GAIN)
    assert calculate_gain(history[:1], [], BASE_GAIN, True) == BASE_GAIN
    assert calculate_gain(history[:2], [BASE_GAIN], BASE_GAIN, True) == BASE_GAIN


def test_perfect_convergence_raises_the_gain_halfway_to_one():
    gain = calculate_gain(_perfect_history(BASE_GAIN), [BASE_GAIN] * 2, BASE_GAIN, True)
    assert gain == pytest.approx((1 + BASE_GAIN) / 2)


def test_too_fast_convergence_lowers_the_gain():
    wrong_gain = 1.0
    history = _perfect_history(wrong_gain)
    # with a predicted final metric of 0 the formula reduces to this
    expected = (BASE_GAIN + (1 + BASE_GAIN) / (1 + wrong_gain)) / 2
    gain = calculate_gain(history, [BASE_GAIN] * 2, BASE_GAIN, True)
    assert gain == pytest.approx(expected)
    assert gain < wrong_gain


def test_gain_uses_at_most_the_last_four_estimates():
    # an early erratic step must stop mattering once it falls out of the window
    history = [1.0, 0.2, 0.9, 0.5, 0.3, 0.2, 0.15, 0.12]
    gains = [0.5] * 7
    changed = [1.0, 0.9, 0.9, 0.5, 0.3, 0.2, 0.15, 0.12]
    assert calculate_gain(history, gains, 0.1, True) == calculate_gain(changed, gains, 0.1, True)
    assert calculate_gain(history[:5], gains[:4], 0.1, True) != calculate_gain(
        changed[:5], gains[:4], 0.1, True
    )


# ----------------------------------------------------------------- stopping rules


def _reference_loop(metrics, min_iter, max_iter, threshold, use_convergence=True):
    """The reference's subregion loop, transcribed as a state machine over scripted metrics."""
    k, check, kept, n = 0, 1.0, [metrics[0]], 0
    while check > threshold or k <= min_iter:
        n += 1
        if use_convergence:
            metric = metrics[n]
            if metric == 0:
                return n, "no data"
            check = (kept[-1] - metric) / metric
            if check < 0 and k > min_iter:
                return n, "diverged"
            kept.append(metric)
        if k > max_iter:
            return n, "max iterations"
        k += 1
    return n, "converged"


def _run(metrics, use_convergence=True, min_iter=3, max_iter=9, threshold=1e-3):
    for n in range(1, len(metrics)):
        stop, reason = should_stop(
            metrics[: n + 1],
            threshold=threshold,
            min_iter=min_iter,
            max_iter=max_iter,
            use_convergence=use_convergence,
        )
        if stop:
            return n, reason
    raise AssertionError("never stopped")


SCRIPTS = {
    "converges": [1.0, 0.5, 0.3, 0.2, 0.15, 0.1499, 0.1499, 0.1499],
    "diverges": [1.0, 0.5, 0.3, 0.2, 0.15, 0.14, 0.16, 0.1],
    "slowly improves": [1.0 / (1 + 0.1 * i) for i in range(20)],
    "no data": [1.0, 0.5, 0.0, 0.1],
    "flat from the start": [0.4] * 12,
    "worse at min_iter + 1": [1.0, 0.5, 0.4, 0.41, 0.42, 0.43],
}


@pytest.mark.parametrize("name", SCRIPTS)
def test_stopping_matches_the_reference_loop(name):
    metrics = SCRIPTS[name]
    assert _run(metrics) == _reference_loop(metrics, 3, 9, 1e-3)


def test_scripted_reasons_and_counts():
    assert _run(SCRIPTS["converges"]) == (5, "converged")
    assert _run(SCRIPTS["diverges"]) == (6, "diverged")
    assert _run(SCRIPTS["slowly improves"]) == (11, "max iterations")  # max_iter + 2
    assert _run(SCRIPTS["no data"]) == (2, "no data")
    # the minimum number of iterations is respected even when nothing changes
    assert _run(SCRIPTS["flat from the start"]) == (4, "converged")  # min_iter + 1
    # a worse metric before min_iter + 2 iterations is not a divergence
    assert _run(SCRIPTS["worse at min_iter + 1"]) == (4, "converged")


def test_without_convergence_the_fit_runs_to_the_maximum():
    metrics = [float("nan")] * 20
    assert _run(metrics, use_convergence=False) == (11, "max iterations")
    assert _reference_loop([1.0] * 20, 3, 9, 1e-3, use_convergence=False) == (11, "max iterations")


def test_nothing_stops_before_the_first_iteration():
    decision = should_stop([0.3], threshold=1e-3, min_iter=0, max_iter=0, use_convergence=True)
    assert decision == (False, "")


def test_a_minimum_above_the_maximum_leaves_only_the_maximum():
    # the reference does not refuse minNumIter > maxNumIter: no divergence or convergence
    # stop can happen, and the fit runs max_iter + 2 iterations (dcr_dask's default
    # minNumIter = 30 with a user's maxNumIter = 3 gives the 5 iterations asked for)
    metrics = SCRIPTS["diverges"] + [0.2] * 4
    assert _run(metrics, min_iter=30, max_iter=3) == (5, "max iterations")
    assert _reference_loop(metrics, 30, 3, 1e-3) == (5, "max iterations")
