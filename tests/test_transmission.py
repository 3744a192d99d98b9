"""Tests of dcr_dask.physics.transmission: reading curves, validation, and band averages."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from dcr_dask.errors import InputError
from dcr_dask.physics.transmission import (
    Transmission,
    band_average,
    bandwidth_nm,
    effective_wavelength_nm,
    read_transmission,
)


def _write(tmp_path, text: str, name: str = "filter.dat"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def test_read_a_commented_two_column_file(tmp_path):
    path = _write(
        tmp_path,
        "# LSST g, total throughput\n"
        "# wavelength(nm) throughput\n"
        "\n"
        "400.0  0.0\n"
        "410.0\t0.25   # rising edge\n"
        "420.0, 0.5\n"
        "   430.0 5e-1\n",
    )
    curve = read_transmission(path)
    np.testing.assert_array_equal(curve.wavelength_nm, [400.0, 410.0, 420.0, 430.0])
    np.testing.assert_array_equal(curve.throughput, [0.0, 0.25, 0.5, 0.5])
    assert read_transmission(str(path)).wavelength_nm.dtype == np.float64


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("400 0.1\n410 0.2 7\n", 2, "expected 2 columns"),
        ("# header\n400 0.1\n410\n", 3, "expected 2 columns"),
        ("400 0.1\n410 abc\n", 2, "not a pair of numbers"),
        ("400 0.1\n410 0.2\n405 0.3\n", 3, "does not increase"),
        ("400 0.1\n400 0.2\n", 2, "does not increase"),
        ("400 0.1\n410 -0.2\n", 2, "negative"),
        ("400 0.1\n410 nan\n", 2, "not finite"),
        ("-5 0.1\n410 0.2\n", 1, "not positive"),
    ],
)
def test_bad_lines_are_reported_with_file_and_line(tmp_path, text, line, what):
    path = _write(tmp_path, text)
    with pytest.raises(InputError, match=what) as info:
        read_transmission(path)
    message = str(info.value)
    assert str(path) in message
    assert f"line {line}:" in message
    assert info.value.filename == str(path)


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("# nothing here\n", "at least 2 points"),
        ("400 0.1\n", "at least 2"),
        ("400 0\n500 0\n", "zero"),
    ],
)
def test_unusable_curves_are_reported_with_the_file(tmp_path, text, what):
    path = _write(tmp_path, text)
    with pytest.raises(InputError, match=what) as info:
        read_transmission(path)
    assert str(path) in str(info.value)


def test_missing_file_is_reported(tmp_path):
    path = tmp_path / "absent.dat"
    with pytest.raises(InputError, match="cannot read") as info:
        read_transmission(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------
# The Transmission class
# --------------------------------------------------------------------------


def test_transmission_arrays_are_read_only_floats():
    curve = Transmission(wavelength_nm=[400, 500, 600], throughput=[0, 1, 0])
    assert curve.wavelength_nm.dtype == np.float64
    with pytest.raises(ValueError):
        curve.throughput[1] = 2.0


def test_transmission_does_not_alias_its_input():
    throughput = np.array([0.0, 1.0, 0.0])
    curve = Transmission(wavelength_nm=[400.0, 500.0, 600.0], throughput=throughput)
    throughput[1] = 5.0
    assert curve.throughput[1] == 1.0


@pytest.mark.parametrize(
    ("wavelength", "throughput", "what"),
    [
        ([400, 500, 450], [1, 1, 1], r"wavelength_nm\[2\]"),
        ([400, 500], [1, -0.1], r"throughput\[1\] = -0.1 is negative"),
        ([400, np.inf], [1, 1], r"wavelength_nm\[1\]"),
        ([400, 500], [np.nan, 1], r"throughput\[0\]"),
        ([400, 500, 600], [1, 1], "same length"),
        ([[400, 500]], [[1, 1]], "one-dimensional"),
        ([400], [1], "at least 2"),
        ([400, 500], [0, 0], "zero at every wavelength"),
    ],
)
def test_transmission_validation(wavelength, throughput, what):
    with pytest.raises(ValueError, match=what):
        Transmission(wavelength_nm=wavelength, throughput=throughput)


# --------------------------------------------------------------------------
# Effective wavelength, bandwidth and band averages
# --------------------------------------------------------------------------


def test_effective_wavelength_and_bandwidth_of_a_symmetric_trapezoid():
    curve = Transmission(wavelength_nm=[400, 420, 480, 500], throughput=[0, 1, 1, 0])
    assert effective_wavelength_nm(curve) == pytest.approx(450.0)
    assert bandwidth_nm(curve) == pytest.approx(80.0)  # half maximum at 410 and 490 nm


def test_effective_wavelength_of_a_triangle_is_its_centroid():
    # Throughput rising linearly from 0 at 400 nm to 1 at 600 nm: centroid at 400 + 2/3 · 200.
    curve = Transmission(wavelength_nm=[400, 600], throughput=[0, 1])
    assert effective_wavelength_nm(curve) == pytest.approx(400.0 + 200.0 * 2.0 / 3.0)
    assert bandwidth_nm(curve) == pytest.approx(100.0)  # from 500 nm to the end of the table


def test_bandwidth_ignores_dips_inside_the_band_and_handles_unsorted_throughputs():
    wavelength = [380, 400, 420, 450, 470, 500, 520]
    throughput = [0.0, 0.8, 0.2, 0.9, 1.0, 0.6, 0.0]
    curve = Transmission(wavelength_nm=wavelength, throughput=throughput)
    blue = np.interp(0.5, [0.0, 0.8], [380, 400])
    red = np.interp(0.5, [0.0, 0.6], [520, 500])
    assert bandwidth_nm(curve) == pytest.approx(red - blue)


def test_band_average_against_scipy_quad():
    curve = Transmission(wavelength_nm=[400, 450, 520, 560], throughput=[0.1, 0.9, 0.7, 0.0])

    def func(lam):
        return 1.0 / lam**2

    def throughput(lam):
        return np.interp(lam, curve.wavelength_nm, curve.throughput)

    lo, hi = 430.0, 540.0
    kinks = [450.0, 520.0]
    numerator = quad(lambda lam: func(lam) * throughput(lam), lo, hi, points=kinks)[0]
    denominator = quad(throughput, lo, hi, points=kinks)[0]
    assert band_average(curve, func, lo, hi) == pytest.approx(numerator / denominator, rel=1e-12)


def test_band_average_of_a_constant_and_outside_the_curve():
    curve = Transmission(wavelength_nm=[400, 500], throughput=[1, 1])
    assert band_average(curve, lambda lam: np.full_like(lam, 3.0), 420.0, 470.0) == pytest.approx(
        3.0
    )
    # Half the interval lies beyond the table, where the throughput is zero.
    assert band_average(curve, lambda lam: lam, 450.0, 550.0) == pytest.approx(475.0, rel=1e-3)
    with pytest.raises(ValueError, match="throughput is zero"):
        band_average(curve, lambda lam: lam, 510.0, 600.0)
    with pytest.raises(ValueError, match="empty"):
        band_average(curve, lambda lam: lam, 450.0, 450.0)
