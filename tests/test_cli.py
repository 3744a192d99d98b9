"""The command line: structure, config actions, inspect, and the demo on a real local cluster."""

import json
from pathlib import Path

import numpy as np
import pytest

from dcr_dask import __version__
from dcr_dask.cli import SUBCOMMANDS, main
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.io.fits import read_warp_header
from dcr_dask.io.ingest import open_ingested
from dcr_dask.physics import geometry
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


@pytest.mark.parametrize("override", ["maxNumIter=", "=3", "sigmaClip", "maxNumIter=  "])
def test_run_refuses_a_blank_set_in_one_line_before_any_work(warp_dir, tmp_path, capsys, override):
    output = tmp_path / "out.zarr"
    code = main(["run", str(warp_dir), "--output", str(output), *BAND, "--set", override])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and f"--set {override!r}" in err
    assert list(tmp_path.iterdir()) == []  # no output, no work directory


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


CHANGED = [
    "--preset",
    "many-artifacts",
    "--band",
    "hsc-i2",
    "--set",
    "dcrNumSubfilters=5",
    "--set",
    "badMaskPlanes=NO_DATA,SAT,CR",
    "--set",
    "convergenceMaskPlanes=[]",
    "--set",
    "subregionSize=[300, 200]",
    "--set",
    "maskPropagationThresholds=SAT:0.25,CR:0.5",
    "--set",
    "baseGain=0.4",
    "--set",
    "effectiveWavelength=None",
    "--set",
    "detect.thresholdValue=6.5",
    "--set",
    "modelPsf.maxSize=41",
    "--set",
    "assembleStaticSkyModel.interpImage.modelPsf.defaultFwhm=3.5",
    "--set",
    "shiftMethod=spline",
    "--set",
    "useLocalGeometry=true",
]


@pytest.mark.parametrize("options", [[], CHANGED], ids=["default", "changed"])
@pytest.mark.parametrize("fmt", ["toml", "yaml", "json"])
def test_config_show_reads_back_with_config(tmp_path, capsys, options, fmt):
    """`config show --format F` written to a file and given to --config is the same config."""
    assert main(["config", "show", *options, "--format", fmt]) == 0
    path = tmp_path / f"shown.{fmt}"
    path.write_text(capsys.readouterr().out)
    assert main(["config", "show", *options, "--format", "json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert main(["config", "show", "--config", str(path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    loaded = DcrAssembleCoaddConfig.from_file(path)
    assert loaded.toDict() == expected
    if options:
        assert loaded.band == "hsc-i2" and loaded.subregionSize == [300, 200]
        assert loaded.convergenceMaskPlanes == [] and loaded.effectiveWavelength is None
        assert loaded.maskPropagationThresholds == {"SAT": 0.25, "CR": 0.5}
        assert loaded.maxNumIter == 60 and loaded.baseGain == 0.4
    if fmt == "toml":
        text = path.read_text()
        assert "effectiveWavelength" not in text  # None: left out, read back as the default
        assert 'band = "hsc-i2"' in text or not options


def test_config_show_toml_refuses_none_over_a_default(capsys):
    assert main(["config", "show", "--set", "modelPsf.minSize=None", "--format", "toml"]) == 1
    err = capsys.readouterr().err
    assert "'modelPsf.minSize' = None" in err and "YAML or JSON" in err
    assert main(["config", "show", "--set", "modelPsf.minSize=None", "--format", "yaml"]) == 0


def test_the_readmes_example_config_loads_and_validates(capsys):
    root = Path(__file__).resolve().parents[1]
    example = root / "examples" / "my.toml"
    assert "--config examples/my.toml" in (root / "README.md").read_text()
    config = DcrAssembleCoaddConfig.from_file(example)
    config.validate()
    fresh = DcrAssembleCoaddConfig()
    changed = [key for key in fresh.toDict() if fresh.toDict()[key] != config.toDict()[key]]
    assert {"subregionSize", "maxNumIter", "artifactReference", "detect"} <= set(changed)
    assert main(["config", "validate", "--config", str(example)]) == 0


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
            n_subfilters=DcrAssembleCoaddConfig().dcrNumSubfilters,
        )[:, 0]
        np.testing.assert_allclose(record["shifts_px"], expected, atol=1e-9)
        assert len(record["shifts_px"]) == DcrAssembleCoaddConfig().dcrNumSubfilters == 4
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
    # 128 px, not 96: at 96 px one star is measurable, and whether one star's centroid beats
    # the plain coadd's on one seed is a coin flip for any clamp (benchmarks/README.md)
    assert main(["demo", "--output", str(out), "--size", "128", "128", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "demo.json").read_text())
    assert summary["figure"] in printed
    with open(summary["figure"], "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    store = xr.open_zarr(summary["store"])
    assert store["dcr_model"].shape == (DcrAssembleCoaddConfig().dcrNumSubfilters, 128, 128)
    assert store.attrs["config"]["band"] == "g"  # the demo's config names none: the warps' band
    for numbers in summary["holdout"].values():
        assert numbers["dcr_centroid_rms_px"] < numbers["plain_centroid_rms_px"]
    assert len(summary["fits"]) == DcrAssembleCoaddConfig().dcrNumSubfilters + 1  # and the coadd
    with fits.open(summary["fits"][-1]) as hdus:
        assert [h.name for h in hdus[1:4]] == ["IMAGE", "MASK", "VARIANCE"]
        np.testing.assert_allclose(hdus["IMAGE"].data, store["coadd"].values)


def test_the_reference_preset_is_shown_in_yaml_with_its_unset_iteration_limits(capsys):
    # TOML has no null: the reference's unset limits (None over dcr_dask's 30 and 60) need YAML
    assert main(["config", "show", "--preset", "reference", "--format", "toml"]) == 1
    assert "'maxNumIter' = None" in capsys.readouterr().err
    assert main(["config", "show", "--preset", "reference", "--format", "yaml"]) == 0
    shown = capsys.readouterr().out
    assert "maxNumIter: null" in shown and "minNumIter: null" in shown
