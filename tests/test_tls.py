"""TLS: a local cluster started with `dask_client(tls=True)` listens on
tls://127.0.0.1 only and serves only clients holding a certificate of its CA;
certificate files work as well as a session certificate; and `dcr-dask run --tls`
gives the same coadd as a plain run."""

import asyncio
import socket
import ssl
import time

import numpy as np
import pytest
import xarray as xr
from distributed import Client
from distributed.comm import connect
from distributed.security import Security

from dcr_dask.cli import main
from dcr_dask.running.cluster import dask_client

pytestmark = pytest.mark.slow

BAND = ["--set", "effectiveWavelength=478", "--set", "bandwidth=147"]
# One subregion and few iterations: the same numbers on any cluster, in seconds.
FAST = ["--set", "subregionSize=[96,96]", "--set", "maxNumIter=3"]
REFUSAL_SECONDS = 15


@pytest.fixture(scope="module")
def tls_client():
    with dask_client(tls=True, n_workers=2) as client:
        yield client


async def _identity(address, security):
    """Ask the scheduler who it is over one raw Dask connection."""
    args = security.get_connection_args("client") if security is not None else {}
    comm = await connect(address, timeout=5, **args)
    try:
        await comm.write({"op": "identity"})
        return await comm.read()
    finally:
        comm.abort()


def _refused(address, security=None):
    started = time.monotonic()
    with pytest.raises((OSError, TypeError, ValueError)):
        asyncio.run(_identity(address, security))
    assert time.monotonic() - started < REFUSAL_SECONDS


def test_the_cluster_listens_on_tls_loopback_only(tls_client):
    assert tls_client.scheduler.address.startswith("tls://127.0.0.1:")
    workers = tls_client.scheduler_info()["workers"]
    assert len(workers) == 2
    assert all(address.startswith("tls://127.0.0.1:") for address in workers)
    assert tls_client.dashboard_link.startswith("http://127.0.0.1:")
    assert tls_client.security.require_encryption


def test_a_client_with_the_certificate_computes(tls_client):
    assert tls_client.submit(sum, [1, 2, 3]).result() == 6
    with Client(tls_client.scheduler.address, security=tls_client.security, timeout=10) as other:
        assert other.submit(pow, 2, 10).result() == 1024


def test_clients_without_the_certificate_are_refused(tls_client):
    address = tls_client.scheduler.address
    assert asyncio.run(_identity(address, tls_client.security))["type"] == "Scheduler"
    _refused(address.replace("tls://", "tcp://"))  # plain TCP to the TLS port
    _refused(address)  # TLS without any certificate
    _refused(address, Security.temporary())  # a certificate of another CA
    assert tls_client.submit(sum, [1]).result() == 1  # still serving


def test_the_scheduler_requires_a_client_certificate(tls_client):
    # A TLS client that trusts the cluster's CA but presents no certificate of its
    # own: the handshake completes, then the scheduler refuses the connection.
    host, port = tls_client.scheduler.address.removeprefix("tls://").rsplit(":", 1)
    context = ssl.create_default_context(cadata=tls_client.security.tls_ca_file)
    context.check_hostname = False
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw) as connection,
    ):
        try:
            connection.sendall(b"\0" * 8)
            answer = connection.recv(8)
        except OSError as error:  # ssl.SSLError: an alert, or the connection dropped
            answer = error
    assert answer == b"" or isinstance(answer, OSError), answer


@pytest.fixture
def certificate_files(tmp_path):
    """A CA certificate, a certificate and its key as PEM files (self-signed)."""
    temporary = Security.temporary()
    files = {}
    for name, text in (
        ("ca.pem", temporary.tls_ca_file),
        ("cert.pem", temporary.tls_client_cert),
        ("key.pem", temporary.tls_client_key),
    ):
        path = tmp_path / name
        path.write_text(text)
        path.chmod(0o600)
        files[name] = path
    return files


def test_certificate_files_for_the_cluster_and_a_tls_scheduler_address(certificate_files):
    files = {
        "tls_ca_file": certificate_files["ca.pem"],
        "tls_cert": certificate_files["cert.pem"],
        "tls_key": certificate_files["key.pem"],
    }
    with dask_client(n_workers=1, **files) as local:
        address = local.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        with dask_client(scheduler_address=address, **files) as remote:
            assert remote.submit(pow, 3, 3).result() == 27
        _refused(address, Security.temporary())


def test_run_with_tls_matches_a_plain_run(cli_tile, cli_local_run, tmp_path, capsys):
    directory, plain = cli_tile, cli_local_run
    output = tmp_path / "tls.zarr"
    argv = ["-q", "run", str(directory / "warps"), "--output", str(output), "--tls"]
    assert main([*argv, *BAND, *FAST]) == 0
    assert "wrote" in capsys.readouterr().out
    expected, got = xr.open_zarr(plain), xr.open_zarr(output)
    for name in ("dcr_model", "coadd", "variance", "mask", "n_image"):
        np.testing.assert_array_equal(expected[name].values, got[name].values)
