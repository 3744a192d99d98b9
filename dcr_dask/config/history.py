"""Where config values come from: history entries, the call-stack origin of an assignment,
and the tracked list/dict values whose in-place changes are recorded.

Every frame of a module of this package (``dcr_dask/config/``) or of attrs counts as
*internal*: an assignment is attributed to the first frame outside them (the user's
file and line), and a warning points there (:func:`_external_stacklevel`).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

import attrs

from dcr_dask.errors import ConfigError

if TYPE_CHECKING:
    from dcr_dask.config.base import ConfigBase

#: The directory of the config package, with a trailing separator: a frame of any of its
#: modules is internal.
_CONFIG_DIR = os.path.join(os.path.normcase(os.path.dirname(os.path.abspath(__file__))), "")
_ATTRS_DIRS = tuple(
    os.path.normcase(os.path.dirname(os.path.abspath(module.__file__)))
    for module in (attrs, sys.modules["attr"])
    if module.__file__
)


@attrs.frozen
class HistoryEntry:
    """One recorded value of one field.

    Attributes
    ----------
    value : object
        The value set (a copy; sub-configurations are shown by class name).
    label : str
        How it was set: ``"default"`` (declared default), ``"setDefaults"``,
        ``"assignment"``, ``"init"``, ``"update"``, ``"override"``,
        ``"load <file>"`` or ``"loadFromStream"``.
    location : str
        Where: ``file:line`` of the code that set it, or the file it was read
        from; empty for declared defaults.
    """

    value: Any
    label: str
    location: str


#: (label, location) of the operation under way, set by load/update/apply_overrides.
_PROVENANCE: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar(
    "dcr_dask_config_provenance", default=None
)


@contextlib.contextmanager
def _provenance(label: str, location: str | None = None) -> Iterator[None]:
    token = _PROVENANCE.set((label, location))
    try:
        yield
    finally:
        _PROVENANCE.reset(token)


def _is_internal(frame: FrameType) -> bool:
    """Whether ``frame`` runs code of the config package or of attrs."""
    filename = os.path.normcase(os.path.abspath(frame.f_code.co_filename))
    return filename.startswith((_CONFIG_DIR, *_ATTRS_DIRS))


def _where(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _external_stacklevel() -> int:
    """Return the ``stacklevel`` that makes a warning point at the first caller outside."""
    level = 1
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and _is_internal(frame):
        frame = frame.f_back
        level += 1
    return level


def _untracked(value: Any) -> Any:
    """Return a plain copy of a list or dict field value; other values unchanged."""
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


class _TrackedList(list):
    """A list field's value: in-place changes are checked and recorded by its config."""

    __slots__ = ("_name", "_owner")

    def __reduce__(self) -> tuple[type, tuple[list[Any]]]:
        return list, (list(self),)


class _TrackedDict(dict):
    """A dict field's value: in-place changes are checked and recorded by its config."""

    __slots__ = ("_name", "_owner")

    def __reduce__(self) -> tuple[type, tuple[dict[Any, Any]]]:
        return dict, (dict(self),)


def _tracked_method(
    base: type[list[Any]] | type[dict[Any, Any]], method_name: str
) -> Callable[..., Any]:
    base_method = getattr(base, method_name)

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        owner = self._owner
        if owner is None or getattr(owner, self._name) is not self:
            return base_method(self, *args, **kwargs)
        owner._check_not_frozen(self._name, self)
        before = base.copy(self)
        result = base_method(self, *args, **kwargs)
        try:
            owner._container_changed(self._name, self)
        except ConfigError:
            base.clear(self)
            if issubclass(base, list):
                base.extend(self, before)
            else:
                base.update(self, before)
            raise
        return result

    method.__name__ = method_name
    method.__doc__ = base_method.__doc__
    return method


for _name in (
    "append",
    "extend",
    "insert",
    "remove",
    "pop",
    "clear",
    "sort",
    "reverse",
    "__setitem__",
    "__delitem__",
    "__iadd__",
    "__imul__",
):
    setattr(_TrackedList, _name, _tracked_method(list, _name))
for _name in (
    "__setitem__",
    "__delitem__",
    "pop",
    "popitem",
    "clear",
    "update",
    "setdefault",
    "__ior__",
):
    setattr(_TrackedDict, _name, _tracked_method(dict, _name))
del _name


def _track(owner: ConfigBase, name: str, value: Any) -> Any:
    """Wrap a plain list/dict as a tracked container owned by ``owner.<name>``."""
    if isinstance(value, list):
        tracked: Any = _TrackedList(value)
    elif isinstance(value, dict):
        tracked = _TrackedDict(value)
    else:
        return value
    tracked._owner = owner
    tracked._name = name
    return tracked
