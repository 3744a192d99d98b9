"""Options shared by several subcommands: how a configuration is given, and the
argparse types that check every number, size and address before anything starts."""

from __future__ import annotations

import argparse
import glob
import math
from pathlib import Path

from dask.utils import parse_bytes
from distributed.comm import registry
from distributed.comm.addressing import parse_address, parse_host_port

from dcr_dask.config import PRESETS, DcrAssembleCoaddConfig, apply_overrides
from dcr_dask.errors import InputError
from dcr_dask.physics.bands import standard_band


def add_config_arguments(parser: argparse.ArgumentParser, *, band: bool = True) -> None:
    """Add ``--preset``, ``--config``, ``--band`` (unless ``band`` is False), ``--set`` and
    ``--allow-python-config`` to ``parser``."""
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="start from a named set of settings: 'reference' behaves as Rubin's "
        "DcrAssembleCoaddTask, 'many-artifacts' suits warps with many cosmic rays and streaks",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (.toml, .yaml, .json; .py only with --allow-python-config)",
    )
    if band:
        parser.add_argument(
            "--band",
            type=standard_band_name,
            metavar="NAME",
            help="a standard band (lsst-r or r, hsc-i2 or HSC-I2, decam-Y, ...): supplies "
            "effectiveWavelength, bandwidth and the throughput curve where the config leaves "
            "them unset (the config field band). Without it, and without band or "
            "transmissionCurve in the config, the warps' own band is used",
        )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="set one field, dotted for sub-configs (detect.thresholdValue=5); repeatable",
    )
    parser.add_argument(
        "--allow-python-config",
        action="store_true",
        help="allow a .py config file; it is executed as Python code, as pex_config does",
    )


def config_from_args(args: argparse.Namespace, *, validate: bool = True) -> DcrAssembleCoaddConfig:
    """Build the configuration the options describe.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options of :func:`add_config_arguments`.
    validate : bool
        Call :meth:`DcrAssembleCoaddConfig.validate` before returning.

    Returns
    -------
    DcrAssembleCoaddConfig
        Defaults, then the preset, then the file, then ``--band`` and
        ``--bright-object-mask`` (``run``: sets ``brightObjectMaskFile`` and
        ``doMaskBrightObjects``), then each ``--set`` in order.
    """
    config = DcrAssembleCoaddConfig()
    if getattr(args, "preset", None):
        config.update(**PRESETS[args.preset]())
    if args.config:
        config.load_file(args.config, allow_python=args.allow_python_config)
    if getattr(args, "band", None) is not None:
        config.band = args.band
    if getattr(args, "bright_object_mask", None) is not None:
        config.brightObjectMaskFile = args.bright_object_mask
        config.doMaskBrightObjects = True
    apply_overrides(config, args.overrides)
    if validate:
        config.validate()
    return config


def expand_inputs(patterns: list[str]) -> list[str]:
    """Turn files, glob patterns and directories into a sorted list of FITS files.

    Parameters
    ----------
    patterns : list of str
        Each a file, a glob (``warps/*.fits``) or a directory (every
        ``*.fits``, ``*.fits.gz`` and ``*.fits.fz`` inside it).

    Returns
    -------
    list of str
        The files, without duplicates, in sorted order.

    Raises
    ------
    InputError
        If a pattern names nothing, naming the pattern.
    """
    found: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            matches = sorted(str(p) for suffix in _FITS_SUFFIXES for p in path.glob(f"*{suffix}"))
        elif any(char in pattern for char in "*?["):
            matches = sorted(glob.glob(pattern))
        else:
            matches = [pattern] if path.exists() else []
        if not matches:
            raise InputError("no such file, or no FITS file matches", filename=pattern)
        found.extend(matches)
    return sorted(dict.fromkeys(found))


_FITS_SUFFIXES = (".fits", ".fits.gz", ".fits.fz")


# ----------------------------------------------------------------- argparse types
# argparse reports an ArgumentTypeError as "argument --FLAG: <message>" and exits
# with status 2, before the subcommand runs.


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least {minimum}")
    return value


def standard_band_name(text: str) -> str:
    """An argparse type: the name or alias of a standard band (:mod:`dcr_dask.physics.bands`)."""
    try:
        standard_band(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (workers, threads, pixels)."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number of at least 0 (a random seed)."""
    return _whole_number(text, 0)


def positive_float(text: str) -> float:
    """An argparse type: a number above 0, ``inf`` allowed (a budget in bytes)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if math.isnan(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0")
    return value


def memory_size(text: str) -> str:
    """An argparse type: ``auto`` or an amount of memory above 0 (``4GiB``, ``500MB``)."""
    if text == "auto":
        return text
    try:
        size = parse_bytes(text)
    except (ValueError, TypeError):
        size = None
    if size is None or size <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an amount of memory such as 4GiB or 500MB (or auto)"
        )
    return text


def scheduler_address(text: str) -> str:
    """An argparse type: a Dask scheduler address such as ``tcp://10.0.0.5:8786``."""
    try:
        scheme, location = parse_address(text)
        registry.get_backend(scheme)
        if scheme in ("tcp", "tls", "ws", "wss"):
            host, port = parse_host_port(location)
            if not host or not 0 < port < 65536:
                raise ValueError(f"host {host!r}, port {port}")
    except (ValueError, TypeError) as error:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a scheduler address such as tcp://10.0.0.5:8786 ({error})"
        ) from None
    return text
