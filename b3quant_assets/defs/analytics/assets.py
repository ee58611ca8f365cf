"""Analytics assets: the day's risk-free rate and every option's implied volatility and Greeks."""

import dagster as dg
import pandas as pd

from b3quant_models import schemas
from b3quant_models.sources.rates import rates_for_days

from ..shared.checks import (
    days_complete_result,
    days_complete_spec,
    pandera_check_result,
    pandera_check_spec,
    table_preview,
)
from ..shared.metadata import per_partition_metadata, rounded
from ..shared.partitions import partition_days, single_run_backfill, trading_day_partitions
from .resources import RatesSource

GROUP = "analytics"


@dg.asset(
    partitions_def=trading_day_partitions,
    backfill_policy=single_run_backfill,
    metadata={"partition_expr": "trade_date"},
    check_specs=[pandera_check_spec("risk_free_rate")],
    group_name=GROUP,
    compute_kind="pandas",
)
def risk_free_rate(context: dg.AssetExecutionContext, rates_source: RatesSource):
    """CDI (252-day compounding) per trading day and its continuous equivalent r = ln(1 + CDI).

    A trading day without a published rate fails the run: a guessed rate would bias every IV.
    """
    days = partition_days(context)
    raw = rates_source.rates(min(days), max(days))
    df = rates_for_days(raw, days)
    df["trade_date"] = pd.to_datetime(df["trade_date"])
    df["source"] = raw.attrs.get("source", rates_source.mode)
    per_partition_metadata(context, df, lambda g, day: {
        "days": len(g), "mean_cdi_pct": float(100 * g["cdi_annual"].mean()) if len(g) else float("nan")})
    yield dg.Output(
        df,
        metadata=rounded(
            {"days": len(df), "mean_cdi_pct": float(100 * df["cdi_annual"].mean()), "source": df["source"].iat[0]}
        ),
    )
    yield pandera_check_result("risk_free_rate", schemas.RISK_FREE_RATE, df)


@dg.asset(
    partitions_def=trading_day_partitions,
    backfill_policy=single_run_backfill,
    metadata={"partition_expr": "trade_date"},
    check_specs=[
        pandera_check_spec("option_iv"),
        days_complete_spec("option_iv", "every_day_has_valid_ivs", "options with a valid IV"),
    ],
    group_name=GROUP,
    compute_kind="numba",
)
def option_iv(
    context: dg.AssetExecutionContext,
    option_quotes: pd.DataFrame,
    underlying_quotes: pd.DataFrame,
    risk_free_rate: pd.DataFrame,
):
    """Each option joined to its underlying's close by ISIN, with t, r, forward, log-moneyness,
    IV from the close and the bid/ask mid, Greeks, and a reason for every row without a usable IV."""
    from b3quant_models.option_iv import compute_option_iv  # numba kernels: imported when the asset runs

    rates = risk_free_rate
    df = compute_option_iv(option_quotes, underlying_quotes, rates)
    valid = df["iv_reason"] == "ok"
    reasons = df["iv_reason"].value_counts().rename_axis("iv_reason").reset_index(name="rows")
    context.log.info(f"{int(valid.sum())}/{len(df)} options with a valid IV")
    per_partition_metadata(context, df, _iv_day_metadata)
    yield dg.Output(
        df,
        metadata=rounded({
            "valid_iv_share": float(valid.mean()) if len(df) else 0.0,
            "valid_iv_rows": int(valid.sum()),
            "days_without_valid_iv": int(len(partition_days(context)) - df.loc[valid, "trade_date"].nunique()),
            "surface_eligible_rows": int(df["surface_eligible"].sum()),
            "reasons": dg.MetadataValue.md(reasons.to_markdown(index=False)),
            "preview": table_preview(df[valid]),
        }),
    )
    yield pandera_check_result("option_iv", schemas.OPTION_IV, df)
    counts = df[valid].groupby("trade_date").size()
    days = partition_days(context)
    yield days_complete_result("option_iv", "every_day_has_valid_ivs", days, counts, "valid IVs", context)


def _iv_day_metadata(g: pd.DataFrame, day: pd.Timestamp) -> dict:
    """option_iv's metadata for one day's rows."""
    ok = g["iv_reason"] == "ok"
    reasons = g["iv_reason"].value_counts().rename_axis("iv_reason").reset_index(name="rows")
    return {
        "valid_iv_share": float(ok.mean()) if len(g) else 0.0,
        "valid_iv_rows": int(ok.sum()),
        "days_without_valid_iv": int(not ok.any()),
        "surface_eligible_rows": int(g["surface_eligible"].sum()),
        "reasons": dg.MetadataValue.md(reasons.to_markdown(index=False) if len(g) else "_none_"),
        "preview": table_preview(g[ok]),
    }
