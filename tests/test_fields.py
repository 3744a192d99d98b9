"""Every field of the reference configuration either acts or says that it cannot.

Each field of :class:`DcrAssembleCoaddConfig` (and of its sub-configurations) is in
exactly one of: ``ACTS`` (with the test that shows a change of the field changing
what the code does), :data:`dcr_dask.config.NOT_APPLICABLE` (a changed value draws
an ``InapplicableFieldWarning`` naming it), :data:`dcr_dask.config.REFUSED` (an
error naming it) or the deprecated fields (a ``FutureWarning`` naming it). A field
added later without one of these fails :func:`test_every_field_is_classified_once`.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

import dcr_dask
from dcr_dask.config import (
    NOT_APPLICABLE,
    REFUSED,
    ConfigBase,
    DcrAssembleCoaddConfig,
    FieldSpec,
)
from dcr_dask.errors import ConfigError, InapplicableFieldWarning, InputErrors
from dcr_dask.graph.coadd import (
    clipped_visit_weights,
    direct_coadd,
    good_pixels,
    reference_visit_weights,
    stack_settings,
    visit_weights,
)
from dcr_dask.graph.compare_warp import compare_warp
from dcr_dask.graph.psf_matching import psf_matching
from dcr_dask.io.regions import read_bright_object_regions
from dcr_dask.io.warps import open_warps, tile_wcs, visit_infos
from dcr_dask.masks import MaskPlanes
from dcr_dask.running.pipeline import _finish_coadd, _fit_inputs, _transmission_variable
from dcr_dask.settings import (
    coadd_transmission,
    compare_warp_settings,
    detection_settings,
    fit_settings,
    psf_matching_settings,
    run_shifts,
    stacking,
)
from dcr_dask.simulate import default_demo_spec, simulate_tile, write_simulation

TESTS = Path(__file__).parent
HERE = "tests/test_fields.py"

#: Fields shown to act, each with the test that shows it (file::function). A
#: sub-configuration's entry covers its fields unless a more specific entry of
#: NOT_APPLICABLE names them.
ACTS: dict[str, str] = {
    # the DCR fit's settings (settings.fit_settings)
    **{
        name: f"{HERE}::test_fit_settings_follow_the_field"
        for name in (
            "dcrNumSubfilters",
            "shiftMethod",
            "shiftPrecision",
            "imageInterpOrder",
            "accelerateModel",
            "baseGain",
            "useProgressiveGain",
            "regularizeModelIterations",
            "regularizeModelFrequency",
            "regularizationWidth",
            "useModelWeights",
            "modelWeightsWidth",
            "convergenceThreshold",
            "minNumIter",
            "maxNumIter",
            "useConvergence",
            "frequencyClamp",
            "psfForwardModel",
        )
    },
    "residualWeighting": f"{HERE}::test_residual_weighting_weights_the_fit_by_visit",
    # the DCR geometry (run_shifts)
    **{
        name: f"{HERE}::test_shifts_follow_the_field"
        for name in (
            "splitSubfilters",
            "splitThreshold",
            "subbandShiftMode",
            "effectiveWavelength",
            "bandwidth",
            "band",
            "transmissionCurve",
            "useLocalGeometry",
        )
    },
    # stacking (stack_settings): the direct coadd and the static sky model
    **{
        name: f"{HERE}::test_stack_settings_follow_the_field"
        for name in (
            "statistic",
            "calcErrorFromInputVariance",
            "removeMaskPlanes",
            "maskPropagationThresholds",
            "badMaskPlanes",
            "assembleStaticSkyModel",
        )
    },
    # the visits' weights
    "sigmaClip": f"{HERE}::test_visit_weights_follow_the_field",
    "clipIter": f"{HERE}::test_visit_weights_follow_the_field",
    "doAirmassWeight": f"{HERE}::test_airmass_weighting_multiplies_the_weights_by_the_airmass",
    # detection (detection_settings)
    "detect": f"{HERE}::test_detection_settings_follow_the_field",
    "detectTemplate": f"{HERE}::test_detection_settings_follow_the_field",
    "detectModelSources": f"{HERE}::test_detection_settings_follow_the_field",
    # PSF matching
    "modelPsf": f"{HERE}::test_psf_matching_follows_the_field",
    "matchingKernelSize": f"{HERE}::test_psf_matching_follows_the_field",
    # CompareWarp's artifact tests
    **{
        name: f"{HERE}::test_compare_warp_follows_the_field"
        for name in (
            "maxNumEpochs",
            "maxFractionEpochsLow",
            "spatialThreshold",
            "doScaleWarpVariance",
        )
    },
    # the direct warps' cosmic-ray search (settings.cosmic_ray_settings)
    **{
        name: "tests/test_cosmic_rays.py::test_each_field_changes_what_is_found"
        for name in (
            "doFindCosmicRays",
            "cosmicRayMinSigma",
            "cosmicRayCond3Fac",
            "cosmicRayCond3Fac2",
            "cosmicRayGrow",
        )
    },
    # kernels and runs, tested where the feature is (not toggled through the config here)
    "maxFractionEpochsHigh": (
        "tests/test_artifacts.py::test_effective_max_epochs_is_the_broken_line"
    ),
    "doPrefilterArtifacts": (
        "tests/test_artifacts.py::test_prefilter_keeps_footprints_with_enough_good_pixels"
    ),
    "prefilterArtifactsMaskPlanes": (
        "tests/test_artifacts.py::test_prefilter_keeps_footprints_with_enough_good_pixels"
    ),
    "prefilterArtifactsRatio": (
        "tests/test_artifacts.py::test_prefilter_keeps_footprints_with_enough_good_pixels"
    ),
    "doPreserveContainedBySource": (
        "tests/test_artifact_reference.py::"
        "test_the_recommended_settings_meet_the_acceptance_on_this_tile"
    ),
    "scaleWarpVariance": (
        "tests/test_compare_warp.py::test_variance_scale_factors_measure_a_misstated_variance"
    ),
    "subregionSize": (
        "tests/test_cli.py::test_ingest_writes_a_store_chunked_by_subregion_size_and_reuses_it"
    ),
    "saveMetadata": (
        "tests/test_artifact_reference.py::"
        "test_save_metadata_writes_the_record_in_the_store_and_beside_it"
    ),
    "artifactReference": (
        "tests/test_artifact_reference.py::"
        "test_clipped_pixels_are_left_out_of_the_fit_unless_the_reference_keeps_them"
    ),
    "artifactTemplateError": (
        "tests/test_artifact_reference.py::test_template_error_must_be_a_fraction"
    ),
    "excludeClippedFromFit": (
        "tests/test_artifact_reference.py::"
        "test_clipped_pixels_are_left_out_of_the_fit_unless_the_reference_keeps_them"
    ),
    "startingModel": (
        "tests/test_pipeline.py::test_without_a_template_the_fit_starts_from_the_direct_coadd"
    ),
    "psfModelQuantile": (
        "tests/test_psf_forward.py::test_the_model_is_at_the_quantile_of_the_kept_widths"
    ),
    "convergenceMaskPlanes": (
        "tests/test_pipeline.py::test_warps_without_a_detected_plane_still_converge"
    ),
    # what the reference does to the finished coadd (pipeline._finish_coadd), and end to end
    # in tests/test_output_fields.py
    **{
        name: f"{HERE}::test_finishing_the_coadd_follows_the_field"
        for name in (
            "doInterp",
            "interpImage",
            "doMaskBrightObjects",
            "brightObjectMaskName",
            "brightObjectMaskFile",
        )
    },
    "doAttachTransmissionCurve": f"{HERE}::test_the_attached_curve_follows_the_field",
    # the coadd PSF (its fields that cannot act are in NOT_APPLICABLE, one by one)
    "doCalculatePsf": (
        "tests/test_coadd_psf.py::"
        "test_a_run_stores_and_exports_the_coadd_psf_measured_with_do_calculate_psf"
    ),
    "detectPsfSources": (
        "tests/test_coadd_psf.py::test_the_measured_psf_follows_the_stars_and_the_fields"
    ),
    "measurePsf": "tests/test_coadd_psf.py::test_the_measured_psf_follows_the_stars_and_the_fields",
}


def _deprecated(config: ConfigBase) -> set[str]:
    return {spec.name for spec in type(config).fields(recursive=True) if spec.deprecated}


def _classified(name: str, table) -> str | None:
    """The longest key of ``table`` that is ``name`` or one of its parents."""
    keys = [k for k in table if name == k or name.startswith(k + ".")]
    return max(keys, key=len, default=None)


def _test_exists(reference: str) -> bool:
    path, function = reference.split("::")
    tree = ast.parse((TESTS.parent / path).read_text())
    return any(
        isinstance(node, ast.FunctionDef) and node.name == function for node in ast.walk(tree)
    )


def test_every_field_is_classified_once():
    config = DcrAssembleCoaddConfig()
    deprecated = _deprecated(config)
    names = [spec.name for spec in type(config).fields(recursive=True)]
    assert len(names) > 250  # every nested field, not only the top level
    assert not set(ACTS) & set(NOT_APPLICABLE)
    assert not set(ACTS) & set(REFUSED)
    assert not set(NOT_APPLICABLE) & set(REFUSED)
    keys = set(ACTS) | set(NOT_APPLICABLE) | set(REFUSED) | deprecated
    unclassified = []
    for name in names:
        if name in deprecated or name in REFUSED:
            continue
        acts, inert = _classified(name, ACTS), _classified(name, NOT_APPLICABLE)
        # a sub-configuration may be classified field by field (coaddPsf, measurePsfSources)
        by_field = any(key.startswith(name + ".") for key in keys)
        if acts is None and inert is None and not by_field:
            unclassified.append(name)
        # a field is covered by the most specific entry; both at one level is ambiguous
        assert acts is None or inert is None or len(acts) != len(inert), name
    assert not unclassified, f"fields neither shown to act nor warned about: {unclassified}"
    top = {spec.name for spec in type(config).fields() if not spec.extension}
    by_field = {name for name in top if any(key.startswith(name + ".") for key in keys)}
    assert top <= keys | by_field, top - keys - by_field
    missing = {name: ref for name, ref in ACTS.items() if not _test_exists(ref)}
    assert not missing, missing


# ------------------------------------------------------------------ warned and refused


def _changed(spec: FieldSpec, value):
    """A valid value other than ``value`` for a field."""
    if spec.kind == "list" and spec.length:
        return [item + 2 for item in value]
    if spec.kind == "list":
        return [*value, "BAD"] if spec.itemtype is str else [*value, 1]
    if spec.kind == "dict":
        return {**value, "BAD": 0.5}
    if spec.allowed:
        return next(a for a in spec.allowed if a != value)
    if spec.dtype is bool:
        return not value
    if spec.dtype is str:
        return (value or "x") + "x"
    if value is None:
        return spec.dtype(7)
    return value + spec.dtype(2)  # keeps odd sizes odd


def _leaf(config: ConfigBase, dotted: str) -> tuple[str, object]:
    """``dotted`` itself if it is a plain field, else its first plain field, with a new value."""
    owner = config
    parts = dotted.split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part)
    value = getattr(owner, parts[-1])
    if isinstance(value, ConfigBase):
        specs = [s for s in type(value).fields(recursive=True) if not s.is_config]
        if not specs:
            return "", None
        return _leaf(config, f"{dotted}.{specs[0].name}")
    spec = type(owner).field_spec(parts[-1])
    return dotted, _changed(spec, value)


def _set(config: ConfigBase, dotted: str, value) -> None:
    owner = config
    parts = dotted.split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part)
    setattr(owner, parts[-1], value)


def _base() -> DcrAssembleCoaddConfig:
    return DcrAssembleCoaddConfig(effectiveWavelength=478.0, bandwidth=147.0)


def test_a_default_config_warns_about_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error", InapplicableFieldWarning)
        _base().validate()


@pytest.mark.parametrize("entry", sorted(NOT_APPLICABLE))
def test_an_inapplicable_field_warns_naming_it(entry):
    config = _base()
    field, value = _leaf(config, entry)
    if not field:
        pytest.skip(f"{entry} has no fields to set")
    _set(config, field, value)
    with pytest.warns(InapplicableFieldWarning) as caught:
        config.validate()
    messages = [str(w.message) for w in caught if w.category is InapplicableFieldWarning]
    assert len(messages) == 1, messages
    assert (
        messages[0].startswith(f"{field}=") and "has no effect in dcr_dask because" in messages[0]
    )


@pytest.mark.parametrize("field", sorted(REFUSED))
def test_a_refused_field_is_an_error_naming_it(field):
    config = _base()
    setattr(config, field, REFUSED[field][0])
    with pytest.raises(ConfigError, match=f"'{field}'.*not supported"):
        config.validate()


@pytest.mark.parametrize("detection", ["detect", "detectTemplate", "detectModelSources"])
@pytest.mark.parametrize("kind", ["stdev", "variance"])
def test_whole_image_thresholds_are_refused_before_work(detection, kind):
    config = _base()
    getattr(config, detection).thresholdType = kind
    with pytest.raises(ConfigError, match=f"'{detection}.thresholdType'.*pixel_stdev"):
        config.validate()


@pytest.mark.parametrize("field", sorted(_deprecated(DcrAssembleCoaddConfig())))
def test_a_deprecated_field_warns_naming_it(field):
    config = _base()
    name, value = _leaf(config, field)
    with pytest.warns(FutureWarning, match=f"'{name}' is deprecated"):
        _set(config, name, value)


def test_a_run_warns_once_before_any_work(tmp_path):
    config = _base()
    config.hasFakes = True
    with (
        pytest.warns(InapplicableFieldWarning, match="hasFakes=True") as caught,
        pytest.raises(InputErrors),  # the missing warp: nothing was started
    ):
        dcr_dask.run(config, [tmp_path / "missing.fits"], output=tmp_path / "out.zarr")
    assert sum(w.category is InapplicableFieldWarning for w in caught) == 1
    assert not (tmp_path / "out.zarr").exists() and not (tmp_path / "out.zarr.work").exists()


# ------------------------------------------------------------------------ fields that act


@pytest.fixture(scope="module")
def warps(tmp_path_factory):
    tile = simulate_tile(default_demo_spec(shape=(64, 64)))
    paths = write_simulation(tile, tmp_path_factory.mktemp("sim"))
    return open_warps(paths["warps"], chunks=(32, 32), need_psf=True)


FIT_CHANGES = {
    "dcrNumSubfilters": 5,
    "shiftMethod": "spline",
    "shiftPrecision": "double",
    "imageInterpOrder": 2,
    "accelerateModel": 2.0,
    "baseGain": 0.3,
    "useProgressiveGain": False,
    "regularizeModelIterations": 0.0,
    "regularizeModelFrequency": 0.0,
    "regularizationWidth": 3,
    "useModelWeights": False,
    "modelWeightsWidth": 5.0,
    "convergenceThreshold": 0.01,
    "minNumIter": 2,
    "maxNumIter": 5,
    "useConvergence": False,
    "frequencyClamp": "smoothed",
    "psfForwardModel": "none",
}


@pytest.mark.parametrize(("field", "value"), sorted(FIT_CHANGES.items()))
def test_fit_settings_follow_the_field(field, value):
    config = _base()
    before = fit_settings(config)
    setattr(config, field, value)
    config.validate()
    assert fit_settings(config) != before


SHIFT_CHANGES = {
    "splitSubfilters": False,
    "splitThreshold": 5.0,
    "subbandShiftMode": "throughput",
    "effectiveWavelength": 500.0,
    "bandwidth": 120.0,
    "band": "lsst-r",
    "transmissionCurve": str(
        Path(dcr_dask.__file__).parent / "physics" / "data" / "bands" / "lsst-r.dat"
    ),
    "useLocalGeometry": True,
}


@pytest.mark.parametrize(("field", "value"), sorted(SHIFT_CHANGES.items()))
def test_shifts_follow_the_field(warps, field, value):
    config = DcrAssembleCoaddConfig(band="lsst-g")
    if field == "transmissionCurve":
        config.band = None
        config.transmissionCurve = value.replace("lsst-r", "lsst-g")
    if field in ("effectiveWavelength", "bandwidth"):
        config.update(effectiveWavelength=478.0, bandwidth=147.0)
    visits, wcs = visit_infos(warps), tile_wcs(warps)

    def shifts(c):
        return run_shifts(visits, wcs, c, x=-5000.0, y=-5000.0).shifts_px

    before = shifts(config)
    setattr(config, field, value)
    config.validate()
    after = shifts(config)
    assert after.shape != before.shape or not np.allclose(after, before)


STACK_CHANGES = {
    "statistic": "MEDIAN",
    "calcErrorFromInputVariance": False,
    "removeMaskPlanes": ["NOT_DEBLENDED", "EDGE", "SAT"],
    "maskPropagationThresholds": {"SAT": 0.5},
    "badMaskPlanes": ["NO_DATA"],
    "assembleStaticSkyModel.sigmaClip": 2.0,
    "assembleStaticSkyModel.clipIter": 1,
}


@pytest.mark.parametrize(("field", "value"), sorted(STACK_CHANGES.items()))
def test_stack_settings_follow_the_field(warps, field, value):
    config = _base()
    planes = MaskPlanes(warps.attrs["mask_planes"])
    owner = config.assembleStaticSkyModel if field.startswith("assemble") else config
    before = stack_settings(stacking(owner), planes)
    _set(config, field, value)
    config.validate()
    assert stack_settings(stacking(owner), planes) != before


def _noisy_variance(warps):
    """Warps whose variance planes carry a few huge outliers: a plain mean follows them."""
    noisy = warps.copy()
    variance = warps["variance"].values.copy()
    variance[:, ::9, ::7] *= 50.0
    noisy["variance"] = (("visit", "y", "x"), variance)
    return noisy


@pytest.mark.parametrize(("field", "value"), [("sigmaClip", 10.0), ("clipIter", 1)])
def test_visit_weights_follow_the_field(warps, field, value):
    noisy = _noisy_variance(warps)
    good = good_pixels(noisy, ["NO_DATA", "BAD", "SAT"])
    config = _base()
    before = reference_visit_weights(noisy, good, stacking(config)).values
    plain = visit_weights(noisy, good).values
    # the reference's clipped weights are not the plain mean's
    assert not np.allclose(before, plain, rtol=1e-3)
    setattr(config, field, value)
    after = reference_visit_weights(noisy, good, stacking(config)).values
    assert not np.allclose(after, before, rtol=1e-6)


def test_clipped_weights_of_a_clean_variance_are_the_plain_ones(warps):
    flat = warps.copy()
    flat["variance"] = (("visit", "y", "x"), np.full(warps["variance"].shape, 4.0, np.float32))
    good = good_pixels(flat, ["NO_DATA"])
    weights = clipped_visit_weights(flat, good, sigma_clip=3.0, clip_iter=2).values
    np.testing.assert_allclose(weights, 0.25)


def test_airmass_weighting_multiplies_the_weights_by_the_airmass(warps):
    good = good_pixels(warps, ["NO_DATA", "BAD", "SAT"])
    config = _base()
    plain = reference_visit_weights(warps, good, stacking(config)).values
    config.doAirmassWeight = True
    weighted = reference_visit_weights(warps, good, stacking(config)).values
    airmass = warps["airmass"].values
    assert np.ptp(airmass) > 0.05
    np.testing.assert_allclose(weighted, plain * airmass, rtol=1e-12)


DETECT_CHANGES = {
    "thresholdValue": 9.0,
    "thresholdType": "value",
    "thresholdPolarity": "negative",
    "minPixels": 7,
    "nSigmaToGrow": 4.0,
    "isotropicGrow": False,
    "includeThresholdMultiplier": 2.0,
}


@pytest.mark.parametrize("detection", ["detect", "detectTemplate", "detectModelSources"])
@pytest.mark.parametrize(("field", "value"), sorted(DETECT_CHANGES.items()))
def test_detection_settings_follow_the_field(detection, field, value):
    config = _base()
    owner = getattr(config, detection)
    before = detection_settings(owner, psf_sigma_px=1.5)
    setattr(owner, field, value)
    config.validate()
    assert detection_settings(owner, psf_sigma_px=1.5) != before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("modelPsf.defaultFwhm", 9.0),
        ("modelPsf.addWing", True),
        ("modelPsf.size", 41),
        ("matchingKernelSize", 31),
    ],
)
def test_psf_matching_follows_the_field(warps, field, value):
    config = _base()
    before = psf_matching(warps, psf_matching_settings(config))
    _set(config, field, value)
    config.validate()
    after = psf_matching(warps, psf_matching_settings(config))
    assert after.kernels.shape != before.kernels.shape or not np.allclose(
        after.kernels, before.kernels
    )


COMPARE_CHANGES = {
    "maxNumEpochs": 0,
    "maxFractionEpochsLow": 0.0,
    "spatialThreshold": 1.0,
    "doScaleWarpVariance": False,
}


@pytest.fixture(scope="module")
def artifacts_default(warps):
    return _artifact_outcome(warps, _base())


def _artifact_outcome(warps, config):
    found = compare_warp(warps, compare_warp_settings(config))
    art = found.artifacts
    return (
        np.asarray(art["artifacts"].values),
        np.asarray(art["variance_scale"].values),
    )


@pytest.mark.parametrize(("field", "value"), sorted(COMPARE_CHANGES.items()))
def test_compare_warp_follows_the_field(warps, artifacts_default, field, value):
    config = _base()
    _set(config, field, value)
    config.validate()
    after = _artifact_outcome(warps, config)
    changed = [not np.array_equal(a, b) for a, b in zip(after, artifacts_default, strict=True)]
    assert any(changed)


def test_inapplicable_settings_lists_changed_fields_only():
    config = _base()
    assert config.inapplicable_settings() == []
    config.assembleStaticSkyModel.doWrite = True
    config.coaddPsf.cacheSize = 3
    assert sorted(config.inapplicable_settings()) == [
        "assembleStaticSkyModel.doWrite=True has no effect in dcr_dask because "
        + NOT_APPLICABLE["assembleStaticSkyModel.doWrite"],
        "coaddPsf.cacheSize=3 has no effect in dcr_dask because "
        + NOT_APPLICABLE["coaddPsf.cacheSize"],
    ]


# ------------------------------------------------------- what is done to the finished coadd

#: Changes of the fields that act on the finished coadd, from :func:`_finishing_base`
#: (each row: field, value); the output arrays or the recorded metadata must change.
FINISH_CHANGES = [
    ("doInterp", False),
    ("interpImage.useFallbackValueAtEdge", False),
    ("interpImage.fallbackValueType", "MEAN"),
    ("interpImage.negativeFallbackAllowed", True),
    ("interpImage.transpose", True),
    ("doMaskBrightObjects", False),
    ("brightObjectMaskName", "STARS"),
]


def _finishing_inputs(tmp_path):
    """A 2-sub-band model whose median is negative, with NO_DATA holes at an edge and
    inside, and a region file: enough for every field above to show."""
    rng = np.random.default_rng(2)
    ny, nx = 24, 30
    model = rng.normal(-3.0, 1.0, (2, ny, nx)).astype(np.float32)
    model += np.linspace(0.0, 3.0, nx, dtype=np.float32)  # rows and columns differ
    planes = MaskPlanes({"INTRP": 2, "NO_DATA": 8, "BRIGHT_OBJECT": 14})
    mask = np.zeros((ny, nx), np.int32)
    mask[2:20, :12] |= 1 << 8  # a left-edge run longer than the taper
    mask[5:9, 18:23] |= 1 << 8  # an interior hole
    variance = np.where(mask != 0, np.inf, 1.0).astype(np.float32)
    regions = tmp_path / "bright.reg"
    regions.write_text("image\ncircle(25,15,3)\n")
    arrays = [da.from_array(a, chunks=(*a.shape[:-2], 8, 10)) for a in (model, variance, mask)]
    return arrays, planes, regions


def _finished(config, tmp_path):
    (model, variance, mask), planes, _ = _finishing_inputs(tmp_path)
    config.validate()
    bright = None
    if config.doMaskBrightObjects:
        bright = read_bright_object_regions(config.brightObjectMaskFile, None, mask.shape)
    model, variance, mask, planes, records = _finish_coadd(
        model, variance, mask, planes, config, bright, None
    )
    return [np.asarray(a) for a in da.compute(model, variance, mask)], planes, records


def _finishing_base(tmp_path):
    config = _base()
    config.update(doMaskBrightObjects=True, brightObjectMaskFile=str(tmp_path / "bright.reg"))
    return config


@pytest.mark.parametrize(("field", "value"), FINISH_CHANGES)
def test_finishing_the_coadd_follows_the_field(tmp_path, field, value):
    before = _finished(_finishing_base(tmp_path), tmp_path)
    config = _finishing_base(tmp_path)
    _set(config, field, value)
    if field == "doMaskBrightObjects":
        config.brightObjectMaskFile = None
    after = _finished(config, tmp_path)
    arrays_changed = any(not np.array_equal(a, b) for a, b in zip(before[0], after[0], strict=True))
    assert arrays_changed or before[1:] != after[1:]
    (model, variance, mask), _, records = after
    (_, _, raw_mask), _, _ = _finishing_inputs(tmp_path)
    holes = (np.asarray(raw_mask) & (1 << 8)) != 0
    if config.doInterp:
        assert np.all(np.isfinite(model)) and np.all(((mask & 4) != 0) == holes)
    else:  # the holes stay as they were: NO_DATA, infinite variance, no INTRP
        assert not np.any(mask & 4) and np.all(np.isinf(variance[holes]))
        assert "interpolation" not in records
    assert np.all((mask & (1 << 8) != 0) == holes)  # NO_DATA is never removed


def test_finishing_uses_the_user_fallback_value(tmp_path):
    config = _finishing_base(tmp_path)
    config.interpImage.fallbackValueType = "USER"
    config.interpImage.fallbackUserValue = 7.0
    (model, _, _), _, records = _finished(config, tmp_path)
    assert records["interpolation"]["fallback_values"] == [7.0, 7.0]
    assert np.all(model[:, 2:20, 0] == 7.0)  # far from the good pixels of the row
    config.interpImage.fallbackUserValue = 5.0
    assert np.all(_finished(config, tmp_path)[0][0][:, 2:20, 0] == 5.0)


def test_the_attached_curve_follows_the_field():
    config = DcrAssembleCoaddConfig(band="lsst-r")
    assert not config.doAttachTransmissionCurve  # the reference's default
    config.doAttachTransmissionCurve = True
    config.validate()
    curve = _transmission_variable(coadd_transmission(config))
    assert curve.attrs["band"] == "lsst-r" and curve.sizes["transmission_wavelength"] > 100


def test_residual_weighting_weights_the_fit_by_visit(warps):
    """``inverseVariance`` hands the reference's visit weights to the fit (which
    weights each visit's residual by them: tests/test_model.py), ``equal`` none."""
    noisy = warps.copy()
    noisy["variance"] = (
        noisy["variance"] * np.linspace(1.0, 4.0, noisy.sizes["visit"])[:, None, None]
    )
    config = _base()
    planes = MaskPlanes(noisy.attrs["mask_planes"])
    good = good_pixels(noisy, config.badMaskPlanes)
    weights = reference_visit_weights(noisy, good, stacking(config))
    template = direct_coadd(noisy, stacking(config))
    inputs, weights_np = _fit_inputs(noisy, template, good, weights, planes, config, 1.5)
    assert config.residualWeighting == "equal" and inputs.visit_weights is None
    config.residualWeighting = "inverseVariance"
    inputs, _ = _fit_inputs(noisy, template, good, weights, planes, config, 1.5)
    np.testing.assert_array_equal(inputs.visit_weights, weights_np)
    assert np.ptp(weights_np) / weights_np.max() > 0.5
