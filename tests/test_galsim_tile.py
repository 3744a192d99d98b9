"""The GalSim renderer (tests/galsim_tile.py): file layout, DCR physics, PSF, determinism."""

from __future__ import annotations

import math

import astropy.units as u
import galsim
import galsim_tile as gt
import numpy as np
import pytest
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

SMALL = {
    "shape": (96, 96),
    "airmasses": (1.01, 1.95),
    "holdout_airmasses": (1.9,),
    "streak_visit": 1,
    "cosmic_rays_per_visit": 3,
}
#: Bright stars only, so every star's centroid is precise in the noise-free images.
STARS = {
    **SMALL,
    "shape": (192, 192),
    "star_density_arcmin2": 12.0,
    "galaxy_density_arcmin2": 0.0,
    "star_mag_range": (17.0, 18.5),
    "seed": 1,
}


@pytest.fixture(scope="module")
def small_tile():
    return gt.render_tile(gt.band_spec("g", **SMALL))


@pytest.fixture(scope="module")
def small_files(small_tile, tmp_path_factory):
    return gt.write_tile(small_tile, tmp_path_factory.mktemp("galsim-tile"))


@pytest.fixture(scope="module")
def star_tile():
    return gt.render_tile(gt.band_spec("g", **STARS))


def test_files_have_the_afw_layout_and_visit_keywords(small_tile, small_files):
    assert len(small_files["warps"]) == 2 and len(small_files["holdout"]) == 1
    for path, visit in zip(gt.tile_paths(small_files), small_tile.visits, strict=True):
        with fits.open(path) as hdus:
            assert [h.name for h in hdus] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE", "PSF"]
            assert hdus[0].data is None
            assert hdus["IMAGE"].data.dtype == np.dtype(">f4")
            assert hdus["MASK"].data.dtype == np.dtype(">i4")
            assert hdus["VARIANCE"].data.dtype == np.dtype(">f4")
            head = hdus[0].header
            assert head["EXPID"] == visit.visit and head["FILTER"] == "g"
            assert head["TIMESYS"] == "TAI" and head["MAGZERO"] == pytest.approx(32.2)
            assert head["BORE-RA"] == 150.0 and head["BORE-DEC"] == -25.0
            assert head["OBS-LONG"] == gt.RUBIN_SITE[0] and head["OBS-ELEV"] == 2663.0
            altitude = math.radians(head["BORE-ALT"])
            assert head["BORE-AIRMASS"] == pytest.approx(1.0 / math.sin(altitude), rel=1e-6)
            # ERA from DATE-AVG; hour angle ERA + lon - RA on the side the visit was put.
            era = Time(head["DATE-AVG"], scale="tai").earth_rotation_angle(0.0).deg
            assert era == pytest.approx(head["AVG-ERA"], abs=1e-6)
            hour_angle = (era + head["OBS-LONG"] - head["BORE-RA"] + 180.0) % 360.0 - 180.0
            assert hour_angle == pytest.approx(visit.hour_angle_deg, abs=1e-6)
            assert (hour_angle < 0) == visit.east
            # The weather GalSim was given, in the header's units.
            assert head["AIRPRESS"] == pytest.approx(visit.pressure_pa)
            e_kpa = gt.relative_humidity_to_h2o_kpa(head["HUMIDITY"], head["AIRTEMP"])
            assert e_kpa == pytest.approx(visit.h2o_pressure_kpa)
            mask_header = hdus["MASK"].header
            planes = {k[3:] for k in mask_header if k.startswith("MP_")}
            assert {"BAD", "SAT", "INTRP", "CR", "EDGE", "NO_DATA", "SUSPECT", "CLIPPED"} <= planes
            assert "DETECTED" not in planes
            assert not hdus["MASK"].data.any()
            for name in ("IMAGE", "MASK", "VARIANCE"):
                wcs = WCS(hdus[name].header)
                assert wcs.wcs.ctype[0] == "RA---TAN"
                cd = wcs.pixel_scale_matrix * 3600.0
                np.testing.assert_allclose(cd, [[-0.2, 0.0], [0.0, 0.2]], atol=1e-12)


def test_buck_humidity_conversion_at_known_point():
    # Saturation vapour pressure of water at 20 °C is 2.339 kPa.
    assert gt.relative_humidity_to_h2o_kpa(100.0, 20.0) == pytest.approx(2.339, abs=0.002)


def test_band_presets_shrink_dcr_toward_the_red():
    """g, r, i and z presets exist; the redder ones share r's visits; an unknown band is named."""
    effective = {}
    for band in ("g", "r", "i", "z"):
        spec = gt.band_spec(band)
        assert spec.zero_point > 30 and spec.sky_per_pixel > 0
        effective[band] = gt.band_config(spec)["effectiveWavelength"]
        if band != "g":
            assert spec.airmasses == gt.band_spec("r").airmasses
    assert effective["g"] < effective["r"] < effective["i"] < effective["z"]
    with pytest.raises(ValueError, match="band 'y' has no preset"):
        gt.band_spec("y")


def test_dcr_reader_opens_the_tile(small_tile, small_files):
    from dcr_dask.io.warps import open_warps

    warps = open_warps(gt.tile_paths(small_files))
    assert warps.sizes == {"visit": 3, "y": 96, "x": 96, "psf_y": 41, "psf_x": 41}
    np.testing.assert_allclose(warps["airmass"], [v.airmass for v in small_tile.visits])
    np.testing.assert_allclose(warps["humidity_pct"], [v.humidity_pct for v in small_tile.visits])
    np.testing.assert_allclose(warps["image"].values, small_tile.images)
    assert (
        "DETECTED" not in warps.attrs["mask_planes"]
        or not (warps["mask"].values & (1 << warps.attrs["mask_planes"]["DETECTED"])).any()
    )


def test_truth_is_kept_and_artifacts_are_plain_flux(small_tile, small_files):
    truth, catalog = gt.load_truth(small_files["warps"][0].parent.parent)
    assert truth["true_images"].shape == (3, 96, 96)
    assert truth["streak"][1].sum() > 50 and not truth["streak"][[0, 2]].any()
    assert all(truth["cosmic_rays"][v].sum() >= 3 for v in range(3))
    assert len(catalog["sources"]) == len(small_tile.sources)
    for source in catalog["sources"]:
        mag = catalog["magzero"] - 2.5 * math.log10(source["flux"])
        assert mag == pytest.approx(source["mag"], abs=1e-9)
    # Noise-free: the warp is the truth plus the artifacts, and nothing is masked.
    clean = gt.render_tile(gt.band_spec("g", **SMALL, noise_free=True))
    np.testing.assert_array_equal(clean.true_images, small_tile.true_images)
    artifact = clean.images - clean.true_images
    assert np.all(artifact[~(clean.streak | clean.cosmic_rays)] < clean.spec.sky_sigma)
    assert np.all(artifact[clean.cosmic_rays] > clean.spec.sky_sigma)


def test_same_seed_same_tile_and_another_seed_differs(small_tile):
    again = gt.render_tile(gt.band_spec("g", **SMALL))
    np.testing.assert_array_equal(again.images, small_tile.images)
    assert again.sources == small_tile.sources
    other = gt.render_tile(gt.band_spec("g", **{**SMALL, "seed": 2}))
    assert not np.array_equal(other.images, small_tile.images)


def test_detected_plane_only_on_request(tmp_path):
    tile = gt.render_tile(gt.band_spec("g", **SMALL, detected_plane=True))
    paths = gt.write_tile(tile, tmp_path)
    with fits.open(paths["warps"][0]) as hdus:
        bit = hdus["MASK"].header["MP_DETECTED"]
        detected = (hdus["MASK"].data & (1 << bit)) != 0
    bright = tile.true_images[0] > 20.0 * tile.spec.sky_sigma
    assert bright.any() and detected[bright].all()
    assert 0.0 < detected.mean() < 0.6


def _centroid(image, x, y, radius=12, iterations=4):
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    for _ in range(iterations):
        x0, y0 = round(x), round(y)
        stamp = image[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
        x, y = x0 + (stamp * xx).sum() / stamp.sum(), y0 + (stamp * yy).sum() / stamp.sum()
    return x, y


def _isolated_stars(tile, radius=12, separation=30.0):
    ny, nx = tile.spec.shape
    xy = np.array([(s.x, s.y) for s in tile.sources])
    chosen = []
    for k, s in enumerate(tile.sources):
        others = np.delete(xy, k, axis=0)
        inside = radius + 1 <= s.x < nx - radius - 1 and radius + 1 <= s.y < ny - radius - 1
        if inside and np.hypot(*(others - (s.x, s.y)).T).min() > separation:
            chosen.append(s)
    return chosen


def _zenith_unit_vector(tile, visit):
    """Direction of the zenith on the pixel grid, from astropy and the tile WCS alone."""
    lon, lat, elev = gt.RUBIN_SITE
    site = EarthLocation.from_geodetic(lon * u.deg, lat * u.deg, elev * u.m)
    frame = AltAz(obstime=Time(visit.time_tai, scale="tai"), location=site)
    ny, nx = tile.spec.shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    centre = tile.wcs.pixel_to_world(cx, cy).transform_to(frame)
    step = SkyCoord(alt=centre.alt + 2 * u.arcsec, az=centre.az, frame=frame)
    px, py = tile.wcs.world_to_pixel(step.transform_to("icrs"))
    vector = np.array([px - cx, py - cy])
    return vector / np.hypot(*vector)


def _predicted_refraction_arcsec(tile, visit, temperature_k):
    """Photon-weighted mean refraction of a blackbody minus the reference's (GalSim's formula)."""
    bp = gt.bandpass(tile.spec)
    wave = np.linspace(bp.blue_limit, bp.red_limit, 3000)
    photons = wave**-4 / np.expm1(1.438776877e7 / (wave * temperature_k)) * bp(wave)
    weather = {
        "temperature": visit.temperature_c + 273.15,
        "pressure": visit.pressure_pa / 1000.0,
        "H2O_pressure": visit.h2o_pressure_kpa,
    }
    zenith = (90.0 - visit.altitude_deg) * galsim.degrees
    refraction = galsim.dcr.get_refraction(wave, zenith, **weather)
    reference = galsim.dcr.get_refraction(tile.reference_nm, zenith, **weather)
    mean = np.sum(photons * refraction) / np.sum(photons)
    return math.degrees(mean - reference) * 3600.0


def test_stars_are_displaced_toward_the_zenith_by_galsim_refraction(star_tile):
    visit_index = 1
    visit = star_tile.visits[visit_index]
    assert visit.airmass > 1.9
    zenith = _zenith_unit_vector(star_tile, visit)
    stars = _isolated_stars(star_tile)
    assert len(stars) >= 3
    image = star_tile.true_images[visit_index].astype(float)
    measured, predicted = [], []
    for star in stars:
        x, y = _centroid(image, star.x, star.y)
        measured.append((x - star.x, y - star.y))
        shift = _predicted_refraction_arcsec(star_tile, visit, star.temperature_k)
        predicted.append(shift / star_tile.spec.pixel_scale_arcsec * zenith)
    measured, predicted = np.array(measured), np.array(predicted)
    np.testing.assert_allclose(measured, predicted, atol=0.015 + 0.03 * np.abs(predicted).max())
    hot = int(np.argmax([s.temperature_k for s in stars]))
    cool = int(np.argmin([s.temperature_k for s in stars]))
    difference = measured[hot] - measured[cool]
    expected = predicted[hot] - predicted[cool]
    assert np.hypot(*expected) > 0.1  # pixels: a real colour lever
    assert np.hypot(*difference) == pytest.approx(np.hypot(*expected), rel=0.03)
    angle = math.degrees(math.acos(np.dot(difference, zenith) / np.hypot(*difference)))
    assert angle < 3.0  # the hot star sits toward the zenith


def test_psf_hdu_is_normalised_centred_and_seeing_is_wider_in_the_blue(star_tile):
    for psf in star_tile.psfs:
        assert psf.shape == (41, 41)
        assert psf.sum() == pytest.approx(1.0, abs=1e-5)
        yy, xx = np.mgrid[-20:21, -20:21]
        assert abs((psf * xx).sum()) < 0.02 and abs((psf * yy).sum()) < 0.02
        peak = np.unravel_index(np.argmax(psf), psf.shape)
        assert max(abs(peak[0] - 20), abs(peak[1] - 20)) <= 1
    # At airmass 1.01 DCR is negligible: a hot star's PSF is wider than a cool one's
    # (FWHM ∝ λ^-0.2), as the renderer draws them.
    atm = gt.atmosphere(star_tile.visits[0], star_tile.reference_nm)
    bins = gt._Bins(gt.bandpass(star_tile.spec), star_tile.spec.n_wavelength_bins)
    scale = star_tile.spec.pixel_scale_arcsec
    fwhm = {}
    for temperature in (3500.0, 12000.0):
        psf = gt._effective_psf(atm, *bins.split(gt._blackbody(temperature)))
        fwhm[temperature] = psf.drawImage(nx=41, ny=41, scale=scale).calculateFWHM()
    # Photon-weighted wavelengths ~470 vs ~505 nm: (470/505)^-0.2 = 1.014, less with the pixel.
    assert 1.005 < fwhm[12000.0] / fwhm[3500.0] < 1.015


def test_fast_rendering_matches_galsim_chromatic_drawing(star_tile):
    visit = star_tile.visits[1]
    atm = gt.atmosphere(visit, star_tile.reference_nm)
    bp = gt.bandpass(star_tile.spec)
    sed = gt._blackbody(12000.0)
    scale = star_tile.spec.pixel_scale_arcsec
    exact = galsim.Convolve(galsim.DeltaFunction() * sed, atm).drawImage(
        bp, nx=41, ny=41, scale=scale
    )
    bins = gt._Bins(bp, star_tile.spec.n_wavelength_bins)
    fast = gt._effective_psf(atm, *bins.split(sed)).drawImage(nx=41, ny=41, scale=scale)
    exact_array = exact.array / exact.array.sum()
    fast_array = fast.array / fast.array.sum()
    assert np.abs(fast_array - exact_array).max() < 0.005 * exact_array.max()
