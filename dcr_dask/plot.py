"""Diagnostic figures (matplotlib, written to files; no display needed)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

__all__ = ["Panel", "colorbar_ticks", "image_panels", "panels_figure", "shift_diagram"]

#: Characters per line of a panel title before it is wrapped.
_TITLE_WIDTH = 34


@attrs.frozen
class Panel:
    """One image of a figure made by :func:`image_panels`.

    Parameters
    ----------
    title : str
        Shown above the image, wrapped to fit the panel.
    image : numpy.ndarray
        2-D image, drawn with its first row at the bottom.
    group : str or None
        None: an asinh grey stretch of the image's own 1-99.7 % range (sky
        images). A name: a diverging colour map centred on 0 whose symmetric
        range (the 99.5th percentile of ``|value|``) is shared by every panel
        of the same group, so that their colours compare (residuals,
        differences).
    """

    title: str
    image: np.ndarray = attrs.field(converter=np.asarray)
    group: str | None = None


def _robust_limits(images: Sequence[np.ndarray], symmetric: bool) -> tuple[float, float]:
    finite = np.concatenate([np.asarray(image)[np.isfinite(image)] for image in images])
    if finite.size == 0:
        return -1.0, 1.0
    if symmetric:
        bound = float(np.percentile(np.abs(finite), 99.5)) or 1.0
        return -bound, bound
    lo, hi = np.percentile(finite, [1.0, 99.7])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def colorbar_ticks(norm: Normalize, lo: float, hi: float, n: int = 5) -> list[float]:
    """Ticks evenly spaced along a colour bar, rounded to 2 significant figures.

    Parameters
    ----------
    norm : matplotlib.colors.Normalize
        The colour scale (linear, or the asinh stretch of the sky images).
    lo, hi : float
        Its limits, ``lo < hi``.
    n : int
        Number of ticks wanted.

    Returns
    -------
    list of float
        Distinct, increasing ticks within ``[lo, hi]``: the rounded values
        at ``n`` evenly spaced points of the bar, ends rounded inward, so that
        their labels are as far apart on the bar as the bar allows.
    """
    ticks = []
    for fraction in np.linspace(0.0, 1.0, n):
        value = float(norm.inverse(fraction))
        if value == 0.0:
            ticks.append(0.0)
            continue
        step = 10.0 ** (math.floor(math.log10(abs(value))) - 1)
        rounded = round(value / step) * step
        if rounded > hi:
            rounded = math.floor(value / step) * step
        elif rounded < lo:
            rounded = math.ceil(value / step) * step
        ticks.append(float(f"{rounded:.2g}"))
    return sorted({t for t in ticks if lo <= t <= hi})


def image_panels(
    panels: Sequence[Panel],
    path: str | Path,
    **options: Any,
) -> Path:
    """Write :func:`panels_figure` to a PNG.

    Parameters
    ----------
    panels : sequence of Panel
        The images, in reading order.
    path : str or Path
        Output PNG.
    **options
        ``title``, ``columns``, ``shifts_px``, ``shift_labels``, ``curves``
        of :func:`panels_figure`.

    Returns
    -------
    Path
        The file written.
    """
    import matplotlib.pyplot as plt

    figure = panels_figure(panels, **options)
    path = Path(path)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def panels_figure(
    panels: Sequence[Panel],
    *,
    title: str | None = None,
    columns: int = 4,
    shifts_px: np.ndarray | None = None,
    shift_labels: Sequence[str] | None = None,
    curves: Mapping[str, Sequence[float]] | None = None,
) -> Figure:
    """Draw a grid of images (and optional shift and curve panels).

    Every colour bar has five ticks evenly spaced along it, labelled with
    plain numbers, so that labels never overlap, and the layout keeps every
    title inside the figure. Cells left over in the last row are removed.

    Parameters
    ----------
    panels : sequence of Panel
        The images, in reading order.
    title : str, optional
        Figure title.
    columns : int
        Panels per row.
    shifts_px : numpy.ndarray, optional
        ``(visit, subfilter, 2)`` DCR shifts ``(dy, dx)`` to draw as points,
        in the panel after the images.
    shift_labels : sequence of str, optional
        Legend labels of the sub-bands.
    curves : mapping of str to sequence of float, optional
        Lines to draw in one more panel (for example convergence per subregion).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (drawn with the Agg backend; close it with
        ``matplotlib.pyplot.close``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    extra = int(shifts_px is not None) + int(bool(curves))
    n = len(panels) + extra
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(4.0 * columns, 4.3 * rows),
        squeeze=False,
        layout="constrained",
    )
    flat = axes.ravel()
    groups: dict[str, list[np.ndarray]] = {}
    for panel in panels:
        if panel.group is not None:
            groups.setdefault(panel.group, []).append(panel.image)
    limits = {name: _robust_limits(images, True) for name, images in groups.items()}
    for ax, panel in zip(flat, panels, strict=False):
        _draw_image_panel(fig, ax, panel, limits)
    index = len(panels)
    if shifts_px is not None:
        shift_diagram(flat[index], shifts_px, shift_labels)
        index += 1
    if curves:
        _draw_curves(flat[index], curves)
        index += 1
    for ax in flat[index:]:
        fig.delaxes(ax)
    if title:
        fig.suptitle(title)
    return fig


def _draw_image_panel(
    fig: Figure, ax: Axes, panel: Panel, limits: Mapping[str, tuple[float, float]]
) -> None:
    """Draw one image with its colour bar: a shared diverging scale, or its own asinh one."""
    import matplotlib

    if panel.group is not None:
        lo, hi = limits[panel.group]
        norm = matplotlib.colors.Normalize(vmin=lo, vmax=hi)
        shown = ax.imshow(panel.image, origin="lower", cmap="RdBu_r", norm=norm)
    else:
        lo, hi = _robust_limits([panel.image], False)
        norm = matplotlib.colors.AsinhNorm(
            linear_width=max((hi - lo) / 20.0, 1e-12), vmin=lo, vmax=hi
        )
        shown = ax.imshow(panel.image, origin="lower", cmap="gray", norm=norm)
    ax.set_title(textwrap.fill(panel.title, _TITLE_WIDTH), fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    bar.set_ticks(colorbar_ticks(norm, lo, hi) or [lo, hi])
    bar.ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    bar.ax.tick_params(labelsize=8)


def _draw_curves(ax: Axes, curves: Mapping[str, Sequence[float]]) -> None:
    """Draw the convergence curves, one line per subregion, on a log scale."""
    import matplotlib

    for label, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=label)
    ax.set_yscale("log")
    plain = matplotlib.ticker.FormatStrFormatter("%.3g")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="both", labelsize=8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("convergence metric")
    ax.set_title("convergence of each subregion", fontsize=9)
    if len(curves) <= 8:
        ax.legend(fontsize=7)


def shift_diagram(ax: Axes, shifts_px: np.ndarray, labels: Sequence[str] | None = None) -> None:
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
