"""What dcr_dask may replace: only what it wrote itself, and never an input.

``overwrite=True`` (``--overwrite``) replaces an existing output only if
dcr_dask recognises it as its own, and no output may be, or contain, an input.
Both are checked before any work starts (:func:`check_output`), and again by
:mod:`dcr_dask.io.atomic` at the moment of the replacement, so a user's folder
or file, or the input warps, are never deleted.

What dcr_dask recognises as its own (:func:`is_own`):

* a directory: a Zarr store whose root group has the attribute
  :data:`WRITER_ATTR` (every store :func:`dcr_dask.io.store.write_zarr`
  writes), or, from versions before that attribute, an ingest store
  (``dcr_dask_ingest_fingerprint``) or an output store (``dcr_dask_version``,
  ``config``, ``inputs`` and ``convergence`` together);
* a FITS file (``.fits``, ``.fits.gz``, ``.fits.fz``) whose primary header has
  :data:`FITS_KEYWORD` (exports, templates and simulated warps);
* a JSON object or a NumPy ``.npz`` file with the key :data:`WRITER_ATTR`
  (the simulation's and the demo's summaries).

Anything else, including files of the same names written by earlier versions
without a marker, is left alone: the error names the path, and the user moves
it away or chooses another output.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import zarr
from astropy.io import fits

from dcr_dask._version import __version__
from dcr_dask.errors import OutputError

__all__ = [
    "FITS_KEYWORD",
    "WRITER_ATTR",
    "check_not_input",
    "check_output",
    "check_replaceable",
    "is_own",
    "is_own_temporary",
    "writer",
]

#: Root attribute of every Zarr store, and key of every JSON/npz file, dcr_dask writes.
WRITER_ATTR = "dcr_dask_writer"
#: Primary-header keyword of every FITS file dcr_dask writes (its version).
FITS_KEYWORD = "DCRDASKV"
_LEGACY_OUTPUT_ATTRS = frozenset({"dcr_dask_version", "config", "inputs", "convergence"})
_LEGACY_INGEST_ATTR = "dcr_dask_ingest_fingerprint"
_FITS_SUFFIXES = (".fits", ".fits.gz", ".fits.fz")


def writer() -> str:
    """The value of :data:`WRITER_ATTR`: ``"dcr_dask <version>"``."""
    return f"dcr_dask {__version__}"


def _own_store(path: Path) -> bool:
    try:
        attrs = dict(zarr.open_group(path, mode="r").attrs)
    except (zarr.errors.BaseZarrError, OSError, ValueError, KeyError, TypeError):
        return False
    names = set(attrs)
    return WRITER_ATTR in names or _LEGACY_INGEST_ATTR in names or names >= _LEGACY_OUTPUT_ATTRS


#: Name of the hidden sibling an atomic write builds its result in (``.<name>.tmp-<uuid>``),
#: or moves the old result aside to (``.<name>.old-<uuid>``): :mod:`dcr_dask.io.atomic`.
TEMPORARY_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<tag>tmp|old)-[0-9a-f]{32}$")


def _own_file(path: Path, name: str | None = None) -> bool:
    name = (name or path.name).lower()
    try:
        if name.endswith(_FITS_SUFFIXES):
            return FITS_KEYWORD in fits.getheader(path, 0)
        if name.endswith(".json"):
            content = json.loads(path.read_text(encoding="utf-8"))
            return isinstance(content, dict) and WRITER_ATTR in content
        if name.endswith(".npz"):
            with np.load(path, allow_pickle=False) as content:
                return WRITER_ATTR in content.files
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return False


def is_own(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a store or file that dcr_dask wrote.

    Parameters
    ----------
    path : str or path-like
        An existing directory or file (a symbolic link is judged by its target).

    Returns
    -------
    bool
        True for the stores and files listed in the module docstring.
    """
    path = Path(path)
    if path.is_dir():
        return _own_store(path)
    return path.is_file() and _own_file(path)


def is_own_temporary(path: str | os.PathLike[str], target: str | None = None) -> bool:
    """Whether ``path`` is what an interrupted atomic write of dcr_dask left behind.

    Parameters
    ----------
    path : str or path-like
        A hidden sibling named ``.<target>.tmp-<uuid>`` or ``.<target>.old-<uuid>``.
    target : str, optional
        Only a temporary of the output of this name (``coadd.zarr``) counts.

    Returns
    -------
    bool
        True if the name has that form and the content carries dcr_dask's marker,
        judged as if it had the target's name (a Zarr store with
        :data:`WRITER_ATTR`, a FITS file with :data:`FITS_KEYWORD`, ...).
        Symbolic links never count.
    """
    path = Path(path)
    match = TEMPORARY_NAME.match(path.name)
    if match is None or path.is_symlink() or (target is not None and match["target"] != target):
        return False
    if path.is_dir():
        return _own_store(path)
    return path.is_file() and _own_file(path, match["target"])


def check_replaceable(path: str | os.PathLike[str]) -> None:
    """Refuse to replace an existing ``path`` that dcr_dask did not write.

    Parameters
    ----------
    path : str or path-like
        The output about to be replaced.

    Raises
    ------
    dcr_dask.errors.OutputError
        If ``path`` exists (or is a dangling link) and :func:`is_own` is False.
    """
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not is_own(path):
        kind = "folder" if path.is_dir() else "file"
        raise OutputError(
            path,
            f"this {kind} was not written by dcr_dask, and overwrite (--overwrite) replaces "
            "only dcr_dask's own stores and files: move it away or choose another output",
        )


def check_not_input(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse an output that is, or contains, one of the inputs, or lies inside an input
    directory (``export-fits`` into the store itself).

    Parameters
    ----------
    path : str or path-like
        The output (store, file or directory) that may be replaced.
    inputs : iterable of path-like
        Input files and directories of the same command.

    Raises
    ------
    dcr_dask.errors.OutputError
        If ``path`` (symbolic links resolved) equals an input, is a directory above one,
        or lies inside an input that is a directory.
    """
    output = Path(path).resolve()
    for item in inputs:
        resolved = Path(item).resolve()
        if resolved == output or output in resolved.parents:
            what = "is" if resolved == output else "contains"
            raise OutputError(
                path, f"the output {what} the input {item}: choose an output apart from the inputs"
            )
        if resolved.is_dir() and resolved in output.parents:
            raise OutputError(
                path,
                f"the output lies inside the input {item} (a store or directory): "
                "choose an output apart from the inputs",
            )


def check_output(
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    overwrite: bool = False,
    exists_ok: bool = False,
) -> None:
    """Every check on an output, before any work starts.

    Parameters
    ----------
    path : str or path-like
        The output store, file or directory.
    inputs : iterable of path-like
        The inputs of the same command (:func:`check_not_input`).
    overwrite : bool
        Whether an existing ``path`` is to be replaced (:func:`check_replaceable`).
    exists_ok : bool
        Whether an existing ``path`` may be kept without ``overwrite`` (an
        ingest store of the same inputs is reused); otherwise that is an error.

    Raises
    ------
    dcr_dask.errors.OutputError
        If ``path`` is or contains an input, exists without ``overwrite``
        (unless ``exists_ok``), or exists, is to be replaced and was not
        written by dcr_dask.
    """
    check_not_input(path, inputs)
    path = Path(path)
    if overwrite:
        check_replaceable(path)
    elif not exists_ok and (path.exists() or path.is_symlink()):
        raise OutputError(path, "exists; pass overwrite=True (--overwrite) to replace it")
