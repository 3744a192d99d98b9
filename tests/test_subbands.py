"""One DCR shift object per run: the band read once, each visit's geometry once per position."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

import dcr_dask
from dcr_dask import settings
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.physics import geometry
from dcr_dask.settings import dcr_shifts, run_shifts
from dcr_dask.simulate import default_demo_spec, simulate_tile

CURVE = Path(dcr_dask.__file__).parent / "physics" / "data" / "bands" / "lsst-g.dat"


@pytest.fixture(scope="module")
def tile():
    return simulate_tile(default_demo_spec(shape=(64, 64)))


def _config(**changes) -> DcrAssembleCoaddConfig:
    config = DcrAssembleCoaddConfig(transmissionCurve=str(CURVE), **changes)
    config.validate()
    return config


@pytest.mark.parametrize("local", [False, True])
def test_at_is_the_centre_unless_the_geometry_is_local(tile, local):
    config = _config(useLocalGeometry=local)
    shifts = dcr_shifts(tile.visits, tile.wcs, config, (64, 64))
    for x, y in [(10.0, 50.0), (31.5, 31.5), (60.0, 3.0)]:
        where = (x, y) if local else (31.5, 31.5)
        expected = run_shifts(tile.visits, tile.wcs, config, x=where[0], y=where[1])
        got = shifts.at(x, y)
        np.testing.assert_array_equal(got.shifts_px, expected.shifts_px)
        np.testing.assert_array_equal(got.unsplit_px, expected.unsplit_px)
        assert got.buffer_px == expected.buffer_px
        assert got.geometry == expected.geometry
    if local:  # the local geometry really differs across a tile of this size
        assert not np.array_equal(shifts.at(0.0, 0.0).shifts_px, shifts.at(63.0, 63.0).shifts_px)


def test_the_band_is_read_once_and_each_geometry_computed_once(tile, monkeypatch):
    reads, geometries = [], []
    read = settings.read_transmission
    visit_geometry = geometry.visit_geometry
    monkeypatch.setattr(settings, "read_transmission", lambda *a: reads.append(a) or read(*a))
    monkeypatch.setattr(
        geometry,
        "visit_geometry",
        lambda *a, **k: geometries.append(a) or visit_geometry(*a, **k),
    )
    config = _config(useLocalGeometry=True, subbandShiftMode="throughput")
    shifts = dcr_shifts(tile.visits, tile.wcs, config, (64, 64))
    positions = [(8.0 + 16 * i, 8.0 + 16 * j) for i in range(4) for j in range(4)]
    for x, y in positions * 2:  # a second pass is served from the cache
        shifts.at(x, y)
    one = shifts.with_visits(tile.visits[:1])
    one.at(3.0, 4.0)
    assert len(reads) == 1
    assert len(geometries) == len(tile.visits) * len(positions) + 1


def test_the_shifts_pickle_for_the_workers(tile):
    shifts = dcr_shifts(tile.visits, tile.wcs, _config(), (64, 64))
    shifts.at_centre()
    copy = pickle.loads(pickle.dumps(shifts))
    np.testing.assert_array_equal(copy.at(5.0, 7.0).shifts_px, shifts.at(5.0, 7.0).shifts_px)
    assert copy.options == shifts.options
    np.testing.assert_array_equal(
        copy.band.transmission.throughput, shifts.band.transmission.throughput
    )
