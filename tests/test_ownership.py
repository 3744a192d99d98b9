"""--overwrite replaces only what dcr_dask wrote, and never an input: every command and
the Python API refuse, before any work starts, and leave the user's files as they were."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import zarr
from conftest import CLI_BAND, CLI_FAST, cli_spec

import dcr_dask
from dcr_dask.cli import main
from dcr_dask.commands import ingest as ingest_command
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.errors import OutputError
from dcr_dask.io.ingest import ingest_warps
from dcr_dask.io.ownership import WRITER_ATTR, is_own, writer
from dcr_dask.io.store import open_output
from dcr_dask.io.warps import open_warps
from dcr_dask.running import pipeline
from dcr_dask.simulate import simulate_tile, write_simulation


def _config() -> DcrAssembleCoaddConfig:
    return DcrAssembleCoaddConfig(
        effectiveWavelength=478.0, bandwidth=147.0, subregionSize=[96, 96], maxNumIter=3
    )


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (or ``root`` itself), with its bytes."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(path): path.read_bytes() for path in files}


@pytest.fixture
def warps(cli_tile, tmp_path) -> Path:
    """A copy of the small tile's warps, which a failed guard could delete."""
    return Path(shutil.copytree(cli_tile / "warps", tmp_path / "warps"))


@pytest.fixture
def no_cluster(monkeypatch):
    """Starting a cluster fails the test: the refusals come before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("a cluster was started before the output was checked")

    for module in (ingest_command, pipeline):  # `dcr-dask run` starts it in the pipeline
        monkeypatch.setattr(module, "dask_client", refuse)


def _target(kind: str, tmp_path: Path, warps: Path) -> tuple[Path, str]:
    """An output the user does not want replaced, and the refusal's wording."""
    if kind == "folder with a document":
        folder = tmp_path / "thesis"
        folder.mkdir()
        (folder / "thesis.tex").write_text("four years of work")
        return folder, "this folder was not written by dcr_dask"
    if kind == "the input folder":
        return warps, "the output contains the input"
    document = tmp_path / "notes.txt"
    document.write_text("a plain file")
    return document, "this file was not written by dcr_dask"


def _refused_by_the_cli(argv: list[str], target: Path, reason: str, capsys) -> None:
    assert main(argv) == 1
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if not re.match(r"\d{4}-\d\d-\d\d ", line)]
    assert len(errors) == 1, stderr  # one line besides the log
    assert str(target) in errors[0] and reason in errors[0], stderr


KINDS = ["folder with a document", "the input folder", "a plain file"]


@pytest.mark.parametrize("kind", KINDS)
def test_run_refuses_to_overwrite_what_it_did_not_write(kind, warps, tmp_path, capsys, no_cluster):
    target, reason = _target(kind, tmp_path, warps)
    before = {**_snapshot(warps), **_snapshot(target)}
    argv = ["run", str(warps), "--output", str(target), "--overwrite", *CLI_BAND, *CLI_FAST]
    _refused_by_the_cli(argv, target, reason, capsys)
    with pytest.raises(OutputError, match=re.escape(f"{target}: ") + reason):
        dcr_dask.run(_config(), sorted(warps.glob("*.fits")), output=target, overwrite=True)
    assert {**_snapshot(warps), **_snapshot(target)} == before
    assert not target.with_name(target.name + ".work").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_ingest_refuses_to_overwrite_what_it_did_not_write(
    kind, warps, tmp_path, capsys, no_cluster
):
    target, reason = _target(kind, tmp_path, warps)
    before = {**_snapshot(warps), **_snapshot(target)}
    argv = ["ingest", str(warps), "--output", str(target), "--overwrite", *CLI_FAST]
    _refused_by_the_cli(argv, target, reason, capsys)
    if kind != "the input folder":  # the Python function takes a Dataset, not paths
        dataset = open_warps(sorted(warps.glob("*.fits")), chunks=(96, 96))
        with pytest.raises(OutputError, match=re.escape(f"{target}: ") + reason):
            ingest_warps(dataset, target, chunks=(96, 96), overwrite=True)
    assert {**_snapshot(warps), **_snapshot(target)} == before


def test_template_refuses_to_overwrite_its_visit_or_a_foreign_file(cli_tile, tmp_path, capsys):
    visit = Path(shutil.copy(next((cli_tile / "holdout").glob("*.fits")), tmp_path))
    document = tmp_path / "notes.fits"
    document.write_text("not a FITS file")
    before = {**_snapshot(visit), **_snapshot(document)}
    for target, reason in ((visit, "the output is the input"), (document, "was not written")):
        argv = ["template", "--model", str(tmp_path / "coadd.zarr"), "--visit", str(visit)]
        _refused_by_the_cli([*argv, "--output", str(target), "--overwrite"], target, reason, capsys)
    assert {**_snapshot(visit), **_snapshot(document)} == before


def test_simulate_replaces_its_own_files_only(tmp_path, capsys):
    folder = tmp_path / "sim"
    folder.mkdir()
    (folder / "truth.json").write_text('{"mine": true}')
    options = ["--size", "48", "48", "--overwrite"]
    argv = ["simulate", str(folder), *options]
    _refused_by_the_cli(argv, folder / "truth.json", "was not written by dcr_dask", capsys)
    tile = simulate_tile(cli_spec())
    with pytest.raises(OutputError, match=r"truth\.json: this file was not written"):
        write_simulation(tile, folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["truth.json"]  # nothing written
    assert (folder / "truth.json").read_text() == '{"mine": true}'

    earlier = tmp_path / "earlier"
    paths = write_simulation(tile, earlier)
    for path in [*paths["warps"], *paths["holdout"], paths["truth"], paths["catalog"]]:
        assert is_own(path), path
    assert main(["-q", "simulate", str(earlier), *options]) == 0  # its own files: replaced
    write_simulation(tile, earlier, overwrite=True)


def test_demo_refuses_a_folder_that_is_not_an_earlier_demo(tmp_path, capsys):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "letter.txt").write_text("dear")
    _refused_by_the_cli(["demo", "--output", str(folder)], folder, "not empty", capsys)
    assert sorted(p.name for p in folder.iterdir()) == ["letter.txt"]


@pytest.mark.slow
def test_overwrite_replaces_an_earlier_runs_store_and_exports(cli_tile, tmp_path, capsys):
    warps = sorted((cli_tile / "warps").glob("*.fits"))
    output = tmp_path / "coadd.zarr"
    # A store as versions before the ownership marker wrote it.
    legacy = {"dcr_dask_version": "0.0.1", "config": {}, "inputs": [], "convergence": {}}
    zarr.open_group(output, mode="w", zarr_format=3).attrs.update(legacy)
    argv = ["-q", "run", str(cli_tile / "warps"), "--output", str(output), "--overwrite"]
    assert main([*argv, *CLI_BAND, *CLI_FAST]) == 0
    assert open_output(output).attrs[WRITER_ATTR] == writer()
    dataset = dcr_dask.run(_config(), warps, output=output, overwrite=True)
    assert dataset.attrs[WRITER_ATTR] == writer()

    exports = tmp_path / "fits"
    assert main(["-q", "export-fits", str(output), str(exports)]) == 0
    capsys.readouterr()
    for path in exports.iterdir():
        assert is_own(path), path
    assert main(["-q", "export-fits", str(output), str(exports), "--overwrite"]) == 0
    foreign = exports / "coadd_coadd.fits"
    foreign.write_text(json.dumps({"FITS": "no"}))
    argv = ["export-fits", str(output), str(exports), "--overwrite"]
    _refused_by_the_cli(argv, foreign, "this file was not written by dcr_dask", capsys)
    assert foreign.read_text() == json.dumps({"FITS": "no"})


def test_a_users_folder_in_the_work_directory_is_never_deleted(cli_tile, tmp_path):
    """A folder named as one of the run's checkpoints in --work-dir stops the run."""
    from dcr_dask.errors import OutputError

    work = tmp_path / "work"
    (work / "psf_matched.zarr").mkdir(parents=True)
    (work / "psf_matched.zarr" / "notes.txt").write_text("mine")
    config = DcrAssembleCoaddConfig(effectiveWavelength=478.0, bandwidth=147.0)
    config.update(subregionSize=[96, 96], maxNumIter=3)
    warps = sorted((cli_tile / "warps").glob("*.fits"))
    with pytest.raises(OutputError, match=r"psf_matched\.zarr"):
        dcr_dask.run(config, warps, output=tmp_path / "coadd.zarr", work_dir=work)
    assert (work / "psf_matched.zarr" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "coadd.zarr").exists()
