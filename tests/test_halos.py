"""Every halo formula of the graph layer lives in graph.halos; the old import paths still work."""

from __future__ import annotations

import math

import pytest

from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.graph import assemble, halos
from dcr_dask.kernels import detection
from dcr_dask.kernels.shift import INTERPOLATION_REACH_PX
from dcr_dask.settings import fit_settings


def test_old_homes_are_the_same_functions() -> None:
    assert assemble.halo_px is halos.halo_px
    assert halos.smoothing_halo is detection.smoothing_halo
    assert halos.grow_radius is detection.grow_radius


@pytest.mark.parametrize("method", sorted(INTERPOLATION_REACH_PX))
@pytest.mark.parametrize("shift", [0.0, 0.4, 2.3, 7.0])
def test_fit_halo_is_twice_the_forward_model_halo_plus_regularization(
    method: str, shift: float
) -> None:
    config = DcrAssembleCoaddConfig(effectiveWavelength=478.0, bandwidth=147.0, shiftMethod=method)
    settings = fit_settings(config)
    forward = halos.forward_model_halo(shift, method)
    assert forward == math.ceil(shift) + INTERPOLATION_REACH_PX[method]
    regularize = settings.regularize_iterations > 0 or settings.regularize_frequency > 0
    extra = 4 * settings.regularization_width + 2 if regularize else 0
    assert halos.halo_px(shift, settings) == 2 * forward + extra


def test_detection_halos() -> None:
    settings = detection.DetectionSettings(threshold=5.0, min_pixels=4, grow_px=3)
    assert halos.detection_halo(settings) == settings.halo == 3 + 3
    assert halos.growth_halo(settings) == 3
    assert halos.psf_matching_halo(21) == 10
