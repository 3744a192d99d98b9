"""Diagnostic figures (matplotlib, written to files; no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["image_panels", "shift_diagram"]


def _robust_limits(image: np.ndarray, symmetric: bool) -> tuple[float, float]:
    finite = np.asarray(image)[np.isfinite(image)]
    if finite.size == 0:
        return -1.0, 1.0
    if symmetric:
        bound = float(np.percentile(np.abs(finite), 99.5)) or 1.0
        return -bound, bound
    lo, hi = np.percentile(finite, [1.0, 99.7])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def image_panels(
    panels: Sequence[tuple[str, np.ndarray, bool]],
    path: str | Path,
    *,
    title: str | None = None,
    columns: int = 4,
    shifts_px: np.ndarray | None = None,
    shift_labels: Sequence[str] | None = None,
    curves: Mapping[str, Sequence[float]] | None = None,
) -> Path:
    """Write a grid of images (and optional shift and curve panels) to a PNG.

    Parameters
    ----------
    panels : sequence of (str, numpy.ndarray, bool)
        ``(title, image, symmetric)``: symmetric panels (residuals) use a
        diverging colour map centred on 0; others an asinh-like stretch of
        their 1-99.7 % range.
    path : str or Path
        Output PNG.
    title : str, optional
        Figure title.
    columns : int
        Panels per row.
    shifts_px : numpy.ndarray, optional
        ``(visit, subfilter, 2)`` DCR shifts ``(dy, dx)`` to draw as vectors.
    shift_labels : sequence of str, optional
        Legend labels of the sub-bands.
    curves : mapping of str to sequence of float, optional
        Lines to draw in one more panel (for example convergence per subregion).

    Returns
    -------
    Path
        The file written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    extra = int(shifts_px is not None) + int(bool(curves))
    n = len(panels) + extra
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.0 * columns, 4.0 * rows), squeeze=False)
    flat = axes.ravel()
    for ax, (name, image, symmetric) in zip(flat, panels, strict=False):
        lo, hi = _robust_limits(image, symmetric)
        if symmetric:
            shown = ax.imshow(image, origin="lower", cmap="RdBu_r", vmin=lo, vmax=hi)
        else:
            norm = matplotlib.colors.AsinhNorm(
                linear_width=max((hi - lo) / 20.0, 1e-12), vmin=lo, vmax=hi
            )
            shown = ax.imshow(image, origin="lower", cmap="gray", norm=norm)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    index = len(panels)
    if shifts_px is not None:
        shift_diagram(flat[index], shifts_px, shift_labels)
        index += 1
    if curves:
        ax = flat[index]
        for label, values in curves.items():
            ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=label)
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("convergence metric")
        if len(curves) <= 8:
            ax.legend(fontsize=7)
        index += 1
    for ax in flat[index:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def shift_diagram(ax, shifts_px: np.ndarray, labels: Sequence[str] | None = None) -> None:
    """Draw each visit's sub-band DCR shifts as points in the (dx, dy) plane.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    shifts_px : numpy.ndarray
        ``(visit, subfilter, 2)`` shifts ``(dy, dx)`` in pixels.
    labels : sequence of str, optional
        One label per sub-band.
    """
    shifts = np.asarray(shifts_px)
    colours = ["tab:blue", "tab:green", "tab:red", "tab:orange", "tab:purple", "tab:brown"]
    for s in range(shifts.shape[1]):
        label = labels[s] if labels is not None else f"sub-band {s}"
        ax.scatter(
            shifts[:, s, 1], shifts[:, s, 0], s=14, color=colours[s % len(colours)], label=label
        )
    ax.axhline(0, color="0.7", lw=0.5)
    ax.axvline(0, color="0.7", lw=0.5)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("dx [pixel]")
    ax.set_ylabel("dy [pixel]")
    ax.set_title("DCR shift of each visit, per sub-band", fontsize=9)
    ax.legend(fontsize=7)
