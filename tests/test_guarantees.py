"""What dcr_dask guarantees on degenerate and faulty inputs (README, "Guarantees"):
clear errors before the cluster starts, degenerate results warned about and recorded,
nothing partial left behind, and one-line errors from the command line."""

from __future__ import annotations

import errno
import json
import os
import signal
import uuid
from pathlib import Path

import attrs
import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from distributed import Client, LocalCluster

import dcr_dask
from dcr_dask.cli import main
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.errors import ClusterLostError, InputErrors, OutputError
from dcr_dask.io import store as store_io
from dcr_dask.io.atomic import atomic_directory
from dcr_dask.io.fits import check_warp, shift_wcs, write_warp
from dcr_dask.io.ownership import WRITER_ATTR, is_own_temporary, writer
from dcr_dask.masks import MaskPlanes
from dcr_dask.running import pipeline
from dcr_dask.running.input_checks import DEGENERATE_LEVER_PX, dcr_spread, visit_quality
from dcr_dask.settings import run_shifts
from dcr_dask.simulate import SimulationSpec, simulate_tile

BAND = ["--set", "effectiveWavelength=478", "--set", "bandwidth=147"]
FAST = ["--set", "subregionSize=[48,48]", "--set", "maxNumIter=3"]


def _config() -> DcrAssembleCoaddConfig:
    config = DcrAssembleCoaddConfig()
    config.update(effectiveWavelength=478.0, bandwidth=147.0, subregionSize=[48, 48], maxNumIter=3)
    return config


def _spec(airmasses=(1.05, 1.3, 1.6, 1.9)) -> SimulationSpec:
    return SimulationSpec(shape=(48, 48), airmasses=airmasses, n_stars=5, n_galaxies=1, seed=5)


@pytest.fixture(scope="module")
def tile():
    return simulate_tile(_spec())


def _write(tile, directory: Path, *, masks=None, variances=None, visits=None) -> list[Path]:
    """Write the tile's visits as warps, with some arrays or visit metadata replaced."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for v, info in enumerate(visits or tile.visits):
        path = directory / f"visit_{info.visit}.fits"
        write_warp(
            path,
            tile.images[v],
            (masks if masks is not None else tile.masks)[v],
            (variances if variances is not None else tile.variances)[v],
            mask_planes=tile.mask_planes,
            wcs=tile.wcs,
            visit=info,
            psf=tile.psfs[v],
        )
        paths.append(path)
    return paths


@pytest.fixture
def no_cluster(monkeypatch):
    """Fail if a run gets as far as starting (or using) a Dask cluster."""

    def refuse(*args, **kwargs):
        raise AssertionError("the cluster was started")

    monkeypatch.setattr(pipeline, "dask_client", refuse)


def _hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


# --------------------------------------------------------------------------- before the cluster


def test_one_visit_is_refused_before_the_cluster(tile, tmp_path, no_cluster):
    (path,) = _write(tile, tmp_path / "warps", visits=tile.visits[:1])
    output = tmp_path / "coadd.zarr"
    with pytest.raises(InputErrors, match="at least 2 visits") as info:
        dcr_dask.run(_config(), [path], output=output)
    assert str(path) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["warps"]


def test_a_tile_all_no_data_is_refused_naming_every_file(tile, tmp_path, no_cluster):
    masks = tile.masks | np.int32(tile.mask_planes.value(["NO_DATA"]))
    paths = _write(tile, tmp_path / "warps", masks=masks)
    with pytest.raises(InputErrors, match="no usable pixel") as info:
        dcr_dask.run(_config(), paths, output=tmp_path / "coadd.zarr")
    assert all(str(p) in str(info.value) for p in paths)
    assert not (tmp_path / "coadd.zarr.work").exists()


def test_a_mask_without_plane_keywords_is_refused(afw_warp):
    path = afw_warp(bits={})
    (error,) = check_warp(path).errors
    assert str(path) in str(error) and "no MP_<PLANE> keywords" in str(error)


def test_a_user_folder_named_like_the_fit_scratch_is_never_deleted(tile, tmp_path, no_cluster):
    paths = _write(tile, tmp_path / "warps")
    work = tmp_path / "work"
    (work / "model.zarr").mkdir(parents=True)
    (work / "model.zarr" / "mine.txt").write_text("keep me")
    with pytest.raises(OutputError, match=r"model\.zarr"):
        dcr_dask.run(_config(), paths, output=tmp_path / "coadd.zarr", work_dir=work)
    assert (work / "model.zarr" / "mine.txt").read_text() == "keep me"


def test_visits_at_one_dcr_are_reported_with_the_spread(tile):
    config = _config()
    same = [attrs.evolve(tile.visits[1], visit=k) for k in range(3)]
    centre = (tile.spec.shape[1] - 1) / 2.0
    record = dcr_spread(run_shifts(same, tile.wcs, config, x=centre, y=centre))
    assert record is not None and record["check"] == "dcr_geometry"
    assert record["spread_major_px"] < 1e-6 and "in any direction" in record["message"]
    assert dcr_spread(run_shifts(tile.visits, tile.wcs, config, x=centre, y=centre)) is None
    # two sides of the meridian at one airmass: constrained along one direction only
    two = [tile.visits[1], tile.visits[2], attrs.evolve(tile.visits[1], visit=7)]
    record = dcr_spread(run_shifts(two, tile.wcs, config, x=centre, y=centre))
    assert record["spread_minor_px"] < DEGENERATE_LEVER_PX <= record["spread_major_px"]
    assert "across one direction" in record["message"]


def _quality_dataset(masks: np.ndarray, variances: np.ndarray) -> xr.Dataset:
    planes = MaskPlanes({"BAD": 0, "NO_DATA": 8})
    n = masks.shape[0]
    return xr.Dataset(
        {
            "mask": (("visit", "y", "x"), da.from_array(masks, chunks=(1, 8, 8))),
            "variance": (("visit", "y", "x"), da.from_array(variances, chunks=(1, 8, 8))),
        },
        coords={
            "visit": np.arange(n) + 10,
            "filename": ("visit", [f"v{k}.fits" for k in range(n)]),
        },
        attrs={"mask_planes": dict(planes.bits)},
    )


def test_negative_variance_rejects_the_visit_and_disjoint_visits_are_reported():
    masks = np.zeros((4, 16, 16), np.int32)
    variances = np.ones((4, 16, 16), np.float32)
    variances[3, 5, 5] = -1.0  # one valid pixel: the visit is rejected
    masks[0, :, 8:] = masks[1, :, :8] = masks[2, :, :8] = 1 << 8  # visit 10 alone on the left
    quality = visit_quality(_quality_dataset(masks, variances), ["NO_DATA", "BAD"])
    assert list(quality.rejected) == [13]
    assert "variance <= 0 on 1 of 256" in quality.rejected[13]
    single = [w for w in quality.warnings if w["check"] == "single_visit_pixels"]
    assert single and single[0]["pixels"] == 128  # without visit 13, half the tile has one visit
    # the same negative variance on a BAD pixel is not used, so nothing is rejected
    masks[3, 5, 5] = 1
    assert visit_quality(_quality_dataset(masks, variances), ["NO_DATA", "BAD"]).rejected == {}


# --------------------------------------------------------------------------- runs on a cluster


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def degenerate_run(tile, client, tmp_path_factory):
    """Visit 3 has a negative variance, visit 0 sees only the left half, 1 and 2 the right."""
    directory = tmp_path_factory.mktemp("degenerate")
    masks = tile.masks.copy()
    no_data = np.int32(tile.mask_planes.value(["NO_DATA"]))
    masks[0, :, 24:] |= no_data
    masks[1:3, :, :24] |= no_data
    variances = tile.variances.copy()
    variances[3, 10, 10] = -2.0
    paths = _write(tile, directory / "warps", masks=masks, variances=variances)
    output = directory / "coadd.zarr"
    dataset = dcr_dask.run(_config(), paths, output=output, client=client)
    return tile, paths, output, dataset


def test_a_rejected_visit_is_left_out_of_the_fit_and_recorded(degenerate_run):
    tile, _, output, dataset = degenerate_run
    rejected = tile.visits[3].visit
    inputs = {r["visit"]: r for r in dataset.attrs["inputs"]}
    assert "variance <= 0" in inputs[rejected]["rejected"]
    assert all(not inputs[v.visit]["rejected"] for v in tile.visits[:3])
    metadata = json.loads(pipeline.metadata_path(output).read_text())
    assert [r["visit"] for r in metadata["visits"]["rejected"]] == [rejected]
    assert rejected not in metadata["visits"]["used"]
    # at most 2 visits see any pixel (0 and 3 on the left, 1, 2 and 3 on the right without 3)
    assert int(dataset["n_image"].max()) == 2
    checks = {w["check"] for w in dataset.attrs["input_warnings"]}
    assert {"rejected_visit", "single_visit_pixels"} <= checks
    single = next(w for w in dataset.attrs["input_warnings"] if w["check"] == "single_visit_pixels")
    assert single["pixels"] == 48 * 24


def test_export_fits_into_the_store_itself_is_refused(degenerate_run, capsys):
    _, _, output, _ = degenerate_run
    assert main(["export-fits", str(output), str(output)]) == 1
    err = capsys.readouterr().err.strip()
    assert "inside the input" in err and len(err.splitlines()) == 1
    assert not list(output.glob("*.fits"))


def _template_args(output: Path, visit: Path, target: Path) -> list[str]:
    return ["template", "--model", str(output), "--visit", str(visit), "--output", str(target)]


def test_template_refuses_another_band_a_foreign_wcs_and_a_bad_card(degenerate_run, capsys):
    tile, paths, output, _ = degenerate_run
    directory = output.parent
    other_band = _write(
        tile, directory / "band", visits=[attrs.evolve(v, band="r") for v in tile.visits]
    )[0]
    shifted = directory / "shifted.fits"
    write_warp(
        shifted,
        tile.images[0],
        tile.masks[0],
        tile.variances[0],
        mask_planes=tile.mask_planes,
        wcs=shift_wcs(tile.wcs, 0.8, 0.0),
        visit=tile.visits[0],
    )
    raw = bytearray(paths[0].read_bytes())
    at = raw.find(b"BORE-RA ")
    raw[at : at + 80] = b"BORE-RA = 12.3.4 / broken".ljust(80)
    bad_card = directory / "bad_card.fits"
    bad_card.write_bytes(bytes(raw))
    for visit, expected in (
        (other_band, "band 'r' differs from the model's band 'g'"),
        (shifted, "0.8 px away (tolerance 0.5 px)"),
        (bad_card, "BORE-RA: the header card cannot be parsed"),
    ):
        target = directory / f"t_{visit.stem}.fits"
        assert main(_template_args(output, visit, target)) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(visit) in err and expected in err, err
        assert not target.exists()
    assert main(_template_args(output, paths[1], directory / "good.fits")) == 0


def test_a_lost_scheduler_is_reported_with_the_stage(tile, tmp_path, monkeypatch):
    paths = _write(tile, tmp_path / "warps")
    output = tmp_path / "coadd.zarr"
    original = pipeline.visit_quality
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),  # give up reconnecting
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as own,
    ):

        def lose_the_scheduler(*args, **kwargs):
            own.sync(cluster.scheduler.close)
            return original(*args, **kwargs)

        monkeypatch.setattr(pipeline, "visit_quality", lose_the_scheduler)
        with pytest.raises(ClusterLostError, match="went away during the input checks"):
            dcr_dask.run(_config(), paths, output=output, client=own)
    assert not output.exists() and _hidden(tmp_path) == []


# --------------------------------------------------------------------------- leftovers


def _marked_store(path: Path) -> None:
    zarr.open_group(str(path), mode="w", zarr_format=3).attrs[WRITER_ATTR] = writer()


def test_a_later_write_removes_only_our_stale_temporaries(tmp_path):
    target = tmp_path / "coadd.zarr"
    ours = tmp_path / f".coadd.zarr.tmp-{uuid.uuid4().hex}"
    _marked_store(ours)
    theirs = tmp_path / f".coadd.zarr.tmp-{uuid.uuid4().hex}"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("not dcr_dask's")
    other_target = tmp_path / f".other.zarr.tmp-{uuid.uuid4().hex}"
    _marked_store(other_target)
    ds = xr.Dataset({"a": (("y", "x"), np.ones((4, 4), np.float32))})
    store_io.write_zarr(ds, target)
    assert not ours.exists() and theirs.exists() and other_target.exists()
    assert xr.open_zarr(target)["a"].shape == (4, 4)


def test_a_failed_write_leaves_nothing_and_its_temporary_is_marked(tmp_path, monkeypatch):
    original = store_io.write_zarr_chunks
    seen = []

    def fill_the_disk(ds, path, **kwargs):
        original(ds, path, **kwargs)
        seen.append(is_own_temporary(path, "out.zarr"))
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(store_io, "write_zarr_chunks", fill_the_disk)
    ds = xr.Dataset({"a": (("y", "x"), np.ones((4, 4), np.float32))})
    with pytest.raises(OSError, match="No space"):
        store_io.write_zarr(ds, tmp_path / "out.zarr")
    assert seen == [True]  # marked before the final attributes: a later run may remove it
    assert list(tmp_path.iterdir()) == []


def test_sigterm_inside_an_atomic_write_cleans_up(tmp_path, monkeypatch, capsys):
    """The command line turns SIGTERM into an exception: the temporary is deleted."""
    from dcr_dask.commands import export_fits as command

    def terminated_while_writing(args):
        with atomic_directory(tmp_path / "out.zarr") as tmp:
            (tmp / "chunk").write_text("partial")
            os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(command, "run", terminated_while_writing)
    assert main(["export-fits", "x.zarr", "out"]) == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


# --------------------------------------------------------------------------- one-line errors


@pytest.fixture(scope="module")
def cli_warps(tile, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("cli") / "warps"
    _write(tile, directory)
    return directory


def _run_args(warps: Path, output: Path) -> list[str]:
    return ["run", str(warps), "--output", str(output), "--workers", "1", *BAND, *FAST]


def test_disk_full_is_one_line_and_leaves_nothing(cli_warps, tmp_path, monkeypatch, capsys):
    def full(ds, path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(store_io, "write_zarr_chunks", full)
    output = tmp_path / "coadd.zarr"
    assert main(_run_args(cli_warps, output)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("dcr-dask run: error: no space left on the device while writing")
    assert not any("Traceback" in line for line in err)
    assert not output.exists() and _hidden(tmp_path) == []
    assert _hidden(tmp_path / "coadd.zarr.work") == []


def test_ctrl_c_exits_130_and_leaves_nothing(cli_warps, tmp_path, monkeypatch, capsys):
    original = store_io.write_zarr_chunks

    def interrupted(ds, path, **kwargs):
        original(ds, path, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(store_io, "write_zarr_chunks", interrupted)
    output = tmp_path / "coadd.zarr"
    assert main(_run_args(cli_warps, output)) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "dcr-dask run: interrupted; nothing partial was kept at the output"
    assert not output.exists() and _hidden(tmp_path / "coadd.zarr.work") == []
