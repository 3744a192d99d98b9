"""The figures of dcr_dask.plot: every title inside the figure, no empty cell, colour-bar
labels apart, and one colour scale for the panels of a group."""

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from dcr_dask.plot import Panel, colorbar_ticks, image_panels, panels_figure


def _panels(rng):
    sky = rng.gamma(2.0, 50.0, size=(40, 40))
    return [
        Panel("a sky image with a long title that would not fit above its panel", sky),
        Panel("small residual", rng.normal(0.0, 1.0, (40, 40)), "residuals"),
        Panel(
            "large residual, also with a title longer than the panel",
            rng.normal(0, 50, (40, 40)),
            "residuals",
        ),
        Panel("difference", rng.normal(0.0, 5.0, (40, 40)), "differences"),
    ]


@pytest.fixture
def figure():
    rng = np.random.default_rng(3)
    shifts = rng.normal(0.0, 1.0, (6, 3, 2))
    fig = panels_figure(
        _panels(rng),
        title="a figure title about as long as the demo's own, which must stay whole",
        columns=4,
        shifts_px=shifts,
        curves={"block (0, 0)": [0.3, 0.2, 0.15]},
    )
    fig.canvas.draw()
    yield fig
    plt.close(fig)


def test_titles_and_labels_stay_inside_the_figure(figure):
    box = figure.bbox
    renderer = figure.canvas.get_renderer()
    texts = [figure._suptitle]
    for ax in figure.axes:
        low, high = sorted(ax.get_ylim())
        shown = [t for t in ax.get_yticklabels() if low <= t.get_position()[1] <= high]
        left, right = sorted(ax.get_xlim())
        shown += [t for t in ax.get_xticklabels() if left <= t.get_position()[0] <= right]
        texts += [ax.title, *shown]
    for text in texts:
        if not text.get_text():
            continue
        extent = text.get_window_extent(renderer)
        assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1, text.get_text()
        assert box.y0 - 1 <= extent.y0 and extent.y1 <= box.y1 + 1, text.get_text()


def test_no_empty_cell_and_one_scale_per_group(figure):
    images = [ax for ax in figure.axes if ax.images]
    colorbars = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    others = [ax for ax in figure.axes if not ax.images and ax not in colorbars]
    assert len(images) == 4 and len(colorbars) == 4
    assert len(others) == 2  # the shift diagram and the curves; cells 7 and 8 are removed
    assert all(ax.axison and ax.has_data() for ax in others)
    small, large = images[1].images[0].norm, images[2].images[0].norm
    assert (small.vmin, small.vmax) == (large.vmin, large.vmax)
    assert small.vmin == -small.vmax and small.vmax > 50  # the larger residual's range
    difference = images[3].images[0].norm
    assert difference.vmax < small.vmax  # another group keeps its own scale


def test_colour_bar_labels_are_apart(figure):
    renderer = figure.canvas.get_renderer()
    for ax in figure.axes:
        if ax.get_label() != "<colorbar>":
            continue
        low, high = sorted(ax.get_ylim())
        labels = [
            t for t in ax.get_yticklabels() if t.get_text() and low <= t.get_position()[1] <= high
        ]
        assert len(labels) >= 3
        extents = sorted((t.get_window_extent(renderer) for t in labels), key=lambda e: e.y0)
        for below, above in itertools.pairwise(extents):
            assert below.y1 <= above.y0, [t.get_text() for t in labels]


def test_colorbar_ticks_are_even_along_the_bar():
    norm = matplotlib.colors.AsinhNorm(linear_width=50.0, vmin=-3.0, vmax=1700.0)
    ticks = colorbar_ticks(norm, -3.0, 1700.0)
    assert len(ticks) == 5 and ticks == sorted(set(ticks))
    assert ticks[0] >= -3.0 and ticks[-1] <= 1700.0
    positions = norm(np.array(ticks))
    assert np.diff(positions).min() > 0.15


def test_image_panels_writes_a_png(tmp_path):
    path = image_panels(_panels(np.random.default_rng(1)), tmp_path / "f.png", columns=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
