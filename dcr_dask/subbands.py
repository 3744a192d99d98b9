"""The filter of a run, its sub-bands, and the DCR shift of each sub-band in each visit.

This module joins the configuration to the physics: it reads the band from
the config (or from its transmission curve) and evaluates
:func:`dcr_dask.geometry.subband_shifts_px` for every visit of a run with the
config's choices (``dcrNumSubfilters``, ``splitSubfilters``,
``splitThreshold``, ``subbandShiftMode``, ``useLocalGeometry``).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
from astropy.wcs import WCS

from dcr_dask import geometry
from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.errors import ConfigError
from dcr_dask.transmission import (
    Transmission,
    bandwidth_nm,
    effective_wavelength_nm,
    read_transmission,
)
from dcr_dask.visit import VisitInfo

__all__ = ["Band", "RunShifts", "band_from_config", "run_shifts"]


@attrs.frozen
class Band:
    """The filter of a run.

    Parameters
    ----------
    effective_wavelength_nm : float
        Effective wavelength, nm: the reference of the differential refraction.
    bandwidth_nm : float
        Width split evenly into the sub-bands, nm.
    n_subfilters : int
        Number of sub-bands.
    transmission : Transmission or None
        Throughput curve, if the config names one.
    """

    effective_wavelength_nm: float
    bandwidth_nm: float
    n_subfilters: int
    transmission: Transmission | None = None

    @property
    def edges_nm(self) -> np.ndarray:
        """``(S, 2)`` sub-band edges, nm, blue first."""
        return geometry.subfilter_edges_nm(
            self.effective_wavelength_nm, self.bandwidth_nm, self.n_subfilters
        )


def band_from_config(config: DcrAssembleCoaddConfig) -> Band:
    """Read the band of a run from its configuration.

    ``effectiveWavelength`` and ``bandwidth`` come from the config; where
    they are None, from ``transmissionCurve``.

    Parameters
    ----------
    config : DcrAssembleCoaddConfig
        The run's configuration.

    Returns
    -------
    Band

    Raises
    ------
    ConfigError
        If neither the config nor a transmission curve gives the band.
    """
    transmission = read_transmission(config.transmissionCurve) if config.transmissionCurve else None
    wavelength = config.effectiveWavelength
    width = config.bandwidth
    if wavelength is None:
        if transmission is None:
            raise ConfigError(
                "effectiveWavelength", None, "set it (nm) or give a transmissionCurve"
            )
        wavelength = effective_wavelength_nm(transmission)
    if width is None:
        if transmission is None:
            raise ConfigError("bandwidth", None, "set it (nm) or give a transmissionCurve")
        width = bandwidth_nm(transmission)
    return Band(float(wavelength), float(width), int(config.dcrNumSubfilters), transmission)


@attrs.frozen
class RunShifts:
    """DCR shifts of every sub-band in every visit of a run, at one tile position.

    Attributes
    ----------
    visit : numpy.ndarray of int
        Visit ids, in the order of the other arrays.
    geometry : list of VisitGeometry
        Hour angle, parallactic angle, airmass and zenith direction per visit.
    shifts_px : numpy.ndarray
        ``(visit, subfilter, K, 2)`` shifts ``(dy, dx)`` for the forward model,
        ``K = 2`` with ``splitSubfilters`` (entries equal where the split is
        below ``splitThreshold``), else 1.
    unsplit_px : numpy.ndarray
        ``(visit, subfilter, 2)`` one shift per sub-band, for back-projection
        and sub-band weights.
    buffer_px : int
        ``bufferSize``: the halo every subregion needs, pixels.
    """

    visit: np.ndarray
    geometry: list[geometry.VisitGeometry]
    shifts_px: np.ndarray
    unsplit_px: np.ndarray
    buffer_px: int


def run_shifts(
    visits: Sequence[VisitInfo],
    wcs: WCS,
    config: DcrAssembleCoaddConfig,
    *,
    x: float,
    y: float,
    mode: str | None = None,
) -> RunShifts:
    """Evaluate the DCR shifts of all visits at tile pixel ``(x, y)``.

    Parameters
    ----------
    visits : sequence of VisitInfo
        The visits of the run.
    wcs : astropy.wcs.WCS
        The tile WCS.
    config : DcrAssembleCoaddConfig
        Supplies the band, ``dcrNumSubfilters``, ``splitSubfilters``,
        ``splitThreshold``, ``subbandShiftMode`` and ``useLocalGeometry``.
    x, y : float
        0-based tile pixel: the tile centre, or a subregion's centre.
    mode : {"edges", "throughput"}, optional
        Overrides ``subbandShiftMode``.

    Returns
    -------
    RunShifts
    """
    band = band_from_config(config)
    mode = mode or config.subbandShiftMode
    common = {
        "effective_wavelength_nm": band.effective_wavelength_nm,
        "bandwidth_nm": band.bandwidth_nm,
        "n_subfilters": band.n_subfilters,
        "local": config.useLocalGeometry,
        "mode": mode,
        "transmission": band.transmission,
    }
    split, unsplit, geometries = [], [], []
    for visit in visits:
        geometries.append(geometry.visit_geometry(visit, wcs, x, y, local=config.useLocalGeometry))
        split.append(
            geometry.subband_shifts_px(
                visit,
                wcs,
                x,
                y,
                split=config.splitSubfilters,
                split_threshold_px=config.splitThreshold,
                **common,
            )
        )
        unsplit.append(geometry.subband_shifts_px(visit, wcs, x, y, split=False, **common)[:, 0])
    shifts = np.stack(split)
    return RunShifts(
        visit=np.array([v.visit for v in visits], dtype=np.int64),
        geometry=geometries,
        shifts_px=shifts,
        unsplit_px=np.stack(unsplit),
        buffer_px=geometry.buffer_size_px(shifts),
    )
