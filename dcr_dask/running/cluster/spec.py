"""SLURM/PBS cluster specifications: the YAML files, their validation, and the options.

:func:`load_cluster_spec` reads and checks a specification (``deploy/slurm.yaml``
and ``deploy/pbs.yaml`` are documented examples, the packaged copies in
``dcr_dask/running/deploy_specs/`` are the defaults, :func:`default_cluster_spec`).
:func:`with_overrides` applies the local-cluster sizing options to it, and
:func:`check_cluster_options` checks the choice of cluster before anything starts.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from dask.utils import parse_bytes

from dcr_dask.errors import ConfigErrors, InputError
from dcr_dask.running.cluster.errors import ClusterOptionError, ClusterSpecError

#: The values ``dask_client(cluster=...)`` and ``--cluster`` accept.
CLUSTER_KINDS: tuple[str, ...] = ("local", "slurm", "pbs")

#: Directory of the cluster specifications shipped inside the package.
PACKAGED_SPECS = Path(__file__).parent.parent / "deploy_specs"

_LOOPBACK = "127.0.0.1"


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
    data = _read_spec_file(path)
    values, errors = _check_spec_keys(path, data, kind)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)
    if "memory" in values:
        values["memory"] = str(values["memory"])
    if "minimum_jobs" in values:
        values["jobs"] = None
    return ClusterSpec(kind=kind, path=str(path), **values)


def _read_spec_file(path: Path) -> Mapping[Any, Any]:
    """Read a specification file: its YAML mapping (empty for an empty file)."""
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
    return data


def _check_spec_keys(
    path: Path, data: Mapping[Any, Any], kind: str
) -> tuple[dict[str, Any], list[ClusterSpecError]]:
    """Check every key of a specification: the values that pass, and the problems."""
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
    return values, errors


@dataclasses.dataclass(frozen=True)
class _Rule:
    check: Callable[[object], str | None]  # value -> problem (str) or None
    kinds: tuple[str, ...] | None = None


def _optional(check: Callable[[object], str | None]) -> Callable[[object], str | None]:
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
