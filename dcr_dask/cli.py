"""The ``dcr-dask`` command line.

Each subcommand lives in its own module under :mod:`dcr_dask.commands` and
exposes two functions: ``add_arguments(parser)`` and ``run(args) -> int``.
This module only assembles them, sets up logging and turns errors into one
readable line (the traceback only with ``-v``) and a non-zero exit status: the
package's own errors, a full disk (``ENOSPC``, ``EDQUOT``), a Dask scheduler or
worker that went away, and Ctrl-C (``interrupted``, status 130) or ``SIGTERM``
(``terminated``, status 143), after which nothing partial is left at the output.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from distributed.client import FutureCancelledError
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker

from dcr_dask._version import __version__
from dcr_dask.errors import ClusterLostError, DcrDaskError, Terminated
from dcr_dask.progress import show_progress

#: Subcommand name -> (module under dcr_dask.commands, one-line help).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "simulate a DCR tile and process it on a local Dask cluster"),
    "ingest": ("ingest", "read warps into a Zarr store chunked by subregionSize"),
    "run": ("run", "make a DCR-corrected coadd from warps (Zarr output store)"),
    "template": ("template", "write the DCR-matched template of one visit (FITS)"),
    "export-fits": ("export_fits", "export an output store to afw-style FITS files"),
    "simulate": ("simulate", "write a synthetic DCR tile (warps + truth) to a directory"),
    "inspect": ("inspect", "show each visit's DCR geometry and sub-band shifts (no pixels read)"),
    "config": ("config", "print, validate or compare configurations"),
}

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand.

    Returns
    -------
    argparse.ArgumentParser
        The ``dcr-dask`` parser.
    """
    parser = argparse.ArgumentParser(
        prog="dcr-dask",
        description="DCR-corrected coadds of the sky with Dask.",
    )
    _add_global_options(parser, default=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(f"dcr_dask.commands.{module_name}")
        sub = subparsers.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(sub)
        # Accepted after the subcommand too; left unset there unless given, so
        # that `dcr-dask -q run ...` keeps the value given before it.
        _add_global_options(sub, default=argparse.SUPPRESS)
        sub.set_defaults(_handler=module.run)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    """Add ``--version``, ``-v`` and ``-q``, with ``default`` for the flags, to
    ``parser`` and to the parsers of its own subcommands (``config validate``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for nested in action.choices.values():
                _add_global_options(nested, default=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"dcr-dask {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="log at DEBUG level"
    )
    verbosity.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="log warnings and errors only",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit code: 0 on success, 1 on a user-facing error, 2 on a usage error,
        130 after Ctrl-C, 143 after ``SIGTERM``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose and args.quiet:  # one before the subcommand, one after it
        parser.error("argument -q/--quiet: not allowed with argument -v/--verbose")
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format=_LOG_FORMAT, stream=sys.stderr, force=True)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with show_progress(not args.quiet), _sigterm_raises():
            return int(args._handler(args) or 0)
    except (DcrDaskError, FileExistsError, FileNotFoundError) as error:
        return _report(args.command, error)
    except OSError as error:
        if error.errno not in _DISK_FULL:
            raise
        where = f" while writing {error.filename}" if error.filename else ""
        return _report(
            args.command,
            f"no space left on the device{where} ({error.strerror or error}); nothing "
            "partial was kept: free some space, or choose another --output or --work-dir",
        )
    except (FutureCancelledError, CommClosedError, KilledWorker) as error:
        return _report(args.command, ClusterLostError(args.command, error))
    except KeyboardInterrupt as error:
        terminated = isinstance(error, Terminated)
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        _report(args.command, f"{what}; nothing partial was kept at the output", prefix="")
        return 143 if terminated else 130


#: errno values reported as a full disk (no space, quota exceeded).
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def _report(command: str, error: object, *, prefix: str = "error: ") -> int:
    """Print one line for ``error`` (the traceback only with ``-v``); return exit status 1."""
    logging.getLogger("dcr_dask").debug("error details", exc_info=True)
    print(f"dcr-dask {command}: {prefix}{error}", file=sys.stderr)
    return 1


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While a command runs, ``SIGTERM`` raises :class:`~dcr_dask.errors.Terminated`, so
    the atomic writers delete their temporaries as on any error (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
