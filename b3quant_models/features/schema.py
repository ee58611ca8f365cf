"""pandera contracts for the feature and target tables (the boundary between features and models)."""

from __future__ import annotations

from collections.abc import Sequence

import pandera.pandas as pa
from pandera.pandas import Check, Column

from b3quant_models.features.common import DEFAULT_LOOKBACKS
from b3quant_models.features.grid import GRID_KEY_COLUMNS, grid_feature_columns
from b3quant_models.features.option import KEY_COLUMNS, feature_columns

# Features that exist for every valid row; the rest may be NaN (no history yet, no fitted slice, ...).
_REQUIRED = {
    "iv": Check.gt(0),
    "k": None,
    "abs_k": Check.ge(0),
    "t": Check.gt(0),
    "bdays": Check.ge(0),
    "is_call": Check.isin([0.0, 1.0]),
    "day_of_week": Check.in_range(0, 6),
    "bdays_to_monthly_expiry": Check.ge(0),
}


def features_schema(lookbacks: Sequence[int] = DEFAULT_LOOKBACKS) -> pa.DataFrameSchema:
    cols = {
        "trade_date": Column("datetime64[ns]"),
        "ticker": Column(str),
        "underlying_ticker": Column(str, nullable=True),
    }
    for c in feature_columns(lookbacks):
        chk = _REQUIRED.get(c)
        cols[c] = Column(float, chk, nullable=c not in _REQUIRED) if chk is not None else Column(
            float, nullable=c not in _REQUIRED)
    return pa.DataFrameSchema(
        cols, unique=KEY_COLUMNS, strict=False, name="option_features",
        description="Per option series and day, features known at that day's close (float64).",
    )


def grid_features_schema(lookbacks: Sequence[int] = DEFAULT_LOOKBACKS) -> pa.DataFrameSchema:
    cols = {
        "trade_date": Column("datetime64[ns]"),
        "underlying_ticker": Column(str),
        "tenor_days": Column(float, Check.gt(0)),  # also a model input, so float64 like the rest
        "delta": Column(float, Check.in_range(0, 1)),
    }
    for c in grid_feature_columns(lookbacks):
        if c in cols:
            continue
        cols[c] = Column(float, Check.gt(0) if c == "iv" else None, nullable=c != "iv")
    return pa.DataFrameSchema(cols, unique=GRID_KEY_COLUMNS, strict=False, name="grid_features")


FEATURES_SCHEMA = features_schema()
GRID_FEATURES_SCHEMA = grid_features_schema()

TARGETS_SCHEMA = pa.DataFrameSchema(
    {
        "trade_date": Column("datetime64[ns]"),
        "ticker": Column(str),
        "target_date": Column("datetime64[ns]"),
        "iv": Column(float, Check.gt(0)),
        "iv_next": Column(float, Check.gt(0)),
        "iv_change": Column(float),
    },
    checks=[Check(lambda df: df["target_date"] > df["trade_date"], name="target_after_feature_day")],
    unique=KEY_COLUMNS,
    strict=True,
    name="option_targets",
)
