"""Feature and target tables for next-day implied-volatility forecasting (see docs/models.md).

Entry points used by the pipeline: ``build_option_features``/``build_targets`` (per option series),
``build_grid_features``/``build_grid_targets`` (per surface-grid point), ``FEATURE_COLUMNS``,
``GRID_FEATURE_COLUMNS`` and the pandera schemas (resolved on first access: pandera is a slow import the
service does not need). ``day_context`` scores contracts of a stored day. Never imports dagster/bentoml.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from b3quant_models.features.common import DEFAULT_LOOKBACKS, underlying_features
from b3quant_models.features.grid import (
    GRID_FEATURE_COLUMNS,
    GRID_KEY_COLUMNS,
    build_grid_features,
    build_grid_targets,
    grid_feature_columns,
)
from b3quant_models.features.option import (
    FEATURE_COLUMNS,
    ID_COLUMNS,
    KEY_COLUMNS,
    build_option_features,
    build_targets,
    feature_columns,
)
from b3quant_models.features.surface import SURFACE_COLUMNS, surface_summary, svi_iv

if TYPE_CHECKING:
    from b3quant_models.features.schema import (
        FEATURES_SCHEMA,
        GRID_FEATURES_SCHEMA,
        TARGETS_SCHEMA,
        features_schema,
        grid_features_schema,
    )

_SCHEMA_NAMES = frozenset({"FEATURES_SCHEMA", "GRID_FEATURES_SCHEMA", "TARGETS_SCHEMA", "features_schema",
                           "grid_features_schema"})


def __getattr__(name: str) -> Any:
    if name not in _SCHEMA_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.schema"), name)
    globals()[name] = value
    return value

__all__ = [
    "DEFAULT_LOOKBACKS",
    "FEATURES_SCHEMA",
    "FEATURE_COLUMNS",
    "GRID_FEATURES_SCHEMA",
    "GRID_FEATURE_COLUMNS",
    "GRID_KEY_COLUMNS",
    "ID_COLUMNS",
    "KEY_COLUMNS",
    "SURFACE_COLUMNS",
    "TARGETS_SCHEMA",
    "build_grid_features",
    "build_grid_targets",
    "build_option_features",
    "build_targets",
    "feature_columns",
    "features_schema",
    "grid_feature_columns",
    "grid_features_schema",
    "surface_summary",
    "svi_iv",
    "underlying_features",
]
