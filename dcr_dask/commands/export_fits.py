"""Export an output store to afw-style FITS: one file per sub-band and one for the coadd."""

from __future__ import annotations

import argparse

from dcr_dask.io.export import export_fits


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``export-fits`` options to ``parser``."""
    parser.add_argument("store", help="output store of a run")
    parser.add_argument("output_dir", help="directory for the FITS files")
    parser.add_argument("--prefix", help="file name prefix (default: the store's name)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing files that dcr_dask wrote (never anything else)",
    )


def run(args: argparse.Namespace) -> int:
    """Write the FITS files."""
    for path in export_fits(
        args.store, args.output_dir, prefix=args.prefix, overwrite=args.overwrite
    ):
        print(path)
    return 0
