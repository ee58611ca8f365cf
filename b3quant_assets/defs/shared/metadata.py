"""Metadata that describes each partition of a range run, with floats rounded for the UI.

A range run (one run per backfill: ``single_run_backfill``) emits one materialization per partition day,
and Dagster copies the output's metadata onto every one of them, so a day would show the whole range's
totals (6,195 surface slices for one day). ``context.add_asset_metadata(..., partition_key=day)``
attaches metadata to one partition's event, overriding the output's keys of the same name: each asset
computes its numbers per day with :func:`per_partition_metadata`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from .partitions import partition_days

DIGITS = 4  # enough for shares (0.1234) and vol points (2.3849); the UI prints every digit it is given


def round_float(f: float, digits: int = DIGITS) -> float:
    """``digits`` decimals, or ``digits`` significant digits below 1 (0.0001235); NaN and inf unchanged."""
    if not math.isfinite(f) or f == 0 or abs(f) >= 1:
        return round(f, digits) if math.isfinite(f) else f
    return round(f, digits - 1 - math.floor(math.log10(abs(f))))


def rounded(meta: Mapping[str, Any], digits: int = DIGITS) -> dict[str, Any]:
    """``meta`` with floats (numpy's too) rounded by :func:`round_float`; numpy integers and booleans become
    Python ones (Dagster's metadata accepts only those); other values are left alone."""
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if isinstance(v, bool | np.bool_):
            out[k] = bool(v)
        elif isinstance(v, int | np.integer):
            out[k] = int(v)
        elif isinstance(v, float | np.floating):
            out[k] = round_float(float(v), digits)
        else:
            out[k] = v
    return out


def per_partition_metadata(
    context: dg.AssetExecutionContext,
    frame: pd.DataFrame,
    describe: Callable[[pd.DataFrame, pd.Timestamp], Mapping[str, Any]],
    *,
    asset_key: str | None = None,
    date_col: str = "trade_date",
) -> None:
    """Attach ``describe(rows of the day, day)`` to each partition day's materialization (every day of the
    run, those without rows too), plus the day's own ``dagster/partition_row_count``.

    Call it before yielding the asset's ``Output``: the materializations are emitted when it is yielded."""
    days = [pd.Timestamp(d) for d in partition_days(context)]
    by_day: dict[pd.Timestamp, pd.DataFrame] = {}
    if len(frame) and date_col in frame.columns:
        by_day = {pd.Timestamp(d): g for d, g in frame.groupby(pd.to_datetime(frame[date_col]).dt.normalize())}
    empty = frame.iloc[0:0]
    for day in days:
        rows = by_day.get(day, empty)
        meta = {**describe(rows, day), "dagster/partition_row_count": len(rows)}
        context.add_asset_metadata(rounded(meta), asset_key=asset_key, partition_key=str(day.date()))
