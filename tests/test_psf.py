"""PSF matching: kernels against analytic Gaussians, lazy convolution against direct ones."""

import logging

import dask
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage, signal

from dcr_dask.config import CompareWarpAssembleCoaddConfig
from dcr_dask.graph.psf_matching import match_psfs, model_psf_fwhm, psf_matching
from dcr_dask.kernels.psf import (
    FWHM_PER_SIGMA,
    convolve_block,
    delta_kernel,
    gaussian_psf_image,
    grow_mask_block,
    matching_kernel,
    matching_residual,
    min_model_core_fwhm_px,
    model_psf_image,
    psf_fwhm_px,
)
from dcr_dask.masks import run_layout
from dcr_dask.settings import psf_matching_settings


def _sampled_gaussian(size, sigma):
    offsets = np.arange(size) - size // 2
    profile = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = np.outer(profile, profile)
    return kernel / kernel.sum()


def test_gaussian_psf_image_is_normalised_and_has_its_fwhm():
    for fwhm in (2.0, 3.3, 5.0):
        psf = gaussian_psf_image(31, fwhm)
        assert psf.sum() == pytest.approx(1.0)
        assert psf_fwhm_px(psf) == pytest.approx(fwhm, rel=1e-4)
        np.testing.assert_allclose(psf, psf.T)
    with pytest.raises(ValueError, match="odd"):
        gaussian_psf_image(30, 3.0)


@pytest.mark.parametrize(("fwhm_in", "fwhm_model"), [(3.0, 4.0), (3.5, 4.7), (2.5, 5.0)])
def test_gaussian_matched_to_a_wider_gaussian_gives_the_analytic_kernel(fwhm_in, fwhm_model):
    psf = gaussian_psf_image(25, fwhm_in)
    kernel = matching_kernel(psf, gaussian_psf_image(45, fwhm_model), 21)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    # The matched PSF is the model PSF (to the ridge's 1e-5) ...
    matched = signal.convolve(psf, kernel)
    model = gaussian_psf_image(matched.shape[0], fwhm_model)
    np.testing.assert_allclose(matched, model, atol=3e-5 * model.max())
    # ... and the kernel is the Gaussian of sigma sqrt(σm² - σi²), sampled at pixel centres.
    sigma = np.sqrt(fwhm_model**2 - fwhm_in**2) / FWHM_PER_SIGMA
    analytic = _sampled_gaussian(21, sigma)
    np.testing.assert_allclose(kernel, analytic, atol=6e-3 * analytic.max())


def test_convolve_block_equals_direct_convolution():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, 30, 27))
    kernels = np.stack([_sampled_gaussian(7, 1.0), _sampled_gaussian(7, 1.5)])
    kernels[1, 0, 3] = 0.05  # not symmetric: orientation matters
    out = convolve_block(images, kernels)
    for v in range(2):
        want = ndimage.convolve(images[v], kernels[v], mode="constant")
        np.testing.assert_allclose(out[v], want, atol=1e-5)


def test_grow_mask_block_ors_every_bit_over_the_box():
    rng = np.random.default_rng(2)
    masks = (rng.uniform(size=(2, 25, 21)) < 0.02) * 4 + (rng.uniform(size=(2, 25, 21)) < 0.02) * 1
    grown = grow_mask_block(masks.astype(np.int32), 3)
    for bit in (1, 4):
        for v in range(2):
            want = ndimage.binary_dilation(masks[v] & bit, structure=np.ones((7, 7)))
            np.testing.assert_array_equal((grown[v] & bit) != 0, want)


# ----------------------------------------------------------------------------- the graph


def _warps(chunk, fwhm=(3.0, 3.6, 4.2)):
    rng = np.random.default_rng(7)
    planes = run_layout()
    n, ny, nx = len(fwhm), 40, 36
    image = rng.normal(size=(n, ny, nx)).astype(np.float32)
    image[:, 20, 17] += 100.0
    variance = rng.uniform(1.0, 2.0, size=(n, ny, nx)).astype(np.float32)
    mask = np.zeros((n, ny, nx), np.int32)
    mask[0, 5:8, 30:33] = 1 << planes.bit("NO_DATA")
    mask[1, 30, 3] = 1 << planes.bit("SAT")
    image[2, 12, 10] = np.nan
    psf = np.stack([gaussian_psf_image(15, f) for f in fwhm]).astype(np.float32)
    ds = xr.Dataset(
        {
            "image": (("visit", "y", "x"), image),
            "variance": (("visit", "y", "x"), variance),
            "mask": (("visit", "y", "x"), mask),
            "psf": (("visit", "psf_y", "psf_x"), psf),
        },
        coords={
            "visit": np.arange(n) + 10,
            "y": np.arange(ny),
            "x": np.arange(nx),
            "psf_fwhm_px": ("visit", np.array(fwhm)),
            "has_psf": ("visit", np.ones(n, bool)),
        },
        attrs={"mask_planes": planes.bits, "tile_shape": [ny, nx]},
    )
    return ds.chunk({"visit": 1, "y": chunk, "x": chunk})


def _config(size=11, fwhm=3.0):
    config = CompareWarpAssembleCoaddConfig()
    config.matchingKernelSize = size
    config.modelPsf.defaultFwhm = fwhm
    return config


def test_match_psfs_is_lazy_chunk_independent_and_equals_a_direct_convolution():
    config = _config()
    matching = psf_matching(_warps(40), psf_matching_settings(config))
    widest = min_model_core_fwhm_px(
        gaussian_psf_image(15, 4.2), wing_fwhm_factor=2.5, wing_amplitude=0.1
    )
    assert matching.model_core_fwhm_px == pytest.approx(1.05 * widest)
    assert not matching.too_wide.any()
    results = []
    for chunk in (40, 13):
        matched = match_psfs(_warps(chunk), psf_matching_settings(config), matching=matching)
        assert matched.image.chunks == _warps(chunk).image.chunks
        with dask.config.set(scheduler="synchronous"):
            results.append(matched.compute())
    xr.testing.assert_allclose(results[0], results[1], atol=1e-5)
    np.testing.assert_array_equal(results[0].mask.values, results[1].mask.values)

    warps = _warps(40).compute()
    planes = run_layout()
    no_data = 1 << planes.bit("NO_DATA")
    for v in range(3):
        kernel = matching.kernels[v]
        finite = np.isfinite(warps.image.values[v])
        image = np.where(finite, warps.image.values[v], 0.0)
        want = ndimage.convolve(image, kernel, mode="reflect")
        np.testing.assert_allclose(results[1].image.values[v], want, atol=1e-4)
        variance = np.where(finite, warps.variance.values[v], 0.0)
        want_var = ndimage.convolve(variance, kernel**2, mode="reflect")
        np.testing.assert_allclose(results[1].variance.values[v], want_var, rtol=1e-4)
    # NaN became NO_DATA and grew by half the kernel (5 px); so did the other planes.
    assert results[1].mask.values[2, 12 + 5, 10 - 5] & no_data
    assert not results[1].mask.values[2, 12 + 6, 10] & no_data
    assert results[1].mask.values[1, 30 - 5, 3 + 5] & (1 << planes.bit("SAT"))
    assert results[1].mask.values[0, 5 - 5, 32 + 3] & no_data
    assert results[1].attrs["model_psf_fwhm_px"] == matching.model_fwhm_px
    assert results[1].psf_too_wide.values.tolist() == [False, False, False]
    # Flux is conserved.
    assert results[1].image.values[1].sum() == pytest.approx(
        np.nan_to_num(warps.image.values[1]).sum(), rel=1e-3
    )


def test_a_psf_wider_than_the_model_is_flagged_and_not_sharpened(caplog):
    config = _config(fwhm=3.8)
    with caplog.at_level(logging.WARNING, logger="dcr_dask.graph.psf_matching"):
        matching = psf_matching(_warps(40), psf_matching_settings(config), widen=None)
    assert matching.model_core_fwhm_px == 3.8
    assert matching.too_wide.tolist() == [False, False, True]
    assert "visit 12" in caplog.text and "psf_too_wide" in caplog.text
    np.testing.assert_array_equal(matching.kernels[2], delta_kernel(11))
    with dask.config.set(scheduler="synchronous"):
        matched = match_psfs(_warps(40), psf_matching_settings(config), matching=matching).compute()
    assert matched.psf_too_wide.values.tolist() == [False, False, True]
    raw = _warps(40).compute()
    np.testing.assert_allclose(matched.image.values[2], np.nan_to_num(raw.image.values[2]))


def test_model_fwhm_policy():
    assert model_psf_fwhm([3.0, 4.0], 3.0) == pytest.approx(4.2)
    assert model_psf_fwhm([3.0, 4.0], 5.0) == 5.0
    assert model_psf_fwhm([3.0, 4.0], 3.0, widen=None) == 3.0
    with pytest.raises(ValueError, match="widen"):
        model_psf_fwhm([3.0], 3.0, widen=0.9)


def test_bad_inputs_give_clear_errors():
    config = _config()
    object.__setattr__(config, "matchingKernelSize", 10)  # bypass the config's own check
    with pytest.raises(ValueError, match="matchingKernelSize = 10"):
        psf_matching(_warps(40), psf_matching_settings(config))
    with pytest.raises(ValueError, match="matchingKernelSize = 8"):
        matching_kernel(gaussian_psf_image(15, 3.0), gaussian_psf_image(15, 4.0), 8)
    warps = (
        _warps(40)
        .drop_vars("psf")
        .assign_coords(has_psf=("visit", [False] * 3), psf_fwhm_px=("visit", [3.0, np.nan, 4.0]))
    )
    with pytest.raises(ValueError, match="visit 11 has neither a PSF HDU nor a positive PSF-FWHM"):
        psf_matching(warps, psf_matching_settings(_config()))
    with pytest.raises(ValueError, match="square with an odd size"):
        matching_kernel(np.ones((4, 4)), gaussian_psf_image(15, 4.0), 11)


def _moffat_image(size, fwhm, beta, oversample=7):
    """A Moffat PSF integrated over pixels by oversampling (independent of dcr_dask)."""
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    offsets = (np.arange(size * oversample) - (size * oversample - 1) / 2) / oversample
    r2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
    fine = (1.0 + r2 / alpha**2) ** (-beta)
    image = fine.reshape(size, oversample, size, oversample).sum(axis=(1, 3))
    return image / image.sum()


def _second_moment_fwhm(psf):
    half = psf.shape[0] // 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    second = 0.5 * ((psf * yy**2).sum() + (psf * xx**2).sum()) / psf.sum()
    return FWHM_PER_SIGMA * np.sqrt(second - 1.0 / 12.0)


@pytest.mark.parametrize("beta", [2.5, 3.5, 4.8])
def test_fwhm_follows_the_core_of_a_winged_psf(beta):
    psf = _moffat_image(61, 4.0, beta)
    # unweighted second moments are inflated by the wings; adaptive ones much less
    assert _second_moment_fwhm(psf) > 1.25 * 4.0
    assert 4.0 < psf_fwhm_px(psf) < 1.18 * 4.0
    assert psf_fwhm_px(psf) - 4.0 < 0.5 * (_second_moment_fwhm(psf) - 4.0)


def test_model_psf_image_has_the_factory_wing():
    core = model_psf_image(61, 4.0)
    winged = model_psf_image(61, 4.0, wing_fwhm_factor=2.5, wing_amplitude=0.1)
    np.testing.assert_allclose(core, gaussian_psf_image(61, 4.0))
    assert winged.sum() == pytest.approx(1.0)
    # the wing holds b f^2 / (1 + b f^2) of the flux and its peak is b times the core's
    wing = winged - core / (1.0 + 0.1 * 2.5**2)
    assert wing.sum() == pytest.approx(0.1 * 6.25 / 1.625, rel=1e-3)
    # (pixel integration lowers the narrow core's peak a little more than the wing's)
    assert wing.max() / (winged - wing).max() == pytest.approx(0.1, rel=0.03)
    with pytest.raises(ValueError, match="wingAmplitude"):
        model_psf_image(15, 3.0, wing_amplitude=-1.0)


@pytest.mark.parametrize("beta", [2.5, 4.8])
def test_a_winged_model_matches_a_moffat_psf_without_sharpening(beta):
    psf = _moffat_image(41, 4.0, beta)
    single = min_model_core_fwhm_px(psf)
    core = min_model_core_fwhm_px(psf, wing_fwhm_factor=2.5, wing_amplitude=0.1)
    # the wing absorbs the PSF's wing: a much narrower core suffices
    assert core < 0.8 * single if beta < 3 else core < single
    model = model_psf_image(81, 1.05 * core, wing_fwhm_factor=2.5, wing_amplitude=0.1)
    kernel = matching_kernel(psf, model, 21)
    assert matching_residual(psf, kernel, model) < 0.01
    # a smoothing kernel: it lowers the noise and has no deep negative lobes
    assert np.sqrt((kernel**2).sum()) < 0.5
    assert kernel.min() > -0.1 * kernel.max()
    # just below the bound, the model's transfer function exceeds the PSF's somewhere
    n = 2 * 81
    narrow = model_psf_image(81, 0.97 * core, wing_fwhm_factor=2.5, wing_amplitude=0.1)

    def otf(stamp):
        padded = np.zeros((n, n))
        padded[: stamp.shape[0], : stamp.shape[0]] = stamp
        return np.abs(np.fft.rfft2(padded))

    wide = np.pad(psf, 20)
    use = otf(wide) > 1e-3
    assert np.any(otf(narrow)[use] > 1.001 * otf(wide)[use])
    assert not np.any(otf(model)[use] > 1.001 * otf(wide)[use])


def test_a_kernel_that_misses_the_model_is_reported(caplog):
    config = _config(size=5)
    with caplog.at_level(logging.WARNING, logger="dcr_dask.graph.psf_matching"):
        matching = psf_matching(_warps(40), psf_matching_settings(config))
    assert matching.residuals.max() > 0.02
    assert "misses the model PSF" in caplog.text and "matchingKernelSize (now 5)" in caplog.text
    config = _config(size=21)
    config.modelPsf.addWing = False
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dcr_dask.graph.psf_matching"):
        matching = psf_matching(_warps(40), psf_matching_settings(config))
    assert matching.residuals.max() < 1e-3
    assert "misses the model PSF" not in caplog.text
