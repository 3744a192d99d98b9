"""Read warp files into a Zarr store chunked by subregionSize (the run's first step).

WARPS are files, glob patterns or directories of afw-style warps
(docs/file-formats.md, "Input warps"); every file is checked (headers only) before any
pixel is read. The store is written under a temporary name and renamed when
complete; a complete store of the same inputs and chunking is reused as it is.
`dcr-dask run --work-dir DIR` reuses DIR/warps.zarr the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dcr_dask.commands._common import add_config_arguments, config_from_args, expand_inputs
from dcr_dask.commands.run import add_cluster_arguments, cluster_options
from dcr_dask.io.ingest import ingest_warps
from dcr_dask.io.ownership import check_output
from dcr_dask.io.warps import open_warps
from dcr_dask.running.cluster import dask_client


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``ingest`` options to ``parser``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "warps", nargs="+", metavar="WARPS", help="warp files, globs or directories"
    )
    parser.add_argument("--output", required=True, metavar="STORE", help="ingest Zarr store")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a store of other inputs at STORE (only one dcr_dask wrote)",
    )
    add_config_arguments(parser, band=False)
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Ingest the warps."""
    config = config_from_args(args, validate=False)
    size = config.subregionSize
    chunks = (int(size[1]), int(size[0]))
    files = [Path(p) for p in expand_inputs(args.warps)]
    check_output(args.output, inputs=files, overwrite=args.overwrite, exists_ok=True)
    warps = open_warps(files, chunks=chunks)
    with dask_client(**cluster_options(args)) as client:
        store = ingest_warps(
            warps, args.output, chunks=chunks, client=client, overwrite=args.overwrite
        )
    print(
        f"wrote {args.output}: {store.sizes['visit']} visits of "
        f"{store.sizes['y']}x{store.sizes['x']} px in chunks of {chunks[0]}x{chunks[1]}"
    )
    return 0
