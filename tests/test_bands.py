"""Standard bands: the shipped table against speclite, look-ups, and how a run finds its band
(the config's numbers, its transmission curve, its band name, or the warps' band)."""

import importlib.util
import json
from pathlib import Path

import attrs
import numpy as np
import pytest
import xarray as xr
from conftest import CLI_FAST, cli_spec

from dcr_dask.cli import main
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.errors import ConfigError
from dcr_dask.io.fits import read_warp_header
from dcr_dask.physics import geometry
from dcr_dask.physics.bands import (
    BANDS_DIRECTORY,
    accepted_band_names,
    standard_band,
    standard_bands,
)
from dcr_dask.physics.transmission import Transmission, bandwidth_nm, effective_wavelength_nm
from dcr_dask.running.templates import matched_template
from dcr_dask.settings import band_from_config, config_for_warps
from dcr_dask.simulate import simulate_tile, standard_band_spec, write_simulation

_spec = importlib.util.spec_from_file_location(
    "make_bands", Path(__file__).with_name("data") / "make_bands.py"
)
make_bands = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_bands)


# ------------------------------------------------------------------ the table


def test_table_is_speclites():
    """The shipped files are exactly what tests/data/make_bands.py makes from speclite."""
    built = make_bands.build()
    shipped = {path.name: path.read_text(encoding="utf-8") for path in BANDS_DIRECTORY.iterdir()}
    assert sorted(shipped) == sorted(built)
    for name, text in built.items():
        assert shipped[name] == text, f"{name} differs: run python tests/data/make_bands.py"


def test_numbers_are_the_packages_own_band_averages_of_the_speclite_curves():
    """Effective wavelength and width: transmission.py's definitions on speclite's curves,
    compared with speclite's own curve read independently of the generator's code path."""
    import speclite.filters

    for band in standard_bands().values():
        response = speclite.filters.load_filter(band.speclite)
        curve = Transmission(wavelength_nm=response.wavelength / 10.0, throughput=response.response)
        assert band.effective_wavelength_nm == pytest.approx(
            effective_wavelength_nm(curve), abs=5e-4
        )
        assert band.bandwidth_nm == pytest.approx(bandwidth_nm(curve), abs=5e-4)
        # speclite's own mean wavelength weights by photons (T/λ... ): close to ours
        assert band.effective_wavelength_nm == pytest.approx(
            response.effective_wavelength.to_value("nm"), rel=0.01
        )


def test_shipped_curves_give_the_tables_numbers():
    """The .dat curves, read as a transmissionCurve is, give the table's numbers: exactly
    where speclite's sampling was kept, within the 1-nm sampling's effect where thinned."""
    for band in standard_bands().values():
        curve = band.transmission()
        thinned = "sampled every" in band.curve_path.read_text().splitlines()[1]
        wavelength_tol, width_tol = (0.02, 1.0) if thinned else (5e-4, 5e-4)
        assert effective_wavelength_nm(curve) == pytest.approx(
            band.effective_wavelength_nm, abs=wavelength_tol
        )
        assert bandwidth_nm(curve) == pytest.approx(band.bandwidth_nm, abs=width_tol)
        assert curve.wavelength_nm[0] < band.effective_wavelength_nm < curve.wavelength_nm[-1]


def test_the_bands_the_table_covers():
    names = set(standard_bands())
    assert {f"lsst-{b}" for b in "ugrizy"} <= names
    assert {f"hsc-{b}" for b in ("g", "r", "i", "z", "y", "r2", "i2")} <= names
    assert {f"decam-{b}" for b in "grizY"} <= names
    index = json.loads((BANDS_DIRECTORY / "bands.json").read_text())
    assert index["source"].startswith("speclite ")
    for name, band in standard_bands().items():
        assert band.curve_path.is_file(), name
        # every band lies where the refraction formula is valid: a config naming it validates
        DcrAssembleCoaddConfig(band=name).validate()


def test_lookup_by_name_and_alias():
    assert standard_band("r") is standard_band("lsst-r")
    assert standard_band("HSC-I2") is standard_band("hsc-i2")
    assert standard_band("decam-Y").speclite == "decam2014-Y"
    assert len(set(accepted_band_names())) == len(accepted_band_names())
    for wrong in ("decam-y", "Y", "R", "N708"):
        with pytest.raises(ValueError, match=r"is not a standard band.*lsst-u \(u\).*decam-Y"):
            standard_band(wrong)


# ------------------------------------------------- where a run's band comes from


def test_explicit_numbers_win_over_a_band():
    config = DcrAssembleCoaddConfig(band="r", effectiveWavelength=600.0)
    band = band_from_config(config)
    assert band.effective_wavelength_nm == 600.0
    assert band.bandwidth_nm == standard_band("r").bandwidth_nm
    assert band.transmission is None
    config.bandwidth = 100.0
    assert band_from_config(config).bandwidth_nm == 100.0


def test_a_band_and_its_curve_as_transmission_curve_agree():
    for name in ("lsst-g", "hsc-i2", "decam-Y"):
        named = band_from_config(DcrAssembleCoaddConfig(band=name))
        curve = band_from_config(
            DcrAssembleCoaddConfig(transmissionCurve=str(standard_band(name).curve_path))
        )
        thinned = name.startswith("lsst")
        assert named.effective_wavelength_nm == pytest.approx(
            curve.effective_wavelength_nm, abs=0.02 if thinned else 5e-4
        )
        assert named.bandwidth_nm == pytest.approx(curve.bandwidth_nm, abs=1.0 if thinned else 5e-4)


def test_throughput_mode_weights_by_the_bands_curve(r_band_tile):
    config = DcrAssembleCoaddConfig(band="g", subbandShiftMode="throughput")
    band = band_from_config(config)
    curve = standard_band("g").transmission()
    np.testing.assert_array_equal(band.transmission.throughput, curve.throughput)
    visit, layout = read_warp_header(sorted((r_band_tile / "warps").glob("*.fits"))[-1])
    common = {
        "effective_wavelength_nm": band.effective_wavelength_nm,
        "bandwidth_nm": band.bandwidth_nm,
        "n_subfilters": 3,
        "split": False,
    }
    weighted = geometry.subband_shifts_px(
        visit, layout.wcs, 16, 16, mode="throughput", transmission=band.transmission, **common
    )
    edges = geometry.subband_shifts_px(visit, layout.wcs, 16, 16, mode="edges", **common)
    assert np.abs(weighted - edges).max() > 1e-3  # the curve is not flat: it moves the shifts
    without = DcrAssembleCoaddConfig(effectiveWavelength=480.0, bandwidth=140.0)
    without.subbandShiftMode = "throughput"
    with pytest.raises(ConfigError, match="needs a throughput curve"):
        band_from_config(without)


def test_nothing_gives_the_band():
    with pytest.raises(ConfigError, match="'effectiveWavelength' = None: set it"):
        band_from_config(DcrAssembleCoaddConfig())


@pytest.fixture(scope="module")
def r_band_tile(tmp_path_factory):
    """A small tile simulated in Rubin's r band; its warps say BAND = 'r'."""
    spec = cli_spec()
    standard = standard_band("r")
    spec = attrs.evolve(
        spec,
        band="r",
        effective_wavelength_nm=standard.effective_wavelength_nm,
        bandwidth_nm=standard.bandwidth_nm,
    )
    directory = tmp_path_factory.mktemp("r-band")
    write_simulation(simulate_tile(spec), directory)
    return directory


def _visits(directory):
    return [read_warp_header(p)[0] for p in sorted((directory / "warps").glob("*.fits"))]


def test_config_for_warps_takes_the_warps_band_only_when_needed(r_band_tile):
    visits = _visits(r_band_tile)
    assert {v.band for v in visits} == {"r"}
    config = DcrAssembleCoaddConfig()
    resolved = config_for_warps(config, visits)
    assert resolved.band == "r" and config.band is None  # a copy; the caller's is unchanged
    band = band_from_config(resolved)
    assert band.effective_wavelength_nm == standard_band("lsst-r").effective_wavelength_nm
    for given in (
        DcrAssembleCoaddConfig(band="hsc-r2"),
        DcrAssembleCoaddConfig(effectiveWavelength=600.0, bandwidth=100.0),
        DcrAssembleCoaddConfig(transmissionCurve=str(standard_band("g").curve_path)),
    ):
        assert config_for_warps(given, visits) is given
    # numbers given, but the throughput curve is missing: the warps' band gives it
    partial = DcrAssembleCoaddConfig(effectiveWavelength=600.0, bandwidth=100.0)
    partial.subbandShiftMode = "throughput"
    assert config_for_warps(partial, visits).band == "r"


def test_an_unknown_warp_band_is_an_error_naming_file_and_keyword(r_band_tile):
    visits = [attrs.evolve(v, band="N708") for v in _visits(r_band_tile)]
    with pytest.raises(ConfigError) as caught:
        config_for_warps(DcrAssembleCoaddConfig(), visits)
    message = str(caught.value)
    assert "'N708'" in message and visits[0].filename in message
    assert visits[0].band_source in message and "lsst-r (r)" in message
    # explicit numbers need no band: the unknown one is not looked up
    explicit = DcrAssembleCoaddConfig(effectiveWavelength=700.0, bandwidth=50.0)
    assert config_for_warps(explicit, visits) is explicit


# ----------------------------------------------------------------- command line


def test_inspect_takes_the_warps_band_and_band_option_overrides(r_band_tile, capsys):
    assert main(["inspect", str(r_band_tile / "warps"), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    r = standard_band("r")
    expected = geometry.subfilter_edges_nm(
        r.effective_wavelength_nm, r.bandwidth_nm, DcrAssembleCoaddConfig().dcrNumSubfilters
    )
    np.testing.assert_allclose(records[0]["subband_edges_nm"], expected)
    assert main(["inspect", str(r_band_tile / "warps"), "--json", "--band", "hsc-i"]) == 0
    records = json.loads(capsys.readouterr().out)
    i = standard_band("hsc-i")
    expected = geometry.subfilter_edges_nm(i.effective_wavelength_nm, i.bandwidth_nm, 4)
    np.testing.assert_allclose(records[0]["subband_edges_nm"], expected)
    explicit = ["--band", "hsc-i", "--set", "effectiveWavelength=700", "--set", "bandwidth=60"]
    assert main(["inspect", str(r_band_tile / "warps"), "--json", *explicit]) == 0
    records = json.loads(capsys.readouterr().out)
    # 60 nm in four sub-bands
    np.testing.assert_allclose(records[0]["subband_edges_nm"][0], [670.0, 685.0])


def test_band_option_refuses_an_unknown_band(r_band_tile, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["inspect", str(r_band_tile / "warps"), "--band", "decam-y"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "argument --band: 'decam-y' is not a standard band" in err and "decam-Y" in err
    assert main(["config", "show", "--band", "HSC-R2", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["band"] == "HSC-R2"


def test_simulate_band_option_writes_the_band_the_run_finds(tmp_path):
    spec = standard_band_spec("hsc-z", shape=(32, 32))
    assert spec.band == "hsc-z"
    assert spec.effective_wavelength_nm == standard_band("hsc-z").effective_wavelength_nm
    assert spec.airmasses == standard_band_spec("r").airmasses  # red: the r tile's visits
    assert main(["-q", "simulate", str(tmp_path / "sim"), "--size", "32", "32", "--band", "z"]) == 0
    visits = _visits(tmp_path / "sim")
    assert {v.band for v in visits} == {"z"}
    assert band_from_config(config_for_warps(DcrAssembleCoaddConfig(), visits)).bandwidth_nm == (
        standard_band("lsst-z").bandwidth_nm
    )


@pytest.mark.slow
def test_run_records_the_warps_band_and_templates_use_it(r_band_tile, tmp_path, capsys):
    output = tmp_path / "coadd.zarr"
    argv = ["-q", "run", str(r_band_tile / "warps"), "--output", str(output), "--workers", "1"]
    assert main([*argv, *CLI_FAST]) == 0
    store = xr.open_zarr(output)
    assert store.attrs["config"]["band"] == "r"
    assert store.attrs["config"]["effectiveWavelength"] is None
    r = standard_band("r")
    edges = geometry.subfilter_edges_nm(
        r.effective_wavelength_nm, r.bandwidth_nm, DcrAssembleCoaddConfig().dcrNumSubfilters
    )
    np.testing.assert_allclose(store["wavelength_min"].values, edges[:, 0], rtol=1e-6)
    np.testing.assert_allclose(store["wavelength_max"].values, edges[:, 1], rtol=1e-6)
    # the template made from the store alone uses the same band as an explicit one
    visit = _visits(r_band_tile)[0]
    explicit = DcrAssembleCoaddConfig(
        effectiveWavelength=r.effective_wavelength_nm, bandwidth=r.bandwidth_nm
    )
    explicit.update(subregionSize=[96, 96], maxNumIter=3)
    np.testing.assert_array_equal(
        matched_template(store, visit).values,
        matched_template(store, visit, config=explicit).values,
    )
    # a warp band that is not in the table: refused before anything is written
    bad = tmp_path / "bad"
    write_simulation(simulate_tile(attrs.evolve(cli_spec(), shape=(32, 32), band="N708")), bad)
    capsys.readouterr()
    refused = tmp_path / "refused.zarr"
    assert main(["-q", "run", str(bad / "warps"), "--output", str(refused)]) == 1
    err = capsys.readouterr().err
    assert "'N708'" in err and "is not a standard band" in err
    assert not refused.exists() and not (tmp_path / "refused.zarr.work").exists()
