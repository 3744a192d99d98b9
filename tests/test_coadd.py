"""The plain-coadd graph equals the stacking kernel applied to the whole tile at once."""

import dask
import numpy as np
import xarray as xr

from dcr_dask.coadd import good_pixels, plain_coadd, visit_weights
from dcr_dask.masks import run_layout
from dcr_dask.stack import weighted_mean


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
