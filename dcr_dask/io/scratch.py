"""The DCR fit's scratch store: the model planes and ``n_image``, written group by group.

The fit (:func:`dcr_dask.graph.assemble.fit_tile`) keeps its model in a Zarr
store of the work directory, so that a tile larger than memory is fitted one
group of subregions at a time and an interrupted run goes on from the last
group written. This module is that store's only reader and writer; the graph
layer sees it through the :class:`~dcr_dask.graph.assemble.FitScratch`
protocol. The store carries dcr_dask's writer mark, so that only a store
dcr_dask wrote is ever deleted there.
"""

from __future__ import annotations

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
    """The fit's scratch Zarr store at ``path`` (``model`` float32, ``n_image`` uint16).

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
        """Write the whole ``(S, ny, nx)`` starting ``model`` and ``n_image``, marked as dcr_dask's.

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

    def write_windows(
        self, windows: Sequence[Window], model: Sequence[da.Array], n_image: Sequence[da.Array]
    ) -> None:
        """Write the ``(S, wy, wx)`` model and ``n_image`` pieces of each window, at once.

        Parameters
        ----------
        windows : sequence of (int, int, int, int)
            ``(y0, y1, x0, x1)`` of each piece on the tile.
        model, n_image : sequence of dask.array.Array
            One piece of each per window.
        """
        import zarr

        root = zarr.open_group(str(self.path), mode="r+")
        sources: list[da.Array] = []
        targets: list[_Region] = []
        for (y0, y1, x0, x1), model_piece, n_image_piece in zip(
            windows, model, n_image, strict=True
        ):
            where = (slice(None), slice(y0, y1), slice(x0, x1))
            sources += [model_piece.astype(np.float32), n_image_piece]
            targets += [_Region(root["model"], where), _Region(root["n_image"], where)]
        # dask types ``targets`` as array-likes; it only needs their ``__setitem__``
        da.store(sources, targets, lock=False)  # type: ignore[arg-type]

    def model(self) -> da.Array:
        """The stored ``(S, ny, nx)`` model planes, lazily."""
        return da.from_zarr(str(self.path), component="model")

    def n_image(self) -> da.Array:
        """The stored ``(S, ny, nx)`` ``n_image``, lazily."""
        return da.from_zarr(str(self.path), component="n_image")


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
