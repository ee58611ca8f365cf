"""Metadata for the UI: pandera validation as asset-check results (counts, sample rows), previews, images."""

from __future__ import annotations

import base64

import dagster as dg
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

SAMPLE_ROWS = 10


def pandera_check_spec(asset: str, description: str | None = None) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        "pandera_schema",
        asset=asset,
        blocking=True,
        description=description or f"Validates {asset} against its pandera schema (b3quant_models.schemas).",
    )


def pandera_check_result(asset: str, schema: pa.DataFrameSchema, df: pd.DataFrame) -> dg.AssetCheckResult:
    """Validate lazily so every failing check is counted, not just the first."""
    try:
        schema.validate(df, lazy=True)
    except SchemaErrors as err:
        fc = err.failure_cases
        summary = fc.groupby(["column", "check"], dropna=False).size().reset_index(name="failures")
        return dg.AssetCheckResult(
            asset_key=asset,
            check_name="pandera_schema",
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "rows": len(df),
                "failure_cases": len(fc),
                "failures_by_check": dg.MetadataValue.md(summary.to_markdown(index=False)),
                "sample_failures": dg.MetadataValue.md(fc.head(SAMPLE_ROWS).to_markdown(index=False)),
            },
        )
    return dg.AssetCheckResult(
        asset_key=asset, check_name="pandera_schema", passed=True, metadata={"rows": len(df)}
    )


def table_preview(df: pd.DataFrame, n: int = 5) -> dg.MetadataValue:
    return dg.MetadataValue.md(df.head(n).to_markdown(index=False)) if len(df) else dg.MetadataValue.md("_empty_")


def png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    """A PNG inline in markdown metadata (the UI renders it under "Show Markdown")."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def days_complete_spec(asset: str, name: str, what: str) -> dg.AssetCheckSpec:
    """A non-blocking check that every day of the run has ``what``: a day without any replaces its
    stored rows with nothing, which must be said, not done silently (the day itself goes on)."""
    return dg.AssetCheckSpec(
        name,
        asset=asset,
        blocking=False,
        description=f"Every trading day of the run has {what}; a day without any is named here "
        "(its stored rows were replaced by none).",
    )


def days_complete_result(
    asset: str, name: str, days, counts: pd.Series, what: str, context: dg.AssetExecutionContext | None = None
) -> dg.AssetCheckResult:
    """``counts``: rows per ``trade_date`` (Timestamp index); ``days``: every partition day of the run."""
    per_day = {str(pd.Timestamp(d).date()): int(counts.get(pd.Timestamp(d), 0)) for d in days}
    empty = [d for d, n in per_day.items() if n == 0]
    if empty and context is not None:
        context.log.warning(f"{asset}: {len(empty)} day(s) without {what}: {', '.join(empty[:10])}")
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=name,
        passed=not empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "days": len(per_day),
            "days_without": len(empty),
            "empty_days": ", ".join(empty) if empty else "none",
            "min_per_day": min(per_day.values()) if per_day else 0,
        },
    )
