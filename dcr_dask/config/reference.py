"""The schema: every configuration class, from :class:`BackgroundConfig` to
:class:`DcrAssembleCoaddConfig`, with its fields, computed defaults (``setDefaults``) and
relations between fields, and the tables of fields that have no effect in dcr_dask
(:data:`NOT_APPLICABLE`) or ask for what it cannot do (:data:`REFUSED`).

Every field of the reference configuration (``reference/DcrAssembleCoaddConfig.txt``)
exists here under its own name, with the reference's type, declared default, doc
string and valid range, together with the sub-configurations it names and a few
dcr_dask extensions (marked as such in their doc strings and in :attr:`FieldSpec.extension`).
"""

from __future__ import annotations

import warnings
from typing import Any

from dcr_dask.config.base import ConfigBase, _plain
from dcr_dask.config.fields import (
    _AT_LEAST_ONE,
    _MASK_PLANES,
    _NON_NEGATIVE,
    _ODD,
    _POSITIVE,
    _ZERO_OR_ABOVE_ONE,
    Check,
    Range,
    _configclass,
    _dict,
    _list,
    _mask_plane_names,
    _scalar,
    _sub,
)
from dcr_dask.errors import ConfigError, InapplicableFieldWarning
from dcr_dask.physics.bands import accepted_band_names, known_bands_text
from dcr_dask.physics.refraction import MAX_WAVELENGTH_NM, MIN_WAVELENGTH_NM

#: dcr_dask's iteration limits of the DCR fit (``minNumIter``, ``maxNumIter``,
#: ``convergenceThreshold``; the reference: None, None, 0.001), set by
#: :meth:`DcrAssembleCoaddConfig.setDefaults`. The threshold is so small that a
#: subregion stops when its metric rises (after ``minNumIter``) or at ``maxNumIter``.
DCR_DASK_MIN_NUM_ITER = 30
#: dcr_dask's ``dcrNumSubfilters`` (the reference: 3), set by ``setDefaults``.
DCR_DASK_NUM_SUBFILTERS = 4
DCR_DASK_MAX_NUM_ITER = 60
DCR_DASK_CONVERGENCE_THRESHOLD = 1e-6
#: dcr_dask's ``detectTemplate.thresholdValue`` (CompareWarp's, the reference: 300),
#: set by :meth:`DcrAssembleCoaddConfig.setDefaults`: the static model's sources that
#: protect the artifact candidates they contain, in per-pixel sigmas of the model.
DCR_DASK_TEMPLATE_THRESHOLD = 50.0

# ------------------------------------------------------------- sub-configurations

_STATISTICS = ("MEAN", "MEANCLIP", "MEDIAN")
_WARP_TYPES = ("direct", "psfMatched")
_UNIT_INTERVAL = Range(0.0, 1.0)
_CALIBRATED_HINT = "has no effect in dcr_dask, which reads calibrated warps"


@_configclass
class BackgroundConfig(ConfigBase):
    """Estimation of a smooth background from binned, clipped pixel statistics.

    Replaces ``lsst.meas.algorithms.subtractBackground.SubtractBackgroundConfig``;
    ``numSigmaClip`` and ``numIter`` are the clipping parameters that afw's
    ``StatisticsControl`` leaves implicit.
    """

    statisticsProperty: str = _scalar(
        str,
        "MEANCLIP",
        "Statistic of the pixels in each bin that estimates the background there.",
        allowed=_STATISTICS,
    )
    numSigmaClip: float = _scalar(
        float,
        3.0,
        "dcr_dask extension. Clipping threshold of the MEANCLIP statistic, in standard "
        "deviations (afw's StatisticsControl default).",
        bounds=_POSITIVE,
        extension=True,
    )
    numIter: int = _scalar(
        int,
        3,
        "dcr_dask extension. Number of clipping iterations of the MEANCLIP statistic "
        "(afw's StatisticsControl default).",
        bounds=_AT_LEAST_ONE,
        extension=True,
    )
    binSize: int = _scalar(
        int,
        128,
        "Width of the square bins, in pixels, each giving one background sample.",
        bounds=_AT_LEAST_ONE,
    )
    algorithm: str = _scalar(
        str,
        "AKIMA_SPLINE",
        "Interpolation between the bin samples.",
        allowed=("CONSTANT", "LINEAR", "NATURAL_SPLINE", "AKIMA_SPLINE"),
    )
    useApprox: bool = _scalar(
        bool,
        True,
        "Fit a Chebyshev approximation to the bin samples instead of interpolating them.",
    )
    ignoredPixelMask: list[str] = _list(
        str,
        ("BAD", "EDGE", "DETECTED", "DETECTED_NEGATIVE", "NO_DATA"),
        "Mask planes of the pixels left out of the bin statistics.",
        checks=(_MASK_PLANES,),
    )


_BACKGROUND_REFERENCE = "lsst.meas.algorithms.subtractBackground.SubtractBackgroundConfig"


@_configclass
class GaussianPsfFactory(ConfigBase):
    """A Gaussian (core plus optional wing) model PSF given by its FWHM.

    Replaces ``lsst.meas.algorithms.gaussianPsfFactory.GaussianPsfFactory``.
    """

    size: int | None = _scalar(
        int,
        None,
        "Kernel width and height, in pixels; if None, sizeFactor * FWHM is used.",
        bounds=_POSITIVE,
    )
    sizeFactor: float = _scalar(
        float,
        3.0,
        "Kernel size as a multiple of the FWHM (dimensionless); ignored if size is set.",
        bounds=_POSITIVE,
    )
    minSize: int | None = _scalar(
        int,
        5,
        "Smallest kernel size, in pixels, when sizeFactor is used.",
        optional=True,
        bounds=_POSITIVE,
    )
    maxSize: int | None = _scalar(
        int,
        None,
        "Largest kernel size, in pixels, when sizeFactor is used.",
        bounds=_POSITIVE,
    )
    defaultFwhm: float = _scalar(
        float,
        3.0,
        "FWHM of the Gaussian core, in pixels, when no FWHM is given.",
        bounds=_POSITIVE,
    )
    addWing: bool = _scalar(bool, True, "Add a second, wider Gaussian for the PSF wings.")
    wingFwhmFactor: float = _scalar(
        float,
        2.5,
        "FWHM of the wing as a multiple of the core's (dimensionless); ignored without addWing.",
        bounds=_POSITIVE,
    )
    wingAmplitude: float = _scalar(
        float,
        0.1,
        "Peak of the wing as a multiple of the core's peak (dimensionless); "
        "ignored without addWing.",
        bounds=_POSITIVE,
    )

    def _cross_checks(self) -> list[ConfigError]:
        if self.minSize is not None and self.maxSize is not None and self.minSize > self.maxSize:
            return [self._error("minSize", self.minSize, f"exceeds maxSize = {self.maxSize}")]
        return []


_GAUSSIAN_PSF_REFERENCE = "lsst.meas.algorithms.gaussianPsfFactory.GaussianPsfFactory"


@_configclass
class SourceDetectionConfig(ConfigBase):
    """Detection of footprints above a threshold.

    Replaces ``lsst.meas.algorithms.detection.SourceDetectionConfig``.
    """

    minPixels: int = _scalar(
        int,
        1,
        "Smallest number of pixels of a kept footprint; smaller ones are dropped.",
        bounds=_NON_NEGATIVE,
    )
    isotropicGrow: bool = _scalar(
        bool,
        True,
        "Grow footprints as discs (True) rather than with a city-block metric (False).",
    )
    combinedGrow: bool = _scalar(
        bool,
        True,
        "Grow all footprints at once, so that neighbours may merge, rather than one by one.",
    )
    nSigmaToGrow: float = _scalar(
        float,
        2.4,
        "Grow footprints by this multiple of the PSF's Gaussian sigma; 0 disables growing.",
        bounds=_NON_NEGATIVE,
    )
    returnOriginalFootprints: bool = _scalar(
        bool,
        False,
        "Set the mask from the grown footprints but return the footprints ungrown.",
    )
    thresholdValue: float = _scalar(
        float,
        5.0,
        "Detection threshold; its meaning and unit depend on thresholdType.",
        bounds=_NON_NEGATIVE,
    )
    includeThresholdMultiplier: float = _scalar(
        float,
        1.0,
        "Factor on thresholdValue that at least one pixel of a footprint must reach for the "
        "footprint to be kept (1 or less keeps every footprint); the mask and the footprints' "
        "extent still use thresholdValue.",
        bounds=_NON_NEGATIVE,
    )
    thresholdType: str = _scalar(
        str,
        "pixel_stdev",
        "Meaning of thresholdValue: 'stdev' (multiple of the image's standard deviation), "
        "'variance' (multiple of its variance), 'value' (pixel value) or 'pixel_stdev' "
        "(multiple of each pixel's own standard deviation, from the variance plane).",
        allowed=("stdev", "variance", "value", "pixel_stdev"),
    )
    thresholdPolarity: str = _scalar(
        str,
        "positive",
        "Detect sources above (+threshold), below (-threshold), or both.",
        allowed=("positive", "negative", "both"),
    )
    adjustBackground: float = _scalar(
        float, 0.0, "Constant added to the background before detection (for debugging)."
    )
    reEstimateBackground: bool = _scalar(
        bool,
        True,
        "Estimate and subtract the background again after detection (see background).",
    )
    background: BackgroundConfig = _sub(
        BackgroundConfig,
        "Background estimated again after detection, if reEstimateBackground.",
        reference=_BACKGROUND_REFERENCE,
    )
    doTempLocalBackground: bool = _scalar(
        bool,
        True,
        "Subtract a small-scale temporary background (tempLocalBackground) before peaks are "
        "found, so that the wings of bright sources do not give spurious peaks.",
    )
    tempLocalBackground: BackgroundConfig = _sub(
        BackgroundConfig,
        "Small-scale temporary background, if doTempLocalBackground.",
        reference=_BACKGROUND_REFERENCE,
    )
    doTempWideBackground: bool = _scalar(
        bool,
        False,
        "Subtract a large-scale temporary background (tempWideBackground) before detection "
        "and restore it afterwards, to suppress very large footprints.",
    )
    tempWideBackground: BackgroundConfig = _sub(
        BackgroundConfig,
        "Large-scale temporary background, if doTempWideBackground.",
        reference=_BACKGROUND_REFERENCE,
    )
    statsMask: list[str] = _list(
        str,
        ("BAD", "SAT", "EDGE", "NO_DATA"),
        "Mask planes of the pixels left out of the image statistics (thresholdType 'stdev').",
        checks=(_MASK_PLANES,),
    )

    def setDefaults(self) -> None:
        """Bin the temporary backgrounds finely (local) and coarsely (wide), without fits."""
        super().setDefaults()
        for background, size in ((self.tempLocalBackground, 64), (self.tempWideBackground, 512)):
            background.binSize = size
            background.algorithm = "AKIMA_SPLINE"
            background.useApprox = False
        self.tempWideBackground.ignoredPixelMask = [
            plane
            for plane in self.tempWideBackground.ignoredPixelMask
            if plane not in ("DETECTED", "DETECTED_NEGATIVE")
        ]


_DETECTION_REFERENCE = "lsst.meas.algorithms.detection.SourceDetectionConfig"


@_configclass
class ScaleVarianceConfig(ConfigBase):
    """Rescaling of a variance plane to the noise measured in the image.

    Replaces ``lsst.pipe.tasks.scaleVariance.ScaleVarianceConfig``.
    """

    background: BackgroundConfig = _sub(
        BackgroundConfig,
        "Background subtracted before the noise is measured.",
        reference=_BACKGROUND_REFERENCE,
    )
    maskPlanes: list[str] = _list(
        str,
        ("DETECTED", "DETECTED_NEGATIVE", "BAD", "SAT", "NO_DATA", "INTRP"),
        "Mask planes of the pixels left out when the noise is measured.",
        checks=(_MASK_PLANES,),
    )
    limit: float = _scalar(
        float,
        10.0,
        "Largest accepted variance scale factor; a larger one is an error.",
        bounds=_POSITIVE,
    )

    def setDefaults(self) -> None:
        """Measure the background on small bins, interpolated, ignoring sources and bad pixels."""
        super().setDefaults()
        self.background.binSize = 32
        self.background.useApprox = False
        self.background.ignoredPixelMask = list(self.maskPlanes)


@_configclass
class ScaleZeroPointConfig(ConfigBase):
    """Photometric scaling of the warps to a common zero point.

    Replaces ``lsst.pipe.tasks.scaleZeroPoint.ScaleZeroPointConfig``.
    """

    zeroPoint: float = _scalar(
        float, 27.0, "Photometric zero point (mag) that every warp is scaled to."
    )


@_configclass
class InterpImageConfig(ConfigBase):
    """Interpolation over NaN pixels of the coadd.

    Replaces ``lsst.pipe.tasks.interpImage.InterpImageConfig``.
    """

    modelPsf: GaussianPsfFactory = _sub(
        GaussianPsfFactory,
        "Model PSF whose width sets the interpolation scale.",
        reference=_GAUSSIAN_PSF_REFERENCE,
    )
    useFallbackValueAtEdge: bool = _scalar(
        bool, True, "Taper smoothly to the fallback value at the image edge."
    )
    fallbackValueType: str = _scalar(
        str,
        "MEDIAN",
        "Statistic of the image giving the fallback value at the edge, or 'USER' for "
        "fallbackUserValue.",
        allowed=("MEAN", "MEDIAN", "MEANCLIP", "USER"),
    )
    fallbackUserValue: float = _scalar(
        float, 0.0, "Fallback value when fallbackValueType is 'USER'."
    )
    negativeFallbackAllowed: bool = _scalar(
        bool, False, "Allow a negative fallback value (otherwise it is raised to 0)."
    )
    transpose: bool = _scalar(bool, False, "Interpolate along columns instead of rows.")

    def _cross_checks(self) -> list[ConfigError]:
        if (
            self.useFallbackValueAtEdge
            and self.fallbackValueType == "USER"
            and self.fallbackUserValue < 0
            and not self.negativeFallbackAllowed
        ):
            return [
                self._error(
                    "fallbackUserValue",
                    self.fallbackUserValue,
                    "is negative but negativeFallbackAllowed is False",
                )
            ]
        return []


@_configclass
class CoaddInputRecorderConfig(ConfigBase):
    """What is recorded about the inputs of a coadd.

    Replaces ``lsst.pipe.tasks.coaddInputRecorder.CoaddInputRecorderConfig``.
    """

    saveEmptyCcds: bool = _scalar(
        bool, False, "Record inputs that were examined but gave no unmasked pixel."
    )
    saveErrorCcds: bool = _scalar(bool, False, "Record inputs that could not be read.")
    saveVisitGoodPix: bool = _scalar(
        bool, True, "Record the number of good pixels that each visit contributes."
    )
    saveCcdWeights: bool = _scalar(bool, True, "Record the weight of each input.")


@_configclass
class CoaddPsfConfig(ConfigBase):
    """The coadd's PSF, built from the inputs' PSFs.

    Replaces ``lsst.meas.algorithms.coaddPsf.coaddPsf.CoaddPsfConfig``.
    """

    warpingKernelName: str = _scalar(
        str,
        "lanczos3",
        "Interpolation kernel used to warp the inputs' PSFs onto the coadd grid.",
        allowed=("nearest", "bilinear", "lanczos2", "lanczos3", "lanczos4", "lanczos5"),
    )
    cacheSize: int = _scalar(
        int, 10000, "Number of warped PSF images kept in memory.", bounds=_NON_NEGATIVE
    )


@_configclass
class SelectImagesConfig(ConfigBase):
    """Selection of the input images; the reference's is an empty ``lsst.pex.config.Config``."""


@_configclass
class Connections(ConfigBase):
    """Names of the datasets that a run reads and writes.

    Replaces the ``lsst.pipe.base.config.Connections`` templates of the reference.
    """

    inputWarpName: str = _scalar(str, "deep", "Name prefix of the input warps.")
    inputCoaddName: str = _scalar(str, "deep", "Name prefix of input coadds (templates).")
    outputCoaddName: str = _scalar(str, "deep", "Name prefix of the coadds written.")
    warpType: str = _scalar(
        str, "direct", "Type of the warps read: 'direct' or 'psfMatched'.", allowed=_WARP_TYPES
    )


@_configclass
class SingleFrameMeasurementConfig(ConfigBase):
    """Measurement of the sources used to model the coadd's PSF.

    Replaces ``lsst.meas.base.sfm.SingleFrameMeasurementConfig``.
    """

    plugins: list[str] = _list(
        str,
        ("base_PixelFlags", "base_SdssCentroid", "base_SdssShape", "base_PsfFlux"),
        "Measurements made on each source, by meas_base plugin name (flags, centroid, "
        "second moments, PSF flux).",
    )
    doReplaceWithNoise: bool = _scalar(
        bool, True, "Replace the other sources with noise while each one is measured."
    )


@_configclass
class MeasurePsfConfig(ConfigBase):
    """Modelling of the coadd's PSF from measured stars.

    Replaces ``lsst.pipe.tasks.measurePsf.MeasurePsfConfig``.
    """

    starSelector: str = _scalar(
        str, "objectSize", "Algorithm choosing the stars (meas_algorithms registry name)."
    )
    kernelSize: int = _scalar(
        int,
        27,
        "Size, in pixels, of the postage stamp cut around each star (odd).",
        bounds=_POSITIVE,
        checks=(_ODD,),
    )
    reserveFraction: float = _scalar(
        float,
        0.0,
        "Fraction of the stars held back from the fit, to test the model.",
        bounds=Range(0.0, 1.0, max_inclusive=False),
    )


# ----------------------------------------------------------------- coadd configs


@_configclass
class AssembleCoaddConfig(ConfigBase):
    """Stacking of warps into a coadd (``lsst.pipe.tasks.assembleCoadd.AssembleCoaddConfig``).

    Holds the fields that the reference's ``AssembleCoaddConfig`` and its base
    ``CoaddBaseConfig`` give to ``DcrAssembleCoaddConfig``; it is also the class
    of ``assembleStaticSkyModel``.
    """

    coaddName: str = _scalar(str, "deep", "Coadd name: typically one of deep or goodSeeing.")
    select: SelectImagesConfig = _sub(
        SelectImagesConfig,
        "Image selection subtask.",
        reference="lsst.pex.config.config.Config",
    )
    badMaskPlanes: list[str] = _list(
        str,
        ("NO_DATA",),
        "Mask planes that, if set, the associated pixel should not be included in the "
        "coaddTempExp.",
        checks=(_MASK_PLANES,),
    )
    inputRecorder: CoaddInputRecorderConfig = _sub(
        CoaddInputRecorderConfig,
        "Subtask that helps fill CoaddInputs catalogs added to the final Exposure",
        reference="lsst.pipe.tasks.coaddInputRecorder.CoaddInputRecorderConfig",
    )
    doPsfMatch: bool = _scalar(
        bool,
        False,
        "Match to modelPsf? Deprecated. Sets makePsfMatched=True, makeDirect=False",
        deprecated="it has no effect in dcr_dask; set warpType='psfMatched' instead",
    )
    modelPsf: GaussianPsfFactory = _sub(
        GaussianPsfFactory, "Model Psf factory", reference=_GAUSSIAN_PSF_REFERENCE
    )
    doApplyUberCal: bool = _scalar(
        bool,
        False,
        "Apply jointcal WCS and PhotoCalib results to input calexps?",
        deprecated=f"it {_CALIBRATED_HINT}",
    )
    useMeasMosaic: bool = _scalar(
        bool,
        False,
        "Use meas_mosaic’s applyMosaicResultsExposure() to do the photometric "
        "calibration/wcs update (deprecated).",
        deprecated=f"it {_CALIBRATED_HINT}",
    )
    matchingKernelSize: int = _scalar(
        int,
        21,
        "Size in pixels of matching kernel. Must be odd.",
        bounds=_POSITIVE,
        checks=(_ODD,),
    )
    includeCalibVar: bool = _scalar(
        bool, False, "Add photometric calibration variance to warp variance plane."
    )
    saveMetadata: bool = _scalar(
        bool, True, "Flag to enable/disable metadata saving for a task, enabled by default."
    )
    connections: Connections = _sub(
        Connections,
        "Configurations describing the connections of the PipelineTask to datatypes",
        reference="lsst.pipe.base.config.Connections",
        doc_type="Connections",
    )
    warpType: str = _scalar(
        str, "direct", "Warp name: one of ‘direct’ or ‘psfMatched’", allowed=_WARP_TYPES
    )
    subregionSize: list[int] = _list(
        int,
        (2000, 2000),
        "Width, height of stack subregion size; make small enough that a full stack of "
        "images will fit into memory at once.",
        length=2,
        bounds=_POSITIVE,
    )
    statistic: str = _scalar(
        str,
        "MEANCLIP",
        "Main stacking statistic for aggregating over the epochs.",
        allowed=_STATISTICS,
    )
    doSigmaClip: bool = _scalar(
        bool,
        False,
        "Perform sigma clipped outlier rejection with MEANCLIP statistic? (DEPRECATED)",
        deprecated="it has no effect in dcr_dask; set statistic='MEANCLIP' instead",
    )
    sigmaClip: float = _scalar(
        float,
        3.0,
        "Sigma for outlier rejection; ignored if non-clipping statistic selected.",
        bounds=_POSITIVE,
    )
    clipIter: int = _scalar(
        int,
        2,
        "Number of iterations of outlier rejection; ignored if non-clipping statistic selected.",
        bounds=_NON_NEGATIVE,
    )
    calcErrorFromInputVariance: bool = _scalar(
        bool,
        True,
        "Calculate coadd variance from input variance by stacking statistic.Passed to "
        "StatisticsControl.setCalcErrorFromInputVariance()",
    )
    scaleZeroPoint: ScaleZeroPointConfig = _sub(
        ScaleZeroPointConfig,
        "Task to adjust the photometric zero point of the coadd temp exposures",
        reference="lsst.pipe.tasks.scaleZeroPoint.ScaleZeroPointConfig",
    )
    doInterp: bool = _scalar(
        bool,
        True,
        "Interpolate over NaN pixels? Also extrapolate, if necessary, but the results are ugly.",
    )
    interpImage: InterpImageConfig = _sub(
        InterpImageConfig,
        "Task to interpolate (and extrapolate) over NaN pixels",
        reference="lsst.pipe.tasks.interpImage.InterpImageConfig",
    )
    doWrite: bool = _scalar(bool, True, "Persist coadd?")
    doNImage: bool = _scalar(
        bool, False, "Create image of number of contributing exposures for each pixel"
    )
    doUsePsfMatchedPolygons: bool = _scalar(
        bool,
        False,
        "Use ValidPolygons from shrunk Psf-Matched Calexps? Should be set to True by "
        "CompareWarp only.",
    )
    maskPropagationThresholds: dict[str, float] = _dict(
        str,
        float,
        {"SAT": 0.1},
        "Threshold (in fractional weight) of rejection at which we propagate a mask plane to "
        "the coadd; that is, we set the mask bit on the coadd if the fraction the rejected "
        "frames would have contributed exceeds this value.",
        bounds=_UNIT_INTERVAL,
        checks=(Check(lambda value: _mask_plane_names(value.keys()), _MASK_PLANES.description),),
    )
    removeMaskPlanes: list[str] = _list(
        str,
        ("NOT_DEBLENDED",),
        "Mask planes to remove before coadding",
        checks=(_MASK_PLANES,),
    )
    doMaskBrightObjects: bool = _scalar(bool, False, "Set mask and flag bits for bright objects?")
    brightObjectMaskName: str = _scalar(
        str,
        "BRIGHT_OBJECT",
        "Name of mask bit used for bright objects",
        checks=(_MASK_PLANES,),
    )
    coaddPsf: CoaddPsfConfig = _sub(
        CoaddPsfConfig,
        "Configuration for CoaddPsf",
        reference="lsst.meas.algorithms.coaddPsf.coaddPsf.CoaddPsfConfig",
        doc_type="CoaddPsfConfig",
    )
    doAttachTransmissionCurve: bool = _scalar(
        bool,
        False,
        "Attach a piecewise TransmissionCurve for the coadd? (requires all input Exposures "
        "to have TransmissionCurves).",
    )
    hasFakes: bool = _scalar(
        bool,
        False,
        "Should be set to True if fake sources have been inserted into the input data.",
    )

    def setDefaults(self) -> None:
        """Leave out pixels flagged NO_DATA, BAD, SAT or EDGE (as the reference's AssembleCoadd)."""
        super().setDefaults()
        self.badMaskPlanes = ["NO_DATA", "BAD", "SAT", "EDGE"]


@_configclass
class CompareWarpAssembleCoaddConfig(AssembleCoaddConfig):
    """Coadd assembly that masks transient artifacts found by comparing warps with a static model.

    Replaces ``lsst.pipe.tasks.assembleCoadd.CompareWarpAssembleCoaddConfig``.
    """

    assembleStaticSkyModel: AssembleCoaddConfig = _sub(
        AssembleCoaddConfig,
        "Task to assemble an artifact-free, PSF-matched Coadd to serve as a "
        "naive/first-iteration model of the static sky.",
        reference="lsst.pipe.tasks.assembleCoadd.AssembleCoaddConfig",
    )
    detect: SourceDetectionConfig = _sub(
        SourceDetectionConfig,
        "Detect outlier sources on difference between each psfMatched warp and static sky model",
        reference=_DETECTION_REFERENCE,
    )
    detectTemplate: SourceDetectionConfig = _sub(
        SourceDetectionConfig,
        "Detect sources on static sky model. Only used if doPreserveContainedBySource is True",
        reference=_DETECTION_REFERENCE,
    )
    maxNumEpochs: int = _scalar(
        int,
        2,
        "Charactistic maximum local number of epochs/visits in which an artifact candidate "
        "can appear and still be masked. The effective maxNumEpochs is a broken linear "
        "function of local number of epochs (N): min(maxFractionEpochsLow*N, maxNumEpochs + "
        "maxFractionEpochsHigh*N). For each footprint detected on the image difference "
        "between the psfMatched warp and static sky model, if a significant fraction of "
        "pixels (defined by spatialThreshold) are residuals in more than the computed "
        "effective maxNumEpochs, the artifact candidate is deemed persistant rather than "
        "transient and not masked.",
        bounds=_NON_NEGATIVE,
    )
    maxFractionEpochsLow: float = _scalar(
        float,
        0.4,
        "Fraction of local number of epochs (N) to use as effective maxNumEpochs for low N. "
        "Effective maxNumEpochs = min(maxFractionEpochsLow * N, maxNumEpochs + "
        "maxFractionEpochsHigh * N)",
        bounds=Range(0.0, 1.0, max_inclusive=False),
    )
    maxFractionEpochsHigh: float = _scalar(
        float,
        0.03,
        "Fraction of local number of epochs (N) to use as effective maxNumEpochs for high N. "
        "Effective maxNumEpochs = min(maxFractionEpochsLow * N, maxNumEpochs + "
        "maxFractionEpochsHigh * N)",
        bounds=Range(0.0, 1.0, max_inclusive=False),
    )
    spatialThreshold: float = _scalar(
        float,
        0.5,
        "Unitless fraction of pixels defining how much of the outlier region has to meet the "
        "temporal criteria. If 0, clip all. If 1, clip none.",
        bounds=_UNIT_INTERVAL,
    )
    doScaleWarpVariance: bool = _scalar(
        bool, True, "Rescale Warp variance plane using empirical noise?"
    )
    scaleWarpVariance: ScaleVarianceConfig = _sub(
        ScaleVarianceConfig,
        "Rescale variance on warps",
        reference="lsst.pipe.tasks.scaleVariance.ScaleVarianceConfig",
    )
    doPreserveContainedBySource: bool = _scalar(
        bool,
        True,
        "Rescue artifacts from clipping that completely lie within a footprint detectedon the "
        "PsfMatched Template Coadd. Replicates a behavior of SafeClip.",
    )
    doPrefilterArtifacts: bool = _scalar(
        bool,
        True,
        "Ignore artifact candidates that are mostly covered by the bad pixel mask, because "
        "they will be excluded anyway. This prevents them from contributing to the outlier "
        "epoch count image and potentially being labeled as persistant.’Mostly’ is defined "
        "by the config ‘prefilterArtifactsRatio’.",
    )
    prefilterArtifactsMaskPlanes: list[str] = _list(
        str,
        ("NO_DATA", "BAD", "SAT", "SUSPECT"),
        "Prefilter artifact candidates that are mostly covered by these bad mask planes.",
        checks=(_MASK_PLANES,),
    )
    prefilterArtifactsRatio: float = _scalar(
        float,
        0.05,
        "Prefilter artifact candidates with less than this fraction overlapping good pixels",
        bounds=_UNIT_INTERVAL,
    )

    def setDefaults(self) -> None:
        """Apply CompareWarp's computed defaults (drp_tasks' values as of 2025).

        Direct warps are stacked with a plain mean (EDGE is removed, not rejected);
        the static sky model is a 2.5-sigma, 3-iteration clipped mean of the
        PSF-matched warps; artifacts are footprints of at least 4 pixels beyond
        7.5 per-pixel sigma, of either sign, on warp minus model; sources on the
        model brighter than 300 sigma protect the artifacts they contain.
        """
        super().setDefaults()
        self.statistic = "MEAN"
        self.doUsePsfMatchedPolygons = True
        if "EDGE" in self.badMaskPlanes:
            self.badMaskPlanes.remove("EDGE")
        if "EDGE" not in self.removeMaskPlanes:
            self.removeMaskPlanes.append("EDGE")
        static = self.assembleStaticSkyModel
        static.badMaskPlanes = ["NO_DATA"]
        static.warpType = "psfMatched"
        static.connections.warpType = "psfMatched"
        static.statistic = "MEANCLIP"
        static.sigmaClip = 2.5
        static.clipIter = 3
        static.calcErrorFromInputVariance = True
        static.doWrite = False
        self.detect.doTempLocalBackground = False
        self.detect.reEstimateBackground = False
        self.detect.returnOriginalFootprints = False
        self.detect.thresholdPolarity = "both"
        self.detect.thresholdValue = 7.5
        self.detect.minPixels = 4
        self.detect.isotropicGrow = True
        self.detect.thresholdType = "pixel_stdev"
        self.detect.nSigmaToGrow = 0.4
        self.detectTemplate.nSigmaToGrow = 2.4
        self.detectTemplate.thresholdValue = 300
        self.detectTemplate.doTempLocalBackground = True
        self.detectTemplate.reEstimateBackground = True
        self.detectTemplate.background.useApprox = False
        self.detectTemplate.returnOriginalFootprints = False


@_configclass
class DcrAssembleCoaddConfig(CompareWarpAssembleCoaddConfig):
    """Configuration of a DCR-corrected coadd (``lsst.pipe.tasks.dcrAssembleCoadd``).

    Every field of the reference document, plus dcr_dask extensions
    (``effectiveWavelength``, ``bandwidth``, ``transmissionCurve``, ``band``, ``shiftMethod``,
    ``shiftPrecision``, ``subbandShiftMode``, ``useLocalGeometry``, ``residualWeighting``,
    ``artifactReference``, ``artifactTemplateError``). See :mod:`dcr_dask.config.base` for
    defaults, history, validation and file formats.

    Parameters
    ----------
    apply_defaults : bool, optional
        Run :meth:`setDefaults` (default True); False keeps the declared defaults.
    **kwargs
        Field values applied afterwards, as with :meth:`update`.

    Examples
    --------
    >>> config = DcrAssembleCoaddConfig(effectiveWavelength=478.0, bandwidth=147.0)
    >>> config.doNImage, config.detect.thresholdValue, config.resolved_max_num_iter()
    (True, 7.5, 9)
    >>> config.validate()
    """

    dcrNumSubfilters: int = _scalar(
        int,
        3,
        "Number of sub-filters to forward model chromatic effects to fit the supplied exposures.",
        bounds=Range(min=2),
    )
    maxNumIter: int | None = _scalar(
        int, None, "Maximum number of iterations of forward modeling.", bounds=_AT_LEAST_ONE
    )
    minNumIter: int | None = _scalar(
        int, None, "Minimum number of iterations of forward modeling.", bounds=_AT_LEAST_ONE
    )
    convergenceThreshold: float = _scalar(
        float,
        0.001,
        "Target relative change in convergence between iterations of forward modeling.",
        bounds=_NON_NEGATIVE,
    )
    useConvergence: bool = _scalar(
        bool,
        True,
        "Use convergence test as a forward modeling end condition?If not set, skips "
        "calculating convergence and runs for maxNumIter iterations",
    )
    baseGain: float | None = _scalar(
        float,
        None,
        "Relative weight to give the new solution vs. the last solution when updating the "
        "model.A value of 1.0 gives equal weight to both solutions.Small values imply slower "
        "convergence of the solution, but can help prevent overshooting and failures in the "
        "fit.If baseGain is None, a conservative gain will be calculated from the number of "
        "subfilters.",
        bounds=_POSITIVE,
    )
    useProgressiveGain: bool = _scalar(
        bool,
        True,
        "Use a gain that slowly increases above baseGain to accelerate convergence? When "
        "calculating the next gain, we use up to 5 previous gains and convergence values.Can "
        "be set to False to force the model to change at the rate of baseGain.",
    )
    doAirmassWeight: bool = _scalar(
        bool,
        False,
        "Weight exposures by airmass? Useful if there are relatively few high-airmass "
        "observations.",
    )
    modelWeightsWidth: float = _scalar(
        float,
        3,
        "Width of the region around detected sources to include in the DcrModel.",
        bounds=_NON_NEGATIVE,
    )
    useModelWeights: bool = _scalar(
        bool, True, "Width of the region around detected sources to include in the DcrModel."
    )
    splitSubfilters: bool = _scalar(
        bool,
        True,
        "Calculate DCR for two evenly-spaced wavelengths in each subfilter.Instead of at the "
        "midpoint",
    )
    splitThreshold: float = _scalar(
        float,
        0.1,
        "Minimum DCR difference within a subfilter to use splitSubfilters, in pixels.Set to 0 "
        "to always split the subfilters.",
        bounds=_NON_NEGATIVE,
    )
    regularizeModelIterations: float = _scalar(
        float,
        2.0,
        "Maximum relative change of the model allowed between iterations.Set to zero to disable.",
        bounds=_NON_NEGATIVE,
        checks=(_ZERO_OR_ABOVE_ONE,),
    )
    regularizeModelFrequency: float = _scalar(
        float,
        4.0,
        "Maximum relative change of the model allowed between subfilters.Set to zero to disable.",
        bounds=_NON_NEGATIVE,
        checks=(_ZERO_OR_ABOVE_ONE,),
    )
    convergenceMaskPlanes: list[str] = _list(
        str,
        ("DETECTED",),
        "Mask planes to use to calculate convergence.",
        checks=(_MASK_PLANES,),
    )
    regularizationWidth: int = _scalar(
        int,
        2,
        "Minimum radius of a region to include in regularization, in pixels.",
        bounds=_AT_LEAST_ONE,
    )
    imageInterpOrder: int = _scalar(
        int,
        3,
        "The order of the spline interpolation used to shift the image plane.",
        bounds=Range(1, 5),
    )
    accelerateModel: float = _scalar(
        float,
        3,
        "Factor to amplify the differences between model planes by to speed convergence.",
        bounds=Range(min=1),
    )
    doCalculatePsf: bool = _scalar(
        bool,
        False,
        "Set to detect stars and recalculate the PSF from the final coadd.Otherwise the PSF "
        "is estimated from a selection of the best input exposures",
    )
    detectPsfSources: SourceDetectionConfig = _sub(
        SourceDetectionConfig,
        "Task to detect sources for PSF measurement, if doCalculatePsf is set.",
        reference=_DETECTION_REFERENCE,
    )
    measurePsfSources: SingleFrameMeasurementConfig = _sub(
        SingleFrameMeasurementConfig,
        "Task to measure sources for PSF measurement, if doCalculatePsf is set.",
        reference="lsst.meas.base.sfm.SingleFrameMeasurementConfig",
    )
    measurePsf: MeasurePsfConfig = _sub(
        MeasurePsfConfig,
        "Task to measure the PSF of the coadd, if doCalculatePsf is set.",
        reference="lsst.pipe.tasks.measurePsf.MeasurePsfConfig",
    )
    effectiveWavelength: float | None = _scalar(
        float,
        None,
        "dcr_dask extension. Effective wavelength of the filter, in nm. When None it is "
        "computed from transmissionCurve, else taken from the standard band (band, else the "
        "warps' band).",
        bounds=_POSITIVE,
        extension=True,
    )
    bandwidth: float | None = _scalar(
        float,
        None,
        "dcr_dask extension. Bandwidth of the filter, in nm: the sub-bands split "
        "[effectiveWavelength - bandwidth/2, effectiveWavelength + bandwidth/2] evenly. When "
        "None it is computed from transmissionCurve, else taken from the standard band "
        "(band, else the warps' band).",
        bounds=_POSITIVE,
        extension=True,
    )
    transmissionCurve: str | None = _scalar(
        str,
        None,
        "dcr_dask extension. Path of a two-column text file (wavelength in nm, throughput) "
        "describing the filter; it supplies effectiveWavelength and bandwidth when these are "
        "None, and the weights of subbandShiftMode='throughput'.",
        checks=(Check(lambda value: bool(value.strip()), "must be a non-empty path"),),
        extension=True,
    )
    band: str | None = _scalar(
        str,
        None,
        "dcr_dask extension. Name of a standard band (dcr_dask.physics.bands: lsst-u ... lsst-y, "
        "also u g r i z y; hsc-g, hsc-r, hsc-r2, hsc-i, hsc-i2, hsc-z, hsc-y, also HSC-G ... "
        "HSC-Y; decam-g, decam-r, decam-i, decam-z, decam-Y). It supplies whatever of "
        "effectiveWavelength, bandwidth and the throughput curve of "
        "subbandShiftMode='throughput' the config leaves unset; values set explicitly win. "
        "When None and no transmissionCurve is given, the warps' band is looked up instead. "
        "Not to be combined with transmissionCurve.",
        checks=(
            Check(
                lambda value: value in accepted_band_names(),
                f"is not a standard band; known bands (aliases): {known_bands_text()}",
            ),
        ),
        extension=True,
    )
    brightObjectMaskFile: str | None = _scalar(
        str,
        None,
        "dcr_dask extension. Path of a ds9 region file of bright objects (circles, boxes, "
        "ellipses, polygons; sky or image coordinates): with doMaskBrightObjects, the output "
        "mask gets the plane brightObjectMaskName on every pixel whose centre lies inside "
        "one. --bright-object-mask FILE on the command line sets it and doMaskBrightObjects.",
        checks=(Check(lambda value: bool(value.strip()), "must be a non-empty path"),),
        extension=True,
    )
    shiftMethod: str = _scalar(
        str,
        "sinc",
        "dcr_dask extension. How images are shifted: 'spline' (spline interpolation of "
        "order imageInterpOrder, as the reference), 'sinc' (a Kaiser-windowed sinc kernel "
        "applied in Fourier space: as fast as 'fourier', and local, so results do not "
        "depend on subregionSize) or 'fourier' (exact sub-pixel translation by a phase "
        "ramp in Fourier space). The default is 'sinc': as accurate as 'spline' against "
        "the simulator's truth (benchmarks/bench_accuracy.py), faster, and independent of "
        "subregionSize; set 'spline' to follow the reference step by step.",
        allowed=("spline", "sinc", "fourier"),
        extension=True,
    )
    shiftPrecision: str = _scalar(
        str,
        "single",
        "dcr_dask extension. Floating-point precision of the 'sinc' and 'fourier' shift "
        "transforms: 'single' (float32/complex64: about 1.7 times faster, errors against the "
        "simulator's truth unchanged, results reproducible across subregionSize to float32 "
        "rounding) or 'double' (float64/complex128). 'spline' always works in float64.",
        allowed=("single", "double"),
        extension=True,
    )
    subbandShiftMode: str = _scalar(
        str,
        "edges",
        "dcr_dask extension. DCR shift of a sub-band: 'edges' (the reference: mean of the "
        "differential refraction at the sub-band's two edges) or 'throughput' (differential "
        "refraction averaged over the sub-band, weighted by transmissionCurve).",
        allowed=("edges", "throughput"),
        extension=True,
    )
    useLocalGeometry: bool = _scalar(
        bool,
        False,
        "dcr_dask extension. Evaluate airmass and parallactic angle at the centre of each "
        "subregion instead of at the boresight (the reference); matters on tiles of a degree "
        "or more.",
        extension=True,
    )
    residualWeighting: str = _scalar(
        str,
        "equal",
        "dcr_dask extension. Weights of the visits when their residuals are stacked into the "
        "model update: 'equal' (the reference) or 'inverseVariance' (by each visit's inverse "
        "variance).",
        allowed=("equal", "inverseVariance"),
        extension=True,
    )
    artifactReference: str = _scalar(
        str,
        "static",
        "dcr_dask extension. Image that the PSF-matched warps are compared with to find "
        "artifacts: 'static' (the reference: the static sky model) or 'dcrTemplate' (each "
        "visit's DCR-matched template from a DCR fit to the PSF-matched warps, run without "
        "frequency regularization and for dcrNumSubfilters to 9 x dcrNumSubfilters iterations "
        "(threshold 0.001), "
        "which leaves no "
        "DCR residual; positive and negative footprints are then detected and epoch-counted "
        "apart, and clipped pixels are also left out of the DCR fit).",
        allowed=("static", "dcrTemplate"),
        extension=True,
    )
    artifactTemplateError: float = _scalar(
        float,
        0.0,
        "dcr_dask extension. With artifactReference='dcrTemplate': fractional error of the "
        "DCR-matched templates, added in quadrature to the variance of the comparison "
        "((error x template)^2), so that the small mismatch left at bright sources is not "
        "taken for an artifact; it also hides artifacts crossing bright sources, and 0 "
        "(the default) found more artifacts in benchmarks/bench_artifacts.py.",
        checks=(Check(lambda value: 0 <= value < 1, "must be in [0, 1)"),),
        extension=True,
    )

    excludeClippedFromFit: bool = _scalar(
        bool,
        True,
        "dcr_dask extension. Leave the artifacts (the CLIPPED pixels: CompareWarp's transients "
        "and, with doFindCosmicRays, the cosmic rays) out of the DCR fit and its visit weights, "
        "as they are left out of the coadd. The reference keeps them in the fit, because "
        "against a static model DCR itself leaves residuals that may be clipped "
        "(reference_overrides() sets False); with artifactReference='dcrTemplate' they are "
        "always left out. Kept in, an artifact's leftover flux is fitted as a sub-band's "
        "colour: on GalSim g tiles faint-star template centroids were 1.5 times worse "
        "(benchmarks/README.md).",
        extension=True,
    )

    doFindCosmicRays: bool = _scalar(
        bool,
        True,
        "dcr_dask extension. Find cosmic rays on each direct warp as single-visit processing "
        "does (pixels sharper than the visit's PSF allows: cosmicRayMinSigma, "
        "cosmicRayCond3Fac, cosmicRayCond3Fac2, cosmicRayGrow) and clip them with "
        "CompareWarp's artifacts. CompareWarp compares PSF-matched warps, where a one-pixel "
        "cosmic ray is spread over the PSF, and preserves those lying on sources; the "
        "reference has no such step (reference_overrides() turns it off).",
        extension=True,
    )
    cosmicRayMinSigma: float = _scalar(
        float,
        6.0,
        "dcr_dask extension. With doFindCosmicRays: a cosmic-ray pixel is at least this many "
        "sigmas (sqrt(variance)) above zero.",
        bounds=Range(0.0, None, min_inclusive=False),
        extension=True,
    )
    cosmicRayCond3Fac: float = _scalar(
        float,
        2.5,
        "dcr_dask extension. With doFindCosmicRays: sigmas taken off a pixel, and added to the "
        "mean of its two neighbours, before their ratio is compared with the PSF's.",
        bounds=_NON_NEGATIVE,
        extension=True,
    )
    cosmicRayCond3Fac2: float = _scalar(
        float,
        0.6,
        "dcr_dask extension. With doFindCosmicRays: margin on the PSF's contrast; a pixel is a "
        "cosmic ray when it is sharper than 1/cosmicRayCond3Fac2 times the visit's PSF (peak "
        "over the mean of its two neighbours) along one of four directions. 0.8 clipped the "
        "cores of bright stars on GalSim tiles; 0.6 none (benchmarks/README.md).",
        bounds=Range(0.0, 1.0, min_inclusive=False),
        extension=True,
    )
    cosmicRayGrow: int = _scalar(
        int,
        1,
        "dcr_dask extension. With doFindCosmicRays: pixels the cosmic rays are grown by "
        "(3x3 per pixel), for the charge beside the track.",
        bounds=Range(min=0),
        extension=True,
    )

    detectModelSources: SourceDetectionConfig = _sub(
        SourceDetectionConfig,
        "dcr_dask extension. Detection of the sources that the convergence metric "
        "(convergenceMaskPlanes) and the model weights (useModelWeights) use when the warps "
        "carry no DETECTED pixels: on the template smoothed with a Gaussian of its PSF, "
        "thresholded in units of the smoothed image's own noise, as single-visit source "
        "detection does (5 sigma, grown by 2.4 PSF sigma). The reference has no such step "
        "and stops after one update there.",
        reference=_DETECTION_REFERENCE,
        extension=True,
    )

    frequencyClamp: str = _scalar(
        str,
        "smoothedColour",
        "dcr_dask extension. How regularizeModelFrequency bounds each sub-band plane's ratio "
        "to the mean of the planes: 'planes' (the reference: each sharp plane is clamped "
        "against the smoothed mean, which also clamps the cores of sources sharper than the "
        "smoothing whatever their colour; with a factor of 2 the templates were worse than the "
        "plain coadd), 'smoothed' (the ratio of the plane and of the mean, both smoothed over "
        "regularizationWidth, is clipped to [1/sqrt(factor), sqrt(factor)]: three times "
        "better bright-star centroids in 0.45-0.6 arcsec seeing, equal at 0.6-1.0, but "
        "a ring of 2-3 % of the peak around very bright stars; benchmarks/README.md) or "
        "'smoothedColour' (the default: clipped as 'smoothed', then only the colour, each "
        "ratio over the mean ratio of the sub-bands, is sharpened: the mean ratio, whose "
        "sharpening made the ring, stays smooth; at airmass <= 1.15 in r the templates stay "
        "below the plain coadd's error where 'planes' went above it; "
        "reference_overrides() restores 'planes').",
        allowed=("planes", "smoothed", "smoothedColour"),
        extension=True,
    )

    startingModel: str = _scalar(
        str,
        "directCoadd",
        "dcr_dask extension. What the DCR fit starts from (and blends faint sources toward, "
        "with useModelWeights) when no template is given: 'directCoadd' (the coadd of the "
        "direct warps with CompareWarp's artifacts rejected, at the visits' own PSFs) or "
        "'staticModel' (the reference: the static sky model of the PSF-matched warps, "
        "blurred to the model PSF).",
        allowed=("directCoadd", "staticModel"),
        extension=True,
    )

    psfForwardModel: str = _scalar(
        str,
        "gaussian",
        "dcr_dask extension. Which PSF each visit's template is made at in the DCR fit: "
        "'gaussian' (the default: the model is at a sharp kept visit's PSF width across "
        "DCR, psfModelQuantile; each visit's template is convolved with the Gaussian that "
        "widens it to the visit's PSF and its residual back-projected through it, the update "
        "preconditioned per frequency; templates of visits given later are widened to "
        "theirs) or 'none' (the reference: one model for every visit, so a visit whose "
        "seeing differs from the others' is fitted with the wrong width, which leaks into "
        "the sub-bands' colours, and a template is at no visit's PSF). On GalSim and the "
        "package's Moffat tiles (5 seeds each) 'gaussian' gave better held-out centroids "
        "of all stars and matched differences than 'none' on the mean in every band and "
        "airmass range measured; bright stars at airmass <= 1.15 in r were worse "
        "(benchmarks/README.md).",
        allowed=("none", "gaussian"),
        extension=True,
    )

    psfModelQuantile: float = _scalar(
        float,
        0.2,
        "dcr_dask extension. With psfForwardModel='gaussian': which of the kept visits' PSF "
        "widths across DCR the model is at, as a quantile of them: 0.2 (the default) the "
        "k-th sharpest with k = ceil(0.2 x the number of visits), 0 the sharpest. Every "
        "visit at least as wide as the model is widened to its own PSF; one sharper than "
        "it is fitted at the model's width, so a single visit in much better seeing than "
        "the rest does not force every other visit to be deconvolved to its PSF. On GalSim "
        "tiles (5 seeds) 0.2 gave better centroids and matched differences than 0 in g, "
        "and at airmass <= 1.15 in i a largest matched difference of 0.86 of the plain "
        "coadd's where 0 gave 1.25 (benchmarks/README.md).",
        checks=(Check(lambda value: 0 <= value <= 1, "must be in [0, 1]"),),
        extension=True,
    )

    def setDefaults(self) -> None:
        """Apply the DCR task's computed defaults on top of CompareWarp's.

        Writes an nImage; the static sky model (PSF-matched, as CompareWarp sets it)
        is neither written nor given an nImage, since the DCR coadd replaces them;
        PSF stars are bright (50 per-pixel sigma, positive, at least 25 pixels).
        """
        super().setDefaults()
        self.doNImage = True
        self.connections.outputCoaddName = "dcr"
        self.assembleStaticSkyModel.doNImage = False
        self.assembleStaticSkyModel.doWrite = False
        self.detectPsfSources.returnOriginalFootprints = False
        self.detectPsfSources.thresholdPolarity = "positive"
        self.detectPsfSources.thresholdValue = 50
        self.detectPsfSources.nSigmaToGrow = 2
        self.detectPsfSources.minPixels = 25
        self.detectPsfSources.thresholdType = "pixel_stdev"
        # dcr_dask default, not the reference's (reference_overrides() restores it): on
        # realistic (Moffat) tiles a model PSF with a wing clipped 2.4x the stars' pixels
        # (1.7 % instead of 0.7 %) at equal centroids (benchmarks/bench_realistic.py)
        self.modelPsf.addWing = False
        # dcr_dask defaults, not the reference's (None, None and 0.001, restored by
        # reference_overrides()): with at most 3 x dcrNumSubfilters iterations the fit of
        # each subregion stopped 'diverged' after 7-11 iterations on a small rise of the
        # metric, far from its solution; at least 30 and up to 60 iterations cut the
        # held-out centroid error of bright stars on GalSim tiles by a third (5 seeds,
        # benchmarks/bench_realistic.py)
        # and four sub-bands instead of three: 0.078 +- 0.040 of the plain coadd's bright-star
        # centroid error instead of 0.120 +- 0.056 (GalSim g, 5 seeds, same iteration limits),
        # faint stars 0.130 against 0.143; in r (DCR three times smaller) no worse
        self.dcrNumSubfilters = DCR_DASK_NUM_SUBFILTERS
        self.minNumIter = DCR_DASK_MIN_NUM_ITER
        self.maxNumIter = DCR_DASK_MAX_NUM_ITER
        self.convergenceThreshold = DCR_DASK_CONVERGENCE_THRESHOLD
        # dcr_dask default, not CompareWarp's 300 (reference_overrides() restores it): at
        # 300 per-pixel sigmas of the static model only the brightest stars protect the
        # artifact candidates they contain, and a visit at airmass 2 with the sharpest seeing
        # lost up to a fifth of its bright-star pixels to their DCR residuals (2.1 % of all
        # bright-source pixels on a package Moffat tile); cosmic rays on sources are found on
        # the direct warps instead (doFindCosmicRays). Measured in benchmarks/README.md.
        self.detectTemplate.thresholdValue = DCR_DASK_TEMPLATE_THRESHOLD
        sources = self.detectModelSources
        sources.thresholdValue = 5.0
        sources.thresholdType = "pixel_stdev"
        sources.thresholdPolarity = "positive"
        sources.minPixels = 1
        sources.nSigmaToGrow = 2.4
        sources.doTempLocalBackground = False
        sources.reEstimateBackground = False

    def resolved_min_num_iter(self) -> int:
        """Return ``minNumIter``, or ``dcrNumSubfilters`` when it is None.

        Returns
        -------
        n : int
            Minimum number of forward-modelling iterations.
        """
        return self.dcrNumSubfilters if self.minNumIter is None else self.minNumIter

    def resolved_max_num_iter(self) -> int:
        """Return ``maxNumIter``, or ``3 * dcrNumSubfilters`` when it is None.

        Returns
        -------
        n : int
            Maximum number of forward-modelling iterations.
        """
        return 3 * self.dcrNumSubfilters if self.maxNumIter is None else self.maxNumIter

    def resolved_base_gain(self) -> float:
        """Return ``baseGain``, or the conservative ``1 / (dcrNumSubfilters - 1)`` when None.

        The one home of this default: the fit reads it from here
        (:class:`dcr_dask.graph.assemble.FitSettings`).

        Returns
        -------
        gain : float
            Base gain of the model update (dimensionless).

        Raises
        ------
        ConfigError
            If ``baseGain`` is None and ``dcrNumSubfilters`` is below 2.
        """
        if self.baseGain is not None:
            return float(self.baseGain)
        if self.dcrNumSubfilters < 2:
            raise ConfigError(
                "baseGain",
                None,
                f"the default gain 1/(dcrNumSubfilters - 1) needs at least 2 sub-bands "
                f"(dcrNumSubfilters={self.dcrNumSubfilters}); set baseGain",
            )
        return 1.0 / (self.dcrNumSubfilters - 1)

    def _band_problems(self) -> list[ConfigError]:
        """The band must lie where the refraction formula is valid (Stone 1996)."""
        low, high = MIN_WAVELENGTH_NM, MAX_WAVELENGTH_NM
        wavelength, bandwidth = self.effectiveWavelength, self.bandwidth
        valid = f"{low:g}-{high:g} nm, where the refraction formula (Stone 1996) is valid"
        if wavelength is not None and not low < wavelength < high:
            return [self._error("effectiveWavelength", wavelength, f"must lie within {valid}")]
        if wavelength is None or bandwidth is None:
            return []
        blue, red = wavelength - bandwidth / 2, wavelength + bandwidth / 2
        if blue < low or red > high:
            return [
                self._error(
                    "bandwidth",
                    bandwidth,
                    f"puts the band around effectiveWavelength = {wavelength:g} nm at "
                    f"{blue:g}-{red:g} nm, which must lie within {valid}",
                )
            ]
        return []

    def inapplicable_settings(self) -> list[str]:
        """Fields set to a value that has no effect in dcr_dask, one message each.

        A field is reported when it differs from a new config's value and it, or the
        sub-configuration holding it, is in :data:`NOT_APPLICABLE`.

        Returns
        -------
        list of str
            ``"<field>=<value> has no effect in dcr_dask because <reason>"``.
        """
        fresh = type(self)()
        messages = []
        for name in self.names():
            owner = max(
                (key for key in NOT_APPLICABLE if name == key or name.startswith(key + ".")),
                key=len,
                default=None,
            )
            if owner is None:
                continue
            value = _plain_value(_dotted_get(self, name))
            if isinstance(value, dict) and isinstance(_dotted_get(self, name), ConfigBase):
                continue  # its own fields are reported one by one
            if value != _plain_value(_dotted_get(fresh, name)):
                messages.append(
                    f"{name}={value!r} has no effect in dcr_dask because {NOT_APPLICABLE[owner]}"
                )
        if not self.doCalculatePsf:
            for name in self.names():
                if not name.startswith(_ONLY_WITH_CALCULATE_PSF) or any(
                    name == key or name.startswith(key + ".") for key in NOT_APPLICABLE
                ):
                    continue
                value = _dotted_get(self, name)
                if isinstance(value, ConfigBase):
                    continue
                if _plain_value(value) != _plain_value(_dotted_get(fresh, name)):
                    messages.append(
                        f"{name}={_plain_value(value)!r} has no effect in dcr_dask because it "
                        "is used only with doCalculatePsf=True (the coadd PSF is then measured "
                        "on the coadd's stars)"
                    )
        return messages

    def validate(self) -> None:
        """Validate the config (see :meth:`ConfigBase.validate`), then warn about fields
        set to a value that has no effect in dcr_dask.

        Each such field gives one :class:`~dcr_dask.errors.InapplicableFieldWarning`
        (:meth:`inapplicable_settings`). Fields whose value asks for a result dcr_dask
        cannot give (:data:`REFUSED`) are errors.

        Raises
        ------
        ConfigError
            The single problem found, naming the dotted field and its value.
        ConfigErrors
            Several problems, raised together.
        """
        super().validate()
        messages = self.inapplicable_settings()
        if self.brightObjectMaskFile is not None and not self.doMaskBrightObjects:
            messages.append(
                f"brightObjectMaskFile={self.brightObjectMaskFile!r} has no effect in dcr_dask "
                "because doMaskBrightObjects is False"
            )
        for message in messages:
            # one location for every call: Python's default filter shows each message once
            warnings.warn(message, InapplicableFieldWarning, stacklevel=1)

    def _cross_checks(self) -> list[ConfigError]:
        # effectiveWavelength and bandwidth may all be unset: the warps' band supplies
        # them at run time (dcr_dask.physics.subbands.config_for_warps)
        problems = []
        if self.band is not None and self.transmissionCurve is not None:
            problems.append(
                self._error(
                    "band",
                    self.band,
                    f"and transmissionCurve = {self.transmissionCurve!r} both describe the "
                    "filter; give one of them",
                )
            )
        problems += self._band_problems()
        if self.doMaskBrightObjects and self.brightObjectMaskFile is None:
            problems.append(
                self._error(
                    "doMaskBrightObjects",
                    True,
                    "needs the bright-object regions: give a ds9 region file as "
                    "brightObjectMaskFile (--bright-object-mask FILE)",
                )
            )
        for name, (refused, instead) in REFUSED.items():
            if getattr(self, name) == refused:
                problems.append(self._error(name, refused, f"is not supported: {instead}"))
        detections: tuple[str, ...] = _RUN_DETECTIONS
        if self.doCalculatePsf:  # the PSF stars' detection runs only then
            detections = (*detections, "detectPsfSources")
        for detection in detections:
            kind = getattr(self, detection).thresholdType
            if kind in _WHOLE_IMAGE_THRESHOLDS:
                problems.append(
                    self._error(
                        f"{detection}.thresholdType",
                        kind,
                        "needs a statistic of the whole image, which block-wise detection "
                        "does not compute; use 'pixel_stdev' (per-pixel sigma) or 'value'",
                    )
                )
        return problems


# ------------------------------------------------- fields that cannot act here

_BUTLER = (
    "it names Butler datasets and tasks; dcr_dask reads the files it is given and writes --output"
)
_CALIB = 'dcr_dask reads calibrated warps in one flux unit (docs/file-formats.md, "Input warps")'
_DETECT_BACKGROUND = (
    "detection in dcr_dask runs on background-subtracted images (warps, their differences "
    "and stacks) and estimates no background"
)
_NOT_IN_STATIC = "the static sky model is an intermediate image of CompareWarp"

#: Fields shared by the main config and ``assembleStaticSkyModel`` that have no effect
#: in dcr_dask (both places), with the reason.
_NOT_APPLICABLE_ANYWHERE: dict[str, str] = {
    "coaddName": _BUTLER,
    "connections": _BUTLER,
    "hasFakes": _BUTLER + " (it only renames the datasets)",
    "warpType": (
        "the warps are the files given as inputs, and the PSF-matched ones those given with "
        "--psf-matched (or made here); no warp type is looked up by name"
    ),
    "select": "the inputs are the warp files given; nothing selects among them",
    "inputRecorder": (
        "the output store always records every visit with its weight, airmass, PSF and the "
        'reason it was rejected (inputs[] in docs/file-formats.md, "Output store")'
    ),
    "includeCalibVar": _CALIB + ", which carry no calibration error",
    "scaleZeroPoint": _CALIB + "; nothing is rescaled to a zero point",
    "doUsePsfMatchedPolygons": (
        "warps carry no valid polygons; pixels a PSF-matched warp cannot supply are NO_DATA"
    ),
}

#: Fields of ``assembleStaticSkyModel`` that act only in the main config.
_NOT_APPLICABLE_STATIC: dict[str, str] = {
    "modelPsf": "the PSF-matched warps are matched to the main config's modelPsf",
    "matchingKernelSize": "PSF matching uses the main config's matchingKernelSize",
    "subregionSize": "the tile is chunked by the main config's subregionSize",
    "saveMetadata": "run metadata follow the main config's saveMetadata",
    "doWrite": _NOT_IN_STATIC + " and is never written to the output",
    "doNImage": _NOT_IN_STATIC + "; its nImage is not kept",
    "doMaskBrightObjects": _NOT_IN_STATIC
    + "; the main config's doMaskBrightObjects masks the output",
    "brightObjectMaskName": _NOT_IN_STATIC
    + "; the main config's brightObjectMaskName names the plane",
    "doInterp": _NOT_IN_STATIC + "; the main config's doInterp fills the output's NO_DATA pixels",
    "interpImage": _NOT_IN_STATIC + "; the main config's interpImage applies to the output",
    "doAttachTransmissionCurve": _NOT_IN_STATIC,
    "coaddPsf": _NOT_IN_STATIC + "; only the output coadd carries a PSF",
}

_NOTHING_WARPED = (
    "each visit's PSF stamp is already on the tile's pixel grid (a warp's PSF HDU is given "
    "on the warp's pixels, and a PSF-FWHM is drawn on them as a Gaussian), so no PSF is "
    "resampled to make the coadd PSF: the stamps are only padded to one size"
)
_PSF_STARS = (
    "the coadd's PSF stars are fitted with a pixel-integrated Moffat profile "
    "(dcr_dask.kernels.psf_stars)"
)

#: Sub-configurations whose fields act only with ``doCalculatePsf``.
_ONLY_WITH_CALCULATE_PSF = ("detectPsfSources.", "measurePsf.")

#: Fields with no effect in dcr_dask, by dotted name, with the reason. A value other than
#: dcr_dask's default draws an :class:`~dcr_dask.errors.InapplicableFieldWarning` from
#: :meth:`DcrAssembleCoaddConfig.validate`; a sub-configuration's entry covers all its fields.
NOT_APPLICABLE: dict[str, str] = {
    **_NOT_APPLICABLE_ANYWHERE,
    **{f"assembleStaticSkyModel.{k}": v for k, v in _NOT_APPLICABLE_ANYWHERE.items()},
    **{f"assembleStaticSkyModel.{k}": v for k, v in _NOT_APPLICABLE_STATIC.items()},
    "doNImage": ('the output store always has n_image (docs/file-formats.md, "Output store")'),
    "interpImage.modelPsf": (
        "the interpolation over NO_DATA pixels uses no PSF (the reference's takes one and "
        "does not use it either)"
    ),
    **{
        f"{detection}.{field}": _DETECT_BACKGROUND
        for detection in ("detect", "detectTemplate", "detectModelSources")
        for field in (
            "reEstimateBackground",
            "background",
            "doTempLocalBackground",
            "tempLocalBackground",
            "doTempWideBackground",
            "tempWideBackground",
            "adjustBackground",
        )
    },
    **{
        f"{detection}.statsMask": "it is used only by thresholdType='stdev', which dcr_dask refuses"
        for detection in ("detect", "detectTemplate", "detectModelSources")
    },
    **{
        f"{detection}.combinedGrow": (
            "footprints are always grown together (a mask dilation), so neighbours may merge"
        )
        for detection in ("detect", "detectTemplate", "detectModelSources")
    },
    **{
        f"{detection}.returnOriginalFootprints": (
            "footprints are used only as the masks they set, which are the grown ones"
        )
        for detection in ("detect", "detectTemplate", "detectModelSources")
    },
    "scaleWarpVariance.background": (
        "the warps are background-subtracted; the noise is measured around zero"
    ),
    "coaddPsf.warpingKernelName": _NOTHING_WARPED,
    "coaddPsf.cacheSize": (
        "no PSF is warped (coaddPsf.warpingKernelName), so no warping kernel is tabulated or "
        "cached; the coadd PSF is made once per run"
    ),
    **{
        f"detectPsfSources.{field}": (
            "the coadd is background-subtracted (its warps are); a star's fit has its own "
            "constant background"
        )
        for field in (
            "reEstimateBackground",
            "background",
            "doTempLocalBackground",
            "tempLocalBackground",
            "doTempWideBackground",
            "tempWideBackground",
            "adjustBackground",
        )
    },
    "detectPsfSources.statsMask": (
        "it is used only by thresholdType='stdev', which dcr_dask refuses"
    ),
    "detectPsfSources.thresholdPolarity": "PSF stars are positive sources whatever the polarity",
    **{
        f"detectPsfSources.{field}": (
            "no footprint is grown for the PSF stars: each star is fitted on a disc of 2.5 "
            "first-guess FWHMs, and a peak of another source that near makes it a blend"
        )
        for field in ("nSigmaToGrow", "isotropicGrow", "combinedGrow", "returnOriginalFootprints")
    },
    "measurePsfSources.plugins": _PSF_STARS + ", not measured by meas_base plugins",
    "measurePsfSources.doReplaceWithNoise": (
        _PSF_STARS + "; a star with a bright neighbour is dropped and the pixels nearer to a "
        "faint one are left out of its fit, instead of replacing neighbours with noise"
    ),
    "measurePsf.starSelector": (
        "the PSF stars are chosen one way "
        "(bright, isolated, unmasked peaks: dcr_dask.kernels.psf_stars); "
        "there is no registry of star selectors"
    ),
}

#: Fields whose non-default value asks for a result dcr_dask cannot give: dotted name ->
#: (refused value, what to do instead). :meth:`DcrAssembleCoaddConfig.validate` raises.
REFUSED: dict[str, tuple[Any, str]] = {
    "doWrite": (
        False,
        "dcr_dask always writes the output store; to keep nothing, write to a temporary "
        "--output and delete it",
    ),
}

#: thresholdType values that block-wise detection cannot apply (they need a statistic of
#: the whole image): refused for the detections dcr_dask runs.
_WHOLE_IMAGE_THRESHOLDS = ("stdev", "variance")
_RUN_DETECTIONS = ("detect", "detectTemplate", "detectModelSources")


def _dotted_get(config: ConfigBase, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _plain_value(value: Any) -> Any:
    return value.toDict() if isinstance(value, ConfigBase) else _plain(value)
