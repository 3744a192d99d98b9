"""The simulator: reproducible, flux-conserving, and its DCR points the right way."""

import math

import numpy as np
import pytest

from dcr_dask import geometry
from dcr_dask.simulate import SimulationSpec, default_demo_spec, simulate_tile, write_simulation

SMALL = SimulationSpec(
    shape=(96, 96),
    airmasses=(1.01, 1.5, 2.0),
    holdout_airmasses=(1.9,),
    n_stars=8,
    n_galaxies=2,
    streak_visits=(1,),
    cosmic_rays_per_visit=3,
    seed=7,
)


@pytest.fixture(scope="module")
def tile():
    return simulate_tile(SMALL)


def test_same_seed_same_tile_other_seed_other_tile(tile):
    again = simulate_tile(SMALL)
    np.testing.assert_array_equal(again.images, tile.images)
    other = simulate_tile(SimulationSpec(**{**_spec_kwargs(SMALL), "seed": 8}))
    assert not np.array_equal(other.images, tile.images)


def _spec_kwargs(spec):
    import attrs

    return attrs.asdict(spec, recurse=False)


def test_metadata_follows_the_requested_airmasses_on_both_sides_of_the_meridian(tile):
    airmasses = [v.boresight_airmass for v in tile.visits]
    np.testing.assert_allclose(airmasses, [1.01, 1.5, 2.0, 1.9], rtol=1e-9)
    hour_angles = [
        geometry.hour_angle_deg(v.era_deg, v.observatory.longitude_deg, v.boresight_ra_deg)
        for v in tile.visits
    ]
    assert hour_angles[0] < 0 < hour_angles[1]
    assert tile.holdout.tolist() == [False, False, False, True]


def test_flux_is_conserved_between_subbands_and_visits(tile):
    # sources sit at least 8 px inside the tile, so every stamp is (nearly) whole
    truth_total = tile.true_subbands.sum()
    catalogue_total = sum(s.flux for s in tile.sources)
    np.testing.assert_allclose(truth_total, catalogue_total, rtol=2e-3)
    np.testing.assert_allclose(tile.true_images.sum(axis=(1, 2)), catalogue_total, rtol=2e-3)
    for source in tile.sources:
        np.testing.assert_allclose(sum(source.subband_flux), source.flux, rtol=1e-12)


def test_blue_light_moves_toward_the_zenith_more_than_red(tile):
    v = 2  # airmass 2
    angle = math.radians(
        geometry.visit_geometry(tile.visits[v], tile.wcs, 47.5, 47.5).zenith_direction_deg
    )
    toward_zenith = np.array([math.cos(angle), math.sin(angle)])
    blue = np.array([s.spectral_index for s in tile.sources[: SMALL.n_stars]]).argmin()
    red = np.array([s.spectral_index for s in tile.sources[: SMALL.n_stars]]).argmax()
    offsets = {}
    for name, index in (("blue", blue), ("red", red)):
        star = tile.sources[index]
        yc, xc = _centroid(tile.true_images[v], star.y, star.x)
        offsets[name] = np.dot([yc - star.y, xc - star.x], toward_zenith)
    assert offsets["blue"] > offsets["red"]
    # the bluest sub-band is shifted toward the zenith, the reddest away from it
    assert (
        np.dot(tile.shifts_px[v, 0], toward_zenith)
        > 0
        > np.dot(tile.shifts_px[v, -1], toward_zenith)
    )


def _centroid(image, y, x, radius=9):
    y0, x0 = round(y), round(x)
    stamp = image[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return y0 + (stamp * yy).sum() / stamp.sum(), x0 + (stamp * xx).sum() / stamp.sum()


def test_noise_matches_the_variance_plane_away_from_artifacts(tile):
    pull = (tile.images - tile.true_images) / np.sqrt(tile.variances)
    clean = ~tile.artifacts
    assert abs(pull[clean].std() - 1.0) < 0.02
    assert abs(pull[clean].mean()) < 0.02


def test_artifacts_are_plain_flux_and_recorded(tile):
    assert tile.artifacts[1].sum() > 100  # the streak
    assert all(tile.artifacts[v].sum() >= 1 for v in range(4))  # cosmic rays
    excess = (tile.images - tile.true_images)[tile.artifacts]
    assert np.median(excess) > 3 * SMALL.sky_sigma
    # nothing in the mask flags them: rejection must find them
    from dcr_dask.masks import run_layout

    flagged = run_layout().value(["CR", "CLIPPED", "BAD", "SAT"])
    assert not np.any(tile.masks[tile.artifacts] & flagged)


def test_bad_specs_are_rejected_with_the_reason():
    with pytest.raises(ValueError, match="below 1"):
        SimulationSpec(airmasses=(0.9,))
    with pytest.raises(ValueError, match="odd"):
        SimulationSpec(psf_stamp_size=24)
    with pytest.raises(ValueError, match="transit airmass"):
        simulate_tile(SimulationSpec(shape=(32, 32), airmasses=(1.0,), dec_deg=10.0))


def test_demo_spec_has_holdouts_and_artifacts():
    spec = default_demo_spec(shape=(64, 64))
    assert len(spec.airmasses) == 12 and len(spec.holdout_airmasses) == 2
    assert min(spec.airmasses) <= 1.05 and max(spec.airmasses) >= 2.0


def test_written_simulation_reads_back_to_the_same_arrays_and_metadata(tile, tmp_path):
    import attrs
    from astropy.io import fits

    from dcr_dask.io.warps import open_warps, visit_infos

    paths = write_simulation(tile, tmp_path)
    fitted = ~tile.holdout
    warps = open_warps(paths["warps"], chunks=(40, 40))
    np.testing.assert_array_equal(warps["image"].values, tile.images[fitted])
    np.testing.assert_array_equal(warps["variance"].values, tile.variances[fitted])
    np.testing.assert_array_equal(warps["mask"].values, tile.masks[fitted])
    for read, made in zip(visit_infos(warps), np.array(tile.visits)[fitted], strict=True):
        assert attrs.evolve(read, filename=None) == attrs.evolve(made, filename=None)
    with fits.open(paths["holdout"][0]) as hdus:
        np.testing.assert_array_equal(hdus["IMAGE"].data, tile.images[tile.holdout][0])
        np.testing.assert_allclose(hdus["PSF"].data.sum(), 1.0, rtol=1e-6)
    saved = np.load(paths["truth"])
    np.testing.assert_array_equal(saved["true_subbands"], tile.true_subbands)
