"""A NumPy ``.npz`` archive written member by member, a large member in pieces.

:func:`numpy.savez_compressed` needs every array whole in memory. An
:class:`NpzWriter` writes the same archive (deflated ``.npy`` members in a
ZIP64 file, read back by :func:`numpy.load`) from pieces: a ``(visit, y, x)``
member can be written one visit at a time, so a simulation larger than memory
can still keep its truth in one ``.npz`` file.
"""

from __future__ import annotations

import contextlib
import math
import os
import zipfile
from collections.abc import Callable, Iterator

import numpy as np

__all__ = ["NpzWriter"]


class NpzWriter:
    """Write an ``.npz`` archive member by member.

    Parameters
    ----------
    path : str or path-like
        The archive, created (or truncated).

    Notes
    -----
    One member is written at a time, as :mod:`zipfile` allows. Members are
    deflated like those of :func:`numpy.savez_compressed`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._zip = zipfile.ZipFile(path, mode="w", compression=zipfile.ZIP_DEFLATED)

    def __enter__(self) -> NpzWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Write the archive's directory and close the file."""
        self._zip.close()

    def add(self, name: str, array: np.ndarray) -> None:
        """Write a whole array as the member ``name``."""
        with self._zip.open(f"{name}.npy", mode="w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)

    @contextlib.contextmanager
    def member(
        self, name: str, shape: tuple[int, ...], dtype: np.dtype | type
    ) -> Iterator[Callable[[np.ndarray], None]]:
        """Write the member ``name`` in pieces along its first axis.

        Parameters
        ----------
        name : str
            Member name (``numpy.load(path)[name]``).
        shape : tuple of int
            Shape of the whole array.
        dtype : numpy.dtype
            Its dtype; each piece is cast to it.

        Yields
        ------
        callable
            ``write(piece)``: appends ``piece`` (C order), e.g. one
            ``array[i]`` after another.

        Raises
        ------
        ValueError
            If the pieces written do not add up to ``shape``.
        """
        dtype = np.dtype(dtype)
        shape = tuple(int(n) for n in shape)
        header = {
            "descr": np.lib.format.dtype_to_descr(dtype),
            "fortran_order": False,
            "shape": shape,
        }
        expected = math.prod(shape)
        written = 0
        with self._zip.open(f"{name}.npy", mode="w", force_zip64=True) as stream:
            np.lib.format.write_array_header_1_0(stream, header)

            def write(piece: np.ndarray) -> None:
                nonlocal written
                piece = np.ascontiguousarray(piece, dtype=dtype)
                stream.write(piece.data.cast("B"))
                written += piece.size

            yield write
            if written != expected:
                raise ValueError(
                    f"member {name!r} of shape {shape} got {written} of its {expected} elements"
                )
