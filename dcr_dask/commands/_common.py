"""Options shared by several subcommands: how a configuration is given."""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

from dcr_dask.config import PRESETS, DcrAssembleCoaddConfig, apply_overrides
from dcr_dask.errors import InputError


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--preset``, ``--config``, ``--set`` and ``--allow-python-config`` to ``parser``."""
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
        Defaults, then the preset, then the file, then each ``--set`` in order.
    """
    config = DcrAssembleCoaddConfig()
    if getattr(args, "preset", None):
        config.update(**PRESETS[args.preset]())
    if args.config:
        config.load_file(args.config, allow_python=args.allow_python_config)
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
