"""Figures of merit of a result against a simulation's truth.

Used by the accuracy tests and the benchmarks; everything here compares
images with :class:`dcr_dask.simulate.SimulatedTile` truth and knows nothing
of how the result was made.
"""

from __future__ import annotations

import numpy as np

from dcr_dask.simulate import SimulatedTile, Source

__all__ = [
    "bright_isolated_stars",
    "centroid",
    "centroid_rms_error",
    "subband_correlations",
    "subband_flux_shares",
]


def bright_isolated_stars(
    tile: SimulatedTile, *, n: int = 10, isolation_px: float = 12.0, edge_px: float = 16.0
) -> list[Source]:
    """The brightest point sources with no other source within ``isolation_px``.

    Parameters
    ----------
    tile : SimulatedTile
        The simulation.
    n : int
        At most this many stars, brightest first.
    isolation_px : float
        Minimum distance to any other source, pixels.
    edge_px : float
        Minimum distance to the tile edge, pixels.

    Returns
    -------
    list of Source
    """
    ny, nx = tile.spec.shape
    positions = np.array([(s.y, s.x) for s in tile.sources])
    chosen = []
    for index in np.argsort([-s.flux for s in tile.sources]):
        star = tile.sources[index]
        if not star.is_star:
            continue
        if not (edge_px <= star.y < ny - edge_px and edge_px <= star.x < nx - edge_px):
            continue
        distance = np.hypot(*(positions - (star.y, star.x)).T)
        distance[index] = np.inf
        if distance.min() < isolation_px:
            continue
        chosen.append(star)
        if len(chosen) == n:
            break
    return chosen


def centroid(
    image: np.ndarray, y: float, x: float, radius: int = 6, iterations: int = 3
) -> tuple[float, float]:
    """First-moment centroid in a square window re-centred on it, pixels.

    Parameters
    ----------
    image : numpy.ndarray
        ``(ny, nx)`` image.
    y, x : float
        Centre of the window, pixels.
    radius : int
        Half width of the window, pixels.
    iterations : int
        Times the window is moved to the last centroid and measured again.

    Returns
    -------
    tuple of float
        ``(y, x)`` centroid.
    """
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    for _ in range(iterations + 1):
        y0, x0 = round(y), round(x)
        window = image[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
        stamp = np.clip(np.asarray(window, float), 0.0, None)
        total = stamp.sum()
        y, x = y0 + (stamp * yy).sum() / total, x0 + (stamp * xx).sum() / total
    return y, x


def centroid_rms_error(
    image: np.ndarray, truth: np.ndarray, stars: list[Source], radius: int = 6
) -> float:
    """RMS distance between the centroids of ``stars`` in ``image`` and in ``truth``, pixels.

    The window is re-centred on the noise-free ``truth`` only; ``image`` is
    measured in that same window, so its centroid cannot wander to a
    neighbour or a noise peak (on realistic tiles with faint neighbours the
    re-centred windows wandered by pixels and dominated the RMS).
    """
    errors = []
    for star in stars:
        ty, tx = centroid(truth, star.y, star.x, radius)
        y0, x0 = round(ty), round(tx)
        cy, cx = centroid(image, y0, x0, radius, iterations=0)
        wy, wx = centroid(truth, y0, x0, radius, iterations=0)
        errors.append((cy - wy) ** 2 + (cx - wx) ** 2)
    return float(np.sqrt(np.mean(errors)))


def subband_correlations(model: np.ndarray, truth: np.ndarray, threshold: float) -> np.ndarray:
    """Pearson correlation of each model plane with the true plane on source pixels.

    Parameters
    ----------
    model, truth : numpy.ndarray
        ``(S, ny, nx)`` planes.
    threshold : float
        Source pixels are those where the true plane exceeds this.

    Returns
    -------
    numpy.ndarray
        ``(S,)`` correlations.
    """
    out = []
    for plane, true in zip(model, truth, strict=True):
        use = true > threshold
        out.append(np.corrcoef(plane[use], true[use])[0, 1])
    return np.array(out)


def subband_flux_shares(model: np.ndarray, star: Source, radius: int = 6) -> np.ndarray:
    """Share of a star's flux in each model plane, within a square aperture."""
    y0, x0 = round(star.y), round(star.x)
    window = (slice(None), slice(y0 - radius, y0 + radius + 1), slice(x0 - radius, x0 + radius + 1))
    flux = np.asarray(model[window], float).sum(axis=(1, 2))
    return flux / flux.sum()
