"""Config files: the formats by extension, the Python files that ``save`` writes and
``load`` executes, and the reading and writing of TOML, YAML and JSON files.

The :class:`~dcr_dask.config.base.ConfigBase` methods (``saveToStream``,
``loadFromStream``, ``dumps``, ``to_file``, ``load_file``...) keep their documentation
and delegate to the helpers here, which know the formats but not the fields.
"""

from __future__ import annotations

import json
import math
import sys
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import CodeType
from typing import IO, TYPE_CHECKING, Any

import tomli_w
import yaml

from dcr_dask.config.history import _external_stacklevel, _provenance
from dcr_dask.errors import InputError

if TYPE_CHECKING:
    from dcr_dask.config.base import ConfigBase

_FILE_FORMATS = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json", ".py": "python"}
#: The package whose classes saved Python files name (``import dcr_dask.config``).
_PACKAGE = __name__.rpartition(".")[0]


def _file_format(path: Path) -> str:
    fmt = _FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_FILE_FORMATS))
        raise InputError(
            f"unknown config file extension {path.suffix!r}; expected one of {known}",
            filename=str(path),
        )
    return fmt


def _format_literal(value: Any) -> str:
    """Python source for a field value that round-trips exactly (also inf and nan)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, list):
        return "[" + ", ".join(_format_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (f"{_format_literal(k)}: {_format_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return repr(value)


def _import_path(cls: type) -> str:
    """The module a saved Python file imports ``cls`` from.

    A class of this package that the package exports is named by the package
    (``dcr_dask.config.DcrAssembleCoaddConfig``), whichever of its modules defines it,
    so that saved files do not depend on the package's inner layout; any other class
    by its own module.
    """
    if cls.__module__.startswith(_PACKAGE + "."):
        package = sys.modules.get(_PACKAGE)
        if package is not None and getattr(package, cls.__qualname__, None) is cls:
            return _PACKAGE
    return cls.__module__


def _python_header(cls: type, root: str) -> str:
    """The first lines of a saved Python config file: a warning, an import and a type check."""
    module = _import_path(cls)
    return (
        f"# dcr_dask configuration: {cls.__name__}. This file is Python and is executed\n"
        f"# when loaded (dcr_dask.config.ConfigBase.load): load only files you trust.\n"
        f"import {module}\n\n"
        f"if not isinstance({root}, {module}.{cls.__qualname__}):\n"
        f"    raise TypeError(f'this file configures a {cls.__qualname__}, "
        f"not a {{type({root}).__name__}}')\n"
    )


def _execute_python(
    config: ConfigBase,
    stream: IO[str] | str | bytes | CodeType,
    root: str,
    filename: str | None,
) -> None:
    """Execute Python config code on ``config`` (the body of ``ConfigBase.loadFromStream``)."""
    if hasattr(stream, "read"):
        stream = stream.read()
    label = f"load {filename}" if filename is not None else "loadFromStream"
    code = (
        stream
        if isinstance(stream, CodeType)
        else compile(stream, filename or "<config stream>", "exec")
    )
    namespace: dict[str, Any] = {"__file__": filename, "__name__": "__dcr_dask_config__"}
    namespace[root] = config
    if root == "config" and "root" in code.co_names and "config" not in code.co_names:
        warnings.warn(
            f"config file {filename or '<stream>'} refers to its config as 'root'; "
            "use 'config' instead (support for 'root' will be removed)",
            FutureWarning,
            stacklevel=_external_stacklevel(),
        )
        namespace["root"] = config
    with _provenance(label):
        exec(code, namespace)


def _dump_text(fmt: str, data: Mapping[str, Any], class_name: str) -> str:
    """The text of a TOML, YAML or JSON config file holding ``data``.

    TOML and YAML begin with a comment naming the config class; ``fmt`` is one of
    ``"toml"``, ``"yaml"`` and ``"json"``.
    """
    header = f"# dcr_dask configuration: {class_name}\n"
    if fmt == "toml":
        return header + tomli_w.dumps(data)
    if fmt == "yaml":
        return header + yaml.safe_dump(data, sort_keys=False)
    return json.dumps(data, indent=2) + "\n"


def _read_mapping(path: Path, fmt: str) -> Mapping[str, Any]:
    """Read the mapping of field names that a TOML, YAML or JSON config file holds.

    Raises
    ------
    dcr_dask.errors.InputError
        If the file cannot be read or parsed, or does not hold a mapping (an empty
        file holds an empty one).
    """
    try:
        text = path.read_text(encoding="utf-8")
        if fmt == "toml":
            data = tomllib.loads(text)
        elif fmt == "yaml":
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
        message = f"cannot read {fmt.upper()} config: {error}"
        raise InputError(message, filename=str(path)) from error
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise InputError(
            f"a config file must hold a mapping of field names, not {type(data).__name__}",
            filename=str(path),
        )
    return data
