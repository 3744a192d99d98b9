"""The configuration read into settings: the only reader of config fields below ``running/``.

The graph, the kernels and the physics take small frozen settings objects,
never the config: this module builds them (the run's band, its shift options
and DCR shifts, the fit's settings). Functions that take a config elsewhere
below the running layer are the remaining exceptions, named in
``pyproject.toml``'s import contract.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, cast

from astropy.wcs import WCS

from dcr_dask.config import DcrAssembleCoaddConfig
from dcr_dask.errors import ConfigError
from dcr_dask.graph.assemble import FitSettings
from dcr_dask.kernels.shift import ShiftMethod
from dcr_dask.physics.bands import known_bands_text, standard_band
from dcr_dask.physics.subbands import (
    Band,
    CoaddTransmission,
    DcrShifts,
    RunShifts,
    ShiftOptions,
)
from dcr_dask.physics.transmission import (
    bandwidth_nm,
    effective_wavelength_nm,
    read_transmission,
)
from dcr_dask.visit import VisitInfo

__all__ = [
    "band_from_config",
    "coadd_transmission",
    "config_for_warps",
    "dcr_shifts",
    "fit_settings",
    "needs_band_name",
    "run_shifts",
    "shift_options",
]

log = logging.getLogger(__name__)

_ShiftMode = Literal["edges", "throughput"]


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


def fit_settings(config: DcrAssembleCoaddConfig) -> FitSettings:
    """Everything the per-block fit needs from a validated configuration.

    Parameters
    ----------
    config : DcrAssembleCoaddConfig
        The run's configuration.

    Returns
    -------
    FitSettings
        Fields named after the config fields they come from.
    """
    return FitSettings(
        n_subfilters=int(config.dcrNumSubfilters),
        method=cast(ShiftMethod, str(config.shiftMethod)),
        precision=str(config.shiftPrecision),
        order=int(config.imageInterpOrder),
        accelerate=float(config.accelerateModel),
        base_gain=config.resolved_base_gain(),
        use_progressive_gain=bool(config.useProgressiveGain),
        regularize_iterations=float(config.regularizeModelIterations),
        regularize_frequency=float(config.regularizeModelFrequency),
        regularization_width=int(config.regularizationWidth),
        frequency_clamp=str(config.frequencyClamp),
        use_model_weights=bool(config.useModelWeights),
        model_weights_width=float(config.modelWeightsWidth),
        convergence_threshold=float(config.convergenceThreshold),
        min_iter=int(config.resolved_min_num_iter()),
        max_iter=int(config.resolved_max_num_iter()),
        use_convergence=bool(config.useConvergence),
    )


def shift_options(config: DcrAssembleCoaddConfig, mode: _ShiftMode | None = None) -> ShiftOptions:
    """The shift options of a validated config; ``mode`` overrides ``subbandShiftMode``.

    Parameters
    ----------
    config : DcrAssembleCoaddConfig
        Supplies ``splitSubfilters``, ``splitThreshold``, ``subbandShiftMode``
        and ``useLocalGeometry``.
    mode : {"edges", "throughput"}, optional
        Overrides ``subbandShiftMode``.

    Returns
    -------
    ShiftOptions
    """
    # config.validate() allows only these two values; another (unvalidated config)
    # still raises ValueError in geometry.subband_shifts_px
    return ShiftOptions(
        split=bool(config.splitSubfilters),
        split_threshold_px=float(config.splitThreshold),
        mode=mode or cast(_ShiftMode, config.subbandShiftMode),
        local=bool(config.useLocalGeometry),
    )


def dcr_shifts(
    visits: Sequence[VisitInfo],
    wcs: WCS,
    config: DcrAssembleCoaddConfig,
    tile_shape: tuple[int, int],
    *,
    mode: _ShiftMode | None = None,
) -> DcrShifts:
    """The DCR shifts of a run on a tile of ``tile_shape`` ``(ny, nx)`` pixels (one per run).

    Parameters
    ----------
    visits : sequence of VisitInfo
        The visits of the run.
    wcs : astropy.wcs.WCS
        The tile WCS.
    config : DcrAssembleCoaddConfig
        Supplies the band (read here, once), ``dcrNumSubfilters``,
        ``splitSubfilters``, ``splitThreshold``, ``subbandShiftMode`` and
        ``useLocalGeometry``.
    tile_shape : tuple of int
        ``(ny, nx)``.
    mode : {"edges", "throughput"}, optional
        Overrides ``subbandShiftMode``.

    Returns
    -------
    DcrShifts
    """
    ny, nx = tile_shape
    return DcrShifts(
        visits,
        wcs,
        band_from_config(config),
        shift_options(config, mode),
        ((nx - 1) / 2.0, (ny - 1) / 2.0),
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

    A run evaluates its shifts through one
    :class:`~dcr_dask.physics.subbands.DcrShifts` (:func:`dcr_shifts`), which
    reads the band once; this is the same for a single position.

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
    options = shift_options(config, mode)
    return DcrShifts(visits, wcs, band_from_config(config), options, (x, y)).evaluate(x, y)
