"""Starting and reaching clusters: :func:`dask_client`, for a local cluster, a running
scheduler or dask-jobqueue SLURM/PBS jobs (:func:`make_jobqueue_cluster`)."""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
from distributed import Client, LocalCluster
from distributed.security import Security

from dcr_dask.running.cluster.errors import ClusterError, ClusterOptionError, ClusterSpecError
from dcr_dask.running.cluster.security import make_security
from dcr_dask.running.cluster.spec import (
    _LOOPBACK,
    ClusterSpec,
    check_cluster_options,
    load_cluster_spec,
    with_overrides,
)

# The package's logger, as before the package was split: log lines keep their name.
log = logging.getLogger(__package__)

_JOBQUEUE_INSTALL = 'pip install "dcr-dask[jobqueue]"'


def make_jobqueue_cluster(spec: ClusterSpec, *, security: Security | None = None) -> Any:
    """Build (but do not scale) the dask-jobqueue cluster a specification describes.

    The scheduler starts at once; no job is submitted until the cluster is
    scaled. ``cluster.job_script()`` shows the script each job would run.

    Parameters
    ----------
    spec : ClusterSpec
        A validated specification (:func:`load_cluster_spec`).
    security : distributed.security.Security, optional
        TLS settings for the scheduler and the workers.

    Returns
    -------
    dask_jobqueue.SLURMCluster or dask_jobqueue.PBSCluster
        The cluster; close it to cancel its jobs.

    Raises
    ------
    ClusterError
        If dask-jobqueue is not installed.
    ClusterSpecError
        If TLS with a temporary certificate has no ``shared_temp_directory``.
    """
    try:
        import dask_jobqueue
    except ImportError as error:
        raise ClusterError(
            f"--cluster {spec.kind} needs dask-jobqueue, which is not installed: "
            f"{_JOBQUEUE_INSTALL}"
        ) from error
    cls = dask_jobqueue.SLURMCluster if spec.kind == "slurm" else dask_jobqueue.PBSCluster
    worker_args = list(spec.worker_extra_args)
    scheduler_options: dict[str, Any] = {"dashboard_address": spec.dashboard_address}
    if spec.scheduler_host is not None:
        scheduler_options["host"] = spec.scheduler_host
    elif spec.interface is not None:
        scheduler_options["interface"] = spec.interface
    else:
        scheduler_options["host"] = _LOOPBACK
    if spec.loopback_only:
        # Nothing is reachable from another host: workers listen on loopback too.
        worker_args += ["--host", _LOOPBACK, "--dashboard-address", f"{_LOOPBACK}:0"]
    kwargs: dict[str, Any] = {
        "queue": spec.queue,
        "account": spec.account,
        "cores": spec.cores,
        "processes": spec.processes,
        "memory": spec.memory,
        "walltime": spec.walltime,
        "job_script_prologue": [*spec.job_script_prologue, _KEEP_ALLOCATOR_ADAPTIVE],
        "interface": spec.interface,
        "local_directory": spec.local_directory,
        "log_directory": spec.log_directory,
        "job_extra_directives": list(spec.job_extra_directives),
        "job_directives_skip": list(spec.job_directives_skip),
        "worker_extra_args": worker_args,
        "job_name": spec.job_name,
        "python": spec.python or sys.executable,
        "death_timeout": spec.death_timeout,
        "scheduler_options": scheduler_options,
    }
    if spec.kind == "pbs":
        kwargs["resource_spec"] = spec.resource_spec
    if security is not None:
        in_memory = any(
            value is not None and "\n" in value
            for value in security.get_tls_config_for_role("worker").values()
        )
        if in_memory and spec.shared_temp_directory is None:
            raise ClusterSpecError(
                spec.path,
                "shared_temp_directory",
                None,
                "--tls without certificate files writes the session's certificate for "
                "the jobs: set shared_temp_directory to a directory the jobs can read, "
                "or give --tls-ca-file, --tls-cert and --tls-key",
            )
        kwargs.update(
            security=security,
            protocol="tls://",
            shared_temp_directory=spec.shared_temp_directory,
        )
    return cls(**kwargs)


@contextlib.contextmanager
def dask_client(
    client: Client | None = None,
    *,
    scheduler_address: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | float | None = "auto",
    processes: bool = True,
    cluster: str = "local",
    cluster_spec: str | Path | None = None,
    tls: bool = False,
    security: Security | None = None,
    tls_ca_file: str | Path | None = None,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
) -> Iterator[Client]:
    """Yield a Dask client, starting (and afterwards closing) a cluster if needed.

    Parameters
    ----------
    client : distributed.Client, optional
        Use this client as it is; it is not closed, and the other options are ignored.
    scheduler_address : str, optional
        Connect to a running scheduler (``tcp://host:8786``, ``tls://host:8786``);
        the connection is closed at the end, the scheduler is left running.
    n_workers, threads_per_worker : int, optional
        Size of the local cluster (default 2 workers of 1 thread). With
        ``cluster="slurm"``/``"pbs"``, when given, they override the
        specification: ``n_workers`` workers in total (a fixed number of jobs),
        ``threads_per_worker`` threads per worker process.
    memory_limit : str or float or None
        Memory limit of each local worker (``"4GiB"``, bytes, ``"auto"``); for
        SLURM/PBS, unless ``"auto"`` or None, the memory of each worker process.
    processes : bool
        Local workers as processes (True) or threads in this process.
    cluster : {"local", "slurm", "pbs"}
        Start a local cluster, or submit dask-jobqueue worker jobs to SLURM or PBS.
    cluster_spec : str or Path, optional
        YAML specification of the SLURM/PBS jobs (:func:`load_cluster_spec`);
        default the packaged ``deploy_specs/<cluster>.yaml``.
    tls : bool
        Encrypt and authenticate every connection with mutual TLS; without
        certificate files, with a self-signed certificate made for this session.
    security : distributed.security.Security, optional
        TLS settings to use as they are (implies ``tls``).
    tls_ca_file, tls_cert, tls_key : str or Path, optional
        Certificate authority, certificate and key files (imply ``tls``); they
        are needed to reach a ``tls://`` scheduler.

    Yields
    ------
    distributed.Client
        The client to submit work to; ``client.security`` holds the TLS settings.

    Raises
    ------
    ClusterOptionError
        For an unknown ``cluster``, or options that do not go together
        (``scheduler_address`` with SLURM/PBS, TLS settings that do not match the
        scheduler address), before anything starts.
    ClusterSpecError, ConfigErrors, InputError
        For a bad or missing specification file, before any job is submitted.
    ClusterError
        If dask-jobqueue or the submit command (``sbatch``/``qsub``) is missing,
        the submit command refuses a job, or no worker connects in time.

    Notes
    -----
    A local cluster, its dashboard and its workers listen on 127.0.0.1 only; with
    TLS they accept only peers presenting a certificate signed by the CA. A
    SLURM/PBS scheduler listens on 127.0.0.1 too unless the specification names
    an ``interface`` or a ``scheduler_host``. A SLURM/PBS cluster is closed, and
    its jobs cancelled, when the block ends, also on error.
    """
    if client is not None:
        yield client
        return
    spec, security = _check_client_options(
        scheduler_address=scheduler_address,
        cluster=cluster,
        cluster_spec=cluster_spec,
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        memory_limit=memory_limit,
        tls=tls,
        security=security,
        tls_ca_file=tls_ca_file,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    with _start_client(
        scheduler_address=scheduler_address,
        spec=spec,
        security=security,
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        memory_limit=memory_limit,
        processes=processes,
    ) as started:
        yield started


def _check_client_options(
    *,
    scheduler_address: str | None,
    cluster: str,
    cluster_spec: str | Path | None,
    n_workers: int | None,
    threads_per_worker: int | None,
    memory_limit: str | float | None,
    tls: bool,
    security: Security | None,
    tls_ca_file: str | Path | None,
    tls_cert: str | Path | None,
    tls_key: str | Path | None,
) -> tuple[ClusterSpec | None, Security | None]:
    """Check the options of :func:`dask_client`: the SLURM/PBS specification (None for
    no jobs) and the TLS settings (None for plain TCP)."""
    check_cluster_options(scheduler_address, cluster, cluster_spec)
    # Validate everything (spec file, certificate files) before anything starts.
    spec: ClusterSpec | None = None
    if cluster != "local":
        spec = with_overrides(
            load_cluster_spec(cluster_spec, cluster),
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            memory_limit=memory_limit,
        )
    if scheduler_address is not None and tls and security is None and tls_cert is None:
        raise ClusterOptionError(
            f"--tls with --scheduler {scheduler_address} needs the cluster's certificate "
            "files: --tls-ca-file, --tls-cert and --tls-key"
        )
    security = make_security(
        tls=tls,
        security=security,
        tls_ca_file=tls_ca_file,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    return spec, security


@contextlib.contextmanager
def _start_client(
    *,
    scheduler_address: str | None,
    spec: ClusterSpec | None,
    security: Security | None,
    n_workers: int | None,
    threads_per_worker: int | None,
    memory_limit: str | float | None,
    processes: bool,
) -> Iterator[Client]:
    """Connect to the running scheduler, or start the SLURM/PBS or the local cluster."""
    if scheduler_address is not None:
        with _remote_client(scheduler_address, security) as remote:
            yield remote
    elif spec is not None:
        with _jobqueue_client(spec, security) as batch:
            yield batch
    else:
        with _local_client(
            n_workers=2 if n_workers is None else n_workers,
            threads_per_worker=1 if threads_per_worker is None else threads_per_worker,
            memory_limit=memory_limit,
            processes=processes,
            security=security,
        ) as local:
            yield local


@contextlib.contextmanager
def _remote_client(address: str, security: Security | None) -> Iterator[Client]:
    uses_tls = address.startswith("tls://")
    if uses_tls and security is None:
        raise ClusterOptionError(
            f"the scheduler {address} uses TLS: give --tls-ca-file, --tls-cert and --tls-key"
        )
    if security is not None and not uses_tls:
        raise ClusterOptionError(
            f"TLS settings were given but the scheduler address {address} is not tls://..."
        )
    with Client(address, security=security) as remote:
        log.info(
            "connected to the Dask scheduler at %s (%d workers), dashboard %s",
            address,
            len(remote.scheduler_info().get("workers", {})),
            remote.dashboard_link,
        )
        yield remote


#: ``distributed.nanny.pre-spawn-environ``'s ``MALLOC_TRIM_THRESHOLD_`` as distributed
#: ships it: glibc then gives every array above 128 KiB its own fresh pages
#: (``mmap``), so each large temporary of the fit's update costs page faults.
_DISTRIBUTED_TRIM_THRESHOLD = 65536


#: The job script's line that does what :func:`worker_environ` does for a local
#: cluster: the nanny drops distributed's ``MALLOC_TRIM_THRESHOLD_`` (a value the
#: job exports itself, e.g. in ``job_script_prologue``, still reaches the workers).
_KEEP_ALLOCATOR_ADAPTIVE = (
    "export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON=\"{'MALLOC_TRIM_THRESHOLD_': None}\""
)


def worker_environ() -> dict[str, Any]:
    """The environment a local cluster's nannies give their workers.

    distributed's ``pre-spawn-environ``, except that its ``MALLOC_TRIM_THRESHOLD_``
    is dropped while it is distributed's own 65536, so that the workers' glibc
    keeps its adaptive thresholds: large arrays freed by one step of the fit
    are reused by the next instead of being mapped afresh (issue 17: the fit's
    update took about a fifth less CPU). A value the user set in the Dask
    configuration, or ``MALLOC_TRIM_THRESHOLD_`` in the environment (which the
    workers inherit), is kept.

    Returns
    -------
    dict
        The mapping for ``distributed.nanny.pre-spawn-environ`` (a None value
        unsets a variable).
    """
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    if str(environ.get("MALLOC_TRIM_THRESHOLD_")) == str(_DISTRIBUTED_TRIM_THRESHOLD):
        environ["MALLOC_TRIM_THRESHOLD_"] = None
    return environ


@contextlib.contextmanager
def _local_client(
    *,
    n_workers: int,
    threads_per_worker: int,
    memory_limit: str | float | None,
    processes: bool,
    security: Security | None,
) -> Iterator[Client]:
    tls_options: dict[str, Any] = {}
    if security is not None:
        tls_options = {"protocol": "tls://", "security": security}
    # the nannies read their workers' environment when they are made
    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ()}):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            memory_limit=memory_limit,
            processes=processes,
            host=_LOOPBACK,
            dashboard_address=f"{_LOOPBACK}:0",
            **tls_options,
        )
    with (
        cluster,
        Client(cluster, security=security) as local,
    ):
        log.info(
            "started a local Dask cluster at %s: %d workers x %d threads, dashboard %s",
            cluster.scheduler_address,
            n_workers,
            threads_per_worker,
            local.dashboard_link,
        )
        yield local


@contextlib.contextmanager
def _jobqueue_client(spec: ClusterSpec, security: Security | None) -> Iterator[Client]:
    submit = "sbatch" if spec.kind == "slurm" else "qsub"
    if shutil.which(submit) is None:
        raise ClusterError(
            f"--cluster {spec.kind}: {submit} is not on PATH; run on a host that can submit "
            f"{spec.kind.upper()} jobs (a login node)"
        )
    with contextlib.ExitStack() as stack:
        batch = make_jobqueue_cluster(spec, security=security)
        stack.callback(_close_cluster, batch, spec)
        if spec.loopback_only:
            log.warning(
                "the %s scheduler listens on %s only: jobs on other hosts cannot reach it "
                "(set 'interface' or 'scheduler_host' in %s)",
                spec.kind,
                _LOOPBACK,
                spec.path,
            )
        # A refused submission (sbatch/qsub exits non-zero) only shows up in the
        # event loop's log: watch it, to stop waiting and say why.
        failures = _SubmitFailures()
        submit_log = logging.getLogger("tornado.application")
        submit_log.addHandler(failures)
        stack.callback(submit_log.removeHandler, failures)
        if spec.adaptive:
            batch.adapt(minimum_jobs=spec.minimum_jobs, maximum_jobs=spec.maximum_jobs)
            scaling = f"{spec.minimum_jobs}-{spec.maximum_jobs} jobs (adaptive)"
        else:
            batch.scale(jobs=spec.jobs)
            scaling = f"{spec.jobs} job(s)"
        log.info(
            "submitting %s %s of %d worker process(es), %d cores, %s each; scheduler %s",
            spec.kind,
            scaling,
            spec.processes,
            spec.cores,
            spec.memory,
            batch.scheduler_address,
        )
        client = stack.enter_context(Client(batch, security=security))
        _wait_for_a_worker(client, batch, spec, failures)
        submit_log.removeHandler(failures)
        log.info(
            "%s cluster ready: %d worker(s) connected, dashboard %s",
            spec.kind,
            len(client.scheduler_info()["workers"]),
            client.dashboard_link,
        )
        yield client


class _SubmitFailures(logging.Handler):
    """Collect the errors of job submission commands logged by the event loop."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        text = str(error) if error is not None else ""
        if "Command exited with non-zero exit code" in text:
            self.messages.append(text)


def _wait_for_a_worker(
    client: Client, batch: Any, spec: ClusterSpec, failures: _SubmitFailures
) -> None:
    submit = "sbatch" if spec.kind == "slurm" else "qsub"
    deadline = time.monotonic() + spec.worker_timeout
    while True:
        if failures.messages:
            detail = failures.messages[0]
            if "stderr:" in detail:
                detail = detail.split("stderr:", 1)[1]
            detail = " ".join(detail.split())
            raise ClusterError(
                f"{submit} refused the {spec.kind} job described by {spec.path}: {detail}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            client.wait_for_workers(1, timeout=min(1.0, remaining))
        except TimeoutError:
            continue
        return
    jobs = sorted(str(job.job_id) for job in batch.workers.values() if job.job_id)
    where = f"; logs in {spec.log_directory}" if spec.log_directory else ""
    reach = (
        f"; it listens on {_LOOPBACK} only, so the jobs must run on this host "
        f"(set 'interface' or 'scheduler_host' in {spec.path})"
        if spec.loopback_only
        else ""
    )
    raise ClusterError(
        f"no {spec.kind} worker connected to the scheduler at {batch.scheduler_address} "
        f"within {spec.worker_timeout:g} s (worker_timeout in {spec.path}; job ids: "
        f"{', '.join(jobs) or 'none submitted'}); check the queue "
        f"({'squeue' if spec.kind == 'slurm' else 'qstat'}){where}{reach}"
    )


def _close_cluster(batch: Any, spec: ClusterSpec) -> None:
    """Close a jobqueue cluster, cancelling its jobs; log (not raise) a failure."""
    try:
        batch.close()
    except Exception:  # never mask the error that ended the run
        log.warning("closing the %s cluster failed; check for leftover jobs", spec.kind)
        log.debug("close failure", exc_info=True)
    else:
        log.info("closed the %s cluster and cancelled its jobs", spec.kind)
    # dask-jobqueue writes an in-memory certificate and key for the jobs to
    # temporary files kept open on the cluster (removed when closed): do not
    # leave them in the shared directory until garbage collection.
    for name, value in list(vars(batch).items()):
        if name.startswith("_job_") and hasattr(value, "close") and hasattr(value, "name"):
            with contextlib.suppress(OSError):
                value.close()
