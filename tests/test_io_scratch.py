"""The fit's scratch store: created whole, written window by window, read back lazily."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from dcr_dask.io.ownership import is_own
from dcr_dask.io.scratch import ScratchModel


def test_windows_land_where_they_belong(tmp_path):
    rng = np.random.default_rng(3)
    start = rng.normal(size=(3, 10, 12)).astype(np.float32)
    scratch = ScratchModel(tmp_path / "model.zarr")
    scratch.create(
        da.from_array(start, chunks=(3, 5, 6)),
        da.zeros((3, 10, 12), dtype=np.uint16, chunks=(3, 5, 6)),
    )
    assert is_own(tmp_path / "model.zarr")
    np.testing.assert_array_equal(scratch.model().compute(), start)
    windows = [(0, 5, 6, 12), (5, 10, 0, 6)]
    pieces = [np.full((3, 5, 6), k + 10.0) for k in range(2)]  # float64: stored as float32
    counts = [np.full((3, 5, 6), k + 1, np.uint16) for k in range(2)]
    scratch.write_windows(
        windows, [da.from_array(p) for p in pieces], [da.from_array(c) for c in counts]
    )
    model, n_image = scratch.model().compute(), scratch.n_image().compute()
    expected = start.copy()
    expected[:, 0:5, 6:12] = 10.0
    expected[:, 5:10, 0:6] = 11.0
    np.testing.assert_array_equal(model, expected)
    assert model.dtype == np.float32 and n_image.dtype == np.uint16
    assert n_image[:, 0:5, 6:12].min() == 1 and n_image[:, 5:10, 0:6].min() == 2
    assert n_image[:, 0:5, 0:6].max() == 0


def test_the_second_buffer_starts_empty_and_is_written_apart(tmp_path):
    start = np.ones((2, 6, 6), np.float32)
    scratch = ScratchModel(tmp_path / "model.zarr")
    scratch.create(
        da.from_array(start, chunks=(2, 3, 3)),
        da.zeros((2, 6, 6), dtype=np.uint16, chunks=(2, 3, 3)),
    )
    np.testing.assert_array_equal(scratch.model(1).compute(), 0.0)
    assert scratch.model(1).chunks == scratch.model(0).chunks
    piece = np.full((2, 3, 3), 5.0, np.float32)
    scratch.write_windows(
        [(0, 3, 3, 6)],
        [da.from_array(piece)],
        [da.from_array(np.ones((2, 3, 3), np.uint16))],
        buffer=1,
    )
    np.testing.assert_array_equal(scratch.model(0).compute(), start)
    assert scratch.model(1).compute()[:, 0:3, 3:6].min() == 5.0
    with pytest.raises(ValueError, match="buffers 0 and 1, not 2"):
        scratch.model(2)


def test_a_blocks_prepared_inputs_are_kept_whole_and_read_back(tmp_path):
    scratch = ScratchModel(tmp_path / "model.zarr")
    scratch.create(
        da.zeros((2, 4, 4), dtype=np.float32, chunks=(2, 2, 2)),
        da.zeros((2, 4, 4), dtype=np.uint16, chunks=(2, 2, 2)),
    )
    prepared = {
        "images": np.arange(48, dtype=np.float32).reshape(3, 4, 4),
        "good": np.eye(4, dtype=bool)[None].repeat(3, 0),
        "n_image": np.ones((2, 4, 4), np.uint16),
    }
    assert not scratch.has_inputs((1, 0))
    assert scratch.save_inputs((1, 0), prepared) is prepared
    assert scratch.has_inputs((1, 0)) and not scratch.has_inputs((0, 1))
    back = scratch.load_inputs((1, 0))
    assert sorted(back) == sorted(prepared)
    for name, array in prepared.items():
        assert back[name].dtype == array.dtype
        np.testing.assert_array_equal(back[name], array)
    # nothing half-written is left beside it, and the model store still reads
    assert [p.name for p in (tmp_path / "model.zarr" / "fit_inputs").iterdir()] == ["1_0.npz"]
    np.testing.assert_array_equal(scratch.model().compute(), 0.0)
