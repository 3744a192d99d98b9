"""Progress of the run's Dask computations, shown on stderr.

Off by default for library calls; the command line turns it on (not with
``--quiet``). Each tracked stage (ingest, the checkpoints of CompareWarp, every
iteration of every group of subregions, the output) draws a bar of finished
tasks that redraws itself on a terminal, and in any case ends with one line::

    fit group 1/2, iteration 3: 12/12 tasks in 4.1 s

Examples
--------
>>> from dcr_dask.progress import show_progress, progress_enabled
>>> with show_progress():
...     progress_enabled()
True
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from distributed import futures_of, wait

__all__ = ["progress_enabled", "show_progress", "track"]

_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("dcr_dask_progress", default=False)
_BAR_WIDTH = 30


def progress_enabled() -> bool:
    """Whether progress is shown in this context."""
    return _ENABLED.get()


@contextlib.contextmanager
def show_progress(enabled: bool = True) -> Iterator[None]:
    """Show (or hide) progress for the computations run inside the block.

    Parameters
    ----------
    enabled : bool
        True to show progress, False to hide it.
    """
    token = _ENABLED.set(bool(enabled))
    try:
        yield
    finally:
        _ENABLED.reset(token)


def track(
    collections: Any, label: str, *, stream: TextIO | None = None, interval_s: float = 0.2
) -> None:
    """Wait for persisted Dask collections (or futures), drawing their progress.

    Does nothing but wait when progress is off, and returns at once when there
    are no futures (a computation not on a distributed cluster). A task's
    error is not raised here: it surfaces when the results are read.

    Parameters
    ----------
    collections : object
        Futures, or Dask collections persisted on a distributed client.
    label : str
        What is computed, e.g. ``"ingest"``.
    stream : file-like, optional
        Where to draw; default ``sys.stderr``.
    interval_s : float
        Seconds between redraws.
    """
    futures = futures_of(collections)
    if not futures:
        return
    if not progress_enabled():
        wait(futures)
        return
    stream = stream or sys.stderr
    redraw = hasattr(stream, "isatty") and stream.isatty()
    started = time.perf_counter()
    total = len(futures)
    while True:
        done = sum(future.done() for future in futures)
        if redraw:
            filled = int(_BAR_WIDTH * done / total)
            stream.write(
                f"\r{label} [{'#' * filled:<{_BAR_WIDTH}}] {done}/{total} tasks"
                f" {time.perf_counter() - started:.1f} s"
            )
            stream.flush()
        if done == total:
            break
        time.sleep(interval_s)
    end = "\r\033[2K" if redraw else ""
    stream.write(f"{end}{label}: {total}/{total} tasks in {time.perf_counter() - started:.1f} s\n")
    stream.flush()
