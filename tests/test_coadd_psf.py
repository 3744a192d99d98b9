"""The coadd's PSF: the visits' PSFs combined with the run's weights, or measured on the
coadd (``doCalculatePsf``), in the output store and the FITS exports.

The truth is the simulator's PSFs rendered here from their parameters (each visit's
seeing, Moffat index and the chromatic seeing law, averaged over the band for a flat
spectrum), not the stamps the simulator writes: the same weighted combination of the
true PSFs, its FWHM measured with the same definition (:func:`dcr_dask.kernels.psf.psf_fwhm_px`).
"""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest
from astropy.io import fits
from distributed import Client, LocalCluster

import dcr_dask
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.errors import ConfigError, InapplicableFieldWarning
from dcr_dask.graph.coadd_psf import (
    coadd_psf_from_inputs,
    combine_psfs,
    measure_coadd_psf,
)
from dcr_dask.graph.psf_matching import visit_psf_stamps
from dcr_dask.io.export import export_fits
from dcr_dask.io.store import open_output
from dcr_dask.io.warps import open_warps
from dcr_dask.kernels.psf import psf_fwhm_px, psf_minor_variance, round_psf
from dcr_dask.kernels.psf_stars import moffat_image
from dcr_dask.running.pipeline import metadata_path
from dcr_dask.settings import psf_measurement
from dcr_dask.simulate import SimulationSpec, simulate_tile, write_simulation

#: Moffat PSFs of 3-5 px with chromatic seeing; bright, sparse stars so that the coadd
#: has isolated ones to measure.
SPEC = SimulationSpec(
    shape=(112, 112),
    airmasses=(1.05, 1.4, 1.9),
    psf_profile="moffat",
    seeing_fwhm_px=(3.0, 5.0),
    seeing_wavelength_exponent=-0.2,
    n_stars=12,
    n_galaxies=0,
    star_flux_range=(3e4, 3e5),
    psf_stamp_size=41,
    seed=5,
)


@pytest.fixture(scope="module")
def simulation(tmp_path_factory):
    tile = simulate_tile(SPEC)
    paths = write_simulation(tile, tmp_path_factory.mktemp("sim"))
    return tile, paths


@pytest.fixture(scope="module")
def warps(simulation):
    return open_warps(simulation[1]["warps"], chunks=(56, 56), need_psf=True)


def true_psf(tile, weights, size=81) -> np.ndarray:
    """The weighted mean of the visits' true PSFs, each of unit flux, on a wide stamp."""
    spec = tile.spec
    wavelengths = np.linspace(-0.5, 0.5, 41) * spec.bandwidth_nm + spec.effective_wavelength_nm
    chromatic = (wavelengths / spec.effective_wavelength_nm) ** spec.seeing_wavelength_exponent
    weights = np.asarray(weights, dtype=float) / np.sum(weights)
    total = np.zeros((size, size))
    for weight, seeing, beta in zip(weights, tile.seeing_fwhm_px, tile.psf_beta, strict=True):
        for factor in chromatic:
            image = moffat_image((size, size), (size // 2, size // 2), seeing * factor, beta)
            total += weight * image / image.sum() / chromatic.size
    return total


def test_combine_psfs_is_the_weighted_mean_of_unit_sum_stamps():
    rng = np.random.default_rng(1)
    small, large = rng.uniform(0.1, 1.0, (5, 5)), rng.uniform(0.1, 1.0, (9, 9))
    combined = combine_psfs([3.0 * small, large], [1.0, 3.0])
    expected = 0.75 * large / large.sum()
    expected[2:7, 2:7] += 0.25 * small / small.sum()
    np.testing.assert_allclose(combined, expected, rtol=1e-12)
    assert combined.sum() == pytest.approx(1.0)
    other = combine_psfs([small, large], [3.0, 1.0])
    assert not np.allclose(other, combined)  # the weights matter
    with pytest.raises(ValueError, match="not all 0"):
        combine_psfs([small, large], [0.0, 0.0])
    with pytest.raises(ValueError, match="square and odd"):
        combine_psfs([np.ones((4, 4))], [1.0])


def test_the_coadd_psf_fwhm_is_within_5_percent_of_the_truth(simulation, warps):
    tile, _ = simulation
    assert np.ptp(tile.seeing_fwhm_px) > 1.0  # visits of clearly different seeing
    for weights in ([1.0, 1.0, 1.0], [1.0, 0.2, 5.0], [0.2, 5.0, 1.0]):
        psf = coadd_psf_from_inputs(warps, weights)
        truth = psf_fwhm_px(true_psf(tile, weights))
        assert psf.method == "inputs"
        assert psf.fwhm_px == pytest.approx(truth, rel=0.05), (weights, psf.fwhm_px, truth)
        assert psf.image.sum() == pytest.approx(1.0)
    sharp = coadd_psf_from_inputs(warps, [1.0, 0.05, 1.0])  # visit 1001 has the widest PSF
    wide = coadd_psf_from_inputs(warps, [0.05, 1.0, 0.05])
    assert wide.fwhm_px > 1.1 * sharp.fwhm_px


def test_at_the_models_width_only_the_sharper_visits_enter_widened_to_it(warps, caplog):
    stamps = visit_psf_stamps(warps)
    variance = np.array([psf_minor_variance(stamp) for stamp in stamps])
    order = np.argsort(variance)
    visits = [int(v) for v in warps["visit"].values]
    weights = [1.0, 2.0, 3.0]

    # the model at the middle visit's width: the sharpest is widened to it, the widest left out
    model = float(variance[order[1]])
    psf = coadd_psf_from_inputs(warps, weights, model_variance=model)
    assert psf.method == "model"
    assert psf.record["visits"] == sorted(visits[k] for k in order[:2])
    widened = dict(zip(psf.record["visits"], psf.record["widened_px2"], strict=True))
    assert widened[visits[order[1]]] == 0.0
    assert widened[visits[order[0]]] == pytest.approx(model - variance[order[0]])
    assert psf.record["model_psf_variance_px2"] == model
    # its width across DCR is the model's, within the Gaussian approximation of the widening
    assert psf_minor_variance(psf.image) == pytest.approx(model, rel=0.05)
    everyone = coadd_psf_from_inputs(warps, weights)
    assert psf.fwhm_px < everyone.fwhm_px  # not the mean of all visits, which is wider
    assert psf.image.sum() == pytest.approx(1.0)

    # at the sharpest width: that visit alone, as it is
    sharpest = coadd_psf_from_inputs(warps, weights, model_variance=float(variance[order[0]]))
    assert sharpest.record["visits"] == [visits[order[0]]]
    assert sharpest.record["widened_px2"] == [0.0]
    np.testing.assert_allclose(sharpest.image, combine_psfs([stamps[order[0]]], [1.0]))

    # the visits at the model's width rejected: the sharpest one left, with a warning
    left = [visits[k] for k in order[:2]]
    with caplog.at_level(logging.WARNING, logger="dcr_dask.graph.coadd_psf"):
        fallback = coadd_psf_from_inputs(warps, weights, rejected=left, model_variance=model)
    assert "no visit of the coadd is at or below the model's PSF width" in caplog.text
    assert fallback.record["visits"] == [visits[order[2]]]
    assert fallback.record["widened_px2"] == [0.0]


def test_rejected_zero_weight_and_off_centre_visits_are_left_out(warps):
    stamps = visit_psf_stamps(warps)
    visits = [int(v) for v in warps["visit"].values]
    both = combine_psfs([stamps[1], stamps[2]], [2.0, 3.0])

    rejected = coadd_psf_from_inputs(warps, [1.0, 2.0, 3.0], rejected=[visits[0]])
    np.testing.assert_allclose(rejected.image, both, rtol=1e-12)
    assert rejected.record["visits"] == visits[1:]
    assert rejected.record["weights"] == pytest.approx([0.4, 0.6])

    zero = coadd_psf_from_inputs(warps, [0.0, 2.0, 3.0])
    np.testing.assert_allclose(zero.image, both, rtol=1e-12)

    off = coadd_psf_from_inputs(warps, [1.0, 2.0, 3.0], covers_centre=[False, True, True])
    np.testing.assert_allclose(off.image, both, rtol=1e-12)
    assert off.record["covering_centre"] is True

    nowhere = coadd_psf_from_inputs(warps, [1.0, 2.0, 3.0], covers_centre=[False] * 3)
    assert nowhere.record["covering_centre"] is False
    assert nowhere.record["visits"] == visits

    with pytest.raises(ValueError, match="no visit enters"):
        coadd_psf_from_inputs(warps, [1.0, 2.0, 3.0], rejected=visits)


def _star_field(fwhm: float, beta: float, seed: int = 2):
    """Noisy isolated Moffat stars on a 200² image (sigma 5) and its variance."""
    rng = np.random.default_rng(seed)
    shape = (200, 200)
    image = np.zeros(shape)
    fluxes = np.geomspace(2e4, 4e5, 16)
    for k, (y, x) in enumerate((y, x) for y in range(25, 200, 50) for x in range(25, 200, 50)):
        centre = (y + rng.uniform(-0.5, 0.5), x + rng.uniform(-0.5, 0.5))
        star = moffat_image(shape, centre, fwhm, beta)
        image += fluxes[k] * star / star.sum()
    variance = np.full(shape, 25.0)
    return image + rng.normal(0.0, 5.0, shape), variance


def _measure(image, variance, config):
    bad = np.zeros(image.shape, dtype=bool)
    return measure_coadd_psf(image, variance, bad, psf_measurement(config), centre_yx=(99.5, 99.5))


def test_the_measured_psf_follows_the_stars_and_the_fields():
    image, variance = _star_field(fwhm=4.0, beta=3.0)
    config = DcrAssembleCoaddConfig(doCalculatePsf=True)
    measured = _measure(image, variance, config)
    assert measured.method == "measured"
    assert measured.record["stars_fwhm_px"] == pytest.approx(4.0, rel=0.03)
    assert measured.record["stars_beta"] == pytest.approx(3.0, rel=0.15)
    truth = psf_fwhm_px(moffat_image((27, 27), (13, 13), 4.0, 3.0))
    assert measured.fwhm_px == pytest.approx(truth, rel=0.03)
    assert measured.image.shape == (27, 27) and measured.image.sum() == pytest.approx(1.0)
    n_default = measured.record["n_stars"]
    assert n_default >= 8

    def changed(field, value):
        other = DcrAssembleCoaddConfig(doCalculatePsf=True)
        owner, name = field.split(".")
        setattr(getattr(other, owner), name, value)
        other.validate()
        return _measure(image, variance, other)

    assert changed("measurePsf.kernelSize", 33).image.shape == (33, 33)
    reserved = changed("measurePsf.reserveFraction", 0.3)
    assert reserved.record["n_reserved"] >= 3
    assert reserved.record["n_stars"] == n_default - reserved.record["n_reserved"]
    assert reserved.record["reserved_fwhm_px"] == pytest.approx(4.0, rel=0.05)
    # fewer stars pass stricter detections; too strict ones leave too few to measure
    assert changed("detectPsfSources.thresholdValue", 400.0).record["n_stars"] < n_default
    assert isinstance(changed("detectPsfSources.thresholdValue", 1e4), str)
    assert changed("detectPsfSources.minPixels", 120).record["n_stars"] < n_default
    assert changed("detectPsfSources.includeThresholdMultiplier", 8.0).record["n_stars"] < (
        n_default
    )
    # 'value': the threshold in the image's unit; 2000 is 400 sigma here
    assert changed("detectPsfSources.thresholdType", "value").record["n_stars"] == n_default
    by_value = DcrAssembleCoaddConfig(doCalculatePsf=True)
    by_value.detectPsfSources.thresholdType = "value"
    by_value.detectPsfSources.thresholdValue = 2000.0
    assert _measure(image, variance, by_value).record["n_stars"] < n_default


def test_psf_measurement_fields_warn_unless_do_calculate_psf():
    config = DcrAssembleCoaddConfig(effectiveWavelength=478.0, bandwidth=147.0)
    config.detectPsfSources.thresholdValue = 20.0
    config.measurePsf.kernelSize = 31
    with pytest.warns(InapplicableFieldWarning) as caught:
        config.validate()
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert messages[0].startswith("detectPsfSources.thresholdValue=20.0 has no effect")
    assert messages[1].startswith("measurePsf.kernelSize=31 has no effect")
    assert all("doCalculatePsf=True" in m for m in messages)
    config.doCalculatePsf = True
    with warnings.catch_warnings():
        warnings.simplefilter("error", InapplicableFieldWarning)
        config.validate()
    config.detectPsfSources.thresholdType = "stdev"
    with pytest.raises(ConfigError, match=r"'detectPsfSources\.thresholdType'.*pixel_stdev"):
        config.validate()
    config.doCalculatePsf = False  # not measured: a warning, not an error
    with pytest.warns(InapplicableFieldWarning, match="detectPsfSources.thresholdType"):
        config.validate()


@pytest.mark.slow
def test_a_run_stores_and_exports_the_coadd_psf_measured_with_do_calculate_psf(
    simulation, warps, tmp_path
):
    tile, paths = simulation
    # the default fit: the coadd of an unconverged model (e.g. three iterations) is wider than
    # the inputs' PSF by about 7 %, so the measurement is only checked on a converged one
    config = DcrAssembleCoaddConfig(effectiveWavelength=478.0, bandwidth=147.0, doCalculatePsf=True)
    output = tmp_path / "coadd.zarr"
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        dcr_dask.run(config, paths["warps"], output=output, client=client)
        files = export_fits(output, tmp_path / "fits", client=client)
    store = open_output(output)
    psf = store["psf"]
    assert psf.dims == ("psf_y", "psf_x") and psf.dtype == np.float32
    assert psf.shape == (27, 27)  # measurePsf.kernelSize
    assert float(psf.sum()) == pytest.approx(1.0, abs=1e-5)
    assert psf.attrs["method"] == "measured"
    record = store.attrs["coadd_psf"]
    assert record["method"] == "measured" and record["n_stars"] >= 3
    assert record["fwhm_px"] == pytest.approx(psf_fwhm_px(psf.values), rel=1e-6)

    weights = [r["weight"] for r in store.attrs["inputs"]]
    # psfForwardModel="gaussian" (the default): the model, so the coadd, is at the k-th
    # sharpest visit's width, k = ceil(0.2 x 3) = 1: the sharpest visit's PSF, not the mean
    model_variance = store.attrs["model_psf_variance_px2"]
    sharpest = int(np.argmin(tile.seeing_fwhm_px))
    at_model = [w if k == sharpest else 0.0 for k, w in enumerate(weights)]
    truth = psf_fwhm_px(true_psf(tile, at_model))
    mean = psf_fwhm_px(true_psf(tile, weights))
    assert truth < 0.92 * mean  # the two truths are 10 % apart on this tile: 5 % tells them apart
    assert record["fwhm_px"] == pytest.approx(truth, rel=0.05), (record, truth, mean)
    # the combination of the inputs, made by the same run with the weights it recorded
    combined = coadd_psf_from_inputs(warps, weights, model_variance=model_variance)
    assert combined.method == "model"
    assert combined.record["visits"] == [int(warps["visit"].values[sharpest])]
    assert record["inputs_fwhm_px"] == pytest.approx(combined.fwhm_px, rel=1e-9)
    assert record["inputs_fwhm_px"] == pytest.approx(truth, rel=0.05)
    assert psf.shape != combined.image.shape  # doCalculatePsf acts: not the combination

    saved = json.loads(metadata_path(output).read_text())
    assert saved["coadd_psf"]["method"] == "measured"
    assert store.attrs["metadata"]["coadd_psf"]["fwhm_px"] == record["fwhm_px"]

    assert len(files) == 5  # four sub-bands and the coadd
    for path in files:
        with fits.open(path) as hdul:
            assert [h.name for h in hdul] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE", "PSF"]
            np.testing.assert_array_equal(hdul["PSF"].data, psf.values)
            assert hdul["PSF"].header["PSFMETH"] == "measured"
            assert hdul["PSF"].header["PSFFWHM"] == pytest.approx(record["fwhm_px"])


def test_round_psf_keeps_the_profile_across_dcr_and_removes_the_smear():
    # an elliptical Moffat stretched 1.8 times along 30 degrees and off centre by (0.6, -0.4)
    size, angle, stretch, centre = 41, np.radians(30.0), 1.8, (20.6, 19.6)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    dy, dx = yy - centre[0], xx - centre[1]
    along = dy * np.sin(angle) + dx * np.cos(angle)
    across = dy * np.cos(angle) - dx * np.sin(angle)
    radius2 = (along / stretch) ** 2 + across**2
    alpha, beta = 3.5, 3.0  # FWHM 3.6 px across, 6.4 px along
    stamp = 5.0 * (1.0 + radius2 / alpha**2) ** -beta
    round_ = round_psf(stamp)
    assert round_.shape == stamp.shape and round_.sum() == pytest.approx(1.0)
    # round: the same variance along every axis, the stamp's width across DCR
    minor = psf_minor_variance(stamp)
    assert psf_minor_variance(round_) == pytest.approx(minor, rel=0.02)
    assert psf_fwhm_px(round_) < 0.8 * psf_fwhm_px(stamp)
    # the unstretched profile, centred: what a coadd without the smear would show
    offsets = np.arange(size) - size // 2
    truth = (1.0 + (offsets[:, None] ** 2 + offsets[None, :] ** 2) / alpha**2) ** -beta
    truth /= truth.sum()
    assert np.abs(round_ - truth).max() < 0.02 * truth.max()
    # a round, centred stamp is left as it is
    np.testing.assert_allclose(round_psf(truth), truth, atol=1e-6 * truth.max())
