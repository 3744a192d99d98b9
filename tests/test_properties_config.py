"""Property-based tests (hypothesis) of the configuration: files, ``--set`` and validation.

The strategies are derived from each field's own metadata (:class:`FieldSpec`: type,
optional, range, allowed values, length, checks), so that every field, including those of
sub-configurations (``modelPsf.*``, ``detect.*``...) and fields added later, is covered.
Deprecated fields are left out (setting them warns). The examples are fixed and bounded by
the hypothesis profile of tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from dcr_dask.cli import main
from dcr_dask.config import DcrAssembleCoaddConfig, FieldSpec, apply_overrides
from dcr_dask.errors import ConfigError, ConfigErrors
from dcr_dask.physics.bands import accepted_band_names

FORMATS = ("toml", "yaml", "json")

#: Every value-holding field (dotted names), from the config's own metadata.
LEAVES: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in DcrAssembleCoaddConfig.fields(recursive=True)
    if spec.kind != "config" and spec.deprecated is None
}

# --------------------------------------------------------------------------- valid values

_BIG = 1e12
_TEXT = st.text(max_size=12)  # any unicode but surrogates


def _number(spec: FieldSpec, dtype: type) -> st.SearchStrategy[Any]:
    """Numbers in the field's range (finite floats: no range holds inf or nan)."""
    bounds = spec.bounds
    low = None if bounds is None else bounds.min
    high = None if bounds is None else bounds.max
    if dtype is int:
        low = -(2**40) if low is None else math.ceil(low) + (not bounds.min_inclusive)
        high = 2**40 if high is None else math.floor(high) - (not bounds.max_inclusive)
        return st.integers(low, high)
    return st.floats(
        -_BIG if low is None else low,
        _BIG if high is None else high,
        exclude_min=bounds is not None and low is not None and not bounds.min_inclusive,
        exclude_max=bounds is not None and high is not None and not bounds.max_inclusive,
        allow_nan=False,
        allow_infinity=False,
    )


def _item(spec: FieldSpec, dtype: type) -> st.SearchStrategy[Any]:
    """One valid scalar (or list item, or dict value) of type ``dtype``."""
    if spec.allowed is not None:
        return st.sampled_from(spec.allowed)
    if dtype is bool:
        return st.booleans()
    if dtype in (int, float):
        return _number(spec, dtype)
    # a standard band name now and then, so that a check asking for one can be met
    return _TEXT | st.sampled_from(accepted_band_names())


def _passes_checks(spec: FieldSpec, value: Any) -> bool:
    return all(check.predicate(value) for check in spec.checks)


def valid_value(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """A value that passes the field's type check and every rule ``validate`` applies to it."""
    if spec.kind == "scalar":
        values = _item(spec, spec.dtype)
    elif spec.kind == "list":
        size = {"min_size": spec.length or 0, "max_size": spec.length or 4}
        values = st.lists(_item(spec, spec.itemtype), **size)
    else:
        values = st.dictionaries(_TEXT, _item(spec, spec.itemtype), max_size=4)
    if spec.checks:
        values = values.filter(lambda value: _passes_checks(spec, value))
    return st.none() | values if spec.optional else values


def _set(config: DcrAssembleCoaddConfig, name: str, value: Any) -> None:
    owner, leaf, _ = config._resolve(name)
    setattr(owner, leaf, value)


def _get(config: DcrAssembleCoaddConfig, name: str) -> Any:
    owner, leaf, _ = config._resolve(name)
    return getattr(owner, leaf)


@st.composite
def changes(draw: st.DrawFn, max_size: int = 12) -> dict[str, Any]:
    """A few fields, anywhere in the tree, with valid values of their own."""
    names = draw(st.lists(st.sampled_from(sorted(LEAVES)), unique=True, max_size=max_size))
    return {name: draw(valid_value(LEAVES[name])) for name in names}


def _configured(values: dict[str, Any]) -> DcrAssembleCoaddConfig:
    config = DcrAssembleCoaddConfig()
    for name, value in values.items():
        _set(config, name, value)
    return config


@contextlib.contextmanager
def _directory():
    """A fresh directory per example (pytest's ``tmp_path`` is shared by all examples)."""
    with tempfile.TemporaryDirectory(prefix="dcr-props-") as directory:
        yield Path(directory)


def _toml_refuses(config: DcrAssembleCoaddConfig, error: ConfigError) -> bool:
    """TOML has no null: a field holding None over a default that is not None is refused."""
    fresh = DcrAssembleCoaddConfig()
    return _get(config, error.field) is None and _get(fresh, error.field) is not None


# --------------------------------------------------------------------------- round trips


@given(values=changes())
@example(values={"coaddName": "a\x85b\u2028", "badMaskPlanes": ["ü", "x y"]})
@example(values={"modelPsf.defaultFwhm": 5e-324, "scaleZeroPoint.zeroPoint": -1e300})
def test_every_format_reads_back_to_an_equal_config(values):
    config = _configured(values)
    with _directory() as directory:
        for fmt in FORMATS:
            try:
                text = config.dumps(fmt)
            except ConfigError as error:
                assert fmt == "toml" and _toml_refuses(config, error), error
                continue
            path = directory / f"config.{fmt}"
            path.write_text(text, encoding="utf-8")
            loaded = DcrAssembleCoaddConfig.from_file(path)
            assert loaded == config, fmt
            assert loaded.toDict() == config.toDict()  # same types too (1 vs 1.0)


@given(values=changes(max_size=6), fmt=st.sampled_from(FORMATS))
def test_config_show_prints_what_config_reads(values, fmt):
    """``dcr-dask config show --config FILE --format FMT`` prints the config of FILE."""
    config = _configured(values)
    with _directory() as directory:
        path = directory / "config.json"
        path.write_text(config.dumps("json"), encoding="utf-8")
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
            code = main(["config", "show", "--config", str(path), "--format", fmt])
        if code != 0:  # only TOML may refuse, for None over a default that is not None
            with pytest.raises(ConfigError) as info:
                config.dumps(fmt)
            assert fmt == "toml" and _toml_refuses(config, info.value)
            return
        assert stdout.getvalue() == config.dumps(fmt)


# --------------------------------------------------------------------------- --set


_TRUE, _FALSE = ("true", "True", "yes", "ON", "1"), ("false", "FALSE", "no", "off", "0")
_NULL = ("None", "none", "null", "NULL")


def _plain(text: str, spec: FieldSpec) -> bool:
    """Whether a str value can be given unquoted (the parser strips spaces and unquotes, and
    refuses a blank value: an empty string is written ``""``)."""
    quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""
    null = spec.optional and text.strip().lower() in ("none", "null")
    return bool(text) and text == text.strip() and not quoted and not null


def _scalar_text(value: Any, dtype: type, spec: FieldSpec, draw: st.DrawFn) -> str:
    if dtype is bool:
        return draw(st.sampled_from(_TRUE if value else _FALSE))
    if dtype is int:
        return draw(st.sampled_from([str(value), f" {value} "]))
    if dtype is float:
        return draw(st.sampled_from([repr(value), f"{value:.17g}"]))
    return value if _plain(value, spec) and draw(st.booleans()) else repr(value)


@st.composite
def set_strings(draw: st.DrawFn) -> tuple[str, Any, str]:
    """``(field, value, "field=text")``: a valid value and one way to write it for ``--set``."""
    name = draw(st.sampled_from(sorted(LEAVES)))
    spec = LEAVES[name]
    value = draw(valid_value(spec))
    if value is None:
        return name, value, f"{name}={draw(st.sampled_from(_NULL))}"
    if spec.kind == "scalar":
        return name, value, f"{name}={_scalar_text(value, spec.dtype, spec, draw)}"
    literal = json.dumps(value) if draw(st.booleans()) else repr(value)
    if spec.kind == "list":
        items = [_scalar_text(item, spec.itemtype, spec, draw) for item in value]
        commas = ",".join(items)
        if items and all("," not in item for item in items) and commas[:1] not in "[({":
            literal = draw(st.sampled_from([literal, commas]))
    else:
        pairs = [
            f"{key}:{_scalar_text(item, spec.itemtype, spec, draw)}" for key, item in value.items()
        ]
        commas = ",".join(pairs)
        plain_keys = all(_plain(key, spec) and key and not set(key) & set(",:") for key in value)
        if pairs and plain_keys and commas[:1] not in ("[", "(", "{"):
            literal = draw(st.sampled_from([literal, commas]))
    return name, value, f"{name}={literal}"


@given(case=set_strings())
@example(case=("coaddName", "a=b", "coaddName=a=b"))
@example(case=("badMaskPlanes", [], "badMaskPlanes=[]"))
@example(case=("coaddName", "", 'coaddName=""'))
def test_set_gives_what_assignment_gives(case):
    name, value, override = case
    by_set = apply_overrides(DcrAssembleCoaddConfig(), [override])
    by_assignment = _configured({name: value})
    assert by_set == by_assignment, override
    assert _get(by_set, name) == value or (value != value)
    assert type(_get(by_set, name)) is type(_get(by_assignment, name))


# --------------------------------------------------------------------------- invalid values


def _wrong_type(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """Values of a type the field does not accept (an int is a float; a bool is nothing else)."""
    scalar_of = {
        bool: st.integers() | st.floats() | _TEXT,
        int: st.booleans() | st.floats().filter(lambda v: not float(v).is_integer()) | _TEXT,
        float: st.booleans() | _TEXT,
        str: st.booleans() | st.integers() | st.floats(),
    }
    if spec.kind == "scalar":
        return scalar_of[spec.dtype] | st.lists(st.integers(), max_size=2)
    if spec.kind == "list":
        return (
            _TEXT
            | st.integers()
            | st.dictionaries(_TEXT, st.integers(), max_size=2)
            | st.lists(scalar_of[spec.itemtype], min_size=1, max_size=3)
        )
    return (
        _TEXT
        | st.lists(st.integers(), max_size=2)
        | st.dictionaries(_TEXT, scalar_of[spec.itemtype], min_size=1, max_size=2)
        | st.dictionaries(st.integers(), _item(spec, spec.itemtype), min_size=1, max_size=2)
    )


_TYPED = sorted(LEAVES)


@given(name=st.sampled_from(_TYPED), data=st.data())
def test_wrong_type_is_refused_naming_the_field(name, data):
    spec = LEAVES[name]
    value = data.draw(_wrong_type(spec).filter(lambda v: v is not None or not spec.optional))
    config = DcrAssembleCoaddConfig()
    with pytest.raises(ConfigError) as info:
        _set(config, name, value)
    assert info.value.field == name and repr(name) in str(info.value)
    assert config == DcrAssembleCoaddConfig()  # nothing changed


def _bad_number(spec: FieldSpec, dtype: type) -> st.SearchStrategy[Any] | None:
    bounds = spec.bounds
    bad = []
    if dtype is float:
        bad.append(st.sampled_from([math.nan, math.inf, -math.inf]))
    if bounds is None:
        return st.one_of(bad) if bad else None
    if bounds.min is not None:
        edge = [bounds.min] if not bounds.min_inclusive else []
        below = (
            st.integers(max_value=math.ceil(bounds.min) - 1)
            if dtype is int
            else st.floats(max_value=bounds.min, exclude_max=True, allow_nan=False, min_value=-_BIG)
        )
        bad += [below, st.sampled_from([dtype(e) for e in edge])] if edge else [below]
    if bounds.max is not None:
        edge = [bounds.max] if not bounds.max_inclusive else []
        above = (
            st.integers(min_value=math.floor(bounds.max) + 1)
            if dtype is int
            else st.floats(min_value=bounds.max, exclude_min=True, allow_nan=False, max_value=_BIG)
        )
        bad += [above, st.sampled_from([dtype(e) for e in edge])] if edge else [above]
    return st.one_of(bad)


def invalid_value(spec: FieldSpec) -> st.SearchStrategy[Any] | None:
    """A value of the right type that ``validate`` must refuse, or None if there is none."""
    dtype = spec.dtype if spec.kind == "scalar" else spec.itemtype
    options = []
    bad_item = None
    if spec.allowed is not None:
        bad_item = _item(FieldSpec("scalar", dtype, "", None), dtype).filter(
            lambda v: v not in spec.allowed
        )
    elif dtype in (int, float):
        bad_item = _bad_number(spec, dtype)
    if spec.kind == "scalar":
        if bad_item is not None:
            options.append(bad_item)
        if spec.checks:
            options.append(_item(spec, dtype).filter(lambda v: not _passes_checks(spec, v)))
    elif spec.kind == "list":
        good = _item(spec, dtype)
        if bad_item is not None:
            options.append(
                st.tuples(st.lists(good, max_size=2), bad_item).map(lambda t: [*t[0], t[1]])
            )
        if spec.length is not None:
            options.append(
                st.lists(good, max_size=spec.length + 2).filter(lambda v: len(v) != spec.length)
            )
        if spec.checks:
            options.append(st.lists(good, max_size=3).filter(lambda v: not _passes_checks(spec, v)))
    else:
        if bad_item is not None:
            options.append(st.dictionaries(_TEXT, bad_item, min_size=1, max_size=2))
        if spec.checks:
            options.append(
                st.dictionaries(_TEXT, _item(spec, dtype), max_size=2).filter(
                    lambda v: not _passes_checks(spec, v)
                )
            )
    return st.one_of(options) if options else None


_RULED = sorted(name for name, spec in LEAVES.items() if invalid_value(spec) is not None)


def test_most_fields_have_rules():
    """The invalid strategies reach the fields they should (a guard on the metadata reader)."""
    assert {"sigmaClip", "detect.thresholdValue", "modelPsf.defaultFwhm", "band"} <= set(_RULED)
    assert len(_RULED) > 150


def _reported_fields(error: ConfigError) -> set[str]:
    problems = error.errors if isinstance(error, ConfigErrors) else [error]
    return {problem.field for problem in problems}


@given(
    broken=st.lists(st.sampled_from(_RULED), min_size=1, max_size=5, unique=True),
    data=st.data(),
)
@example(broken=["sigmaClip"], data=None)
def test_validate_reports_every_invalid_field(broken, data):
    if data is None:  # the explicit example: a non-finite value where a range is printed
        values = {"sigmaClip": math.inf}
    else:
        values = {name: data.draw(invalid_value(LEAVES[name]), label=name) for name in broken}
    config = _configured(values)
    with pytest.raises(ConfigError) as info:
        config.validate()
    assert set(values) <= _reported_fields(info.value), str(info.value)
    for name in values:
        assert repr(name) in str(info.value)


@given(
    name=st.sampled_from(_RULED),
    data=st.data(),
    fmt=st.sampled_from(["yaml", "json"]),
)
def test_invalid_value_in_a_file_names_the_field_and_the_file(name, data, fmt):
    """A value of the wrong type is refused on reading; one out of range by ``config
    validate``; either way the message names the field and the file."""
    value = data.draw(invalid_value(LEAVES[name]) | _wrong_type(LEAVES[name]))
    if fmt == "json" and json.loads(json.dumps(value)) != value:
        fmt = "yaml"  # JSON has only string keys ({0: 0.0} reads back as {"0": 0.0}) and no nan
    nested: dict[str, Any] = {}
    *parents, leaf = name.split(".")
    level = nested
    for parent in parents:
        level = level.setdefault(parent, {})
    level[leaf] = value
    with _directory() as directory:
        path = directory / f"bad.{fmt}"
        text = yaml.safe_dump(nested) if fmt == "yaml" else json.dumps(nested)
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            DcrAssembleCoaddConfig.from_file(path).validate()
        assert name in _reported_fields(info.value)
        assert str(path) in str(info.value), str(info.value)
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = main(["config", "validate", "--config", str(path)])
    assert code != 0
    message = stderr.getvalue()
    assert repr(name) in message and str(path) in message and "Traceback" not in message


# --------------------------------------------------------------------------- bad names, bad --set

_IDENTIFIER = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,12}(\.[A-Za-z_][A-Za-z0-9_]{0,8}){0,2}\Z")
_UNKNOWN = _IDENTIFIER.filter(lambda name: name not in DcrAssembleCoaddConfig._all_names())


@given(name=_UNKNOWN, text=_TEXT.filter(lambda t: "\n" not in t))
def test_unknown_field_is_refused_everywhere(name, text):
    nested: dict[str, Any] = {}
    *parents, leaf = name.split(".")
    level = nested
    for parent in parents:
        level = level.setdefault(parent, {})
    level[leaf] = text
    with pytest.raises(ConfigError) as by_set:
        apply_overrides(DcrAssembleCoaddConfig(), [f"{name}={text}"])
    with pytest.raises(ConfigError) as by_update:
        DcrAssembleCoaddConfig().update(**nested)
    for info in (by_set, by_update):
        assert info.value.field.startswith(name.split(".")[0]), str(info.value)
        assert "no such field" in str(info.value) or "has no sub-fields" in str(info.value)


def _refused(override: str) -> set[str] | None:
    """The fields a ``--set`` string alone is refused for, or None if it is applied."""
    try:
        apply_overrides(DcrAssembleCoaddConfig(), [override])
    except ConfigError as error:
        return _reported_fields(error)
    return None


@given(
    overrides=st.lists(
        st.one_of(
            _TEXT.filter(lambda t: "=" not in t),  # no '='
            _TEXT.map(lambda t: "=" + t),  # no field
            st.tuples(st.sampled_from(_TYPED), _TEXT).map(lambda t: f"{t[0]}={t[1]}"),
            st.sampled_from(["badMaskPlanes=[1]", "nope=1", "detect=3", "sigmaClip=1.5"]),
        ),
        min_size=1,
        max_size=4,
    )
)
@example(overrides=["badMaskPlanes=[1,"])
@example(overrides=["badMaskPlanes=[1]", "sigmaClip=x"])
@example(overrides=["badMaskPlanes=", "=3", "sigmaClip", " "])
def test_set_strings_are_applied_or_each_refused_by_name(overrides):
    """Any ``--set`` strings are applied, or refused with one ConfigError naming the field
    (or the string itself) of every bad one; nothing is applied then."""
    alone = [_refused(override) for override in overrides]
    config = DcrAssembleCoaddConfig()
    if all(fields is None for fields in alone):
        apply_overrides(config, overrides)
        return
    with pytest.raises(ConfigError) as info:
        apply_overrides(config, overrides)
    reported = _reported_fields(info.value)
    for override, fields in zip(overrides, alone, strict=True):
        if fields is not None:
            key = override.partition("=")[0].strip()
            assert fields <= reported and (key in fields or override in fields), str(info.value)
    assert config == DcrAssembleCoaddConfig()
