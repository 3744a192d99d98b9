"""The Dask layer of the DCR fit: blocks, halos, per-block stopping, chunking and groups."""

import dask
import dask.array as da
import numpy as np
import pytest

from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.graph import assemble
from dcr_dask.graph.assemble import FitInputs, TileGrid, fit_tile, halo_px, plan_groups
from dcr_dask.io.scratch import ScratchModel
from dcr_dask.masks import run_layout
from dcr_dask.settings import fit_settings, run_shifts
from dcr_dask.simulate import SimulationSpec, simulate_tile

SPEC = SimulationSpec(
    shape=(96, 96), airmasses=(1.05, 1.3, 1.6, 2.0, 1.2, 1.8), n_stars=12, n_galaxies=3, seed=4
)


@pytest.fixture(scope="module")
def tile():
    return simulate_tile(SPEC)


def _config(**fields):
    config = DcrAssembleCoaddConfig()
    config.effectiveWavelength = SPEC.effective_wavelength_nm
    config.bandwidth = SPEC.bandwidth_nm
    config.update(**fields)
    config.validate()
    return config


def _inputs(tile, grid, config, *, no_data_box=None):
    planes = run_layout()
    masks = tile.masks.copy()
    if no_data_box is not None:
        masks[(slice(None), *no_data_box)] |= 1 << planes.bit("NO_DATA")
    good = (masks & planes.value(config.badMaskPlanes)) == 0
    template = np.where(good, tile.images, 0).sum(0) / np.maximum(good.sum(0), 1)
    detected = template > 20.0
    chunks = (grid.chunks_y, grid.chunks_x)
    return FitInputs(
        images=da.from_array(tile.images, chunks=(-1, *chunks)),
        good=da.from_array(good, chunks=(-1, *chunks)),
        convergence_mask=da.from_array(
            (masks & planes.value(["DETECTED"])) > 0, chunks=(-1, *chunks)
        ),
        template=da.from_array(template, chunks=chunks),
        template_variance=da.from_array(np.ones_like(template), chunks=chunks),
        background=da.from_array(~detected, chunks=chunks),
        detected=da.from_array(detected, chunks=chunks),
    )


def _fit(tile, config, size, tmp_path, **kwargs):
    grid = TileGrid.from_subregion_size(SPEC.shape, (size, size))
    shifts = run_shifts(tile.visits, tile.wcs, config, x=47.5, y=47.5)
    settings = fit_settings(config)
    halo = halo_px(np.abs(shifts.shifts_px).max(), settings)
    inputs = _inputs(tile, grid, config, no_data_box=kwargs.pop("no_data_box", None))
    with dask.config.set(scheduler="synchronous"):
        model, n_image, fits = fit_tile(
            inputs,
            grid,
            dict.fromkeys(grid.blocks(), shifts),
            settings,
            ScratchModel(tmp_path / f"model-{size}.zarr"),
            halo=halo,
            **kwargs,
        )
        return model.compute(), n_image.compute(), fits, grid


def test_grid_cuts_the_tile_into_subregions():
    grid = TileGrid.from_subregion_size((100, 70), (32, 40))  # (width, height)
    assert grid.chunks_y == (40, 40, 20) and grid.chunks_x == (32, 32, 6)
    assert grid.bounds((2, 1)) == (80, 100, 32, 64)
    assert grid.centre((0, 0)) == (19.5, 15.5)
    assert len(list(grid.blocks())) == 9


def test_halo_covers_forward_and_back_projection():
    settings = fit_settings(_config(shiftMethod="sinc"))
    assert halo_px(2.3, settings) >= 2 * 3 + 2 * 12
    assert halo_px(4.0, settings) > halo_px(1.0, settings)


def test_groups_respect_the_memory_budget():
    grid = TileGrid.from_subregion_size((100, 100), (25, 25))
    assert plan_groups(grid, 10.0, None) == [list(grid.blocks())]
    groups = plan_groups(grid, 10.0, 35.0)
    assert [len(g) for g in groups] == [3, 3, 3, 3, 3, 1]
    assert [block for group in groups for block in group] == list(grid.blocks())


@pytest.mark.parametrize(
    ("method", "precision"), [("sinc", "single"), ("sinc", "double"), ("spline", "double")]
)
def test_result_does_not_depend_on_the_subregion_size(tile, tmp_path, method, precision):
    # fixed iterations and gains, no block-wide statistics: only the cut could differ
    config = _config(
        shiftMethod=method,
        shiftPrecision=precision,
        useProgressiveGain=False,
        useConvergence=False,
        regularizeModelFrequency=0.0,
        useModelWeights=False,
        minNumIter=1,
        maxNumIter=2,
    )
    whole, n_whole, fits, _ = _fit(tile, config, 96, tmp_path)
    cut, n_cut, fits_cut, grid = _fit(tile, config, 40, tmp_path)
    assert len(fits) == 1 and len(fits_cut) == len(list(grid.blocks())) == 9
    assert {f.iterations for f in fits + fits_cut} == {config.resolved_max_num_iter() + 2}
    difference = np.max(np.abs(whole - cut))
    if precision == "double":
        # float64 transforms: the cut changes nothing that survives the float32 output
        assert difference < 1e-6 * np.sqrt(np.mean(whole**2))
    else:
        # float32 transforms: the FFT sizes differ, so round-off differs; a few float32
        # units in the last place of the brightest pixel, no more
        assert difference <= 8 * np.finfo(np.float32).eps * np.max(np.abs(whole))
    np.testing.assert_array_equal(n_whole, n_cut)


def test_result_does_not_depend_on_the_groups(tile, tmp_path):
    """Nine blocks fitted in one group, in groups of two (five groups, read and written
    through the scratch store's two buffers each pass) and in groups of one: the same
    model. The default convergence rules stay on, so blocks stop at different passes."""
    config = _config(shiftMethod="sinc", shiftPrecision="double")
    together, n_together, fits, _ = _fit(tile, config, 40, tmp_path / "one")
    assert len({f.group for f in fits}) == 1
    reference = np.sqrt(np.mean(together**2))
    for per_group in (2, 1):
        grouped, n_grouped, fits_grouped, _ = _fit(
            tile, config, 40, tmp_path / f"by{per_group}", max_blocks_per_group=per_group
        )
        assert len({f.group for f in fits_grouped}) == -(-9 // per_group)
        assert [f.iterations for f in fits_grouped] == [f.iterations for f in fits]
        for ours, theirs in zip(fits_grouped, fits, strict=True):
            assert ours.metrics == pytest.approx(theirs.metrics, rel=1e-5), ours.block
        assert np.max(np.abs(grouped - together)) < 1e-6 * reference
        np.testing.assert_array_equal(n_grouped, n_together)
    # the blocks did not all stop at the same pass: stopped blocks are read from both buffers
    assert len({f.iterations for f in fits}) > 1


@pytest.mark.parametrize("passes_per_task", [3, 40])
def test_a_one_block_tile_runs_several_passes_per_task(
    tile, tmp_path, monkeypatch, passes_per_task
):
    """A tile of one block runs its passes several to a task: the same model bit for bit,
    the same metrics, gains and stop as one pass per task, whether the stop falls inside
    a batch (3) or the batch holds every pass (40)."""
    config = _config(shiftMethod="sinc")
    monkeypatch.setattr(assemble, "PASSES_PER_TASK", 1)
    one, n_one, fits_one, _ = _fit(tile, config, 96, tmp_path / "one")
    monkeypatch.setattr(assemble, "PASSES_PER_TASK", passes_per_task)
    calls = []
    passes = assemble._fit_passes
    monkeypatch.setattr(
        assemble, "_fit_passes", lambda *a, **k: calls.append(k["n_passes"]) or passes(*a, **k)
    )
    batched, n_batched, fits_batched, _ = _fit(tile, config, 96, tmp_path / "batched")
    ((fit,),) = [fits_one]
    assert fit.iterations >= 3 and fit.reason in ("converged", "diverged", "max iterations")
    assert len(calls) == -(-len(fit.metrics[1:]) // passes_per_task)
    np.testing.assert_array_equal(batched, one)
    np.testing.assert_array_equal(n_batched, n_one)
    assert fits_batched == fits_one


def test_single_precision_fit_follows_double(tile, tmp_path):
    fixed = dict(useProgressiveGain=False, useConvergence=False, minNumIter=1, maxNumIter=2)
    single, *_ = _fit(tile, _config(shiftPrecision="single", **fixed), 48, tmp_path / "single")
    double, *_ = _fit(tile, _config(shiftPrecision="double", **fixed), 48, tmp_path / "double")
    assert np.max(np.abs(single - double)) < 1e-5 * np.max(np.abs(double))


def test_each_block_stops_on_its_own_criteria(tile, tmp_path):
    config = _config(shiftMethod="sinc")
    model, n_image, fits, _ = _fit(
        tile, config, 48, tmp_path, no_data_box=(slice(0, 48), slice(0, 48))
    )
    reasons = {f.block: f.reason for f in fits}
    assert reasons[(0, 0)] == "no data"
    assert all(
        r in ("converged", "diverged", "max iterations") for b, r in reasons.items() if b != (0, 0)
    )
    for f in fits:
        assert len(f.metrics) == f.iterations + 1 and len(f.gains) == f.iterations
        assert f.iterations >= 1
    assert np.all(n_image[:, :48, :48] == 0) and np.all(np.isfinite(model))
    converged = [f for f in fits if f.reason != "no data"]
    assert converged and all(f.metrics[-1] < f.metrics[0] for f in converged)


def test_groups_of_blocks_give_nearly_the_same_model(tile, tmp_path):
    config = _config(shiftMethod="sinc")
    together, _, _, _ = _fit(tile, config, 48, tmp_path)
    apart, _, fits_apart, _ = _fit(tile, config, 48, tmp_path / "groups", memory_budget_bytes=1.0)
    assert len(fits_apart) == 4
    # groups see their neighbours frozen (initial or final), as the reference does,
    # so the two differ a little near block borders, not in substance
    rms = np.sqrt(np.mean(together**2))
    assert np.sqrt(np.mean((together - apart) ** 2)) < 0.05 * rms


def test_the_fit_starts_from_the_tested_initial_model_kernel(tile, tmp_path, monkeypatch):
    """The starting planes ``T/S`` are the kernel's (no inlined copy): every block's
    start comes from :func:`dcr_dask.kernels.model.initial_model`."""
    from dcr_dask.kernels import model as kernels

    starts = []
    initial_model = kernels.initial_model
    monkeypatch.setattr(
        kernels, "initial_model", lambda *a: starts.append(a[0].shape) or initial_model(*a)
    )
    fixed = dict(useProgressiveGain=False, useConvergence=False, minNumIter=1, maxNumIter=1)
    _fit(tile, _config(**fixed), 48, tmp_path)
    assert sorted(starts) == [(48, 48)] * 4
