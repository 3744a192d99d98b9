"""Block-wise connected components against scipy on the whole array."""

import dask
import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from dcr_dask.graph.labels import component_stats, find_components, map_components
from dcr_dask.kernels.artifacts import count_stats


def _whole_labels(mask):
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True  # 8-connected in (y, x); visits never connect
    return ndimage.label(mask, structure=structure)


@pytest.mark.parametrize("fill", [0.3, 0.55, 0.7])
def test_components_equal_whole_array_labels_whatever_the_chunks(fill):
    rng = np.random.default_rng(1)
    mask = rng.uniform(size=(3, 50, 47)) > fill
    weights = rng.uniform(size=mask.shape)
    reference, count = _whole_labels(mask)
    for chunks in ((2, 13, 11), (1, 50, 47), (3, 7, 20)):
        array = da.from_array(mask, chunks=chunks)
        extra = da.from_array(weights, chunks=chunks)
        with dask.config.set(scheduler="synchronous"):
            components, stats = find_components(array, extra, block_stats=count_stats, n_stats=1)
            ids = map_components(
                components, array, np.arange(components.count), fill=-1, dtype=np.int64
            ).compute()
            again = component_stats(components, array, extra, block_stats=count_stats, n_stats=1)
        assert components.count == count
        # one-to-one with scipy's labels
        pairs = set(zip(ids[mask].tolist(), reference[mask].tolist(), strict=True))
        assert len(pairs) == count and len({p[0] for p in pairs}) == count
        assert (ids[~mask] == -1).all()
        want = ndimage.sum_labels(weights, reference, index=np.arange(1, count + 1))
        order = {r: i for i, r in pairs}
        got = np.array([stats[order[r], 0] for r in range(1, count + 1)])
        np.testing.assert_allclose(got, want)
        np.testing.assert_allclose(again, stats)
        np.testing.assert_array_equal(
            components.pixels[[order[r] for r in range(1, count + 1)]],
            np.bincount(reference.ravel())[1:],
        )


def test_a_streak_across_many_chunks_and_a_corner_touch_are_one_component():
    mask = np.zeros((1, 60, 60), bool)
    for i in range(60):
        mask[0, i, i] = True  # diagonal line: crosses block corners
    mask[0, 0, 40:60] = True
    array = da.from_array(mask, chunks=(1, 10, 10))
    with dask.config.set(scheduler="synchronous"):
        components, _ = find_components(array)
        painted = map_components(components, array, np.array([7] * components.count)).compute()
    assert components.count == 2
    assert sorted(components.pixels.tolist()) == [20, 60]
    assert (painted[mask] == 7).all() and (painted[~mask] == 0).all()


def test_empty_masks_and_mismatched_inputs():
    array = da.zeros((2, 20, 20), dtype=bool, chunks=(1, 10, 10))
    with dask.config.set(scheduler="synchronous"):
        components, stats = find_components(array)
        assert components.count == 0 and stats.shape == (0, 0)
        assert not map_components(components, array, np.zeros(0, bool)).compute().any()
    with pytest.raises(ValueError, match="chunks"):
        find_components(array, da.zeros((2, 20, 20), chunks=(2, 10, 10)))
    with pytest.raises(ValueError, match="one per component"):
        map_components(components, array, np.zeros(3))
