"""dcr_dask: DCR-corrected coadds of the sky, computed with Dask.

Differential Chromatic Refraction (DCR) stretches every source toward the
zenith by an amount that depends on its colour and on the airmass. dcr_dask
forward-models the sky in a few sub-bands of a filter, as Rubin's
``DcrAssembleCoaddTask`` does, and evaluates every step as lazy Dask graphs
over tiles that may be larger than memory.
"""

from typing import TYPE_CHECKING

from dcr_dask import _moved
from dcr_dask._version import __version__

if TYPE_CHECKING:
    # what ``__getattr__`` gives at run time, for type checkers
    from dcr_dask.running.pipeline import run

_moved.install()

__all__ = ["__version__", "run"]


def __getattr__(name: str) -> object:
    # ``dcr_dask.run`` without importing Dask and distributed at ``import dcr_dask``.
    if name == "run":
        from dcr_dask.running.pipeline import run

        return run
    raise AttributeError(f"module 'dcr_dask' has no attribute {name!r}")
