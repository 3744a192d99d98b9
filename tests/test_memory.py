"""Memory: the fit plans its groups of subregions from what the workers have left,
and a tile whose fit does not fit in the workers' memory is done in groups by
workers that really have a memory limit, without any of them being restarted."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from distributed import Client, LocalCluster

import dcr_dask
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.graph.assemble import TileGrid, block_memory_bytes, plan_groups
from dcr_dask.running.memory import cluster_memory_budget
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
    assert record["groups"] == len(plan_groups(grid, need, budget)) > 1
    assert record["groups"] == len({b["group"] for b in blocks})
    assert all(b["iterations"] >= 1 for b in blocks)
    model = dataset["dcr_model"].values
    assert np.all(np.isfinite(model)) and math.isfinite(float(model.sum()))
