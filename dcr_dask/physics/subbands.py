"""The filter of a run, its sub-bands, and the DCR shift of each sub-band in each visit.

:class:`DcrShifts` evaluates :func:`dcr_dask.physics.geometry.subband_shifts_px`
for every visit of a run (one object per run: the band read once, each visit's
geometry once per position) with plain :class:`ShiftOptions`. Reading them
from the configuration (the band from its numbers, its transmission curve, its
standard band or the warps' band) is :mod:`dcr_dask.settings`'s job: the
physics knows nothing of the config. The names that did so here
(``band_from_config``, ``run_shifts``, ...) still import from this module,
with a ``DeprecationWarning``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal, TypedDict

import attrs
import numpy as np
from astropy.wcs import WCS

from dcr_dask._moved import moved_names
from dcr_dask.physics import geometry
from dcr_dask.physics.transmission import (
    Transmission,
)
from dcr_dask.visit import VisitInfo

__all__ = [
    "Band",
    "CoaddTransmission",
    "DcrShifts",
    "RunShifts",
    "ShiftOptions",
    "SubbandShiftMode",
]

log = logging.getLogger(__name__)

#: How a sub-band's shift is taken (``subbandShiftMode``).
SubbandShiftMode = Literal["edges", "throughput"]


class _BandShiftArgs(TypedDict):
    """The keyword arguments of :func:`geometry.subband_shifts_px` common to a run's visits."""

    effective_wavelength_nm: float
    bandwidth_nm: float
    n_subfilters: int
    local: bool
    mode: SubbandShiftMode
    transmission: Transmission | None


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


@attrs.frozen
class CoaddTransmission:
    """The filter curve attached to a coadd (``doAttachTransmissionCurve``).

    Attributes
    ----------
    transmission : Transmission
        Vacuum wavelength (nm) and throughput.
    band : str
        The band it describes: the config's ``band`` (perhaps taken from the
        warps), else the warps' band, else the name of the ``transmissionCurve`` file.
    source : str
        Where the curve came from: ``transmissionCurve <path>``, or
        ``standard band <name> (speclite <filter>): <path>``.
    """

    transmission: Transmission
    band: str
    source: str


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


@attrs.frozen
class ShiftOptions:
    """How a run evaluates its sub-band shifts: plain values of the config.

    Parameters
    ----------
    split : bool
        ``splitSubfilters``: two shifts per sub-band in the forward model.
    split_threshold_px : float
        ``splitThreshold``: split shifts closer than this are merged, pixels.
    mode : {"edges", "throughput"}
        ``subbandShiftMode``.
    local : bool
        ``useLocalGeometry``: geometry at each subregion's centre, else the
        boresight's, evaluated once at the tile centre for the whole tile.
    """

    split: bool
    split_threshold_px: float
    mode: SubbandShiftMode
    local: bool


def _visit_tuple(visits: Sequence[VisitInfo]) -> tuple[VisitInfo, ...]:
    """The visits as a tuple (the converter of :attr:`DcrShifts.visits`)."""
    return tuple(visits)


@attrs.frozen(eq=False)
class DcrShifts:
    """The DCR shifts of a run: one object per run, the band read once.

    :meth:`at` gives the shifts a subregion centred on ``(x, y)`` uses: with
    ``useLocalGeometry`` those evaluated there, else (the reference) those of
    the tile centre, for every subregion. Each position is evaluated once
    (cached), with each visit's geometry computed once per position.

    Parameters
    ----------
    visits : sequence of VisitInfo
        The visits of the run, in order.
    wcs : astropy.wcs.WCS
        The tile WCS.
    band : Band
        The run's band (:func:`dcr_dask.settings.band_from_config`).
    options : ShiftOptions
        How the shifts are evaluated.
    centre : tuple of float
        ``(x, y)``, 0-based: the tile centre, where shifts are evaluated
        without ``useLocalGeometry``.
    """

    visits: tuple[VisitInfo, ...] = attrs.field(converter=_visit_tuple)
    wcs: WCS
    band: Band
    options: ShiftOptions
    centre: tuple[float, float]
    _cache: dict[tuple[float, float], RunShifts] = attrs.field(factory=dict, init=False, repr=False)

    def with_visits(self, visits: Sequence[VisitInfo]) -> DcrShifts:
        """The same band and options for other visits (e.g. a template's)."""
        return DcrShifts(visits, self.wcs, self.band, self.options, self.centre)

    def at(self, x: float, y: float) -> RunShifts:
        """The shifts of a subregion centred on tile pixel ``(x, y)`` (see the class)."""
        return self.evaluate(x, y) if self.options.local else self.at_centre()

    def at_centre(self) -> RunShifts:
        """The shifts at the tile centre."""
        return self.evaluate(*self.centre)

    def evaluate(self, x: float, y: float) -> RunShifts:
        """The shifts evaluated at tile pixel ``(x, y)``, whatever ``useLocalGeometry``."""
        key = (float(x), float(y))
        if key not in self._cache:
            self._cache[key] = self._evaluate(*key)
        return self._cache[key]

    def _evaluate(self, x: float, y: float) -> RunShifts:
        """Each visit's geometry once, then its split and unsplit shifts."""
        options, band = self.options, self.band
        common: _BandShiftArgs = {
            "effective_wavelength_nm": band.effective_wavelength_nm,
            "bandwidth_nm": band.bandwidth_nm,
            "n_subfilters": band.n_subfilters,
            "local": options.local,
            "mode": options.mode,
            "transmission": band.transmission,
        }
        split, unsplit, geometries = [], [], []
        for visit in self.visits:
            at = geometry.visit_geometry(visit, self.wcs, x, y, local=options.local)
            geometries.append(at)
            split.append(
                geometry.subband_shifts_px(
                    visit,
                    self.wcs,
                    x,
                    y,
                    split=options.split,
                    split_threshold_px=options.split_threshold_px,
                    at=at,
                    **common,
                )
            )
            unsplit.append(
                geometry.subband_shifts_px(visit, self.wcs, x, y, split=False, at=at, **common)[
                    :, 0
                ]
            )
        shifts = np.stack(split)
        return RunShifts(
            visit=np.array([v.visit for v in self.visits], dtype=np.int64),
            geometry=geometries,
            shifts_px=shifts,
            unsplit_px=np.stack(unsplit),
            buffer_px=geometry.buffer_size_px(shifts),
        )


#: Names that read the config, moved to :mod:`dcr_dask.settings`.
_MOVED_TO_SETTINGS = (
    "band_from_config",
    "coadd_transmission",
    "config_for_warps",
    "needs_band_name",
    "run_shifts",
)


# by name, so that this layer does not import the one above it
__getattr__ = moved_names(__name__, _MOVED_TO_SETTINGS, "dcr_dask.settings")
