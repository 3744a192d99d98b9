"""Progress of tracked computations on a real (in-process) Dask cluster."""

import io

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster

from dcr_dask.io.store import compute
from dcr_dask.progress import progress_enabled, show_progress, track


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def test_progress_is_off_unless_asked_for():
    assert not progress_enabled()
    with show_progress():
        assert progress_enabled()
        with show_progress(False):
            assert not progress_enabled()
    assert not progress_enabled()


def test_a_tracked_stage_ends_with_one_line_of_its_tasks(client):
    array = da.ones((40, 40), chunks=10) * 2
    (persisted,) = dask.persist(array)
    stream = io.StringIO()
    with show_progress():
        track(persisted, "stage A", stream=stream)
    assert stream.getvalue().startswith("stage A: 16/16 tasks in ")
    assert stream.getvalue().count("\n") == 1
    quiet = io.StringIO()
    track(dask.persist(array + 1)[0], "stage B", stream=quiet)
    assert quiet.getvalue() == ""


def test_compute_with_a_label_gives_the_same_result(client, capsys):
    array = da.arange(100, chunks=10).reshape(10, 10)
    with show_progress():
        got = compute(array.sum(axis=0), client, label="sums")
    np.testing.assert_array_equal(got, np.arange(100).reshape(10, 10).sum(axis=0))
    assert "sums: " in capsys.readouterr().err


def test_track_without_futures_returns_at_once():
    stream = io.StringIO()
    with show_progress():
        track(da.ones(3), "local", stream=stream)  # not persisted on a cluster
    assert stream.getvalue() == ""
