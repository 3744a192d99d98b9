"""Tests of dcr_dask.config against the reference DcrAssembleCoaddConfig document."""

from __future__ import annotations

import ast
import copy
import importlib.util
import io
import json
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dcr_dask.config
import dcr_dask.config.reference
from dcr_dask.config import (
    DCR_DASK_TEMPLATE_THRESHOLD,
    AssembleCoaddConfig,
    CompareWarpAssembleCoaddConfig,
    ConfigBase,
    ConfigErrors,
    DcrAssembleCoaddConfig,
    GaussianPsfFactory,
    HistoryEntry,
    ScaleVarianceConfig,
    SourceDetectionConfig,
    apply_overrides,
    many_artifacts_overrides,
    reference_overrides,
)
from dcr_dask.errors import ConfigError, InputError, OverrideError

# The reference document lives beside the repository (in CI's checkout), not in it: the
# tests use its field table, stored in tests/data/reference_fields.json, and compare that
# table with the document when the document is present.
REFERENCE_FILE = (
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "DcrAssembleCoaddConfig.txt"
)
_spec = importlib.util.spec_from_file_location(
    "reference_fields", Path(__file__).with_name("data") / "reference_fields.py"
)
reference_fields = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference_fields)

EXTENSIONS = {
    "effectiveWavelength": None,
    "bandwidth": None,
    "transmissionCurve": None,
    "band": None,
    "brightObjectMaskFile": None,
    "shiftMethod": "sinc",
    "shiftPrecision": "single",
    "subbandShiftMode": "edges",
    "useLocalGeometry": False,
    "residualWeighting": "equal",
    "artifactReference": "static",
    "artifactTemplateError": 0.0,
    "detectModelSources": SourceDetectionConfig(apply_defaults=False),
    "startingModel": "directCoadd",
    "frequencyClamp": "smoothedColour",
    "psfForwardModel": "gaussian",
    "psfModelQuantile": 0.2,
    "excludeClippedFromFit": True,
    "doFindCosmicRays": True,
    "cosmicRayMinSigma": 6.0,
    "cosmicRayCond3Fac": 2.5,
    "cosmicRayCond3Fac2": 0.6,
    "cosmicRayGrow": 1,
}
DEPRECATED = ("doApplyUberCal", "doPsfMatch", "doSigmaClip", "useMeasMosaic")


# ------------------------------------------------------------------ the reference


@pytest.fixture(scope="module")
def reference() -> dict[str, dict[str, Any]]:
    """The reference's field table, as stored in the repository."""
    attributes = json.loads(reference_fields.TABLE.read_text(encoding="utf-8"))
    assert len(attributes) > 60, f"{reference_fields.TABLE} lost attributes"
    return attributes


@pytest.mark.skipif(
    not REFERENCE_FILE.is_file(),
    reason=f"reference document {REFERENCE_FILE} absent (it lives beside the repository)",
)
def test_reference_fields_match_the_document():
    """The stored table is the document's, regenerated (tests/data/reference_fields.py)."""
    table = reference_fields.parse_reference(REFERENCE_FILE.read_text(encoding="utf-8"))
    assert len(table) > 60, "the reference's Attributes Summary was not parsed"
    assert reference_fields.render(table) == reference_fields.TABLE.read_text(encoding="utf-8"), (
        f"{reference_fields.TABLE} differs from {REFERENCE_FILE}: regenerate it with "
        f"python tests/data/reference_fields.py {REFERENCE_FILE}"
    )


def _normalise(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_normalise(item) for item in value]
    return value


def _set(config: ConfigBase, dotted: str, value: Any) -> None:
    *path, name = dotted.split(".")
    for part in path:
        config = getattr(config, part)
    setattr(config, name, value)


def _get(config: ConfigBase, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


@pytest.fixture
def config() -> DcrAssembleCoaddConfig:
    """A config that validates: the defaults plus a filter (g band)."""
    return DcrAssembleCoaddConfig(effectiveWavelength=478.0, bandwidth=147.0)


def test_every_reference_attribute_exists(reference):
    config = DcrAssembleCoaddConfig()
    missing = [name for name in reference if not hasattr(config, name)]
    assert not missing, f"attributes of the reference missing from the config: {missing}"
    documented = [name for name, entry in reference.items() if "default" in entry]
    assert len(documented) == len(reference) - 1  # all but 'history'


def test_declared_types_defaults_and_docs_match_the_reference(reference):
    declared = DcrAssembleCoaddConfig(apply_defaults=False)
    problems = []
    for name, entry in reference.items():
        if "default" not in entry:
            continue
        spec = DcrAssembleCoaddConfig.field_spec(name)
        if spec.type_name != entry["type"]:
            problems.append(f"{name}: type {spec.type_name} != {entry['type']}")
        if spec.doc != entry["doc"] or DcrAssembleCoaddConfig.field_doc(name) != entry["doc"]:
            problems.append(f"{name}: doc {spec.doc!r} != {entry['doc']!r}")
        rendered = f"{entry['doc']} ({entry['type']}, default {entry['default']})"
        if not rendered.startswith(entry["summary"]):
            problems.append(f"{name}: first sentence {entry['summary']!r} differs")
        class_default = re.fullmatch(r"<class '(.*)'>", entry["default"])
        if class_default:
            default = DcrAssembleCoaddConfig.declared_default(name)
            if spec.reference_class != class_default.group(1):
                problems.append(f"{name}: replaces {spec.reference_class}, not {class_default[1]}")
            if not (isinstance(default, type) and issubclass(default, ConfigBase)):
                problems.append(f"{name}: declared default {default!r} is not a config class")
            elif type(getattr(declared, name)) is not default:
                problems.append(f"{name}: holds a {type(getattr(declared, name)).__name__}")
            continue
        expected = _normalise(ast.literal_eval(entry["default"]))
        for source, value in (
            ("declared_default", DcrAssembleCoaddConfig.declared_default(name)),
            ("apply_defaults=False", getattr(declared, name)),
        ):
            if _normalise(value) != expected:
                problems.append(f"{name}: {source} {value!r} != {expected!r}")
        scalar = entry["type"] in ("int", "float", "bool", "str")
        value_type = type(getattr(declared, name)).__name__
        if expected is not None and scalar and value_type != entry["type"]:
            problems.append(f"{name}: default has type {value_type}")
        if "range" in entry and str(spec.bounds) != entry["range"]:
            problems.append(f"{name}: range {spec.bounds} != {entry['range']}")
    assert not problems, "differences from the reference:\n" + "\n".join(problems)


def test_valid_ranges_of_the_reference_are_enforced(reference, config):
    ranged = {name: entry["range"] for name, entry in reference.items() if "range" in entry}
    assert set(ranged) == {"maxFractionEpochsHigh", "maxFractionEpochsLow", "spatialThreshold"}
    for name, text in ranged.items():
        left, low, high, right = re.fullmatch(r"([\[(])(.*),(.*)([\])])", text).groups()
        for bound, inclusive in ((float(low), left == "["), (float(high), right == "]")):
            trial = copy.deepcopy(config)
            setattr(trial, name, bound)
            if inclusive:
                trial.validate()
            else:
                with pytest.raises(ConfigError, match=re.escape(f"'{name}' = {bound!r}")):
                    trial.validate()
        trial = copy.deepcopy(config)
        setattr(trial, name, float(high) + 0.5)
        with pytest.raises(ConfigError, match=name):
            trial.validate()


# ---------------------------------------------------------------- sub-configs


def test_sub_config_classes_and_fields():
    config = DcrAssembleCoaddConfig()
    assert type(config.assembleStaticSkyModel) is AssembleCoaddConfig
    for name in ("detect", "detectTemplate", "detectPsfSources"):
        assert type(getattr(config, name)) is SourceDetectionConfig
    assert config.detect is not config.detectTemplate
    detection_fields = {
        "minPixels",
        "isotropicGrow",
        "combinedGrow",
        "nSigmaToGrow",
        "returnOriginalFootprints",
        "thresholdValue",
        "includeThresholdMultiplier",
        "thresholdType",
        "thresholdPolarity",
        "adjustBackground",
        "reEstimateBackground",
        "doTempLocalBackground",
        "doTempWideBackground",
    }
    assert detection_fields <= set(SourceDetectionConfig().keys())
    assert SourceDetectionConfig.field_spec("thresholdType").allowed == (
        "stdev",
        "variance",
        "value",
        "pixel_stdev",
    )
    assert SourceDetectionConfig.field_spec("thresholdPolarity").allowed == (
        "positive",
        "negative",
        "both",
    )
    psf = GaussianPsfFactory()
    assert psf.toDict() == {
        "size": None,
        "sizeFactor": 3.0,
        "minSize": 5,
        "maxSize": None,
        "defaultFwhm": 3.0,
        "addWing": True,
        "wingFwhmFactor": 2.5,
        "wingAmplitude": 0.1,
    }
    assert config.scaleZeroPoint.zeroPoint == 27.0
    variance = ScaleVarianceConfig()
    assert {"background", "maskPlanes", "limit"} <= set(variance.keys())
    assert variance.background.statisticsProperty == "MEANCLIP"
    assert variance.background.binSize == 32  # ScaleVarianceConfig.setDefaults
    assert {"statisticsProperty", "numSigmaClip", "numIter"} <= set(variance.background.keys())
    stacking = {
        "statistic",
        "sigmaClip",
        "clipIter",
        "calcErrorFromInputVariance",
        "badMaskPlanes",
        "removeMaskPlanes",
        "maskPropagationThresholds",
        "doNImage",
        "doWrite",
        "warpType",
        "subregionSize",
        "doInterp",
    }
    assert stacking <= set(AssembleCoaddConfig().keys())
    for name in ("interpImage", "inputRecorder", "coaddPsf", "select", "connections"):
        assert isinstance(getattr(config, name), ConfigBase)


def test_extension_fields_are_documented_as_such():
    declared = DcrAssembleCoaddConfig(apply_defaults=False)
    for name, default in EXTENSIONS.items():
        spec = DcrAssembleCoaddConfig.field_spec(name)
        assert spec.extension, name
        assert "dcr_dask extension" in spec.doc, name
        assert getattr(declared, name) == default
    extensions = {spec.name for spec in DcrAssembleCoaddConfig.fields() if spec.extension}
    assert extensions == set(EXTENSIONS)


def test_field_listing():
    listing = {spec.name: spec for spec in DcrAssembleCoaddConfig.fields(recursive=True)}
    assert listing["detect.thresholdValue"].type_name == "float"
    assert listing["detect.thresholdValue"].default == 5.0
    assert listing["maxFractionEpochsLow"].bounds is not None
    assert listing["shiftMethod"].allowed == ("spline", "sinc", "fourier")
    assert listing["doPsfMatch"].deprecated
    assert "modelPsf.defaultFwhm" in listing
    top = [spec.name for spec in DcrAssembleCoaddConfig.fields()]
    assert top == DcrAssembleCoaddConfig().keys()
    assert "pixels" in DcrAssembleCoaddConfig.field_doc("modelPsf.defaultFwhm")
    with pytest.raises(ConfigError, match=re.escape("did you mean 'detect.thresholdValue'")):
        DcrAssembleCoaddConfig.field_doc("detect.thresholdValu")


# ---------------------------------------------------------------- setDefaults


def test_set_defaults_values():
    config = DcrAssembleCoaddConfig()
    assert config.doNImage is True
    assert config.statistic == "MEAN"
    assert config.badMaskPlanes == ["NO_DATA", "BAD", "SAT"]
    assert config.removeMaskPlanes == ["NOT_DEBLENDED", "EDGE"]
    static = config.assembleStaticSkyModel
    assert static.warpType == "psfMatched"
    assert static.statistic == "MEANCLIP"
    assert static.sigmaClip == 2.5
    assert static.clipIter == 3
    assert static.badMaskPlanes == ["NO_DATA"]
    assert static.calcErrorFromInputVariance is True
    assert static.doWrite is False
    assert static.doNImage is False
    detect = config.detect
    assert detect.thresholdPolarity == "both"
    assert detect.thresholdValue == 7.5
    assert detect.thresholdType == "pixel_stdev"
    assert detect.minPixels == 4
    assert detect.isotropicGrow is True
    assert detect.nSigmaToGrow == 0.4
    assert detect.returnOriginalFootprints is False
    assert detect.reEstimateBackground is False
    assert detect.doTempLocalBackground is False
    template = config.detectTemplate
    # dcr_dask's threshold; CompareWarp's own (300) is the reference preset's
    assert template.thresholdValue == DCR_DASK_TEMPLATE_THRESHOLD == 50
    assert CompareWarpAssembleCoaddConfig().detectTemplate.thresholdValue == 300
    assert template.nSigmaToGrow == 2.4
    assert template.thresholdPolarity == "positive"
    assert template.returnOriginalFootprints is False
    assert template.doTempLocalBackground is True  # drp_tasks' current CompareWarp values
    assert template.reEstimateBackground is True
    assert template.background.useApprox is False
    psf_sources = config.detectPsfSources
    assert psf_sources.thresholdPolarity == "positive"
    assert psf_sources.thresholdValue == 50
    assert psf_sources.minPixels == 25
    assert psf_sources.nSigmaToGrow == 2
    assert psf_sources.returnOriginalFootprints is False
    assert config.baseGain is None
    # dcr_dask's iteration limits (the reference's None, None, 0.001 are in the preset)
    assert (config.minNumIter, config.maxNumIter, config.convergenceThreshold) == (30, 60, 1e-6)
    reference = DcrAssembleCoaddConfig()
    reference.update(**reference_overrides())
    assert (reference.minNumIter, reference.maxNumIter) == (None, None)
    assert reference.convergenceThreshold == 0.001
    assert (reference.resolved_min_num_iter(), reference.resolved_max_num_iter()) == (3, 9)
    assert reference.detectTemplate.thresholdValue == 300
    assert reference.detectTemplate.nSigmaToGrow == 2.4  # the rest of the section unchanged
    assert config.modelPsf.defaultFwhm == 3.0


def test_set_defaults_can_be_skipped():
    declared = DcrAssembleCoaddConfig(apply_defaults=False)
    assert declared.doNImage is False
    assert declared.statistic == "MEANCLIP"
    assert declared.badMaskPlanes == ["NO_DATA"]
    assert declared.detect.thresholdValue == 5.0
    assert not declared.compare(DcrAssembleCoaddConfig())


def test_resolved_iterations_and_gain():
    from dcr_dask.settings import fit_settings

    config = DcrAssembleCoaddConfig(dcrNumSubfilters=4, minNumIter=None, maxNumIter=None)
    assert config.resolved_min_num_iter() == 4
    assert config.resolved_max_num_iter() == 12
    assert config.resolved_base_gain() == pytest.approx(1 / 3)
    config.update(minNumIter=2, maxNumIter=5, baseGain=0.5)
    assert (config.resolved_min_num_iter(), config.resolved_max_num_iter()) == (2, 5)
    assert config.resolved_base_gain() == 0.5
    config = DcrAssembleCoaddConfig(dcrNumSubfilters=3)
    assert config.resolved_base_gain() == 0.5  # the one home of the default (FitSettings reads it)
    config.baseGain = 0.2
    assert fit_settings(config).base_gain == 0.2
    config.update(baseGain=None, dcrNumSubfilters=1)
    with pytest.raises(ConfigError, match="baseGain"):
        config.resolved_base_gain()


# -------------------------------------------------------------------- history


def test_history_shows_declared_default_and_set_defaults():
    config = DcrAssembleCoaddConfig()
    entries = config.detect.history["thresholdValue"]
    assert [(entry.value, entry.label) for entry in entries] == [
        (5.0, "default"),
        (7.5, "setDefaults"),
    ]
    # setDefaults is the reference schema's, in the config package
    assert Path(entries[1].location.rsplit(":", 1)[0]).parent.name == "config"
    text = config.formatHistory("detect.thresholdValue")
    assert text.splitlines()[0] == "detect.thresholdValue"
    assert re.search(r"5\.0\s+default", text)
    assert re.search(r"7\.5\s+setDefaults\s+\S+[/\\]config[/\\]\w+\.py:\d+", text)
    assert ".py:" not in config.formatHistory("detect.thresholdValue", writeSourceLine=False)
    planes = [entry.label for entry in config.history["badMaskPlanes"]]
    assert planes[0] == "default" and set(planes[1:]) == {"setDefaults"}


def test_history_records_where_values_come_from(tmp_path):
    config = DcrAssembleCoaddConfig()
    config.dcrNumSubfilters = 4
    last = config.history["dcrNumSubfilters"][-1]
    assert last.value == 4 and last.label == "assignment"
    filename, line = last.location.rsplit(":", 1)
    assert Path(filename).resolve() == Path(__file__).resolve() and int(line) > 0
    config.badMaskPlanes.append("CR")
    assert config.history["badMaskPlanes"][-1].value == ["NO_DATA", "BAD", "SAT", "CR"]
    config.update(dcrNumSubfilters=5)
    assert config.history["dcrNumSubfilters"][-1].label == "update"
    apply_overrides(config, ["dcrNumSubfilters=6"])
    assert config.history["dcrNumSubfilters"][-1].label == "override"
    path = tmp_path / "override.py"
    path.write_text("config.dcrNumSubfilters = 7\n")
    config.load(path)
    entry = config.history["dcrNumSubfilters"][-1]
    assert entry == HistoryEntry(7, f"load {path}", f"{path}:1")
    toml = tmp_path / "override.toml"
    toml.write_text("dcrNumSubfilters = 8\n")
    config.load_file(toml)
    assert config.history["dcrNumSubfilters"][-1] == HistoryEntry(8, f"load {toml}", str(toml))
    assert "load " + str(path) in config.formatHistory("dcrNumSubfilters")


def test_subclass_set_defaults_is_labelled():
    class Narrow(SourceDetectionConfig):
        def setDefaults(self) -> None:
            super().setDefaults()
            self.minPixels = 9

    narrow = Narrow()
    assert narrow.history["minPixels"][-1].label == "setDefaults"
    assert narrow.minPixels == 9


# ---------------------------------------------------------------- round trips


def _changed_config() -> DcrAssembleCoaddConfig:
    config = DcrAssembleCoaddConfig(effectiveWavelength=478.0, bandwidth=147.0)
    config.dcrNumSubfilters = 4
    config.maxNumIter = 20
    config.baseGain = 0.3
    config.detect.thresholdValue = 6.5
    config.detectTemplate.background.binSize = 64
    config.assembleStaticSkyModel.interpImage.modelPsf.defaultFwhm = 2.25
    config.badMaskPlanes.append("CR")
    config.maskPropagationThresholds = {"SAT": 0.2, "CR": 0.5}
    config.subregionSize = [512, 256]
    config.shiftMethod = "fourier"
    config.transmissionCurve = "filters/g.dat"
    return config


def test_save_and_load_round_trip(tmp_path):
    config = _changed_config()
    path = tmp_path / "config.py"
    config.save(path)
    loaded = DcrAssembleCoaddConfig()
    loaded.load(path)
    assert loaded == config
    assert loaded.compare(config, output=pytest.fail)
    assert loaded.names() == config.names()


def test_save_to_stream_with_other_root_and_old_root_name():
    config = _changed_config()
    stream = io.StringIO()
    config.saveToStream(stream, root="cfg")
    loaded = DcrAssembleCoaddConfig()
    loaded.loadFromStream(stream.getvalue(), root="cfg")
    assert loaded == config
    old = DcrAssembleCoaddConfig()
    with pytest.warns(FutureWarning, match="'root'"):
        old.loadFromStream("root.dcrNumSubfilters = 5\n")
    assert old.dcrNumSubfilters == 5


def test_load_from_stream_executes_python():
    config = DcrAssembleCoaddConfig()
    config.loadFromStream(io.StringIO("config.dcrNumSubfilters = sum([2, 2])\n"))
    assert config.dcrNumSubfilters == 4
    code = compile("config.detect.minPixels = 9", "<code>", "exec")
    config.loadFromStream(code)
    assert config.detect.minPixels == 9
    with pytest.raises(TypeError, match="DcrAssembleCoaddConfig"):
        SourceDetectionConfig().loadFromStream(_saved(config))


def _saved(config: ConfigBase) -> str:
    stream = io.StringIO()
    config.saveToStream(stream)
    return stream.getvalue()


def test_to_dict_update_round_trip():
    config = _changed_config()
    data = config.toDict()
    assert isinstance(data["detect"], dict)
    assert data["detect"]["thresholdValue"] == 6.5
    assert type(data["badMaskPlanes"]) is list and type(data["maskPropagationThresholds"]) is dict
    fresh = DcrAssembleCoaddConfig()
    fresh.update(**data)
    assert fresh == config
    assert fresh.compare(config, output=pytest.fail)


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".yml", ".json", ".py"])
def test_file_round_trip(tmp_path, suffix):
    config = _changed_config()
    path = tmp_path / f"config{suffix}"
    config.to_file(path)
    loaded = DcrAssembleCoaddConfig.from_file(path, allow_python=suffix == ".py")
    assert loaded == config
    assert loaded.compare(config, output=pytest.fail)


def test_file_formats_are_nested(tmp_path):
    path = tmp_path / "config.toml"
    _changed_config().to_file(path)
    text = path.read_text()
    assert "[detect]" in text and "[assembleStaticSkyModel.interpImage.modelPsf]" in text


def test_load_file_refuses_python_unless_allowed(tmp_path):
    path = tmp_path / "config.py"
    DcrAssembleCoaddConfig().save(path)
    with pytest.raises(InputError, match="allow_python=True"):
        DcrAssembleCoaddConfig.from_file(path)
    with pytest.raises(InputError, match="unknown config file extension"):
        DcrAssembleCoaddConfig.from_file(tmp_path / "config.ini")
    bad = tmp_path / "bad.toml"
    bad.write_text("dcrNumSubfilters = = 3\n")
    with pytest.raises(InputError, match=re.escape(str(bad))):
        DcrAssembleCoaddConfig.from_file(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="mapping"):
        DcrAssembleCoaddConfig.from_file(listing)


def test_load_file_reports_unknown_and_mistyped_fields(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("detect:\n  thresholdValu: 3\ndcrNumSubfilters: 2.5\n")
    with pytest.raises(ConfigErrors) as caught:
        DcrAssembleCoaddConfig.from_file(path)
    message = str(caught.value)
    assert "'detect.thresholdValu'" in message and "did you mean 'detect.thresholdValue'" in message
    assert "'dcrNumSubfilters' = 2.5" in message


def test_toml_cannot_write_none_over_a_default(tmp_path):
    config = DcrAssembleCoaddConfig()
    config.modelPsf.minSize = None
    with pytest.raises(ConfigError, match=re.escape("'modelPsf.minSize' = None")):
        config.to_file(tmp_path / "config.toml")
    config.to_file(tmp_path / "config.yaml")
    assert DcrAssembleCoaddConfig.from_file(tmp_path / "config.yaml").modelPsf.minSize is None


def test_copy_and_pickle_keep_values_and_tracking():
    config = _changed_config()
    for clone in (copy.deepcopy(config), pickle.loads(pickle.dumps(config))):
        assert clone == config
        clone.badMaskPlanes.append("INTRP")
        assert clone.history["badMaskPlanes"][-1].value[-1] == "INTRP"
        assert "INTRP" not in config.badMaskPlanes
        assert clone.detect.history["thresholdValue"][-1].value == 6.5


# -------------------------------------------------------------------- compare


def test_compare_reports_dotted_names():
    config, other = DcrAssembleCoaddConfig(), DcrAssembleCoaddConfig()
    other.detect.thresholdValue = 5.0
    other.assembleStaticSkyModel.modelPsf.addWing = False
    other.dcrNumSubfilters = 5
    messages: list[str] = []
    assert not config.compare(other, output=messages.append)
    assert len(messages) == 1
    messages.clear()
    assert not config.compare(other, shortcut=False, output=messages.append)
    assert len(messages) == 3
    text = "\n".join(messages)
    assert "detect.thresholdValue: 7.5 != 5.0" in text
    assert "assembleStaticSkyModel.modelPsf.addWing" in text
    assert "dcrNumSubfilters" in text


def test_compare_uses_float_tolerances():
    config, other = DcrAssembleCoaddConfig(), DcrAssembleCoaddConfig()
    other.sigmaClip = config.sigmaClip * (1 + 1e-10)
    assert config.compare(other)
    assert not config.compare(other, rtol=0.0, atol=0.0)
    assert config.compare(DcrAssembleCoaddConfig()) and config == DcrAssembleCoaddConfig()
    assert not config.compare(SourceDetectionConfig(), output=lambda message: None)


# ------------------------------------------------------- pex_config accessors


def test_keys_values_items_and_names():
    config = DcrAssembleCoaddConfig()
    keys = config.keys()
    assert "detect" in keys and "dcrNumSubfilters" in keys and "history" not in keys
    assert list(config.iterkeys()) == keys
    assert config.values() == [getattr(config, key) for key in keys]
    assert list(config.itervalues()) == config.values()
    assert config.items() == list(zip(keys, config.values(), strict=True))
    assert list(config.iteritems()) == config.items()
    names = config.names()
    assert "detect.thresholdValue" in names and "assembleStaticSkyModel.modelPsf.size" in names
    assert "detect" not in names and "dcrNumSubfilters" in names
    assert len(names) == len(set(names))


def test_update_nested_and_unknown():
    config = DcrAssembleCoaddConfig()
    config.update(dcrNumSubfilters=4, detect={"thresholdValue": 6.0, "minPixels": 2})
    assert (config.dcrNumSubfilters, config.detect.thresholdValue, config.detect.minPixels) == (
        4,
        6.0,
        2,
    )
    replacement = SourceDetectionConfig(thresholdValue=9.0)
    config.update(detectTemplate=replacement)
    assert config.detectTemplate == replacement and config.detectTemplate is not replacement
    replacement.thresholdValue = 1.0
    assert config.detectTemplate.thresholdValue == 9.0
    with pytest.raises(ConfigError, match="did you mean 'dcrNumSubfilters'"):
        config.update(dcrNumSubfilter=3)


# ----------------------------------------------------------- freeze and types


@pytest.mark.parametrize(
    "change",
    [
        lambda c: setattr(c, "dcrNumSubfilters", 4),
        lambda c: setattr(c.detect, "thresholdValue", 4.0),
        lambda c: setattr(c.assembleStaticSkyModel.interpImage.modelPsf, "size", 5),
        lambda c: c.badMaskPlanes.append("CR"),
        lambda c: c.maskPropagationThresholds.update(CR=0.5),
        lambda c: c.update(doWrite=False),
        lambda c: apply_overrides(c, ["detect.minPixels=3"]),
    ],
)
def test_freeze_makes_assignment_raise(change):
    config = DcrAssembleCoaddConfig()
    before = config.toDict()
    config.freeze()
    with pytest.raises(ConfigError, match="frozen") as caught:
        change(config)
    assert caught.value.field in str(caught.value)
    assert config.toDict() == before


def test_freeze_error_names_the_field():
    config = DcrAssembleCoaddConfig()
    config.freeze()
    with pytest.raises(ConfigError, match=r"'detect\.thresholdValue' = 4\.0.*frozen"):
        config.detect.thresholdValue = 4.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dcrNumSubfilters", True),
        ("dcrNumSubfilters", 2.5),
        ("dcrNumSubfilters", "3"),
        ("dcrNumSubfilters", None),
        ("accelerateModel", "3"),
        ("doWrite", 1),
        ("statistic", 3),
        ("badMaskPlanes", "NO_DATA"),
        ("badMaskPlanes", ["NO_DATA", 1]),
        ("subregionSize", [1.5, 2]),
        ("maskPropagationThresholds", {"SAT": "high"}),
        ("maskPropagationThresholds", [("SAT", 0.1)]),
        ("detect.thresholdValue", None),
        ("detect.minPixels", np.float64(3)),
        ("detect", GaussianPsfFactory()),
        ("effectiveWavelength", "478nm"),
    ],
)
def test_wrong_types_raise(field, value):
    config = DcrAssembleCoaddConfig()
    before = _get(config, field)
    with pytest.raises(ConfigError) as caught:
        _set(config, field, value)
    assert caught.value.field == field
    assert f"config field {field!r} = {value!r}" in str(caught.value)
    assert _get(config, field) == before


def test_compatible_types_are_converted():
    config = DcrAssembleCoaddConfig()
    config.accelerateModel = 2
    assert type(config.accelerateModel) is float
    config.dcrNumSubfilters = np.int64(4)
    assert type(config.dcrNumSubfilters) is int
    config.doWrite = np.bool_(False)
    assert config.doWrite is False
    config.subregionSize = (100, 200)
    assert config.subregionSize == [100, 200]
    config.maskPropagationThresholds["CR"] = 1
    assert type(config.maskPropagationThresholds["CR"]) is float
    config.baseGain = None
    config.badMaskPlanes += ["CR"]
    assert config.badMaskPlanes[-1] == "CR"


def test_in_place_change_of_wrong_type_is_undone():
    config = DcrAssembleCoaddConfig()
    with pytest.raises(ConfigError, match="badMaskPlanes"):
        config.badMaskPlanes.extend(["CR", 7])
    assert config.badMaskPlanes == ["NO_DATA", "BAD", "SAT"]


# ------------------------------------------------------------------- validate


def test_valid_config_validates(config):
    config.validate()
    curve_only = DcrAssembleCoaddConfig(transmissionCurve="g.dat", subbandShiftMode="throughput")
    curve_only.validate()


VALIDATION_CASES = [
    ({"maxFractionEpochsLow": 1.0}, "maxFractionEpochsLow"),
    ({"maxFractionEpochsLow": -0.1}, "maxFractionEpochsLow"),
    ({"maxFractionEpochsHigh": 1.0}, "maxFractionEpochsHigh"),
    ({"spatialThreshold": 1.5}, "spatialThreshold"),
    ({"spatialThreshold": -0.5}, "spatialThreshold"),
    ({"prefilterArtifactsRatio": 1.1}, "prefilterArtifactsRatio"),
    ({"matchingKernelSize": 20}, "matchingKernelSize"),
    ({"matchingKernelSize": -3}, "matchingKernelSize"),
    ({"dcrNumSubfilters": 1}, "dcrNumSubfilters"),
    ({"effectiveWavelength": -5.0}, "effectiveWavelength"),
    ({"effectiveWavelength": 0.0}, "effectiveWavelength"),
    ({"bandwidth": -1.0}, "bandwidth"),
    ({"bandwidth": 956.0}, "bandwidth"),
    ({"band": "Y"}, "band"),
    ({"band": "decam-y"}, "band"),
    ({"band": "r", "transmissionCurve": "r.dat"}, "band"),
    ({"minNumIter": 0}, "minNumIter"),
    ({"imageInterpOrder": 0}, "imageInterpOrder"),
    ({"imageInterpOrder": 6}, "imageInterpOrder"),
    ({"subregionSize": [100]}, "subregionSize"),
    ({"subregionSize": [100, 0]}, "subregionSize"),
    ({"statistic": "MEANCLIPPED"}, "statistic"),
    ({"assembleStaticSkyModel.statistic": "SUM"}, "assembleStaticSkyModel.statistic"),
    ({"badMaskPlanes": ["", "BAD"]}, "badMaskPlanes"),
    ({"convergenceMaskPlanes": [" DETECTED"]}, "convergenceMaskPlanes"),
    ({"maskPropagationThresholds": {"": 0.1}}, "maskPropagationThresholds"),
    ({"maskPropagationThresholds": {"SAT": 1.5}}, "maskPropagationThresholds"),
    ({"brightObjectMaskName": ""}, "brightObjectMaskName"),
    ({"convergenceThreshold": -0.1}, "convergenceThreshold"),
    ({"accelerateModel": 0.5}, "accelerateModel"),
    ({"baseGain": 0.0}, "baseGain"),
    ({"baseGain": -1.0}, "baseGain"),
    ({"regularizeModelIterations": -1.0}, "regularizeModelIterations"),
    ({"regularizeModelIterations": 0.5}, "regularizeModelIterations"),
    ({"regularizeModelFrequency": 1.0}, "regularizeModelFrequency"),
    ({"regularizationWidth": 0}, "regularizationWidth"),
    ({"shiftMethod": "linear"}, "shiftMethod"),
    ({"subbandShiftMode": "middle"}, "subbandShiftMode"),
    ({"residualWeighting": "optimal"}, "residualWeighting"),
    ({"artifactReference": "median"}, "artifactReference"),
    ({"transmissionCurve": " "}, "transmissionCurve"),
    ({"warpType": "psf"}, "warpType"),
    ({"assembleStaticSkyModel.warpType": "both"}, "assembleStaticSkyModel.warpType"),
    ({"detect.thresholdPolarity": "up"}, "detect.thresholdPolarity"),
    ({"detect.thresholdType": "sigma"}, "detect.thresholdType"),
    ({"detect.thresholdValue": -1.0}, "detect.thresholdValue"),
    ({"modelPsf.minSize": 9, "modelPsf.maxSize": 7}, "modelPsf.minSize"),
    ({"scaleWarpVariance.limit": 0.0}, "scaleWarpVariance.limit"),
]


@pytest.mark.parametrize(
    ("changes", "field"),
    VALIDATION_CASES,
    ids=["-".join(f"{k}={v!r}" for k, v in changes.items()) for changes, _ in VALIDATION_CASES],
)
def test_validate_rejects_bad_values(config, changes, field):
    for name, value in changes.items():
        _set(config, name, value)
    with pytest.raises(ConfigError) as caught:
        config.validate()
    error = caught.value
    assert not isinstance(error, ConfigErrors), str(error)
    assert error.field == field
    assert error.value == _get(config, field)
    assert f"config field {field!r} = {_get(config, field)!r}" in str(error)


def test_validate_reports_every_problem_together(config):
    config.maxFractionEpochsLow = 2.0
    config.detect.thresholdPolarity = "up"
    config.shiftMethod = "linear"
    with pytest.raises(ConfigError) as caught:
        config.validate()
    group = caught.value
    assert isinstance(group, ConfigErrors) and isinstance(group, ExceptionGroup)
    assert [error.field for error in group.errors] == [
        "maxFractionEpochsLow",
        "shiftMethod",
        "detect.thresholdPolarity",
    ]
    for error in group.errors:
        assert f"config field {error.field!r} = {error.value!r}" in str(group)
    handled = []
    try:
        config.validate()
    except* ConfigError as split:
        handled = [error.field for error in split.exceptions]
    assert len(handled) == 3


def test_validate_catches_values_set_behind_its_back(config):
    object.__setattr__(config, "dcrNumSubfilters", "3")
    with pytest.raises(ConfigError, match=r"'dcrNumSubfilters' = '3': expected int"):
        config.validate()


# ----------------------------------------------------------------- deprecated


@pytest.mark.parametrize("field", DEPRECATED)
def test_deprecated_fields_warn_when_set(field):
    config = DcrAssembleCoaddConfig()
    with pytest.warns(FutureWarning, match=f"'{field}' is deprecated") as record:
        setattr(config, field, True)
    assert Path(record[0].filename).resolve() == Path(__file__).resolve()
    assert getattr(config, field) is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        setattr(config, field, False)


def test_deprecated_fields_do_not_warn_on_round_trip(tmp_path):
    path = tmp_path / "config.py"
    DcrAssembleCoaddConfig().save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DcrAssembleCoaddConfig().load(path)


# ----------------------------------------------------------- apply_overrides


def test_apply_overrides_converts_by_field_type():
    config = DcrAssembleCoaddConfig()
    result = apply_overrides(
        config,
        [
            "detect.thresholdValue=5",
            "dcrNumSubfilters=4",
            "doWrite=no",
            "badMaskPlanes=NO_DATA, BAD,CR",
            "removeMaskPlanes=[]",
            "subregionSize=[1000, 500]",
            "prefilterArtifactsMaskPlanes=('NO_DATA', 'BAD')",
            "maskPropagationThresholds=SAT:0.2,CR:0.3",
            "baseGain=None",
            "maxNumIter = 12",
            "transmissionCurve='/data/g band.dat'",
            "shiftMethod=fourier",
            "assembleStaticSkyModel.interpImage.modelPsf.addWing=false",
        ],
    )
    assert result is config
    assert config.detect.thresholdValue == 5.0 and type(config.detect.thresholdValue) is float
    assert config.dcrNumSubfilters == 4
    assert config.doWrite is False
    assert config.badMaskPlanes == ["NO_DATA", "BAD", "CR"]
    assert config.removeMaskPlanes == []
    assert config.subregionSize == [1000, 500]
    assert config.prefilterArtifactsMaskPlanes == ["NO_DATA", "BAD"]
    assert config.maskPropagationThresholds == {"SAT": 0.2, "CR": 0.3}
    assert config.baseGain is None
    assert config.maxNumIter == 12
    assert config.transmissionCurve == "/data/g band.dat"
    assert config.shiftMethod == "fourier"
    assert config.assembleStaticSkyModel.interpImage.modelPsf.addWing is False


def test_apply_overrides_rejects_unknown_fields_with_suggestions():
    config = DcrAssembleCoaddConfig()
    suggestion = re.escape("did you mean 'detect.thresholdValue'")
    with pytest.raises(ConfigError, match=suggestion) as caught:
        apply_overrides(config, ["detect.thresholdValu=5"])
    assert caught.value.field == "detect.thresholdValu"
    with pytest.raises(ConfigError, match="did you mean 'dcrNumSubfilters'"):
        apply_overrides(config, ["dcrnumsubfilters=4"])
    with pytest.raises(ConfigError, match="no such field"):
        apply_overrides(config, ["nothingLikeIt=4"])


def test_apply_overrides_reports_every_bad_string_and_applies_none():
    config = DcrAssembleCoaddConfig()
    with pytest.raises(ConfigErrors) as caught:
        apply_overrides(
            config,
            [
                "dcrNumSubfilters=5",
                "detect.minPixels=many",
                "doWrite=maybe",
                "detect=5",
                "badMaskPlanes",
                "dcrNumSubfilters=2.5",
            ],
        )
    fields = [error.field for error in caught.value.errors]
    assert fields == ["detect.minPixels", "doWrite", "detect", "badMaskPlanes", "dcrNumSubfilters"]
    assert "is a group of fields" in str(caught.value)
    assert config.dcrNumSubfilters == 4  # dcr_dask's default, untouched


@pytest.mark.parametrize(
    ("override", "field", "says"),
    [
        ("maxNumIter=", "maxNumIter", "gives no value after '='"),
        ("maxNumIter=   ", "maxNumIter", "gives no value after '='"),
        ("detect.thresholdValue=\t", "detect.thresholdValue", "gives no value after '='"),
        ("badMaskPlanes=", "badMaskPlanes", "write badMaskPlanes=[] for an empty list"),
        (
            "maskPropagationThresholds= ",
            "maskPropagationThresholds",
            "maskPropagationThresholds={}",
        ),
        ("coaddName=", "coaddName", 'write coaddName="" for an empty string'),
        ("baseGain=", "baseGain", "write baseGain=None to unset it"),
        ("=3", "=3", "names no field before '='"),
        ("  = 3", "  = 3", "names no field before '='"),
        ("sigmaClip", "sigmaClip", "has no '='"),
        ("", "", "is empty"),
        ("   ", "   ", "is empty"),
    ],
)
def test_apply_overrides_refuses_a_missing_field_or_value_in_one_line(override, field, says):
    config = DcrAssembleCoaddConfig()
    with pytest.raises(OverrideError) as caught:
        apply_overrides(config, [override])
    message = str(caught.value)
    assert message.startswith(f"--set {override!r}: ") and says in message
    assert "\n" not in message
    assert caught.value.field == field and caught.value.value == override
    assert config.badMaskPlanes == DcrAssembleCoaddConfig().badMaskPlanes


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("badMaskPlanes=NO_DATA,,BAD", "item 2 of 3 is empty"),
        ("badMaskPlanes=NO_DATA,", "item 2 of 2 is empty"),
        ("badMaskPlanes= ,NO_DATA", "item 1 of 2 is empty"),
        ("maskPropagationThresholds=SAT:0.1,:0.2", "a KEY before ':' is empty"),
    ],
)
def test_apply_overrides_refuses_empty_items(override, says):
    config = DcrAssembleCoaddConfig()
    with pytest.raises(ConfigError, match=re.escape(says)) as caught:
        apply_overrides(config, [override])
    assert caught.value.field == override.partition("=")[0]
    assert config.badMaskPlanes == DcrAssembleCoaddConfig().badMaskPlanes


def test_the_suggested_empty_values_are_accepted():
    config = apply_overrides(
        DcrAssembleCoaddConfig(),
        ["badMaskPlanes=[]", "maskPropagationThresholds={}", 'coaddName=""', "baseGain=None"],
    )
    assert config.badMaskPlanes == [] and config.maskPropagationThresholds == {}
    assert config.coaddName == "" and config.baseGain is None


# ---------------------------------------------------------------- misc details


def test_history_property_is_a_copy():
    config = DcrAssembleCoaddConfig()
    config.history["dcrNumSubfilters"].clear()
    # the declared default (3) and dcr_dask's (4, from setDefaults)
    assert [entry.value for entry in config.history["dcrNumSubfilters"]] == [3, 4]


def test_unknown_attribute_assignment_fails():
    config = DcrAssembleCoaddConfig()
    with pytest.raises(AttributeError):
        config.dcrNumSubfilter = 4  # type: ignore[attr-defined]


def test_the_readme_recommends_exactly_the_many_artifacts_settings(tmp_path):
    """The README's TOML block for data with many artifacts, read as a user would,
    gives the same config as many_artifacts_overrides() (which the benchmark and the
    end-to-end tests use), so the two cannot drift apart."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("For data with many artifacts", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert block, "README: no TOML block after 'For data with many artifacts'"
    path = tmp_path / "many_artifacts.toml"
    path.write_text(block.group(1), encoding="utf-8")
    from_readme = DcrAssembleCoaddConfig()
    from_readme.load_file(path)
    recommended = DcrAssembleCoaddConfig()
    recommended.update(**many_artifacts_overrides())
    assert from_readme.toDict() == recommended.toDict()
    assert recommended.toDict() != DcrAssembleCoaddConfig().toDict()
    assert many_artifacts_overrides() is not many_artifacts_overrides()  # a fresh dict each time


def test_the_reference_preset_restores_the_reference_choices(capsys):
    from dcr_dask.cli import main
    from dcr_dask.config import PRESETS

    config = DcrAssembleCoaddConfig()
    # dcr_dask's own defaults, chosen on benchmarks against independent truth
    assert (config.shiftMethod, config.modelPsf.addWing, config.startingModel) == (
        "sinc",
        False,
        "directCoadd",
    )
    config.update(**reference_overrides())
    assert config.shiftMethod == "spline" and config.shiftPrecision == "double"
    assert config.modelPsf.addWing is True and config.startingModel == "staticModel"
    # the GaussianPsfFactory default itself is the reference's
    assert GaussianPsfFactory().addWing is True
    assert set(PRESETS) == {"reference", "many-artifacts"}
    assert main(["config", "show", "--preset", "reference", "--set", "shiftMethod=sinc"]) == 0
    shown = capsys.readouterr().out
    assert "startingModel = 'staticModel'" in shown or "startingModel: staticModel" in shown
    assert "shiftMethod = 'sinc'" in shown or "shiftMethod: sinc" in shown


@pytest.mark.parametrize(
    ("wavelength", "bandwidth", "field", "message"),
    [
        (5000.0, 147.0, "effectiveWavelength", "must lie within 230-2059 nm"),
        (200.0, 10.0, "effectiveWavelength", "must lie within 230-2059 nm"),
        (478.0, 600.0, "bandwidth", "at 178-778 nm, which must lie within 230-2059 nm"),
        (478.0, 1000.0, "bandwidth", "at -22-978 nm"),
        (2000.0, 200.0, "bandwidth", "at 1900-2100 nm"),
    ],
)
def test_the_band_must_lie_where_the_refraction_formula_is_valid(
    wavelength, bandwidth, field, message
):
    config = DcrAssembleCoaddConfig(effectiveWavelength=wavelength, bandwidth=bandwidth)
    with pytest.raises(ConfigError, match=re.escape(f"'{field}' = ") + ".*" + re.escape(message)):
        config.validate()
    DcrAssembleCoaddConfig(effectiveWavelength=478.0, bandwidth=400.0).validate()  # 278-678 nm


# ------------------------------------------------------------- the package's modules

#: The head of a Python config file as the single-module ``dcr_dask.config`` wrote it
#: (``config show --format py`` and ``save``), before the package was split into
#: modules, with two changed fields.
_OLD_LAYOUT_FILE = """\
# dcr_dask configuration: DcrAssembleCoaddConfig. This file is Python and is executed
# when loaded (dcr_dask.config.ConfigBase.load): load only files you trust.
import dcr_dask.config

if not isinstance(config, dcr_dask.config.DcrAssembleCoaddConfig):
    raise TypeError(f'this file configures a DcrAssembleCoaddConfig, not a {type(config).__name__}')

# Number of sub-filters to forward model chromatic effects to fit the supplied exposures.
config.dcrNumSubfilters = 5

# Detection threshold; its meaning and unit depend on thresholdType.
config.detect.thresholdValue = 6.5
"""

#: Every config class of the package, by the name it is imported by.
_CONFIG_CLASSES = sorted(
    name
    for name in dcr_dask.config.__all__
    if isinstance(getattr(dcr_dask.config, name), type)
    and issubclass(getattr(dcr_dask.config, name), ConfigBase)
    and name != "ConfigBase"
)


def test_python_files_written_before_the_split_still_load(tmp_path):
    path = tmp_path / "old.py"
    path.write_text(_OLD_LAYOUT_FILE)
    config = DcrAssembleCoaddConfig()
    config.load(path)
    assert config.dcrNumSubfilters == 5 and config.detect.thresholdValue == 6.5
    assert config.history["dcrNumSubfilters"][-1] == HistoryEntry(5, f"load {path}", f"{path}:9")
    with pytest.raises(TypeError, match="configures a DcrAssembleCoaddConfig"):
        SourceDetectionConfig().load(path)


@pytest.mark.parametrize("name", _CONFIG_CLASSES)
def test_python_files_name_the_classes_by_the_package(name):
    """Saved files import the package, not the module defining the class, and so are
    the same as before the split (and do not depend on the package's inner layout)."""
    cls = getattr(dcr_dask.config, name)
    assert cls.__module__ == "dcr_dask.config.reference"
    head = _saved(cls()).split("\n\n# ", 1)[0]
    assert f"\nimport dcr_dask.config\n\nif not isinstance(config, dcr_dask.config.{name}):" in head
    if name == "DcrAssembleCoaddConfig":
        assert head == _OLD_LAYOUT_FILE.split("\n\n# ", 1)[0]


def test_python_files_name_other_classes_by_their_module():
    text = _saved(_WideDetection())
    assert f"import {__name__}\n" in text
    assert f"isinstance(config, {__name__}._WideDetection)" in text


class _WideDetection(SourceDetectionConfig):
    """A config class defined outside the package."""


@pytest.mark.parametrize("name", _CONFIG_CLASSES)
def test_every_config_class_pickles(name):
    """Dask ships configs to its workers by pickling them."""
    config = getattr(dcr_dask.config, name)()
    clone = pickle.loads(pickle.dumps(config))
    assert type(clone) is type(config) and clone == config
    assert clone.compare(config, output=pytest.fail)


def test_pickles_naming_the_classes_by_the_package_load():
    """A pickle made before the split names each class as ``dcr_dask.config.<name>``."""
    config = _changed_config()
    data = pickle.dumps(config, protocol=2)
    assert b"cdcr_dask.config.reference\n" in data
    old = data.replace(b"cdcr_dask.config.reference\n", b"cdcr_dask.config\n")
    assert b"dcr_dask.config.reference" not in old
    assert pickle.loads(old) == config


def test_every_module_of_the_package_is_internal_to_the_history(tmp_path):
    """Values set through any module of the package (update, overrides, files) are
    attributed to the caller, setDefaults to the schema's module, and warnings point
    at the caller."""
    config = DcrAssembleCoaddConfig()
    schema = config.detect.history["thresholdValue"][-1].location.rsplit(":", 1)[0]
    assert Path(schema).resolve() == Path(dcr_dask.config.reference.__file__).resolve()
    here = Path(__file__).resolve()
    for change in (
        lambda: setattr(config, "dcrNumSubfilters", 5),
        lambda: config.update(dcrNumSubfilters=6),
        lambda: apply_overrides(config, ["dcrNumSubfilters=7"]),
        lambda: config._apply_mapping({"dcrNumSubfilters": 8}),
    ):
        change()
        filename, line = config.history["dcrNumSubfilters"][-1].location.rsplit(":", 1)
        assert Path(filename).resolve() == here and int(line) > 0
    with pytest.warns(FutureWarning, match="'root'") as record:
        config.loadFromStream("root.dcrNumSubfilters = 5\n")
    assert Path(record[0].filename).resolve() == here
    python = tmp_path / "old.py"
    python.write_text("root.doPsfMatch = True\n")
    with pytest.warns(FutureWarning) as record:
        config.load(python)
    assert [Path(warning.filename).resolve() for warning in record] == [here, python.resolve()]


def test_the_package_exports_what_the_single_module_did():
    """Everything that ``dcr_dask.config`` exported (and a few more of its names) is
    still importable from it."""
    names = [
        *dcr_dask.config.__all__,
        "PRESETS",
        "reference_overrides",
        "DCR_DASK_MIN_NUM_ITER",
        "DCR_DASK_MAX_NUM_ITER",
        "DCR_DASK_NUM_SUBFILTERS",
        "DCR_DASK_CONVERGENCE_THRESHOLD",
        "DCR_DASK_TEMPLATE_THRESHOLD",
        "ConfigError",
        "InputError",
        "OverrideError",
        "InapplicableFieldWarning",
    ]
    namespace: dict[str, Any] = {}
    exec(f"from dcr_dask.config import {', '.join(names)}", namespace)
    assert namespace["PRESETS"]["reference"] is reference_overrides
    assert namespace["ConfigError"] is ConfigError
