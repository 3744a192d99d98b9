"""Write the DCR-matched template of one visit: what image differencing subtracts.

The visit is a warp file, or just its header (a FITS file whose primary HDU
carries the visit keywords of docs/file-formats.md, "Visit keywords"). A visit of another
band than the model's, or (for a warp) whose WCS puts its reference pixel more
than 0.5 px away from where the model's tile WCS does, is refused. The template is the
store's sub-band models shifted by that visit's DCR and summed, written in the
warp layout (IMAGE, MASK, VARIANCE with the tile WCS; docs/file-formats.md).
"""

from __future__ import annotations

import argparse

import numpy as np

from dcr_dask.io.fits import read_visit_file, wcs_from_header_text, write_warp
from dcr_dask.io.ownership import check_output
from dcr_dask.io.store import open_output
from dcr_dask.masks import MaskPlanes
from dcr_dask.running.templates import (
    check_visit_for_store,
    matched_template,
    visit_file_psf_variance,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``template`` options to ``parser``."""
    parser.add_argument("--model", required=True, metavar="STORE", help="output store of a run")
    parser.add_argument("--visit", required=True, metavar="WARP_OR_HEADER", help="visit file")
    parser.add_argument("--output", required=True, metavar="FILE", help="template FITS file")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing file that dcr_dask wrote (never anything else)",
    )


def run(args: argparse.Namespace) -> int:
    """Build and write the template."""
    check_output(args.output, inputs=[args.model, args.visit], overwrite=args.overwrite)
    store = open_output(args.model)
    visit, wcs = read_visit_file(args.visit)
    check_visit_for_store(store, visit, wcs, args.visit)
    psf_variance = visit_file_psf_variance(args.visit, visit)
    template = matched_template(store, visit, psf_variance_px2=psf_variance).values
    variance = store["variance"].values
    mask = store["mask"].values
    write_warp(
        args.output,
        template,
        mask,
        np.asarray(variance, dtype=np.float32),
        mask_planes=MaskPlanes(store.attrs["mask_planes"]),
        wcs=wcs_from_header_text(store.attrs["wcs_header"]),
        visit=visit,
        overwrite=args.overwrite,
    )
    print(f"wrote the DCR-matched template of visit {visit.visit} to {args.output}")
    return 0
