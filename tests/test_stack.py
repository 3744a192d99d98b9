"""Stacking kernels against a direct per-pixel loop."""

import numpy as np

from dcr_dask.stack import weighted_mean


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
