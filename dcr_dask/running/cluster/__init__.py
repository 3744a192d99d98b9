"""Where a run executes: a local Dask cluster, a running scheduler, or SLURM/PBS jobs.

:func:`dask_client` is the one entry point. By default it starts a
``LocalCluster`` that listens on 127.0.0.1 only. ``scheduler_address`` connects
to a running scheduler instead. ``cluster="slurm"`` or ``"pbs"`` starts a
dask-jobqueue ``SLURMCluster`` / ``PBSCluster`` described by a YAML file
(:func:`load_cluster_spec`; ``deploy/slurm.yaml`` and ``deploy/pbs.yaml`` are
documented examples, packaged copies are the defaults). ``tls=True`` (or
certificate files) encrypts and authenticates every connection with mutual TLS.

Which module holds what (every name below is importable from this package too):

- :mod:`~dcr_dask.running.cluster.spec`: the SLURM/PBS specification
  (:class:`ClusterSpec`, :func:`load_cluster_spec` and its validation rules,
  :func:`default_cluster_spec`, :data:`PACKAGED_SPECS`, :func:`with_overrides`)
  and the check of the cluster options (:data:`CLUSTER_KINDS`,
  :func:`check_cluster_options`).
- :mod:`~dcr_dask.running.cluster.security`: TLS settings (:func:`make_security`).
- :mod:`~dcr_dask.running.cluster.client`: starting or reaching a cluster
  (:func:`dask_client`, :func:`make_jobqueue_cluster`), waiting for the first
  SLURM/PBS worker and closing the cluster.
- :mod:`~dcr_dask.running.cluster.errors`: :class:`ClusterError`,
  :class:`ClusterOptionError`, :class:`ClusterSpecError`.

The packaged specifications are ``dcr_dask/running/deploy_specs/<kind>.yaml``.
"""

from __future__ import annotations

from dcr_dask.running.cluster.client import dask_client, make_jobqueue_cluster
from dcr_dask.running.cluster.errors import ClusterError, ClusterOptionError, ClusterSpecError
from dcr_dask.running.cluster.security import make_security
from dcr_dask.running.cluster.spec import (
    CLUSTER_KINDS,
    PACKAGED_SPECS,
    ClusterSpec,
    check_cluster_options,
    default_cluster_spec,
    load_cluster_spec,
    with_overrides,
)

__all__ = [
    "CLUSTER_KINDS",
    "PACKAGED_SPECS",
    "ClusterError",
    "ClusterOptionError",
    "ClusterSpec",
    "ClusterSpecError",
    "check_cluster_options",
    "dask_client",
    "default_cluster_spec",
    "load_cluster_spec",
    "make_jobqueue_cluster",
    "make_security",
    "with_overrides",
]
