"""Where a run executes: a local Dask cluster, a running scheduler, or SLURM/PBS jobs.

:func:`dask_client` is the one entry point. By default it starts a
``LocalCluster`` that listens on 127.0.0.1 only. ``scheduler_address`` connects
to a running scheduler instead. ``cluster="slurm"`` or ``"pbs"`` starts a
dask-jobqueue ``SLURMCluster`` / ``PBSCluster`` described by a YAML file
(:func:`load_cluster_spec`; ``deploy/slurm.yaml`` and ``deploy/pbs.yaml`` are
documented examples, packaged copies are the defaults). ``tls=True`` (or
certificate files) encrypts and authenticates every connection with mutual TLS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from dask.utils import parse_bytes
from distributed import Client, LocalCluster
from distributed.security import Security

from dcr_dask.errors import ConfigError, ConfigErrors, DcrDaskError, InputError

log = logging.getLogger(__name__)

#: The values ``dask_client(cluster=...)`` and ``--cluster`` accept.
CLUSTER_KINDS: tuple[str, ...] = ("local", "slurm", "pbs")

#: Directory of the cluster specifications shipped inside the package.
PACKAGED_SPECS = Path(__file__).parent / "deploy_specs"

_LOOPBACK = "127.0.0.1"
_JOBQUEUE_INSTALL = 'pip install "dcr-dask[jobqueue]"'


class ClusterError(DcrDaskError, RuntimeError):
    """A cluster could not be started or reached."""


class ClusterOptionError(DcrDaskError, ValueError):
    """Options of :func:`dask_client` (or ``dcr-dask run``) that do not go together."""


class ClusterSpecError(ConfigError):
    """One bad key or value in a cluster specification file.

    Parameters
    ----------
    filename : str or Path
        The YAML file.
    key : str or None
        Dotted key at fault (``adapt.maximum_jobs``); None for the file as a whole.
    value : object
        The offending value.
    message : str
        Why it is not allowed.
    missing : bool
        The key is absent (``value`` is not shown).
    """

    def __init__(
        self,
        filename: str | Path,
        key: str | None,
        value: object,
        message: str,
        *,
        missing: bool = False,
    ):
        super().__init__(key or "", value, message)
        self.filename = str(filename)
        self.key = key
        if key is None:
            text = f"{filename}: {message}"
        elif missing:
            text = f"{filename}: {key}: {message}"
        else:
            text = f"{filename}: {key} = {value!r}: {message}"
        self.args = (text,)


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """A validated SLURM or PBS cluster specification (see :func:`load_cluster_spec`).

    Attributes
    ----------
    kind : str
        ``"slurm"`` or ``"pbs"``.
    path : str
        The file it was read from (for messages).
    queue, account : str or None
        Partition/queue and account (``#SBATCH -p/-A``, ``#PBS -q/-A``).
    cores : int
        Cores per job (threads in all its worker processes).
    processes : int
        Dask worker processes per job.
    memory : str
        Memory per job (``"8GiB"``), shared by its worker processes.
    walltime : str
        Time limit of each job (``"01:00:00"``).
    job_script_prologue : tuple of str
        Shell lines run before the worker starts (``module load``, ``source``).
    interface : str or None
        Network interface of workers and scheduler (``ib0``).
    scheduler_host : str or None
        Address the scheduler listens on; default the interface's, else 127.0.0.1.
    dashboard_address : str
        Address of the scheduler's dashboard.
    local_directory, log_directory, shared_temp_directory : str or None
        Worker scratch space, job log files, and (for ``tls`` without
        certificate files) a directory shared with the jobs for the certificates.
    job_extra_directives, job_directives_skip, worker_extra_args : tuple of str
        Extra ``#SBATCH``/``#PBS`` lines, header lines to drop, extra ``dask
        worker`` options.
    job_name : str
        Name of the jobs.
    python : str or None
        Interpreter that runs the workers; None for this one (``sys.executable``).
    death_timeout : float
        Seconds a worker waits for an unreachable scheduler before exiting.
    worker_timeout : float
        Seconds to wait for the first worker before giving up.
    resource_spec : str or None
        PBS only: ``#PBS -l`` resources (default from cores and memory).
    jobs : int or None
        Fixed number of jobs (None with adaptive scaling).
    minimum_jobs, maximum_jobs : int or None
        Adaptive scaling bounds (None with a fixed number of jobs).
    """

    kind: str
    path: str
    queue: str | None = None
    account: str | None = None
    cores: int = 1
    processes: int = 1
    memory: str = "4GiB"
    walltime: str = "01:00:00"
    job_script_prologue: tuple[str, ...] = ()
    interface: str | None = None
    scheduler_host: str | None = None
    dashboard_address: str = f"{_LOOPBACK}:0"
    local_directory: str | None = None
    log_directory: str | None = None
    shared_temp_directory: str | None = None
    job_extra_directives: tuple[str, ...] = ()
    job_directives_skip: tuple[str, ...] = ()
    worker_extra_args: tuple[str, ...] = ()
    job_name: str = "dcr-dask-worker"
    python: str | None = None
    death_timeout: float = 60.0
    worker_timeout: float = 600.0
    resource_spec: str | None = None
    jobs: int | None = 1
    minimum_jobs: int | None = None
    maximum_jobs: int | None = None

    @property
    def adaptive(self) -> bool:
        """True if the number of jobs follows the load between the adaptive bounds."""
        return self.minimum_jobs is not None

    @property
    def loopback_only(self) -> bool:
        """True if the scheduler listens on 127.0.0.1 (jobs must run on this host)."""
        return self.interface is None and self.scheduler_host in (None, _LOOPBACK, "localhost")


def default_cluster_spec(kind: str) -> Path:
    """The packaged specification used when none is given.

    Parameters
    ----------
    kind : str
        ``"slurm"`` or ``"pbs"``.

    Returns
    -------
    Path
        ``dcr_dask/running/deploy_specs/<kind>.yaml`` (identical to ``deploy/<kind>.yaml``).
    """
    _check_kind(kind, ("slurm", "pbs"))
    return PACKAGED_SPECS / f"{kind}.yaml"


def load_cluster_spec(path: str | Path | None, kind: str) -> ClusterSpec:
    """Read and validate a SLURM or PBS cluster specification (YAML).

    Every key is optional; unknown keys are errors. The keys are those of
    :class:`ClusterSpec`, plus either ``jobs: N`` (a fixed number of jobs,
    default 1) or ``adapt: {minimum_jobs: M, maximum_jobs: N}`` (adaptive
    scaling, ``1 <= M <= N``), and ``cluster: slurm|pbs`` which, if present,
    must match ``kind``. ``resource_spec`` is for PBS only.

    Parameters
    ----------
    path : str or Path or None
        The YAML file; None for the packaged default of ``kind``.
    kind : str
        ``"slurm"`` or ``"pbs"``.

    Returns
    -------
    ClusterSpec
        The validated specification.

    Raises
    ------
    InputError
        If the file does not exist or cannot be read.
    ClusterSpecError
        For one problem, naming the file, the key and the value.
    ConfigErrors
        For several problems (each a :class:`ClusterSpecError`).
    """
    _check_kind(kind, ("slurm", "pbs"))
    path = default_cluster_spec(kind) if path is None else Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError("no such cluster specification file", filename=str(path)) from None
    except OSError as error:
        raise InputError(
            f"cannot read the cluster specification: {error}", filename=str(path)
        ) from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ClusterSpecError(path, None, None, f"not valid YAML: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ClusterSpecError(
            path, None, data, f"must be a mapping of keys to values, not {type(data).__name__}"
        )
    errors: list[ClusterSpecError] = []
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "cluster":
            if value != kind:
                errors.append(
                    ClusterSpecError(path, key, value, f"this file is for {value!r}, not {kind!r}")
                )
            continue
        if key == "adapt":
            values.update(_check_adapt(path, value, errors))
            continue
        rule = _RULES.get(key)
        if rule is not None and rule.kinds is not None and kind not in rule.kinds:
            only = " and ".join(k.upper() for k in rule.kinds)
            errors.append(ClusterSpecError(path, key, value, f"only for {only} clusters"))
            continue
        if rule is None:
            known = sorted(k for k, r in _RULES.items() if r.kinds is None or kind in r.kinds)
            errors.append(
                ClusterSpecError(
                    path,
                    str(key),
                    value,
                    f"unknown key for a {kind} cluster; known keys: "
                    f"{', '.join([*known, 'adapt', 'cluster'])}",
                )
            )
            continue
        problem = rule.check(value)
        if problem:
            errors.append(ClusterSpecError(path, key, value, problem))
        else:
            values[key] = tuple(value) if isinstance(value, list) else value
    if "jobs" in data and "adapt" in data:
        errors.append(
            ClusterSpecError(path, "jobs", data["jobs"], "give either 'jobs' or 'adapt', not both")
        )
    if not errors and values.get("processes", 1) > values.get("cores", 1):
        errors.append(
            ClusterSpecError(
                path,
                "processes",
                values["processes"],
                f"more worker processes than cores ({values.get('cores', 1)})",
            )
        )
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)
    if "memory" in values:
        values["memory"] = str(values["memory"])
    if "minimum_jobs" in values:
        values["jobs"] = None
    return ClusterSpec(kind=kind, path=str(path), **values)


@dataclasses.dataclass(frozen=True)
class _Rule:
    check: Any  # value -> problem (str) or None
    kinds: tuple[str, ...] | None = None


def _optional(check):
    return lambda value: None if value is None else check(value)


def _string(value: object) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must be a non-empty string"


def _positive_int(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return "must be a whole number of at least 1"
    return None


def _positive_number(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return "must be a positive number of seconds"
    return None


def _memory(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return "must be an amount of memory such as '4GiB' or '16GB'"
    try:
        size = parse_bytes(value)
    except (ValueError, TypeError):
        return "must be an amount of memory such as '4GiB' or '16GB'"
    return None if size > 0 else "must be more than 0 bytes"


_WALLTIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")


def _walltime(value: object) -> str | None:
    if not isinstance(value, str) or not _WALLTIME.match(value):
        return "must be a time limit such as '01:30:00' (HH:MM:SS, quoted in YAML)"
    return None


def _string_list(value: object) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return "must be a list of strings"
    return None


_RULES: dict[str, _Rule] = {
    "queue": _Rule(_optional(_string)),
    "account": _Rule(_optional(_string)),
    "cores": _Rule(_positive_int),
    "processes": _Rule(_positive_int),
    "memory": _Rule(_memory),
    "walltime": _Rule(_walltime),
    "job_script_prologue": _Rule(_string_list),
    "interface": _Rule(_optional(_string)),
    "scheduler_host": _Rule(_optional(_string)),
    "dashboard_address": _Rule(_string),
    "local_directory": _Rule(_optional(_string)),
    "log_directory": _Rule(_optional(_string)),
    "shared_temp_directory": _Rule(_optional(_string)),
    "job_extra_directives": _Rule(_string_list),
    "job_directives_skip": _Rule(_string_list),
    "worker_extra_args": _Rule(_string_list),
    "job_name": _Rule(_string),
    "python": _Rule(_optional(_string)),
    "death_timeout": _Rule(_positive_number),
    "worker_timeout": _Rule(_positive_number),
    "jobs": _Rule(_positive_int),
    "resource_spec": _Rule(_optional(_string), kinds=("pbs",)),
}


def _check_adapt(path: Path, value: object, errors: list[ClusterSpecError]) -> dict[str, int]:
    if not isinstance(value, Mapping):
        errors.append(
            ClusterSpecError(
                path, "adapt", value, "must be a mapping: {minimum_jobs: M, maximum_jobs: N}"
            )
        )
        return {}
    found: dict[str, int] = {}
    for key, bound in value.items():
        name = f"adapt.{key}"
        if key not in ("minimum_jobs", "maximum_jobs"):
            errors.append(
                ClusterSpecError(
                    path, name, bound, "unknown key; known keys: minimum_jobs, maximum_jobs"
                )
            )
        elif problem := _positive_int(bound):
            reason = " (the run waits for a worker before it starts)" if key[:3] == "min" else ""
            errors.append(ClusterSpecError(path, name, bound, problem + reason))
        else:
            found[key] = bound
    for key in ("minimum_jobs", "maximum_jobs"):
        if key not in value:
            errors.append(
                ClusterSpecError(
                    path,
                    f"adapt.{key}",
                    None,
                    "missing: adapt needs minimum_jobs and maximum_jobs",
                    missing=True,
                )
            )
    if len(found) == 2 and found["minimum_jobs"] > found["maximum_jobs"]:
        errors.append(
            ClusterSpecError(
                path,
                "adapt.minimum_jobs",
                found["minimum_jobs"],
                f"greater than adapt.maximum_jobs ({found['maximum_jobs']})",
            )
        )
    return found if len(found) == 2 else {}


def _check_kind(kind: object, choices: tuple[str, ...]) -> None:
    if kind not in choices:
        raise ClusterOptionError(
            f"unknown cluster {kind!r}: choose one of {', '.join(repr(c) for c in choices)}"
        )


def with_overrides(
    spec: ClusterSpec,
    *,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | float | None = None,
) -> ClusterSpec:
    """Apply the local-cluster sizing options to a SLURM/PBS specification.

    Parameters
    ----------
    spec : ClusterSpec
        The specification read from YAML.
    n_workers : int, optional
        Dask workers in total: ``ceil(n_workers / processes)`` jobs, a fixed
        number (replaces ``jobs`` or ``adapt``).
    threads_per_worker : int, optional
        Threads of each worker process: ``cores = threads_per_worker * processes``.
    memory_limit : str or int, optional
        Memory of each worker process (``"4GiB"``): ``memory = memory_limit *
        processes``. ``"auto"`` and None leave the specification's value.

    Returns
    -------
    ClusterSpec
        The specification with the overrides applied.

    Raises
    ------
    ClusterOptionError
        If a value makes no sense for a batch job.
    """
    changes: dict[str, Any] = {}
    if n_workers is not None:
        if _positive_int(n_workers):
            raise ClusterOptionError(f"--workers {n_workers!r}: must be at least 1")
        changes.update(
            jobs=math.ceil(n_workers / spec.processes), minimum_jobs=None, maximum_jobs=None
        )
    if threads_per_worker is not None:
        if _positive_int(threads_per_worker):
            raise ClusterOptionError(
                f"--threads-per-worker {threads_per_worker!r}: must be at least 1"
            )
        changes["cores"] = threads_per_worker * spec.processes
    if memory_limit is not None and memory_limit != "auto":
        if isinstance(memory_limit, float) and memory_limit <= 1:
            raise ClusterOptionError(
                f"--memory-limit {memory_limit!r}: a {spec.kind} job needs an amount of "
                "memory such as 4GiB, not a fraction"
            )
        if _memory(memory_limit):
            raise ClusterOptionError(
                f"--memory-limit {memory_limit!r}: not an amount of memory such as 4GiB"
            )
        changes["memory"] = str(parse_bytes(memory_limit) * spec.processes)
    return dataclasses.replace(spec, **changes)


def make_security(
    *,
    tls: bool = False,
    security: Security | None = None,
    tls_ca_file: str | Path | None = None,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
) -> Security | None:
    """The TLS settings of a run, or None for plain TCP.

    Parameters
    ----------
    tls : bool
        Use TLS; without certificate files, a self-signed certificate made for
        this session (``Security.temporary()``, needs ``cryptography``).
    security : distributed.security.Security, optional
        Use these settings as they are.
    tls_ca_file, tls_cert, tls_key : str or Path, optional
        The certificate authority, and the certificate and private key that
        scheduler, workers and client present (the key may be inside the
        certificate file). Giving them implies ``tls``.

    Returns
    -------
    distributed.security.Security or None
        Settings that encrypt every connection and require a certificate
        signed by the CA on both sides; None if TLS is not asked for.

    Raises
    ------
    InputError
        If a certificate file does not exist.
    ClusterOptionError
        If only some of the files are given, or ``cryptography`` is missing.
    """
    files = {"--tls-ca-file": tls_ca_file, "--tls-cert": tls_cert, "--tls-key": tls_key}
    given = {option: value for option, value in files.items() if value is not None}
    if security is not None:
        if given:
            raise ClusterOptionError(
                f"give either a Security object or {', '.join(given)}, not both"
            )
        return security
    if given:
        missing = [o for o in ("--tls-ca-file", "--tls-cert") if files[o] is None]
        if missing:
            raise ClusterOptionError(
                f"TLS with certificate files needs {' and '.join(missing)} too "
                f"(given: {', '.join(given)})"
            )
        for option, value in given.items():
            if not Path(value).is_file():
                raise InputError(f"no such file (given as {option})", filename=str(value))
        ca, cert = str(tls_ca_file), str(tls_cert)
        key = None if tls_key is None else str(tls_key)
        return Security(
            tls_ca_file=ca,
            tls_client_cert=cert,
            tls_client_key=key,
            tls_scheduler_cert=cert,
            tls_scheduler_key=key,
            tls_worker_cert=cert,
            tls_worker_key=key,
            require_encryption=True,
        )
    if not tls:
        return None
    try:
        return Security.temporary()
    except ImportError as error:
        raise ClusterOptionError(
            "--tls without certificate files makes a self-signed certificate, which needs "
            "the 'cryptography' package: pip install cryptography "
            "(or give --tls-ca-file, --tls-cert and --tls-key)"
        ) from error


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
        "job_script_prologue": list(spec.job_script_prologue),
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


def check_cluster_options(
    scheduler_address: str | None, cluster: str, cluster_spec: str | Path | None
) -> None:
    """Check the choice of cluster before anything starts (and before any input is read).

    Parameters
    ----------
    scheduler_address : str or None
        ``--scheduler``.
    cluster : str
        ``--cluster``: one of :data:`CLUSTER_KINDS`.
    cluster_spec : path-like or None
        ``--cluster-spec``; read and checked for SLURM/PBS.

    Raises
    ------
    ClusterOptionError
        For options that contradict each other or a bad specification file.
    """
    _check_kind(cluster, CLUSTER_KINDS)
    if scheduler_address is not None and cluster != "local":
        raise ClusterOptionError(
            f"--scheduler {scheduler_address} and --cluster {cluster} are mutually exclusive: "
            "connect to a running scheduler, or start one with SLURM/PBS jobs, not both"
        )
    if cluster_spec is not None and cluster == "local":
        raise ClusterOptionError(
            f"--cluster-spec {cluster_spec} describes SLURM/PBS jobs: "
            "add --cluster slurm or --cluster pbs"
        )
    if cluster != "local":
        load_cluster_spec(cluster_spec, cluster)


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
    check_cluster_options(scheduler_address, cluster, cluster_spec)
    # Validate everything (spec file, certificate files) before anything starts.
    spec = None
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
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            memory_limit=memory_limit,
            processes=processes,
            host=_LOOPBACK,
            dashboard_address=f"{_LOOPBACK}:0",
            **tls_options,
        ) as cluster,
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
