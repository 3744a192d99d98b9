"""The command line: structure, config actions, inspect, and the demo on a real local cluster."""

import json

import numpy as np
import pytest

from dcr_dask import __version__, geometry
from dcr_dask.cli import SUBCOMMANDS, main
from dcr_dask.io.fits import read_warp_header
from dcr_dask.io.ingest import open_ingested
from dcr_dask.simulate import SimulationSpec, simulate_tile, write_simulation

BAND = ["--set", "effectiveWavelength=478", "--set", "bandwidth=147"]


@pytest.fixture(scope="module")
def warp_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sim")
    spec = SimulationSpec(shape=(48, 48), airmasses=(1.05, 1.5, 2.0), n_stars=4, n_galaxies=1)
    write_simulation(simulate_tile(spec), directory)
    return directory


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out
    assert main([]) == 2


def test_config_validate_reports_each_bad_field(capsys):
    assert main(["config", "validate", *BAND]) == 0
    code = main(
        ["config", "validate", *BAND, "--set", "spatialThreshold=2", "--set", "dcrNumSubfilters=1"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "spatialThreshold" in err and "2.0" in err
    assert "dcrNumSubfilters" in err


def test_config_show_and_diff_round_trip(tmp_path, capsys):
    first = tmp_path / "a.yaml"
    assert main(["config", "show", *BAND, "--set", "detect.thresholdValue=6"]) == 0
    first.write_text(capsys.readouterr().out)
    second = tmp_path / "b.json"
    assert main(["config", "show", *BAND, "--format", "json"]) == 0
    second.write_text(capsys.readouterr().out)
    assert main(["config", "diff", str(first), str(first)]) == 0
    capsys.readouterr()
    assert main(["config", "diff", str(first), str(second)]) == 1
    assert "detect.thresholdValue" in capsys.readouterr().out


def test_python_config_needs_the_explicit_flag(tmp_path, capsys):
    script = tmp_path / "c.py"
    script.write_text("config.effectiveWavelength = 478.0\nconfig.bandwidth = 147.0\n")
    assert main(["config", "validate", "--config", str(script)]) == 1
    assert "allow" in capsys.readouterr().err.lower()
    assert main(["config", "validate", "--config", str(script), "--allow-python-config"]) == 0


def test_inspect_json_matches_the_geometry_module(warp_dir, capsys):
    assert main(["inspect", str(warp_dir / "warps"), *BAND, "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["visit"] for r in records] == [1000, 1001, 1002]
    for record in records:
        visit, layout = read_warp_header(record["filename"])
        assert record["airmass"] == pytest.approx(visit.boresight_airmass)
        expected = geometry.subband_shifts_px(
            visit,
            layout.wcs,
            23.5,
            23.5,
            effective_wavelength_nm=478.0,
            bandwidth_nm=147.0,
            n_subfilters=3,
        )[:, 0]
        np.testing.assert_allclose(record["shifts_px"], expected, atol=1e-9)
        assert len(record["shifts_px"]) == 3
        assert set(record) >= {"parallactic_angle_deg", "zenith_direction_deg", "weather"}
        assert record["weather"]["defaulted"] == ["AIRTEMP", "AIRPRESS", "HUMIDITY"]


def test_inspect_names_the_bad_file(warp_dir, tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing*.fits"), *BAND]) == 1
    assert "missing*.fits" in capsys.readouterr().err
    broken = tmp_path / "broken.fits"
    broken.write_bytes((warp_dir / "warps" / "visit_1000.fits").read_bytes()[:5000])
    assert main(["inspect", str(broken), *BAND]) == 1
    assert "broken.fits" in capsys.readouterr().err


@pytest.mark.slow
def test_ingest_writes_a_store_chunked_by_subregion_size_and_reuses_it(warp_dir, tmp_path, capsys):
    store = tmp_path / "warps.zarr"
    args = ["-q", "ingest", str(warp_dir / "warps"), "--output", str(store)]
    args += ["--set", "subregionSize=[32,16]", "--workers", "1"]
    assert main(args) == 0
    assert "3 visits of 48x48 px in chunks of 16x32" in capsys.readouterr().out
    ingested = open_ingested(store)
    assert ingested["image"].data.chunks[1:] == ((16, 16, 16), (32, 16))
    stamp = (store / "zarr.json").stat().st_mtime_ns
    assert main(args) == 0  # the same inputs: reused, not rewritten
    assert (store / "zarr.json").stat().st_mtime_ns == stamp


def test_ingest_names_a_missing_input_and_writes_nothing(tmp_path, capsys):
    store = tmp_path / "warps.zarr"
    assert main(["-q", "ingest", str(tmp_path / "nowhere*.fits"), "--output", str(store)]) == 1
    assert "nowhere" in capsys.readouterr().err
    assert not store.exists()


def test_demo_runs_on_a_local_cluster_and_writes_real_outputs(tmp_path, capsys):
    import xarray as xr
    from astropy.io import fits

    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--size", "96", "96", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "demo.json").read_text())
    assert summary["figure"] in printed
    with open(summary["figure"], "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    store = xr.open_zarr(summary["store"])
    assert store["dcr_model"].shape == (3, 96, 96)
    for numbers in summary["holdout"].values():
        assert numbers["dcr_centroid_rms_px"] < numbers["plain_centroid_rms_px"]
    assert len(summary["fits"]) == 4
    with fits.open(summary["fits"][-1]) as hdus:
        assert [h.name for h in hdus[1:4]] == ["IMAGE", "MASK", "VARIANCE"]
        np.testing.assert_allclose(hdus["IMAGE"].data, store["coadd"].values)
