"""`dcr-dask run`, `template` and `export-fits` through real Dask clusters: a local
cluster with two worker processes, and a scheduler and worker started as separate
`dask scheduler` / `dask worker` processes; the two runs must agree."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from conftest import cli_spec

from dcr_dask.cli import main
from dcr_dask.io.store import open_output
from dcr_dask.running.templates import matched_template, visit_file_psf_variance
from dcr_dask.simulate import simulate_tile, write_simulation

pytestmark = pytest.mark.slow

BAND = ["--set", "effectiveWavelength=478", "--set", "bandwidth=147"]
SMALL = ["--set", "subregionSize=[48,48]", "--set", "maxNumIter=4"]


@pytest.fixture(scope="module")
def simulation(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sim")
    tile = simulate_tile(cli_spec())
    write_simulation(tile, directory)
    return tile, directory


@pytest.fixture(scope="module")
def local_run(simulation, tmp_path_factory):
    _, directory = simulation
    output = tmp_path_factory.mktemp("local") / "coadd.zarr"
    code = main(
        [
            "-q",
            "run",
            str(directory / "warps"),
            "--output",
            str(output),
            "--workers",
            "2",
            *BAND,
            *SMALL,
        ]
    )
    assert code == 0
    return output


def _scheduler(tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--dashboard-address",
            ":0",
            "--scheduler-file",
            str(scheduler_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while not scheduler_file.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert scheduler_file.exists(), "the scheduler did not start"
    time.sleep(0.5)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            "--scheduler-file",
            str(scheduler_file),
            "--nworkers",
            "2",
            "--nthreads",
            "1",
            "--host",
            "127.0.0.1",
            "--dashboard-address",
            ":0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return json.loads(scheduler_file.read_text())["address"], [worker, scheduler]


def test_run_through_a_scheduler_address_matches_the_local_run(
    simulation, local_run, tmp_path, capsys
):
    _, directory = simulation
    address, processes = _scheduler(tmp_path)
    try:
        output = tmp_path / "remote.zarr"
        code = main(
            [
                "-q",
                "run",
                str(directory / "warps"),
                "--output",
                str(output),
                "--scheduler",
                address,
                *BAND,
                *SMALL,
            ]
        )
        assert code == 0
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
    assert "wrote" in capsys.readouterr().out
    local, remote = xr.open_zarr(local_run), xr.open_zarr(output)
    for name in ("dcr_model", "coadd", "variance", "mask", "n_image"):
        np.testing.assert_array_equal(local[name].values, remote[name].values)


def test_template_command_writes_the_matched_template(simulation, local_run, tmp_path):
    tile, directory = simulation
    holdout = sorted((directory / "holdout").glob("*.fits"))[0]
    output = tmp_path / "template.fits"
    assert (
        main(
            [
                "-q",
                "template",
                "--model",
                str(local_run),
                "--visit",
                str(holdout),
                "--output",
                str(output),
            ]
        )
        == 0
    )
    # the model is at a sharp visit's PSF (psfForwardModel="gaussian"): the command widens
    # the template to the held-out visit's PSF, read from its file
    store = open_output(local_run)
    variance = visit_file_psf_variance(holdout, tile.visits[-1])
    assert variance is not None and variance > store.attrs["model_psf_variance_px2"]
    expected = matched_template(store, tile.visits[-1], psf_variance_px2=variance).values
    with fits.open(output) as hdus:
        np.testing.assert_allclose(hdus["IMAGE"].data, expected, rtol=1e-6, atol=1e-4)
        assert hdus[0].header["EXPID"] == tile.visits[-1].visit
    assert (
        main(
            [
                "-q",
                "template",
                "--model",
                str(local_run),
                "--visit",
                str(holdout),
                "--output",
                str(output),
            ]
        )
        == 1
    )


def test_export_fits_command(local_run, tmp_path, capsys):
    assert main(["-q", "export-fits", str(local_run), str(tmp_path)]) == 0
    written = capsys.readouterr().out.split()
    # one file per sub-band (four by default) and the coadd
    assert len(written) == xr.open_zarr(local_run).sizes["subfilter"] + 1 == 5
    with fits.open(written[0]) as hdus:
        np.testing.assert_allclose(hdus["IMAGE"].data, xr.open_zarr(local_run).dcr_model[0].values)


def test_a_given_template_starts_the_fit_but_compare_warp_keeps_its_static_model(
    simulation, local_run, tmp_path, capsys
):
    """CompareWarp compares the PSF-matched warps with their own static model whatever
    template is given, so the artifacts are those of the run without a template."""
    _, directory = simulation
    assert main(["-q", "export-fits", str(local_run), str(tmp_path / "fits")]) == 0
    coadd = capsys.readouterr().out.split()[-1]  # the coadd is exported last
    output = tmp_path / "coadd.zarr"
    argv = ["-q", "run", str(directory / "warps"), "--output", str(output), "--workers", "2"]
    assert main([*argv, "--template", coadd, *BAND, *SMALL]) == 0
    given = xr.open_zarr(output)
    np.testing.assert_array_equal(
        given["artifacts"].values, xr.open_zarr(local_run)["artifacts"].values
    )
    assert (tmp_path / "coadd.zarr.work" / "static_model.zarr").is_dir()
    # the template's variance is the output's (it started the fit)
    with fits.open(coadd) as hdus:
        np.testing.assert_allclose(given["variance"].values, hdus["VARIANCE"].data, rtol=1e-6)


def test_run_reports_bad_inputs_and_writes_nothing(simulation, tmp_path, capsys):
    _, directory = simulation
    output = tmp_path / "x.zarr"
    assert main(["-q", "run", str(tmp_path / "nothing*.fits"), "--output", str(output), *BAND]) == 1
    assert "nothing*.fits" in capsys.readouterr().err
    assert (
        main(
            [
                "-q",
                "run",
                str(directory / "warps"),
                "--output",
                str(output),
                *BAND,
                "--set",
                "dcrNumSubfilters=1",
            ]
        )
        == 1
    )
    assert "dcrNumSubfilters" in capsys.readouterr().err
    assert not output.exists()
