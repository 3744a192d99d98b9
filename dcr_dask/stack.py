"""Stacking statistics over the visit axis, as pure NumPy kernels.

Each kernel takes the ``(visit, y, x)`` arrays of one block and returns the
stacked ``(y, x)`` image and variance. They know nothing of Dask; the graph
layer maps them over the tile's blocks with the visit axis whole.
"""

from __future__ import annotations

import numpy as np

__all__ = ["weighted_mean"]


def weighted_mean(
    images: np.ndarray,
    variances: np.ndarray,
    good: np.ndarray,
    weights: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted mean of the good pixels of each visit, with its variance.

    Parameters
    ----------
    images, variances : numpy.ndarray
        ``(visit, y, x)`` flux and per-pixel variance.
    good : numpy.ndarray of bool
        ``(visit, y, x)``: pixels that may be used.
    weights : numpy.ndarray
        ``(visit,)`` weight of each visit (for example 1 / mean variance).

    Returns
    -------
    image : numpy.ndarray of float32
        ``Σ w_v I_v / Σ w_v`` over good pixels; 0 where no visit is good.
    variance : numpy.ndarray of float32
        ``Σ w_v² var_v / (Σ w_v)²`` (the variance of that mean, from the
        inputs); +inf where no visit is good.
    n_image : numpy.ndarray of uint16
        Number of good visits per pixel.
    """
    w = np.where(good, np.asarray(weights, dtype=np.float64)[:, None, None], 0.0)
    total = w.sum(axis=0)
    covered = total > 0
    safe = np.where(covered, total, 1.0)
    image = np.where(good, images, 0.0)
    variance = np.where(good, variances, 0.0)
    mean = (w * image).sum(axis=0) / safe
    var = (w**2 * variance).sum(axis=0) / safe**2
    return (
        np.where(covered, mean, 0.0).astype(np.float32),
        np.where(covered, var, np.inf).astype(np.float32),
        good.sum(axis=0).astype(np.uint16),
    )
