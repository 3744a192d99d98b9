"""`dcr-dask run --cluster slurm` against a real SLURM: the Dask workers run as
SLURM jobs and the coadd equals a local run's, array for array.

Runs only where `sinfo` answers with a usable node (deploy/slurm/local-slurm.sh
sets up a one-node SLURM on this machine; .ci/run does so when it can)."""

import shutil
import subprocess
import time

import numpy as np
import pytest
import xarray as xr

from dcr_dask.cli import main
from dcr_dask.running.cluster import ClusterError, dask_client

pytestmark = pytest.mark.slow

BAND = ["--set", "effectiveWavelength=478", "--set", "bandwidth=147"]
FAST = ["--set", "subregionSize=[96,96]", "--set", "maxNumIter=3"]
USABLE = {"idle", "mixed", "allocated", "completing"}


def _slurm_problem():
    """Why SLURM cannot be used here, or None if it can."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM here: sinfo/sbatch not on PATH (deploy/slurm/local-slurm.sh installs one)"
    try:
        answer = subprocess.run(
            ["sinfo", "--noheader", "--responding", "--format=%T"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except subprocess.TimeoutExpired:
        return "SLURM does not answer: sinfo timed out after 15 s"
    if answer.returncode != 0:
        return f"SLURM does not answer: sinfo failed: {answer.stderr.strip()}"
    states = {state.strip("*~#!%$@^-+") for state in answer.stdout.split()}
    if not states & USABLE:
        return f"no usable SLURM node: sinfo reports {sorted(states) or 'no responding node'}"
    return None


_PROBLEM = _slurm_problem()
if _PROBLEM is not None:
    pytest.skip(_PROBLEM, allow_module_level=True)


def _jobs_named(name):
    listing = subprocess.run(
        ["squeue", "--noheader", "--name", name, "--format=%i %T"],
        capture_output=True,
        text=True,
        check=True,
    )
    return listing.stdout.splitlines()


def _wait_until_no_jobs(name, seconds=30):
    deadline = time.monotonic() + seconds
    while _jobs_named(name) and time.monotonic() < deadline:
        time.sleep(0.5)
    return _jobs_named(name)


def _spec(tmp_path, name, extra=""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        "cluster: slurm\n"
        "cores: 2\n"
        "processes: 2\n"
        "memory: 2GiB\n"
        'walltime: "00:10:00"\n'
        f"job_name: {name}\n"
        f"local_directory: {tmp_path / 'worker-space'}\n"
        f"log_directory: {tmp_path / 'logs'}\n"
        "worker_timeout: 120\n"
        "jobs: 1\n" + extra
    )
    return path


def test_run_on_slurm_matches_the_local_run(cli_tile, cli_local_run, tmp_path, capsys):
    directory, local = cli_tile, cli_local_run
    name = f"dcr-dask-test-{tmp_path.name}"[:40]
    spec = _spec(tmp_path, name)
    output = tmp_path / "slurm.zarr"
    argv = ["-q", "run", str(directory / "warps"), "--output", str(output)]
    assert main([*argv, "--cluster", "slurm", "--cluster-spec", str(spec), *BAND, *FAST]) == 0
    assert "wrote" in capsys.readouterr().out
    # The workers really ran as SLURM jobs: each job left its output file.
    assert list((tmp_path / "logs").glob(f"{name}-*.err"))
    # ... and closing the cluster cancelled them.
    assert _wait_until_no_jobs(name) == []
    expected, got = xr.open_zarr(local), xr.open_zarr(output)
    for array in ("dcr_model", "coadd", "variance", "mask", "n_image"):
        np.testing.assert_array_equal(expected[array].values, got[array].values)


def test_workers_run_inside_slurm_jobs(tmp_path):
    name = f"dcr-dask-env-{tmp_path.name}"[:40]
    spec = _spec(tmp_path, name)
    with dask_client(cluster="slurm", cluster_spec=spec, n_workers=1) as client:
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        job_ids = client.run(lambda: __import__("os").environ.get("SLURM_JOB_ID"))
        assert all(job_id and job_id.isdigit() for job_id in job_ids.values())
        assert len(_jobs_named(name)) == 1
    assert _wait_until_no_jobs(name) == []


def test_tls_between_the_scheduler_and_the_slurm_workers(tmp_path):
    name = f"dcr-dask-tls-{tmp_path.name}"[:40]
    (tmp_path / "shared").mkdir()
    spec = _spec(tmp_path, name, f"shared_temp_directory: {tmp_path / 'shared'}\n")
    with dask_client(cluster="slurm", cluster_spec=spec, tls=True) as client:
        assert client.scheduler.address.startswith("tls://127.0.0.1:")
        workers = client.scheduler_info()["workers"]
        assert workers and all(address.startswith("tls://") for address in workers)
        assert client.submit(pow, 2, 5).result() == 32
        # the session certificate the jobs read, readable by its owner only
        written = list((tmp_path / "shared").iterdir())
        assert written and all(path.stat().st_mode & 0o077 == 0 for path in written)
    assert _wait_until_no_jobs(name) == []
    assert list((tmp_path / "shared").iterdir()) == []  # removed at the end


def test_a_refused_job_gives_a_clear_error_at_once(tmp_path):
    name = f"dcr-dask-bad-{tmp_path.name}"[:40]
    # More memory than the node has: sbatch refuses the job.
    spec = _spec(tmp_path, name).read_text().replace("memory: 2GiB", "memory: 100000GiB")
    path = tmp_path / "bad.yaml"
    path.write_text(spec)
    started = time.monotonic()
    with (
        pytest.raises(ClusterError, match=r"sbatch refused .*bad\.yaml.*Memory specification"),
        dask_client(cluster="slurm", cluster_spec=path),
    ):
        pass
    assert time.monotonic() - started < 30
    assert _jobs_named(name) == []


def test_no_worker_in_time_gives_a_clear_error_and_no_leftover_job(tmp_path):
    name = f"dcr-dask-dead-{tmp_path.name}"[:40]
    # The job starts but its worker never does.
    path = _spec(tmp_path, name, 'job_script_prologue: ["sleep 60"]\n')
    path.write_text(path.read_text().replace("worker_timeout: 120", "worker_timeout: 4"))
    started = time.monotonic()
    with (
        pytest.raises(ClusterError, match=r"no slurm worker connected .* within 4 s .*job ids: \d"),
        dask_client(cluster="slurm", cluster_spec=path),
    ):
        pass
    assert time.monotonic() - started < 30
    assert _wait_until_no_jobs(name) == []
