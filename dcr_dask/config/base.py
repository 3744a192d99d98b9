"""The machinery every configuration class shares: :class:`ConfigBase`, with the methods of
pex_config's ``Config`` (``setDefaults``, ``validate``, ``freeze``, ``update``, ``compare``,
``formatHistory``, ``save``/``load``...) and those of the TOML, YAML and JSON files (whose
formats :mod:`dcr_dask.config.files` reads and writes).

The labels and locations of the history are found here (:func:`_origin`), not in
:mod:`dcr_dask.config.history`, because telling a ``setDefaults`` frame needs
:class:`ConfigBase`.

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
   (:meth:`~ConfigBase.load_file`) or ``FIELD=VALUE`` strings
   (:func:`~dcr_dask.config.overrides.apply_overrides`).

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
:class:`~dcr_dask.errors.ConfigErrors`, which is both a ``ConfigError`` (``except ConfigError``
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

import copy
import difflib
import functools
import os
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import CodeType, FrameType
from typing import IO, TYPE_CHECKING, Any, ClassVar, Self

import attrs

from dcr_dask.config.fields import _META_KEY, FieldSpec, _configclass, _internal
from dcr_dask.config.files import (
    _dump_text,
    _execute_python,
    _file_format,
    _format_literal,
    _python_header,
    _read_mapping,
)
from dcr_dask.config.history import (
    _PROVENANCE,
    HistoryEntry,
    _is_internal,
    _provenance,
    _track,
    _untracked,
    _where,
)
from dcr_dask.errors import ConfigError, ConfigErrors, InputError


def _raise_all(problems: list[ConfigError]) -> None:
    """Raise nothing, the single problem, or all problems as one :class:`ConfigErrors`."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ConfigErrors(problems)


def _in_set_defaults(frame: FrameType) -> bool:
    """Whether ``frame`` runs the ``setDefaults`` method of a config."""
    return frame.f_code.co_name == "setDefaults" and isinstance(
        frame.f_locals.get("self"), ConfigBase
    )


def _origin() -> tuple[str, str]:
    """Return (label, location) of the assignment under way, from the call stack.

    Assignments made inside a config's ``setDefaults`` are labelled
    ``"setDefaults"`` with the line in that method; otherwise the label comes from
    the operation under way (load, update...) or is ``"assignment"``, and the
    location is the first caller outside the config package (and attrs).
    """
    frame: FrameType | None = sys._getframe(1)
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


def _snapshot(value: Any) -> Any:
    """The value as recorded in the history (a sub-configuration by its class name)."""
    return f"<{type(value).__name__}>" if isinstance(value, ConfigBase) else _untracked(value)


def _plain(value: Any) -> Any:
    """The value as :meth:`ConfigBase.toDict` gives it (a sub-configuration as a dict)."""
    return value.toDict() if isinstance(value, ConfigBase) else _untracked(value)


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

    if TYPE_CHECKING:
        # What attrs adds to the class (``_configclass`` is not a decorator mypy knows).
        __attrs_attrs__: ClassVar[tuple[attrs.Attribute[Any], ...]]

        def __attrs_init__(self) -> None: ...

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
        # mypy takes a class object for unhashable (its __hash__ unbound); it is hashable
        return _class_specs(cls)  # type: ignore[arg-type]

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
                sub_config: type[ConfigBase] = spec.dtype
                found += [
                    attrs.evolve(sub, name=f"{name}.{sub.name}")
                    for sub in sub_config.fields(recursive=True)
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
            found = owner._specs().get(part)
            if found is None:
                raise _unknown_field(cls, name, None)
            spec = found
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
        if isinstance(container, list):
            list.clear(container)
            list.extend(container, coerced)
        else:
            dict.clear(container)
            dict.update(container, coerced)
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
        outfile.write(_python_header(type(self), root))
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
        _execute_python(self, stream, root, filename)

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
        if fmt == "toml":
            return _dump_text(fmt, self._toml_table(type(self)()), type(self).__name__)
        if fmt in ("yaml", "json"):
            return _dump_text(fmt, self.toDict(), type(self).__name__)
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
        data = _read_mapping(path, fmt)
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
