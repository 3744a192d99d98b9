"""The settings objects: each is built from its config fields by ``dcr_dask.settings``
alone, every attribute follows its field, and the graph refuses a config in their place."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import xarray as xr

from dcr_dask import settings
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.graph import artifacts, coadd, compare_warp, detect, psf_matching
from dcr_dask.kernels import psf as psf_kernels
from dcr_dask.masks import run_layout

# doNImage and the PSF measurement's fields warn that they do nothing by default
pytestmark = pytest.mark.filterwarnings("ignore::dcr_dask.errors.InapplicableFieldWarning")


def _config() -> DcrAssembleCoaddConfig:
    return DcrAssembleCoaddConfig(effectiveWavelength=478.0, bandwidth=147.0)


def _set(config: DcrAssembleCoaddConfig, dotted: str, value: object) -> None:
    owner = config
    *parents, name = dotted.split(".")
    for part in parents:
        owner = getattr(owner, part)
    setattr(owner, name, value)


def _artifact_settings(config):
    return settings.artifact_settings(config)


def _static_stacking(config):
    return settings.stacking(config.assembleStaticSkyModel)


def _detect(config):
    return settings.source_detection(config.detect)


def _model_psf(config):
    return settings.model_psf(config.modelPsf)


#: builder -> {config field: a value other than its default}. Together the fields of a
#: builder must change every attribute of what it builds (checked below).
CHANGES = {
    _detect: {
        "detect.thresholdValue": 9.0,
        "detect.thresholdType": "value",
        "detect.thresholdPolarity": "negative",
        "detect.minPixels": 7,
        "detect.nSigmaToGrow": 4.0,
        "detect.isotropicGrow": False,
        "detect.includeThresholdMultiplier": 2.0,
    },
    _model_psf: {
        "modelPsf.defaultFwhm": 9.0,
        "modelPsf.size": 41,
        "modelPsf.sizeFactor": 5.0,
        "modelPsf.minSize": 9,
        "modelPsf.maxSize": 99,
        "modelPsf.wingFwhmFactor": 3.0,
        "modelPsf.wingAmplitude": 0.2,
    },
    settings.psf_matching_settings: {
        "modelPsf.defaultFwhm": 9.0,
        "matchingKernelSize": 31,
    },
    _static_stacking: {
        "assembleStaticSkyModel.statistic": "MEAN",
        "assembleStaticSkyModel.sigmaClip": 2.0,
        "assembleStaticSkyModel.clipIter": 1,
        "assembleStaticSkyModel.calcErrorFromInputVariance": False,
        "assembleStaticSkyModel.badMaskPlanes": ["NO_DATA", "SAT"],
        "assembleStaticSkyModel.removeMaskPlanes": ["CR"],
        "assembleStaticSkyModel.maskPropagationThresholds": {"SAT": 0.3},
        "assembleStaticSkyModel.doNImage": True,
    },
    settings.stacking: {
        "statistic": "MEANCLIP",
        "sigmaClip": 2.0,
        "clipIter": 1,
        "calcErrorFromInputVariance": False,
        "badMaskPlanes": ["NO_DATA", "SAT"],
        "removeMaskPlanes": ["CR"],
        "maskPropagationThresholds": {"SAT": 0.3},
        "doNImage": False,
        "doAirmassWeight": True,
    },
    settings.variance_scaling: {
        "doScaleWarpVariance": False,
        "scaleWarpVariance.maskPlanes": ["NO_DATA"],
        "scaleWarpVariance.limit": 3.0,
        "detectModelSources.thresholdValue": 3.0,
    },
    _artifact_settings: {
        "detect.thresholdValue": 6.0,
        "detectTemplate.thresholdValue": 6.0,
        "badMaskPlanes": ["NO_DATA", "SAT"],
        "doPrefilterArtifacts": False,
        "prefilterArtifactsMaskPlanes": ["NO_DATA"],
        "prefilterArtifactsRatio": 0.5,
        "maxNumEpochs": 4,
        "maxFractionEpochsLow": 0.1,
        "maxFractionEpochsHigh": 0.1,
        "spatialThreshold": 0.9,
        "doPreserveContainedBySource": False,
        "modelPsf.defaultFwhm": 4.0,
    },
    settings.psf_measurement: {
        "detectPsfSources.thresholdValue": 30.0,
        "detectPsfSources.thresholdType": "value",
        "detectPsfSources.includeThresholdMultiplier": 2.0,
        "detectPsfSources.minPixels": 9,
        "measurePsf.kernelSize": 31,
        "measurePsf.reserveFraction": 0.3,
    },
    settings.interp_settings: {
        "doInterp": False,
        "interpImage.transpose": True,
        "interpImage.useFallbackValueAtEdge": False,
        "interpImage.fallbackValueType": "USER",
        "interpImage.fallbackUserValue": 2.0,
        "interpImage.negativeFallbackAllowed": True,
    },
}

#: What a builder's base config sets first, so that its fields apply.
BASE = {
    _model_psf: {"modelPsf.addWing": True},  # the DCR task's default is no wing
    settings.psf_measurement: {"doCalculatePsf": True},
}

#: Attributes that stay constant for a builder, and why.
CONSTANT = {
    # doAirmassWeight is a field of the DCR task's config, not assembleStaticSkyModel's
    _static_stacking: {"do_airmass_weight"},
}

CASES = [
    (builder, field, value)
    for builder, fields in CHANGES.items()
    for field, value in fields.items()
]


def _base(builder) -> DcrAssembleCoaddConfig:
    config = _config()
    for field, value in BASE.get(builder, {}).items():
        _set(config, field, value)
    return config


def _changed(before: object, after: object) -> set[str]:
    """The attributes (dotted, into nested settings) that differ."""
    names = set()
    for field in attrs.fields(type(before)):
        old, new = getattr(before, field.name), getattr(after, field.name)
        if attrs.has(type(old)) and old is not None and new is not None:
            names |= {f"{field.name}.{inner}" for inner in _changed(old, new)}
        elif old != new:
            names.add(field.name)
    return names


@pytest.mark.parametrize(
    ("builder", "field", "value"), CASES, ids=[f"{b.__name__}-{f}" for b, f, _ in CASES]
)
def test_each_field_changes_what_is_built(builder, field, value):
    config = _base(builder)
    before = builder(config)
    _set(config, field, value)
    config.validate()
    assert _changed(before, builder(config)), field


@pytest.mark.parametrize("builder", list(CHANGES), ids=lambda b: b.__name__)
def test_every_attribute_comes_from_a_field(builder):
    """No attribute of a settings object is left at a constant: the fields listed for
    its builder change them all (a nested settings object counts as changed when one of
    its own attributes is; each is checked whole by its own builder)."""
    base = builder(_base(builder))
    changed: set[str] = set()
    for field, value in CHANGES[builder].items():
        config = _base(builder)
        _set(config, field, value)
        changed |= {name.split(".")[0] for name in _changed(base, builder(config))}
    every = {field.name for field in attrs.fields(type(base))}
    assert changed == every - CONSTANT.get(builder, set())


def test_model_psf_without_a_wing_has_none():
    config = _config()
    config.modelPsf.addWing = True
    winged = settings.model_psf(config.modelPsf)
    assert (winged.wing_fwhm_factor, winged.wing_amplitude) == (2.5, 0.1)
    config.modelPsf.addWing = False
    plain = settings.model_psf(config.modelPsf)
    assert (plain.wing_fwhm_factor, plain.wing_amplitude) == (1.0, 0.0)
    stamp = psf_matching.model_psf_stamp(plain, 3.0)
    gaussian = psf_kernels.gaussian_psf_image(stamp.shape[0], 3.0)
    np.testing.assert_allclose(stamp, gaussian / gaussian.sum(), rtol=1e-6, atol=1e-12)
    assert psf_matching.model_psf_stamp(winged, 3.0).shape[0] > stamp.shape[0]


def test_detection_at_a_psf_grows_in_its_sigmas():
    detection = settings.source_detection(_config().detect)
    assert detection.at_psf(2.0).grow_px > detection.at_psf(1.0).grow_px
    assert detection.at_psf(1.0, polarity="negative").polarity == "negative"


def test_psf_measurement_refuses_an_unmeasurable_threshold_type():
    config = _base(settings.psf_measurement)
    config.detectPsfSources.thresholdType = "stdev"
    with pytest.raises(ValueError, match=r"detectPsfSources\.thresholdType"):
        settings.psf_measurement(config)


def _warps() -> xr.Dataset:
    planes = run_layout()
    shape = (2, 8, 8)
    return xr.Dataset(
        {
            "image": (("visit", "y", "x"), np.zeros(shape, np.float32)),
            "variance": (("visit", "y", "x"), np.ones(shape, np.float32)),
            "mask": (("visit", "y", "x"), np.zeros(shape, np.int32)),
        },
        coords={"visit": [1, 2]},
        attrs={"mask_planes": planes.bits, "model_psf_fwhm_px": 3.0},
    )


@pytest.mark.parametrize(
    ("call", "builder"),
    [
        (lambda w, c: coadd.stack_warps(w, c), "stacking"),
        (lambda w, c: coadd.direct_coadd(w, c), "stacking"),
        (lambda w, c: coadd.assemble_static_sky_model(w, c), "stacking"),
        (lambda w, c: coadd.stack_settings(c, run_layout()), "stacking"),
        (lambda w, c: coadd.reference_visit_weights(w, w["mask"] == 0, c), "stacking"),
        (lambda w, c: psf_matching.psf_matching(w, c), "psf_matching_settings"),
        (lambda w, c: psf_matching.model_psf_stamp(c.modelPsf, 3.0), "model_psf"),
        (lambda w, c: detect.detect_sources(w, c.detect), "source_detection"),
        (lambda w, c: artifacts.variance_scale_factors(w, c), "variance_scaling"),
        (
            lambda w, c: artifacts.warp_variance_scale(w, w.isel(visit=0), c, 1.0),
            "variance_scaling",
        ),
        (lambda w, c: artifacts.find_artifacts(w, w.isel(visit=0), c), "artifact_settings"),
        (lambda w, c: compare_warp.compare_warp(w, c), "compare_warp_settings"),
    ],
)
def test_the_graph_refuses_a_config_and_names_the_builder(call, builder):
    with pytest.raises(TypeError, match=rf"dcr_dask\.settings\.{builder}\("):
        call(_warps(), _config())


def test_compare_warp_settings_hold_the_parts():
    config = _config()
    built = settings.compare_warp_settings(config)
    assert built.psf_matching == settings.psf_matching_settings(config)
    assert built.static_model == settings.stacking(config.assembleStaticSkyModel)
    assert built.variance_scaling == settings.variance_scaling(config)
    assert built.artifacts == settings.artifact_settings(config)
    # the static model never weights by airmass: the field is the DCR task's own
    config.doAirmassWeight = True
    assert not settings.compare_warp_settings(config).static_model.do_airmass_weight
    assert settings.stacking(config).do_airmass_weight
