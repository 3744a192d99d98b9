"""Import paths of modules that moved when the package became layers of subpackages.

Until version 0.1 every module sat at the top of the package (``dcr_dask.shift``,
``dcr_dask.pipeline``...). They now live in the layer they belong to
(``dcr_dask.kernels.shift``, ``dcr_dask.running.pipeline``...). So that scripts,
notebooks and pickled references written against the old paths keep working, a
meta-path finder answers an old name with the module at its new home (the very
same module object, so monkeypatching either name patches both) and emits a
:class:`DeprecationWarning` naming the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED", "install"]

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


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Find an old module name and load it as the module at its new home."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new_name = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new_name}; import it from there "
            "(the old path will be removed in a future version)",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(new_name)
        # The import machinery sets ``__spec__`` on what this returns; keep the real one.
        self._real_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._real_spec


_FINDER = _MovedModuleFinder()


def install() -> None:
    """Put the finder of moved modules on :data:`sys.meta_path` (once)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)
