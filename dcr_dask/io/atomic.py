"""Write a directory or a file under a temporary name, then rename it into place.

A store found at an output path is always whole (docs/file-formats.md,
"Output store"). Both context managers here keep that promise the same way: the
caller writes into a hidden sibling of the target (same directory, hence the
same filesystem, so the final :func:`os.rename` is atomic on POSIX), and only
a clean exit from the ``with`` block moves it to the target. An exception
deletes the temporary and propagates, so nothing partial is ever left behind.

Replacing is allowed only with ``overwrite=True``, and only for a target
dcr_dask wrote itself (:func:`dcr_dask.io.ownership.check_replaceable`,
checked before anything is written): a user's folder or file at the target
is never deleted.

A process killed outright (``SIGKILL``, power loss) cannot clean up; what it
leaves is a hidden sibling whose name starts with ``.<name>.tmp-`` (or
``.<name>.old-``). It is never mistaken for a result, and the next atomic write
of the same target deletes it, provided it carries dcr_dask's ownership marker
(:func:`dcr_dask.io.ownership.is_own_temporary`: Zarr stores get it with their
first metadata, FITS files in their primary header); anything else is left
alone. Two processes writing the same target at the same time are not
supported: the later one would remove the earlier one's temporary.
(The command line turns ``SIGTERM`` into an exception, so a terminated run
cleans up as on any other error.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from dcr_dask.io.ownership import TEMPORARY_NAME, check_replaceable, is_own_temporary

__all__ = ["atomic_directory", "atomic_file", "remove_stale_temporaries"]

log = logging.getLogger(__name__)


def _sibling(path: Path, tag: str) -> Path:
    """Return a hidden, unique sibling of ``path`` (``.<name>.<tag>-<uuid>``)."""
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex}")


def _remove(path: Path) -> None:
    """Delete a file or a directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete what interrupted atomic writes of ``path`` left beside it, if dcr_dask wrote it.

    Parameters
    ----------
    path : str or path-like
        The target of an atomic write.

    Returns
    -------
    list of pathlib.Path
        The hidden siblings deleted (each logged as a warning): those named
        ``.<name>.tmp-<uuid>`` or ``.<name>.old-<uuid>`` that carry dcr_dask's
        ownership marker (:func:`dcr_dask.io.ownership.is_own_temporary`).
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for sibling in path.parent.iterdir():
        match = TEMPORARY_NAME.match(sibling.name)
        if match and match["target"] == path.name and is_own_temporary(sibling, path.name):
            log.warning("removing %s, left by an interrupted dcr_dask write", sibling)
            _remove(sibling)
            removed.append(sibling)
    return removed


def _refuse_existing(path: Path) -> None:
    if path.exists() or path.is_symlink():
        raise FileExistsError(
            f"{path} already exists; remove it or pass overwrite=True to replace it"
        )


def _move_into_place(tmp: Path, path: Path, *, overwrite: bool) -> None:
    """Rename ``tmp`` to ``path``, replacing an existing ``path`` if allowed.

    An existing target is first renamed aside, so that at every instant
    ``path`` is either the old whole result or the new whole result; the old
    one is deleted only once the new one is in place, and is put back if the
    final rename fails.
    """
    if not (path.exists() or path.is_symlink()):
        tmp.rename(path)
        return
    if not overwrite:
        _refuse_existing(path)
    old = _sibling(path, "old")
    path.rename(old)
    try:
        tmp.rename(path)
    except BaseException:
        old.rename(path)
        raise
    _remove(old)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it to ``path`` when done.

    Parameters
    ----------
    path : str or path-like
        Final location of the directory (for example a Zarr store). Its parent
        is created if needed.
    overwrite : bool
        If True, an existing ``path`` is replaced once the new directory is
        complete, provided dcr_dask wrote it; if False, an existing ``path``
        is an error, raised before anything is written.

    Yields
    ------
    pathlib.Path
        An empty, existing, hidden sibling directory of ``path`` (its name
        holds a UUID) to write into.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    dcr_dask.errors.OutputError
        If ``path`` exists, ``overwrite`` is True and dcr_dask did not write it.

    Notes
    -----
    On a clean exit the temporary is renamed to ``path`` (an existing ``path``
    is moved aside first and deleted after the rename). If the block raises,
    the temporary is deleted and the exception re-raised; ``path`` is left as
    it was.
    """
    path = Path(path)
    if overwrite:
        check_replaceable(path)
    else:
        _refuse_existing(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _sibling(path, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        _move_into_place(tmp, path, overwrite=overwrite)
    finally:
        _remove(tmp)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Write a file under a temporary name and rename it to ``path`` when done.

    Parameters
    ----------
    path : str or path-like
        Final location of the file. Its parent is created if needed.
    overwrite : bool
        If True, an existing ``path`` is replaced atomically once the new file
        is complete, provided dcr_dask wrote it; if False, an existing
        ``path`` is an error, raised before anything is written.

    Yields
    ------
    pathlib.Path
        A hidden sibling path of ``path`` (its name holds a UUID) that does not
        exist yet; the block creates the file there.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    dcr_dask.errors.OutputError
        If ``path`` exists, ``overwrite`` is True and dcr_dask did not write it.
    FileNotFoundError
        If the block exits cleanly without having created the file.
    """
    path = Path(path)
    if overwrite:
        check_replaceable(path)
    else:
        _refuse_existing(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _sibling(path, "tmp")
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"nothing was written to {tmp} for {path}")
        if overwrite:
            os.replace(tmp, path)
        else:
            _move_into_place(tmp, path, overwrite=False)
    finally:
        _remove(tmp)
