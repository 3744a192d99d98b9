"""Show the DCR geometry of warps before a run: no pixels are read.

For each visit: id, band, airmass, parallactic angle, direction of the zenith
on the tile, weather (and which values were defaulted from the observatory
elevation), and the DCR shift of each sub-band in pixels (blue first; the
unsplit shift, the mean of the refraction at the sub-band edges).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import attrs

from dcr_dask.commands._common import add_config_arguments, config_from_args, expand_inputs
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.io.warps import open_warps, tile_wcs, visit_infos
from dcr_dask.physics.subbands import DcrShifts
from dcr_dask.settings import config_for_warps, dcr_shifts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``inspect`` options to ``parser``."""
    parser.add_argument(
        "warps", nargs="+", metavar="WARPS", help="warp files, globs or directories"
    )
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON list, one object a visit")


def inspect_warps(paths: list[str], config: DcrAssembleCoaddConfig) -> list[dict[str, Any]]:
    """Describe the DCR geometry of each warp.

    Parameters
    ----------
    paths : list of str
        Warp files.
    config : DcrAssembleCoaddConfig
        Supplies the band and the sub-band choices.

    Returns
    -------
    list of dict
        One record per visit, in visit order (see the module documentation).
    """
    warps = open_warps(paths, chunks=tuple(config.subregionSize), need_psf=True)
    ny, nx = (int(n) for n in warps.attrs["tile_shape"])
    wcs = tile_wcs(warps)
    visits = visit_infos(warps)
    config = config_for_warps(config, visits)
    shifts = dcr_shifts(visits, wcs, config, (ny, nx))
    band = shifts.band
    chosen = shifts.at_centre()
    edge_options = attrs.evolve(shifts.options, mode="edges")
    edges = DcrShifts(visits, wcs, band, edge_options, shifts.centre).at_centre()
    records: list[dict[str, Any]] = []
    for i, visit in enumerate(visits):
        geo = edges.geometry[i]
        weather = visit.weather
        record = {
            "visit": int(visit.visit),
            "band": visit.band,
            "filename": visit.filename,
            "airmass": geo.airmass,
            "altitude_deg": geo.altitude_deg,
            "hour_angle_deg": geo.hour_angle_deg,
            "parallactic_angle_deg": geo.parallactic_angle_deg,
            "zenith_direction_deg": geo.zenith_direction_deg,
            "pixel_scale_arcsec": geo.pixel_scale_arcsec,
            "weather": {
                "temperature_c": weather.temperature_c,
                "pressure_pa": weather.pressure_pa,
                "humidity_pct": weather.humidity_pct,
                "defaulted": list(weather.defaulted),
            },
            "psf_fwhm_px": visit.psf_fwhm_px,
            "psf_source": visit.psf_source,
            "visit_source": visit.visit_source,
            "band_source": visit.band_source,
            "weight": None,
            "subband_edges_nm": band.edges_nm.tolist(),
            "shifts_px": edges.unsplit_px[i].tolist(),
        }
        if config.subbandShiftMode != "edges":
            record[f"shifts_{config.subbandShiftMode}_px"] = chosen.unsplit_px[i].tolist()
        if config.splitSubfilters:
            record["split_shifts_px"] = chosen.shifts_px[i].tolist()
        records.append(record)
    return records


def run(args: argparse.Namespace) -> int:
    """Print the geometry of the warps."""
    config = config_from_args(args)
    records = inspect_warps(expand_inputs(args.warps), config)
    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    header = f"{'visit':>8} {'band':>4} {'airmass':>7} {'q[deg]':>8} {'zenith[deg]':>11}  weather"
    print(header)
    for r in records:
        w = r["weather"]
        defaulted = f" (defaulted: {', '.join(w['defaulted'])})" if w["defaulted"] else ""
        print(
            f"{r['visit']:>8} {r['band']:>4} {r['airmass']:7.3f} {r['parallactic_angle_deg']:8.2f} "
            f"{r['zenith_direction_deg']:11.2f}  {w['temperature_c']:.1f} C, "
            f"{w['pressure_pa'] / 100:.1f} hPa, {w['humidity_pct']:.0f} %{defaulted}"
        )
        shifts = "  ".join(f"({dy:+.3f}, {dx:+.3f})" for dy, dx in r["shifts_px"])
        print(f"{'':>8} sub-band shifts (dy, dx) px, blue first: {shifts}")
    return 0
