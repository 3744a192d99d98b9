"""CompareWarp's artifact graphs group visits per chunk up to a byte budget
(:func:`dcr_dask.running.memory.visits_per_chunk`): a run with every visit in one
chunk writes the same artifact masks and the same output, bit for bit, as a run
with one visit per chunk."""

import math

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

import dcr_dask
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.running import pipeline
from dcr_dask.simulate import SimulationSpec, simulate_tile, write_simulation

pytestmark = pytest.mark.slow

SPEC = SimulationSpec(
    shape=(96, 96),
    airmasses=(1.02, 1.15, 1.3, 1.5, 1.75, 2.0),
    holdout_airmasses=(),
    n_stars=20,
    n_galaxies=3,
    streak_visits=(1,),
    cosmic_rays_per_visit=3,
    seed=4,
)


def _run(paths, output, client, budget, monkeypatch):
    """A run whose artifact graphs have the chunk budget ``budget``; the visits per chunk
    that ``find_artifacts`` and the variance scale were given."""
    seen: list[tuple[int, ...]] = []
    find_artifacts = pipeline.find_artifacts

    def spy(psf_matched, *args, **kwargs):
        seen.append(psf_matched["image"].data.chunks[0])
        return find_artifacts(psf_matched, *args, **kwargs)

    monkeypatch.setattr(pipeline, "cluster_chunk_budget", lambda client: budget)
    monkeypatch.setattr(pipeline, "find_artifacts", spy)
    config = DcrAssembleCoaddConfig()
    config.update(
        effectiveWavelength=478.0,
        bandwidth=147.0,
        subregionSize=[48, 48],  # 2 x 2 chunks: footprints cross chunk borders
        minNumIter=1,
        maxNumIter=2,
    )
    dcr_dask.run(config, paths["warps"], output=output, client=client)
    monkeypatch.undo()
    return seen


def test_grouped_visits_give_the_same_masks_and_output_as_one_visit_per_chunk(
    tmp_path, monkeypatch
):
    paths = write_simulation(simulate_tile(SPEC), tmp_path / "sim")
    outputs = {name: tmp_path / f"{name}.zarr" for name in ("one", "all")}
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        one = _run(paths, outputs["one"], client, 0.0, monkeypatch)
        every = _run(paths, outputs["all"], client, math.inf, monkeypatch)
    n = len(SPEC.airmasses)
    assert one == [(1,) * n] and every == [(n,)]  # the precondition: the chunks differed

    masks = [
        xr.open_zarr(f"{outputs[name]}.work/artifact_masks.zarr", zarr_format=3, consolidated=False)
        for name in ("one", "all")
    ]
    assert int(masks[0]["artifacts"].sum()) > 0
    for name in ("artifacts", "no_data"):
        a, b = masks[0][name].values, masks[1][name].values
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    # the stores keep one visit per chunk either way
    assert masks[1]["artifacts"].data.chunks[0] == (1,) * n

    ours, theirs = xr.open_zarr(outputs["all"]), xr.open_zarr(outputs["one"])
    assert sorted(ours.data_vars) == sorted(theirs.data_vars)
    for name in theirs.data_vars:
        a, b = ours[name].values, theirs[name].values
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f"{name} differs"
        assert a.tobytes() == b.tobytes(), f"{name} differs"
    for name in ("inputs", "config", "artifact_pixels", "input_warnings"):
        assert ours.attrs[name] == theirs.attrs[name], name
    # the fit's memory budget is what the workers had left at the time: not an output
    convergence = [
        {k: v for k, v in ds.attrs["convergence"].items() if k != "memory_budget_bytes"}
        for ds in (ours, theirs)
    ]
    assert convergence[0] == convergence[1]
