"""What a quant looks at in the UI: each day's surface and smiles per main underlying, and their time series.

``surface_pictures`` puts a small PNG per day and main underlying on that day's materialization (markdown
images: open the asset, pick a partition, every day is browsable); ``surface_summary`` draws ATM IV, skew,
term slope, fit RMSE and arbitrage counts over every stored day. Both read the analytics tables; the
drawing lives in ``b3quant_models.surface.pictures`` (matplotlib is imported when an asset runs).
"""

import dagster as dg
import pandas as pd

from ..shared.checks import png_markdown, table_preview
from ..shared.metadata import per_partition_metadata, rounded
from ..shared.partitions import TIMEZONE, single_run_backfill, trading_day_partitions
from ..shared.resources import data_dir

GROUP = "reports"
PICTURES_DIR = "plots"  # under $B3Q_DATA_DIR; the table stores paths relative to it


@dg.asset(
    partitions_def=trading_day_partitions,
    backfill_policy=single_run_backfill,
    metadata={"partition_expr": "trade_date"},
    ins={"option_iv": dg.AssetIn(), "iv_surface": dg.AssetIn(), "surface_grid_points": dg.AssetIn()},
    group_name=GROUP,
    compute_kind="matplotlib",
)
def surface_pictures(
    context: dg.AssetExecutionContext,
    option_iv: pd.DataFrame,
    iv_surface: pd.DataFrame,
    surface_grid_points: pd.DataFrame,
):
    """Per day and main underlying (PETR4, VALE3, BOVA11 when quoted, then the most quoted, six in all):
    the day's smiles with their fits and the tenor × delta grid, inline on the day's materialization
    (``surface_<TICKER>``); the PNGs are also written to ``$B3Q_DATA_DIR/plots/<day>/<TICKER>.png``."""
    from b3quant_models.option_iv import surface_quotes
    from b3quant_models.surface.batch import default_workers
    from b3quant_models.surface.pictures import day_pictures, main_underlyings

    unds = main_underlyings(iv_surface)
    context.log.info(f"drawing {iv_surface['trade_date'].nunique()} day(s) x {len(unds)} underlyings")
    pics = day_pictures(surface_quotes(option_iv), iv_surface, surface_grid_points, unds, workers=default_workers())
    root = data_dir()
    rows, png_of = [], {}
    for day, und, png in pics:
        rel = f"{PICTURES_DIR}/{day.date()}/{und}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(png)
        rows.append({"trade_date": day, "underlying_ticker": und, "picture": rel, "png_bytes": len(png)})
        png_of[(day, und)] = png
    table = pd.DataFrame(rows, columns=["trade_date", "underlying_ticker", "picture", "png_bytes"])
    table["trade_date"] = pd.to_datetime(table["trade_date"])

    def describe(g: pd.DataFrame, day: pd.Timestamp) -> dict:
        return {"pictures": len(g), "underlyings": ", ".join(g["underlying_ticker"]),
                "kilobytes": round(float(g["png_bytes"].sum()) / 1024, 1),
                **{f"surface_{u}": png_markdown(png_of[(day, u)], f"{u} {day.date()}") for u in g["underlying_ticker"]}}

    per_partition_metadata(context, table, describe)
    yield dg.Output(table, metadata={"pictures": len(table), "underlyings": ", ".join(unds),
                                     "kilobytes": round(float(table["png_bytes"].sum()) / 1024, 1)})


@dg.asset(
    ins={"iv_surface": dg.AssetIn(), "surface_grid_points": dg.AssetIn(), "surface_arbitrage": dg.AssetIn()},
    group_name=GROUP,
    compute_kind="matplotlib",
    # Once every session evening, after the day's surfaces (the daily job runs at 21:00).
    automation_condition=dg.AutomationCondition.on_cron("30 22 * * 1-5", TIMEZONE),
)
def surface_summary(
    context: dg.AssetExecutionContext,
    iv_surface: pd.DataFrame,
    surface_grid_points: pd.DataFrame,
    surface_arbitrage: pd.DataFrame,
) -> pd.DataFrame:
    """Per stored day and main underlying: ATM IV, 25-delta skew, term slope (vol points), median fit RMSE
    and arbitrage findings before/after repair, as a table and as time-series pictures."""
    from b3quant_models.surface.pictures import main_underlyings, summary_plot, surface_summary_table

    unds = main_underlyings(iv_surface)
    table = surface_summary_table(iv_surface, surface_grid_points, surface_arbitrage, unds)
    last = table[table["trade_date"] == table["trade_date"].max()] if len(table) else table
    context.add_output_metadata({
        "days": int(table["trade_date"].nunique()),
        "underlyings": ", ".join(unds),
        "time_series": png_markdown(summary_plot(table), "ATM IV, skew, term slope, fit RMSE, arbitrage")
        if len(table) else dg.MetadataValue.md("_no surfaces stored_"),
        "last_day": table_preview(last.round(3), n=len(unds)),
        **rounded({f"mean_{c}": float(table[c].mean()) for c in ("atm_iv", "skew_25d", "term_slope", "fit_rmse")}
                  if len(table) else {}),
    })
    return table
