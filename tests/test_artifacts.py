"""CompareWarp's per-footprint tests and variance rescaling, against written-out rules."""

import numpy as np
import pytest

from dcr_dask.kernels.artifacts import (
    SNR_EDGES,
    effective_max_epochs,
    epoch_stats,
    prefilter_keep,
    snr_histogram,
    transient,
    variance_scale_from_histogram,
)
from dcr_dask.kernels.stack import IQR_TO_SIGMA


def test_effective_max_epochs_is_the_broken_line():
    # maxNumEpochs 2, low 0.4, high 0.03: min(0.4 N, 2 + 0.03 N), truncated
    got = effective_max_epochs(np.array([1.0, 4.0, 5.0, 10.0, 100.0, 1000.0]), 2, 0.4, 0.03)
    assert got.tolist() == [0, 1, 2, 2, 5, 32]


def test_transient_needs_more_than_the_spatial_threshold_of_pixels_in_few_epochs():
    # Three footprints over 10 epochs (columns: epoch count 0..10); N = 10 everywhere,
    # so e_max = 2.
    histogram = np.zeros((3, 11))
    histogram[0, 1] = 10  # every pixel seen once: transient
    histogram[1, [1, 5]] = [5, 5]  # exactly half: not above 0.5
    histogram[2, [2, 9]] = [6, 4]
    sum_n = histogram.sum(axis=1) * 10
    got = transient(
        histogram,
        sum_n,
        max_num_epochs=2,
        fraction_low=0.4,
        fraction_high=0.03,
        spatial_threshold=0.5,
    )
    assert got.tolist() == [True, False, True]
    # With few good epochs (N = 2) e_max drops to 0: nothing is transient.
    assert not transient(
        histogram,
        histogram.sum(axis=1) * 2,
        max_num_epochs=2,
        fraction_low=0.4,
        fraction_high=0.03,
        spatial_threshold=0.5,
    ).any()


def test_prefilter_keeps_footprints_with_enough_good_pixels():
    got = prefilter_keep(np.array([100, 100, 100]), np.array([5, 6, 100]), 0.05)
    assert got.tolist() == [False, True, True]


def test_epoch_stats_match_a_loop():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(2, 6, 7))
    epoch = rng.integers(0, 4, size=labels.shape)
    n_epochs = rng.integers(0, 4, size=labels.shape)
    outside = rng.uniform(size=labels.shape) > 0.5
    got = epoch_stats(labels, 3, epoch, n_epochs, outside, max_epochs=3)
    for label in (1, 2, 3):
        sel = labels == label
        assert got[label - 1, :4].tolist() == np.bincount(epoch[sel], minlength=4).tolist()
        assert got[label - 1, 4] == n_epochs[sel].sum()
        assert got[label - 1, 5] == outside[sel].sum()


def test_variance_scale_from_histogram_recovers_the_misstated_variance():
    rng = np.random.default_rng(2)
    image = rng.normal(0.0, 1.5, size=(2, 300, 300))
    variance = np.ones_like(image)
    good = np.ones(image.shape, bool)
    good[1, :150] = False
    image[0, :5, :5] = 1e6  # far outliers land in the overflow column
    counts = snr_histogram(image, variance, good)
    assert counts.shape == (2, len(SNR_EDGES) + 1)
    assert counts[0].sum() == 300 * 300 and counts[1].sum() == 150 * 300
    for v in range(2):
        sample = image[v][good[v]]
        q1, q3 = np.percentile(sample, [25, 75])
        exact = (IQR_TO_SIGMA * (q3 - q1)) ** 2
        assert variance_scale_from_histogram(counts[v]) == pytest.approx(exact, rel=2e-3)
        assert variance_scale_from_histogram(counts[v]) == pytest.approx(2.25, rel=0.03)
    assert np.isnan(variance_scale_from_histogram(np.zeros(len(SNR_EDGES) + 1)))
