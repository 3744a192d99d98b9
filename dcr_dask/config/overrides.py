"""Changing a config by name: the ``FIELD=VALUE`` strings of ``--set``
(:func:`apply_overrides`) and the named sets of overrides of ``--preset``
(:data:`PRESETS`: :func:`reference_overrides`, :func:`many_artifacts_overrides`).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Iterable
from typing import Any

from dcr_dask.config.base import ConfigBase, _raise_all, _unknown_field
from dcr_dask.config.fields import FieldSpec
from dcr_dask.config.history import _provenance
from dcr_dask.errors import ConfigError, OverrideError

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
      reference's iteration limits;
    - ``doFindCosmicRays = False``: no cosmic-ray search on the direct warps
      (the reference leaves them to single-visit processing and CompareWarp);
    - ``detectTemplate.thresholdValue = 300``: CompareWarp's threshold of the
      static model's sources that protect the artifact candidates they contain
      (dcr_dask's default is 50).
    - ``frequencyClamp = "planes"``: the frequency regularization clamps each
      sharp sub-band plane against the smoothed mean (dcr_dask's default,
      ``"smoothedColour"``, clips the smoothed ratio and sharpens only the
      colour).
    - ``psfForwardModel = "none"``: every visit's template at the model's one
      PSF (with ``"gaussian"``, each is widened to its visit's PSF).
    - ``excludeClippedFromFit = False``: the artifacts (``CLIPPED``) stay in
      the DCR fit, as in the reference; they are still left out of the coadd.

    Extensions that the reference has no counterpart of keep their defaults,
    which equal the reference's behaviour (``subbandShiftMode = "edges"``,
    ``residualWeighting = "equal"``, ``artifactReference = "static"``,
    ``useLocalGeometry = False``), except that sources are still detected on
    the template when the warps have no ``DETECTED`` plane
    (``detectModelSources``), where the reference stops after one update.

    Returns
    -------
    dict
        A fresh dict for :meth:`ConfigBase.update` (nested for ``modelPsf`` and
        ``detectTemplate``).

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
        "doFindCosmicRays": False,
        "detectTemplate": {"thresholdValue": 300.0},
        "frequencyClamp": "planes",
        "psfForwardModel": "none",
        "excludeClippedFromFit": False,
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
        return [_parse_scalar(spec._item_type(), item) for item in items]
    pairs = [item.partition(":") for item in items]
    if any(not sep for _, sep, _ in pairs):
        raise ValueError("expected KEY:VALUE pairs separated by commas")
    if any(not key.strip() for key, _, _ in pairs):
        raise ValueError("a KEY before ':' is empty")
    return {
        _parse_scalar(spec._key_type(), key): _parse_scalar(spec._item_type(), value)
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
            sub_config: type[ConfigBase] = spec.dtype
            example = next(iter(sub_config.fields()), None)
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
