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
    the workers' memory. Each group is iterated to convergence and written to
    a scratch Zarr store before the next one starts; blocks outside the group
    are read from that store (initial or final values), as the reference
    freezes the buffer around the subregion it fits.
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
    """Where the fit keeps its model between groups (:class:`dcr_dask.io.scratch.ScratchModel`).

    The graph layer writes and reads it only through these methods, so the fit
    knows nothing of files.
    """

    def create(self, model: da.Array, n_image: da.Array) -> None:
        """Write the whole starting ``model`` and ``n_image``."""

    def write_windows(
        self,
        windows: Sequence[tuple[int, int, int, int]],
        model: Sequence[da.Array],
        n_image: Sequence[da.Array],
    ) -> None:
        """Write pieces of the model and ``n_image`` at ``(y0, y1, x0, x1)`` windows."""

    def model(self) -> da.Array:
        """The stored model planes, lazily."""

    def n_image(self) -> da.Array:
        """The stored ``n_image``, lazily."""


def _initial_planes(
    template: np.ndarray, template_variance: np.ndarray, n_subfilters: int
) -> np.ndarray:
    """One block of the starting model ``T/S`` (:func:`dcr_dask.kernels.model.initial_model`)."""
    return kernels.initial_model(template, template_variance, n_subfilters)[0]


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
    finished: Mapping[int, Sequence[BlockFit]] | None = None,
    on_group_done: Callable[[int, list[list[tuple[int, int]]], list[BlockFit]], None] | None = None,
) -> tuple[da.Array, da.Array, list[BlockFit]]:
    """Fit the DCR model over the whole tile.

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
        The scratch store of the model (created here):
        :class:`dcr_dask.io.scratch.ScratchModel` in a run.
    halo : int
        Halo of every block, pixels (:func:`dcr_dask.graph.halos.halo_px`).
    memory_budget_bytes : float, optional
        Memory a group of blocks may use; None sets no memory bound.
    max_blocks_per_group : int, optional
        At most this many blocks in a group (:func:`plan_groups`); with neither
        bound, all blocks are fitted together.
    groups : sequence of sequence of (int, int), optional
        The groups of blocks, in the order they are fitted; default
        :func:`plan_groups` with ``memory_budget_bytes``. A resumed run gives
        the interrupted run's plan: where the groups are cut changes the result.
    finished : mapping of int to sequence of BlockFit, optional
        Groups (by their index in ``groups``) that an interrupted run fitted and
        wrote to ``scratch``, with their fits: they are not fitted again. The
        scratch store is kept, and every block of the other groups is set back
        to the starting model (a group whose write was cut off starts again from
        where an uninterrupted fit starts it), so the result is the same, bit for
        bit, as without the interruption.
    on_group_done : callable, optional
        Called as ``on_group_done(index, groups, fits)`` once a group's cores are
        written to ``scratch``.

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
    if groups is None:
        bytes_per_block = block_memory_bytes(grid, halo, n_visits, S)
        groups = plan_groups(grid, bytes_per_block, memory_budget_bytes, max_blocks_per_group)
    plan: list[list[tuple[int, int]]] = [[(int(i), int(j)) for i, j in group] for group in groups]
    if sorted(b for group in plan for b in group) != sorted(grid.blocks()):
        raise ValueError("the groups do not hold every block of the grid exactly once")
    finished = {int(k): list(v) for k, v in (finished or {}).items()}
    _start_scratch(inputs, grid, S, plan, finished, scratch)
    stored = scratch.model()
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
    if finished:
        log.info(
            "resuming the fit: group(s) %s of %d were fitted by the interrupted run",
            ", ".join(str(k + 1) for k in sorted(finished)),
            len(plan),
        )
    fits: list[BlockFit] = []
    for number, group in enumerate(plan, start=1):
        if number - 1 in finished:
            fits += [attrs.evolve(fit, group=number - 1) for fit in finished[number - 1]]
            continue
        started = time.perf_counter()
        label = f"fit group {number}/{len(plan)}"
        done = [
            attrs.evolve(fit, group=number - 1)
            for fit in _fit_group(
                inputs, grid, shifts, settings, scratch, stored, group, halo, label
            )
        ]
        fits += done
        if on_group_done is not None:
            on_group_done(number - 1, plan, done)
        log.info(
            "group %d/%d (%d blocks) done in %.1f s",
            number,
            len(plan),
            len(group),
            time.perf_counter() - started,
        )
    return scratch.model(), scratch.n_image(), fits


def _start_scratch(
    inputs: FitInputs,
    grid: TileGrid,
    n_subfilters: int,
    groups: list[list[tuple[int, int]]],
    finished: Mapping[int, Sequence[BlockFit]],
    scratch: FitScratch,
) -> None:
    """The starting model ``T/S`` (:func:`dcr_dask.kernels.model.initial_model`) into
    ``scratch``: the whole tile, or, resuming, every block of the groups not finished."""
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
    if finished:
        # the finished groups' cores stay; every other block starts again from the start
        again = [b for k, group in enumerate(groups) if k not in finished for b in group]
        zeros = {
            b: da.zeros((S, *_block_shape(grid, b)), dtype=np.uint16, chunks=-1) for b in again
        }
        _write_group(initial, zeros, grid, again, scratch)
    else:
        ny, nx = grid.shape
        scratch.create(initial, da.zeros((S, ny, nx), dtype=np.uint16, chunks=((S,), *grid.chunks)))


def _fit_group(
    inputs: FitInputs,
    grid: TileGrid,
    shifts: Mapping[tuple[int, int], RunShifts],
    settings: FitSettings,
    scratch: FitScratch,
    stored: da.Array,
    group: Sequence[tuple[int, int]],
    halo: int,
    label: str,
) -> list[BlockFit]:
    """Fit the blocks of one group to their own stopping criteria, then write their
    cores to ``scratch``; blocks outside the group are read from ``stored``."""
    grown = {block: _grown(grid, block, halo) for block in group}
    prepared = _prepare_group(inputs, shifts, settings, grown, label)
    S = settings.n_subfilters
    current: dict[tuple[int, int], da.Array] = {}
    metrics: dict[tuple[int, int], list[float]] = {block: [] for block in group}
    gains: dict[tuple[int, int], list[float]] = {block: [] for block in group}
    done: dict[tuple[int, int], BlockFit] = {}
    active = list(group)
    while active:
        model = _assemble_model(grid, stored, current, S)
        results = {
            block: dask.delayed(_fit_step, pure=True, nout=3)(
                model[:, grown[block].ys, grown[block].xs],
                prepared[block],
                pad=grown[block].pad,
                core=grown[block].core,
                shifts=shifts[block].shifts_px,
                unsplit=shifts[block].unsplit_px,
                metrics=list(metrics[block]),
                gains=list(gains[block]),
                settings=settings,
                visit_weights=inputs.visit_weights,
                buffer_px=shifts[block].buffer_px,
                psf_blur=inputs.psf_blur,
            )
            for block in active
        }
        persisted = dict(zip(active, dask.persist(*results.values()), strict=True))
        track(list(persisted.values()), f"{label}, iteration {len(metrics[active[0]]) + 1}")
        numbers = dask.compute({block: (r[1], r[2]) for block, r in persisted.items()})[0]
        still = []
        for block in active:
            metric, gain = numbers[block]
            metrics[block].append(metric)
            fit = _stopped(block, metrics[block], gains[block], settings)
            if fit is not None:
                done[block] = fit
                continue
            log.info(
                "block %s iteration %d: metric %.5g, gain %.3f",
                block,
                len(metrics[block]),
                metric,
                gain,
            )
            gains[block].append(gain)
            current[block] = da.from_delayed(
                persisted[block][0], shape=(S, *_block_shape(grid, block)), dtype=np.float32
            )
            still.append(block)
        active = still
    final = _assemble_model(grid, stored, current, S)
    _write_group(final, _n_image_cores(grid, grown, prepared, S), grid, group, scratch)
    return [done[block] for block in group]


def _prepare_group(
    inputs: FitInputs,
    shifts: Mapping[tuple[int, int], RunShifts],
    settings: FitSettings,
    grown: Mapping[tuple[int, int], _Grown],
    label: str,
) -> dict[tuple[int, int], Any]:
    """Each block's fixed inputs (:func:`_prepare_block`), persisted on the cluster."""
    prepared = {}
    for block, g in grown.items():
        pix = (slice(None), g.ys, g.xs)
        prepared[block] = dask.delayed(_prepare_block, pure=True)(
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
    persisted = dict(zip(grown, dask.persist(*prepared.values()), strict=True))
    track(list(persisted.values()), f"{label}, inputs")
    return persisted


def _stopped(
    block: tuple[int, int], history: list[float], gains: list[float], settings: FitSettings
) -> BlockFit | None:
    """The block's fit if its metric ``history`` says it stops (logged), else None."""
    stop, reason = conv.should_stop(
        history,
        threshold=settings.convergence_threshold,
        min_iter=settings.min_iter,
        max_iter=settings.max_iter,
        use_convergence=settings.use_convergence,
    )
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


def _write_group(
    final: da.Array,
    n_image_pieces: Mapping[tuple[int, int], da.Array],
    grid: TileGrid,
    group: Sequence[tuple[int, int]],
    scratch: FitScratch,
) -> None:
    """Write the cores of the blocks of ``group`` (from ``final`` and ``n_image_pieces``)
    into the scratch store."""
    windows = [grid.bounds(block) for block in group]
    scratch.write_windows(
        windows,
        [final[:, y0:y1, x0:x1] for y0, y1, x0, x1 in windows],
        [n_image_pieces[block] for block in group],
    )
