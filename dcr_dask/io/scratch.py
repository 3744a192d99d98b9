"""The DCR fit's scratch store: two buffers of the model planes, and ``n_image``.

The fit (:func:`dcr_dask.graph.assemble.fit_tile`) keeps its model in a Zarr
store of the work directory, so that a tile larger than memory is fitted one
group of subregions at a time (each pass reads one buffer and writes the
other) and an interrupted run goes on from the last pass written. This
module is that store's only reader and writer; the graph layer sees it
through the :class:`~dcr_dask.graph.assemble.FitScratch` protocol. The
store carries dcr_dask's writer mark, so that only a store dcr_dask wrote is
ever deleted there.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import numpy as np
import xarray as xr

from dcr_dask.io.ownership import WRITER_ATTR, writer

__all__ = ["ScratchModel"]

#: ``(y0, y1, x0, x1)`` pixel bounds of a window of the tile.
Window = tuple[int, int, int, int]


class ScratchModel:
    """The fit's scratch Zarr store at ``path``.

    It holds ``model`` and ``model_1`` (float32: buffers 0 and 1 of the model
    planes) and ``n_image`` (uint16), and, when the fit runs in several groups,
    each block's prepared inputs (``fit_inputs/<i>_<j>.npz``), so that a pass
    reads them instead of preparing them again.

    Parameters
    ----------
    path : path-like
        The store's directory (created by :meth:`create`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ScratchModel({str(self.path)!r})"

    def create(self, model: da.Array, n_image: da.Array) -> None:
        """Write the whole ``(S, ny, nx)`` starting ``model`` (buffer 0) and ``n_image``,
        marked as dcr_dask's; buffer 1 is made empty (zero, no chunk written).

        Parameters
        ----------
        model : dask.array.Array
            ``(S, ny, nx)`` float32 starting planes, chunked as the tile's subregions.
        n_image : dask.array.Array
            ``(S, ny, nx)`` uint16, chunked as ``model``.
        """
        for name, array in (("model", model.astype(np.float32)), ("n_image", n_image)):
            ds = xr.Dataset({name: (("subfilter", "y", "x"), array)})
            ds.attrs[WRITER_ATTR] = writer()
            mode: Literal["a", "w"] = "a" if (self.path / "zarr.json").exists() else "w"
            ds.to_zarr(self.path, mode=mode, zarr_format=3, consolidated=False)
        import zarr

        root = zarr.open_group(str(self.path), mode="r+")
        first = root["model"]
        assert isinstance(first, zarr.Array)  # written just above
        root.create_array(
            _BUFFERS[1],
            shape=first.shape,
            chunks=first.chunks,
            dtype=np.float32,
            fill_value=0.0,
            dimension_names=("subfilter", "y", "x"),
            overwrite=True,
        )

    def write_windows(
        self,
        windows: Sequence[Window],
        model: Sequence[da.Array],
        n_image: Sequence[da.Array] | None,
        *,
        buffer: int = 0,
    ) -> None:
        """Write the ``(S, wy, wx)`` model and ``n_image`` pieces of each window, at once.

        Parameters
        ----------
        windows : sequence of (int, int, int, int)
            ``(y0, y1, x0, x1)`` of each piece on the tile.
        model : sequence of dask.array.Array
            One piece per window.
        n_image : sequence of dask.array.Array or None
            One piece per window; None leaves ``n_image`` as it is.
        buffer : {0, 1}
            The model buffer written.
        """
        import zarr

        name = _buffer(buffer)
        root = zarr.open_group(str(self.path), mode="r+")
        sources: list[da.Array] = []
        targets: list[_Region] = []
        counts: Sequence[da.Array | None] = [None] * len(windows) if n_image is None else n_image
        for (y0, y1, x0, x1), model_piece, n_image_piece in zip(
            windows, model, counts, strict=True
        ):
            where = (slice(None), slice(y0, y1), slice(x0, x1))
            sources.append(model_piece.astype(np.float32))
            targets.append(_Region(root[name], where))
            if n_image_piece is not None:
                sources.append(n_image_piece)
                targets.append(_Region(root["n_image"], where))
        # dask types ``targets`` as array-likes; it only needs their ``__setitem__``
        da.store(sources, targets, lock=False)  # type: ignore[arg-type]

    def model(self, buffer: int = 0) -> da.Array:
        """The ``(S, ny, nx)`` model planes of ``buffer`` (0 or 1), lazily."""
        return da.from_zarr(str(self.path), component=_buffer(buffer))

    def n_image(self) -> da.Array:
        """The stored ``(S, ny, nx)`` ``n_image``, lazily."""
        return da.from_zarr(str(self.path), component="n_image")

    def _inputs_file(self, block: tuple[int, int]) -> Path:
        return self.path / _INPUTS_DIR / f"{int(block[0])}_{int(block[1])}.npz"

    def has_inputs(self, block: tuple[int, int]) -> bool:
        """Whether a block's prepared fit inputs are kept (:meth:`save_inputs`).

        Parameters
        ----------
        block : (int, int)
            The block's index on the tile grid.

        Returns
        -------
        bool
        """
        return self._inputs_file(block).is_file()

    def save_inputs(
        self, block: tuple[int, int], prepared: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Keep a block's prepared fit inputs (uncompressed ``.npz``) and return them.

        The file appears whole or not at all (written beside, then renamed), so
        an interrupted run never reads half of one.

        Parameters
        ----------
        block : (int, int)
            The block's index on the tile grid.
        prepared : dict of str to numpy.ndarray
            Its inputs, as :func:`dcr_dask.graph.assemble` prepares them.

        Returns
        -------
        dict of str to numpy.ndarray
            ``prepared``, unchanged.
        """
        target = self._inputs_file(block)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.stem}.{os.getpid()}.{threading.get_ident()}.part")
        with open(partial, "wb") as handle:
            np.savez(handle, **prepared)  # type: ignore[arg-type]  # numpy types kwds as its flag
        os.replace(partial, target)
        return prepared

    def load_inputs(self, block: tuple[int, int]) -> dict[str, np.ndarray]:
        """A block's kept prepared fit inputs (:meth:`save_inputs`).

        Parameters
        ----------
        block : (int, int)
            The block's index on the tile grid.

        Returns
        -------
        dict of str to numpy.ndarray
        """
        with np.load(self._inputs_file(block), allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}


#: The directory, inside the store, of the blocks' prepared fit inputs (several groups).
_INPUTS_DIR = "fit_inputs"

#: The Zarr arrays of the model's buffers 0 and 1.
_BUFFERS = ("model", "model_1")


def _buffer(buffer: int) -> str:
    if buffer not in (0, 1):
        raise ValueError(f"the scratch store has model buffers 0 and 1, not {buffer!r}")
    return _BUFFERS[buffer]


class _Region:
    """A writable window of a Zarr array, for ``dask.array.store``."""

    def __init__(self, array: Any, window: tuple[slice, ...]) -> None:
        self.array = array
        self.window = window

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        target = []
        for outer, inner, size in zip(self.window, key, np.shape(value), strict=True):
            start = (outer.start or 0) + (inner.start or 0)
            target.append(slice(start, start + size))
        self.array[tuple(target)] = value
