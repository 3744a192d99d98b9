"""Import paths of modules that moved when the package became layers of subpackages.

Until version 0.1 every module sat at the top of the package (``dcr_dask.shift``,
``dcr_dask.pipeline``...). They now live in the layer they belong to
(``dcr_dask.kernels.shift``, ``dcr_dask.running.pipeline``...). So that scripts,
notebooks and pickled references written against the old paths keep working, a
meta-path finder answers an old name with the module at its new home (the very
same module object, so monkeypatching either name patches both) and emits a
:class:`DeprecationWarning` naming the new path. Single names that moved up a
layer are forwarded the same way by :func:`moved_names`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Callable, Iterable
from types import ModuleType

__all__ = ["MOVED", "install", "moved_names", "new_name"]

#: Old module name -> new module name.
MOVED: dict[str, str] = {
    f"dcr_dask.{name}": f"dcr_dask.{layer}.{name}"
    for layer, names in {
        "physics": ("bands", "geometry", "refraction", "subbands", "transmission"),
        "kernels": (
            "artifacts",
            "convergence",
            "detection",
            "model",
            "psf",
            "psf_stars",
            "regularize",
            "shift",
            "stack",
        ),
        "graph": (
            "assemble",
            "bright_objects",
            "coadd",
            "coadd_psf",
            "compare_warp",
            "interp",
            "labels",
            "template",
        ),
        "running": ("cluster", "input_checks", "pipeline"),
    }.items()
    for name in names
}


def new_name(name: str) -> str | None:
    """The new home of an old module name, or None if it did not move.

    A module inside a moved package moved with it: ``dcr_dask.cluster.spec`` is
    ``dcr_dask.running.cluster.spec`` (else Python would load that file a second
    time under the old name, as another module object).
    """
    if name in MOVED:
        return MOVED[name]
    for old, new in MOVED.items():
        if name.startswith(old + "."):
            return new + name[len(old) :]
    return None


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Find an old module name and load it as the module at its new home."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("dcr_dask.") or new_name(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        moved_to = new_name(spec.name)
        assert moved_to is not None  # find_spec answers moved names only
        warnings.warn(
            f"{spec.name} moved to {moved_to}; import it from there "
            "(the old path will be removed in a future version)",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(moved_to)
        # The import machinery sets ``__spec__`` on what this returns; keep the real one.
        self._real_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._real_spec


_FINDER = _MovedModuleFinder()


def install() -> None:
    """Put the finder of moved modules first on :data:`sys.meta_path` (once).

    First, so that it answers a name inside a moved package before the path
    finder loads the file again under that name.
    """
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def moved_names(module: str, names: Iterable[str], new_module: str) -> Callable[[str], object]:
    """A module ``__getattr__`` that forwards ``names`` to ``new_module``, with a warning.

    The lower layer looks the new module up by name when an old name is asked
    for, so it never imports the layer above it.

    Parameters
    ----------
    module : str
        The module the names left (its ``__name__``).
    names : iterable of str
        The names that moved.
    new_module : str
        Where they live now.

    Returns
    -------
    callable
        To assign to the old module's ``__getattr__``.
    """
    moved = frozenset(names)

    def __getattr__(name: str) -> object:
        if name in moved:
            warnings.warn(
                f"{module}.{name} moved to {new_module}.{name}",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(importlib.import_module(new_module), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
