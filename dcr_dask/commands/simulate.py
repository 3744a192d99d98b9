"""Write a synthetic DCR tile: warps in the FITS layout dcr_dask reads, plus the truth.

The files are described in docs/file-formats.md, "Simulated tiles". The tile
is simulated visit by visit as it is written, so it may be larger than memory:
24 visits of 4096² pixels (idealised, 4.5 GiB of files) took 1.1 GiB at peak
and 8192² (18 GiB of files) 3.3 GiB, against 2.5 GiB for 2048² when the tile
was held in memory (benchmarks/README.md, "bench_simulate.py").
With Moffat PSFs (the default, realistic tile) every visit's noise-free image
first goes to a scratch file (8 bytes a pixel a visit) in a hidden folder of
the output directory, deleted when done.
"""

from __future__ import annotations

import argparse
import logging

from dcr_dask.commands._common import non_negative_int, positive_int, standard_band_name
from dcr_dask.simulate import default_demo_spec, standard_band_spec, write_simulation

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
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--band",
        type=standard_band_name,
        default="g",
        metavar="NAME",
        help="the tile's band: a standard band (default g, Rubin's), whose effective "
        "wavelength and bandwidth the tile gets (flat throughput) and whose name the warps "
        "carry, so that 'dcr-dask run' on them needs no band setting",
    )
    kind.add_argument(
        "--idealised",
        action="store_true",
        help="Gaussian PSFs and a DETECTED plane (the idealised tile, in its own g band: "
        "478 nm, 147 nm wide) instead of the realistic one (Moffat PSFs with chromatic "
        "seeing, faint stars, no DETECTED plane)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing files that dcr_dask wrote (never anything else)",
    )


def run(args: argparse.Namespace) -> int:
    """Simulate the demo tile and write it."""
    if args.idealised:
        # the idealised tile keeps its own g band (478 nm, 147 nm wide)
        spec = default_demo_spec(shape=args.size, seed=args.seed)
    else:
        spec = standard_band_spec(args.band, shape=args.size, seed=args.seed)
    # written visit by visit: the tile may be larger than memory
    paths = write_simulation(spec, args.output, overwrite=args.overwrite)
    print(f"wrote {len(paths['warps'])} warps to {args.output}/warps")
    if paths["holdout"]:
        print(f"wrote {len(paths['holdout'])} held-out visits to {args.output}/holdout")
    print(f"truth: {paths['truth']} and {paths['catalog']}")
    return 0
