"""End to end on a real local Dask cluster: accuracy against the simulator's truth,
the output store of the data contract, and what happens on bad input."""

import json
import logging

import attrs
import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

import dcr_dask
from dcr_dask import truth
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.errors import ConfigError, InputErrors
from dcr_dask.graph.coadd import plain_coadd
from dcr_dask.io.warps import open_warps
from dcr_dask.running.templates import matched_template
from dcr_dask.simulate import default_demo_spec, simulate_tile, write_simulation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def simulation(tmp_path_factory):
    # the truth in as many sub-bands as the default fit has, so that they can be compared
    spec = attrs.evolve(
        default_demo_spec(shape=(256, 256)), n_subfilters=DcrAssembleCoaddConfig().dcrNumSubfilters
    )
    tile = simulate_tile(spec)
    paths = write_simulation(tile, tmp_path_factory.mktemp("sim"))
    return tile, paths


def _config(**fields):
    config = DcrAssembleCoaddConfig()
    config.update(effectiveWavelength=478.0, bandwidth=147.0, subregionSize=[128, 128], **fields)
    return config


@pytest.fixture(scope="module")
def result(simulation, client, tmp_path_factory):
    _, paths = simulation
    output = tmp_path_factory.mktemp("out") / "coadd.zarr"
    dataset = dcr_dask.run(_config(), paths["warps"], output=output, client=client)
    return output, dataset


def test_matched_templates_follow_dcr_far_better_than_a_plain_coadd(simulation, result):
    tile, paths = simulation
    _, dataset = result
    stars = truth.bright_isolated_stars(tile, n=12)
    assert len(stars) >= 6
    plain = plain_coadd(open_warps(paths["warps"]), ["NO_DATA", "BAD", "SAT"]).image.values
    for k in np.flatnonzero(tile.holdout):
        assert tile.visits[k].boresight_airmass > 1.85
        template = matched_template(dataset, tile.visits[k]).values
        dcr_error = truth.centroid_rms_error(template, tile.true_images[k], stars)
        plain_error = truth.centroid_rms_error(plain, tile.true_images[k], stars)
        assert dcr_error <= 0.15 * plain_error, (dcr_error, plain_error)


def test_without_a_template_the_fit_starts_from_the_direct_coadd(simulation, result):
    """The template (and so the output variance) is the coadd of the direct warps, not the
    static model of the PSF-matched warps, whose smoothing lowers the per-pixel variance."""
    _, paths = simulation
    output, dataset = result
    warps = open_warps(paths["warps"])
    plain = plain_coadd(warps, ["NO_DATA", "BAD", "SAT"]).variance.values
    static = xr.open_zarr(f"{output}.work/static_model.zarr")["variance"].values
    variance = dataset["variance"].values
    assert np.median(variance) == pytest.approx(np.median(plain), rel=0.02)
    assert np.median(static) < 0.8 * np.median(plain)
    assert "direct_coadd_s" in dataset.attrs["timings_s"]


def test_subband_models_match_the_true_subband_sky(simulation, result):
    tile, _ = simulation
    _, dataset = result
    model = dataset["dcr_model"].values
    assert np.all(truth.subband_correlations(model, tile.true_subbands, threshold=5.0) > 0.9)
    stars = truth.bright_isolated_stars(tile, n=12)
    index = [s.spectral_index for s in stars]
    blue, red = stars[int(np.argmin(index))], stars[int(np.argmax(index))]
    assert truth.subband_flux_shares(model, blue)[0] > truth.subband_flux_shares(model, red)[0]


def test_output_store_follows_the_data_contract(result):
    output, _ = result
    ds = xr.open_zarr(output)
    expected = {
        "dcr_model": (("subfilter", "y", "x"), np.float32),
        "coadd": (("y", "x"), np.float32),
        "variance": (("y", "x"), np.float32),
        "mask": (("y", "x"), np.int32),
        "n_image": (("subfilter", "y", "x"), np.uint16),
    }
    for name, (dims, dtype) in expected.items():
        assert ds[name].dims == dims and ds[name].dtype == dtype
    np.testing.assert_allclose(
        ds.coadd.values, ds.dcr_model.sum("subfilter").values, rtol=1e-5, atol=1e-3
    )
    assert ds.wavelength_min.values[0] == pytest.approx(404.5)
    assert ds.n_image.values.max() == 12
    assert ds.attrs["config"]["effectiveWavelength"] == 478.0
    assert [r["visit"] for r in ds.attrs["inputs"]] == list(range(1000, 1012))
    blocks = ds.attrs["convergence"]["blocks"]
    assert len(blocks) == 4
    assert all(b["metrics"][-1] < b["metrics"][0] for b in blocks)
    assert ds.attrs["dcr_dask_version"] == dcr_dask.__version__
    assert not list(output.parent.glob(".*tmp*"))


def test_second_run_reuses_the_ingest_store_and_refuses_to_overwrite(
    simulation, result, client, caplog
):
    _, paths = simulation
    output, _ = result
    with pytest.raises(FileExistsError, match="exists"):
        dcr_dask.run(_config(), paths["warps"], output=output, client=client)
    caplog.set_level(logging.INFO, logger="dcr_dask")
    dcr_dask.run(
        _config(maxNumIter=3), paths["warps"], output=output, client=client, overwrite=True
    )
    assert "not re-ingesting" in caplog.text


def test_bad_inputs_stop_the_run_before_anything_is_written(simulation, client, tmp_path):
    _, paths = simulation
    output = tmp_path / "bad.zarr"
    config = _config(spatialThreshold=3.0)
    with pytest.raises(ConfigError, match="spatialThreshold"):
        dcr_dask.run(config, paths["warps"], output=output, client=client)
    with pytest.raises(InputErrors, match="appears 2 times"):
        dcr_dask.run(
            _config(), [paths["warps"][0], paths["warps"][0]], output=output, client=client
        )
    assert list(tmp_path.iterdir()) == []


def test_output_store_shows_the_clipped_artifacts(simulation, result):
    tile, _ = simulation
    output, _ = result
    ds = xr.open_zarr(output)
    artifacts = ds["artifacts"]
    assert artifacts.dims == ("visit", "y", "x") and artifacts.dtype == np.uint8
    assert list(artifacts["visit"].values) == list(range(1000, 1012))
    streak = tile.spec.streak_visits[0]
    truth_streak = tile.artifacts[streak]
    clipped = artifacts.values[streak].astype(bool)
    assert clipped[truth_streak].mean() > 0.9
    assert ds.attrs["artifact_pixels"][str(1000 + streak)] > 100


def test_warps_without_a_detected_plane_still_converge(client, tmp_path, caplog):
    spec = attrs.evolve(default_demo_spec(shape=(128, 128)), detected_plane=False)
    tile = simulate_tile(spec)
    paths = write_simulation(tile, tmp_path / "sim")
    caplog.set_level(logging.INFO, logger="dcr_dask")
    dataset = dcr_dask.run(_config(), paths["warps"], output=tmp_path / "out.zarr", client=client)
    assert "detected on the template" in caplog.text
    blocks = dataset.attrs["convergence"]["blocks"]
    assert all(b["iterations"] > 1 and b["reason"] != "no data" for b in blocks)
    assert all(b["metrics"][-1] < b["metrics"][0] for b in blocks)


def test_metadata_json_goes_beside_the_store(tmp_path):
    from dcr_dask.running.pipeline import metadata_path, write_metadata_json

    assert metadata_path(tmp_path / "coadd.zarr") == tmp_path / "coadd.metadata.json"
    assert metadata_path(tmp_path / "coadd") == tmp_path / "coadd.metadata.json"
    path = write_metadata_json({"a": [1, 2]}, tmp_path / "coadd.zarr")
    assert json.loads(path.read_text()) == {"a": [1, 2]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coadd.metadata.json"]
