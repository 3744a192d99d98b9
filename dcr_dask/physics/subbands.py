"""The filter of a run, its sub-bands, and the DCR shift of each sub-band in each visit.

This module joins the configuration to the physics: it reads the band from
the config (its numbers, its transmission curve, its standard band, or the
warps' band) and evaluates
:func:`dcr_dask.physics.geometry.subband_shifts_px` for every visit of a run with the
config's choices (``dcrNumSubfilters``, ``splitSubfilters``,
``splitThreshold``, ``subbandShiftMode``, ``useLocalGeometry``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypedDict, cast

import attrs
import numpy as np
from astropy.wcs import WCS

from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.errors import ConfigError
from dcr_dask.physics import geometry
from dcr_dask.physics.bands import known_bands_text, standard_band
from dcr_dask.physics.transmission import (
    Transmission,
    bandwidth_nm,
    effective_wavelength_nm,
    read_transmission,
)
from dcr_dask.visit import VisitInfo

__all__ = [
    "Band",
    "CoaddTransmission",
    "DcrShifts",
    "RunShifts",
    "ShiftOptions",
    "band_from_config",
    "coadd_transmission",
    "config_for_warps",
    "needs_band_name",
    "run_shifts",
]

log = logging.getLogger(__name__)

_ShiftMode = Literal["edges", "throughput"]


class _BandShiftArgs(TypedDict):
    """The keyword arguments of :func:`geometry.subband_shifts_px` common to a run's visits."""

    effective_wavelength_nm: float
    bandwidth_nm: float
    n_subfilters: int
    local: bool
    mode: _ShiftMode
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


def band_from_config(config: DcrAssembleCoaddConfig) -> Band:
    """Read the band of a run from its configuration.

    Each of ``effectiveWavelength`` and ``bandwidth`` is the config's own value
    when set; else it is computed from ``transmissionCurve``; else it is the
    standard band's (``band``, :mod:`dcr_dask.physics.bands`). The throughput curve
    (used by ``subbandShiftMode = "throughput"``) is ``transmissionCurve``,
    else the standard band's curve. A config that names neither a band nor a
    curve gets the warps' band from :func:`config_for_warps` first.

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
        If nothing gives the effective wavelength, the bandwidth, or (for
        ``subbandShiftMode = "throughput"``) a throughput curve.
    """
    transmission = read_transmission(config.transmissionCurve) if config.transmissionCurve else None
    standard = None
    if config.band is not None:
        try:
            standard = standard_band(config.band)
        except ValueError as error:
            raise ConfigError("band", config.band, str(error)) from None
    wavelength = config.effectiveWavelength
    width = config.bandwidth
    if wavelength is None:
        if transmission is not None:
            wavelength = effective_wavelength_nm(transmission)
        elif standard is not None:
            wavelength = standard.effective_wavelength_nm
        else:
            raise ConfigError("effectiveWavelength", None, _NO_BAND)
    if width is None:
        if transmission is not None:
            width = bandwidth_nm(transmission)
        elif standard is not None:
            width = standard.bandwidth_nm
        else:
            raise ConfigError("bandwidth", None, _NO_BAND)
    if config.subbandShiftMode == "throughput" and transmission is None:
        if standard is None:
            raise ConfigError(
                "subbandShiftMode",
                config.subbandShiftMode,
                "needs a throughput curve to weight the refraction with: set band (a standard "
                "band's curve) or transmissionCurve",
            )
        transmission = standard.transmission()
    return Band(float(wavelength), float(width), int(config.dcrNumSubfilters), transmission)


_NO_BAND = (
    "set it (nm), or name a standard band (band, --band), or give a transmissionCurve; "
    "the warps' band is used only by runs on warps"
)


def needs_band_name(config: DcrAssembleCoaddConfig) -> bool:
    """Whether a run with this config takes its band from the warps.

    True when the config names neither ``band`` nor ``transmissionCurve`` and
    leaves something unset that only they can give: ``effectiveWavelength``,
    ``bandwidth``, or the throughput curve of ``subbandShiftMode = "throughput"``
    or of ``doAttachTransmissionCurve``.

    Parameters
    ----------
    config : DcrAssembleCoaddConfig

    Returns
    -------
    bool
    """
    if config.band is not None or config.transmissionCurve is not None:
        return False
    return (
        config.effectiveWavelength is None
        or config.bandwidth is None
        or config.subbandShiftMode == "throughput"
        or config.doAttachTransmissionCurve
    )


def config_for_warps(
    config: DcrAssembleCoaddConfig, visits: Sequence[VisitInfo]
) -> DcrAssembleCoaddConfig:
    """The configuration of a run on these warps: with the warps' band when it needs one.

    When :func:`needs_band_name`, the warps' band (:attr:`VisitInfo.band`, the
    same in every warp of a run) must be a standard band, and a copy of the
    config with ``band`` set to it is returned, so that the output store
    records where the band came from and a DCR-matched template made from the
    store uses the same band. Otherwise ``config`` itself is returned.

    Parameters
    ----------
    config : DcrAssembleCoaddConfig
        The run's configuration (not modified).
    visits : sequence of VisitInfo
        The warps' metadata.

    Returns
    -------
    DcrAssembleCoaddConfig

    Raises
    ------
    ConfigError
        If the config needs the warps' band and it is not a standard band; the
        message names the band, the file and keyword it was read from, and the
        known bands.
    """
    if not needs_band_name(config) or not visits:
        return config
    first = visits[0]
    try:
        standard = standard_band(first.band)
    except ValueError:
        raise ConfigError(
            "band",
            None,
            f"the config gives no band, and the warps' band {first.band!r} (from "
            f"{first.band_source or 'the header'} of {first.filename or 'the first warp'}) "
            "is not a standard band. Set band (--band), or effectiveWavelength and "
            f"bandwidth, or transmissionCurve. Known bands (aliases): {known_bands_text()}",
        ) from None
    resolved = copy.deepcopy(config)
    resolved.band = first.band
    log.info(
        "band from the warps: %r (%s), %s: effective wavelength %.1f nm, bandwidth %.1f nm",
        first.band,
        first.band_source or "header",
        standard.name,
        standard.effective_wavelength_nm,
        standard.bandwidth_nm,
    )
    return resolved


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


def coadd_transmission(
    config: DcrAssembleCoaddConfig, warps_band: str | None = None
) -> CoaddTransmission:
    """The throughput curve of a run's filter, to attach to its coadd.

    It is ``transmissionCurve`` when the config gives one, else the curve of
    the standard band ``band`` (:mod:`dcr_dask.physics.bands`). A run whose config names
    neither takes ``band`` from the warps first (:func:`config_for_warps`).

    Parameters
    ----------
    config : DcrAssembleCoaddConfig
        The run's configuration, after :func:`config_for_warps`.
    warps_band : str, optional
        The warps' band, recorded with a ``transmissionCurve`` when the config
        names no ``band``.

    Returns
    -------
    CoaddTransmission

    Raises
    ------
    ConfigError
        If neither ``transmissionCurve`` nor ``band`` is set (named
        ``doAttachTransmissionCurve``), or ``band`` is not a standard band.
    """
    if config.transmissionCurve is not None:
        path = str(config.transmissionCurve)
        band = config.band or warps_band or Path(path).stem
        return CoaddTransmission(read_transmission(path), band, f"transmissionCurve {path}")
    if config.band is None:
        raise ConfigError(
            "doAttachTransmissionCurve",
            True,
            "needs a throughput curve: set band (a standard band) or transmissionCurve; "
            "effectiveWavelength and bandwidth describe no curve",
        )
    try:
        standard = standard_band(config.band)
    except ValueError as error:
        raise ConfigError("band", config.band, str(error)) from None
    return CoaddTransmission(
        standard.transmission(),
        config.band,
        f"standard band {standard.name} (speclite {standard.speclite}): "
        f"dcr_dask/physics/data/bands/{standard.curve_file}",
    )


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
    mode: _ShiftMode
    local: bool

    @classmethod
    def from_config(
        cls, config: DcrAssembleCoaddConfig, mode: _ShiftMode | None = None
    ) -> ShiftOptions:
        """The options of a validated config; ``mode`` overrides ``subbandShiftMode``."""
        # config.validate() allows only these two values; another (unvalidated config)
        # still raises ValueError in geometry.subband_shifts_px
        return cls(
            split=bool(config.splitSubfilters),
            split_threshold_px=float(config.splitThreshold),
            mode=mode or cast(_ShiftMode, config.subbandShiftMode),
            local=bool(config.useLocalGeometry),
        )


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
        The run's band (:func:`band_from_config`).
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

    @classmethod
    def from_config(
        cls,
        visits: Sequence[VisitInfo],
        wcs: WCS,
        config: DcrAssembleCoaddConfig,
        tile_shape: tuple[int, int],
        *,
        mode: _ShiftMode | None = None,
    ) -> DcrShifts:
        """The shifts of a run on a tile of ``tile_shape`` ``(ny, nx)`` pixels.

        Parameters
        ----------
        visits : sequence of VisitInfo
            The visits of the run.
        wcs : astropy.wcs.WCS
            The tile WCS.
        config : DcrAssembleCoaddConfig
            Supplies the band, ``dcrNumSubfilters``, ``splitSubfilters``,
            ``splitThreshold``, ``subbandShiftMode`` and ``useLocalGeometry``.
        tile_shape : tuple of int
            ``(ny, nx)``.
        mode : {"edges", "throughput"}, optional
            Overrides ``subbandShiftMode``.

        Returns
        -------
        DcrShifts
        """
        ny, nx = tile_shape
        return cls(
            visits,
            wcs,
            band_from_config(config),
            ShiftOptions.from_config(config, mode),
            ((nx - 1) / 2.0, (ny - 1) / 2.0),
        )

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


def run_shifts(
    visits: Sequence[VisitInfo],
    wcs: WCS,
    config: DcrAssembleCoaddConfig,
    *,
    x: float,
    y: float,
    mode: _ShiftMode | None = None,
) -> RunShifts:
    """Evaluate the DCR shifts of all visits at tile pixel ``(x, y)``, once.

    A run evaluates its shifts through one :class:`DcrShifts`, which reads the
    band once; this is the same for a single position.

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
    options = ShiftOptions.from_config(config, mode)
    return DcrShifts(visits, wcs, band_from_config(config), options, (x, y)).evaluate(x, y)
