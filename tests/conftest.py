"""Shared fixtures: a small tile WCS and afw-style files written with astropy alone."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

# Property-based tests (tests/test_properties_*.py). "ci", the default: the same examples
# on every run, bounded so that they take seconds, and no example database written into
# the checkout. HYPOTHESIS_PROFILE=thorough searches many more, at random.
# Hypothesis' own caches (constants, unicode tables) go to the temporary directory.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "dcr-dask-hypothesis"))
settings.register_profile(
    "ci", derandomize=True, max_examples=60, deadline=None, database=None, print_blob=True
)
settings.register_profile(
    "thorough", derandomize=False, max_examples=2000, deadline=None, database=None
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _make_tile_wcs(
    crval: tuple[float, float] = (150.0, -30.0), scale_deg: float = 0.2 / 3600
) -> WCS:
    """A North-up, East-left TAN WCS whose reference pixel is near the tile centre."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(crval)
    wcs.wcs.crpix = [25.5, 20.5]
    wcs.wcs.cd = [[-scale_deg, 0.0], [0.0, scale_deg]]
    wcs.wcs.set()
    return wcs


def _primary_header(visit: int = 1, changes: Mapping[str, object] | None = None) -> fits.Header:
    """A valid primary header (Rubin site); ``changes`` set keywords, None deletes them."""
    header = fits.Header()
    header["EXPID"] = visit
    header["FILTER"] = "g"
    header["EXPTIME"] = 30.0
    header["DATE-AVG"] = "2024-03-01T05:00:00.000000000"
    header["TIMESYS"] = "TAI"
    header["BORE-RA"] = 150.0
    header["BORE-DEC"] = -30.0
    header["BORE-AZ"] = 120.0
    header["BORE-ALT"] = 60.0
    header["HIERARCH BORE-AIRMASS"] = 1.1547
    header["OBS-LONG"] = -70.749417
    header["OBS-LAT"] = -30.244639
    header["OBS-ELEV"] = 2663.0
    header["AIRTEMP"] = 10.0
    header["AIRPRESS"] = 74000.0
    header["HUMIDITY"] = 20.0
    for key, value in (changes or {}).items():
        card = f"HIERARCH {key}" if len(key) > 8 else key
        if value is None:
            header.remove(key, ignore_missing=True)
        else:
            header[card] = value
    return header


def _write_afw_file(
    path: Path,
    *,
    header: Mapping[str, object],
    image: np.ndarray,
    mask: np.ndarray,
    variance: np.ndarray,
    bits: Mapping[str, int],
    wcs: WCS | None,
    xy0: tuple[int, int] = (0, 0),
    psf: np.ndarray | None = None,
    skip: tuple[str, ...] = (),
) -> Path:
    """Write an afw-style warp with astropy directly (independent of dcr_dask's writer).

    Arrays are written with their own dtypes; ``skip`` leaves HDUs out.
    """
    x0, y0 = xy0
    hdr = fits.Header()
    if wcs is not None:
        local = wcs.deepcopy()
        local.wcs.crpix = local.wcs.crpix - np.array([x0, y0])
        hdr.update(local.to_header())
    hdr["LTV1"] = -x0
    hdr["LTV2"] = -y0
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU(header=fits.Header(header))]
    for name, data in (("IMAGE", image), ("MASK", mask), ("VARIANCE", variance)):
        if name in skip:
            continue
        h = hdr.copy()
        if name == "MASK":
            for plane, bit in bits.items():
                h[f"HIERARCH MP_{plane}"] = bit
        hdus.append(fits.ImageHDU(data=data, header=h, name=name))
    if psf is not None:
        hdus.append(fits.ImageHDU(data=psf, name="PSF"))
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.fixture
def tile_wcs() -> WCS:
    """The WCS of a 40 x 50 pixel test tile."""
    return _make_tile_wcs()


@pytest.fixture
def afw_warp(tmp_path: Path, tile_wcs: WCS) -> Callable[..., Path]:
    """Write a valid afw-style warp, ``ny`` x ``nx`` at ``xy0``; keywords override parts."""

    def make(
        name: str = "warp.fits",
        visit: int = 1,
        shape: tuple[int, int] = (40, 50),
        header: Mapping[str, object] | None = None,
        **kwargs: object,
    ) -> Path:
        rng = np.random.default_rng(visit)
        arrays = {
            "image": rng.normal(size=shape).astype(np.float32),
            "mask": np.zeros(shape, dtype=np.int32),
            "variance": np.ones(shape, dtype=np.float32),
            "bits": {"BAD": 0, "SAT": 1, "NO_DATA": 8},
            "wcs": tile_wcs,
        }
        arrays.update(kwargs)
        head = header if header is not None else _primary_header(visit)
        return _write_afw_file(tmp_path / name, header=head, **arrays)  # type: ignore[arg-type]

    return make


@pytest.fixture
def visit_header() -> Callable[..., fits.Header]:
    """``visit_header(visit=1, changes=None)``: a valid afw primary header."""
    return _primary_header


@pytest.fixture
def write_afw() -> Callable[..., Path]:
    """``write_afw(path, *, header, image, mask, variance, bits, wcs, xy0, psf, skip)``."""
    return _write_afw_file


@pytest.fixture
def make_wcs() -> Callable[..., WCS]:
    """``make_wcs(crval=(150, -30), scale_deg=0.2/3600)``: a TAN WCS for a 40 x 50 tile."""
    return _make_tile_wcs


@pytest.fixture(autouse=True)
def _restore_logging():
    """Undo what ``dcr_dask.cli.main`` does to the root logger (``basicConfig(force=True)``
    on the stderr of the moment, which pytest's capture closes after the test)."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


#: The tile of tests/test_cli_run.py, run with one subregion and few iterations: the
#: same numbers on any cluster, in seconds (tests/test_tls.py, tests/test_slurm.py).
CLI_BAND = ["--set", "effectiveWavelength=478", "--set", "bandwidth=147"]
CLI_FAST = ["--set", "subregionSize=[96,96]", "--set", "maxNumIter=3"]


def cli_spec():
    """The small tile the command-line tests run on (96^2, six visits, one held out)."""
    from dcr_dask.simulate import SimulationSpec

    return SimulationSpec(
        shape=(96, 96),
        airmasses=(1.02, 1.2, 1.45, 1.7, 2.0, 1.3),
        holdout_airmasses=(1.9,),
        n_stars=10,
        n_galaxies=2,
        seed=11,
    )


@pytest.fixture(scope="session")
def cli_tile(tmp_path_factory) -> Path:
    """Directory of a small simulated tile (``warps/``, ``holdout/``), written once."""
    from dcr_dask.simulate import simulate_tile, write_simulation

    directory = tmp_path_factory.mktemp("cli-tile")
    write_simulation(simulate_tile(cli_spec()), directory, overwrite=True)
    return directory


@pytest.fixture(scope="session")
def cli_local_run(cli_tile, tmp_path_factory) -> Path:
    """``dcr-dask run`` of :func:`cli_tile` on a local two-worker cluster, made once."""
    from dcr_dask.cli import main

    output = tmp_path_factory.mktemp("cli-local") / "coadd.zarr"
    argv = ["-q", "run", str(cli_tile / "warps"), "--output", str(output), "--workers", "2"]
    assert main([*argv, *CLI_BAND, *CLI_FAST]) == 0
    return output
