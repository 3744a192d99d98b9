"""Make a DCR-corrected coadd from warp files and write it as a Zarr store.

WARPS are files, glob patterns or directories of afw-style warps
(docs/file-formats.md, "Input warps"). The configuration is the defaults, then
--config FILE (TOML/YAML/JSON; .py only with --allow-python-config), then each
--set FIELD=VALUE. The run goes to --scheduler ADDRESS if given, to Dask
workers submitted as SLURM or PBS jobs with --cluster slurm|pbs (described by
--cluster-spec FILE), else to a local cluster on 127.0.0.1 (--workers,
--threads-per-worker, --memory-limit). --tls encrypts and authenticates every
connection.

--resume goes on from where an interrupted run (Ctrl-C, SIGTERM, a lost
scheduler, a crash) of the same inputs, configuration and --memory-budget
stopped: the stages and groups of subregions it recorded in the work directory
are reused, and the output is the same, bit for bit, as an uninterrupted run's
(docs/file-formats.md, "Work directory").
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import dask

from dcr_dask.commands._common import (
    add_config_arguments,
    config_from_args,
    expand_inputs,
    memory_size,
    positive_float,
    positive_int,
    scheduler_address,
)
from dcr_dask.io.checkpoint import file_record
from dcr_dask.io.ownership import check_output
from dcr_dask.running.cluster import CLUSTER_KINDS, check_cluster_options
from dcr_dask.running.pipeline import run as run_pipeline


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that choose where the computation runs.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser to add the ``where to compute`` options to.
    """
    group = parser.add_argument_group("where to compute")
    group.add_argument(
        "--scheduler",
        type=scheduler_address,
        metavar="ADDRESS",
        help="a running Dask scheduler (tcp://host:port or tls://host:port)",
    )
    group.add_argument(
        "--cluster",
        choices=CLUSTER_KINDS,
        help="a local cluster on 127.0.0.1, or Dask workers as SLURM or PBS jobs "
        "(dask-jobqueue). Without --scheduler or --cluster, the Dask config's "
        "scheduler-address (DASK_SCHEDULER_ADDRESS) is used if set, else a local cluster",
    )
    group.add_argument(
        "--cluster-spec",
        metavar="FILE",
        help="YAML description of the SLURM/PBS jobs (default: the packaged "
        "deploy/slurm.yaml or deploy/pbs.yaml)",
    )
    group.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="local workers (default 2); with slurm/pbs, workers in total (overrides the "
        "spec's jobs)",
    )
    group.add_argument(
        "--threads-per-worker",
        type=positive_int,
        metavar="N",
        help="threads per worker (default 1; with slurm/pbs overrides the spec's cores)",
    )
    group.add_argument(
        "--memory-limit",
        type=memory_size,
        metavar="SIZE",
        help="memory per worker, e.g. 4GiB (default auto; with slurm/pbs overrides the "
        "spec's memory)",
    )
    group.add_argument(
        "--tls",
        action="store_true",
        help="mutual TLS on every connection; without the files below, with a self-signed "
        "certificate made for this run",
    )
    group.add_argument("--tls-ca-file", metavar="FILE", help="TLS certificate authority (PEM)")
    group.add_argument("--tls-cert", metavar="FILE", help="TLS certificate (PEM)")
    group.add_argument("--tls-key", metavar="FILE", help="TLS private key (PEM)")


def cluster_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`~dcr_dask.running.cluster.dask_client` keywords the cluster options describe.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of :func:`add_cluster_arguments`.

    Returns
    -------
    dict
        Keyword arguments for :func:`~dcr_dask.running.cluster.dask_client`; sizing
        options left out on the command line are passed as None (``"auto"`` for
        the memory), so a SLURM/PBS specification keeps its own values.
    """
    scheduler, cluster = args.scheduler, args.cluster
    if scheduler is None and cluster is None:
        # neither option given: the Dask configuration may name a scheduler
        scheduler = dask.config.get("scheduler-address", None) or None
    return {
        "scheduler_address": scheduler,
        "cluster": cluster or "local",
        "cluster_spec": args.cluster_spec,
        "n_workers": args.workers,
        "threads_per_worker": args.threads_per_worker,
        "memory_limit": "auto" if args.memory_limit is None else args.memory_limit,
        "tls": args.tls,
        "tls_ca_file": args.tls_ca_file,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``run`` options to ``parser``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "warps", nargs="+", metavar="WARPS", help="warp files, globs or directories"
    )
    parser.add_argument("--output", required=True, metavar="STORE", help="output Zarr store")
    parser.add_argument("--template", metavar="FILE", help="static-sky template coadd (FITS)")
    parser.add_argument(
        "--psf-matched", nargs="+", metavar="WARPS", help="PSF-matched warps, one per visit"
    )
    parser.add_argument("--work-dir", help="ingest store and scratch (default STORE.work)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing store that dcr_dask wrote (never anything else)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on from the stages (and groups of subregions of the fit) that an interrupted "
        "run of the same inputs, config and options recorded in the work directory; a "
        "difference is an error naming it. Without a record the run starts from the "
        "beginning; after a finished run whose output is still there, nothing is done",
    )
    parser.add_argument(
        "--memory-budget",
        type=positive_float,
        metavar="BYTES",
        help="memory a group of subregions may use (default: what the workers have left)",
    )
    parser.add_argument(
        "--bright-object-mask",
        metavar="FILE",
        help="ds9 region file of bright objects (sky or image coordinates): the output mask "
        "gets the plane brightObjectMaskName (default BRIGHT_OBJECT) inside its regions. "
        "Sets brightObjectMaskFile and doMaskBrightObjects "
        '(docs/file-formats.md, "Bright-object regions")',
    )
    add_config_arguments(parser)
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run the pipeline."""
    config = config_from_args(args)
    warps = expand_inputs(args.warps)
    psf_matched = expand_inputs(args.psf_matched) if args.psf_matched else None
    # Before the cluster starts: the output must not be an input or something not ours.
    inputs = [*warps, *(psf_matched or ()), *([args.template] if args.template else [])]
    if config.doMaskBrightObjects and config.brightObjectMaskFile:
        inputs.append(config.brightObjectMaskFile)
    # (with --resume the output may be the finished run's: the pipeline checks that)
    check_output(args.output, inputs=inputs, overwrite=args.overwrite, exists_ok=args.resume)
    before = file_record(Path(args.output) / "zarr.json")
    options = cluster_options(args)
    check_cluster_options(options["scheduler_address"], options["cluster"], args.cluster_spec)
    # the pipeline checks every input (headers, PSFs) before it starts the cluster
    dataset = run_pipeline(
        config,
        warps,
        output=args.output,
        template=args.template,
        psf_matched=psf_matched,
        work_dir=args.work_dir,
        overwrite=args.overwrite,
        memory_budget_bytes=args.memory_budget,
        cluster_options=options,
        resume=args.resume,
    )
    blocks = dataset.attrs["convergence"]["blocks"]
    iterations = [b["iterations"] for b in blocks]
    after = file_record(Path(args.output) / "zarr.json")
    untouched = args.resume and before[1] is not None and after == before
    what = "nothing to resume, already complete:" if untouched else "wrote"
    print(
        f"{what} {args.output}: {dataset.sizes['subfilter']} sub-bands of "
        f"{dataset.sizes['y']}x{dataset.sizes['x']} px from {len(warps)} warps; "
        f"{len(blocks)} subregions, {min(iterations)}-{max(iterations)} iterations"
    )
    return 0
