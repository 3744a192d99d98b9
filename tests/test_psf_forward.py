"""psfForwardModel="gaussian": each visit's template widened from the model's PSF to its own.

The kernels blur each visit's forward model by a Gaussian of its own variance and
back-project residuals through the same Gaussian (its adjoint); the fit then
recovers a sky whose visits have different seeing, which one PSF for all visits
cannot. The run records the model's PSF, and templates of other visits are
widened to theirs.
"""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import attrs
import numpy as np
import pytest
from scipy import ndimage

import dcr_dask
from dcr_dask.config import PRESETS, DcrAssembleCoaddConfig
from dcr_dask.graph import halos
from dcr_dask.graph.psf_matching import gaussian_stamp
from dcr_dask.io.warps import open_warps
from dcr_dask.kernels import model as kernels
from dcr_dask.kernels.psf import (
    FWHM_PER_SIGMA,
    gaussian_psf_image,
    psf_fwhm_px,
    psf_minor_variance,
)
from dcr_dask.kernels.shift import SpectralGrid, gaussian_transfer
from dcr_dask.running import pipeline
from dcr_dask.running.templates import matched_template, template_psf_blur
from dcr_dask.settings import fit_settings
from dcr_dask.simulate import default_demo_spec, simulate_tile, write_simulation

N = 64
BLUR = np.array([0.0, 1.0, 2.5, 4.0])


def _smooth_planes(seed: int, n_subfilters: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    planes = rng.normal(size=(n_subfilters, N, N))
    return np.stack([ndimage.gaussian_filter(p, 2.0) for p in planes])


def _shifts(seed: int, n_visits: int = 4, n_subfilters: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(scale=1.5, size=(n_visits, n_subfilters, 1, 2))


def test_gaussian_transfer_is_the_transform_of_the_gaussian() -> None:
    f = np.fft.fftfreq(32)
    out = gaussian_transfer(f, np.array([0.0, 2.0]))
    assert out.shape == (2, 32)
    np.testing.assert_array_equal(out[0], 1.0)
    np.testing.assert_allclose(out[1], np.exp(-2 * np.pi**2 * 2.0 * f**2))
    # the transform of a sampled, normalised Gaussian of sigma sqrt(2) on a periodic line
    x = np.minimum(np.arange(32), 32 - np.arange(32))
    kernel = np.exp(-0.5 * x**2 / 2.0)
    np.testing.assert_allclose(np.fft.fft(kernel / kernel.sum()).real, out[1], atol=1e-4)
    with pytest.raises(ValueError, match="variances"):
        gaussian_transfer(f, np.array([-1.0]))


@pytest.mark.parametrize("method", ["fourier", "sinc", "spline"])
def test_forward_model_is_the_unblurred_template_convolved_with_each_visits_gaussian(
    method: str,
) -> None:
    planes, shifts = _smooth_planes(1), _shifts(2)
    plain = kernels.forward_models(
        planes, shifts, accelerate=1.0, method=method, order=3, precision="double"
    )
    blurred = kernels.forward_models(
        planes, shifts, accelerate=1.0, method=method, order=3, precision="double", psf_blur=BLUR
    )
    mode = "constant" if method == "spline" else "wrap"
    for v, variance in enumerate(BLUR):
        expected = ndimage.gaussian_filter(plain[v], math.sqrt(variance), mode=mode, truncate=6)
        # the sampled Gaussian differs from the continuous one by ~1e-4 of the peak
        core = (slice(12, -12), slice(12, -12))
        assert np.abs(blurred[v] - expected)[core].max() < 2e-4 * np.abs(plain).max()
    np.testing.assert_allclose(blurred[0], plain[0], atol=1e-12)
    single = kernels.forward_model(
        planes, shifts[2], accelerate=1.0, method=method, order=3, psf_blur=float(BLUR[2])
    )
    np.testing.assert_allclose(single, blurred[2], atol=1e-5 * np.abs(plain).max())


@pytest.mark.parametrize("method", ["fourier", "sinc"])
def test_back_projection_is_the_adjoint_of_the_blurred_forward_model(method: str) -> None:
    planes, shifts = _smooth_planes(3), _shifts(4)
    residuals = np.random.default_rng(5).normal(size=(4, N, N))
    forward = kernels.forward_models(
        planes, shifts, accelerate=1.0, method=method, order=3, precision="double", psf_blur=BLUR
    )
    back = kernels.back_project(
        residuals,
        shifts[:, :, 0, :],
        np.ones_like(planes),
        method=method,
        order=3,
        precision="double",
        psf_blur=BLUR,
        precondition=False,
    )
    assert (forward * residuals).sum() == pytest.approx((planes * back).sum(), rel=1e-10)


def test_the_preconditioner_steps_each_frequency_by_the_visits_share_of_it() -> None:
    """Preconditioned, the update of each frequency is divided by the visits' share of it
    (at most by PRECONDITION_FLOOR); the zero frequency, the flux, is left alone."""
    residuals = np.random.default_rng(6).normal(size=(4, N, N))
    unsplit = _shifts(4)[:, :, 0, :]
    kwargs = dict(method="sinc", order=3, precision="double", psf_blur=BLUR)
    plain = kernels.back_project(
        residuals, unsplit, np.ones((3, N, N)), **kwargs, precondition=False
    )
    stepped = kernels.back_project(residuals, unsplit, np.ones((3, N, N)), **kwargs)
    f = np.fft.fftfreq(N)
    g2 = np.exp(-4 * np.pi**2 * BLUR[:, None, None] * (f[:, None] ** 2 + f[None, :] ** 2))
    share = g2.mean(axis=0)
    expected = np.fft.ifft2(np.fft.fft2(plain) / np.maximum(share, kernels.PRECONDITION_FLOOR)).real
    np.testing.assert_allclose(stepped, expected, atol=1e-9 * np.abs(plain).max())
    assert stepped.sum() == pytest.approx(plain.sum(), rel=1e-9)


def test_factor_sets_fold_the_blur_into_the_separable_factors() -> None:
    grid = SpectralGrid((30, 40), "double")
    points = [np.array([[0.3, -1.2]]), np.array([[1.0, 0.5], [1.5, 0.5]])]
    plain = grid.factor_sets(points, "fourier", [1.0, 0.5])
    blurred = grid.factor_sets(points, "fourier", [1.0, 0.5], [0.0, 3.0])
    np.testing.assert_array_equal(blurred[0][0], plain[0][0])
    gy = gaussian_transfer(np.fft.fftfreq(grid.fft_shape[0]), np.array([3.0]))[0]
    gx = gaussian_transfer(np.fft.rfftfreq(grid.fft_shape[1]), np.array([3.0]))[0]
    np.testing.assert_allclose(blurred[1][0], plain[1][0] * gy, rtol=1e-12)
    np.testing.assert_allclose(blurred[1][1], plain[1][1] * gx, rtol=1e-12)
    with pytest.raises(ValueError, match="blurs"):
        grid.factor_sets(points, "fourier", [1.0, 1.0], [0.0])


@pytest.mark.parametrize(
    "blur", [np.array([0.0, 1.0]), np.array([0.0, -1.0, 1.0, 2.0]), np.array([0, np.nan, 1, 2])]
)
def test_a_blur_that_is_not_one_variance_per_visit_is_refused(blur: np.ndarray) -> None:
    with pytest.raises(ValueError, match="psf_blur"):
        kernels.forward_models(
            _smooth_planes(1), _shifts(2), accelerate=1.0, method="sinc", order=3, psf_blur=blur
        )


def _fit(images, good, shifts, blur, iterations):
    n_subfilters = shifts.shape[1]
    unsplit = shifts[:, :, 0, :]
    inverse_weight, _ = kernels.subband_weights(good, unsplit, method="sinc", order=3)
    model = np.repeat(images.mean(axis=0)[None] / n_subfilters, n_subfilters, axis=0)
    for _ in range(iterations):
        model = kernels.iterate_block(
            model,
            images,
            good,
            shifts,
            unsplit,
            inverse_weight,
            gain=1.0,
            accelerate=1.0,
            method="sinc",
            order=3,
            regularize_iterations=0.0,
            regularize_frequency=0.0,
            regularization_width=2,
            precision="double",
            psf_blur=blur,
        )
    return model


def test_the_fit_recovers_a_sky_seen_in_different_seeing_only_with_the_blur() -> None:
    """Visits of a coloured sky, each in its own seeing: with each visit's blur the fit's
    templates reproduce them; with one PSF for all they cannot."""
    rng = np.random.default_rng(7)
    n_visits, n_subfilters = 8, 3
    truth = np.zeros((n_subfilters, N, N))
    for _ in range(12):
        y, x = rng.integers(16, N - 16, size=2)
        colour = rng.dirichlet(np.ones(n_subfilters)) * rng.uniform(50, 200)
        truth[:, y, x] += colour
    truth = np.stack([ndimage.gaussian_filter(p, 1.2) for p in truth])
    direction = rng.normal(size=(n_visits, 2))
    direction /= np.linalg.norm(direction, axis=1)[:, None]
    span = rng.uniform(0.3, 2.0, size=n_visits)
    offsets = np.linspace(-0.5, 0.5, n_subfilters)
    shifts = (span[:, None, None] * offsets[None, :, None] * direction[:, None, :])[:, :, None, :]
    blur = rng.uniform(0.0, 3.0, size=n_visits)
    blur[0] = 0.0
    images = kernels.forward_models(
        truth, shifts, accelerate=1.0, method="sinc", order=3, precision="double", psf_blur=blur
    )
    good = np.ones(images.shape, dtype=bool)
    core = (slice(None), slice(12, -12), slice(12, -12))

    def misfit(model, model_blur):
        templates = kernels.forward_models(
            model, shifts, accelerate=1.0, method="sinc", order=3, psf_blur=model_blur
        )
        return float(np.sqrt(((templates - images)[core] ** 2).mean()))

    with_blur = misfit(_fit(images, good, shifts, blur, 30), blur)
    without = misfit(_fit(images, good, shifts, None, 30), None)
    scale = float(np.sqrt((images[core] ** 2).mean()))
    assert with_blur < 0.05 * scale, (with_blur, scale)
    assert with_blur < 0.25 * without, (with_blur, without)


def test_the_fit_halo_grows_by_twice_the_blur_reach() -> None:
    settings = fit_settings(DcrAssembleCoaddConfig(effectiveWavelength=478.0, bandwidth=147.0))
    assert halos.psf_blur_reach(0.0) == 0
    assert halos.psf_blur_reach(2.25) == 6  # 4 sigma of sigma 1.5
    assert halos.halo_px(2.0, settings, 2.25) == halos.halo_px(2.0, settings) + 12


def test_gaussian_is_the_default_and_the_reference_preset_turns_it_off() -> None:
    config = DcrAssembleCoaddConfig()
    assert config.psfForwardModel == "gaussian"
    assert fit_settings(config).psf_forward_model == "gaussian"
    config.update(**PRESETS["reference"]())
    assert config.psfForwardModel == "none"
    with pytest.raises(Exception, match="psfForwardModel"):
        DcrAssembleCoaddConfig(psfForwardModel="moffat").validate()


def _run_like(fwhm, rejected=()):
    import xarray as xr

    visits = [
        SimpleNamespace(visit=100 + k, psf_fwhm_px=f, filename=f"visit_{100 + k}.fits")
        for k, f in enumerate(fwhm)
    ]
    ids = [v.visit for v in visits]
    ingested = xr.Dataset(coords={"visit": ids, "psf_fwhm_px": ("visit", np.array(fwhm, float))})
    return SimpleNamespace(
        matching=None,
        visits=visits,
        ingested=ingested,
        quality=SimpleNamespace(rejected={v: "rejected" for v in rejected}),
    )


def test_the_minor_axis_variance_ignores_a_smear_along_one_axis() -> None:
    """The PSF of a warp holds DCR's smear along the parallactic direction; the width
    across it is the seeing's."""
    round_psf = gaussian_psf_image(41, 4.0)
    smeared = ndimage.convolve1d(round_psf, np.ones(6) / 6, axis=1, mode="constant")
    sigma2 = (4.0 / FWHM_PER_SIGMA) ** 2
    assert psf_minor_variance(round_psf) == pytest.approx(sigma2 + 1 / 12, rel=2e-3)
    assert psf_minor_variance(smeared) == pytest.approx(psf_minor_variance(round_psf), rel=0.02)
    assert (psf_fwhm_px(smeared) / FWHM_PER_SIGMA) ** 2 > 1.5 * sigma2
    rotated = ndimage.rotate(smeared, 30.0, reshape=False, order=3)
    assert psf_minor_variance(rotated) == pytest.approx(psf_minor_variance(round_psf), rel=0.03)


def test_the_model_is_at_the_sharpest_kept_width_and_each_visit_is_widened_to_its_own() -> None:
    fwhm = [4.0, 3.0, 5.0, 2.0, 6.0]
    blur, model = pipeline._psf_blur(_run_like(fwhm, rejected=(103,)), quantile=0.0)
    variance = np.array([psf_minor_variance(gaussian_stamp(f)) for f in fwhm])
    assert model == pytest.approx(variance[1])  # visit 103 is sharper, but rejected
    np.testing.assert_allclose(blur, np.clip(variance - model, 0, None))
    assert blur[3] == 0.0


@pytest.mark.parametrize(
    ("quantile", "k"), [(0.0, 1), (0.2, 1), (0.25, 1), (0.26, 2), (0.5, 2), (0.75, 3), (1.0, 4)]
)
def test_the_model_is_at_the_quantile_of_the_kept_widths(quantile: float, k: int) -> None:
    """psfModelQuantile: the model at the k-th sharpest of the 4 kept visits, k =
    ceil(quantile x 4) (at least 1); visits sharper than it get no blur, wider ones are
    widened to their own PSF; the field is checked and reaches the run."""
    fwhm = [4.0, 3.0, 5.0, 2.0, 6.0]
    blur, model = pipeline._psf_blur(_run_like(fwhm, rejected=(103,)), quantile=quantile)
    variance = np.array([psf_minor_variance(gaussian_stamp(f)) for f in fwhm])
    kept = np.sort(variance[[0, 1, 2, 4]])
    assert model == pytest.approx(kept[k - 1])
    np.testing.assert_allclose(blur, np.clip(variance - model, 0, None))
    assert (blur == 0).sum() == k + 1  # the k sharpest kept ones and the rejected 103
    for bad in (-0.1, 1.5):
        with pytest.raises(Exception, match="psfModelQuantile"):
            DcrAssembleCoaddConfig(psfModelQuantile=bad).validate()


def test_a_visit_without_a_psf_width_is_named() -> None:
    with pytest.raises(ValueError, match=r"visit 101 has neither a PSF HDU nor a positive"):
        pipeline._psf_blur(_run_like([4.0, np.nan, 3.0]), quantile=0.2)


def test_template_blur_needs_a_store_fitted_with_it_and_the_visits_psf(caplog) -> None:
    fitted = SimpleNamespace(attrs={"model_psf_variance_px2": 3.0})
    assert template_psf_blur(SimpleNamespace(attrs={}), 5.0) is None
    assert template_psf_blur(fitted, 5.0) == pytest.approx(2.0)
    assert template_psf_blur(fitted, 2.0) == 0.0
    with caplog.at_level(logging.WARNING, logger="dcr_dask"):
        assert template_psf_blur(fitted, None) is None
    assert "PSF is unknown" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("quantile", [0.0, 0.5])
def test_a_run_records_the_models_psf_and_widens_templates_to_each_visits(
    tmp_path, quantile: float
) -> None:
    from distributed import Client, LocalCluster

    spec = attrs.evolve(default_demo_spec(shape=(96, 96)), detected_plane=False)
    tile = simulate_tile(spec)
    paths = write_simulation(tile, tmp_path / "sim")
    config = DcrAssembleCoaddConfig()
    config.update(
        effectiveWavelength=478.0,
        bandwidth=147.0,
        subregionSize=[96, 96],
        psfForwardModel="gaussian",
        psfModelQuantile=quantile,
        maxNumIter=4,
    )
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        dataset = dcr_dask.run(config, paths["warps"], output=tmp_path / "out.zarr", client=client)
    records = dataset.attrs["inputs"]
    blur = np.array([r["psf_blur_px2"] for r in records])
    model = dataset.attrs["model_psf_variance_px2"]
    stamps = [
        psf_minor_variance(p) for p in open_warps(paths["warps"], need_psf=True)["psf"].values
    ]
    k = max(1, math.ceil(quantile * len(stamps)))
    assert model == pytest.approx(sorted(stamps)[k - 1])
    np.testing.assert_allclose(blur, np.clip(np.array(stamps) - model, 0, None), atol=1e-9)
    assert (blur == 0).sum() == k
    assert blur.min() == 0.0 and blur.max() > 0.1
    visit = tile.visits[int(np.flatnonzero(tile.holdout)[0])]
    sharp = matched_template(dataset, visit, psf_variance_px2=model).values
    wide = matched_template(dataset, visit, psf_variance_px2=model + 3.0).values
    # the same flux, spread wider: the brightest pixel drops
    assert wide.sum() == pytest.approx(sharp.sum(), rel=1e-3)
    assert wide.max() < 0.8 * sharp.max()
