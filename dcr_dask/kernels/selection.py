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
        delta = values[v][good[v]].astype(np.float64) - c
        delta = delta[np.abs(delta) <= h]
        out[v] = (delta.size, delta.sum(), np.dot(delta, delta))
    return out
