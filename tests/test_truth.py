"""The accuracy figures' centroid: a template is charged for where stars are, not their width."""

from __future__ import annotations

import galsim
import numpy as np
import pytest

from dcr_dask import truth


def _star(fwhm_arcsec: float, x: float, y: float, flux: float = 1e5, size: int = 48) -> np.ndarray:
    image = galsim.ImageD(size, size, scale=0.2)
    galsim.Kolmogorov(fwhm=fwhm_arcsec).withFlux(flux).drawImage(
        image=image, center=galsim.PositionD(x + 1, y + 1)
    )
    return image.array


@pytest.mark.parametrize("fwhm", [0.6, 0.8, 1.0])
def test_weighted_centroid_finds_the_centre_whatever_the_seeing(fwhm):
    y, x = truth.weighted_centroid(_star(fwhm, 23.37, 24.81), 24.0, 23.0)
    assert abs(x - 23.37) < 2e-3 and abs(y - 24.81) < 2e-3


def test_offsets_ignore_the_width_and_measure_the_shift():
    sky = _star(0.8, 23.37, 24.81)
    narrower = _star(0.6, 23.37, 24.81)
    shifted = _star(0.6, 23.37 + 0.25, 24.81)
    positions = np.array([[25.0, 23.0]])
    assert truth.centroid_offsets(narrower, sky, positions)[0] < 2e-3
    assert truth.centroid_offsets(shifted, sky, positions)[0] == pytest.approx(0.25, abs=3e-3)
    # A square window cut at the nearest pixel charges the narrower PSF for its width.
    ty, tx = truth.centroid(sky, 25.0, 23.0)
    cy, cx = truth.centroid(narrower, round(ty), round(tx), iterations=0)
    wy, wx = truth.centroid(sky, round(ty), round(tx), iterations=0)
    assert np.hypot(cy - wy, cx - wx) > 0.01


def test_a_neighbour_outside_the_weight_does_not_move_the_centre():
    sky = _star(0.8, 23.37, 24.81) + _star(0.8, 40.0, 24.0, flux=5e3, size=48)
    y, x = truth.weighted_centroid(sky, 24.0, 23.0)
    assert abs(x - 23.37) < 5e-3 and abs(y - 24.81) < 5e-3


def test_unmeasurable_centres_are_nan_and_left_out_of_the_rms():
    sky = _star(0.8, 23.37, 24.81)
    offsets = truth.centroid_offsets(sky, sky, np.array([[24.8, 23.4], [2.0, 2.0]]))
    assert offsets[0] < 1e-4 and np.isnan(offsets[1])
    assert np.isnan(truth.weighted_centroid(np.zeros((48, 48)), 24.0, 24.0)[0])


def test_a_centre_captured_by_another_peak_counts_as_unmeasured():
    sky = _star(0.8, 23.37, 24.81)
    elsewhere = _star(0.8, 23.37 + 12.0, 24.81)  # the same star 12 px away: a lost centre
    positions = np.array([[24.8, 23.4]])
    assert np.isnan(truth.centroid_offsets(elsewhere, sky, positions)[0])
    assert truth.centroid_offsets(elsewhere, sky, positions, max_offset_px=20.0)[0] > 9.0
    near = _star(0.8, 23.37 + 2.0, 24.81)  # a DCR-sized offset is measured
    assert truth.centroid_offsets(near, sky, positions)[0] == pytest.approx(2.0, abs=0.05)
