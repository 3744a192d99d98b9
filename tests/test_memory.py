"""Memory: the fit plans its groups of subregions from what the workers have left
and from how many subregions the cluster computes at once, a tile whose fit does
not fit in the workers' memory is done in groups by workers that really have a
memory limit, without any of them being restarted, and what a run holds on its
workers does not grow with the tile."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from dask.utils import key_split
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

import dcr_dask
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.graph.assemble import TileGrid, block_memory_bytes, plan_groups
from dcr_dask.running.memory import (
    CHUNK_BUDGET_BYTES,
    COMPARE_BYTES_PER_PIXEL,
    cluster_blocks_in_flight,
    cluster_chunk_budget,
    cluster_memory_budget,
    visits_per_chunk,
)
from dcr_dask.simulate import SimulationSpec, simulate_tile, write_simulation

MiB = 2**20


def _client(*workers):
    info = {f"tcp://w{k}": w for k, w in enumerate(workers)}
    return SimpleNamespace(scheduler_info=lambda: {"workers": info})


def test_budget_is_half_of_each_limit_minus_what_the_worker_uses():
    client = _client(
        {"memory_limit": 1000 * MiB, "metrics": {"memory": 100 * MiB}},
        {"memory_limit": 400 * MiB, "metrics": {"memory": 300 * MiB}},  # nothing left
    )
    assert cluster_memory_budget(client) == pytest.approx(400 * MiB)
    assert cluster_memory_budget(client, fraction=1.0) == pytest.approx(1000 * MiB)


def test_no_budget_without_limits_or_workers_and_bad_fractions_refused():
    assert cluster_memory_budget(_client({"memory_limit": 0, "metrics": {}})) is None
    assert cluster_memory_budget(_client()) is None
    with pytest.raises(ValueError, match="fraction"):
        cluster_memory_budget(_client(), fraction=0.0)


def test_blocks_in_flight_are_two_per_worker_thread():
    client = _client({"nthreads": 1}, {"nthreads": 3})
    assert cluster_blocks_in_flight(client) == 8
    assert cluster_blocks_in_flight(client, per_thread=1) == 4
    assert cluster_blocks_in_flight(_client()) is None
    with pytest.raises(ValueError, match="per_thread"):
        cluster_blocks_in_flight(client, per_thread=0)


def test_visits_per_chunk_fill_the_byte_budget_between_one_and_all_visits():
    # one visit of a 100 x 100 chunk at 10 bytes a pixel: 100_000 bytes
    assert visits_per_chunk(12, (100, 100), 350_000, bytes_per_pixel=10) == 3
    assert visits_per_chunk(12, (100, 100), 400_000, bytes_per_pixel=10) == 4  # exactly 4
    assert visits_per_chunk(12, (100, 100), 399_999, bytes_per_pixel=10) == 3
    # capped at the number of visits, at least one however small the budget
    assert visits_per_chunk(12, (100, 100), 1e12, bytes_per_pixel=10) == 12
    assert visits_per_chunk(12, (100, 100), math.inf, bytes_per_pixel=10) == 12
    assert visits_per_chunk(12, (100, 100), None, bytes_per_pixel=10) == 12
    assert visits_per_chunk(12, (100, 100), 99_999, bytes_per_pixel=10) == 1
    assert visits_per_chunk(12, (100, 100), 0, bytes_per_pixel=10) == 1
    assert visits_per_chunk(1, (100, 100), 1e12) == 1
    assert visits_per_chunk(5, (1, 1), CHUNK_BUDGET_BYTES) == 5


def test_visits_per_chunk_leave_a_chunk_to_every_thread():
    # 12 visits, room for all of them: two chunks of 6 for two threads, 5 chunks of 2 (and
    # one more) for five, one visit per chunk when there are more threads than visits
    assert visits_per_chunk(12, (100, 100), None, min_visit_chunks=2) == 6
    assert visits_per_chunk(12, (100, 100), math.inf, min_visit_chunks=5) == 2
    assert visits_per_chunk(12, (100, 100), None, min_visit_chunks=20) == 1
    # the budget still decides when it is the tighter bound
    assert visits_per_chunk(12, (100, 100), 300_000, 10, min_visit_chunks=2) == 3
    with pytest.raises(ValueError, match="min_visit_chunks"):
        visits_per_chunk(12, (100, 100), min_visit_chunks=0)


def test_a_run_groups_visits_from_the_budget_the_tile_and_the_threads():
    from dcr_dask.running.pipeline import _artifact_visits_per_chunk

    def run(tile, chunks, n_visits, *workers):
        return SimpleNamespace(
            chunks=chunks,
            tile_shape=tile,
            ingested=SimpleNamespace(sizes={"visit": n_visits}),
            active=_client(*workers),
        )

    big = {"memory_limit": 12 * 1024 * MiB, "nthreads": 1}
    # one 512^2 chunk (subregionSize 2000 clipped to the tile), two threads: 2 x 6 visits
    assert _artifact_visits_per_chunk(run((512, 512), (2000, 2000), 12, big, big)) == 6
    # four chunks already keep both threads busy: all 12 visits in each
    assert _artifact_visits_per_chunk(run((512, 512), (256, 256), 12, big, big)) == 12
    # the default subregionSize on a large tile: one visit per chunk
    assert _artifact_visits_per_chunk(run((4000, 4000), (2000, 2000), 30, big, big)) == 1
    # small workers: a tenth of 1 GiB a task, 64 bytes a pixel of a 256^2 chunk: 25 visits
    small = {"memory_limit": 1024 * MiB, "nthreads": 1}
    assert _artifact_visits_per_chunk(run((1024, 1024), (256, 256), 30, small)) == 25


def test_visits_per_chunk_defaults_keep_large_subregions_one_visit_a_chunk():
    # the default subregionSize keeps one visit per chunk, small subregions group them
    assert visits_per_chunk(30, (2000, 2000)) == 1
    assert visits_per_chunk(30, (1000, 1000)) == 4
    assert visits_per_chunk(12, (512, 512)) == 12
    assert visits_per_chunk(30, (512, 512)) == 16
    per_task = visits_per_chunk(30, (512, 512)) * 512 * 512 * COMPARE_BYTES_PER_PIXEL
    assert per_task <= CHUNK_BUDGET_BYTES


def test_visits_per_chunk_refuses_meaningless_arguments():
    with pytest.raises(ValueError, match="n_visits"):
        visits_per_chunk(0, (10, 10))
    with pytest.raises(ValueError, match="pixels"):
        visits_per_chunk(3, (0, 10))
    with pytest.raises(ValueError, match="bytes_per_pixel"):
        visits_per_chunk(3, (10, 10), bytes_per_pixel=0)
    with pytest.raises(ValueError, match="budget_bytes"):
        visits_per_chunk(3, (10, 10), -1.0)
    with pytest.raises(ValueError, match="budget_bytes"):
        visits_per_chunk(3, (10, 10), math.nan)


def test_chunk_budget_is_a_tenth_of_a_threads_share_capped():
    small = _client(
        {"memory_limit": 1000 * MiB, "nthreads": 2},  # 50 MiB a task
        {"memory_limit": 4000 * MiB, "nthreads": 1},  # 400 MiB: above the cap
    )
    assert cluster_chunk_budget(small) == pytest.approx(50 * MiB)
    assert cluster_chunk_budget(small, cap=10 * MiB) == pytest.approx(10 * MiB)
    assert cluster_chunk_budget(small, fraction=1.0) == pytest.approx(CHUNK_BUDGET_BYTES)
    large = _client({"memory_limit": 64 * 1024 * MiB, "nthreads": 1})
    assert cluster_chunk_budget(large) == CHUNK_BUDGET_BYTES
    # no limit or no workers: the cap
    assert cluster_chunk_budget(_client({"memory_limit": 0, "nthreads": 1})) == CHUNK_BUDGET_BYTES
    assert cluster_chunk_budget(_client()) == CHUNK_BUDGET_BYTES
    with pytest.raises(ValueError, match="fraction"):
        cluster_chunk_budget(small, fraction=0.0)


def test_groups_hold_at_most_max_blocks_whatever_the_budget():
    grid = TileGrid.from_subregion_size((256, 256), (64, 64))  # 16 blocks
    blocks = list(grid.blocks())
    assert plan_groups(grid, 10.0, None, max_blocks=4) == [blocks[k : k + 4] for k in (0, 4, 8, 12)]
    assert plan_groups(grid, 10.0, 1e12, max_blocks=4) == plan_groups(grid, 10.0, None, 4)
    # the budget still bounds the groups when it is the tighter bound
    assert plan_groups(grid, 10.0, 25.0, max_blocks=4) == [
        blocks[k : k + 2] for k in range(0, 16, 2)
    ]
    assert plan_groups(grid, 10.0, None) == [blocks]


def test_block_memory_grows_with_visits_subbands_and_halo():
    grid = TileGrid.from_subregion_size((256, 256), (64, 64))
    base = block_memory_bytes(grid, 20, 10, 3)
    assert block_memory_bytes(grid, 20, 20, 3) > base
    assert block_memory_bytes(grid, 20, 10, 5) > base
    assert block_memory_bytes(grid, 40, 10, 3) > base
    # a 2048^2 block with 30 visits: on the order of a few GB, not tens
    big = TileGrid.from_subregion_size((2048, 2048), (2048, 2048))
    assert 1e9 < block_memory_bytes(big, 42, 30, 3) < 5e9


@pytest.mark.slow
def test_a_fit_larger_than_worker_memory_runs_in_groups(tmp_path):
    spec = SimulationSpec(
        shape=(160, 160),
        airmasses=(1.02, 1.2, 1.45, 1.7, 2.0, 1.3),
        holdout_airmasses=(),
        n_stars=20,
        n_galaxies=3,
        seed=5,
    )
    paths = write_simulation(simulate_tile(spec), tmp_path / "sim")
    config = DcrAssembleCoaddConfig()
    config.update(
        effectiveWavelength=478.0,
        bandwidth=147.0,
        subregionSize=[40, 40],
        minNumIter=1,
        maxNumIter=2,
    )
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            memory_limit="400MiB",  # Dask restarts a worker that passes 95 % of this
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        workers = set(client.scheduler_info()["workers"])
        dataset = dcr_dask.run(config, paths["warps"], output=tmp_path / "out.zarr", client=client)
        assert set(client.scheduler_info()["workers"]) == workers  # none restarted

    record = dataset.attrs["convergence"]
    blocks = record["blocks"]
    grid = TileGrid.from_subregion_size(spec.shape, (40, 40))
    # the precondition, checked rather than assumed: at fit time the workers had less
    # memory left than all 16 blocks at once need
    need = block_memory_bytes(grid, record["halo_px"], 6, 3)
    budget = record["memory_budget_bytes"]
    assert budget is not None and need * len(blocks) > budget, (need / MiB, budget / MiB)
    cap = record["max_blocks_per_group"]
    assert cap == 4  # two workers of one thread
    assert record["groups"] == len(plan_groups(grid, need, budget, cap)) > 1
    assert record["groups"] == len({b["group"] for b in blocks})
    assert all(b["iterations"] >= 1 for b in blocks)
    model = dataset["dcr_model"].values
    assert np.all(np.isfinite(model)) and math.isfinite(float(model.sum()))


class _PeakHeld(SchedulerPlugin):
    """On the scheduler: the largest total size of the task results held on the workers at
    once while the fit runs (from its first ``_prepare_block`` result; each result counted
    once, however many workers have a copy), and the size of the largest
    ``_prepare_block`` result (one subregion's fit inputs). Before the fit, CompareWarp's
    reductions over visit-grouped chunks hold up to ~7 subregions' inputs on this tile,
    which says nothing of the fit's groups."""

    name = "dcr-dask-test-peak-held"

    def __init__(self):
        self.held = {}
        self.total = 0
        self.peak = 0
        self.block_inputs = 0
        self.fitting = False

    def start(self, scheduler):
        self.scheduler = scheduler

    def transition(self, key, start, finish, *args, **kwargs):
        if start == "memory":
            self.total -= self.held.pop(key, 0)
        if finish == "memory":
            nbytes = self.scheduler.tasks[key].nbytes
            self.held[key] = nbytes
            self.total += nbytes
            if "prepare_block" in key_split(key):
                self.fitting = True
                self.block_inputs = max(self.block_inputs, nbytes)
            if self.fitting:
                self.peak = max(self.peak, self.total)


@pytest.mark.slow
def test_what_the_workers_hold_does_not_grow_with_the_tile(tmp_path):
    """A tile of 4x4 subregions on two workers of one thread with memory to spare: the
    task results held at once (counted by the scheduler, not sampled) stay below eight
    subregions' fit inputs. A fit that put every subregion of the tile in one group,
    what the budget alone allows here, held all 16 at once: its memory grew with the
    tile."""
    size, n, visits = 48, 4, (1.02, 1.3, 1.7, 2.0)
    config = DcrAssembleCoaddConfig()
    config.update(
        effectiveWavelength=478.0,
        bandwidth=147.0,
        subregionSize=[size, size],
        minNumIter=1,
        maxNumIter=1,
    )
    spec = SimulationSpec(
        shape=(n * size, n * size),
        airmasses=visits,
        holdout_airmasses=(),
        n_stars=4 * n * n,
        n_galaxies=n * n,
        seed=3,
    )
    paths = write_simulation(simulate_tile(spec), tmp_path / "sim")
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            memory_limit="4GiB",  # a budget far above what this tile needs
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(_PeakHeld())
        dataset = dcr_dask.run(config, paths["warps"], output=tmp_path / "out.zarr", client=client)
        peak, block_inputs = client.run_on_scheduler(
            lambda dask_scheduler: (
                dask_scheduler.plugins[_PeakHeld.name].peak,
                dask_scheduler.plugins[_PeakHeld.name].block_inputs,
            )
        )
    record = dataset.attrs["convergence"]
    assert len(record["blocks"]) == n * n
    # the precondition: the budget alone would put all 16 blocks in one group
    grid = TileGrid.from_subregion_size(spec.shape, (size, size))
    assert record["memory_budget_bytes"] > n * n * block_memory_bytes(
        grid, record["halo_px"], len(visits), config.dcrNumSubfilters
    )
    assert block_inputs > 0
    assert peak < 8 * block_inputs, (peak / MiB, block_inputs / MiB)
    assert record["max_blocks_per_group"] == 4
    assert record["groups"] == 4
