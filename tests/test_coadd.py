"""The stacking graphs equal the stacking kernels applied to the whole tile at once."""

import dask
import numpy as np
import pytest
import xarray as xr

from dcr_dask.graph.coadd import (
    good_pixels,
    plain_coadd,
    stack_settings,
    stack_warps,
    visit_weights,
)
from dcr_dask.kernels.stack import stack_block, visit_weight, weighted_mean
from dcr_dask.masks import run_layout
from dcr_dask.settings import stacking


def _warps(chunk):
    rng = np.random.default_rng(2)
    planes = run_layout()
    n, ny, nx = 5, 20, 24
    mask = np.zeros((n, ny, nx), np.int32)
    mask[1, 3:7, 4:9] = 1 << planes.bit("NO_DATA")
    mask[2, 10, :] = 1 << planes.bit("SAT")
    mask[3, 0:4, 0:4] = 1 << planes.bit("DETECTED")
    ds = xr.Dataset(
        {
            "image": (("visit", "y", "x"), rng.normal(size=(n, ny, nx)).astype(np.float32)),
            "variance": (("visit", "y", "x"), rng.uniform(1, 3, (n, ny, nx)).astype(np.float32)),
            "mask": (("visit", "y", "x"), mask),
        },
        coords={"visit": np.arange(n), "y": np.arange(ny), "x": np.arange(nx)},
        attrs={"mask_planes": planes.bits},
    )
    return ds.chunk({"visit": 1, "y": chunk, "x": chunk})


def test_plain_coadd_is_independent_of_chunking_and_matches_the_kernel():
    bad = ["NO_DATA", "SAT", "BAD"]
    results = []
    for chunk in (7, 24):
        warps = _warps(chunk)
        with dask.config.set(scheduler="synchronous"):
            results.append(plain_coadd(warps, bad).compute())
    xr.testing.assert_allclose(results[0], results[1])
    warps = _warps(24).compute()
    good = good_pixels(warps, bad).values
    assert not good[1, 3, 4] and not good[2, 10, 0] and good[3, 0, 0]
    weights = visit_weights(warps, good_pixels(warps, bad)).values
    mean, var, n = weighted_mean(warps.image.values, warps.variance.values, good, weights)
    np.testing.assert_allclose(results[0].image.values, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[0].variance.values, var, rtol=1e-6)
    np.testing.assert_array_equal(results[0].n_image.values, n)


# ----------------------------------------------------------------------------- stack_warps


def _config(**changes):
    from dcr_dask.config import CompareWarpAssembleCoaddConfig

    config = CompareWarpAssembleCoaddConfig().assembleStaticSkyModel
    for name, value in changes.items():
        setattr(config, name, value)
    return config


def test_stack_settings_follow_the_config_and_the_layout():
    planes = run_layout()
    config = _config(
        badMaskPlanes=["NO_DATA", "SAT", "EDGE"], maskPropagationThresholds={"SAT": 0.2}
    )
    settings = stack_settings(stacking(config), planes, extra_bad_planes=["CLIPPED"])
    assert settings.statistic == "MEANCLIP" and settings.sigma_clip == 2.5
    assert settings.clip_iter == 3
    assert settings.bad_mask == planes.value(["NO_DATA", "SAT", "EDGE", "CLIPPED"])
    assert settings.remove_mask == planes.value(["NOT_DEBLENDED"])
    assert settings.propagation == ((planes.bit("SAT"), 0.2),)
    assert dict(settings.rejection_map) == {
        planes.value(["SAT"]): planes.value(["REJECTED"]),
        planes.value(["EDGE"]): planes.value(["SENSOR_EDGE"]),
        planes.value(["CLIPPED"]): planes.value(["CLIPPED"]),
    }


def test_stack_warps_is_independent_of_chunking_and_matches_the_kernel():
    planes = run_layout()
    config = _config(doNImage=True, badMaskPlanes=["NO_DATA", "SAT"])
    weights = np.array([1.0, 0.5, 2.0, 1.0, 1.5])
    results = []
    for chunk in (7, 24):
        with dask.config.set(scheduler="synchronous"):
            results.append(stack_warps(_warps(chunk), stacking(config), weights).compute())
    xr.testing.assert_identical(results[0], results[1])
    warps = _warps(24).compute()
    image, variance, mask, n_image = stack_block(
        warps.image.values,
        warps.variance.values,
        warps.mask.values,
        weights,
        stack_settings(stacking(config), planes),
    )
    np.testing.assert_array_equal(results[0].image.values, image)
    np.testing.assert_array_equal(results[0].variance.values, variance)
    np.testing.assert_array_equal(results[0].mask.values, mask)
    np.testing.assert_array_equal(results[0].n_image.values, n_image)
    assert results[0].mask.dtype == np.int32 and results[0].n_image.dtype == np.uint16
    assert results[0].attrs["mask_planes"] == planes.bits
    no_data = planes.value(["NO_DATA"])
    assert results[0].mask.values[3, 4] & no_data == 0  # four other visits cover it


def test_stack_warps_default_weights_and_no_n_image():
    config = _config(doNImage=False)
    warps = _warps(24)
    # one very noisy pixel per visit: the reference's MEANCLIP leaves it out of the
    # mean variance, a plain mean would not
    warps["variance"] = warps["variance"].copy(data=warps["variance"].values.copy())
    warps["variance"].values[:, 19, 23] = 1e4
    with dask.config.set(scheduler="synchronous"):
        stacked = stack_warps(warps, stacking(config))
        plain = visit_weights(warps, good_pixels(warps, ["NO_DATA"])).values
    good = good_pixels(warps, config.badMaskPlanes).values
    expected = [
        visit_weight(warps.variance.values[v], good[v], config.sigmaClip, config.clipIter)
        for v in range(warps.sizes["visit"])
    ]
    assert "n_image" not in stacked
    np.testing.assert_allclose(stacked.weight.values, expected, rtol=1e-12)
    assert np.all(stacked.weight.values > 1.5 * plain)
    with pytest.raises(ValueError, match="one per visit"):
        stack_warps(_warps(24), stacking(config), np.ones(3))
    with pytest.raises(ValueError, match="statistic = 'MODE'"):
        stack_warps(_warps(24), stacking(_config(statistic="MODE")))


def test_stack_warps_weights_follow_the_stacking_configs_do_airmass_weight():
    """The DCR config's ``doAirmassWeight`` (the direct coadd is stacked with it)
    multiplies the weights by the boresight airmass; without an airmass
    coordinate the error names the field."""
    from dcr_dask.config import DcrAssembleCoaddConfig

    def _config(**changes):
        config = DcrAssembleCoaddConfig()
        config.badMaskPlanes = ["NO_DATA"]
        config.update(**changes)
        return config

    warps = _warps(24)
    airmass = np.linspace(1.0, 1.8, warps.sizes["visit"])
    with dask.config.set(scheduler="synchronous"):
        plain = stack_warps(warps, stacking(_config())).weight.values
        with pytest.raises(ValueError, match="doAirmassWeight"):
            stack_warps(warps, stacking(_config(doAirmassWeight=True)))
        weighted = stack_warps(
            warps.assign_coords(airmass=("visit", airmass)),
            stacking(_config(doAirmassWeight=True)),
        ).weight.values
    np.testing.assert_allclose(weighted, plain * airmass, rtol=1e-12)
