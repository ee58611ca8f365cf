"""Feature and target tables for next-day implied-volatility forecasting (see docs/models.md).

Entry points used by the pipeline: ``build_option_features``/``build_targets`` (per option series),
``build_grid_features``/``build_grid_targets`` (per surface-grid point), ``FEATURE_COLUMNS``,
``GRID_FEATURE_COLUMNS``, the pandera schemas (resolved on first access: pandera is a slow import the
service does not need), the ``TrainingDataset`` the models train on (``option_training_dataset``/
``grid_training_dataset``) and the ``SeriesHistory`` models that look back read. ``day_context`` scores
contracts of a stored day. Never imports dagster/bentoml.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from b3quant_models.features.common import DEFAULT_LOOKBACKS, underlying_features
from b3quant_models.features.dataset import (
    TrainingDataset,
    as_dataset,
    dataset_from_frame,
    grid_training_dataset,
    option_training_dataset,
    sample_market_truth,
)
from b3quant_models.features.grid import (
    GRID_FEATURE_COLUMNS,
    GRID_KEY_COLUMNS,
    build_grid_features,
    build_grid_targets,
    grid_feature_columns,
)
from b3quant_models.features.history import SeriesHistory
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
    "SeriesHistory",
    "TrainingDataset",
    "as_dataset",
    "build_grid_features",
    "build_grid_targets",
    "build_option_features",
    "build_targets",
    "dataset_from_frame",
    "feature_columns",
    "features_schema",
    "grid_feature_columns",
    "grid_features_schema",
    "grid_training_dataset",
    "option_training_dataset",
    "sample_market_truth",
    "surface_summary",
    "svi_iv",
    "underlying_features",
]
