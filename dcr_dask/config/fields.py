"""How a config field is declared: its metadata (:class:`FieldSpec`, :class:`Range`,
:class:`Check`), the type coercion of assigned values, the declaration helpers of the
schema (``_scalar``, ``_list``, ``_dict``, ``_sub``, ``_internal``, ``_configclass``) and
the attrs ``on_setattr`` hook that every field runs on assignment.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import numpy as np

from dcr_dask.config.history import _external_stacklevel, _track
from dcr_dask.errors import ConfigError

if TYPE_CHECKING:
    from dcr_dask.config.base import ConfigBase

#: The key of a field's :class:`FieldSpec` in its attrs metadata.
_META_KEY = "dcr_dask.config"


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

    def _item_type(self) -> type:
        """``itemtype`` of a list or dict field (``_list`` and ``_dict`` always set it)."""
        assert self.itemtype is not None, f"{self.kind} field without an item type"
        return self.itemtype

    def _key_type(self) -> type:
        """``keytype`` of a dict field (``_dict`` always sets it)."""
        assert self.keytype is not None, f"{self.kind} field without a key type"
        return self.keytype

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
            return f"a list of {_type_label(self._item_type())}"
        if self.kind == "dict":
            key, item = self._key_type(), self._item_type()
            return f"a dict of {_type_label(key)} to {_type_label(item)}"
        return self.dtype.__name__ if self.kind == "config" else _type_label(self.dtype)

    def _coerce_list(self, value: Any) -> list[Any]:
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise TypeError(f"expected {self._expected()}, got {type(value).__name__}")
        items = []
        for index, item in enumerate(value):
            try:
                items.append(_coerce_scalar(self._item_type(), item))
            except TypeError as error:
                raise TypeError(f"item {index} ({item!r}): {error}") from None
        return items

    def _coerce_dict(self, value: Any) -> dict[Any, Any]:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected {self._expected()}, got {type(value).__name__}")
        result = {}
        for key, item in value.items():
            try:
                key_type, item_type = self._key_type(), self._item_type()
                result[_coerce_scalar(key_type, key)] = _coerce_scalar(item_type, item)
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
