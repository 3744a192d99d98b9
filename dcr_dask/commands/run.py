"""Make a DCR-corrected coadd from warp files and write it as a Zarr store.

WARPS are files, glob patterns or directories of afw-style warps
(DATA_CONTRACT.md, section 1). The configuration is the defaults, then
--config FILE (TOML/YAML/JSON; .py only with --allow-python-config), then each
--set FIELD=VALUE. The run goes to --scheduler ADDRESS if given, else to a
local cluster on 127.0.0.1 (--workers, --threads-per-worker, --memory-limit).
"""

from __future__ import annotations

import argparse

from dcr_dask.cluster import dask_client
from dcr_dask.commands._common import add_config_arguments, config_from_args, expand_inputs
from dcr_dask.pipeline import run as run_pipeline


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that choose where the computation runs."""
    group = parser.add_argument_group("where to compute")
    group.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler")
    group.add_argument("--workers", type=int, default=2, help="local workers (default 2)")
    group.add_argument(
        "--threads-per-worker", type=int, default=1, help="threads per local worker (default 1)"
    )
    group.add_argument(
        "--memory-limit", default="auto", help="memory per local worker, e.g. 4GiB (default auto)"
    )


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
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store")
    parser.add_argument(
        "--memory-budget",
        type=float,
        metavar="BYTES",
        help="memory a group of subregions may use (default: all subregions at once)",
    )
    add_config_arguments(parser)
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run the pipeline."""
    config = config_from_args(args)
    warps = expand_inputs(args.warps)
    psf_matched = expand_inputs(args.psf_matched) if args.psf_matched else None
    with dask_client(
        scheduler_address=args.scheduler,
        n_workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        memory_limit=args.memory_limit,
    ) as client:
        dataset = run_pipeline(
            config,
            warps,
            output=args.output,
            template=args.template,
            psf_matched=psf_matched,
            client=client,
            work_dir=args.work_dir,
            overwrite=args.overwrite,
            memory_budget_bytes=args.memory_budget,
        )
    blocks = dataset.attrs["convergence"]["blocks"]
    iterations = [b["iterations"] for b in blocks]
    print(
        f"wrote {args.output}: {dataset.sizes['subfilter']} sub-bands of "
        f"{dataset.sizes['y']}x{dataset.sizes['x']} px from {len(warps)} warps; "
        f"{len(blocks)} subregions, {min(iterations)}-{max(iterations)} iterations"
    )
    return 0
