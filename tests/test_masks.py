"""Mask-plane layouts and remapping, checked bit by bit against a direct loop."""

import numpy as np
import pytest

from dcr_dask.masks import STANDARD_PLANES, MaskPlanes, run_layout


def test_run_layout_puts_standard_planes_first_in_afw_order():
    layout = run_layout(MaskPlanes({"ZZZ_CUSTOM": 3, "BAD": 0}), extra=["AAA"])
    assert layout.bit("BAD") == 0
    assert layout.bit("NO_DATA") == 8
    assert layout.names[: len(STANDARD_PLANES)] == STANDARD_PLANES
    assert layout.names[len(STANDARD_PLANES) :] == ("AAA", "ZZZ_CUSTOM")


def test_remap_moves_every_plane_to_its_new_bit():
    rng = np.random.default_rng(0)
    source = MaskPlanes({"SAT": 5, "NO_DATA": 0, "DETECTED": 12, "CR": 2})
    target = run_layout(source)
    mask = rng.integers(0, 1 << 13, size=(7, 9)).astype(np.int32)
    out = target.remap(mask, source)
    for name, src_bit in source.bits.items():
        expected = (mask >> src_bit) & 1
        np.testing.assert_array_equal((out >> target.bit(name)) & 1, expected)
    # bits that the source does not name are dropped, not carried over
    unnamed = ~np.int32(sum(1 << b for b in source.bits.values()))
    assert not np.any(target.remap(mask & unnamed, source))


def test_value_and_errors_name_the_plane():
    layout = run_layout()
    assert layout.value(["BAD", "SAT"]) == 0b11
    assert layout.value(["NOT_A_PLANE"]) == 0
    with pytest.raises(KeyError, match="NOT_A_PLANE"):
        layout.value(["NOT_A_PLANE"], missing_ok=False)
    with pytest.raises(ValueError, match="share bit"):
        MaskPlanes({"A": 1, "B": 1})
    with pytest.raises(ValueError, match="outside"):
        MaskPlanes({"A": 31})


def test_from_header_reads_mp_keywords_and_rejects_bad_values():
    header = {"MP_BAD": 0, "MP_NO_DATA": 8, "EXTNAME": "MASK", "mp_sat": 1}
    layout = MaskPlanes.from_header(header)
    assert layout.bits == {"BAD": 0, "NO_DATA": 8, "SAT": 1}
    with pytest.raises(TypeError, match="MP_CR"):
        MaskPlanes.from_header({"MP_CR": "three"})
    cards = layout.to_header_cards()
    assert [c[0] for c in cards] == ["MP_BAD", "MP_SAT", "MP_NO_DATA"]


def test_too_many_planes_is_an_error():
    extra = [f"P{i:02d}" for i in range(20)]
    with pytest.raises(ValueError, match="int32"):
        run_layout(extra=extra)
