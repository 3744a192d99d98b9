"""Write a synthetic DCR tile: warps in the data contract's FITS layout, plus the truth."""

from __future__ import annotations

import argparse
import logging

from dcr_dask.commands._common import non_negative_int, positive_int
from dcr_dask.simulate import default_demo_spec, realistic_spec, simulate_tile, write_simulation

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` options to ``parser``."""
    parser.add_argument("output", help="directory to write warps/, holdout/ and truth files into")
    parser.add_argument(
        "--size",
        type=positive_int,
        nargs=2,
        default=(256, 256),
        metavar=("NY", "NX"),
        help="tile size, pixels",
    )
    parser.add_argument("--seed", type=non_negative_int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--idealised",
        action="store_true",
        help="Gaussian PSFs and a DETECTED plane (the idealised tile) instead of the realistic "
        "one (Moffat PSFs with chromatic seeing, faint stars, no DETECTED plane)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing files that dcr_dask wrote (never anything else)",
    )


def run(args: argparse.Namespace) -> int:
    """Simulate the demo tile and write it."""
    make_spec = default_demo_spec if args.idealised else realistic_spec
    spec = make_spec(shape=args.size, seed=args.seed)
    tile = simulate_tile(spec)
    paths = write_simulation(tile, args.output, overwrite=args.overwrite)
    print(f"wrote {len(paths['warps'])} warps to {args.output}/warps")
    if paths["holdout"]:
        print(f"wrote {len(paths['holdout'])} held-out visits to {args.output}/holdout")
    print(f"truth: {paths['truth']} and {paths['catalog']}")
    return 0
