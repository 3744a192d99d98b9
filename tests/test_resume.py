"""``dcr-dask run --resume``: an interrupted run goes on from its last completed stage or
group of subregions (recorded in ``<output>.work/checkpoint.json``) to the same output,
bit for bit, as an uninterrupted run; a run of other inputs or settings is refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

import dcr_dask
from dcr_dask.cli import main
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.errors import OutputError, ResumeError
from dcr_dask.io import checkpoint as checkpoint_module
from dcr_dask.io.checkpoint import CHECKPOINT_NAME, Checkpoint, RunFingerprint
from dcr_dask.io.scratch import ScratchModel
from dcr_dask.running import pipeline
from dcr_dask.simulate import SimulationSpec, simulate_tile, write_simulation

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
#: 48x48 px in 24x24 px subregions; a 1 MB budget fits one block per group: 4 groups.
SETTINGS = [
    "--set", "effectiveWavelength=478",
    "--set", "bandwidth=147",
    "--set", "subregionSize=[24,24]",
    "--set", "minNumIter=1",
    "--set", "maxNumIter=2",
    "--memory-budget", "1e6",
]  # fmt: skip


@pytest.fixture(scope="module")
def warps(tmp_path_factory) -> Path:
    spec = SimulationSpec(
        shape=(48, 48), airmasses=(1.05, 1.4, 1.9), n_stars=5, n_galaxies=1, seed=5
    )
    directory = tmp_path_factory.mktemp("sim")
    write_simulation(simulate_tile(spec), directory)
    return directory / "warps"


@pytest.fixture(scope="module")
def scheduler():
    """A cluster on TCP, so that a separate process (killed in a test) can use it."""
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            protocol="tcp",
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster),
    ):
        yield cluster.scheduler_address


def _args(warps: Path, output: Path, scheduler: str, *extra: str) -> list[str]:
    return ["run", str(warps), "--output", str(output), "--scheduler", scheduler, *SETTINGS, *extra]


@pytest.fixture(scope="module")
def reference(warps, scheduler, tmp_path_factory) -> Path:
    """The output of an uninterrupted run (its work directory is beside it)."""
    output = tmp_path_factory.mktemp("reference") / "coadd.zarr"
    assert main(_args(warps, output, scheduler)) == 0
    return output


def _work(output: Path) -> Path:
    return output.with_name(output.name + ".work")


def _record(output: Path) -> dict:
    return json.loads((_work(output) / CHECKPOINT_NAME).read_text())


def _assert_same_output(output: Path, reference: Path) -> None:
    """Every variable bit for bit, and every attribute but the timings and the record of
    what was resumed."""
    ours, theirs = xr.open_zarr(output), xr.open_zarr(reference)
    assert sorted(ours.data_vars) == sorted(theirs.data_vars)
    for name in theirs.data_vars:
        a, b = ours[name].values, theirs[name].values
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), f"{name} differs"
    for name in ("convergence", "inputs", "config", "artifact_pixels", "input_warnings"):
        assert ours.attrs[name] == theirs.attrs[name], name
    mine = {k: v for k, v in ours.attrs["metadata"].items() if k not in ("timings_s", "resumed")}
    want = {k: v for k, v in theirs.attrs["metadata"].items() if k != "timings_s"}
    mine["fit"] = {**mine["fit"], "subregion_fits": None}  # compared in convergence
    want["fit"] = {**want["fit"], "subregion_fits": None}
    assert mine == want


def _copy_work(reference: Path, output: Path) -> None:
    """Put a finished run's work directory beside ``output``: its stages up to the fit are
    recorded (the fit's scratch store is deleted when a run finishes)."""
    shutil.copytree(_work(reference), _work(output))
    assert "fit" not in _record(output)["stages"]


# --------------------------------------------------------------------------- interruptions


def test_a_run_terminated_after_compare_warp_resumes_from_there(
    warps, scheduler, reference, tmp_path, monkeypatch, capsys
):
    output = tmp_path / "coadd.zarr"
    original = pipeline.direct_coadd

    def terminated(*args, **kwargs):  # the first stage after the artifact masks
        os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "direct_coadd", terminated)
    assert main(_args(warps, output, scheduler)) == 143
    assert not output.exists()
    stages = _record(output)["stages"]
    assert list(stages) == ["ingest", "psf_matched", "static_model", "artifact_masks"]
    capsys.readouterr()

    monkeypatch.setattr(pipeline, "direct_coadd", original)
    assert main(_args(warps, output, scheduler, "--resume")) == 0
    err = capsys.readouterr().err
    for title in (
        "ingest",
        "PSF-matched warps",
        "static sky model",
        "CompareWarp and artifact masks",
    ):
        assert f"{title}: taken from the interrupted run's work directory" in err, title
    assert (
        "ingesting 3 visits" not in err and "footprints" not in err
    )  # neither ingest nor CompareWarp ran
    assert "direct coadd: taken" not in err
    _assert_same_output(output, reference)
    resumed = xr.open_zarr(output).attrs["metadata"]["resumed"]
    assert resumed["stages"] == ["ingest", "psf_matched", "static_model", "artifact_masks"]


def test_a_run_killed_mid_fit_resumes_from_its_last_written_pass(
    warps, scheduler, reference, tmp_path, monkeypatch, capsys
):
    """Two interruptions of the fit (four groups of one block), then the run that finishes it.

    1. A separate process is killed (SIGKILL: nothing cleans up) once the fit's first pass
       is logged. It is itself a resumed run: the work directory of a finished run with
       its output gone, so it starts at the fit.
    2. The next run (``--resume``) is interrupted (Ctrl-C) right after the first group of
       its next pass reached the scratch store, before the record says so: the buffer
       being written is half new.
    3. The last one goes on from the recorded pass, reading the buffer that pass wrote,
       and gives the uninterrupted run's output bit for bit.
    """
    output = tmp_path / "coadd.zarr"
    _copy_work(reference, output)
    command = [sys.executable, "-m", "dcr_dask.cli", *_args(warps, output, scheduler), "--resume"]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in process.stderr:
            if "fit pass 1 over 4 groups done" in line:
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.kill()
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not output.exists()
    fit = _record(output)["stages"]["fit"]
    passes = fit["passes"]
    assert passes >= 1
    assert any(entry["stopped"] is None for entry in fit["blocks"])  # not finished
    assert fit["groups"] == [[[0, 0]], [[0, 1]], [[1, 0]], [[1, 1]]]

    original = ScratchModel.write_windows

    def cut_off(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ScratchModel, "write_windows", cut_off)
    assert main(_args(warps, output, scheduler, "--resume")) == 130
    assert _record(output)["stages"]["fit"]["passes"] == passes
    monkeypatch.setattr(ScratchModel, "write_windows", original)
    capsys.readouterr()

    assert main(_args(warps, output, scheduler, "--resume")) == 0
    err = capsys.readouterr().err
    assert "DCR fit (groups of subregions): taken from the interrupted run" in err
    assert f"resuming the fit after pass {passes} (" in err
    assert "fit pass 1 over" not in err and f"fit pass {passes + 1} over 4 groups done" in err
    _assert_same_output(output, reference)
    assert not (_work(output) / "model.zarr").exists()
    assert "fit" not in _record(output)["stages"]


# --------------------------------------------------------------------------- refusals


def _refuse(*args, **kwargs):
    raise AssertionError("the cluster was used")


@pytest.fixture
def no_cluster(monkeypatch):
    monkeypatch.setattr(pipeline, "dask_client", _refuse)


def test_a_changed_config_or_input_is_named_and_nothing_is_written(
    warps, scheduler, tmp_path, monkeypatch, capsys
):
    mine = tmp_path / "warps"
    shutil.copytree(warps, mine)
    output = tmp_path / "coadd.zarr"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # --resume without a work directory: a warning, and the run starts from the beginning
    monkeypatch.setattr(pipeline, "ingest_warps", interrupted)
    assert main(_args(mine, output, scheduler, "--resume")) == 130
    assert "no checkpoint record" in capsys.readouterr().err
    record = (_work(output) / CHECKPOINT_NAME).read_bytes()
    assert json.loads(record)["stages"] == {}

    def refused(args: list[str], expected: str) -> None:
        with monkeypatch.context() as patch:
            patch.setattr(pipeline, "dask_client", _refuse)
            assert main(args) == 1
        err = capsys.readouterr().err
        # (the cluster of the other tests may log on stderr meanwhile)
        (line,) = [line for line in err.splitlines() if line.startswith("dcr-dask")]
        assert line.startswith("dcr-dask run: error: cannot resume from ") and expected in line
        assert "Traceback" not in err
        assert not output.exists()
        assert (_work(output) / CHECKPOINT_NAME).read_bytes() == record
        assert sorted(p.name for p in _work(output).iterdir()) == [CHECKPOINT_NAME]

    refused(
        _args(mine, output, scheduler, "--resume", "--set", "maxNumIter=4"),
        "config field maxNumIter is 4, the earlier run's was 2",
    )
    refused(
        _args(mine, output, scheduler, "--resume", "--memory-budget", "2e6"),
        "option memory_budget_bytes is 2000000.0, the earlier run's was 1000000.0",
    )
    first = sorted(mine.glob("*.fits"))[0]
    stat = first.stat()
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    refused(
        _args(mine, output, scheduler, "--resume"),
        f"warps input {first} changed since the earlier run",
    )


def test_resume_after_a_finished_run_keeps_its_output(
    warps, scheduler, reference, tmp_path, no_cluster, capsys
):
    stamp = (reference / "zarr.json").stat().st_mtime_ns
    assert main(_args(warps, reference, scheduler, "--resume")) == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"nothing to resume, already complete: {reference}: 4 sub-bands")
    assert "nothing to resume" in out.err
    assert (reference / "zarr.json").stat().st_mtime_ns == stamp
    # another store at the output is not the finished run's: the usual rules apply
    output = tmp_path / "coadd.zarr"
    shutil.copytree(reference, output)
    _copy_work(reference, output)
    assert main(_args(warps, output, scheduler, "--resume")) == 1
    assert "exists; pass overwrite=True (--overwrite)" in capsys.readouterr().err


# --------------------------------------------------------------------------- the record


def _fingerprint(**changes) -> RunFingerprint:
    config = DcrAssembleCoaddConfig()
    config.update(effectiveWavelength=478.0, bandwidth=147.0, **changes)
    return RunFingerprint.of_run(config, warps=[__file__])


def test_the_record_is_replaced_atomically_and_a_damaged_one_is_not_trusted(
    tmp_path, monkeypatch, caplog
):
    checkpoint = Checkpoint.start(tmp_path, _fingerprint())
    checkpoint.mark("ingest")
    path = tmp_path / CHECKPOINT_NAME
    before = path.read_bytes()

    def killed(*args, **kwargs):  # the process dies with the new record written, not in place
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint_module.os, "fsync", killed)
        with pytest.raises(KeyboardInterrupt):
            checkpoint.mark("psf_matched")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]
    assert list(Checkpoint.load(tmp_path).stages) == ["ingest"]

    path.write_bytes(before[: len(before) // 2])  # cut short (not by dcr_dask's writer)
    assert Checkpoint.load(tmp_path) is None
    assert "cannot be used to resume" in caplog.text
    with pytest.raises(OutputError, match="not written by dcr_dask"):
        Checkpoint.start(tmp_path, _fingerprint())  # not recognised as ours: not replaced
    path.write_text(json.dumps({"format": 1, "fingerprint": {}, "stages": {}}))
    assert Checkpoint.load(tmp_path) is None  # no writer mark


def test_the_fingerprint_names_each_difference(tmp_path):
    old = _fingerprint(maxNumIter=3)
    assert old.differences(_fingerprint(maxNumIter=3)) == []
    assert old.differences(_fingerprint(maxNumIter=7)) == [
        "config field maxNumIter is 7, the earlier run's was 3"
    ]
    config = DcrAssembleCoaddConfig()
    config.update(effectiveWavelength=478.0, bandwidth=147.0, maxNumIter=3)
    config.detect.thresholdValue = 6.0
    (found,) = old.differences(RunFingerprint.of_run(config, warps=[__file__]))
    assert found.startswith("config field detect.thresholdValue is 6.0, the earlier run's was")
    config = DcrAssembleCoaddConfig()
    one = RunFingerprint.of_run(config, warps=[__file__])
    two = RunFingerprint.of_run(config, warps=[__file__, tmp_path / "x.fits"])
    assert one.differences(two) == [
        f"warps input {tmp_path / 'x.fits'} was not an input of the earlier run"
    ]
    assert two.differences(one) == [
        f"warps input {tmp_path / 'x.fits'} of the earlier run is not an input now"
    ]
    newer = RunFingerprint.from_json({**old.to_json(), "version": "9.9"})
    assert old.differences(newer) == [
        f"dcr_dask is version 9.9, the earlier run's was {dcr_dask.__version__}"
    ]
    with pytest.raises(ResumeError, match=r"cannot resume from .*maxNumIter is 7"):
        Checkpoint(tmp_path / CHECKPOINT_NAME, old, {}).check(_fingerprint(maxNumIter=7))


def test_resume_is_refused_before_the_cluster_from_python(tmp_path, warps, no_cluster):
    config = DcrAssembleCoaddConfig()
    config.update(effectiveWavelength=478.0, bandwidth=147.0)
    paths = sorted(warps.glob("*.fits"))
    output = tmp_path / "coadd.zarr"
    Checkpoint.start(_work(output), RunFingerprint.of_run(config, warps=paths[:3]))
    with pytest.raises(ResumeError, match="is not an input now"):
        dcr_dask.run(config, paths[:2], output=output, resume=True)
    assert not output.exists()
    assert np.array_equal(sorted(p.name for p in _work(output).iterdir()), [CHECKPOINT_NAME])


def test_data_flows_one_way_the_masks_have_their_own_store(reference):
    """CompareWarp's masks go to their own store in the work directory: the ingest store
    is never written after the ingest."""
    from dcr_dask.io.ingest import open_ingested

    ingested = open_ingested(_work(reference) / "warps.zarr")
    assert not {"artifacts", "no_data"} & set(ingested.data_vars)
    masks = xr.open_zarr(_work(reference) / pipeline.ARTIFACT_MASKS_STORE, consolidated=False)
    assert set(masks.data_vars) == {"artifacts", "no_data"}
    assert masks["artifacts"].dtype == np.uint8
    assert list(masks["visit"].values) == list(ingested["visit"].values)
    stored = xr.open_zarr(reference)
    np.testing.assert_array_equal(stored["artifacts"].values, masks["artifacts"].values)
    assert "artifact_masks" in _record(reference)["stages"]
