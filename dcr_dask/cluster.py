"""Where a run executes: a local Dask cluster by default, or a given scheduler."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from distributed import Client, LocalCluster

log = logging.getLogger(__name__)


@contextlib.contextmanager
def dask_client(
    client: Client | None = None,
    *,
    scheduler_address: str | None = None,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    memory_limit: str | float | None = "auto",
    processes: bool = True,
) -> Iterator[Client]:
    """Yield a Dask client, starting (and afterwards closing) one if needed.

    Parameters
    ----------
    client : distributed.Client, optional
        Use this client as it is; it is not closed.
    scheduler_address : str, optional
        Connect to a running scheduler (``tcp://host:8786``); the connection is
        closed at the end, the scheduler is left running.
    n_workers, threads_per_worker : int
        Size of the local cluster started when neither of the above is given.
    memory_limit : str or float or None
        Memory limit of each local worker (``"4GiB"``, bytes, ``"auto"``).
    processes : bool
        Local workers as processes (True) or threads in this process.

    Yields
    ------
    distributed.Client
        The client to submit work to.

    Notes
    -----
    The local cluster listens on 127.0.0.1 only, and its dashboard too.
    """
    if client is not None:
        yield client
        return
    if scheduler_address is not None:
        with Client(scheduler_address) as remote:
            log.info("connected to the Dask scheduler at %s", scheduler_address)
            yield remote
        return
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            memory_limit=memory_limit,
            processes=processes,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as local,
    ):
        log.info(
            "started a local Dask cluster: %d workers x %d threads, dashboard %s",
            n_workers,
            threads_per_worker,
            local.dashboard_link,
        )
        yield local
