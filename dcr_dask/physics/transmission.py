"""Filter transmission curves: reading them and the band averages they define.

A transmission curve is a table of throughput against vacuum wavelength. When
a configuration gives no ``effectiveWavelength`` or ``bandwidth``, they are
taken from the curve (docs/file-formats.md, "Transmission curve"), and the ``"throughput"``
mode of :func:`dcr_dask.physics.geometry.subband_shifts_px` weights the refraction
within each sub-band by it.

The throughput is taken to vary linearly between the tabulated wavelengths and
to be zero outside them. Integrals are cut at every tabulated wavelength and
each piece is integrated by Gauss-Legendre quadrature, so the piecewise-linear
curve, alone or times a smooth function, is integrated to rounding accuracy.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import attrs
import numpy as np
import numpy.typing as npt

from dcr_dask.errors import InputError

__all__ = [
    "Transmission",
    "band_average",
    "bandwidth_nm",
    "effective_wavelength_nm",
    "read_transmission",
]

# Gauss-Legendre nodes and weights on [-1, 1] for each piece between tabulated points.
_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(8)


def _frozen_float_array(values: npt.ArrayLike) -> np.ndarray:
    """A read-only 1-D float64 copy of ``values``."""
    array = np.array(values, dtype=np.float64, ndmin=1)
    array.setflags(write=False)
    return array


@attrs.frozen(eq=False)
class Transmission:
    """Throughput of a filter (and whatever else is in the beam) against wavelength.

    Parameters
    ----------
    wavelength_nm : array_like
        Vacuum wavelengths, nm: one-dimensional, finite, strictly increasing,
        at least two of them.
    throughput : array_like
        Throughput at each wavelength, dimensionless: finite, non-negative and
        not all zero. Only its shape matters, not its normalisation.

    Raises
    ------
    ValueError
        If the arrays break any of the rules above; the message names the
        first offending index.
    """

    wavelength_nm: np.ndarray = attrs.field(converter=_frozen_float_array)
    throughput: np.ndarray = attrs.field(converter=_frozen_float_array)

    def __attrs_post_init__(self) -> None:
        wavelength, throughput = self.wavelength_nm, self.throughput
        if wavelength.ndim != 1 or throughput.shape != wavelength.shape:
            raise ValueError(
                "wavelength_nm and throughput must be one-dimensional and of the same length, "
                f"not of shapes {wavelength.shape} and {throughput.shape}"
            )
        if wavelength.size < 2:
            raise ValueError(f"a transmission curve needs at least 2 points, not {wavelength.size}")
        for name, values in (("wavelength_nm", wavelength), ("throughput", throughput)):
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise ValueError(f"{name}[{bad[0]}] = {values[bad[0]]:g} is not finite")
        bad = np.flatnonzero(np.diff(wavelength) <= 0.0)
        if bad.size:
            i = bad[0] + 1
            raise ValueError(
                f"wavelength_nm must increase strictly: wavelength_nm[{i}] = {wavelength[i]:g} "
                f"follows {wavelength[i - 1]:g}"
            )
        bad = np.flatnonzero(throughput < 0.0)
        if bad.size:
            raise ValueError(f"throughput[{bad[0]}] = {throughput[bad[0]]:g} is negative")
        if not np.any(throughput > 0.0):
            raise ValueError("throughput is zero at every wavelength")


def read_transmission(path: str | os.PathLike[str]) -> Transmission:
    """Read a transmission curve from a two-column text file.

    Each line holds a vacuum wavelength in nm and a throughput, separated by
    white space (or a comma). Everything after a ``#`` is a comment; blank
    lines are skipped.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.

    Returns
    -------
    Transmission
        The curve, validated.

    Raises
    ------
    dcr_dask.errors.InputError
        If the file cannot be read, a line does not hold exactly two numbers,
        or the values break the rules of :class:`Transmission`; the message
        names the file and the line.
    """
    filename = os.fspath(path)
    try:
        with open(filename, encoding="utf-8") as stream:
            lines = stream.readlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(
            f"cannot read the transmission curve: {error}", filename=filename
        ) from error
    wavelengths: list[float] = []
    throughputs: list[float] = []
    line_numbers: list[int] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split("#", 1)[0].replace(",", " ").split()
        if not fields:
            continue
        if len(fields) != 2:
            raise InputError(
                f"line {number}: expected 2 columns (wavelength in nm, throughput), "
                f"found {len(fields)}: {line.strip()!r}",
                filename=filename,
            )
        try:
            wavelength, throughput = float(fields[0]), float(fields[1])
        except ValueError:
            raise InputError(
                f"line {number}: not a pair of numbers: {line.strip()!r}", filename=filename
            ) from None
        if not (np.isfinite(wavelength) and np.isfinite(throughput)):
            raise InputError(
                f"line {number}: value is not finite: {line.strip()!r}", filename=filename
            )
        if wavelength <= 0.0:
            raise InputError(
                f"line {number}: wavelength {wavelength!r} nm is not positive", filename=filename
            )
        if throughput < 0.0:
            raise InputError(
                f"line {number}: throughput {throughput!r} is negative", filename=filename
            )
        if wavelengths and wavelength <= wavelengths[-1]:
            raise InputError(
                f"line {number}: wavelength {wavelength!r} nm does not increase on "
                f"{wavelengths[-1]!r} nm (line {line_numbers[-1]})",
                filename=filename,
            )
        wavelengths.append(wavelength)
        throughputs.append(throughput)
        line_numbers.append(number)
    try:
        return Transmission(wavelength_nm=wavelengths, throughput=throughputs)
    except ValueError as error:
        raise InputError(f"not a usable transmission curve: {error}", filename=filename) from None


def band_average(
    transmission: Transmission,
    func: Callable[[np.ndarray], npt.ArrayLike],
    lo_nm: float,
    hi_nm: float,
) -> float:
    """Throughput-weighted mean of a function of wavelength over an interval.

    ``∫ f(λ) T(λ) dλ / ∫ T(λ) dλ`` over ``[lo_nm, hi_nm]``, with ``T`` linear
    between the tabulated points and zero outside them. The interval is cut at
    every tabulated wavelength inside it and each piece integrated by
    Gauss-Legendre quadrature, exact when ``f`` is a polynomial of degree
    below 15 on each piece and accurate to rounding for smooth functions such
    as a refraction.

    Parameters
    ----------
    transmission : Transmission
        The weighting curve.
    func : callable
        Vectorised function of wavelength in nm (a float array of any shape)
        returning an array of the same shape, e.g. a differential refraction.
    lo_nm, hi_nm : float
        Ends of the interval, nm, ``lo_nm < hi_nm``.

    Returns
    -------
    float
        The weighted mean, in the units of ``func``.

    Raises
    ------
    ValueError
        If the interval is empty or the throughput is zero all over it.
    """
    if not lo_nm < hi_nm:
        raise ValueError(f"empty wavelength interval [{lo_nm!r}, {hi_nm!r}] nm")
    wavelength, quadrature_weight = _quadrature(transmission, lo_nm, hi_nm)
    weight = quadrature_weight * _throughput_at(transmission, wavelength)
    norm = weight.sum()
    if not norm > 0.0:
        raise ValueError(
            f"the throughput is zero over [{lo_nm:g}, {hi_nm:g}] nm (the curve spans "
            f"{transmission.wavelength_nm[0]:g}-{transmission.wavelength_nm[-1]:g} nm)"
        )
    values = np.asarray(func(wavelength), dtype=float)
    return float((values * weight).sum() / norm)


def effective_wavelength_nm(transmission: Transmission) -> float:
    """Throughput-weighted mean wavelength of a curve.

    ``λ_eff = ∫ λ T(λ) dλ / ∫ T(λ) dλ`` over the whole curve.

    Parameters
    ----------
    transmission : Transmission
        The curve.

    Returns
    -------
    float
        Effective wavelength, nm.
    """
    wavelength = transmission.wavelength_nm
    return band_average(transmission, lambda lam: lam, float(wavelength[0]), float(wavelength[-1]))


def bandwidth_nm(transmission: Transmission) -> float:
    """Full width at half maximum of a curve.

    The distance between the first wavelength at which the throughput rises to
    half its maximum and the last at which it falls to it, with linear
    interpolation between the tabulated points (a curve already above half
    maximum at an end of the table counts from that end). Dips below half
    maximum inside the band do not shorten it.

    Parameters
    ----------
    transmission : Transmission
        The curve.

    Returns
    -------
    float
        Bandwidth, nm.
    """
    wavelength, throughput = transmission.wavelength_nm, transmission.throughput
    half = 0.5 * throughput.max()
    above = np.flatnonzero(throughput >= half)
    first, last = above[0], above[-1]
    blue = wavelength[first]
    if first > 0:
        blue = np.interp(half, throughput[first - 1 : first + 1], wavelength[first - 1 : first + 1])
    red = wavelength[last]
    if last < wavelength.size - 1:
        # np.interp needs increasing abscissae: walk the falling edge backwards.
        red = np.interp(half, throughput[last : last + 2][::-1], wavelength[last : last + 2][::-1])
    return float(red - blue)


def _throughput_at(transmission: Transmission, wavelength_nm: np.ndarray) -> np.ndarray:
    """Throughput interpolated linearly at the given wavelengths, zero outside the table."""
    return np.interp(
        wavelength_nm, transmission.wavelength_nm, transmission.throughput, left=0.0, right=0.0
    )


def _quadrature(
    transmission: Transmission, lo_nm: float, hi_nm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights integrating over [lo_nm, hi_nm], piecewise between tabulated points."""
    table = transmission.wavelength_nm
    breaks = np.concatenate([[lo_nm], table[(table > lo_nm) & (table < hi_nm)], [hi_nm]])
    half_width = 0.5 * np.diff(breaks)[:, np.newaxis]
    middle = 0.5 * (breaks[1:] + breaks[:-1])[:, np.newaxis]
    return middle + half_width * _GAUSS_NODES, half_width * _GAUSS_WEIGHTS
