"""The DCR fit as lazy Dask graphs over the tile's subregions.

The tile is cut into blocks of ``subregionSize`` (:class:`TileGrid`). Every
block is fitted on itself grown by a halo, with the kernels of
:mod:`dcr_dask.kernels.model`, :mod:`dcr_dask.kernels.regularize` and
:mod:`dcr_dask.kernels.convergence`; only its core is kept.

How one pass works
    The model of the whole tile is a Dask array. For each block still being
    fitted, one task receives the block grown by the halo (model, visit
    images, good pixels, sub-band weights, template, masks), computes the
    forward models, the convergence metric of the current model, the gain,
    and the updated model, and returns the new core with the metric and the
    gain. The driver persists the new cores, reads the per-block metrics (a
    few numbers per block), and decides for each block whether it stops
    (docs/algorithm.md, "Convergence and stopping rules"). A block that stops keeps the model whose
    metric said so, as the reference does.

How the neighbours are seen
    All blocks of a pass read their halo from the model of the previous pass
    (a Jacobi sweep), so the result does not depend on the order of the
    blocks. The halo is wide enough that a block's core sees exactly what it
    would see in one big block: twice the largest DCR shift (forward model
    then back-projection), plus the reach of the interpolation and of the
    regularization filters (:func:`dcr_dask.graph.halos.halo_px`). The reference's ``bufferSize``
    (largest shift + 1) is recorded but is too narrow for that.

Memory
    Blocks are processed in groups (:func:`plan_groups`) whose inputs fit in
    the workers' memory. With one group, the inputs and the model stay on the
    cluster through the passes. With several, each pass visits the groups in
    turn: a group's inputs are prepared again, its blocks read the previous
    pass's model from one buffer of a scratch Zarr store and write the new
    cores to the other. Every block therefore sees its neighbours at the same
    pass whatever the groups, unlike the reference, which fits its subregions
    one after another against a frozen buffer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import attrs
import dask
import dask.array as da
import numpy as np

from dcr_dask.graph.halos import halo_px  # re-exported: its home is graph.halos
from dcr_dask.kernels import convergence as conv
from dcr_dask.kernels import model as kernels
from dcr_dask.kernels.regularize import background_noise
from dcr_dask.kernels.shift import ShiftMethod
from dcr_dask.physics.subbands import RunShifts
from dcr_dask.progress import track

__all__ = [
    "BlockFit",
    "FitScratch",
    "FitSettings",
    "FitState",
    "TileGrid",
    "block_memory_bytes",
    "fit_tile",
    "halo_px",
    "plan_groups",
]

log = logging.getLogger(__name__)


@attrs.frozen
class FitSettings:
    """Everything the per-block fit needs from the configuration, as plain values.

    :func:`dcr_dask.settings.fit_settings` builds it from a config; the fields
    are named after the config fields they come from.
    """

    n_subfilters: int
    method: ShiftMethod
    precision: str
    order: int
    accelerate: float
    base_gain: float
    use_progressive_gain: bool
    regularize_iterations: float
    regularize_frequency: float
    regularization_width: int
    frequency_clamp: str
    use_model_weights: bool
    model_weights_width: float
    convergence_threshold: float
    min_iter: int
    max_iter: int
    use_convergence: bool
    psf_forward_model: str = "none"


@attrs.frozen
class TileGrid:
    """The tile cut into subregions.

    Parameters
    ----------
    shape : tuple of int
        Tile size ``(ny, nx)``, pixels.
    chunks_y, chunks_x : tuple of int
        Sizes of the block rows and columns, pixels.
    """

    shape: tuple[int, int]
    chunks_y: tuple[int, ...]
    chunks_x: tuple[int, ...]

    @classmethod
    def from_subregion_size(cls, shape: Sequence[int], subregion_size: Sequence[int]) -> TileGrid:
        """Cut a tile into blocks of ``subregionSize`` = (width, height), pixels."""
        ny, nx = int(shape[0]), int(shape[1])
        width, height = int(subregion_size[0]), int(subregion_size[1])

        def cut(n: int, size: int) -> tuple[int, ...]:
            return tuple(min(size, n - start) for start in range(0, n, size))

        return cls((ny, nx), cut(ny, height), cut(nx, width))

    @property
    def n_blocks(self) -> tuple[int, int]:
        """Number of block rows and columns."""
        return len(self.chunks_y), len(self.chunks_x)

    @property
    def chunks(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Dask chunks ``(y, x)`` of arrays on this grid."""
        return self.chunks_y, self.chunks_x

    def blocks(self) -> Iterator[tuple[int, int]]:
        """Every block index ``(i, j)``, row by row."""
        for i in range(len(self.chunks_y)):
            for j in range(len(self.chunks_x)):
                yield i, j

    def bounds(self, block: tuple[int, int]) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of a block's core, tile pixels."""
        i, j = block
        y0 = sum(self.chunks_y[:i])
        x0 = sum(self.chunks_x[:j])
        return y0, y0 + self.chunks_y[i], x0, x0 + self.chunks_x[j]

    def block_at(self, y: float, x: float) -> tuple[int, int]:
        """Index ``(i, j)`` of the block holding tile pixel ``(y, x)`` (clipped to the tile)."""
        starts_y = np.cumsum((0, *self.chunks_y))
        starts_x = np.cumsum((0, *self.chunks_x))
        i = int(np.clip(np.searchsorted(starts_y, y, side="right") - 1, 0, len(self.chunks_y) - 1))
        j = int(np.clip(np.searchsorted(starts_x, x, side="right") - 1, 0, len(self.chunks_x) - 1))
        return i, j

    def centre(self, block: tuple[int, int]) -> tuple[float, float]:
        """``(y, x)`` centre of a block, 0-based tile pixels."""
        y0, y1, x0, x1 = self.bounds(block)
        return (y0 + y1 - 1) / 2.0, (x0 + x1 - 1) / 2.0


@attrs.frozen
class _Grown:
    """Where a block grown by the halo lies in the tile, and the zero padding beyond it."""

    ys: slice
    xs: slice
    pad: tuple[tuple[int, int], tuple[int, int]]
    core: tuple[slice, slice]


def _grown(grid: TileGrid, block: tuple[int, int], halo: int) -> _Grown:
    y0, y1, x0, x1 = grid.bounds(block)
    ny, nx = grid.shape
    gy0, gy1, gx0, gx1 = (
        max(y0 - halo, 0),
        min(y1 + halo, ny),
        max(x0 - halo, 0),
        min(x1 + halo, nx),
    )
    pad = ((gy0 - (y0 - halo), (y1 + halo) - gy1), (gx0 - (x0 - halo), (x1 + halo) - gx1))
    core = (slice(halo, halo + y1 - y0), slice(halo, halo + x1 - x0))
    return _Grown(slice(gy0, gy1), slice(gx0, gx1), pad, core)


def _pad(array: np.ndarray, pad: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    if not any(any(p) for p in pad):
        return np.asarray(array)
    widths = [(0, 0)] * (array.ndim - 2) + [pad[0], pad[1]]
    return np.pad(np.asarray(array), widths)


@attrs.frozen
class BlockFit:
    """How the fit of one block went.

    Attributes
    ----------
    block : tuple of int
        Block index ``(i, j)``.
    metrics : list of float
        Convergence metric of each model state, the starting model first.
    gains : list of float
        Gain of each iteration done.
    iterations : int
        Iterations whose model was kept.
    reason : str
        Why the fit stopped: ``converged``, ``diverged``, ``no data``,
        ``max iterations``.
    group : int
        Number of the group of blocks it was fitted in (0 first).
    """

    block: tuple[int, int]
    metrics: list[float]
    gains: list[float]
    iterations: int
    reason: str
    group: int = 0

    def as_dict(self, grid: TileGrid) -> dict[str, Any]:
        """JSON-ready record, with the block's tile bounds."""
        y0, y1, x0, x1 = grid.bounds(self.block)
        return {
            "block": list(self.block),
            "bounds_yx": [y0, y1, x0, x1],
            "metrics": [float(m) for m in self.metrics],
            "gains": [float(g) for g in self.gains],
            "iterations": self.iterations,
            "reason": self.reason,
            "group": self.group,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> BlockFit:
        """Read back :meth:`as_dict`'s record (a resumed run's fits of earlier groups)."""
        return cls(
            block=(int(record["block"][0]), int(record["block"][1])),
            metrics=[float(m) for m in record["metrics"]],
            gains=[float(g) for g in record["gains"]],
            iterations=int(record["iterations"]),
            reason=str(record["reason"]),
            group=int(record["group"]),
        )


def _prepare_block(
    images: np.ndarray,
    good: np.ndarray,
    convergence_mask: np.ndarray,
    template: np.ndarray,
    background: np.ndarray,
    detected: np.ndarray,
    *,
    pad: tuple[tuple[int, int], tuple[int, int]],
    unsplit: np.ndarray,
    settings: FitSettings,
    visit_weights: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Everything about a grown block that stays fixed through the iterations."""
    good = _pad(good, pad).astype(bool)
    images = np.where(good, _pad(images, pad), 0.0).astype(np.float32)
    inverse_weight, n_image = kernels.subband_weights(
        good,
        unsplit,
        method=settings.method,
        order=settings.order,
        visit_weights=visit_weights,
        precision=settings.precision,
    )
    template = _pad(template, pad).astype(np.float32)
    detected = _pad(detected, pad).astype(bool)
    prepared = {
        "images": images,
        "good": good,
        "convergence_mask": _pad(convergence_mask, pad).astype(bool),
        "template": template,
        "background": _pad(background, pad).astype(bool),
        "inverse_weight": inverse_weight,
        "n_image": n_image,
    }
    if settings.use_model_weights:
        prepared["model_weights"] = kernels.model_weights(detected, settings.model_weights_width)
    return prepared


def _fit_step(
    model: np.ndarray,
    prepared: dict[str, np.ndarray],
    *,
    pad: tuple[tuple[int, int], tuple[int, int]],
    core: tuple[slice, slice],
    shifts: np.ndarray,
    unsplit: np.ndarray,
    metrics: list[float],
    gains: list[float],
    settings: FitSettings,
    visit_weights: np.ndarray | None,
    buffer_px: int,
    psf_blur: np.ndarray | None = None,
) -> tuple[np.ndarray, float, float]:
    """One pass on one grown block: metric of ``model``, gain, and the new core.

    The templates of ``model`` are made once, one visit at a time, inside the
    iteration: each is used for its visit's convergence term (over the core) and
    its residual, so no ``(V, ny, nx)`` template stack is held.
    """
    model = _pad(model, pad).astype(np.float64)
    n_visits = prepared["images"].shape[0]
    measure = settings.use_convergence or settings.use_progressive_gain
    terms = np.zeros(n_visits)
    observe = None
    if measure:
        noise = background_noise(
            model[min(1, model.shape[0] - 1)], prepared["background"], border=buffer_px
        )
        significance = conv.significance_image(model[(slice(None), *core)], noise)
        mask = prepared["convergence_mask"]

        def observe(v: int, template: np.ndarray) -> None:
            terms[v] = conv.visit_convergence_term(
                prepared["images"][v][core],
                template[core],
                prepared["good"][v][core],
                mask[v if mask.shape[0] > 1 else 0][core],
                significance,
            )

    chosen: dict[str, float] = {}

    def gain_of_model() -> float:
        # the metric of ``model`` (the mean of the visits' terms, 1.0 without visits, as
        # convergence_metric), known once every template has been made
        metric = (float(terms.mean()) if n_visits else 1.0) if measure else float("nan")
        chosen["metric"] = metric
        chosen["gain"] = conv.calculate_gain(
            [*metrics, metric], gains, settings.base_gain, settings.use_progressive_gain
        )
        return chosen["gain"]

    new = kernels.iterate_block(
        model,
        prepared["images"],
        prepared["good"],
        shifts,
        unsplit,
        prepared["inverse_weight"],
        gain=gain_of_model,
        accelerate=settings.accelerate,
        method=settings.method,
        order=settings.order,
        regularize_iterations=settings.regularize_iterations,
        regularize_frequency=settings.regularize_frequency,
        regularization_width=settings.regularization_width,
        frequency_clamp=settings.frequency_clamp,
        background=prepared["background"],
        template_image=prepared["template"],
        model_weights=prepared.get("model_weights"),
        visit_weights=visit_weights,
        precision=settings.precision,
        observe=observe,
        psf_blur=psf_blur,
    )
    metric, gain = chosen["metric"], chosen["gain"]
    return new[(slice(None), *core)], float(metric), float(gain)


def block_memory_bytes(grid: TileGrid, halo: int, n_visits: int, n_subfilters: int) -> float:
    """Memory one grown block takes while it is fitted, bytes (an upper estimate).

    Per visit and pixel: the float32 image, the good-pixel and convergence
    flags kept through the iterations, and the input chunks read to make them
    (image, mask, variance); per sub-band and pixel: the model (float64 and
    float32 copies), weights, ``n_image``, two spectral buffers (complex128 at
    most) and the new planes; plus the block-wide template and flags.

    Parameters
    ----------
    grid : TileGrid
        The subregions (the first block's size is used: the largest).
    halo : int
        Halo of every block, pixels.
    n_visits, n_subfilters : int
        Visits and sub-bands.

    Returns
    -------
    float
        Bytes.
    """
    pixels = (grid.chunks_y[0] + 2 * halo) * (grid.chunks_x[0] + 2 * halo)
    per_visit = 4 + 1 + 1 + (4 + 4 + 4)
    per_subband = 8 + 4 + 4 + 2 + 2 * 16 + 4 + 8
    return float(pixels * (n_visits * per_visit + n_subfilters * per_subband + 32))


def plan_groups(
    grid: TileGrid,
    bytes_per_block: float,
    memory_budget_bytes: float | None,
    max_blocks: int | None = None,
) -> list[list[tuple[int, int]]]:
    """Split the blocks into groups whose inputs fit in a memory budget.

    Groups are runs of whole block rows (or parts of one row when a row does
    not fit), so that each group's halo touches as few other groups as possible.

    Parameters
    ----------
    grid : TileGrid
        The blocks.
    bytes_per_block : float
        Memory one grown block's inputs take while it is fitted, bytes.
    memory_budget_bytes : float or None
        What a group may take; None sets no memory bound.
    max_blocks : int, optional
        At most this many blocks in a group, whatever the budget (a run passes
        what its cluster fits at once, so that the fit's memory follows the
        cluster, not the tile); None sets no such bound. Without either bound,
        every block is in one group.

    Returns
    -------
    list of list of (int, int)
        The groups, in processing order.
    """
    blocks = list(grid.blocks())
    per_group = len(blocks)
    if memory_budget_bytes is not None:
        per_group = min(per_group, int(memory_budget_bytes // max(bytes_per_block, 1.0)))
    if max_blocks is not None:
        per_group = min(per_group, int(max_blocks))
    per_group = max(1, per_group)
    return [blocks[start : start + per_group] for start in range(0, len(blocks), per_group)]


@attrs.frozen
class FitInputs:
    """Lazy inputs of the fit on the tile grid.

    Attributes
    ----------
    images : dask.array.Array
        ``(V, ny, nx)`` float32 visit images.
    good : dask.array.Array
        ``(V, ny, nx)`` bool: pixels free of ``badMaskPlanes``.
    convergence_mask : dask.array.Array
        ``(V or 1, ny, nx)`` bool: pixels counted by the convergence metric.
    template, template_variance : dask.array.Array
        ``(ny, nx)`` static-sky template and its variance.
    background : dask.array.Array
        ``(ny, nx)`` bool: template pixels free of bad planes and of sources.
    detected : dask.array.Array
        ``(ny, nx)`` bool: sources of the template (for the model weights).
    visit_weights : numpy.ndarray or None
        ``(V,)`` residual weights for ``residualWeighting="inverseVariance"``.
    psf_blur : numpy.ndarray or None
        ``(V,)`` variance, px², of the Gaussian that widens the model's PSF to
        each visit's (``psfForwardModel="gaussian"``); None: no blur.
    """

    images: da.Array
    good: da.Array
    convergence_mask: da.Array
    template: da.Array
    template_variance: da.Array
    background: da.Array
    detected: da.Array
    visit_weights: np.ndarray | None = None
    psf_blur: np.ndarray | None = None


class FitScratch(Protocol):
    """Where the fit keeps its model between passes (:class:`dcr_dask.io.scratch.ScratchModel`).

    It holds two buffers of the model (0 and 1: a pass of several groups reads
    one and writes the other) and ``n_image``. The graph layer writes and reads
    it only through these methods, so the fit knows nothing of files.
    """

    def create(self, model: da.Array, n_image: da.Array) -> None:
        """Write the whole starting ``model`` (buffer 0) and ``n_image``; buffer 1 starts empty."""

    def write_windows(
        self,
        windows: Sequence[tuple[int, int, int, int]],
        model: Sequence[da.Array],
        n_image: Sequence[da.Array] | None,
        *,
        buffer: int = 0,
    ) -> None:
        """Write pieces of the model (into ``buffer``) and of ``n_image`` (unless None)
        at ``(y0, y1, x0, x1)`` windows."""

    def model(self, buffer: int = 0) -> da.Array:
        """The model planes of ``buffer``, lazily."""

    def n_image(self) -> da.Array:
        """The stored ``n_image``, lazily."""

    def has_inputs(self, block: tuple[int, int]) -> bool:
        """Whether a block's prepared inputs are kept (:meth:`save_inputs`)."""

    def save_inputs(
        self, block: tuple[int, int], prepared: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Keep a block's prepared inputs (on a worker) and return them."""

    def load_inputs(self, block: tuple[int, int]) -> dict[str, np.ndarray]:
        """A block's kept prepared inputs (on a worker)."""


def _initial_planes(
    template: np.ndarray, template_variance: np.ndarray, n_subfilters: int
) -> np.ndarray:
    """One block of the starting model ``T/S`` (:func:`dcr_dask.kernels.model.initial_model`)."""
    return kernels.initial_model(template, template_variance, n_subfilters)[0]


@attrs.define
class FitState:
    """Where the fit stands after a number of passes over every group of blocks.

    It is all a run needs to go on from there (with the scratch store): the
    plan of groups, the passes done, each block's convergence history, and the
    blocks that stopped.

    Attributes
    ----------
    groups : list of list of (int, int)
        The groups of blocks, in the order each pass visits them.
    passes : int
        Passes done: after ``passes`` passes the model is in the scratch store's
        buffer ``passes % 2`` (every stopped block is in both buffers).
    metrics, gains : dict
        Each block's metrics (one per model state measured) and gains.
    stopped : dict of (int, int) to BlockFit
        The blocks that stopped, with how their fit went.
    """

    groups: list[list[tuple[int, int]]]
    passes: int = 0
    metrics: dict[tuple[int, int], list[float]] = attrs.Factory(dict)
    gains: dict[tuple[int, int], list[float]] = attrs.Factory(dict)
    stopped: dict[tuple[int, int], BlockFit] = attrs.Factory(dict)

    @classmethod
    def start(cls, groups: list[list[tuple[int, int]]]) -> FitState:
        """The state before the first pass."""
        blocks = [b for group in groups for b in group]
        return cls(groups, 0, {b: [] for b in blocks}, {b: [] for b in blocks}, {})

    @property
    def finished(self) -> bool:
        """Whether every block has stopped."""
        return all(b in self.stopped for group in self.groups for b in group)

    def as_dict(self, grid: TileGrid) -> dict[str, Any]:
        """JSON-ready record (for the run's checkpoint)."""
        return {
            "groups": [[list(b) for b in group] for group in self.groups],
            "passes": self.passes,
            "blocks": [
                {
                    "block": list(b),
                    "metrics": [float(m) for m in self.metrics[b]],
                    "gains": [float(g) for g in self.gains[b]],
                    "stopped": self.stopped[b].as_dict(grid) if b in self.stopped else None,
                }
                for group in self.groups
                for b in group
            ],
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> FitState:
        """Read back :meth:`as_dict`'s record."""
        groups = [[(int(i), int(j)) for i, j in group] for group in record["groups"]]
        state = cls(groups, int(record["passes"]))
        for entry in record["blocks"]:
            block = (int(entry["block"][0]), int(entry["block"][1]))
            state.metrics[block] = [float(m) for m in entry["metrics"]]
            state.gains[block] = [float(g) for g in entry["gains"]]
            if entry["stopped"] is not None:
                state.stopped[block] = BlockFit.from_dict(entry["stopped"])
        return state


def fit_tile(
    inputs: FitInputs,
    grid: TileGrid,
    shifts: dict[tuple[int, int], RunShifts],
    settings: FitSettings,
    scratch: FitScratch,
    *,
    halo: int,
    memory_budget_bytes: float | None = None,
    max_blocks_per_group: int | None = None,
    groups: Sequence[Sequence[tuple[int, int]]] | None = None,
    resume: FitState | None = None,
    on_pass_done: Callable[[FitState], None] | None = None,
) -> tuple[da.Array, da.Array, list[BlockFit]]:
    """Fit the DCR model over the whole tile.

    Every pass steps every block still being fitted once, each reading its
    halo from the model of the previous pass (a Jacobi sweep), so the result
    does not depend on where the tile is cut nor on how the blocks are grouped.
    With one group, the model stays on the cluster between passes. With more
    (a tile whose blocks' inputs do not fit in memory at once), each pass
    visits the groups one after another, prepares a group's inputs again,
    reads the previous pass's model from one buffer of the scratch store and
    writes the new one to the other, and records the pass (``on_pass_done``),
    so that an interrupted run goes on from the last pass written.

    Parameters
    ----------
    inputs : FitInputs
        Lazy inputs on the tile grid.
    grid : TileGrid
        The subregions.
    shifts : dict
        :class:`~dcr_dask.physics.subbands.RunShifts` of each block (the same object
        for every block unless the geometry is local).
    settings : FitSettings
        The fit's settings.
    scratch : FitScratch
        The scratch store of the model (created here unless resuming):
        :class:`dcr_dask.io.scratch.ScratchModel` in a run.
    halo : int
        Halo of every block, pixels (:func:`dcr_dask.graph.halos.halo_px`).
    memory_budget_bytes : float, optional
        Memory a group of blocks may use; None sets no memory bound.
    max_blocks_per_group : int, optional
        At most this many blocks in a group (:func:`plan_groups`); with neither
        bound, all blocks are fitted together.
    groups : sequence of sequence of (int, int), optional
        The groups of blocks; default :func:`plan_groups` with
        ``memory_budget_bytes`` and ``max_blocks_per_group``.
    resume : FitState, optional
        Where an interrupted run's fit stood (its last recorded pass), with
        ``scratch`` as it left it: the fit goes on from there, to the same
        result, bit for bit, as without the interruption. Its groups are used,
        and it is brought up to date in place.
    on_pass_done : callable, optional
        Called with the :class:`FitState` once a pass is in ``scratch`` (after
        every pass with several groups; once at the end with one).

    Returns
    -------
    model : dask.array.Array
        ``(S, ny, nx)`` float32 fitted planes ``M_s`` (before amplification),
        read from the scratch store.
    n_image : dask.array.Array
        ``(S, ny, nx)`` uint16 visits contributing to each sub-band pixel.
    fits : list of BlockFit
        Convergence history of every block.
    """
    S = settings.n_subfilters
    n_visits = inputs.images.shape[0]
    if resume is not None:
        groups = resume.groups
    elif groups is None:
        bytes_per_block = block_memory_bytes(grid, halo, n_visits, S)
        groups = plan_groups(grid, bytes_per_block, memory_budget_bytes, max_blocks_per_group)
    plan: list[list[tuple[int, int]]] = [[(int(i), int(j)) for i, j in group] for group in groups]
    if sorted(b for group in plan for b in group) != sorted(grid.blocks()):
        raise ValueError("the groups do not hold every block of the grid exactly once")
    log.info(
        "fitting %d blocks of %s px (halo %d px) in %d group(s), %d visits, %d sub-bands, "
        "%s shifts",
        len(list(grid.blocks())),
        f"{grid.chunks_y[0]}x{grid.chunks_x[0]}",
        halo,
        len(plan),
        n_visits,
        S,
        settings.method,
    )
    if resume is None:
        state = FitState.start(plan)
        _start_scratch(inputs, grid, S, scratch)
    else:
        state = resume
        log.info(
            "resuming the fit after pass %d (%d of %d blocks stopped)",
            state.passes,
            len(state.stopped),
            len(list(grid.blocks())),
        )
    if not state.finished:
        if len(plan) == 1:
            _fit_in_memory(inputs, grid, shifts, settings, scratch, state, halo)
        else:
            _fit_by_groups(inputs, grid, shifts, settings, scratch, state, halo, on_pass_done)
        if on_pass_done is not None and len(plan) == 1:
            on_pass_done(state)
    group_of = {b: k for k, group in enumerate(plan) for b in group}
    fits = [attrs.evolve(state.stopped[b], group=group_of[b]) for group in plan for b in group]
    return scratch.model(), scratch.n_image(), fits


def _start_scratch(
    inputs: FitInputs, grid: TileGrid, n_subfilters: int, scratch: FitScratch
) -> None:
    """The starting model ``T/S`` (:func:`dcr_dask.kernels.model.initial_model`) into
    ``scratch``, with ``n_image`` zero."""
    S = n_subfilters
    initial = da.map_blocks(
        _initial_planes,
        inputs.template.rechunk(grid.chunks),
        inputs.template_variance.rechunk(grid.chunks),
        n_subfilters=S,
        new_axis=0,
        chunks=((S,), *grid.chunks),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )
    ny, nx = grid.shape
    scratch.create(initial, da.zeros((S, ny, nx), dtype=np.uint16, chunks=((S,), *grid.chunks)))


def _step_task(
    block: tuple[int, int],
    state: FitState,
    model: da.Array,
    prepared: Any,
    grown: _Grown,
    shifts: Mapping[tuple[int, int], RunShifts],
    settings: FitSettings,
    inputs: FitInputs,
) -> Any:
    """The lazy pass of one block: its new core, the metric and the gain."""
    return dask.delayed(_fit_step, pure=True, nout=3)(
        model[:, grown.ys, grown.xs],
        prepared,
        settings=settings,
        **_step_arguments(block, state, grown, shifts, inputs),
    )


def _step_arguments(
    block: tuple[int, int],
    state: FitState,
    grown: _Grown,
    shifts: Mapping[tuple[int, int], RunShifts],
    inputs: FitInputs,
) -> dict[str, Any]:
    """The block's keyword arguments of :func:`_fit_step` other than its settings."""
    return {
        "pad": grown.pad,
        "core": grown.core,
        "shifts": shifts[block].shifts_px,
        "unsplit": shifts[block].unsplit_px,
        "metrics": list(state.metrics[block]),
        "gains": list(state.gains[block]),
        "visit_weights": inputs.visit_weights,
        "buffer_px": shifts[block].buffer_px,
        "psf_blur": inputs.psf_blur,
    }


def _record_pass(
    state: FitState,
    numbers: Mapping[tuple[int, int], tuple[float, float]],
    settings: FitSettings,
) -> list[tuple[int, int]]:
    """Add one pass's metrics (and the gains of the blocks going on) to ``state``; the
    blocks that go on."""
    going_on = []
    for block, (metric, gain) in numbers.items():
        state.metrics[block].append(metric)
        fit = _stopped(block, state.metrics[block], state.gains[block], settings)
        if fit is not None:
            state.stopped[block] = fit
            continue
        log.info(
            "block %s iteration %d: metric %.5g, gain %.3f",
            block,
            len(state.metrics[block]),
            metric,
            gain,
        )
        state.gains[block].append(gain)
        going_on.append(block)
    return going_on


def _fit_in_memory(
    inputs: FitInputs,
    grid: TileGrid,
    shifts: Mapping[tuple[int, int], RunShifts],
    settings: FitSettings,
    scratch: FitScratch,
    state: FitState,
    halo: int,
) -> None:
    """Every block in one group: the inputs and the model stay on the cluster through the
    passes, and the final model is written to ``scratch`` once."""
    (group,) = state.groups
    grown = {block: _grown(grid, block, halo) for block in group}
    prepared = _prepare_group(inputs, shifts, settings, grown, "fit")
    S = settings.n_subfilters
    stored = scratch.model(0)
    current: dict[tuple[int, int], da.Array] = {}
    active = [b for b in group if b not in state.stopped]
    if len(group) == 1 and active and PASSES_PER_TASK > 1:
        # one block is the whole tile: no halo to exchange between passes, so
        # several passes run in one task (the same passes, without a round trip
        # through the scheduler each)
        block = group[0]
        current = _fit_alone(
            block, inputs, grid, shifts, settings, state, stored, prepared[block], grown[block]
        )
        active = []
    while active:
        model = _assemble_model(grid, stored, current, S)
        results = {
            b: _step_task(b, state, model, prepared[b], grown[b], shifts, settings, inputs)
            for b in active
        }
        persisted = dict(zip(active, dask.persist(*results.values()), strict=True))
        track(list(persisted.values()), f"fit, iteration {state.passes + 1}")
        numbers = dask.compute({b: (r[1], r[2]) for b, r in persisted.items()})[0]
        active = _record_pass(state, numbers, settings)
        for block in active:
            current[block] = da.from_delayed(
                persisted[block][0], shape=(S, *_block_shape(grid, block)), dtype=np.float32
            )
        state.passes += 1
    final = _assemble_model(grid, stored, current, S)
    windows = [grid.bounds(block) for block in group]
    n_image = _n_image_cores(grid, grown, prepared, S)
    scratch.write_windows(
        windows,
        [final[:, y0:y1, x0:x1] for y0, y1, x0, x1 in windows],
        [n_image[block] for block in group],
        buffer=0,
    )


#: Passes of a one-block tile run in one task (:func:`_fit_alone`): few enough that
#: the progress bar still moves, enough that the scheduler's cost per pass is small.
PASSES_PER_TASK = 8


def _fit_passes(
    model: np.ndarray,
    prepared: dict[str, np.ndarray],
    *,
    n_passes: int,
    metrics: list[float],
    gains: list[float],
    settings: FitSettings,
    **step: Any,
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Up to ``n_passes`` passes of :func:`_fit_step` on a block that is the whole tile.

    Stops where :func:`_record_pass` would stop the block, keeping the model
    whose metric stopped it. Returns the model and each pass's (metric, gain),
    for the client to record exactly as if each pass had been a task.
    """
    metrics, gains = list(metrics), list(gains)
    done: list[tuple[float, float]] = []
    for _ in range(n_passes):
        new, metric, gain = _fit_step(
            model, prepared, metrics=metrics, gains=gains, settings=settings, **step
        )
        done.append((metric, gain))
        metrics.append(metric)
        if _should_stop(metrics, settings)[0]:
            break
        gains.append(gain)
        model = new
    return model, done


def _fit_alone(
    block: tuple[int, int],
    inputs: FitInputs,
    grid: TileGrid,
    shifts: Mapping[tuple[int, int], RunShifts],
    settings: FitSettings,
    state: FitState,
    stored: da.Array,
    prepared: Any,
    grown: _Grown,
) -> dict[tuple[int, int], da.Array]:
    """The fit of a tile of one block, :data:`PASSES_PER_TASK` passes per task.

    The passes are those of the loop in :func:`_fit_in_memory` (the same
    model, bit for bit, the same metrics, gains and log); returns the block's
    fitted model (empty if no pass was kept).
    """
    S = settings.n_subfilters
    y0, y1, x0, x1 = grid.bounds(block)
    model: Any = stored[:, y0:y1, x0:x1]
    current: dict[tuple[int, int], da.Array] = {}
    while block not in state.stopped:
        task = dask.delayed(_fit_passes, pure=True, nout=2)(
            model,
            prepared,
            n_passes=PASSES_PER_TASK,
            settings=settings,
            **_step_arguments(block, state, grown, shifts, inputs),
        )
        (persisted,) = dask.persist(task)
        track([persisted], f"fit, iterations {state.passes + 1}-")
        done = dask.compute(persisted[1])[0]
        kept = 0
        for metric, gain in done:
            going_on = _record_pass(state, {block: (metric, gain)}, settings)
            state.passes += 1
            kept += bool(going_on)
        if kept:
            model = persisted[0]
            current[block] = da.from_delayed(
                model, shape=(S, *_block_shape(grid, block)), dtype=np.float32
            )
    return current


def _fit_by_groups(
    inputs: FitInputs,
    grid: TileGrid,
    shifts: Mapping[tuple[int, int], RunShifts],
    settings: FitSettings,
    scratch: FitScratch,
    state: FitState,
    halo: int,
    on_pass_done: Callable[[FitState], None] | None,
) -> None:
    """Several groups: each pass visits them in turn, reading the previous pass's model
    from one buffer of ``scratch`` and writing the new one to the other.

    A block that stops keeps the model its metric was measured on, which is in
    the buffer read; it is written to the other one too, so that every stopped
    block is in both buffers and is never written again.
    """
    S = settings.n_subfilters
    n_groups = len(state.groups)
    while not state.finished:
        started = time.perf_counter()
        read, write = state.passes % 2, (state.passes + 1) % 2
        stored = scratch.model(read)
        for number, group in enumerate(state.groups, start=1):
            active = [b for b in group if b not in state.stopped]
            if not active:
                continue
            grown = {block: _grown(grid, block, halo) for block in active}
            label = f"fit iteration {state.passes + 1}, group {number}/{n_groups}"
            first = state.passes == 0
            if first:
                # prepared (or, resuming, read back), kept, and their n_image written
                prepared = _prepare_group(inputs, shifts, settings, grown, label, keep=scratch)
            else:
                # read back inside each block's step: no round trip of their own
                prepared = {b: dask.delayed(scratch.load_inputs, pure=False)(b) for b in active}
            results = {
                b: _step_task(b, state, stored, prepared[b], grown[b], shifts, settings, inputs)
                for b in active
            }
            persisted = dict(zip(active, dask.persist(*results.values()), strict=True))
            track(list(persisted.values()), label)
            numbers = dask.compute({b: (r[1], r[2]) for b, r in persisted.items()})[0]
            going_on = set(_record_pass(state, numbers, settings))
            windows = [grid.bounds(block) for block in active]
            pieces = [
                da.from_delayed(
                    persisted[b][0], shape=(S, *_block_shape(grid, b)), dtype=np.float32
                )
                if b in going_on
                else stored[:, y0:y1, x0:x1]
                for b, (y0, y1, x0, x1) in zip(active, windows, strict=True)
            ]
            n_image = _n_image_cores(grid, grown, prepared, S) if first else None
            scratch.write_windows(
                windows,
                pieces,
                None if n_image is None else [n_image[b] for b in active],
                buffer=write,
            )
            # the group's inputs and results go from the cluster before the next group's come
            del prepared, results, persisted, pieces, n_image
        state.passes += 1
        if on_pass_done is not None:
            on_pass_done(state)
        log.info(
            "fit pass %d over %d groups done in %.1f s (%d blocks going on)",
            state.passes,
            n_groups,
            time.perf_counter() - started,
            sum(1 for group in state.groups for b in group if b not in state.stopped),
        )


def _prepare_group(
    inputs: FitInputs,
    shifts: Mapping[tuple[int, int], RunShifts],
    settings: FitSettings,
    grown: Mapping[tuple[int, int], _Grown],
    label: str,
    keep: FitScratch | None = None,
) -> dict[tuple[int, int], Any]:
    """Each block's fixed inputs (:func:`_prepare_block`), persisted on the cluster.

    With ``keep`` (several groups, whose inputs are needed again at every
    pass), a block's inputs are prepared once and kept in the scratch store,
    then read back from there: preparing them again would read and mask the
    visits, rebuild the detection and shift the good-pixel flags at every pass.
    """
    prepared = {}
    for block, g in grown.items():
        if keep is not None and keep.has_inputs(block):
            prepared[block] = dask.delayed(keep.load_inputs, pure=False)(block)
            continue
        pix = (slice(None), g.ys, g.xs)
        made = dask.delayed(_prepare_block, pure=True)(
            inputs.images[pix],
            inputs.good[pix],
            inputs.convergence_mask[pix],
            inputs.template[g.ys, g.xs],
            inputs.background[g.ys, g.xs],
            inputs.detected[g.ys, g.xs],
            pad=g.pad,
            unsplit=shifts[block].unsplit_px,
            settings=settings,
            visit_weights=inputs.visit_weights,
        )
        prepared[block] = made if keep is None else dask.delayed(keep.save_inputs)(block, made)
    persisted = dict(zip(grown, dask.persist(*prepared.values()), strict=True))
    track(list(persisted.values()), f"{label}, inputs")
    return persisted


def _should_stop(history: list[float], settings: FitSettings) -> tuple[bool, str]:
    """:func:`dcr_dask.kernels.convergence.should_stop` with the fit's settings."""
    return conv.should_stop(
        history,
        threshold=settings.convergence_threshold,
        min_iter=settings.min_iter,
        max_iter=settings.max_iter,
        use_convergence=settings.use_convergence,
    )


def _stopped(
    block: tuple[int, int], history: list[float], gains: list[float], settings: FitSettings
) -> BlockFit | None:
    """The block's fit if its metric ``history`` says it stops (logged), else None."""
    stop, reason = _should_stop(history, settings)
    if not stop:
        return None
    n_done = len(history) - 1
    level = logging.WARNING if reason in ("diverged", "no data") else logging.INFO
    log.log(
        level,
        "block %s stops after %d iterations: %s (metric %.5g)",
        block,
        n_done,
        reason,
        history[-1],
    )
    return BlockFit(block, list(history), list(gains), n_done, reason)


def _n_image_cores(
    grid: TileGrid,
    grown: Mapping[tuple[int, int], _Grown],
    prepared: Mapping[tuple[int, int], Any],
    n_subfilters: int,
) -> dict[tuple[int, int], da.Array]:
    """Each block's ``n_image`` core, lazily, from its prepared inputs."""
    return {
        block: da.from_delayed(
            dask.delayed(lambda p, core: p["n_image"][(slice(None), *core)])(
                prepared[block], g.core
            ),
            shape=(n_subfilters, *_block_shape(grid, block)),
            dtype=np.uint16,
        )
        for block, g in grown.items()
    }


def _block_shape(grid: TileGrid, block: tuple[int, int]) -> tuple[int, int]:
    y0, y1, x0, x1 = grid.bounds(block)
    return y1 - y0, x1 - x0


def _assemble_model(
    grid: TileGrid, stored: da.Array, current: Mapping[tuple[int, int], da.Array], S: int
) -> da.Array:
    """The tile's model: fitted cores of this group where there are some, the store elsewhere."""
    rows = []
    for i in range(len(grid.chunks_y)):
        row = []
        for j in range(len(grid.chunks_x)):
            if (i, j) in current:
                row.append(current[(i, j)])
            else:
                y0, y1, x0, x1 = grid.bounds((i, j))
                row.append(stored[:, y0:y1, x0:x1])
        rows.append(row)
    return da.block(rows)
