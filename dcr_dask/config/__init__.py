"""Configuration of a DCR coadd: an attrs replacement for Rubin's ``DcrAssembleCoaddConfig``.

Import everything from here (``from dcr_dask.config import DcrAssembleCoaddConfig``);
the modules of the package are an inner layout:

- :mod:`~dcr_dask.config.fields`: field metadata (:class:`FieldSpec`, :class:`Range`,
  :class:`Check`), type coercion and the declaration helpers of the schema;
- :mod:`~dcr_dask.config.history`: :class:`HistoryEntry`, where an assignment comes
  from, and the tracked list/dict values whose in-place changes are recorded;
- :mod:`~dcr_dask.config.base`: :class:`ConfigBase`, the pex_config methods; its
  documentation says how a config gets its values, how it is checked, and which
  file formats execute code;
- :mod:`~dcr_dask.config.files`: the file formats (Python, TOML, YAML, JSON);
- :mod:`~dcr_dask.config.reference`: the schema, :class:`BackgroundConfig` to
  :class:`DcrAssembleCoaddConfig`, dcr_dask's defaults (``DCR_DASK_*``),
  :data:`NOT_APPLICABLE` and :data:`REFUSED`;
- :mod:`~dcr_dask.config.overrides`: :func:`apply_overrides` (``--set``) and the
  presets (:data:`PRESETS`, ``--preset``).
"""

from __future__ import annotations

# Names imported ``as`` themselves are importable from here but not in ``__all__``.
from dcr_dask.config.base import ConfigBase
from dcr_dask.config.fields import Check, FieldSpec, Range
from dcr_dask.config.history import HistoryEntry
from dcr_dask.config.overrides import (
    PRESETS as PRESETS,
)
from dcr_dask.config.overrides import (
    apply_overrides,
    many_artifacts_overrides,
)
from dcr_dask.config.overrides import (
    reference_overrides as reference_overrides,
)
from dcr_dask.config.reference import (
    DCR_DASK_CONVERGENCE_THRESHOLD as DCR_DASK_CONVERGENCE_THRESHOLD,
)
from dcr_dask.config.reference import (
    DCR_DASK_MAX_NUM_ITER as DCR_DASK_MAX_NUM_ITER,
)
from dcr_dask.config.reference import (
    DCR_DASK_MIN_NUM_ITER as DCR_DASK_MIN_NUM_ITER,
)
from dcr_dask.config.reference import (
    DCR_DASK_NUM_SUBFILTERS as DCR_DASK_NUM_SUBFILTERS,
)
from dcr_dask.config.reference import (
    DCR_DASK_TEMPLATE_THRESHOLD as DCR_DASK_TEMPLATE_THRESHOLD,
)
from dcr_dask.config.reference import (
    NOT_APPLICABLE,
    REFUSED,
    AssembleCoaddConfig,
    BackgroundConfig,
    CoaddInputRecorderConfig,
    CoaddPsfConfig,
    CompareWarpAssembleCoaddConfig,
    Connections,
    DcrAssembleCoaddConfig,
    GaussianPsfFactory,
    InterpImageConfig,
    MeasurePsfConfig,
    ScaleVarianceConfig,
    ScaleZeroPointConfig,
    SelectImagesConfig,
    SingleFrameMeasurementConfig,
    SourceDetectionConfig,
)
from dcr_dask.errors import ConfigError as ConfigError
from dcr_dask.errors import ConfigErrors
from dcr_dask.errors import InapplicableFieldWarning as InapplicableFieldWarning
from dcr_dask.errors import InputError as InputError
from dcr_dask.errors import OverrideError as OverrideError

__all__ = [
    "NOT_APPLICABLE",
    "REFUSED",
    "AssembleCoaddConfig",
    "BackgroundConfig",
    "Check",
    "CoaddInputRecorderConfig",
    "CoaddPsfConfig",
    "CompareWarpAssembleCoaddConfig",
    "ConfigBase",
    "ConfigErrors",
    "Connections",
    "DcrAssembleCoaddConfig",
    "FieldSpec",
    "GaussianPsfFactory",
    "HistoryEntry",
    "InterpImageConfig",
    "MeasurePsfConfig",
    "Range",
    "ScaleVarianceConfig",
    "ScaleZeroPointConfig",
    "SelectImagesConfig",
    "SingleFrameMeasurementConfig",
    "SourceDetectionConfig",
    "apply_overrides",
    "many_artifacts_overrides",
]
