"""NpzWriter: an archive written in pieces reads back as numpy.savez_compressed's."""

import numpy as np
import pytest

from dcr_dask.io.npz import NpzWriter


def test_members_written_in_pieces_read_back_like_savez_compressed(tmp_path):
    rng = np.random.default_rng(1)
    stack = rng.normal(size=(3, 5, 4)).astype(np.float32)
    flags = rng.uniform(size=(3, 5, 4)) > 0.5
    with NpzWriter(tmp_path / "pieces.npz") as npz:
        npz.add("name", np.array("dcr_dask"))
        with npz.member("stack", stack.shape, np.float32) as write:
            for plane in stack.astype(np.float64):  # cast back to the member's dtype
                write(plane)
        with npz.member("flags", flags.shape, bool) as write:
            write(flags[:1])
            write(flags[1:])
    np.savez_compressed(tmp_path / "whole.npz", name=np.array("dcr_dask"), stack=stack, flags=flags)
    with np.load(tmp_path / "pieces.npz") as pieces, np.load(tmp_path / "whole.npz") as whole:
        assert sorted(pieces.files) == sorted(whole.files)
        for key in whole.files:
            assert pieces[key].dtype == whole[key].dtype
            np.testing.assert_array_equal(pieces[key], whole[key])


def test_a_member_short_of_its_shape_is_an_error(tmp_path):
    with (
        NpzWriter(tmp_path / "short.npz") as npz,
        pytest.raises(ValueError, match="got 20 of"),
        npz.member("stack", (2, 5, 4), np.float32) as write,
    ):
        write(np.zeros((5, 4)))
