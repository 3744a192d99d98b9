"""Block kernels for exact order statistics and clipped means of planes too large for a task.

A quantile of a whole plane needs its sorted values; a plane of a large tile is
more than a task should hold. These kernels let the graph layer
(:mod:`dcr_dask.graph.clipped_stats`) find the exact ``k``-th smallest value of
every visit chunk by chunk, by radix selection on the values' bits:

- :func:`float_keys` maps float values to unsigned integers in the same order;
- :func:`digit_histograms` counts, in one block, the values whose leading key
  bits equal a known prefix by the next few bits (a pass over the blocks
  narrows every prefix by :data:`DIGIT_BITS` bits; 32-bit floats take 3 passes);
- :func:`clip_sums` sums, in one block, what a pass of afw's ``MEANCLIP``
  needs: the count of the values within a window and their first two moments
  about its centre.

Nothing here knows of Dask; the kernels take and return NumPy arrays.
"""

from __future__ import annotations

import numpy as np

from dcr_dask.kernels.stack import meanclip_passes

__all__ = [
    "DIGIT_BITS",
    "clip_sums",
    "digit_histograms",
    "float_keys",
    "key_bits",
    "key_values",
]

#: Bits of the key resolved by one pass of the radix selection (4096 bins).
DIGIT_BITS = 12


def _key_dtype(dtype: np.dtype) -> tuple[type, type]:
    """The float dtype the keys are made from and the unsigned integer of its width."""
    if np.dtype(dtype) == np.float32:
        return np.float32, np.uint32
    return np.float64, np.uint64


def key_bits(dtype: np.dtype) -> int:
    """Bits in the keys of values of ``dtype`` (32 for float32, else 64).

    Parameters
    ----------
    dtype : numpy.dtype
        Dtype of the values.

    Returns
    -------
    int
    """
    return 32 if _key_dtype(dtype)[0] is np.float32 else 64


def float_keys(values: np.ndarray) -> np.ndarray:
    """Unsigned integer keys in the order of the float values.

    Parameters
    ----------
    values : numpy.ndarray
        float32 values give uint32 keys; any other dtype is taken as float64
        and gives uint64 keys. NaN has a key but no place in the order: leave
        it out.

    Returns
    -------
    numpy.ndarray
        Same shape: ``a < b`` exactly when ``key(a) < key(b)`` (``-0.0`` comes
        just before ``+0.0``).
    """
    float_type, int_type = _key_dtype(np.asarray(values).dtype)
    bits: np.ndarray = np.ascontiguousarray(values, dtype=float_type).view(int_type)
    sign = int_type(1) << int_type(8 * np.dtype(int_type).itemsize - 1)
    return np.where((bits & sign) != 0, ~bits, bits | sign)


def key_values(keys: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The float values of keys made by :func:`float_keys` (its inverse).

    Parameters
    ----------
    keys : numpy.ndarray of unsigned int
        Keys of values of ``dtype``.
    dtype : numpy.dtype
        Dtype of the values the keys were made from.

    Returns
    -------
    numpy.ndarray
        Values of ``dtype`` (float32, or float64 for anything else).
    """
    float_type, int_type = _key_dtype(dtype)
    keys = np.asarray(keys, dtype=int_type)
    sign = int_type(1) << int_type(8 * np.dtype(int_type).itemsize - 1)
    bits: np.ndarray = np.where((keys & sign) != 0, keys & ~sign, ~keys)
    return np.ascontiguousarray(bits).view(float_type)


def digit_histograms(
    values: np.ndarray,
    good: np.ndarray,
    prefixes: np.ndarray,
    resolved: int,
) -> np.ndarray:
    """Counts of a block's good values by the next digit of their keys, per prefix.

    Parameters
    ----------
    values : numpy.ndarray
        ``(V, ...)`` values of ``V`` visits.
    good : numpy.ndarray of bool
        Same shape: values that count (NaN must not).
    prefixes : numpy.ndarray of unsigned int
        ``(V, T)``: for each visit, ``T`` prefixes: the leading ``resolved``
        bits of the keys wanted (ignored when ``resolved`` is 0).
    resolved : int
        Leading key bits already known.

    Returns
    -------
    numpy.ndarray of int64
        ``(V, T, 2**d)`` with ``d = min(DIGIT_BITS, bits - resolved)``: per
        visit and prefix, the good values whose keys start with the prefix,
        counted by their next ``d`` bits.
    """
    values = np.asarray(values)
    good = np.asarray(good, dtype=bool)
    total = key_bits(values.dtype)
    digit = min(DIGIT_BITS, total - resolved)
    if digit <= 0:
        raise ValueError(f"every bit of the keys is resolved already ({resolved} of {total})")
    n_visits, n_targets = prefixes.shape
    if n_visits != values.shape[0]:
        raise ValueError(f"prefixes for {n_visits} visits, values of {values.shape[0]}")
    out = np.zeros((n_visits, n_targets, 1 << digit), dtype=np.int64)
    for v in range(n_visits):
        keys = float_keys(values[v][good[v]])
        digits = (keys >> keys.dtype.type(total - resolved - digit)) & keys.dtype.type(
            (1 << digit) - 1
        )
        if resolved == 0:
            out[v, :] = np.bincount(digits.astype(np.intp), minlength=1 << digit)
            continue
        heads = keys >> keys.dtype.type(total - resolved)
        for t in range(n_targets):
            chosen = digits[heads == keys.dtype.type(prefixes[v, t])]
            out[v, t] = np.bincount(chosen.astype(np.intp), minlength=1 << digit)
    return out


#: Values per slice when the window sums are taken in float64.
_SUM_SLICE = 1 << 20


def _window_sums(values: np.ndarray, center: float, half_width: float) -> tuple[int, float, float]:
    """Count, ``Σ (x - center)`` and ``Σ (x - center)²`` of 1-D ``values`` within the window."""
    count, first, second = 0, 0.0, 0.0
    for start in range(0, values.size, _SUM_SLICE):
        delta = values[start : start + _SUM_SLICE].astype(np.float64) - center
        delta = delta[np.abs(delta) <= half_width]
        count += delta.size
        first += float(delta.sum())
        second += float(np.dot(delta, delta))
    return count, first, second


def clip_sums(
    values: np.ndarray,
    good: np.ndarray,
    center: np.ndarray,
    half_width: np.ndarray,
) -> np.ndarray:
    """Count, first and second moments about ``center`` of a block's values in a window.

    Parameters
    ----------
    values : numpy.ndarray
        ``(V, ...)`` values of ``V`` visits.
    good : numpy.ndarray of bool
        Same shape: values that may count.
    center, half_width : numpy.ndarray of float64
        ``(V,)`` window of each visit: a good value counts when
        ``|x - center| <= half_width``; none does when either is NaN or the
        centre is not finite.

    Returns
    -------
    numpy.ndarray of float64
        ``(V, 3)``: the number of values counted, ``Σ (x - center)`` and
        ``Σ (x - center)²``.
    """
    values = np.asarray(values)
    good = np.asarray(good, dtype=bool)
    out = np.zeros((values.shape[0], 3))
    for v in range(values.shape[0]):
        c, h = float(center[v]), float(half_width[v])
        if not np.isfinite(c) or np.isnan(h):
            continue
        out[v] = _window_sums(values[v][good[v]], c, h)
    return out


def _compact(value_blocks: list[np.ndarray], good_blocks: list[np.ndarray]) -> np.ndarray:
    """The good, finite values of the blocks in one 1-D array of their own dtype."""
    parts = []
    for values, good in zip(value_blocks, good_blocks, strict=True):
        values = np.asarray(values)
        parts.append(values[np.asarray(good, dtype=bool) & np.isfinite(values)])
    if not parts:
        return np.zeros(0)
    return np.concatenate(parts)


def _interpolated(ordered: np.ndarray, n: int, fractions: tuple[float, ...]) -> np.ndarray:
    """Quantiles of ``n`` values partitioned at every rank they need (as
    :func:`dcr_dask.kernels.stack.quantiles` interpolates)."""
    top = max(n - 1, 0)
    out = np.empty(len(fractions))
    for j, fraction in enumerate(fractions):
        index = fraction * top
        low = int(np.floor(index))
        high = min(low + 1, top)
        below, above = np.float64(ordered[low]), np.float64(ordered[high])
        out[j] = (low + 1 - index) * below + (index - low) * above
    return out


def _ranks(n: int, fractions: tuple[float, ...]) -> list[int]:
    top = max(n - 1, 0)
    ranks = set()
    for fraction in fractions:
        low = int(np.floor(fraction * top))
        ranks |= {low, min(low + 1, top)}
    return sorted(ranks)


def blocks_quantiles(
    value_blocks: list[np.ndarray], good_blocks: list[np.ndarray], fractions: tuple[float, ...]
) -> tuple[np.ndarray, int]:
    """Quantiles of the good, finite values of a plane given as blocks (in memory).

    Parameters
    ----------
    value_blocks, good_blocks : list of numpy.ndarray
        The plane's blocks and their good-pixel flags, in any order.
    fractions : tuple of float
        Quantiles wanted, each in [0, 1].

    Returns
    -------
    quantiles : numpy.ndarray of float64
        ``(len(fractions),)``, as :func:`dcr_dask.kernels.stack.quantiles`;
        NaN without a good value.
    count : int
        The number of good, finite values.

    Notes
    -----
    Holds one copy of the good values in their own dtype (4 bytes a pixel for
    float32), partitioned in place at the ranks wanted: no float64 copy, no sort.
    """
    values = _compact(value_blocks, good_blocks)
    if values.size == 0:
        return np.full(len(fractions), np.nan), 0
    values.partition(_ranks(values.size, fractions))
    return _interpolated(values, values.size, fractions), values.size


def clipped_mean_from_sums(
    sums: tuple[float, float, float] | np.ndarray, center: float
) -> tuple[float, float]:
    """Mean and de-biased variance of the values counted by :func:`clip_sums`.

    Parameters
    ----------
    sums : (3,) sequence
        Count, ``Σ (x - center)`` and ``Σ (x - center)²``.
    center : float
        The centre the sums were taken about.

    Returns
    -------
    mean, variance : float
        NaN for no value; the variance is NaN for a single value.
    """
    count, first, second = (float(s) for s in np.asarray(sums, dtype=np.float64).reshape(3))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = center + np.float64(first) / count
        biased = np.float64(second) / count - (np.float64(first) / count) ** 2
        variance = biased * count / (count - 1)
    return float(mean), float(variance)


def blocks_clipped_mean(
    value_blocks: list[np.ndarray],
    good_blocks: list[np.ndarray],
    n_sigma: float,
    n_iterations: int,
) -> float:
    """afw's unweighted ``MEANCLIP`` of a plane given as blocks (in memory).

    Parameters
    ----------
    value_blocks, good_blocks : list of numpy.ndarray
        The plane's blocks and their good-pixel flags, in any order.
    n_sigma : float
        Clipping half-width, in standard deviations.
    n_iterations : int
        Number of clipping passes, at least 1.

    Returns
    -------
    float
        As :func:`dcr_dask.kernels.stack.afw_clipped_mean` of the good, finite
        values (up to the order of the float64 sums).

    Notes
    -----
    Memory: one copy of the good values in their own dtype, and float64 slices
    of :data:`_SUM_SLICE` values while summing.
    """
    if n_iterations < 1:
        raise ValueError(f"MEANCLIP needs at least one clipping pass, got {n_iterations}")
    values = _compact(value_blocks, good_blocks)
    n = values.size
    if n == 0:
        return float("nan")
    fractions = (0.5, 0.25, 0.75)
    values.partition(_ranks(n, fractions))
    median, q1, q3 = _interpolated(values, n, fractions)

    def window_moments(
        center: np.ndarray, half_width: np.ndarray, defined: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if not defined:
            return np.asarray(np.nan), np.asarray(np.nan)
        sums = _window_sums(values, float(center), float(half_width))
        mean, variance = clipped_mean_from_sums(sums, float(center))
        return np.asarray(mean), np.asarray(variance)

    mean = meanclip_passes(
        np.asarray(median),
        np.asarray(q1),
        np.asarray(q3),
        np.asarray(n),
        n_sigma,
        n_iterations,
        window_moments,
    )
    return float(mean)
