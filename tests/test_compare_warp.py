"""CompareWarp on Dask: static model, artifact recall and false positives, chunking, storage."""

import attrs
import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage
from test_stack import reference_stack_pixel

from dcr_dask.config import DcrAssembleCoaddConfig, reference_overrides
from dcr_dask.graph import compare_warp as compare_warp_module
from dcr_dask.graph import detect as detect_module
from dcr_dask.graph.artifacts import apply_artifact_masks, find_artifacts, variance_scale_factors
from dcr_dask.graph.coadd import assemble_static_sky_model, stack_settings
from dcr_dask.graph.compare_warp import compare_warp
from dcr_dask.graph.detect import (
    _detect,
    _grow,
    _peak_tested_footprints,
    detect_sources,
)
from dcr_dask.graph.psf_matching import match_psfs, psf_matching
from dcr_dask.io.ingest import ingest_warps, open_ingested, write_artifact_masks
from dcr_dask.io.warps import open_warps
from dcr_dask.kernels.detection import DetectionSettings, footprint_mask
from dcr_dask.kernels.stack import visit_weight
from dcr_dask.masks import MaskPlanes
from dcr_dask.settings import (
    artifact_settings,
    compare_warp_settings,
    detection_settings,
    psf_matching_settings,
    source_detection,
    stacking,
    variance_scaling,
)
from dcr_dask.simulate import SimulationSpec, realistic_spec, simulate_tile, write_simulation

CHUNK = 48
SPEC = SimulationSpec(
    shape=(128, 128),
    airmasses=(1.01, 1.05, 1.1, 1.2, 1.3, 1.4, 1.55, 1.7, 1.85, 2.0),
    streak_visits=(2,),
    cosmic_rays_per_visit=4,
    seed=1,
)
#: Pixels this close to an artifact may be clipped with it: PSF matching spreads it over
#: the matching kernel (half of matchingKernelSize = 21).
NEAR_ARTIFACT_PX = 10


def _config():
    return DcrAssembleCoaddConfig(effectiveWavelength=478.0, bandwidth=147.0)


def _matching_settings():
    return psf_matching_settings(_config())


def _threads():
    return dask.config.set(scheduler="threads", num_workers=2)


@pytest.fixture(scope="module")
def tile():
    return simulate_tile(SPEC)


@pytest.fixture(scope="module")
def warp_files(tile, tmp_path_factory):
    return write_simulation(tile, tmp_path_factory.mktemp("sim"))["warps"]


@pytest.fixture(scope="module")
def warps(warp_files):
    return open_warps(warp_files, chunks=CHUNK)


@pytest.fixture(scope="module")
def result(warps):
    with _threads():
        found = compare_warp(warps, compare_warp_settings(_config()))
        return found, found.artifacts.compute()


@pytest.fixture(scope="module")
def truth(tile):
    """Truth artifacts split into the streak and cosmic rays; source pixels away from them."""
    artifacts = tile.artifacts
    streak = np.zeros_like(artifacts)
    for v in SPEC.streak_visits:
        labels, _ = ndimage.label(artifacts[v], structure=np.ones((3, 3)))
        streak[v] = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    near = np.array([ndimage.binary_dilation(a, iterations=NEAR_ARTIFACT_PX) for a in artifacts])
    sources = tile.true_images > 5.0 * SPEC.sky_sigma
    return {
        "all": artifacts,
        "streak": streak,
        "cosmic": artifacts & ~streak,
        "sources": sources & ~near,
    }


# ----------------------------------------------------------------------------- acceptance


def test_the_streak_crosses_several_chunks(truth):
    ys, xs = np.nonzero(truth["streak"][SPEC.streak_visits[0]])
    chunks = {(y // CHUNK, x // CHUNK) for y, x in zip(ys, xs, strict=True)}
    assert len(chunks) >= 3


def test_streak_and_cosmic_rays_are_clipped_and_stars_are_not(result, truth):
    _, found = result
    clipped = found.artifacts.values.astype(bool)
    recall = clipped[truth["all"]].mean()
    streak_recall = clipped[truth["streak"]].mean()
    cosmic_recall = clipped[truth["cosmic"]].mean()
    false_positive = clipped[truth["sources"]].mean()
    print(
        f"recall {recall:.4f} (streak {streak_recall:.4f}, cosmic rays {cosmic_recall:.4f}); "
        f"source pixels clipped {false_positive:.4%}"
    )
    assert recall >= 0.95
    assert streak_recall >= 0.95  # found whole across the chunks it crosses
    assert false_positive < 0.01
    # Cosmic rays that fall within the persistent DCR residuals of stars merge with them
    # into footprints that are not transient, as in the reference; about half do on this
    # crowded tile with a 2.5-pixel DCR spread (see the per-visit reference test below).
    assert cosmic_recall > 0.4


def test_a_per_visit_reference_without_dcr_residuals_finds_the_cosmic_rays(
    result, truth, tile, warps
):
    """The ``artifactReference = dcrTemplate`` path, with the truth as an ideal template.

    With CompareWarp's own ``detectTemplate`` threshold (300 sigmas), as the reference
    configures it: dcr_dask's default (50) protects the fainter stars too, and the
    cosmic rays inside them, which the direct warps' search finds instead (0.62 of the
    cosmic-ray pixels here with the default).
    """
    found, _ = result
    config = _config()
    config.update(detectTemplate={"thresholdValue": 300.0})
    ideal = warps.copy()
    ideal["image"] = (("visit", "y", "x"), tile.true_images)
    ideal["variance"] = xr.zeros_like(warps["variance"])
    ideal = ideal.chunk({"visit": 1, "y": CHUNK, "x": CHUNK})
    reference = match_psfs(ideal, _matching_settings(), matching=found.matching)[
        ["image", "variance"]
    ]
    with _threads():
        per_visit = find_artifacts(
            found.psf_matched, reference, artifact_settings(config), template=found.static_model
        ).compute()
    clipped = per_visit.artifacts.values.astype(bool)
    print(
        f"per-visit reference: cosmic rays {clipped[truth['cosmic']].mean():.4f}, "
        f"streak {clipped[truth['streak']].mean():.4f}, "
        f"sources {clipped[truth['sources']].mean():.4%}"
    )
    assert clipped[truth["streak"]].mean() >= 0.95
    assert clipped[truth["cosmic"]].mean() >= 0.85  # the rest sit on bright, protected stars
    assert clipped[truth["sources"]].mean() < 0.001


@pytest.mark.slow
def test_the_dcr_residuals_of_stars_at_airmass_two_are_not_clipped(tmp_path):
    """Bright stars keep their pixels in the visits where DCR moves them most.

    A Moffat tile of the package's realistic simulator (no DETECTED plane) whose
    visit at airmass 2 has the sharpest seeing (3.1 px FWHM): there, the DCR
    residual of every star against the static model is a transient footprint. At
    CompareWarp's own ``detectTemplate`` threshold (300 sigmas of the static model,
    the reference preset) only the brightest stars protect the footprints they
    contain, and 2.1 % of all bright-source pixels were clipped; dcr_dask's default
    protects the stars and still finds the streak and the cosmic rays.
    """
    spec = realistic_spec((256, 256), seed=3, band="g")
    tile = simulate_tile(spec)
    fitted = ~tile.holdout
    warps = open_warps(write_simulation(tile, tmp_path)["warps"], chunks=128)
    artifacts = tile.artifacts[fitted]
    near = np.array([ndimage.binary_dilation(a, iterations=NEAR_ARTIFACT_PX) for a in artifacts])
    bright = (tile.true_images[fitted] > 10.0 * spec.sky_sigma) & ~near
    band = {"effectiveWavelength": spec.effective_wavelength_nm, "bandwidth": spec.bandwidth_nm}
    config = DcrAssembleCoaddConfig(**band)
    reference = DcrAssembleCoaddConfig(**band)
    reference.update(detectTemplate=reference_overrides()["detectTemplate"])
    clipped = {}
    with _threads():
        for name, chosen in (("defaults", config), ("reference", reference)):
            found = compare_warp(warps, compare_warp_settings(chosen)).artifacts.compute()
            clipped[name] = found.artifacts.values.astype(bool)
    shares = {name: c[bright].mean() for name, c in clipped.items()}
    recall = clipped["defaults"][artifacts].mean()
    print(f"bright pixels clipped {shares}; artifact recall with the defaults {recall:.4f}")
    assert shares["defaults"] < 0.002
    assert shares["reference"] > 0.01  # the field acts: the reference's value clips them
    # the artifacts' own recall does not depend on it (the cosmic rays the static model
    # misses are left to the direct warps' search, doFindCosmicRays)
    assert recall == pytest.approx(clipped["reference"][artifacts].mean(), abs=0.01)
    assert recall > 0.9


def test_artifact_outputs_are_labelled_per_visit(result, warps):
    found, computed = result
    lazy = found.artifacts
    assert isinstance(lazy.artifacts.data, dask.array.Array)
    assert lazy.artifacts.dims == ("visit", "y", "x") and lazy.artifacts.dtype == np.uint8
    assert lazy.no_data.dtype == np.uint8
    np.testing.assert_array_equal(lazy.visit.values, warps.visit.values)
    assert set(np.unique(computed.artifacts.values)) <= {0, 1}
    assert not computed.no_data.values.any()  # the simulation covers the whole tile
    streak = SPEC.streak_visits[0]
    assert (
        computed.artifacts.values[streak].sum() == computed.artifacts.values.sum(axis=(1, 2)).max()
    )
    assert (computed.n_artifact_footprints.values >= 1).all()
    assert computed.epoch_count.dims == ("y", "x")
    assert int(computed.n_epochs.values.max()) == warps.sizes["visit"]
    assert found.static_model.attrs["model_psf_fwhm_px"] == found.matching.model_fwhm_px
    assert "n_image" not in found.static_model  # assembleStaticSkyModel.doNImage is False


# ----------------------------------------------------------------------------- static model


def _small_warps(chunk):
    rng = np.random.default_rng(11)
    tile = simulate_tile(
        SimulationSpec(
            shape=(36, 40),
            airmasses=(1.05, 1.3, 1.6, 1.9, 1.2),
            n_stars=4,
            n_galaxies=1,
            cosmic_rays_per_visit=2,
            seed=3,
        )
    )
    mask = tile.masks.copy()
    planes = tile.mask_planes
    mask[0, 3:9, 5:12] |= 1 << planes.bit("NO_DATA")
    mask[2, 20, :] |= 1 << planes.bit("SAT")
    mask[rng.uniform(size=mask.shape) < 0.03] |= 1 << planes.bit("NOT_DEBLENDED")
    ds = xr.Dataset(
        {
            "image": (("visit", "y", "x"), tile.images),
            "variance": (("visit", "y", "x"), tile.variances),
            "mask": (("visit", "y", "x"), mask),
            "psf": (("visit", "psf_y", "psf_x"), tile.psfs),
        },
        coords={
            "visit": [v.visit for v in tile.visits],
            "y": np.arange(36),
            "x": np.arange(40),
            "has_psf": ("visit", np.ones(5, bool)),
            "psf_fwhm_px": ("visit", tile.psf_fwhm_px),
        },
        attrs={"mask_planes": planes.bits, "tile_shape": [36, 40]},
    )
    return ds.chunk({"visit": 2, "y": chunk, "x": chunk})


def test_static_model_equals_a_numpy_reference_stack_chunked_and_unchunked():
    config = _config()
    matching = psf_matching(_small_warps(40), psf_matching_settings(config))
    with dask.config.set(scheduler="synchronous"):
        matched = match_psfs(
            _small_warps(40), psf_matching_settings(config), matching=matching
        ).compute()
        models = [
            assemble_static_sky_model(
                match_psfs(_small_warps(chunk), psf_matching_settings(config), matching=matching),
                stacking(config.assembleStaticSkyModel),
            ).compute()
            for chunk in (40, 13)
        ]
    static = config.assembleStaticSkyModel
    planes = MaskPlanes(matched.attrs["mask_planes"])
    good = (matched.mask.values & planes.value(static.badMaskPlanes)) == 0
    # the reference's weights: 1 / afw MEANCLIP of each warp's variance (prepareInputs)
    weights = [
        visit_weight(matched.variance.values[v], good[v], static.sigmaClip, static.clipIter)
        for v in range(5)
    ]
    np.testing.assert_allclose(models[0].weight.values, weights, rtol=1e-6)
    plain = np.array([1.0 / matched.variance.values[v][good[v]].mean() for v in range(5)])
    assert not np.allclose(weights, plain, rtol=0.1)  # the clipping matters here
    settings = stack_settings(stacking(static), planes)
    for model in models:
        for y in range(36):
            for x in range(40):
                value, variance, mask, _ = reference_stack_pixel(
                    matched.image.values[:, y, x].astype(np.float64).tolist(),
                    matched.variance.values[:, y, x].astype(np.float64).tolist(),
                    matched.mask.values[:, y, x].tolist(),
                    model.weight.values.tolist(),
                    settings,
                )
                np.testing.assert_allclose(model.image.values[y, x], value, rtol=1e-6, atol=1e-4)
                np.testing.assert_allclose(model.variance.values[y, x], variance, rtol=1e-6)
                assert model.mask.values[y, x] == mask
    xr.testing.assert_allclose(models[0], models[1], rtol=1e-6, atol=1e-5)


def test_artifacts_do_not_depend_on_the_chunking():
    config = _config()
    weights = np.ones(5)
    found = []
    for chunk, visits in ((40, 5), (16, 1)):
        warps = _small_warps(chunk).chunk({"visit": visits})
        with dask.config.set(scheduler="synchronous"):
            found.append(
                compare_warp(
                    warps, compare_warp_settings(config), weights=weights
                ).artifacts.compute()
            )
    assert found[0].artifacts.values.any()
    xr.testing.assert_identical(found[0], found[1])


# ----------------------------------------------------------------------------- pieces


def test_variance_scale_factors_measure_a_misstated_variance(warps):
    config = _config()
    noise = warps.copy()
    rng = np.random.default_rng(0)
    shape = (warps.sizes["visit"], warps.sizes["y"], warps.sizes["x"])
    noise["image"] = (("visit", "y", "x"), rng.normal(0.0, 2.0, size=shape).astype(np.float32))
    noise["variance"] = (("visit", "y", "x"), np.ones(shape, np.float32))
    noise["mask"] = xr.zeros_like(warps["mask"])
    with dask.config.set(scheduler="synchronous"):
        factors = variance_scale_factors(
            noise.chunk({"visit": 1, "y": CHUNK, "x": CHUNK}), variance_scaling(config)
        )
    np.testing.assert_allclose(factors, 4.0, rtol=0.05)


def test_variance_scale_factors_leave_out_the_sources_they_are_given(warps):
    """Without a DETECTED plane, faint sources widen the spread; masking them restores 1."""
    config = _config()
    field = warps.copy()
    rng = np.random.default_rng(1)
    shape = (warps.sizes["visit"], warps.sizes["y"], warps.sizes["x"])
    sources = np.zeros(shape[1:], bool)
    sources[::8, :] = True  # every eighth row holds "sources" 4 sigma bright
    image = rng.normal(0.0, 1.0, size=shape) + 4.0 * sources
    field["image"] = (("visit", "y", "x"), image.astype(np.float32))
    field["variance"] = (("visit", "y", "x"), np.ones(shape, np.float32))
    field["mask"] = xr.zeros_like(warps["mask"])
    field = field.chunk({"visit": 1, "y": CHUNK, "x": CHUNK})
    mask = dask.array.from_array(sources, chunks=CHUNK)
    with dask.config.set(scheduler="synchronous"):
        plain = variance_scale_factors(field, variance_scaling(config))
        masked = variance_scale_factors(field, variance_scaling(config), sources=mask)
    assert plain.min() > 1.15
    np.testing.assert_allclose(masked, 1.0, rtol=0.08)  # the histogram's bins: a few per cent


def test_masks_are_stored_beside_the_warps_and_applied(result, warps, tmp_path):
    _, computed = result
    store = tmp_path / "ingest.zarr"
    with _threads():
        ingested = ingest_warps(warps, store, chunks=(CHUNK, CHUNK))
        write_artifact_masks(store, computed)
        reopened = open_ingested(store)
        assert reopened.artifacts.dtype == np.uint8
        np.testing.assert_array_equal(reopened.artifacts.values, computed.artifacts.values)
        masked = apply_artifact_masks(ingested, reopened).compute()
    planes = MaskPlanes(warps.attrs["mask_planes"])
    clipped = (masked.mask.values & planes.value(["CLIPPED"])) != 0
    np.testing.assert_array_equal(clipped, computed.artifacts.values.astype(bool))
    other = masked.mask.values & ~planes.value(["CLIPPED"])
    np.testing.assert_array_equal(other, warps.mask.values & ~planes.value(["CLIPPED"]))
    with pytest.raises(ValueError, match="already has"):
        write_artifact_masks(store, computed)


def test_no_data_of_the_psf_matched_warp_is_reported(tile):
    warps = _small_warps(40)
    planes = MaskPlanes(warps.attrs["mask_planes"])
    with dask.config.set(scheduler="synchronous"):
        found = compare_warp(
            warps, compare_warp_settings(_config()), weights=np.ones(5)
        ).artifacts.compute()
    no_data = found.no_data.values.astype(bool)
    # visit 0 has NO_DATA at [3:9, 5:12]; it grows by half the matching kernel (10 px).
    assert no_data[0, 3:9, 5:12].all() and no_data[0, 18, 21] and not no_data[0, 19, 22]
    assert not no_data[1:].any()
    assert planes.value(["NO_DATA"])


def test_reference_and_template_errors(result):
    found, _ = result
    config = _config()
    per_visit = found.psf_matched[["image", "variance"]]

    def no_compute(*args, **kwargs):
        raise AssertionError("computed before the error")

    # found before any pass over the data
    with (
        dask.config.set(scheduler=no_compute),
        pytest.raises(ValueError, match="needs the static model as `template`"),
    ):
        find_artifacts(found.psf_matched, per_visit, artifact_settings(config))
    wrong = per_visit.assign_coords(visit=per_visit.visit.values + 1)
    with pytest.raises(ValueError, match="per-visit reference has visits"):
        find_artifacts(
            found.psf_matched, wrong, artifact_settings(config), template=found.static_model
        )
    config.detect.thresholdType = "stdev"
    with pytest.raises(ValueError, match="thresholdType = 'stdev'"):
        find_artifacts(found.psf_matched, found.static_model, artifact_settings(config))
    without_psf = per_visit.copy()
    without_psf.attrs = {}
    with pytest.raises(ValueError, match="psf_sigma_px is needed"):
        detect_sources(without_psf, source_detection(config.detectTemplate))


def _artifacts_both_ways(
    image: np.ndarray, include_multiplier: float = 1.0
) -> tuple[xr.Dataset, xr.Dataset]:
    """``find_artifacts`` on unit-variance warps holding ``image`` against a zero
    reference (chunked so footprints cross chunk borders), without preservation: as the
    reference (polarities merged) and with ``same_sign_epochs``."""
    n_visits, ny, nx = image.shape
    planes = MaskPlanes({"BAD": 0, "SAT": 1, "NO_DATA": 8, "DETECTED": 5, "CLIPPED": 9})
    warps = xr.Dataset(
        {
            "image": (("visit", "y", "x"), image.astype(np.float32)),
            "variance": (("visit", "y", "x"), np.ones(image.shape, np.float32)),
            "mask": (("visit", "y", "x"), np.zeros(image.shape, np.int32)),
        },
        coords={"visit": np.arange(n_visits), "y": np.arange(ny), "x": np.arange(nx)},
        attrs={"mask_planes": dict(planes.bits), "tile_shape": [ny, nx]},
    ).chunk({"visit": 2, "y": 20, "x": 20})
    reference = xr.Dataset(
        {
            "image": (("y", "x"), np.zeros((ny, nx), np.float32)),
            "variance": (("y", "x"), np.full((ny, nx), 1e-4, np.float32)),
        }
    ).chunk({"y": 20, "x": 20})
    config = _config()
    config.doPreserveContainedBySource = False
    config.detect.includeThresholdMultiplier = include_multiplier
    with dask.config.set(scheduler="synchronous"):
        return tuple(
            find_artifacts(
                warps,
                reference,
                artifact_settings(config),
                psf_sigma_px=1.5,
                same_sign_epochs=same_sign,
            ).compute()
            for same_sign in (False, True)
        )


def test_same_sign_epochs_keep_a_transient_whose_ghosts_are_negative():
    """A reference that absorbed part of a visit's transient leaves negative residuals
    in every other visit: counted with either sign (the reference) they make the
    transient persistent; counted by sign (artifactReference="dcrTemplate") they do not."""
    n_visits, shape = 6, (40, 40)
    rng = np.random.default_rng(5)
    image = rng.normal(0.0, 1.0, size=(n_visits, *shape)).astype(np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    blob = 60.0 * np.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / (2 * 1.5**2))
    image[0] += blob  # the transient, seen against a reference holding a sixth of it
    image[1:] -= blob / 2  # ... which shows as negative ghosts elsewhere
    either, by_sign = _artifacts_both_ways(image)
    assert int(either["epoch_count"].values[20, 20]) == n_visits
    assert not either["artifacts"].values.any()
    clipped = by_sign["artifacts"].values.astype(bool)
    assert clipped[0, 20, 20] and not clipped[1:].any()


def test_same_sign_epochs_keep_a_transient_apart_from_a_persistent_residual_beside_it():
    """A cosmic ray beside a star that leaves a negative residual in every visit: merged
    with it into one footprint (the reference) the ray is persistent and kept; with each
    polarity found on its own (artifactReference="dcrTemplate") the ray alone is clipped."""
    n_visits, shape = 6, (40, 40)
    rng = np.random.default_rng(7)
    image = rng.normal(0.0, 1.0, size=(n_visits, *shape))
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image -= 60.0 * np.exp(-((yy - 20) ** 2 + (xx - 15) ** 2) / (2 * 2.0**2))
    image[0] += 80.0 * np.exp(-((yy - 20) ** 2 + (xx - 23) ** 2) / (2 * 1.0**2))
    merged, apart = _artifacts_both_ways(image)
    assert int(merged["n_footprints"].values[0]) == 1  # one footprint: ray and residual
    assert not merged["artifacts"].values.any()
    clipped = apart["artifacts"].values.astype(bool)
    assert clipped[0, 20, 23] and clipped[0].sum() < 40
    assert not clipped[:, 20, 15].any() and not clipped[1:].any()
    assert int(apart["epoch_count"].values[20, 23]) == 1
    assert int(apart["epoch_count"].values[20, 15]) == n_visits


# ------------------------------------------------------------- includeThresholdMultiplier


def test_include_threshold_multiplier_end_to_end(result, truth):
    """thresholdValue 5 with includeThresholdMultiplier 1.5 against the default 7.5 / 1
    (the ``result`` fixture): every footprint found at 7.5 is found again, with its extent
    at 5 (the streak is clipped wider), and the tile's artifacts are still clipped."""
    found, high = result
    config = _config()
    assert config.detect.thresholdValue == 7.5 and config.detect.includeThresholdMultiplier == 1
    config.detect.thresholdValue = 5.0
    config.detect.includeThresholdMultiplier = 1.5
    with _threads():
        psf_matched, static_model = dask.persist(found.psf_matched, found.static_model)
        low = find_artifacts(
            psf_matched,
            static_model,
            artifact_settings(config),
            variance_scale=high.variance_scale.values,
        ).compute()
    assert not high.n_prefiltered.values.any() and not low.n_prefiltered.values.any()
    # the footprints at 5 that reach 7.5 cover every footprint at 7.5, and more
    assert (low.epoch_count.values >= high.epoch_count.values).all()
    assert (low.epoch_count.values > high.epoch_count.values).any()
    clipped = low.artifacts.values.astype(bool)
    clipped_high = high.artifacts.values.astype(bool)
    visit = SPEC.streak_visits[0]

    def streak_footprint(mask):
        labels, _ = ndimage.label(mask[visit], structure=np.ones((3, 3)))
        return labels == np.bincount(labels[truth["streak"][visit]]).argmax()

    wide, narrow = streak_footprint(clipped), streak_footprint(clipped_high)
    print(
        f"includeThresholdMultiplier: clipped {clipped.sum()} px at 5/1.5, "
        f"{clipped_high.sum()} at 7.5/1; streak footprint {wide.sum()} px against "
        f"{narrow.sum()}; recall {clipped[truth['all']].mean():.4f}, "
        f"sources {clipped[truth['sources']].mean():.4%}"
    )
    assert not (narrow & ~wide).any() and wide.sum() > 1.05 * narrow.sum()
    assert clipped[truth["streak"]].mean() >= 0.95
    assert clipped[truth["all"]].mean() >= 0.9
    assert clipped[truth["sources"]].mean() < 0.01


def test_include_threshold_multiplier_drops_faint_transients_either_way():
    """A bright transient (peak 40 sigma) and a faint one (peak 10 sigma, above the 7.5 sigma
    threshold but below 7.5 x 1.5): with the multiplier only the bright one is clipped, in
    the reference's merged detection and with same_sign_epochs alike."""
    n_visits, shape = 5, (40, 40)
    rng = np.random.default_rng(3)
    image = rng.normal(0.0, 1.0, size=(n_visits, *shape))
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image[0] += 40.0 * np.exp(-((yy - 10) ** 2 + (xx - 19) ** 2) / (2 * 1.5**2))
    image[1] -= 10.0 * np.exp(-((yy - 30) ** 2 + (xx - 21) ** 2) / (2 * 3.0**2))
    for include_multiplier, faint_clipped in ((1.0, True), (1.5, False)):
        for found in _artifacts_both_ways(image, include_multiplier):
            clipped = found["artifacts"].values.astype(bool)
            assert clipped[0, 10, 19] and clipped[0, 9:12, 18:21].all()
            assert clipped[1, 30, 21] == faint_clipped
            assert clipped[1].any() == faint_clipped and not clipped[2:].any()


def _smooth_signal(seed: int = 2) -> np.ndarray:
    """Gaussian-filtered noise: many footprints of many sizes above 1.5, both signs."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(2, 50, 70))
    signal = ndimage.gaussian_filter(noise, (0, 0.7, 0.7))
    signal = (1.5 * signal / signal.std()).astype(np.float32)
    signal[0, 20, 30] = np.nan
    return signal


@pytest.mark.parametrize("chunks", [(1, 16, 16), (1, 50, 70), (2, (7, 20, 23), (30, 1, 39))])
@pytest.mark.parametrize("polarity", ["positive", "negative", "both"])
def test_peak_tested_detection_on_chunks_equals_the_whole_array(chunks, polarity):
    signal = _smooth_signal()
    array = da.from_array(signal, chunks=chunks)
    for min_pixels in (1, 4):
        for grow in (0, 2):
            settings = DetectionSettings(
                threshold=1.5,
                polarity=polarity,
                min_pixels=min_pixels,
                grow_px=grow,
                include_multiplier=1.5,
            )
            with dask.config.set(scheduler="synchronous"):
                mask = _detect(array, settings)
                assert mask.chunks == array.chunks
                mask = mask.compute()
            expected = footprint_mask(signal, settings)
            assert (
                expected.any()
                and expected.sum()
                < footprint_mask(signal, attrs.evolve(settings, include_multiplier=1.0)).sum()
            )
            np.testing.assert_array_equal(mask, expected)


def test_peak_tested_polarities_apart_on_chunks_equal_the_whole_array():
    """What find_artifacts(same_sign_epochs=True) detects: each polarity on its own."""
    signal = _smooth_signal(seed=5)
    settings = DetectionSettings(
        threshold=1.5, polarity="both", min_pixels=4, grow_px=2, include_multiplier=1.5
    )
    positive = attrs.evolve(settings, polarity="positive")
    with dask.config.set(scheduler="synchronous"):
        planes = _grow(
            _peak_tested_footprints(da.from_array(signal, chunks=(1, 16, 16)), settings, (1, -1)),
            settings,
        ).compute()
    np.testing.assert_array_equal(planes[0], footprint_mask(signal, positive))
    np.testing.assert_array_equal(planes[1], footprint_mask(-signal, positive))


def _streak_image(peak: float) -> xr.Dataset:
    """A 1-pixel-wide diagonal streak at 6 sigma across a (60, 80) image, 16-px chunks, whose
    only pixel above 6 x 1.5 (``peak``) is at its far end, in the last chunk it crosses."""
    image = np.zeros((60, 80), np.float32)
    ys = np.arange(5, 55)
    xs = ys + 20
    image[ys, xs] = 6.0
    image[54, 74] = peak
    return xr.Dataset(
        {
            "image": (("y", "x"), image),
            "variance": (("y", "x"), np.ones_like(image)),
        },
        attrs={"model_psf_fwhm_px": 2.355},
    ).chunk({"y": 16, "x": 16})


@pytest.mark.parametrize("peak", [9.5, 8.9])
def test_a_streak_is_kept_in_every_chunk_by_one_bright_pixel_in_one(peak):
    config = _config().detect
    config.update(thresholdValue=6.0, includeThresholdMultiplier=1.5, minPixels=4, nSigmaToGrow=1.0)
    streak = _streak_image(peak)
    with dask.config.set(scheduler="synchronous"):
        found = detect_sources(streak, source_detection(config), psf_sigma_px=1.0).values
    chunks_crossed = {(y // 16, (y + 20) // 16) for y in range(5, 55)}
    assert len(chunks_crossed) >= 5
    if peak >= 9.0:
        on_streak = streak.image.values > 0
        grown = ndimage.binary_dilation(
            on_streak, structure=ndimage.generate_binary_structure(2, 1)
        )
        np.testing.assert_array_equal(found, grown)  # the whole streak, grown by 1 px
    else:
        assert not found.any()  # dropped everywhere


def test_detection_settings_pass_the_include_threshold_multiplier():
    config = _config().detect
    assert detection_settings(config, 1.0).include_multiplier == 1.0
    config.includeThresholdMultiplier = 2.0
    settings = detection_settings(config, 1.0)
    assert settings.include_multiplier == 2.0 and settings.peak_test
    assert settings.include_threshold == 15.0


#: The public names of graph.compare_warp before it was split by step, and the
#: private ones that tests and scripts imported from it.
OLD_COMPARE_WARP_NAMES = (
    "ARTIFACT_VARIABLES",
    "MATCHING_RESIDUAL_WARN",
    "MODEL_PSF_WIDEN",
    "CompareWarpResult",
    "PsfMatching",
    "apply_artifact_masks",
    "assemble_static_sky_model",
    "compare_warp",
    "detect_sources",
    "find_artifacts",
    "match_psfs",
    "model_psf_fwhm",
    "model_psf_stamp",
    "psf_matching",
    "variance_scale_factors",
    "visit_psf_stamps",
    "_detect",
    "_grow",
    "_peak_tested_footprints",
    "_reference_arrays",
)


def test_every_old_name_still_imports_from_compare_warp():
    for name in OLD_COMPARE_WARP_NAMES:
        assert getattr(compare_warp_module, name) is not None, name
    assert {n for n in OLD_COMPARE_WARP_NAMES if n[0] != "_"} <= set(compare_warp_module.__all__)
    # reads a config, so it moved up to the settings layer: still found, with a warning
    import dcr_dask.settings

    for module in (compare_warp_module, detect_module):
        with pytest.warns(DeprecationWarning, match="dcr_dask.settings"):
            moved = module.detection_settings
        assert moved is dcr_dask.settings.detection_settings


def test_one_model_psf_sigma_per_run():
    """The model PSF's sigma comes from one place: the kernels made here, else the
    warps' record, else ``modelPsf.defaultFwhm``; CompareWarp's detections take the
    run's value."""
    from dcr_dask.graph.psf_matching import model_psf_sigma_px
    from dcr_dask.kernels.psf import FWHM_PER_SIGMA

    config = _config()
    warps = _small_warps(40)
    matching = psf_matching(warps, psf_matching_settings(config))
    matched = match_psfs(warps, psf_matching_settings(config), matching=matching)
    default = config.modelPsf.defaultFwhm
    assert model_psf_sigma_px(matched, default, matching) == matching.model_sigma_px
    assert model_psf_sigma_px(matched, default) == pytest.approx(
        matched.attrs["model_psf_fwhm_px"] / FWHM_PER_SIGMA
    )
    given = matched.copy()
    given.attrs = {k: v for k, v in matched.attrs.items() if k != "model_psf_fwhm_px"}
    assert model_psf_sigma_px(given, default) == pytest.approx(default / FWHM_PER_SIGMA)
    with dask.config.set(scheduler="synchronous"):
        found = compare_warp(
            warps, compare_warp_settings(config), psf_matched=given, psf_sigma_px=1.7
        ).artifacts
        assert found.attrs["psf_sigma_px"] == 1.7
        found = compare_warp(warps, compare_warp_settings(config), psf_matched=given).artifacts
        assert found.attrs["psf_sigma_px"] == pytest.approx(default / FWHM_PER_SIGMA)
