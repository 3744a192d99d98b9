"""The configuration read into settings: the only reader of config fields below ``running/``.

The graph, the kernels and the physics take small frozen settings objects,
never the config: this module builds them from a validated config, one
function per settings object, named after it:

- the band, shift options and DCR shifts (:func:`band_from_config`,
  :func:`shift_options`, :func:`dcr_shifts`, :func:`run_shifts`);
- the fit (:func:`fit_settings`);
- CompareWarp (:func:`compare_warp_settings`, made of
  :func:`psf_matching_settings`, :func:`stacking`, :func:`variance_scaling`
  and :func:`artifact_settings`), source detection (:func:`source_detection`);
- the coadd's PSF and interpolation (:func:`psf_measurement`, :func:`interp_settings`).

``pyproject.toml``'s import contract keeps the config out of every layer below.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from astropy.wcs import WCS

from dcr_dask.config import (
    AssembleCoaddConfig,
    CompareWarpAssembleCoaddConfig,
    DcrAssembleCoaddConfig,
    GaussianPsfFactory,
    SourceDetectionConfig,
)
from dcr_dask.errors import ConfigError
from dcr_dask.graph.artifacts import ArtifactSettings, VarianceScaling
from dcr_dask.graph.assemble import FitSettings
from dcr_dask.graph.coadd import Stacking
from dcr_dask.graph.coadd_psf import PsfMeasurement
from dcr_dask.graph.compare_warp import CompareWarpSettings
from dcr_dask.graph.cosmic_rays import CosmicRaySettings
from dcr_dask.graph.detect import SourceDetection
from dcr_dask.graph.interp import InterpSettings
from dcr_dask.graph.psf_matching import ModelPsf, PsfMatchingSettings
from dcr_dask.kernels.detection import DetectionSettings
from dcr_dask.kernels.shift import ShiftMethod
from dcr_dask.physics.bands import known_bands_text, standard_band
from dcr_dask.physics.subbands import (
    Band,
    CoaddTransmission,
    DcrShifts,
    RunShifts,
    ShiftOptions,
    SubbandShiftMode,
)
from dcr_dask.physics.transmission import (
    bandwidth_nm,
    effective_wavelength_nm,
    read_transmission,
)
from dcr_dask.visit import VisitInfo

__all__ = [
    "artifact_settings",
    "band_from_config",
    "coadd_transmission",
    "compare_warp_settings",
    "config_for_warps",
    "cosmic_ray_settings",
    "dcr_shifts",
    "detection_settings",
    "fit_settings",
    "interp_settings",
    "model_psf",
    "needs_band_name",
    "psf_matching_settings",
    "psf_measurement",
    "run_shifts",
    "shift_options",
    "source_detection",
    "stacking",
    "variance_scaling",
]

log = logging.getLogger(__name__)


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
        psf_forward_model=str(config.psfForwardModel),
        use_model_weights=bool(config.useModelWeights),
        model_weights_width=float(config.modelWeightsWidth),
        convergence_threshold=float(config.convergenceThreshold),
        min_iter=int(config.resolved_min_num_iter()),
        max_iter=int(config.resolved_max_num_iter()),
        use_convergence=bool(config.useConvergence),
    )


def source_detection(config: SourceDetectionConfig) -> SourceDetection:
    """The settings of a ``SourceDetectionConfig`` (``detect``, ``detectTemplate``, ...).

    Parameters
    ----------
    config : SourceDetectionConfig
        Supplies ``thresholdValue``, ``thresholdType``, ``thresholdPolarity``,
        ``minPixels``, ``nSigmaToGrow``, ``isotropicGrow`` and
        ``includeThresholdMultiplier``.

    Returns
    -------
    SourceDetection
    """
    return SourceDetection(
        threshold=float(config.thresholdValue),
        threshold_type=str(config.thresholdType),
        polarity=str(config.thresholdPolarity),
        min_pixels=int(config.minPixels),
        n_sigma_to_grow=float(config.nSigmaToGrow),
        isotropic=bool(config.isotropicGrow),
        include_multiplier=float(config.includeThresholdMultiplier),
    )


def detection_settings(
    config: SourceDetectionConfig, psf_sigma_px: float, *, polarity: str | None = None
) -> DetectionSettings:
    """The kernels' detection settings of a ``SourceDetectionConfig`` at a PSF.

    Parameters
    ----------
    config : SourceDetectionConfig
        See :func:`source_detection`.
    psf_sigma_px : float
        Gaussian sigma of the image's PSF, pixels (the unit of ``nSigmaToGrow``).
    polarity : str, optional
        Overrides ``thresholdPolarity``.

    Returns
    -------
    DetectionSettings

    Raises
    ------
    ValueError
        For settings block-wise detection does not support; the message names
        the field (:meth:`dcr_dask.graph.detect.SourceDetection.at_psf`).
    """
    return source_detection(config).at_psf(psf_sigma_px, polarity=polarity)


def model_psf(config: GaussianPsfFactory) -> ModelPsf:
    """The model PSF of ``modelPsf`` (a ``GaussianPsfFactory``).

    Parameters
    ----------
    config : GaussianPsfFactory
        ``config.modelPsf``.

    Returns
    -------
    ModelPsf
        Without ``addWing``, a wing of amplitude 0 (none).
    """
    return ModelPsf(
        default_fwhm_px=float(config.defaultFwhm),
        size=None if config.size is None else int(config.size),
        size_factor=float(config.sizeFactor),
        min_size=None if config.minSize is None else int(config.minSize),
        max_size=None if config.maxSize is None else int(config.maxSize),
        wing_fwhm_factor=float(config.wingFwhmFactor) if config.addWing else 1.0,
        wing_amplitude=float(config.wingAmplitude) if config.addWing else 0.0,
    )


def psf_matching_settings(config: AssembleCoaddConfig) -> PsfMatchingSettings:
    """What PSF matching reads: ``modelPsf`` and ``matchingKernelSize``.

    Parameters
    ----------
    config : AssembleCoaddConfig
        The run's config.

    Returns
    -------
    PsfMatchingSettings
    """
    return PsfMatchingSettings(
        model_psf=model_psf(config.modelPsf), kernel_size=config.matchingKernelSize
    )


def stacking(config: AssembleCoaddConfig) -> Stacking:
    """The stacking rules of an assembly config (the main one or ``assembleStaticSkyModel``).

    Parameters
    ----------
    config : AssembleCoaddConfig
        Supplies ``statistic``, ``sigmaClip``, ``clipIter``,
        ``calcErrorFromInputVariance``, ``badMaskPlanes``, ``removeMaskPlanes``,
        ``maskPropagationThresholds``, ``doNImage`` and, where it has the field
        (the DCR task's config), ``doAirmassWeight``.

    Returns
    -------
    Stacking
    """
    return Stacking(
        statistic=str(config.statistic),
        sigma_clip=float(config.sigmaClip),
        clip_iter=int(config.clipIter),
        calc_error_from_input_variance=bool(config.calcErrorFromInputVariance),
        bad_mask_planes=tuple(config.badMaskPlanes),
        remove_mask_planes=tuple(config.removeMaskPlanes),
        mask_propagation_thresholds=tuple(
            (str(name), float(threshold))
            for name, threshold in sorted(config.maskPropagationThresholds.items())
        ),
        do_n_image=bool(config.doNImage),
        do_airmass_weight=bool(getattr(config, "doAirmassWeight", False)),
    )


def variance_scaling(config: CompareWarpAssembleCoaddConfig) -> VarianceScaling:
    """CompareWarp's variance rescaling: ``doScaleWarpVariance`` and ``scaleWarpVariance``.

    Parameters
    ----------
    config : CompareWarpAssembleCoaddConfig
        Also ``detectModelSources`` where the config has it (the DCR task's).

    Returns
    -------
    VarianceScaling
    """
    model_sources = getattr(config, "detectModelSources", None)
    return VarianceScaling(
        enabled=bool(config.doScaleWarpVariance),
        mask_planes=tuple(config.scaleWarpVariance.maskPlanes),
        limit=float(config.scaleWarpVariance.limit),
        model_sources=None if model_sources is None else source_detection(model_sources),
    )


def artifact_settings(config: CompareWarpAssembleCoaddConfig) -> ArtifactSettings:
    """CompareWarp's artifact tests (:func:`dcr_dask.graph.artifacts.find_artifacts`).

    Parameters
    ----------
    config : CompareWarpAssembleCoaddConfig
        Supplies ``detect``, ``detectTemplate``, ``badMaskPlanes``,
        ``doPrefilterArtifacts``, ``prefilterArtifactsMaskPlanes``,
        ``prefilterArtifactsRatio``, ``maxNumEpochs``, ``maxFractionEpochsLow``,
        ``maxFractionEpochsHigh``, ``spatialThreshold``,
        ``doPreserveContainedBySource`` and ``modelPsf.defaultFwhm``.

    Returns
    -------
    ArtifactSettings
    """
    return ArtifactSettings(
        detect=source_detection(config.detect),
        detect_template=source_detection(config.detectTemplate),
        bad_mask_planes=tuple(config.badMaskPlanes),
        do_prefilter=bool(config.doPrefilterArtifacts),
        prefilter_mask_planes=tuple(config.prefilterArtifactsMaskPlanes),
        prefilter_ratio=float(config.prefilterArtifactsRatio),
        max_num_epochs=int(config.maxNumEpochs),
        max_fraction_epochs_low=float(config.maxFractionEpochsLow),
        max_fraction_epochs_high=float(config.maxFractionEpochsHigh),
        spatial_threshold=float(config.spatialThreshold),
        preserve_contained_by_source=bool(config.doPreserveContainedBySource),
        default_psf_fwhm_px=float(config.modelPsf.defaultFwhm),
    )


def compare_warp_settings(config: CompareWarpAssembleCoaddConfig) -> CompareWarpSettings:
    """Everything CompareWarp reads (:func:`dcr_dask.graph.compare_warp.compare_warp`).

    Parameters
    ----------
    config : CompareWarpAssembleCoaddConfig
        The run's config (a ``DcrAssembleCoaddConfig`` is one).

    Returns
    -------
    CompareWarpSettings
    """
    return CompareWarpSettings(
        psf_matching=psf_matching_settings(config),
        static_model=stacking(config.assembleStaticSkyModel),
        variance_scaling=variance_scaling(config),
        artifacts=artifact_settings(config),
    )


def cosmic_ray_settings(config: DcrAssembleCoaddConfig) -> CosmicRaySettings:
    """What the cosmic-ray search reads (:func:`~dcr_dask.graph.cosmic_rays.find_cosmic_rays`).

    Parameters
    ----------
    config : DcrAssembleCoaddConfig
        Supplies ``doFindCosmicRays``, ``cosmicRayMinSigma``, ``cosmicRayCond3Fac``,
        ``cosmicRayCond3Fac2``, ``cosmicRayGrow`` and ``badMaskPlanes``.

    Returns
    -------
    CosmicRaySettings
    """
    return CosmicRaySettings(
        enabled=bool(config.doFindCosmicRays),
        min_sigma=float(config.cosmicRayMinSigma),
        cond3_fac=float(config.cosmicRayCond3Fac),
        cond3_fac2=float(config.cosmicRayCond3Fac2),
        grow=int(config.cosmicRayGrow),
        bad_mask_planes=tuple(config.badMaskPlanes),
    )


def psf_measurement(config: DcrAssembleCoaddConfig) -> PsfMeasurement:
    """How the coadd's PSF is measured: ``detectPsfSources`` and ``measurePsf``.

    Parameters
    ----------
    config : DcrAssembleCoaddConfig
        The run's config.

    Returns
    -------
    PsfMeasurement

    Raises
    ------
    ValueError
        If ``detectPsfSources.thresholdType`` is neither ``pixel_stdev`` nor ``value``.
    """
    detect = config.detectPsfSources
    if detect.thresholdType not in ("pixel_stdev", "value"):
        raise ValueError(
            f"detectPsfSources.thresholdType = {detect.thresholdType!r}: only "
            "'pixel_stdev' and 'value' are measured here"
        )
    return PsfMeasurement(
        threshold_value=float(detect.thresholdValue),
        threshold_type=str(detect.thresholdType),
        include_multiplier=float(detect.includeThresholdMultiplier),
        min_pixels=int(detect.minPixels),
        kernel_size=int(config.measurePsf.kernelSize),
        reserve_fraction=float(config.measurePsf.reserveFraction),
    )


def interp_settings(config: DcrAssembleCoaddConfig) -> InterpSettings:
    """What ``doInterp`` and ``interpImage`` ask for.

    Parameters
    ----------
    config : DcrAssembleCoaddConfig
        The run's config.

    Returns
    -------
    InterpSettings
    """
    interp = config.interpImage
    return InterpSettings(
        enabled=bool(config.doInterp),
        along_columns=bool(interp.transpose),
        use_fallback_at_edge=bool(interp.useFallbackValueAtEdge),
        fallback_type=str(interp.fallbackValueType),
        fallback_user_value=float(interp.fallbackUserValue),
        negative_fallback_allowed=bool(interp.negativeFallbackAllowed),
    )


def shift_options(
    config: DcrAssembleCoaddConfig, mode: SubbandShiftMode | None = None
) -> ShiftOptions:
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
        mode=mode or cast(SubbandShiftMode, config.subbandShiftMode),
        local=bool(config.useLocalGeometry),
    )


def dcr_shifts(
    visits: Sequence[VisitInfo],
    wcs: WCS,
    config: DcrAssembleCoaddConfig,
    tile_shape: tuple[int, int],
    *,
    mode: SubbandShiftMode | None = None,
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
    mode: SubbandShiftMode | None = None,
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
