"""The halo wrapper gives what the hand-written overlap/map/trim it replaced gave."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from dcr_dask.graph.overlap import map_yx_overlap, yx_depth

#: Chunks thinner than the halo (3) on x: overlap() merges them, the wrapper restores them.
CHUNKS = (2, 7, (5, 2, 6))


def _box_sum(block: np.ndarray) -> np.ndarray:
    """A 7 x 7 box sum on y, x: depends on the halo (3 px) around every pixel."""
    size = (1,) * (block.ndim - 2) + (7, 7)
    return ndimage.uniform_filter(block.astype(np.float64), size=size, mode="constant") * 49


def _dilate(block: np.ndarray) -> np.ndarray:
    structure = np.zeros((3, 7, 7), bool)
    structure[1] = True
    return ndimage.binary_dilation(block, structure=structure)


@pytest.fixture
def cube() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.normal(size=(4, 13, 13)).astype(np.float32)


def _no_grown_axis(ndim: int, boundary: object) -> dict[int, object]:
    return {axis: boundary if axis >= ndim - 2 else "none" for axis in range(ndim)}


@pytest.mark.parametrize("boundary", ["reflect", 0, np.nan, "none"])
def test_same_as_map_overlap_with_each_boundary(cube: np.ndarray, boundary: object) -> None:
    array = da.from_array(cube, chunks=CHUNKS)
    with dask.config.set(scheduler="synchronous"):
        expected = da.map_overlap(
            _box_sum,
            array,
            depth=yx_depth(3, 3),
            boundary=_no_grown_axis(3, boundary),
            dtype=np.float64,
        ).rechunk(array.chunks)
        found = map_yx_overlap(_box_sum, array, halo=3, boundary=boundary, dtype=np.float64)
        assert found.chunks == array.chunks
        np.testing.assert_array_equal(found.compute(), expected.compute())
    if boundary == 0:  # and both are the whole-array filter with zeros beyond the edges
        np.testing.assert_allclose(found.compute(), _box_sum(cube), rtol=1e-6, atol=1e-5)


def test_a_boolean_mask_with_false_beyond_the_edges() -> None:
    mask = np.zeros((2, 12, 12), bool)
    mask[:, [0, 5, 11], [11, 6, 0]] = True
    array = da.from_array(mask, chunks=(1, 4, 5))
    found = map_yx_overlap(_dilate, array, halo=3, boundary=False, dtype=bool)
    assert found.chunks == array.chunks
    np.testing.assert_array_equal(found.compute(), _dilate(mask))


def test_several_arrays_and_keyword_arguments(cube: np.ndarray) -> None:
    def weighted(image: np.ndarray, weight: np.ndarray, scale: float) -> np.ndarray:
        return scale * _box_sum(image * weight)

    weight = np.abs(cube[::-1]) + 1
    image = da.from_array(cube, chunks=CHUNKS)
    found = map_yx_overlap(
        weighted,
        image,
        da.from_array(weight, chunks=CHUNKS),
        halo=3,
        boundary=0,
        dtype=np.float64,
        scale=2.0,
    )
    np.testing.assert_allclose(found.compute(), 2 * _box_sum(cube * weight), rtol=1e-6, atol=1e-4)


def test_halo_zero_maps_the_chunks_as_they_are(cube: np.ndarray) -> None:
    array = da.from_array(cube, chunks=CHUNKS)
    found = map_yx_overlap(np.negative, array, halo=0, boundary="reflect", dtype=np.float32)
    assert found.chunks == array.chunks
    np.testing.assert_array_equal(found.compute(), -cube)


def test_whole_arrays_follow_the_leading_chunks(cube: np.ndarray) -> None:
    """Per-visit kernels, as PSF matching passes them (the old blockwise by hand)."""
    kernels = np.random.default_rng(4).random((4, 5, 5))
    kernels /= kernels.sum(axis=(1, 2), keepdims=True)

    def convolve(block: np.ndarray, stack: np.ndarray) -> np.ndarray:
        return np.stack(
            [ndimage.convolve(b, k, mode="constant") for b, k in zip(block, stack, strict=True)]
        )

    array = da.from_array(cube, chunks=CHUNKS)
    stack = da.from_array(kernels, chunks=(CHUNKS[0], 5, 5))
    depth = {0: 0, 1: 2, 2: 2}
    edges = {0: "none", 1: "reflect", 2: "reflect"}
    grown = da.overlap.overlap(array, depth=depth, boundary=edges)
    by_hand = da.blockwise(
        convolve, "vyx", grown, "vyx", stack, "vab", concatenate=True, dtype=np.float64
    )
    expected = da.overlap.trim_internal(by_hand, depth, boundary=edges).rechunk(array.chunks)
    found = map_yx_overlap(
        convolve, array, halo=2, boundary="reflect", dtype=np.float64, whole=[stack]
    )
    assert found.chunks == array.chunks
    np.testing.assert_array_equal(found.compute(), expected.compute())
    with pytest.raises(ValueError, match="leading_chunks"):
        map_yx_overlap(
            convolve, array, halo=2, boundary=0, dtype=float, whole=[stack], leading_chunks=((1,),)
        )


def test_new_leading_axis_and_block_info(cube: np.ndarray) -> None:
    """Sub-band planes in, visits out, each chunk knowing where it is (the templates)."""
    planes = da.from_array(cube, chunks=((4,), 7, (5, 2, 6)))

    def block(grown: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        _, i, j = block_info[0]["chunk-location"]
        total = _box_sum(grown).sum(axis=0)
        return np.stack([total, total + 10 * i + j]).astype(np.float32)

    depth = {0: 0, 1: 3, 2: 3}
    grown = da.overlap.overlap(planes, depth=depth, boundary=0)
    by_hand = grown.map_blocks(block, chunks=((2,), *grown.chunks[1:]), dtype=np.float32)
    expected = da.overlap.trim_internal(by_hand, depth, boundary=0).rechunk(
        ((2,), *planes.chunks[1:])
    )
    found = map_yx_overlap(
        block, planes, halo=3, boundary=0, dtype=np.float32, leading_chunks=((2,),)
    )
    assert found.chunks == ((2,), *planes.chunks[1:])
    np.testing.assert_array_equal(found.compute(), expected.compute())
