"""The package's layers: every moved module is found at its new home and at its old path."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import dcr_dask
from dcr_dask._moved import MOVED

PACKAGE = Path(dcr_dask.__file__).parent


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_old_import_path_is_the_module_at_its_new_home(old: str, new: str) -> None:
    module = importlib.import_module(new)
    parts = Path(module.__file__).relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":  # a subpackage (dcr_dask.running.cluster)
        parts = parts[:-1]
    assert parts == tuple(new.split(".")[1:])
    # No module is left at the old place (one home per module).
    assert not (PACKAGE / f"{old.rsplit('.', 1)[1]}.py").exists()
    assert not (PACKAGE / old.rsplit(".", 1)[1]).exists()
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        moved = importlib.import_module(old)
    assert moved is module
    # The import machinery did not overwrite the real module's identity.
    assert module.__spec__.name == new
    assert module.__name__ == new


def test_a_module_inside_a_moved_package_is_one_module() -> None:
    """``dcr_dask.cluster`` became ``dcr_dask.running.cluster`` (a package): a name
    inside it by the old path is the module at its new home, not a second copy."""
    from dcr_dask.running.cluster import spec

    sys.modules.pop("dcr_dask.cluster.spec", None)
    sys.modules.pop("dcr_dask.cluster", None)
    with pytest.warns(DeprecationWarning, match="dcr_dask.running.cluster.spec"):
        old = importlib.import_module("dcr_dask.cluster.spec")
    assert old is spec
    assert old.load_cluster_spec is spec.load_cluster_spec
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("dcr_dask.running.cluster.no_such_module")


def test_from_package_import_old_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # An earlier ``import dcr_dask.shift`` (the test above) leaves the name bound
    # on the package, and ``from`` would then find it without importing.
    monkeypatch.delattr(dcr_dask, "shift", raising=False)
    monkeypatch.delitem(sys.modules, "dcr_dask.shift", raising=False)
    with pytest.warns(DeprecationWarning, match="dcr_dask.kernels.shift"):
        from dcr_dask import shift
    assert shift is importlib.import_module("dcr_dask.kernels.shift")


def test_run_is_the_function_even_after_the_running_layer_is_imported() -> None:
    import dcr_dask.running.pipeline

    assert dcr_dask.run is dcr_dask.running.pipeline.run
    assert callable(dcr_dask.run)


def test_functions_pickle_by_their_new_path() -> None:
    from dcr_dask.kernels.shift import shift_image as func

    assert pickle.loads(pickle.dumps(func)) is func
    assert b"dcr_dask.kernels.shift" in pickle.dumps(func)


def test_import_contracts_hold() -> None:
    """The import rules of pyproject.toml's [tool.importlinter] hold (also run by CI)."""
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.exists(), "import-linter is a test dependency: pip install -e '.[test]'"
    result = subprocess.run(
        [str(lint), "--no-cache"],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old_module", "name", "new_module"),
    [
        ("dcr_dask.physics.subbands", "band_from_config", "dcr_dask.settings"),
        ("dcr_dask.physics.subbands", "run_shifts", "dcr_dask.settings"),
        ("dcr_dask.physics.subbands", "config_for_warps", "dcr_dask.settings"),
        ("dcr_dask.graph.template", "matched_template", "dcr_dask.running.templates"),
        ("dcr_dask.graph.template", "check_visit_for_store", "dcr_dask.running.templates"),
    ],
)
def test_names_moved_up_a_layer_still_import_with_a_warning(
    old_module: str, name: str, new_module: str
) -> None:
    """Readers of the config moved out of the physics and graph layers; their old
    names resolve, by name only (the lower layer does not import the upper one)."""
    old = importlib.import_module(old_module)
    with pytest.warns(DeprecationWarning, match=f"{old_module}.{name} moved to {new_module}"):
        moved = getattr(old, name)
    assert moved is getattr(importlib.import_module(new_module), name)
    with pytest.raises(AttributeError):
        old.no_such_name  # noqa: B018
