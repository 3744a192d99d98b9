"""Configuration of a DCR coadd: an attrs replacement for Rubin's ``DcrAssembleCoaddConfig``.

Every field of the reference configuration (``reference/DcrAssembleCoaddConfig.txt``)
exists here under its own name, with the reference's type, declared default, doc
string and valid range, together with the sub-configurations it names and a few
dcr_dask extensions (marked as such in their doc strings and in :attr:`FieldSpec.extension`).

How a config gets its values
----------------------------
1. *Declared defaults* (the reference document's ``default``) are set when the
   object is created. :meth:`ConfigBase.declared_default` returns them, and
   ``DcrAssembleCoaddConfig(apply_defaults=False)`` stops here.
2. :meth:`ConfigBase.setDefaults` then applies the computed defaults of the task
   (for instance ``doNImage = True`` and the CompareWarp detection thresholds), as
   pex_config does. Sub-configurations run their own ``setDefaults`` first.
3. Users change values by assignment, :meth:`~ConfigBase.update`, Python config
   files (:meth:`~ConfigBase.load`), TOML/YAML/JSON files
   (:meth:`~ConfigBase.load_file`) or ``FIELD=VALUE`` strings (:func:`apply_overrides`).

Every one of these steps is recorded in :attr:`ConfigBase.history` with the value,
a label (``"default"``, ``"setDefaults"``, ``"assignment"``, ``"update"``,
``"override"``, ``"load <file>"``...) and where it came from (``file:line``).

Checking
--------
Assignment checks the *type* of the value at once (an ``int`` is accepted for a
``float`` field, a ``bool`` is not accepted for an ``int`` field) and raises
:class:`~dcr_dask.errors.ConfigError` naming the dotted field and the value.
Checks of the *value* (ranges, allowed choices, list lengths, relations between
fields) are made by :meth:`~ConfigBase.validate`, because relations can only be
judged once all fields are set. ``validate`` reports every problem: one problem is
raised as a :class:`~dcr_dask.errors.ConfigError`; several are raised together as a
:class:`ConfigErrors`, which is both a ``ConfigError`` (``except ConfigError``
catches it, and its message lists each problem) and an ``ExceptionGroup`` of the
individual errors (``except* ConfigError`` handles them one by one).

Security
--------
:meth:`~ConfigBase.load` and :meth:`~ConfigBase.loadFromStream` *execute* Python
code, exactly as pex_config does: only load Python config files you trust. The
TOML, YAML and JSON formats of :meth:`~ConfigBase.load_file` and
:meth:`~ConfigBase.from_file` never execute anything; they read ``.py`` files only
when called with ``allow_python=True``.
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import copy
import difflib
import functools
import json
import math
import os
import sys
import textwrap
import tomllib
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import CodeType, FrameType
from typing import IO, Any, Self, TypeVar

import attrs
import numpy as np
import tomli_w
import yaml

from dcr_dask.errors import (
    ConfigError,
    ConfigErrors,
    InapplicableFieldWarning,
    InputError,
    OverrideError,
)
from dcr_dask.physics.bands import accepted_band_names, known_bands_text
from dcr_dask.physics.refraction import MAX_WAVELENGTH_NM, MIN_WAVELENGTH_NM

__all__ = [
    "NOT_APPLICABLE",
    "REFUSED",
    "AssembleCoaddConfig",
    "BackgroundConfig",
    "Check",
    "CoaddInputRecorderConfig",
    "CoaddPsfConfig",
    "CompareWarpAssembleCoaddConfig",
    "ConfigBase",
    "ConfigErrors",
    "Connections",
    "DcrAssembleCoaddConfig",
    "FieldSpec",
    "GaussianPsfFactory",
    "HistoryEntry",
    "InterpImageConfig",
    "MeasurePsfConfig",
    "Range",
    "ScaleVarianceConfig",
    "ScaleZeroPointConfig",
    "SelectImagesConfig",
    "SingleFrameMeasurementConfig",
    "SourceDetectionConfig",
    "apply_overrides",
    "many_artifacts_overrides",
]

_META_KEY = "dcr_dask.config"
_THIS_FILE = os.path.normcase(os.path.abspath(__file__))
_ATTRS_DIRS = tuple(
    os.path.normcase(os.path.dirname(os.path.abspath(module.__file__)))
    for module in (attrs, sys.modules["attr"])
    if module.__file__
)
_FILE_FORMATS = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json", ".py": "python"}


# --------------------------------------------------------------------------- errors


def _raise_all(problems: list[ConfigError]) -> None:
    """Raise nothing, the single problem, or all problems as one :class:`ConfigErrors`."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ConfigErrors(problems)


# ------------------------------------------------------------------ field metadata


@attrs.frozen
class Range:
    """An interval of allowed values, printed as the reference prints it (``[0.0,1.0)``).

    Parameters
    ----------
    min, max : float or int or None
        Bounds; None means unbounded on that side.
    min_inclusive, max_inclusive : bool
        Whether each bound is allowed.
    """

    min: float | None = None
    max: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
            return False
        if self.min is not None and (
            value < self.min or (value == self.min and not self.min_inclusive)
        ):
            return False
        return not (
            self.max is not None
            and (value > self.max or (value == self.max and not self.max_inclusive))
        )

    def __str__(self) -> str:
        low = "-inf" if self.min is None else str(self.min)
        high = "inf" if self.max is None else str(self.max)
        left = "[" if self.min_inclusive and self.min is not None else "("
        right = "]" if self.max_inclusive and self.max is not None else ")"
        return f"{left}{low},{high}{right}"


@attrs.frozen
class Check:
    """A named rule on a field's value, used by :meth:`ConfigBase.validate`.

    Parameters
    ----------
    predicate : callable
        Takes the (type-checked, not None) value and returns True when it is allowed.
    description : str
        What the rule requires, phrased to follow the field name ("must be odd").
    """

    predicate: Callable[[Any], bool]
    description: str


def _mask_plane_names(value: str | Iterable[str]) -> bool:
    names = [value] if isinstance(value, str) else list(value)
    return all(isinstance(name, str) and name.strip() and name == name.strip() for name in names)


_MASK_PLANES = Check(
    _mask_plane_names, "mask plane names must be non-empty strings without surrounding spaces"
)
_ODD = Check(lambda value: value % 2 == 1, "must be odd")
_ZERO_OR_ABOVE_ONE = Check(
    lambda value: value == 0 or value > 1, "must be 0 (disabled) or greater than 1"
)
_NON_NEGATIVE = Range(min=0)
_POSITIVE = Range(min=0, min_inclusive=False)
_AT_LEAST_ONE = Range(min=1)

#: dcr_dask's iteration limits of the DCR fit (``minNumIter``, ``maxNumIter``,
#: ``convergenceThreshold``; the reference: None, None, 0.001), set by
#: :meth:`DcrAssembleCoaddConfig.setDefaults`. The threshold is so small that a
#: subregion stops when its metric rises (after ``minNumIter``) or at ``maxNumIter``.
DCR_DASK_MIN_NUM_ITER = 30
#: dcr_dask's ``dcrNumSubfilters`` (the reference: 3), set by ``setDefaults``.
DCR_DASK_NUM_SUBFILTERS = 4
DCR_DASK_MAX_NUM_ITER = 60
DCR_DASK_CONVERGENCE_THRESHOLD = 1e-6


def _type_label(dtype: type) -> str:
    return dtype.__name__


def _coerce_scalar(dtype: type, value: Any) -> Any:
    """Return ``value`` as ``dtype``, or raise TypeError if it is not of that type.

    An int is accepted for a float; a bool is accepted only for a bool.
    """
    is_bool = isinstance(value, bool | np.bool_)
    if dtype is bool:
        if is_bool:
            return bool(value)
    elif dtype is int:
        if isinstance(value, int | np.integer) and not is_bool:
            return int(value)
    elif dtype is float:
        if isinstance(value, int | float | np.integer | np.floating) and not is_bool:
            return float(value)
    elif dtype is str and isinstance(value, str):
        return str(value)
    raise TypeError(f"expected {_type_label(dtype)}, got {type(value).__name__}")


@attrs.frozen
class FieldSpec:
    """Everything known about one configuration field: its type, default, doc and rules.

    Instances are stored in the attrs metadata of each field; read them with
    :meth:`ConfigBase.fields` or :meth:`ConfigBase.field_spec`.

    Attributes
    ----------
    kind : {"scalar", "list", "dict", "config"}
        What the field holds.
    dtype : type
        Python type of a scalar, or the config class of a sub-configuration.
    doc : str
        The field's documentation (the reference's, for reference fields).
    default : object
        The declared default (for a sub-configuration, its class).
    optional : bool
        Whether None is an allowed value.
    itemtype, keytype : type or None
        Types of list items / dict values, and of dict keys.
    bounds : Range or None
        Valid range of a scalar, of each list item or of each dict value.
    allowed : tuple or None
        Allowed values of a scalar or of each list item.
    length : int or None
        Required length of a list.
    checks : tuple of Check
        Further rules on the value.
    deprecated : str or None
        If set, the field is deprecated and this says what to do instead.
    extension : bool
        True for fields that dcr_dask adds to the reference configuration.
    reference_class : str or None
        For sub-configurations, the fully qualified reference (pex_config) class.
    doc_type : str or None
        For sub-configurations, the type as the reference prints it
        (``ConfigurableInstance``, ``CoaddPsfConfig``, ``Connections``).
    name : str
        The field's (dotted) name, filled in by :meth:`ConfigBase.fields`.
    """

    kind: str
    dtype: type
    doc: str
    default: Any
    optional: bool = False
    itemtype: type | None = None
    keytype: type | None = None
    bounds: Range | None = None
    allowed: tuple[Any, ...] | None = None
    length: int | None = None
    checks: tuple[Check, ...] = ()
    deprecated: str | None = None
    extension: bool = False
    reference_class: str | None = None
    doc_type: str | None = None
    name: str = ""

    @property
    def type_name(self) -> str:
        """The type as the reference document prints it (``float``, ``List``, ``Dict``...)."""
        if self.doc_type is not None:
            return self.doc_type
        return {"list": "List", "dict": "Dict", "config": "ConfigurableInstance"}.get(
            self.kind, _type_label(self.dtype)
        )

    @property
    def is_config(self) -> bool:
        """True if the field holds a sub-configuration."""
        return self.kind == "config"

    def make_default(self) -> Any:
        """Return a fresh copy of the declared default (a new config for a sub-configuration)."""
        if self.kind == "config":
            return self.dtype(apply_defaults=False)
        if self.kind == "list":
            return list(self.default)
        return copy.deepcopy(self.default)

    def coerce(self, field: str, value: Any) -> Any:
        """Check the type of ``value`` and return it normalised (int to float, tuple to list).

        Parameters
        ----------
        field : str
            Dotted field name, for the error message.
        value : object
            Candidate value.

        Returns
        -------
        value : object
            The value as stored (plain list/dict for containers).

        Raises
        ------
        ConfigError
            If the value has the wrong type, naming the field and the value.
        """
        if value is None:
            if self.optional:
                return None
            raise ConfigError(field, value, f"None is not allowed; expected {self._expected()}")
        try:
            if self.kind == "scalar":
                return _coerce_scalar(self.dtype, value)
            if self.kind == "list":
                return self._coerce_list(value)
            if self.kind == "dict":
                return self._coerce_dict(value)
            if isinstance(value, self.dtype):
                return value
            raise TypeError(f"expected a {self.dtype.__name__}, got {type(value).__name__}")
        except TypeError as error:
            raise ConfigError(field, value, str(error)) from None

    def _expected(self) -> str:
        if self.kind == "list":
            return f"a list of {_type_label(self.itemtype)}"
        if self.kind == "dict":
            return f"a dict of {_type_label(self.keytype)} to {_type_label(self.itemtype)}"
        return self.dtype.__name__ if self.kind == "config" else _type_label(self.dtype)

    def _coerce_list(self, value: Any) -> list[Any]:
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise TypeError(f"expected {self._expected()}, got {type(value).__name__}")
        items = []
        for index, item in enumerate(value):
            try:
                items.append(_coerce_scalar(self.itemtype, item))
            except TypeError as error:
                raise TypeError(f"item {index} ({item!r}): {error}") from None
        return items

    def _coerce_dict(self, value: Any) -> dict[Any, Any]:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected {self._expected()}, got {type(value).__name__}")
        result = {}
        for key, item in value.items():
            try:
                result[_coerce_scalar(self.keytype, key)] = _coerce_scalar(self.itemtype, item)
            except TypeError as error:
                raise TypeError(f"entry {key!r}: {error}") from None
        return result

    def problem(self, field: str, value: Any) -> ConfigError | None:
        """Return the error for ``value`` if it breaks any rule of this field (for ``validate``).

        Parameters
        ----------
        field : str
            Dotted field name, for the message.
        value : object
            The field's current value.

        Returns
        -------
        problem : ConfigError or None
            None if the value is allowed; else one error naming the field and value
            and giving every rule it breaks.
        """
        if self.kind == "config":
            return None
        try:
            value = self.coerce(field, value)
        except ConfigError as error:
            return error
        if value is None:
            return None
        if self.kind == "list":
            items = list(value)
        elif self.kind == "dict":
            items = list(value.values())
        else:
            items = [value]
        every = "every item " if self.kind != "scalar" else ""
        broken = []
        if self.allowed is not None and any(item not in self.allowed for item in items):
            broken.append(f"{every}must be one of {', '.join(map(repr, self.allowed))}")
        if self.length is not None and len(value) != self.length:
            broken.append(f"must have exactly {self.length} items")
        if self.bounds is not None and any(item not in self.bounds for item in items):
            broken.append(f"{every}must be in {self.bounds}")
        if (self.itemtype or self.dtype) is float and not all(map(math.isfinite, items)):
            broken.append(f"{every}must be finite")
        broken += [check.description for check in self.checks if not check.predicate(value)]
        return ConfigError(field, value, "; ".join(broken)) if broken else None


def _spec_field(spec: FieldSpec) -> Any:
    default = spec.default if spec.kind == "scalar" else attrs.Factory(spec.make_default)
    return attrs.field(default=default, on_setattr=_on_setattr, metadata={_META_KEY: spec})


def _scalar(
    dtype: type,
    default: Any,
    doc: str,
    *,
    optional: bool | None = None,
    bounds: Range | None = None,
    allowed: tuple[Any, ...] | None = None,
    checks: tuple[Check, ...] = (),
    deprecated: str | None = None,
    extension: bool = False,
) -> Any:
    """Declare a scalar field (bool, int, float or str); None defaults make it optional."""
    if default is not None:
        default = _coerce_scalar(dtype, default)
    spec = FieldSpec(
        kind="scalar",
        dtype=dtype,
        doc=doc,
        default=default,
        optional=default is None if optional is None else optional,
        bounds=bounds,
        allowed=allowed,
        checks=checks,
        deprecated=deprecated,
        extension=extension,
    )
    return _spec_field(spec)


def _list(
    itemtype: type,
    default: Iterable[Any],
    doc: str,
    *,
    length: int | None = None,
    bounds: Range | None = None,
    allowed: tuple[Any, ...] | None = None,
    checks: tuple[Check, ...] = (),
) -> Any:
    """Declare a list field; the declared default is kept as a tuple, instances get lists."""
    spec = FieldSpec(
        kind="list",
        dtype=list,
        doc=doc,
        default=tuple(default),
        itemtype=itemtype,
        length=length,
        bounds=bounds,
        allowed=allowed,
        checks=checks,
    )
    return _spec_field(spec)


def _dict(
    keytype: type,
    itemtype: type,
    default: Mapping[Any, Any],
    doc: str,
    *,
    bounds: Range | None = None,
    checks: tuple[Check, ...] = (),
) -> Any:
    """Declare a dict field."""
    spec = FieldSpec(
        kind="dict",
        dtype=dict,
        doc=doc,
        default=dict(default),
        keytype=keytype,
        itemtype=itemtype,
        bounds=bounds,
        checks=checks,
    )
    return _spec_field(spec)


def _sub(
    config_class: type[ConfigBase],
    doc: str,
    *,
    reference: str,
    doc_type: str = "ConfigurableInstance",
    extension: bool = False,
) -> Any:
    """Declare a sub-configuration field holding an instance of ``config_class``."""
    spec = FieldSpec(
        kind="config",
        dtype=config_class,
        doc=doc,
        default=config_class,
        reference_class=reference,
        doc_type=doc_type,
        extension=extension,
    )
    return _spec_field(spec)


def _internal(default: Any = attrs.NOTHING, factory: Callable[[], Any] | None = None) -> Any:
    """Declare private state: not an init argument, not compared, not a config field."""
    return attrs.field(
        default=default,
        factory=factory,
        init=False,
        eq=False,
        repr=False,
        on_setattr=attrs.setters.NO_OP,
    )


_T = TypeVar("_T", bound=type)


def _configclass(cls: _T) -> _T:
    """Make ``cls`` a mutable, slotted attrs class whose ``__init__`` is ConfigBase's."""
    return attrs.define(cls, init=False, getstate_setstate=False)


# ----------------------------------------------------------------------- history


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
    filename = os.path.normcase(os.path.abspath(frame.f_code.co_filename))
    return filename == _THIS_FILE or filename.startswith(_ATTRS_DIRS)


def _where(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _in_set_defaults(frame: FrameType) -> bool:
    return frame.f_code.co_name == "setDefaults" and isinstance(
        frame.f_locals.get("self"), ConfigBase
    )


def _origin() -> tuple[str, str]:
    """Return (label, location) of the assignment under way, from the call stack.

    Assignments made inside a config's ``setDefaults`` are labelled
    ``"setDefaults"`` with the line in that method; otherwise the label comes from
    the operation under way (load, update...) or is ``"assignment"``, and the
    location is the first caller outside this module.
    """
    frame = sys._getframe(1)
    set_defaults_at = None
    while frame is not None and _is_internal(frame):
        if set_defaults_at is None and _in_set_defaults(frame):
            set_defaults_at = _where(frame)
        frame = frame.f_back
    if frame is not None and set_defaults_at is None and _in_set_defaults(frame):
        set_defaults_at = _where(frame)
    if set_defaults_at is not None:
        return "setDefaults", set_defaults_at
    location = "" if frame is None else _where(frame)
    provenance = _PROVENANCE.get()
    if provenance is None:
        return "assignment", location
    label, forced_location = provenance
    return label, location if forced_location is None else forced_location


def _external_stacklevel() -> int:
    """Return the ``stacklevel`` that makes a warning point at the first caller outside."""
    level = 1
    frame = sys._getframe(1)
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


def _snapshot(value: Any) -> Any:
    """The value as recorded in the history (a sub-configuration by its class name)."""
    return f"<{type(value).__name__}>" if isinstance(value, ConfigBase) else _untracked(value)


def _plain(value: Any) -> Any:
    """The value as :meth:`ConfigBase.toDict` gives it (a sub-configuration as a dict)."""
    return value.toDict() if isinstance(value, ConfigBase) else _untracked(value)


# ------------------------------------------------------------ tracked containers


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


def _tracked_method(base: type, method_name: str) -> Callable[..., Any]:
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
            (base.extend if base is list else base.update)(self, before)
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


# ------------------------------------------------------------------ setattr hook


def _on_setattr(instance: ConfigBase, attribute: attrs.Attribute, value: Any) -> Any:
    """attrs ``on_setattr`` hook of every config field: freeze, type, deprecation, history."""
    name = attribute.name
    spec: FieldSpec = attribute.metadata[_META_KEY]
    instance._check_not_frozen(name, value)
    if spec.kind in ("list", "dict") and value is getattr(instance, name, None):
        return value  # ``config.planes += [...]``: already checked and recorded in place
    value = spec.coerce(instance._dotted(name), value)
    if spec.kind == "config":
        value = copy.deepcopy(value)
        value._set_frozen(False)
        value._set_path(instance._dotted(name) + ".")
    else:
        value = _track(instance, name, value)
    if spec.deprecated is not None and value != spec.default:
        warnings.warn(
            f"config field {instance._dotted(name)!r} is deprecated: {spec.deprecated}",
            FutureWarning,
            stacklevel=_external_stacklevel(),
        )
    instance._record(name, value)
    return value


# ------------------------------------------------------------------- base class


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


def _values_close(a: Any, b: Any, rtol: float, atol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= atol + rtol * abs(b)
    if isinstance(a, list) and isinstance(b, list):
        pairs = zip(a, b, strict=False)
        return len(a) == len(b) and all(_values_close(x, y, rtol, atol) for x, y in pairs)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_values_close(a[k], b[k], rtol, atol) for k in a)
    return type(a) is type(b) and a == b


def _suggest(name: str, candidates: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for close matches of ``name``, or ``""``."""
    candidates = list(candidates)
    by_case = [c for c in candidates if c.lower() == name.lower()]
    tail = name.rsplit(".", 1)[-1].lower()
    by_tail = [c for c in candidates if c.rsplit(".", 1)[-1].lower() == tail]
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    matches = list(dict.fromkeys(by_case + close + by_tail))[:3]
    if not matches:
        return ""
    return "; did you mean " + " or ".join(repr(m) for m in matches) + "?"


@_configclass
class ConfigBase:
    """Machinery shared by every configuration class (pex_config's ``Config`` methods).

    Subclasses declare their fields as attrs attributes carrying a :class:`FieldSpec`
    and may override :meth:`setDefaults` (calling ``super().setDefaults()`` first)
    and :meth:`_cross_checks` (relations between fields).

    Parameters
    ----------
    apply_defaults : bool, optional
        Run :meth:`setDefaults` after setting the declared defaults (default True).
        With False the config holds the reference document's declared defaults only.
    **kwargs
        Field values applied after the defaults, as with :meth:`update`.
    """

    _frozen: bool = _internal(default=False)
    _history: dict[str, list[HistoryEntry]] = _internal(factory=dict)
    _path: str = _internal(default="")

    def __init__(self, *, apply_defaults: bool = True, **kwargs: Any) -> None:
        self.__attrs_init__()
        for name, spec in self._specs().items():
            value = getattr(self, name)
            if spec.kind == "config":
                value._set_path(name + ".")
            else:
                object.__setattr__(self, name, _track(self, name, value))
            self._history[name] = [HistoryEntry(_snapshot(value), "default", "")]
        if apply_defaults:
            self.setDefaults()
        if kwargs:
            with _provenance("init"):
                self._apply_mapping(kwargs)

    # -- pickling and copying: containers travel as plain lists/dicts.
    def __getstate__(self) -> dict[str, Any]:
        return {a.name: _untracked(getattr(self, a.name)) for a in attrs.fields(type(self))}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        for name, spec in self._specs().items():
            if spec.kind != "config":
                object.__setattr__(self, name, _track(self, name, getattr(self, name)))

    # ------------------------------------------------------------ field metadata
    @classmethod
    def _specs(cls) -> dict[str, FieldSpec]:
        return _class_specs(cls)

    @classmethod
    def fields(cls, recursive: bool = False) -> list[FieldSpec]:
        """List the fields of this configuration with their metadata.

        Parameters
        ----------
        recursive : bool, optional
            Also list the fields of sub-configurations, after the sub-configuration
            itself, under dotted names (``detect.thresholdValue``).

        Returns
        -------
        fields : list of FieldSpec
            Name, type (:attr:`FieldSpec.type_name`), declared default, doc,
            range, allowed values, deprecation and extension flags of each field.
        """
        found = []
        for name, spec in cls._specs().items():
            found.append(attrs.evolve(spec, name=name))
            if recursive and spec.kind == "config":
                found += [
                    attrs.evolve(sub, name=f"{name}.{sub.name}")
                    for sub in spec.dtype.fields(recursive=True)
                ]
        return found

    @classmethod
    def field_spec(cls, name: str) -> FieldSpec:
        """Return the metadata of one field.

        Parameters
        ----------
        name : str
            Field name, dotted for fields of sub-configurations.

        Returns
        -------
        spec : FieldSpec
            The field's metadata, with ``name`` filled in.

        Raises
        ------
        ConfigError
            If there is no such field (the message suggests close matches).
        """
        owner: type[ConfigBase] = cls
        parts = name.split(".")
        for depth, part in enumerate(parts):
            spec = owner._specs().get(part)
            if spec is None:
                raise _unknown_field(cls, name, None)
            if depth < len(parts) - 1:
                if spec.kind != "config":
                    raise ConfigError(name, None, f"{part!r} has no sub-fields")
                owner = spec.dtype
        return attrs.evolve(spec, name=name)

    @classmethod
    def field_doc(cls, name: str) -> str:
        """Return the doc string of a field (dotted names allowed).

        Parameters
        ----------
        name : str
            Field name.

        Returns
        -------
        doc : str
            The field's documentation.
        """
        return cls.field_spec(name).doc

    @classmethod
    def declared_default(cls, name: str) -> Any:
        """Return a field's declared default, the value before :meth:`setDefaults` runs.

        Parameters
        ----------
        name : str
            Field name, dotted for fields of sub-configurations.

        Returns
        -------
        default : object
            A copy of the declared default; for a sub-configuration, its class.
        """
        spec = cls.field_spec(name)
        return spec.default if spec.kind == "config" else copy.deepcopy(spec.default)

    @classmethod
    def _all_names(cls) -> list[str]:
        """Every dotted name, of leaf fields and of sub-configurations."""
        return [spec.name for spec in cls.fields(recursive=True)]

    # ------------------------------------------------------------- internals
    def _dotted(self, name: str) -> str:
        return f"{self._path}{name}"

    def _error(self, name: str, value: Any, message: str) -> ConfigError:
        """A ConfigError about this config's field ``name``, under its dotted name."""
        return self._located(name, ConfigError(self._dotted(name), value, message))

    def _located(self, name: str, error: ConfigError) -> ConfigError:
        """``error`` naming the file field ``name``'s current value was loaded from, if any."""
        entries = self._history.get(name)
        if entries and entries[-1].label.startswith("load ") and entries[-1].location:
            return error.in_file(entries[-1].location)
        return error

    def _set_path(self, prefix: str) -> None:
        object.__setattr__(self, "_path", prefix)
        for name, spec in self._specs().items():
            if spec.kind == "config":
                getattr(self, name)._set_path(f"{prefix}{name}.")

    def _set_frozen(self, frozen: bool) -> None:
        object.__setattr__(self, "_frozen", frozen)
        for name, spec in self._specs().items():
            if spec.kind == "config":
                getattr(self, name)._set_frozen(frozen)

    def _check_not_frozen(self, name: str, value: Any) -> None:
        if self._frozen:
            raise ConfigError(
                self._dotted(name),
                value,
                "cannot change a frozen config (freeze() was called on it or its parent)",
            )

    def _record(self, name: str, value: Any) -> None:
        label, location = _origin()
        self._history.setdefault(name, []).append(HistoryEntry(_snapshot(value), label, location))

    def _container_changed(self, name: str, container: Any) -> None:
        """Type-check a list/dict field changed in place, and record it."""
        coerced = self._specs()[name].coerce(self._dotted(name), container)
        base = list if isinstance(container, list) else dict
        base.clear(container)
        (base.extend if base is list else base.update)(container, coerced)
        self._record(name, container)

    def _resolve(self, name: str) -> tuple[ConfigBase, str, FieldSpec]:
        """Return (owning config, field name, spec) of a dotted name."""
        spec = type(self).field_spec(name)
        owner = self
        parts = name.split(".")
        for part in parts[:-1]:
            owner = getattr(owner, part)
        return owner, parts[-1], spec

    def _apply_mapping(self, mapping: Mapping[str, Any]) -> None:
        """Set fields from a (nested) mapping; collect every problem and raise them together."""
        problems: list[ConfigError] = []
        for key, value in mapping.items():
            spec = self._specs().get(key)
            if spec is None:
                problems.append(_unknown_field(type(self), key, value, self._path))
                continue
            try:
                if spec.kind == "config" and isinstance(value, Mapping):
                    getattr(self, key)._apply_mapping(value)
                else:
                    setattr(self, key, value)
            except ConfigErrors as group:
                problems += group.errors
            except ConfigError as error:
                problems.append(error)
        _raise_all(problems)

    def _cross_checks(self) -> list[ConfigError]:
        """Return problems with relations between fields (override in subclasses)."""
        return []

    def _problems(self) -> list[ConfigError]:
        """Problems of this config's own fields, then (only if there are none) of their
        relations, then those of the sub-configurations."""
        problems = []
        for name, spec in self._specs().items():
            problem = spec.problem(self._dotted(name), getattr(self, name))
            if problem is not None:
                problems.append(self._located(name, problem))
        if not problems:
            problems += self._cross_checks()
        for name, spec in self._specs().items():
            if spec.kind == "config":
                problems += getattr(self, name)._problems()
        return problems

    # ------------------------------------------------------ pex_config methods
    @property
    def history(self) -> dict[str, list[HistoryEntry]]:
        """Recorded values of each field of this config (not of sub-configs), oldest first.

        Returns
        -------
        history : dict of str to list of HistoryEntry
            A copy; use :meth:`formatHistory` for dotted names and a readable table.
        """
        return {name: list(entries) for name, entries in self._history.items()}

    def setDefaults(self) -> None:
        """Subclass hook for computing defaults.

        Runs after the declared defaults are set, when the config is created. This
        base implementation runs ``setDefaults`` of every sub-configuration;
        subclasses must call ``super().setDefaults()`` before setting their own
        computed defaults. Assignments made here are recorded in the history with
        the label ``"setDefaults"``.
        """
        for name, spec in self._specs().items():
            if spec.kind == "config":
                getattr(self, name).setDefaults()

    def validate(self) -> None:
        """Validate the config, raising an exception if invalid.

        Checks every field of this config and its sub-configurations: types, None
        in required fields, allowed choices, valid ranges, list lengths and further
        rules, then the relations between fields (only when every field is valid
        on its own).

        Raises
        ------
        ConfigError
            The single problem found, naming the dotted field and its value.
        ConfigErrors
            Several problems, raised together; it is also a ``ConfigError`` and an
            ``ExceptionGroup`` of the individual errors.
        """
        _raise_all(self._problems())

    def freeze(self) -> None:
        """Make this config, and all subconfigs, read-only.

        Later assignments (and in-place changes of list and dict fields) raise a
        :class:`~dcr_dask.errors.ConfigError` naming the field.
        """
        self._set_frozen(True)

    def keys(self) -> list[str]:
        """Get field names.

        Returns
        -------
        names : list of str
            Names of this config's fields (sub-configurations included, not recursed).
        """
        return list(self._specs())

    def values(self) -> list[Any]:
        """Get field values.

        Returns
        -------
        values : list
            The value of each field, in the order of :meth:`keys`.
        """
        return [getattr(self, name) for name in self._specs()]

    def items(self) -> list[tuple[str, Any]]:
        """Get configurations as (field name, field value) pairs.

        Returns
        -------
        items : list of tuple
            ``(name, value)`` for each field, in the order of :meth:`keys`.
        """
        return [(name, getattr(self, name)) for name in self._specs()]

    def iterkeys(self) -> Iterator[str]:
        """Iterate over field names.

        Yields
        ------
        key : str
            A field's name.
        """
        yield from self._specs()

    def itervalues(self) -> Iterator[Any]:
        """Iterate over field values.

        Yields
        ------
        value : object
            A field's value.
        """
        for name in self._specs():
            yield getattr(self, name)

    def iteritems(self) -> Iterator[tuple[str, Any]]:
        """Iterate over (field name, field value) pairs.

        Yields
        ------
        item : tuple
            ``(name, value)``.
        """
        for name in self._specs():
            yield name, getattr(self, name)

    def names(self) -> list[str]:
        """Get all the field names in the config, recursively.

        Returns
        -------
        names : list of str
            Dotted names of every value-holding field (sub-configurations are
            recursed into, not listed themselves), as written by :meth:`saveToStream`.
        """
        found = []
        for name, spec in self._specs().items():
            if spec.kind == "config":
                found += [f"{name}.{sub}" for sub in getattr(self, name).names()]
            else:
                found.append(name)
        return found

    def toDict(self) -> dict[str, Any]:
        """Make a dictionary of field names and their values.

        Returns
        -------
        dict_ : dict
            Plain values (lists, dicts, scalars, None); sub-configurations become
            nested dicts. It can be written as JSON and given back to :meth:`update`.
        """
        return {name: _plain(getattr(self, name)) for name in self._specs()}

    def update(self, **kw: Any) -> None:
        """Update values of fields specified by the keyword arguments.

        Parameters
        ----------
        **kw
            Field names and values. A sub-configuration may be given a dict of its
            own fields (nested as :meth:`toDict` writes it) or a config instance.

        Raises
        ------
        ConfigError or ConfigErrors
            For unknown names (with suggestions) and values of the wrong type; the
            other fields are still applied.

        Examples
        --------
        >>> config = DcrAssembleCoaddConfig()
        >>> config.update(dcrNumSubfilters=4, detect={"thresholdValue": 6.0})
        >>> config.dcrNumSubfilters, config.detect.thresholdValue
        (4, 6.0)
        """
        with _provenance("update"):
            self._apply_mapping(kw)

    def compare(
        self,
        other: ConfigBase,
        shortcut: bool = True,
        rtol: float = 1e-8,
        atol: float = 1e-8,
        output: Callable[[str], Any] | None = None,
    ) -> bool:
        """Compare this configuration to another Config for equality.

        Parameters
        ----------
        other : ConfigBase
            Other config to compare against this config.
        shortcut : bool, optional
            If True, return as soon as an inequality is found.
        rtol, atol : float, optional
            Relative and absolute tolerances for floating point comparisons
            (``|a - b| <= atol + rtol * |b|``, as ``numpy.allclose``).
        output : callable, optional
            Called with a message for each inequality, naming the field by its
            dotted name (``"Inequality in detect.thresholdValue: 5.0 != 7.5"``).

        Returns
        -------
        isEqual : bool
            True when the two configs are equal.
        """
        return self._compare(other, "", shortcut, rtol, atol, output)

    def _compare(
        self,
        other: ConfigBase,
        prefix: str,
        shortcut: bool,
        rtol: float,
        atol: float,
        output: Callable[[str], Any] | None,
    ) -> bool:
        if type(other) is not type(self):
            if output is not None:
                where = prefix.rstrip(".") or "config"
                output(
                    f"Inequality in {where}: config types differ: "
                    f"{type(self).__name__} != {type(other).__name__}"
                )
            return False
        equal = True
        for name, spec in self._specs().items():
            mine, theirs = getattr(self, name), getattr(other, name)
            if spec.kind == "config":
                same = mine._compare(theirs, f"{prefix}{name}.", shortcut, rtol, atol, output)
            else:
                same = _values_close(_plain(mine), _plain(theirs), rtol, atol)
                if not same and output is not None:
                    output(f"Inequality in {prefix}{name}: {mine!r} != {theirs!r}")
            equal = equal and same
            if not equal and shortcut:
                return False
        return equal

    def formatHistory(self, name: str, **kwargs: Any) -> str:
        """Format a configuration field's history to a human-readable format.

        Parameters
        ----------
        name : str
            Name of a field of this config, dotted for fields of sub-configurations.
        **kwargs
            ``writeSourceLine`` (bool, default True): show where each value was
            set; ``prefix`` (str, default ""): text put before every line.

        Returns
        -------
        history : str
            The field's name, then one line per recorded value: value, label
            (``default``, ``setDefaults``, ``assignment``, ``load <file>``...) and,
            optionally, location.
        """
        write_source = kwargs.pop("writeSourceLine", True)
        prefix = kwargs.pop("prefix", "")
        if kwargs:
            raise TypeError(f"formatHistory() got unexpected keyword(s): {', '.join(kwargs)}")
        owner, field, _ = self._resolve(name)
        entries = owner._history.get(field, [])
        values = [repr(entry.value) for entry in entries]
        width = max((len(v) for v in values), default=0)
        label_width = max((len(entry.label) for entry in entries), default=0)
        lines = [f"{prefix}{name}"]
        for value, entry in zip(values, entries, strict=True):
            line = f"{prefix}  {value:<{width}}  {entry.label:<{label_width}}"
            if write_source and entry.location:
                line += f"  {entry.location}"
            lines.append(line.rstrip())
        return "\n".join(lines)

    # ----------------------------------------------------------- Python files
    def saveToStream(self, outfile: IO[str], root: str = "config") -> None:
        """Save a configuration file to a stream, which, when loaded, reproduces this config.

        Parameters
        ----------
        outfile : file-like object
            Destination, opened for text.
        root : str, optional
            Name of the root config variable in the written code; the same name
            must be used when loading.
        """
        cls = type(self)
        outfile.write(
            f"# dcr_dask configuration: {cls.__name__}. This file is Python and is executed\n"
            f"# when loaded (dcr_dask.config.ConfigBase.load): load only files you trust.\n"
            f"import {cls.__module__}\n\n"
            f"if not isinstance({root}, {cls.__module__}.{cls.__qualname__}):\n"
            f"    raise TypeError(f'this file configures a {cls.__qualname__}, "
            f"not a {{type({root}).__name__}}')\n"
        )
        self._write_fields(outfile, root)

    def _write_fields(self, outfile: IO[str], prefix: str) -> None:
        for name, spec in self._specs().items():
            outfile.write("\n" + textwrap.indent(textwrap.fill(spec.doc, 96), "# ") + "\n")
            value = getattr(self, name)
            if spec.kind == "config":
                value._write_fields(outfile, f"{prefix}.{name}")
            else:
                outfile.write(f"{prefix}.{name} = {_format_literal(_plain(value))}\n")

    def save(self, filename: str | os.PathLike[str], root: str = "config") -> None:
        """Save a Python script to the named file, which, when loaded, reproduces this config.

        Parameters
        ----------
        filename : str or path-like
            Destination filename of this configuration.
        root : str, optional
            Name to use for the root config variable; the same value must be used
            when loading (see :meth:`load`).
        """
        with open(filename, "w", encoding="utf-8") as outfile:
            self.saveToStream(outfile, root)

    def loadFromStream(
        self,
        stream: IO[str] | str | bytes | CodeType,
        root: str = "config",
        filename: str | None = None,
    ) -> None:
        """Modify this config in place by executing the Python code in the provided stream.

        .. warning:: This *executes* the code, with the full power of Python, as
           pex_config does. Only load files you trust; prefer :meth:`load_file`
           with TOML, YAML or JSON, which executes nothing.

        Parameters
        ----------
        stream : file-like object, str, bytes or code object
            Code setting fields of the variable named ``root``
            (``config.dcrNumSubfilters = 4``).
        root : str, optional
            Name of the variable in the code that refers to this config. Old files
            that use ``root`` while ``root="config"`` is asked for are still loaded,
            with a ``FutureWarning``.
        filename : str, optional
            Name of the file the code came from, for error messages and history.
        """
        if hasattr(stream, "read"):
            stream = stream.read()
        label = f"load {filename}" if filename is not None else "loadFromStream"
        code = (
            stream
            if isinstance(stream, CodeType)
            else compile(stream, filename or "<config stream>", "exec")
        )
        namespace: dict[str, Any] = {"__file__": filename, "__name__": "__dcr_dask_config__"}
        namespace[root] = self
        if root == "config" and "root" in code.co_names and "config" not in code.co_names:
            warnings.warn(
                f"config file {filename or '<stream>'} refers to its config as 'root'; "
                "use 'config' instead (support for 'root' will be removed)",
                FutureWarning,
                stacklevel=_external_stacklevel(),
            )
            namespace["root"] = self
        with _provenance(label):
            exec(code, namespace)

    def load(self, filename: str | os.PathLike[str], root: str = "config") -> None:
        """Modify this config in place by executing the Python code in a configuration file.

        .. warning:: This *executes* the file (see :meth:`loadFromStream`).

        Parameters
        ----------
        filename : str or path-like
            Name of the configuration file, a Python module.
        root : str, optional
            Name of the variable in the file that refers to the config being
            overridden (``config.myField = 5`` for ``root="config"``).
        """
        path = os.fspath(filename)
        with open(path, encoding="utf-8") as stream:
            self.loadFromStream(stream.read(), root=root, filename=path)

    # ------------------------------------------------- non-executing formats
    def to_file(self, path: str | os.PathLike[str]) -> None:
        """Write this config to a TOML, YAML, JSON or Python file, chosen by extension.

        Sub-configurations become nested tables (TOML), mappings (YAML) or objects
        (JSON); ``.py`` files are written by :meth:`save`. TOML has no null: fields
        holding None are left out (they take their default, None, when read back).

        Parameters
        ----------
        path : str or path-like
            Destination; the extension (``.toml``, ``.yaml``/``.yml``, ``.json``,
            ``.py``) chooses the format.

        Raises
        ------
        dcr_dask.errors.InputError
            For an unknown extension.
        ConfigError
            When writing TOML, for a field holding None whose default is not None.
        """
        path = Path(path)
        fmt = _file_format(path)
        if fmt == "python":
            self.save(path)
            return
        path.write_text(self.dumps(fmt), encoding="utf-8")

    def dumps(self, fmt: str) -> str:
        """This config as the text of a TOML, YAML or JSON file that reads back to it.

        :meth:`load_file` (``--config``) of the text into a default config of
        the same class gives a config equal to this one. TOML has no null: a
        field holding None is left out, which reads back as its default, None;
        a field holding None whose default is not None cannot be written in
        TOML (write YAML or JSON, which hold null).

        Parameters
        ----------
        fmt : {"toml", "yaml", "json"}
            The format.

        Returns
        -------
        str
            The text, ending in a newline; TOML and YAML begin with a comment
            naming the config class.

        Raises
        ------
        ValueError
            For another format.
        ConfigError
            For TOML, naming a field that holds None over a default that is not None.
        """
        header = f"# dcr_dask configuration: {type(self).__name__}\n"
        if fmt == "toml":
            return header + tomli_w.dumps(self._toml_table(type(self)()))
        if fmt == "yaml":
            return header + yaml.safe_dump(self.toDict(), sort_keys=False)
        if fmt == "json":
            return json.dumps(self.toDict(), indent=2) + "\n"
        raise ValueError(f"unknown config format {fmt!r}; expected toml, yaml or json")

    def _toml_table(self, fresh: ConfigBase) -> dict[str, Any]:
        """toDict() without None values, which TOML cannot hold (``fresh``: a default config)."""
        table = {}
        for name, spec in self._specs().items():
            value = getattr(self, name)
            if spec.kind == "config":
                table[name] = value._toml_table(getattr(fresh, name))
            elif value is not None:
                table[name] = _plain(value)
            elif getattr(fresh, name) is not None:
                raise ConfigError(
                    self._dotted(name),
                    None,
                    "TOML cannot hold None for a field whose default is not None; "
                    "write YAML or JSON instead",
                )
        return table

    def load_file(self, path: str | os.PathLike[str], *, allow_python: bool = False) -> None:
        """Modify this config in place from a TOML, YAML, JSON (or, if allowed, Python) file.

        TOML, YAML and JSON files hold a mapping of field names to values, with
        nested mappings for sub-configurations; nothing in them is executed. Fields
        that a file leaves out keep their current values.

        Parameters
        ----------
        path : str or path-like
            The file; its extension chooses the format.
        allow_python : bool, optional
            Allow ``.py`` files, which are *executed* by :meth:`load`. Off by
            default, so that reading a config never runs code by accident.

        Raises
        ------
        dcr_dask.errors.InputError
            If the file cannot be read or parsed, has an unknown extension, is not
            a mapping, or is Python and ``allow_python`` is False.
        ConfigError or ConfigErrors
            For unknown field names (with suggestions) and values of the wrong type.
        """
        path = Path(path)
        fmt = _file_format(path)
        if fmt == "python":
            if not allow_python:
                raise InputError(
                    "is a Python config file, which is executed when loaded; "
                    "pass allow_python=True if you trust it, or use TOML, YAML or JSON",
                    filename=str(path),
                )
            self.load(path)
            return
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
        try:
            with _provenance(f"load {path}", str(path)):
                self._apply_mapping(data)
        except ConfigError as error:
            raise error.in_file(str(path)) from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, allow_python: bool = False) -> Self:
        """Create a config (defaults applied) and update it from a file.

        Parameters
        ----------
        path : str or path-like
            A TOML, YAML or JSON file (or Python, see ``allow_python``).
        allow_python : bool, optional
            Allow ``.py`` files, which are *executed*.

        Returns
        -------
        config : ConfigBase
            A new config of this class.
        """
        config = cls()
        config.load_file(path, allow_python=allow_python)
        return config


@functools.cache
def _class_specs(cls: type) -> dict[str, FieldSpec]:
    return {a.name: a.metadata[_META_KEY] for a in attrs.fields(cls) if _META_KEY in a.metadata}


def _unknown_field(cls: type[ConfigBase], name: str, value: Any, path: str = "") -> ConfigError:
    """The error for a field name that ``cls`` does not have, suggesting close matches.

    ``path`` is the dotted prefix of the config within its root (``"detect."``).
    """
    suggestion = _suggest(f"{path}{name}", [f"{path}{known}" for known in cls._all_names()])
    return ConfigError(f"{path}{name}", value, f"no such field in {cls.__name__}{suggestion}")


def _file_format(path: Path) -> str:
    fmt = _FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_FILE_FORMATS))
        raise InputError(
            f"unknown config file extension {path.suffix!r}; expected one of {known}",
            filename=str(path),
        )
    return fmt


# ------------------------------------------------------------- sub-configurations

_STATISTICS = ("MEAN", "MEANCLIP", "MEDIAN")
_WARP_TYPES = ("direct", "psfMatched")
_UNIT_INTERVAL = Range(0.0, 1.0)
_CALIBRATED_HINT = "has no effect in dcr_dask, which reads calibrated warps"


@_configclass
class BackgroundConfig(ConfigBase):
    """Estimation of a smooth background from binned, clipped pixel statistics.

    Replaces ``lsst.meas.algorithms.subtractBackground.SubtractBackgroundConfig``;
    ``numSigmaClip`` and ``numIter`` are the clipping parameters that afw's
    ``StatisticsControl`` leaves implicit.
    """

    statisticsProperty: str = _scalar(
        str,
        "MEANCLIP",
        "Statistic of the pixels in each bin that estimates the background there.",
        allowed=_STATISTICS,
    )
    numSigmaClip: float = _scalar(
        float,
        3.0,
        "dcr_dask extension. Clipping threshold of the MEANCLIP statistic, in standard "
        "deviations (afw's StatisticsControl default).",
        bounds=_POSITIVE,
        extension=True,
    )
    numIter: int = _scalar(
        int,
        3,
        "dcr_dask extension. Number of clipping iterations of the MEANCLIP statistic "
        "(afw's StatisticsControl default).",
        bounds=_AT_LEAST_ONE,
        extension=True,
    )
    binSize: int = _scalar(
        int,
        128,
        "Width of the square bins, in pixels, each giving one background sample.",
        bounds=_AT_LEAST_ONE,
    )
    algorithm: str = _scalar(
        str,
        "AKIMA_SPLINE",
        "Interpolation between the bin samples.",
        allowed=("CONSTANT", "LINEAR", "NATURAL_SPLINE", "AKIMA_SPLINE"),
    )
    useApprox: bool = _scalar(
        bool,
        True,
        "Fit a Chebyshev approximation to the bin samples instead of interpolating them.",
    )
    ignoredPixelMask: list[str] = _list(
        str,
        ("BAD", "EDGE", "DETECTED", "DETECTED_NEGATIVE", "NO_DATA"),
        "Mask planes of the pixels left out of the bin statistics.",
        checks=(_MASK_PLANES,),
    )


_BACKGROUND_REFERENCE = "lsst.meas.algorithms.subtractBackground.SubtractBackgroundConfig"


@_configclass
class GaussianPsfFactory(ConfigBase):
    """A Gaussian (core plus optional wing) model PSF given by its FWHM.

    Replaces ``lsst.meas.algorithms.gaussianPsfFactory.GaussianPsfFactory``.
    """

    size: int | None = _scalar(
        int,
        None,
        "Kernel width and height, in pixels; if None, sizeFactor * FWHM is used.",
        bounds=_POSITIVE,
    )
    sizeFactor: float = _scalar(
        float,
        3.0,
        "Kernel size as a multiple of the FWHM (dimensionless); ignored if size is set.",
        bounds=_POSITIVE,
    )
    minSize: int | None = _scalar(
        int,
        5,
        "Smallest kernel size, in pixels, when sizeFactor is used.",
        optional=True,
        bounds=_POSITIVE,
    )
    maxSize: int | None = _scalar(
        int,
        None,
        "Largest kernel size, in pixels, when sizeFactor is used.",
        bounds=_POSITIVE,
    )
    defaultFwhm: float = _scalar(
        float,
        3.0,
        "FWHM of the Gaussian core, in pixels, when no FWHM is given.",
        bounds=_POSITIVE,
    )
    addWing: bool = _scalar(bool, True, "Add a second, wider Gaussian for the PSF wings.")
    wingFwhmFactor: float = _scalar(
        float,
        2.5,
        "FWHM of the wing as a multiple of the core's (dimensionless); ignored without addWing.",
        bounds=_POSITIVE,
    )
    wingAmplitude: float = _scalar(
        float,
        0.1,
        "Peak of the wing as a multiple of the core's peak (dimensionless); "
        "ignored without addWing.",
        bounds=_POSITIVE,
    )

    def _cross_checks(self) -> list[ConfigError]:
        if self.minSize is not None and self.maxSize is not None and self.minSize > self.maxSize:
            return [self._error("minSize", self.minSize, f"exceeds maxSize = {self.maxSize}")]
        return []


_GAUSSIAN_PSF_REFERENCE = "lsst.meas.algorithms.gaussianPsfFactory.GaussianPsfFactory"


@_configclass
class SourceDetectionConfig(ConfigBase):
    """Detection of footprints above a threshold.

    Replaces ``lsst.meas.algorithms.detection.SourceDetectionConfig``.
    """

    minPixels: int = _scalar(
        int,
        1,
        "Smallest number of pixels of a kept footprint; smaller ones are dropped.",
        bounds=_NON_NEGATIVE,
    )
    isotropicGrow: bool = _scalar(
        bool,
        True,
        "Grow footprints as discs (True) rather than with a city-block metric (False).",
    )
    combinedGrow: bool = _scalar(
        bool,
        True,
        "Grow all footprints at once, so that neighbours may merge, rather than one by one.",
    )
    nSigmaToGrow: float = _scalar(
        float,
        2.4,
        "Grow footprints by this multiple of the PSF's Gaussian sigma; 0 disables growing.",
        bounds=_NON_NEGATIVE,
    )
    returnOriginalFootprints: bool = _scalar(
        bool,
        False,
        "Set the mask from the grown footprints but return the footprints ungrown.",
    )
    thresholdValue: float = _scalar(
        float,
        5.0,
        "Detection threshold; its meaning and unit depend on thresholdType.",
        bounds=_NON_NEGATIVE,
    )
    includeThresholdMultiplier: float = _scalar(
        float,
        1.0,
        "Factor on thresholdValue that at least one pixel of a footprint must reach for the "
        "footprint to be kept (1 or less keeps every footprint); the mask and the footprints' "
        "extent still use thresholdValue.",
        bounds=_NON_NEGATIVE,
    )
    thresholdType: str = _scalar(
        str,
        "pixel_stdev",
        "Meaning of thresholdValue: 'stdev' (multiple of the image's standard deviation), "
        "'variance' (multiple of its variance), 'value' (pixel value) or 'pixel_stdev' "
        "(multiple of each pixel's own standard deviation, from the variance plane).",
        allowed=("stdev", "variance", "value", "pixel_stdev"),
    )
    thresholdPolarity: str = _scalar(
        str,
        "positive",
        "Detect sources above (+threshold), below (-threshold), or both.",
        allowed=("positive", "negative", "both"),
    )
    adjustBackground: float = _scalar(
        float, 0.0, "Constant added to the background before detection (for debugging)."
    )
    reEstimateBackground: bool = _scalar(
        bool,
        True,
        "Estimate and subtract the background again after detection (see background).",
    )
    background: BackgroundConfig = _sub(
        BackgroundConfig,
        "Background estimated again after detection, if reEstimateBackground.",
        reference=_BACKGROUND_REFERENCE,
    )
    doTempLocalBackground: bool = _scalar(
        bool,
        True,
        "Subtract a small-scale temporary background (tempLocalBackground) before peaks are "
        "found, so that the wings of bright sources do not give spurious peaks.",
    )
    tempLocalBackground: BackgroundConfig = _sub(
        BackgroundConfig,
        "Small-scale temporary background, if doTempLocalBackground.",
        reference=_BACKGROUND_REFERENCE,
    )
    doTempWideBackground: bool = _scalar(
        bool,
        False,
        "Subtract a large-scale temporary background (tempWideBackground) before detection "
        "and restore it afterwards, to suppress very large footprints.",
    )
    tempWideBackground: BackgroundConfig = _sub(
        BackgroundConfig,
        "Large-scale temporary background, if doTempWideBackground.",
        reference=_BACKGROUND_REFERENCE,
    )
    statsMask: list[str] = _list(
        str,
        ("BAD", "SAT", "EDGE", "NO_DATA"),
        "Mask planes of the pixels left out of the image statistics (thresholdType 'stdev').",
        checks=(_MASK_PLANES,),
    )

    def setDefaults(self) -> None:
        """Bin the temporary backgrounds finely (local) and coarsely (wide), without fits."""
        super().setDefaults()
        for background, size in ((self.tempLocalBackground, 64), (self.tempWideBackground, 512)):
            background.binSize = size
            background.algorithm = "AKIMA_SPLINE"
            background.useApprox = False
        self.tempWideBackground.ignoredPixelMask = [
            plane
            for plane in self.tempWideBackground.ignoredPixelMask
            if plane not in ("DETECTED", "DETECTED_NEGATIVE")
        ]


_DETECTION_REFERENCE = "lsst.meas.algorithms.detection.SourceDetectionConfig"


@_configclass
class ScaleVarianceConfig(ConfigBase):
    """Rescaling of a variance plane to the noise measured in the image.

    Replaces ``lsst.pipe.tasks.scaleVariance.ScaleVarianceConfig``.
    """

    background: BackgroundConfig = _sub(
        BackgroundConfig,
        "Background subtracted before the noise is measured.",
        reference=_BACKGROUND_REFERENCE,
    )
    maskPlanes: list[str] = _list(
        str,
        ("DETECTED", "DETECTED_NEGATIVE", "BAD", "SAT", "NO_DATA", "INTRP"),
        "Mask planes of the pixels left out when the noise is measured.",
        checks=(_MASK_PLANES,),
    )
    limit: float = _scalar(
        float,
        10.0,
        "Largest accepted variance scale factor; a larger one is an error.",
        bounds=_POSITIVE,
    )

    def setDefaults(self) -> None:
        """Measure the background on small bins, interpolated, ignoring sources and bad pixels."""
        super().setDefaults()
        self.background.binSize = 32
        self.background.useApprox = False
        self.background.ignoredPixelMask = list(self.maskPlanes)


@_configclass
class ScaleZeroPointConfig(ConfigBase):
    """Photometric scaling of the warps to a common zero point.

    Replaces ``lsst.pipe.tasks.scaleZeroPoint.ScaleZeroPointConfig``.
    """

    zeroPoint: float = _scalar(
        float, 27.0, "Photometric zero point (mag) that every warp is scaled to."
    )


@_configclass
class InterpImageConfig(ConfigBase):
    """Interpolation over NaN pixels of the coadd.

    Replaces ``lsst.pipe.tasks.interpImage.InterpImageConfig``.
    """

    modelPsf: GaussianPsfFactory = _sub(
        GaussianPsfFactory,
        "Model PSF whose width sets the interpolation scale.",
        reference=_GAUSSIAN_PSF_REFERENCE,
    )
    useFallbackValueAtEdge: bool = _scalar(
        bool, True, "Taper smoothly to the fallback value at the image edge."
    )
    fallbackValueType: str = _scalar(
        str,
        "MEDIAN",
        "Statistic of the image giving the fallback value at the edge, or 'USER' for "
        "fallbackUserValue.",
        allowed=("MEAN", "MEDIAN", "MEANCLIP", "USER"),
    )
    fallbackUserValue: float = _scalar(
        float, 0.0, "Fallback value when fallbackValueType is 'USER'."
    )
    negativeFallbackAllowed: bool = _scalar(
        bool, False, "Allow a negative fallback value (otherwise it is raised to 0)."
    )
    transpose: bool = _scalar(bool, False, "Interpolate along columns instead of rows.")

    def _cross_checks(self) -> list[ConfigError]:
        if (
            self.useFallbackValueAtEdge
            and self.fallbackValueType == "USER"
            and self.fallbackUserValue < 0
            and not self.negativeFallbackAllowed
        ):
            return [
                self._error(
                    "fallbackUserValue",
                    self.fallbackUserValue,
                    "is negative but negativeFallbackAllowed is False",
                )
            ]
        return []


@_configclass
class CoaddInputRecorderConfig(ConfigBase):
    """What is recorded about the inputs of a coadd.

    Replaces ``lsst.pipe.tasks.coaddInputRecorder.CoaddInputRecorderConfig``.
    """

    saveEmptyCcds: bool = _scalar(
        bool, False, "Record inputs that were examined but gave no unmasked pixel."
    )
    saveErrorCcds: bool = _scalar(bool, False, "Record inputs that could not be read.")
    saveVisitGoodPix: bool = _scalar(
        bool, True, "Record the number of good pixels that each visit contributes."
    )
    saveCcdWeights: bool = _scalar(bool, True, "Record the weight of each input.")


@_configclass
class CoaddPsfConfig(ConfigBase):
    """The coadd's PSF, built from the inputs' PSFs.

    Replaces ``lsst.meas.algorithms.coaddPsf.coaddPsf.CoaddPsfConfig``.
    """

    warpingKernelName: str = _scalar(
        str,
        "lanczos3",
        "Interpolation kernel used to warp the inputs' PSFs onto the coadd grid.",
        allowed=("nearest", "bilinear", "lanczos2", "lanczos3", "lanczos4", "lanczos5"),
    )
    cacheSize: int = _scalar(
        int, 10000, "Number of warped PSF images kept in memory.", bounds=_NON_NEGATIVE
    )


@_configclass
class SelectImagesConfig(ConfigBase):
    """Selection of the input images; the reference's is an empty ``lsst.pex.config.Config``."""


@_configclass
class Connections(ConfigBase):
    """Names of the datasets that a run reads and writes.

    Replaces the ``lsst.pipe.base.config.Connections`` templates of the reference.
    """

    inputWarpName: str = _scalar(str, "deep", "Name prefix of the input warps.")
    inputCoaddName: str = _scalar(str, "deep", "Name prefix of input coadds (templates).")
    outputCoaddName: str = _scalar(str, "deep", "Name prefix of the coadds written.")
    warpType: str = _scalar(
        str, "direct", "Type of the warps read: 'direct' or 'psfMatched'.", allowed=_WARP_TYPES
    )


@_configclass
class SingleFrameMeasurementConfig(ConfigBase):
    """Measurement of the sources used to model the coadd's PSF.

    Replaces ``lsst.meas.base.sfm.SingleFrameMeasurementConfig``.
    """

    plugins: list[str] = _list(
        str,
        ("base_PixelFlags", "base_SdssCentroid", "base_SdssShape", "base_PsfFlux"),
        "Measurements made on each source, by meas_base plugin name (flags, centroid, "
        "second moments, PSF flux).",
    )
    doReplaceWithNoise: bool = _scalar(
        bool, True, "Replace the other sources with noise while each one is measured."
    )


@_configclass
class MeasurePsfConfig(ConfigBase):
    """Modelling of the coadd's PSF from measured stars.

    Replaces ``lsst.pipe.tasks.measurePsf.MeasurePsfConfig``.
    """

    starSelector: str = _scalar(
        str, "objectSize", "Algorithm choosing the stars (meas_algorithms registry name)."
    )
    kernelSize: int = _scalar(
        int,
        27,
        "Size, in pixels, of the postage stamp cut around each star (odd).",
        bounds=_POSITIVE,
        checks=(_ODD,),
    )
    reserveFraction: float = _scalar(
        float,
        0.0,
        "Fraction of the stars held back from the fit, to test the model.",
        bounds=Range(0.0, 1.0, max_inclusive=False),
    )


# ----------------------------------------------------------------- coadd configs


@_configclass
class AssembleCoaddConfig(ConfigBase):
    """Stacking of warps into a coadd (``lsst.pipe.tasks.assembleCoadd.AssembleCoaddConfig``).

    Holds the fields that the reference's ``AssembleCoaddConfig`` and its base
    ``CoaddBaseConfig`` give to ``DcrAssembleCoaddConfig``; it is also the class
    of ``assembleStaticSkyModel``.
    """

    coaddName: str = _scalar(str, "deep", "Coadd name: typically one of deep or goodSeeing.")
    select: SelectImagesConfig = _sub(
        SelectImagesConfig,
        "Image selection subtask.",
        reference="lsst.pex.config.config.Config",
    )
    badMaskPlanes: list[str] = _list(
        str,
        ("NO_DATA",),
        "Mask planes that, if set, the associated pixel should not be included in the "
        "coaddTempExp.",
        checks=(_MASK_PLANES,),
    )
    inputRecorder: CoaddInputRecorderConfig = _sub(
        CoaddInputRecorderConfig,
        "Subtask that helps fill CoaddInputs catalogs added to the final Exposure",
        reference="lsst.pipe.tasks.coaddInputRecorder.CoaddInputRecorderConfig",
    )
    doPsfMatch: bool = _scalar(
        bool,
        False,
        "Match to modelPsf? Deprecated. Sets makePsfMatched=True, makeDirect=False",
        deprecated="it has no effect in dcr_dask; set warpType='psfMatched' instead",
    )
    modelPsf: GaussianPsfFactory = _sub(
        GaussianPsfFactory, "Model Psf factory", reference=_GAUSSIAN_PSF_REFERENCE
    )
    doApplyUberCal: bool = _scalar(
        bool,
        False,
        "Apply jointcal WCS and PhotoCalib results to input calexps?",
        deprecated=f"it {_CALIBRATED_HINT}",
    )
    useMeasMosaic: bool = _scalar(
        bool,
        False,
        "Use meas_mosaic’s applyMosaicResultsExposure() to do the photometric "
        "calibration/wcs update (deprecated).",
        deprecated=f"it {_CALIBRATED_HINT}",
    )
    matchingKernelSize: int = _scalar(
        int,
        21,
        "Size in pixels of matching kernel. Must be odd.",
        bounds=_POSITIVE,
        checks=(_ODD,),
    )
    includeCalibVar: bool = _scalar(
        bool, False, "Add photometric calibration variance to warp variance plane."
    )
    saveMetadata: bool = _scalar(
        bool, True, "Flag to enable/disable metadata saving for a task, enabled by default."
    )
    connections: Connections = _sub(
        Connections,
        "Configurations describing the connections of the PipelineTask to datatypes",
        reference="lsst.pipe.base.config.Connections",
        doc_type="Connections",
    )
    warpType: str = _scalar(
        str, "direct", "Warp name: one of ‘direct’ or ‘psfMatched’", allowed=_WARP_TYPES
    )
    subregionSize: list[int] = _list(
        int,
        (2000, 2000),
        "Width, height of stack subregion size; make small enough that a full stack of "
        "images will fit into memory at once.",
        length=2,
        bounds=_POSITIVE,
    )
    statistic: str = _scalar(
        str,
        "MEANCLIP",
        "Main stacking statistic for aggregating over the epochs.",
        allowed=_STATISTICS,
    )
    doSigmaClip: bool = _scalar(
        bool,
        False,
        "Perform sigma clipped outlier rejection with MEANCLIP statistic? (DEPRECATED)",
        deprecated="it has no effect in dcr_dask; set statistic='MEANCLIP' instead",
    )
    sigmaClip: float = _scalar(
        float,
        3.0,
        "Sigma for outlier rejection; ignored if non-clipping statistic selected.",
        bounds=_POSITIVE,
    )
    clipIter: int = _scalar(
        int,
        2,
        "Number of iterations of outlier rejection; ignored if non-clipping statistic selected.",
        bounds=_NON_NEGATIVE,
    )
    calcErrorFromInputVariance: bool = _scalar(
        bool,
        True,
        "Calculate coadd variance from input variance by stacking statistic.Passed to "
        "StatisticsControl.setCalcErrorFromInputVariance()",
    )
    scaleZeroPoint: ScaleZeroPointConfig = _sub(
        ScaleZeroPointConfig,
        "Task to adjust the photometric zero point of the coadd temp exposures",
        reference="lsst.pipe.tasks.scaleZeroPoint.ScaleZeroPointConfig",
    )
    doInterp: bool = _scalar(
        bool,
        True,
        "Interpolate over NaN pixels? Also extrapolate, if necessary, but the results are ugly.",
    )
    interpImage: InterpImageConfig = _sub(
        InterpImageConfig,
        "Task to interpolate (and extrapolate) over NaN pixels",
        reference="lsst.pipe.tasks.interpImage.InterpImageConfig",
    )
    doWrite: bool = _scalar(bool, True, "Persist coadd?")
    doNImage: bool = _scalar(
        bool, False, "Create image of number of contributing exposures for each pixel"
    )
    doUsePsfMatchedPolygons: bool = _scalar(
        bool,
        False,
        "Use ValidPolygons from shrunk Psf-Matched Calexps? Should be set to True by "
        "CompareWarp only.",
    )
    maskPropagationThresholds: dict[str, float] = _dict(
        str,
        float,
        {"SAT": 0.1},
        "Threshold (in fractional weight) of rejection at which we propagate a mask plane to "
        "the coadd; that is, we set the mask bit on the coadd if the fraction the rejected "
        "frames would have contributed exceeds this value.",
        bounds=_UNIT_INTERVAL,
        checks=(Check(lambda value: _mask_plane_names(value.keys()), _MASK_PLANES.description),),
    )
    removeMaskPlanes: list[str] = _list(
        str,
        ("NOT_DEBLENDED",),
        "Mask planes to remove before coadding",
        checks=(_MASK_PLANES,),
    )
    doMaskBrightObjects: bool = _scalar(bool, False, "Set mask and flag bits for bright objects?")
    brightObjectMaskName: str = _scalar(
        str,
        "BRIGHT_OBJECT",
        "Name of mask bit used for bright objects",
        checks=(_MASK_PLANES,),
    )
    coaddPsf: CoaddPsfConfig = _sub(
        CoaddPsfConfig,
        "Configuration for CoaddPsf",
        reference="lsst.meas.algorithms.coaddPsf.coaddPsf.CoaddPsfConfig",
        doc_type="CoaddPsfConfig",
    )
    doAttachTransmissionCurve: bool = _scalar(
        bool,
        False,
        "Attach a piecewise TransmissionCurve for the coadd? (requires all input Exposures "
        "to have TransmissionCurves).",
    )
    hasFakes: bool = _scalar(
        bool,
        False,
        "Should be set to True if fake sources have been inserted into the input data.",
    )

    def setDefaults(self) -> None:
        """Leave out pixels flagged NO_DATA, BAD, SAT or EDGE (as the reference's AssembleCoadd)."""
        super().setDefaults()
        self.badMaskPlanes = ["NO_DATA", "BAD", "SAT", "EDGE"]


@_configclass
class CompareWarpAssembleCoaddConfig(AssembleCoaddConfig):
    """Coadd assembly that masks transient artifacts found by comparing warps with a static model.

    Replaces ``lsst.pipe.tasks.assembleCoadd.CompareWarpAssembleCoaddConfig``.
    """

    assembleStaticSkyModel: AssembleCoaddConfig = _sub(
        AssembleCoaddConfig,
        "Task to assemble an artifact-free, PSF-matched Coadd to serve as a "
        "naive/first-iteration model of the static sky.",
        reference="lsst.pipe.tasks.assembleCoadd.AssembleCoaddConfig",
    )
    detect: SourceDetectionConfig = _sub(
        SourceDetectionConfig,
        "Detect outlier sources on difference between each psfMatched warp and static sky model",
        reference=_DETECTION_REFERENCE,
    )
    detectTemplate: SourceDetectionConfig = _sub(
        SourceDetectionConfig,
        "Detect sources on static sky model. Only used if doPreserveContainedBySource is True",
        reference=_DETECTION_REFERENCE,
    )
    maxNumEpochs: int = _scalar(
        int,
        2,
        "Charactistic maximum local number of epochs/visits in which an artifact candidate "
        "can appear and still be masked. The effective maxNumEpochs is a broken linear "
        "function of local number of epochs (N): min(maxFractionEpochsLow*N, maxNumEpochs + "
        "maxFractionEpochsHigh*N). For each footprint detected on the image difference "
        "between the psfMatched warp and static sky model, if a significant fraction of "
        "pixels (defined by spatialThreshold) are residuals in more than the computed "
        "effective maxNumEpochs, the artifact candidate is deemed persistant rather than "
        "transient and not masked.",
        bounds=_NON_NEGATIVE,
    )
    maxFractionEpochsLow: float = _scalar(
        float,
        0.4,
        "Fraction of local number of epochs (N) to use as effective maxNumEpochs for low N. "
        "Effective maxNumEpochs = min(maxFractionEpochsLow * N, maxNumEpochs + "
        "maxFractionEpochsHigh * N)",
        bounds=Range(0.0, 1.0, max_inclusive=False),
    )
    maxFractionEpochsHigh: float = _scalar(
        float,
        0.03,
        "Fraction of local number of epochs (N) to use as effective maxNumEpochs for high N. "
        "Effective maxNumEpochs = min(maxFractionEpochsLow * N, maxNumEpochs + "
        "maxFractionEpochsHigh * N)",
        bounds=Range(0.0, 1.0, max_inclusive=False),
    )
    spatialThreshold: float = _scalar(
        float,
        0.5,
        "Unitless fraction of pixels defining how much of the outlier region has to meet the "
        "temporal criteria. If 0, clip all. If 1, clip none.",
        bounds=_UNIT_INTERVAL,
    )
    doScaleWarpVariance: bool = _scalar(
        bool, True, "Rescale Warp variance plane using empirical noise?"
    )
    scaleWarpVariance: ScaleVarianceConfig = _sub(
        ScaleVarianceConfig,
        "Rescale variance on warps",
        reference="lsst.pipe.tasks.scaleVariance.ScaleVarianceConfig",
    )
    doPreserveContainedBySource: bool = _scalar(
        bool,
        True,
        "Rescue artifacts from clipping that completely lie within a footprint detectedon the "
        "PsfMatched Template Coadd. Replicates a behavior of SafeClip.",
    )
    doPrefilterArtifacts: bool = _scalar(
        bool,
        True,
        "Ignore artifact candidates that are mostly covered by the bad pixel mask, because "
        "they will be excluded anyway. This prevents them from contributing to the outlier "
        "epoch count image and potentially being labeled as persistant.’Mostly’ is defined "
        "by the config ‘prefilterArtifactsRatio’.",
    )
    prefilterArtifactsMaskPlanes: list[str] = _list(
        str,
        ("NO_DATA", "BAD", "SAT", "SUSPECT"),
        "Prefilter artifact candidates that are mostly covered by these bad mask planes.",
        checks=(_MASK_PLANES,),
    )
    prefilterArtifactsRatio: float = _scalar(
        float,
        0.05,
        "Prefilter artifact candidates with less than this fraction overlapping good pixels",
        bounds=_UNIT_INTERVAL,
    )

    def setDefaults(self) -> None:
        """Apply CompareWarp's computed defaults (drp_tasks' values as of 2025).

        Direct warps are stacked with a plain mean (EDGE is removed, not rejected);
        the static sky model is a 2.5-sigma, 3-iteration clipped mean of the
        PSF-matched warps; artifacts are footprints of at least 4 pixels beyond
        7.5 per-pixel sigma, of either sign, on warp minus model; sources on the
        model brighter than 300 sigma protect the artifacts they contain.
        """
        super().setDefaults()
        self.statistic = "MEAN"
        self.doUsePsfMatchedPolygons = True
        if "EDGE" in self.badMaskPlanes:
            self.badMaskPlanes.remove("EDGE")
        if "EDGE" not in self.removeMaskPlanes:
            self.removeMaskPlanes.append("EDGE")
        static = self.assembleStaticSkyModel
        static.badMaskPlanes = ["NO_DATA"]
        static.warpType = "psfMatched"
        static.connections.warpType = "psfMatched"
        static.statistic = "MEANCLIP"
        static.sigmaClip = 2.5
        static.clipIter = 3
        static.calcErrorFromInputVariance = True
        static.doWrite = False
        self.detect.doTempLocalBackground = False
        self.detect.reEstimateBackground = False
        self.detect.returnOriginalFootprints = False
        self.detect.thresholdPolarity = "both"
        self.detect.thresholdValue = 7.5
        self.detect.minPixels = 4
        self.detect.isotropicGrow = True
        self.detect.thresholdType = "pixel_stdev"
        self.detect.nSigmaToGrow = 0.4
        self.detectTemplate.nSigmaToGrow = 2.4
        self.detectTemplate.thresholdValue = 300
        self.detectTemplate.doTempLocalBackground = True
        self.detectTemplate.reEstimateBackground = True
        self.detectTemplate.background.useApprox = False
        self.detectTemplate.returnOriginalFootprints = False


@_configclass
class DcrAssembleCoaddConfig(CompareWarpAssembleCoaddConfig):
    """Configuration of a DCR-corrected coadd (``lsst.pipe.tasks.dcrAssembleCoadd``).

    Every field of the reference document, plus dcr_dask extensions
    (``effectiveWavelength``, ``bandwidth``, ``transmissionCurve``, ``band``, ``shiftMethod``,
    ``shiftPrecision``, ``subbandShiftMode``, ``useLocalGeometry``, ``residualWeighting``,
    ``artifactReference``, ``artifactTemplateError``). See the module documentation for
    defaults, history, validation and file formats.

    Parameters
    ----------
    apply_defaults : bool, optional
        Run :meth:`setDefaults` (default True); False keeps the declared defaults.
    **kwargs
        Field values applied afterwards, as with :meth:`update`.

    Examples
    --------
    >>> config = DcrAssembleCoaddConfig(effectiveWavelength=478.0, bandwidth=147.0)
    >>> config.doNImage, config.detect.thresholdValue, config.resolved_max_num_iter()
    (True, 7.5, 9)
    >>> config.validate()
    """

    dcrNumSubfilters: int = _scalar(
        int,
        3,
        "Number of sub-filters to forward model chromatic effects to fit the supplied exposures.",
        bounds=Range(min=2),
    )
    maxNumIter: int | None = _scalar(
        int, None, "Maximum number of iterations of forward modeling.", bounds=_AT_LEAST_ONE
    )
    minNumIter: int | None = _scalar(
        int, None, "Minimum number of iterations of forward modeling.", bounds=_AT_LEAST_ONE
    )
    convergenceThreshold: float = _scalar(
        float,
        0.001,
        "Target relative change in convergence between iterations of forward modeling.",
        bounds=_NON_NEGATIVE,
    )
    useConvergence: bool = _scalar(
        bool,
        True,
        "Use convergence test as a forward modeling end condition?If not set, skips "
        "calculating convergence and runs for maxNumIter iterations",
    )
    baseGain: float | None = _scalar(
        float,
        None,
        "Relative weight to give the new solution vs. the last solution when updating the "
        "model.A value of 1.0 gives equal weight to both solutions.Small values imply slower "
        "convergence of the solution, but can help prevent overshooting and failures in the "
        "fit.If baseGain is None, a conservative gain will be calculated from the number of "
        "subfilters.",
        bounds=_POSITIVE,
    )
    useProgressiveGain: bool = _scalar(
        bool,
        True,
        "Use a gain that slowly increases above baseGain to accelerate convergence? When "
        "calculating the next gain, we use up to 5 previous gains and convergence values.Can "
        "be set to False to force the model to change at the rate of baseGain.",
    )
    doAirmassWeight: bool = _scalar(
        bool,
        False,
        "Weight exposures by airmass? Useful if there are relatively few high-airmass "
        "observations.",
    )
    modelWeightsWidth: float = _scalar(
        float,
        3,
        "Width of the region around detected sources to include in the DcrModel.",
        bounds=_NON_NEGATIVE,
    )
    useModelWeights: bool = _scalar(
        bool, True, "Width of the region around detected sources to include in the DcrModel."
    )
    splitSubfilters: bool = _scalar(
        bool,
        True,
        "Calculate DCR for two evenly-spaced wavelengths in each subfilter.Instead of at the "
        "midpoint",
    )
    splitThreshold: float = _scalar(
        float,
        0.1,
        "Minimum DCR difference within a subfilter to use splitSubfilters, in pixels.Set to 0 "
        "to always split the subfilters.",
        bounds=_NON_NEGATIVE,
    )
    regularizeModelIterations: float = _scalar(
        float,
        2.0,
        "Maximum relative change of the model allowed between iterations.Set to zero to disable.",
        bounds=_NON_NEGATIVE,
        checks=(_ZERO_OR_ABOVE_ONE,),
    )
    regularizeModelFrequency: float = _scalar(
        float,
        4.0,
        "Maximum relative change of the model allowed between subfilters.Set to zero to disable.",
        bounds=_NON_NEGATIVE,
        checks=(_ZERO_OR_ABOVE_ONE,),
    )
    convergenceMaskPlanes: list[str] = _list(
        str,
        ("DETECTED",),
        "Mask planes to use to calculate convergence.",
        checks=(_MASK_PLANES,),
    )
    regularizationWidth: int = _scalar(
        int,
        2,
        "Minimum radius of a region to include in regularization, in pixels.",
        bounds=_AT_LEAST_ONE,
    )
    imageInterpOrder: int = _scalar(
        int,
        3,
        "The order of the spline interpolation used to shift the image plane.",
        bounds=Range(1, 5),
    )
    accelerateModel: float = _scalar(
        float,
        3,
        "Factor to amplify the differences between model planes by to speed convergence.",
        bounds=Range(min=1),
    )
    doCalculatePsf: bool = _scalar(
        bool,
        False,
        "Set to detect stars and recalculate the PSF from the final coadd.Otherwise the PSF "
        "is estimated from a selection of the best input exposures",
    )
    detectPsfSources: SourceDetectionConfig = _sub(
        SourceDetectionConfig,
        "Task to detect sources for PSF measurement, if doCalculatePsf is set.",
        reference=_DETECTION_REFERENCE,
    )
    measurePsfSources: SingleFrameMeasurementConfig = _sub(
        SingleFrameMeasurementConfig,
        "Task to measure sources for PSF measurement, if doCalculatePsf is set.",
        reference="lsst.meas.base.sfm.SingleFrameMeasurementConfig",
    )
    measurePsf: MeasurePsfConfig = _sub(
        MeasurePsfConfig,
        "Task to measure the PSF of the coadd, if doCalculatePsf is set.",
        reference="lsst.pipe.tasks.measurePsf.MeasurePsfConfig",
    )
    effectiveWavelength: float | None = _scalar(
        float,
        None,
        "dcr_dask extension. Effective wavelength of the filter, in nm. When None it is "
        "computed from transmissionCurve, else taken from the standard band (band, else the "
        "warps' band).",
        bounds=_POSITIVE,
        extension=True,
    )
    bandwidth: float | None = _scalar(
        float,
        None,
        "dcr_dask extension. Bandwidth of the filter, in nm: the sub-bands split "
        "[effectiveWavelength - bandwidth/2, effectiveWavelength + bandwidth/2] evenly. When "
        "None it is computed from transmissionCurve, else taken from the standard band "
        "(band, else the warps' band).",
        bounds=_POSITIVE,
        extension=True,
    )
    transmissionCurve: str | None = _scalar(
        str,
        None,
        "dcr_dask extension. Path of a two-column text file (wavelength in nm, throughput) "
        "describing the filter; it supplies effectiveWavelength and bandwidth when these are "
        "None, and the weights of subbandShiftMode='throughput'.",
        checks=(Check(lambda value: bool(value.strip()), "must be a non-empty path"),),
        extension=True,
    )
    band: str | None = _scalar(
        str,
        None,
        "dcr_dask extension. Name of a standard band (dcr_dask.physics.bands: lsst-u ... lsst-y, "
        "also u g r i z y; hsc-g, hsc-r, hsc-r2, hsc-i, hsc-i2, hsc-z, hsc-y, also HSC-G ... "
        "HSC-Y; decam-g, decam-r, decam-i, decam-z, decam-Y). It supplies whatever of "
        "effectiveWavelength, bandwidth and the throughput curve of "
        "subbandShiftMode='throughput' the config leaves unset; values set explicitly win. "
        "When None and no transmissionCurve is given, the warps' band is looked up instead. "
        "Not to be combined with transmissionCurve.",
        checks=(
            Check(
                lambda value: value in accepted_band_names(),
                f"is not a standard band; known bands (aliases): {known_bands_text()}",
            ),
        ),
        extension=True,
    )
    brightObjectMaskFile: str | None = _scalar(
        str,
        None,
        "dcr_dask extension. Path of a ds9 region file of bright objects (circles, boxes, "
        "ellipses, polygons; sky or image coordinates): with doMaskBrightObjects, the output "
        "mask gets the plane brightObjectMaskName on every pixel whose centre lies inside "
        "one. --bright-object-mask FILE on the command line sets it and doMaskBrightObjects.",
        checks=(Check(lambda value: bool(value.strip()), "must be a non-empty path"),),
        extension=True,
    )
    shiftMethod: str = _scalar(
        str,
        "sinc",
        "dcr_dask extension. How images are shifted: 'spline' (spline interpolation of "
        "order imageInterpOrder, as the reference), 'sinc' (a Kaiser-windowed sinc kernel "
        "applied in Fourier space: as fast as 'fourier', and local, so results do not "
        "depend on subregionSize) or 'fourier' (exact sub-pixel translation by a phase "
        "ramp in Fourier space). The default is 'sinc': as accurate as 'spline' against "
        "the simulator's truth (benchmarks/bench_accuracy.py), faster, and independent of "
        "subregionSize; set 'spline' to follow the reference step by step.",
        allowed=("spline", "sinc", "fourier"),
        extension=True,
    )
    shiftPrecision: str = _scalar(
        str,
        "single",
        "dcr_dask extension. Floating-point precision of the 'sinc' and 'fourier' shift "
        "transforms: 'single' (float32/complex64: about 1.7 times faster, errors against the "
        "simulator's truth unchanged, results reproducible across subregionSize to float32 "
        "rounding) or 'double' (float64/complex128). 'spline' always works in float64.",
        allowed=("single", "double"),
        extension=True,
    )
    subbandShiftMode: str = _scalar(
        str,
        "edges",
        "dcr_dask extension. DCR shift of a sub-band: 'edges' (the reference: mean of the "
        "differential refraction at the sub-band's two edges) or 'throughput' (differential "
        "refraction averaged over the sub-band, weighted by transmissionCurve).",
        allowed=("edges", "throughput"),
        extension=True,
    )
    useLocalGeometry: bool = _scalar(
        bool,
        False,
        "dcr_dask extension. Evaluate airmass and parallactic angle at the centre of each "
        "subregion instead of at the boresight (the reference); matters on tiles of a degree "
        "or more.",
        extension=True,
    )
    residualWeighting: str = _scalar(
        str,
        "equal",
        "dcr_dask extension. Weights of the visits when their residuals are stacked into the "
        "model update: 'equal' (the reference) or 'inverseVariance' (by each visit's inverse "
        "variance).",
        allowed=("equal", "inverseVariance"),
        extension=True,
    )
    artifactReference: str = _scalar(
        str,
        "static",
        "dcr_dask extension. Image that the PSF-matched warps are compared with to find "
        "artifacts: 'static' (the reference: the static sky model) or 'dcrTemplate' (each "
        "visit's DCR-matched template from a DCR fit to the PSF-matched warps, run without "
        "frequency regularization and for dcrNumSubfilters to 9 x dcrNumSubfilters iterations "
        "(threshold 0.001), "
        "which leaves no "
        "DCR residual; positive and negative footprints are then detected and epoch-counted "
        "apart, and clipped pixels are also left out of the DCR fit).",
        allowed=("static", "dcrTemplate"),
        extension=True,
    )
    artifactTemplateError: float = _scalar(
        float,
        0.0,
        "dcr_dask extension. With artifactReference='dcrTemplate': fractional error of the "
        "DCR-matched templates, added in quadrature to the variance of the comparison "
        "((error x template)^2), so that the small mismatch left at bright sources is not "
        "taken for an artifact; it also hides artifacts crossing bright sources, and 0 "
        "(the default) found more artifacts in benchmarks/bench_artifacts.py.",
        checks=(Check(lambda value: 0 <= value < 1, "must be in [0, 1)"),),
        extension=True,
    )

    detectModelSources: SourceDetectionConfig = _sub(
        SourceDetectionConfig,
        "dcr_dask extension. Detection of the sources that the convergence metric "
        "(convergenceMaskPlanes) and the model weights (useModelWeights) use when the warps "
        "carry no DETECTED pixels: on the template smoothed with a Gaussian of its PSF, "
        "thresholded in units of the smoothed image's own noise, as single-visit source "
        "detection does (5 sigma, grown by 2.4 PSF sigma). The reference has no such step "
        "and stops after one update there.",
        reference=_DETECTION_REFERENCE,
        extension=True,
    )

    frequencyClamp: str = _scalar(
        str,
        "planes",
        "dcr_dask extension. How regularizeModelFrequency bounds each sub-band plane's ratio "
        "to the mean of the planes: 'planes' (the reference: each sharp plane is clamped "
        "against the smoothed mean, which also clamps the cores of sources sharper than the "
        "smoothing whatever their colour; with a factor of 2 the templates were worse than the "
        "plain coadd) or 'smoothed' (the ratio of the plane and of the mean, both smoothed over "
        "regularizationWidth, is clipped to [1/sqrt(factor), sqrt(factor)]: three times "
        "better bright-star centroids in 0.45-0.6 arcsec seeing, equal at 0.6-1.0, but "
        "a ring of 2-3 % of the peak around very bright stars; benchmarks/README.md).",
        allowed=("planes", "smoothed"),
        extension=True,
    )

    startingModel: str = _scalar(
        str,
        "directCoadd",
        "dcr_dask extension. What the DCR fit starts from (and blends faint sources toward, "
        "with useModelWeights) when no template is given: 'directCoadd' (the coadd of the "
        "direct warps with CompareWarp's artifacts rejected, at the visits' own PSFs) or "
        "'staticModel' (the reference: the static sky model of the PSF-matched warps, "
        "blurred to the model PSF).",
        allowed=("directCoadd", "staticModel"),
        extension=True,
    )

    def setDefaults(self) -> None:
        """Apply the DCR task's computed defaults on top of CompareWarp's.

        Writes an nImage; the static sky model (PSF-matched, as CompareWarp sets it)
        is neither written nor given an nImage, since the DCR coadd replaces them;
        PSF stars are bright (50 per-pixel sigma, positive, at least 25 pixels).
        """
        super().setDefaults()
        self.doNImage = True
        self.connections.outputCoaddName = "dcr"
        self.assembleStaticSkyModel.doNImage = False
        self.assembleStaticSkyModel.doWrite = False
        self.detectPsfSources.returnOriginalFootprints = False
        self.detectPsfSources.thresholdPolarity = "positive"
        self.detectPsfSources.thresholdValue = 50
        self.detectPsfSources.nSigmaToGrow = 2
        self.detectPsfSources.minPixels = 25
        self.detectPsfSources.thresholdType = "pixel_stdev"
        # dcr_dask default, not the reference's (reference_overrides() restores it): on
        # realistic (Moffat) tiles a model PSF with a wing clipped 2.4x the stars' pixels
        # (1.7 % instead of 0.7 %) at equal centroids (benchmarks/bench_realistic.py)
        self.modelPsf.addWing = False
        # dcr_dask defaults, not the reference's (None, None and 0.001, restored by
        # reference_overrides()): with at most 3 x dcrNumSubfilters iterations the fit of
        # each subregion stopped 'diverged' after 7-11 iterations on a small rise of the
        # metric, far from its solution; at least 30 and up to 60 iterations cut the
        # held-out centroid error of bright stars on GalSim tiles by a third (5 seeds,
        # benchmarks/bench_realistic.py)
        # and four sub-bands instead of three: 0.078 +- 0.040 of the plain coadd's bright-star
        # centroid error instead of 0.120 +- 0.056 (GalSim g, 5 seeds, same iteration limits),
        # faint stars 0.130 against 0.143; in r (DCR three times smaller) no worse
        self.dcrNumSubfilters = DCR_DASK_NUM_SUBFILTERS
        self.minNumIter = DCR_DASK_MIN_NUM_ITER
        self.maxNumIter = DCR_DASK_MAX_NUM_ITER
        self.convergenceThreshold = DCR_DASK_CONVERGENCE_THRESHOLD
        sources = self.detectModelSources
        sources.thresholdValue = 5.0
        sources.thresholdType = "pixel_stdev"
        sources.thresholdPolarity = "positive"
        sources.minPixels = 1
        sources.nSigmaToGrow = 2.4
        sources.doTempLocalBackground = False
        sources.reEstimateBackground = False

    def resolved_min_num_iter(self) -> int:
        """Return ``minNumIter``, or ``dcrNumSubfilters`` when it is None.

        Returns
        -------
        n : int
            Minimum number of forward-modelling iterations.
        """
        return self.dcrNumSubfilters if self.minNumIter is None else self.minNumIter

    def resolved_max_num_iter(self) -> int:
        """Return ``maxNumIter``, or ``3 * dcrNumSubfilters`` when it is None.

        Returns
        -------
        n : int
            Maximum number of forward-modelling iterations.
        """
        return 3 * self.dcrNumSubfilters if self.maxNumIter is None else self.maxNumIter

    def resolved_base_gain(self) -> float:
        """Return ``baseGain``, or the conservative ``1 / (dcrNumSubfilters - 1)`` when None.

        Returns
        -------
        gain : float
            Base gain of the model update (dimensionless).
        """
        return 1.0 / (self.dcrNumSubfilters - 1) if self.baseGain is None else self.baseGain

    def _band_problems(self) -> list[ConfigError]:
        """The band must lie where the refraction formula is valid (Stone 1996)."""
        low, high = MIN_WAVELENGTH_NM, MAX_WAVELENGTH_NM
        wavelength, bandwidth = self.effectiveWavelength, self.bandwidth
        valid = f"{low:g}-{high:g} nm, where the refraction formula (Stone 1996) is valid"
        if wavelength is not None and not low < wavelength < high:
            return [self._error("effectiveWavelength", wavelength, f"must lie within {valid}")]
        if wavelength is None or bandwidth is None:
            return []
        blue, red = wavelength - bandwidth / 2, wavelength + bandwidth / 2
        if blue < low or red > high:
            return [
                self._error(
                    "bandwidth",
                    bandwidth,
                    f"puts the band around effectiveWavelength = {wavelength:g} nm at "
                    f"{blue:g}-{red:g} nm, which must lie within {valid}",
                )
            ]
        return []

    def inapplicable_settings(self) -> list[str]:
        """Fields set to a value that has no effect in dcr_dask, one message each.

        A field is reported when it differs from a new config's value and it, or the
        sub-configuration holding it, is in :data:`NOT_APPLICABLE`.

        Returns
        -------
        list of str
            ``"<field>=<value> has no effect in dcr_dask because <reason>"``.
        """
        fresh = type(self)()
        messages = []
        for name in self.names():
            owner = max(
                (key for key in NOT_APPLICABLE if name == key or name.startswith(key + ".")),
                key=len,
                default=None,
            )
            if owner is None:
                continue
            value = _plain_value(_dotted_get(self, name))
            if isinstance(value, dict) and isinstance(_dotted_get(self, name), ConfigBase):
                continue  # its own fields are reported one by one
            if value != _plain_value(_dotted_get(fresh, name)):
                messages.append(
                    f"{name}={value!r} has no effect in dcr_dask because {NOT_APPLICABLE[owner]}"
                )
        if not self.doCalculatePsf:
            for name in self.names():
                if not name.startswith(_ONLY_WITH_CALCULATE_PSF) or any(
                    name == key or name.startswith(key + ".") for key in NOT_APPLICABLE
                ):
                    continue
                value = _dotted_get(self, name)
                if isinstance(value, ConfigBase):
                    continue
                if _plain_value(value) != _plain_value(_dotted_get(fresh, name)):
                    messages.append(
                        f"{name}={_plain_value(value)!r} has no effect in dcr_dask because it "
                        "is used only with doCalculatePsf=True (the coadd PSF is then measured "
                        "on the coadd's stars)"
                    )
        return messages

    def validate(self) -> None:
        """Validate the config (see :meth:`ConfigBase.validate`), then warn about fields
        set to a value that has no effect in dcr_dask.

        Each such field gives one :class:`~dcr_dask.errors.InapplicableFieldWarning`
        (:meth:`inapplicable_settings`). Fields whose value asks for a result dcr_dask
        cannot give (:data:`REFUSED`) are errors.

        Raises
        ------
        ConfigError
            The single problem found, naming the dotted field and its value.
        ConfigErrors
            Several problems, raised together.
        """
        super().validate()
        messages = self.inapplicable_settings()
        if self.brightObjectMaskFile is not None and not self.doMaskBrightObjects:
            messages.append(
                f"brightObjectMaskFile={self.brightObjectMaskFile!r} has no effect in dcr_dask "
                "because doMaskBrightObjects is False"
            )
        for message in messages:
            # one location for every call: Python's default filter shows each message once
            warnings.warn(message, InapplicableFieldWarning, stacklevel=1)

    def _cross_checks(self) -> list[ConfigError]:
        # effectiveWavelength and bandwidth may all be unset: the warps' band supplies
        # them at run time (dcr_dask.physics.subbands.config_for_warps)
        problems = []
        if self.band is not None and self.transmissionCurve is not None:
            problems.append(
                self._error(
                    "band",
                    self.band,
                    f"and transmissionCurve = {self.transmissionCurve!r} both describe the "
                    "filter; give one of them",
                )
            )
        problems += self._band_problems()
        if self.doMaskBrightObjects and self.brightObjectMaskFile is None:
            problems.append(
                self._error(
                    "doMaskBrightObjects",
                    True,
                    "needs the bright-object regions: give a ds9 region file as "
                    "brightObjectMaskFile (--bright-object-mask FILE)",
                )
            )
        for name, (refused, instead) in REFUSED.items():
            if getattr(self, name) == refused:
                problems.append(self._error(name, refused, f"is not supported: {instead}"))
        detections = _RUN_DETECTIONS
        if self.doCalculatePsf:  # the PSF stars' detection runs only then
            detections = (*detections, "detectPsfSources")
        for detection in detections:
            kind = getattr(self, detection).thresholdType
            if kind in _WHOLE_IMAGE_THRESHOLDS:
                problems.append(
                    self._error(
                        f"{detection}.thresholdType",
                        kind,
                        "needs a statistic of the whole image, which block-wise detection "
                        "does not compute; use 'pixel_stdev' (per-pixel sigma) or 'value'",
                    )
                )
        return problems


# ------------------------------------------------- fields that cannot act here

_BUTLER = (
    "it names Butler datasets and tasks; dcr_dask reads the files it is given and writes --output"
)
_CALIB = 'dcr_dask reads calibrated warps in one flux unit (docs/file-formats.md, "Input warps")'
_DETECT_BACKGROUND = (
    "detection in dcr_dask runs on background-subtracted images (warps, their differences "
    "and stacks) and estimates no background"
)
_NOT_IN_STATIC = "the static sky model is an intermediate image of CompareWarp"

#: Fields shared by the main config and ``assembleStaticSkyModel`` that have no effect
#: in dcr_dask (both places), with the reason.
_NOT_APPLICABLE_ANYWHERE: dict[str, str] = {
    "coaddName": _BUTLER,
    "connections": _BUTLER,
    "hasFakes": _BUTLER + " (it only renames the datasets)",
    "warpType": (
        "the warps are the files given as inputs, and the PSF-matched ones those given with "
        "--psf-matched (or made here); no warp type is looked up by name"
    ),
    "select": "the inputs are the warp files given; nothing selects among them",
    "inputRecorder": (
        "the output store always records every visit with its weight, airmass, PSF and the "
        'reason it was rejected (inputs[] in docs/file-formats.md, "Output store")'
    ),
    "includeCalibVar": _CALIB + ", which carry no calibration error",
    "scaleZeroPoint": _CALIB + "; nothing is rescaled to a zero point",
    "doUsePsfMatchedPolygons": (
        "warps carry no valid polygons; pixels a PSF-matched warp cannot supply are NO_DATA"
    ),
}

#: Fields of ``assembleStaticSkyModel`` that act only in the main config.
_NOT_APPLICABLE_STATIC: dict[str, str] = {
    "modelPsf": "the PSF-matched warps are matched to the main config's modelPsf",
    "matchingKernelSize": "PSF matching uses the main config's matchingKernelSize",
    "subregionSize": "the tile is chunked by the main config's subregionSize",
    "saveMetadata": "run metadata follow the main config's saveMetadata",
    "doWrite": _NOT_IN_STATIC + " and is never written to the output",
    "doNImage": _NOT_IN_STATIC + "; its nImage is not kept",
    "doMaskBrightObjects": _NOT_IN_STATIC
    + "; the main config's doMaskBrightObjects masks the output",
    "brightObjectMaskName": _NOT_IN_STATIC
    + "; the main config's brightObjectMaskName names the plane",
    "doInterp": _NOT_IN_STATIC + "; the main config's doInterp fills the output's NO_DATA pixels",
    "interpImage": _NOT_IN_STATIC + "; the main config's interpImage applies to the output",
    "doAttachTransmissionCurve": _NOT_IN_STATIC,
    "coaddPsf": _NOT_IN_STATIC + "; only the output coadd carries a PSF",
}

_NOTHING_WARPED = (
    "each visit's PSF stamp is already on the tile's pixel grid (a warp's PSF HDU is given "
    "on the warp's pixels, and a PSF-FWHM is drawn on them as a Gaussian), so no PSF is "
    "resampled to make the coadd PSF: the stamps are only padded to one size"
)
_PSF_STARS = (
    "the coadd's PSF stars are fitted with a pixel-integrated Moffat profile "
    "(dcr_dask.kernels.psf_stars)"
)

#: Sub-configurations whose fields act only with ``doCalculatePsf``.
_ONLY_WITH_CALCULATE_PSF = ("detectPsfSources.", "measurePsf.")

#: Fields with no effect in dcr_dask, by dotted name, with the reason. A value other than
#: dcr_dask's default draws an :class:`~dcr_dask.errors.InapplicableFieldWarning` from
#: :meth:`DcrAssembleCoaddConfig.validate`; a sub-configuration's entry covers all its fields.
NOT_APPLICABLE: dict[str, str] = {
    **_NOT_APPLICABLE_ANYWHERE,
    **{f"assembleStaticSkyModel.{k}": v for k, v in _NOT_APPLICABLE_ANYWHERE.items()},
    **{f"assembleStaticSkyModel.{k}": v for k, v in _NOT_APPLICABLE_STATIC.items()},
    "doNImage": ('the output store always has n_image (docs/file-formats.md, "Output store")'),
    "interpImage.modelPsf": (
        "the interpolation over NO_DATA pixels uses no PSF (the reference's takes one and "
        "does not use it either)"
    ),
    **{
        f"{detection}.{field}": _DETECT_BACKGROUND
        for detection in ("detect", "detectTemplate", "detectModelSources")
        for field in (
            "reEstimateBackground",
            "background",
            "doTempLocalBackground",
            "tempLocalBackground",
            "doTempWideBackground",
            "tempWideBackground",
            "adjustBackground",
        )
    },
    **{
        f"{detection}.statsMask": "it is used only by thresholdType='stdev', which dcr_dask refuses"
        for detection in ("detect", "detectTemplate", "detectModelSources")
    },
    **{
        f"{detection}.combinedGrow": (
            "footprints are always grown together (a mask dilation), so neighbours may merge"
        )
        for detection in ("detect", "detectTemplate", "detectModelSources")
    },
    **{
        f"{detection}.returnOriginalFootprints": (
            "footprints are used only as the masks they set, which are the grown ones"
        )
        for detection in ("detect", "detectTemplate", "detectModelSources")
    },
    "scaleWarpVariance.background": (
        "the warps are background-subtracted; the noise is measured around zero"
    ),
    "coaddPsf.warpingKernelName": _NOTHING_WARPED,
    "coaddPsf.cacheSize": (
        "no PSF is warped (coaddPsf.warpingKernelName), so no warping kernel is tabulated or "
        "cached; the coadd PSF is made once per run"
    ),
    **{
        f"detectPsfSources.{field}": (
            "the coadd is background-subtracted (its warps are); a star's fit has its own "
            "constant background"
        )
        for field in (
            "reEstimateBackground",
            "background",
            "doTempLocalBackground",
            "tempLocalBackground",
            "doTempWideBackground",
            "tempWideBackground",
            "adjustBackground",
        )
    },
    "detectPsfSources.statsMask": (
        "it is used only by thresholdType='stdev', which dcr_dask refuses"
    ),
    "detectPsfSources.thresholdPolarity": "PSF stars are positive sources whatever the polarity",
    **{
        f"detectPsfSources.{field}": (
            "no footprint is grown for the PSF stars: each star is fitted on a disc of 2.5 "
            "first-guess FWHMs, and a peak of another source that near makes it a blend"
        )
        for field in ("nSigmaToGrow", "isotropicGrow", "combinedGrow", "returnOriginalFootprints")
    },
    "measurePsfSources.plugins": _PSF_STARS + ", not measured by meas_base plugins",
    "measurePsfSources.doReplaceWithNoise": (
        _PSF_STARS + "; a star with a bright neighbour is dropped and the pixels nearer to a "
        "faint one are left out of its fit, instead of replacing neighbours with noise"
    ),
    "measurePsf.starSelector": (
        "the PSF stars are chosen one way "
        "(bright, isolated, unmasked peaks: dcr_dask.kernels.psf_stars); "
        "there is no registry of star selectors"
    ),
}

#: Fields whose non-default value asks for a result dcr_dask cannot give: dotted name ->
#: (refused value, what to do instead). :meth:`DcrAssembleCoaddConfig.validate` raises.
REFUSED: dict[str, tuple[Any, str]] = {
    "doWrite": (
        False,
        "dcr_dask always writes the output store; to keep nothing, write to a temporary "
        "--output and delete it",
    ),
}

#: thresholdType values that block-wise detection cannot apply (they need a statistic of
#: the whole image): refused for the detections dcr_dask runs.
_WHOLE_IMAGE_THRESHOLDS = ("stdev", "variance")
_RUN_DETECTIONS = ("detect", "detectTemplate", "detectModelSources")


def _dotted_get(config: ConfigBase, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _plain_value(value: Any) -> Any:
    return value.toDict() if isinstance(value, ConfigBase) else _plain(value)


# -------------------------------------------------------------- --set overrides

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_NULL = frozenset({"none", "null"})


def many_artifacts_overrides() -> dict[str, Any]:
    """The settings we recommend for warps with many artifacts, as overrides.

    For crowded fields whose warps still carry cosmic rays and streaks as plain
    flux. Measured against the simulator's truth in
    ``benchmarks/bench_artifacts.py`` (``benchmarks/README.md``); the README's
    TOML block is the same settings, and a test keeps the two equal.

    - ``artifactReference = "dcrTemplate"``: compare each PSF-matched warp
      with its own DCR-matched template, so that the DCR residuals of stars
      are not taken for artifacts (nor merge with them);
    - ``doPreserveContainedBySource = False``: on a crowded tile the sources
      detected on the static model cover a quarter to a third of the sky, and
      cosmic rays inside them were kept;
    - ``detect.thresholdValue = 6.0`` and ``detect.minPixels = 1``: a cosmic
      ray in a visit whose PSF is close to the model PSF stays one to three
      pixels wide after PSF matching, which ``minPixels = 4`` drops;
    - ``detect.nSigmaToGrow = 1.0``: footprints reach the faint edges of a
      streak.

    Returns
    -------
    dict
        A fresh dict for :meth:`ConfigBase.update` (nested for ``detect``).

    Examples
    --------
    >>> config = DcrAssembleCoaddConfig()
    >>> config.update(**many_artifacts_overrides())
    >>> config.artifactReference, config.detect.minPixels
    ('dcrTemplate', 1)
    """
    return {
        "artifactReference": "dcrTemplate",
        "doPreserveContainedBySource": False,
        "detect": {"thresholdValue": 6.0, "minPixels": 1, "nSigmaToGrow": 1.0},
    }


def reference_overrides() -> dict[str, Any]:
    """Settings that make dcr_dask behave as Rubin's ``DcrAssembleCoaddTask``, as overrides.

    dcr_dask's defaults differ from the reference where a benchmark against
    independent truth showed a better setting (``benchmarks/README.md``);
    these restore the reference's choices:

    - ``shiftMethod = "spline"`` and ``shiftPrecision = "double"``: spline
      interpolation of order ``imageInterpOrder`` in float64;
    - ``modelPsf.addWing = True``: the model PSF's wing;
    - ``startingModel = "staticModel"``: the fit starts from the static sky
      model of the PSF-matched warps;
    - ``dcrNumSubfilters = 3``: three sub-bands (dcr_dask's default is four);
    - ``minNumIter = None``, ``maxNumIter = None`` (``dcrNumSubfilters`` and
      ``3 * dcrNumSubfilters``) and ``convergenceThreshold = 0.001``: the
      reference's iteration limits.

    Extensions that the reference has no counterpart of keep their defaults,
    which equal the reference's behaviour (``subbandShiftMode = "edges"``,
    ``residualWeighting = "equal"``, ``artifactReference = "static"``,
    ``useLocalGeometry = False``), except that sources are still detected on
    the template when the warps have no ``DETECTED`` plane
    (``detectModelSources``), where the reference stops after one update.

    Returns
    -------
    dict
        A fresh dict for :meth:`ConfigBase.update` (nested for ``modelPsf``).

    Examples
    --------
    >>> config = DcrAssembleCoaddConfig()
    >>> config.update(**reference_overrides())
    >>> config.shiftMethod, config.modelPsf.addWing, config.startingModel
    ('spline', True, 'staticModel')
    """
    return {
        "shiftMethod": "spline",
        "shiftPrecision": "double",
        "modelPsf": {"addWing": True},
        "startingModel": "staticModel",
        "dcrNumSubfilters": 3,
        "minNumIter": None,
        "maxNumIter": None,
        "convergenceThreshold": 0.001,
    }


#: Named sets of overrides (``dcr-dask run --preset NAME``), applied before a
#: config file and ``--set``.
PRESETS: dict[str, Callable[[], dict[str, Any]]] = {
    "reference": reference_overrides,
    "many-artifacts": many_artifacts_overrides,
}


def _parse_scalar(dtype: type, text: str) -> Any:
    """Read one scalar of type ``dtype`` from a command-line string."""
    text = text.strip()
    if dtype is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError("expected true/false, yes/no, on/off or 1/0")
    if dtype is int:
        return int(text)
    if dtype is float:
        return float(text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return ast.literal_eval(text)
    return text


def _parse_literal(text: str) -> Any:
    """Read a JSON or Python literal (list, tuple, dict)."""
    try:
        return json.loads(text)
    except ValueError:
        return ast.literal_eval(text)


def _parse_value(spec: FieldSpec, text: str) -> Any:
    """Read a field value from the VALUE of a ``FIELD=VALUE`` string, by the field's type.

    None/null give None for optional fields; lists are comma-separated items or a
    JSON/Python literal; dicts are ``KEY:VALUE`` pairs separated by commas or a literal.
    """
    stripped = text.strip()
    if spec.optional and stripped.lower() in _NULL:
        return None
    if spec.kind == "scalar":
        return _parse_scalar(spec.dtype, stripped)
    if stripped[:1] in ("[", "(", "{"):
        return _parse_literal(stripped)
    items = stripped.split(",")
    blank = [str(number) for number, item in enumerate(items, 1) if not item.strip()]
    if blank:
        raise ValueError(f"item {', '.join(blank)} of {len(items)} is empty")
    if spec.kind == "list":
        return [_parse_scalar(spec.itemtype, item) for item in items]
    pairs = [item.partition(":") for item in items]
    if any(not sep for _, sep, _ in pairs):
        raise ValueError("expected KEY:VALUE pairs separated by commas")
    if any(not key.strip() for key, _, _ in pairs):
        raise ValueError("a KEY before ':' is empty")
    return {
        _parse_scalar(spec.keytype, key): _parse_scalar(spec.itemtype, value)
        for key, _, value in pairs
    }


def _empty_value_hint(key: str, spec: FieldSpec) -> str:
    """How to write an empty or absent value of a field on the command line."""
    if spec.optional:
        return f"; write {key}=None to unset it"
    if spec.kind == "list":
        return f"; write {key}=[] for an empty list"
    if spec.kind == "dict":
        return f"; write {key}={{}} for an empty mapping"
    if spec.dtype is str:
        return f'; write {key}="" for an empty string'
    return ""


def apply_overrides(config: ConfigBase, overrides: Iterable[str]) -> ConfigBase:
    """Apply ``FIELD=VALUE`` strings (the CLI's ``--set``) to a config, in place.

    Parameters
    ----------
    config : ConfigBase
        The config to change.
    overrides : iterable of str
        Strings such as ``"detect.thresholdValue=5"``, ``"dcrNumSubfilters=4"``,
        ``"badMaskPlanes=NO_DATA,BAD"``, ``"subregionSize=[1000, 1000]"``,
        ``"maskPropagationThresholds=SAT:0.1,CR:0.2"`` or ``"baseGain=None"``. The
        value is converted with the field's type: bools accept true/false, yes/no,
        on/off, 1/0; lists take comma-separated items or a JSON/Python literal; dicts
        take ``KEY:VALUE`` pairs or a literal; optional fields take None/null.

    Returns
    -------
    config : ConfigBase
        The same config, for chaining. Each value is recorded in its history
        with the label ``"override"``.

    Raises
    ------
    ConfigError or ConfigErrors
        For a string without ``=``, without a field name before it or without a
        value after it (blank or whitespace-only; an empty list is ``[]``, an
        empty string ``""``, no value ``None``), an unknown field (naming close
        matches), a sub-configuration given a value, a list with an empty item,
        or a value that cannot be converted. All strings are parsed before any is
        applied, and every problem is reported; the first three are
        :class:`~dcr_dask.errors.OverrideError`.

    Examples
    --------
    >>> config = apply_overrides(DcrAssembleCoaddConfig(), ["detect.thresholdValue=5"])
    >>> config.detect.thresholdValue
    5.0
    """
    problems: list[ConfigError] = []
    parsed = []
    for override in overrides:
        key, sep, text = override.partition("=")
        key = key.strip()
        if not override.strip():
            problems.append(
                OverrideError(
                    override, override, "is empty; expected FIELD=VALUE, e.g. dcrNumSubfilters=4"
                )
            )
            continue
        if not sep:
            message = f"has no '='; expected FIELD=VALUE, e.g. {key}=..."
            problems.append(OverrideError(override, key, message))
            continue
        if not key:
            message = "names no field before '='; expected FIELD=VALUE, e.g. dcrNumSubfilters=4"
            problems.append(OverrideError(override, override, message))
            continue
        try:
            owner, name, spec = config._resolve(key)
        except ConfigError:
            problems.append(_unknown_field(type(config), key, text))
            continue
        if spec.kind == "config":
            example = next(iter(spec.dtype.fields()), None)
            hint = f", e.g. {key}.{example.name}=..." if example is not None else ""
            problems.append(ConfigError(key, text, f"is a group of fields; set one of them{hint}"))
            continue
        if not text.strip():
            message = f"gives no value after '='{_empty_value_hint(key, spec)}"
            problems.append(OverrideError(override, key, message))
            continue
        try:
            value = _parse_value(spec, text)
        except (ValueError, SyntaxError) as error:
            message = f"cannot be read as {spec._expected()}: {error}"
            problems.append(ConfigError(key, text, message))
            continue
        try:  # a value of the wrong type ([1] for a list of str) is found before any is set
            spec.coerce(key, value)
        except ConfigError as error:
            problems.append(error)
            continue
        parsed.append((owner, name, value))
    _raise_all(problems)
    with _provenance("override"):
        for owner, name, value in parsed:
            try:
                setattr(owner, name, value)
            except ConfigError as error:
                problems.append(error)
    _raise_all(problems)
    return config
