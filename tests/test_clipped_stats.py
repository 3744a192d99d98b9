"""Quantiles and MEANCLIP of whole planes, chunk by chunk, against the in-memory kernels."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from dcr_dask.graph.clipped_stats import (
    WHOLE_PLANE_BYTES,
    plane_clipped_means,
    plane_quantiles,
)
from dcr_dask.kernels.selection import digit_histograms, float_keys, key_values
from dcr_dask.kernels.stack import afw_clipped_mean, quantiles

FRACTIONS = (0.5, 0.25, 0.75, 0.0, 1.0, 0.1)


def _planes(dtype: type) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    values = rng.normal(5.0, 1.0, (4, 60, 70)).astype(dtype)
    values[0, :5] = rng.normal(-3.0, 10.0, (5, 70))  # negative values, a wide tail
    values[1, 3, 3], values[1, 4, 4], values[1, 5, 5] = np.nan, np.inf, 1e6
    values[2] = 4.0  # a constant plane: every order statistic is the same value
    values[3, 10:20, 10:20] = -0.0
    good = rng.random(values.shape) > 0.1
    good[2] = False
    good[2, 0, :3] = True  # three good values only
    return values, good


def _kept(values: np.ndarray, good: np.ndarray, v: int) -> np.ndarray:
    kept = values[v][good[v]].astype(np.float64)
    return kept[np.isfinite(kept)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keys_keep_the_order_of_the_values_and_give_them_back(dtype):
    values = np.array([-np.inf, -1e30, -2.5, -1e-30, -0.0, 0.0, 1e-30, 3.0, 1e30, np.inf], dtype)
    keys = float_keys(values)
    assert np.all(keys[1:] > keys[:-1])
    np.testing.assert_array_equal(key_values(keys, values.dtype), values)
    assert key_values(keys, values.dtype).dtype == values.dtype


#: 0 reads every plane chunk by chunk; the default holds each (small) plane in a task
WAYS = pytest.mark.parametrize("whole_plane_bytes", [0, WHOLE_PLANE_BYTES])


@WAYS
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plane_quantiles_are_those_of_the_whole_plane_exactly(dtype, whole_plane_bytes):
    values, good = _planes(dtype)
    with dask.config.set(scheduler="synchronous"):
        found, counts = plane_quantiles(
            da.from_array(values, chunks=(3, 17, 23)),
            da.from_array(good, chunks=(1, 60, 11)),
            FRACTIONS,
            whole_plane_bytes=whole_plane_bytes,
        )
    assert found.shape == (len(FRACTIONS), 4)
    for v in range(4):
        kept = _kept(values, good, v)
        expected = quantiles(kept[:, None], np.ones((kept.size, 1), bool), FRACTIONS)[:, 0]
        np.testing.assert_array_equal(found[:, v], expected)
        assert counts[v] == kept.size


@WAYS
def test_a_visit_without_good_values_has_nan_quantiles_and_mean(whole_plane_bytes):
    values, good = _planes(np.float32)
    good[1] = False
    chunked = da.from_array(values, chunks=(1, 30, 30))
    with dask.config.set(scheduler="synchronous"):
        found, counts = plane_quantiles(values, good, (0.5,), whole_plane_bytes=whole_plane_bytes)
        means = plane_clipped_means(chunked, good, 3.0, 2, whole_plane_bytes=whole_plane_bytes)
    assert counts[1] == 0 and np.isnan(found[0, 1]) and np.isnan(means[1])
    assert np.isfinite(found[0, [0, 2, 3]]).all() and np.isfinite(means[[0, 2, 3]]).all()


@WAYS
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("n_sigma", "n_iterations"), [(3.0, 2), (2.0, 1), (2.5, 4)])
def test_plane_clipped_means_are_afw_meanclip_of_the_whole_plane(
    dtype, n_sigma, n_iterations, whole_plane_bytes
):
    values, good = _planes(dtype)
    with dask.config.set(scheduler="synchronous"):
        means = plane_clipped_means(
            da.from_array(values, chunks=(2, 25, 25)),
            good,
            n_sigma,
            n_iterations,
            whole_plane_bytes=whole_plane_bytes,
        )
    for v in range(4):
        expected = afw_clipped_mean(_kept(values, good, v), n_sigma, n_iterations)
        np.testing.assert_allclose(means[v], expected, rtol=1e-13)
    # the clipping matters: the wide tail and the outlier are left out
    assert abs(means[0] - 5.0) < 0.1 and abs(means[1] - 5.0) < 0.1
    assert np.nanmean(_kept(values, good, 1)) > 100


def test_digit_histograms_count_only_the_prefix_asked_for():
    values = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    keys = float_keys(values[0])
    good = np.array([[True, True, True, False]])
    first = digit_histograms(values, good, np.zeros((1, 1), np.uint32), 0)
    assert first.shape == (1, 1, 4096) and first.sum() == 3
    head = keys[1] >> np.uint32(20)
    second = digit_histograms(values, good, np.array([[head]], np.uint32), 12)
    # 2.0 and 3.0 share their leading 12 bits (sign, exponent, 3 mantissa bits); 1.0 not
    assert second.sum() == int(np.sum((keys[:3] >> np.uint32(20)) == head))


def test_bad_arguments_are_named():
    values, good = _planes(np.float32)
    with pytest.raises(ValueError, match="outside"):
        plane_quantiles(values, good, (1.5,))
    with pytest.raises(ValueError, match="at least one clipping pass"):
        plane_clipped_means(values, good, 3.0, 0)
    with pytest.raises(ValueError, match="good pixels of shape"):
        plane_quantiles(values, good[:, :10], (0.5,))
    with pytest.raises(ValueError, match="resolved already"):
        digit_histograms(values, good, np.zeros((4, 1), np.uint32), 32)


def test_no_task_holds_a_whole_plane_above_the_budget():
    """Above ``whole_plane_bytes`` every task of the passes holds one chunk: no
    task's input is more than one block of the planes."""
    values, good = _planes(np.float32)
    chunked = da.from_array(values, chunks=(1, 20, 35))
    seen = []
    from dcr_dask.kernels import selection

    original = selection.clip_sums

    def spy(block, *args, **kwargs):
        seen.append(block.shape)
        return original(block, *args, **kwargs)

    import dcr_dask.graph.clipped_stats as module

    with pytest.MonkeyPatch.context() as patch, dask.config.set(scheduler="synchronous"):
        patch.setattr(module, "clip_sums", spy)
        plane_clipped_means(chunked, good, 3.0, 2, whole_plane_bytes=20 * 70 * 5 - 1)
    assert seen and all(shape == (1, 20, 35) for shape in seen)
    # at the budget, one task per visit
    seen.clear()
    with pytest.MonkeyPatch.context() as patch, dask.config.set(scheduler="synchronous"):
        patch.setattr(module, "clip_sums", spy)
        plane_clipped_means(chunked, good, 3.0, 2, whole_plane_bytes=60 * 70 * 5)
    assert not seen
