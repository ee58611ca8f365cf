"""Backtests as assets: daily P&L and positions per trading day, and the comparison of every strategy.

Carried positions and partitions: a position opened at D's close is still held on later days, so a
day's P&L depends on earlier decisions. Rather than chain partitions (each reading the previous one's
positions, which would force backfills to run one day after another), every run recomputes its days
from flat, starting ``WARMUP_SESSIONS`` sessions earlier (the partition mapping loads that window of
``option_iv``). Positions live at most ``MAX_HOLD_DAYS`` < ``WARMUP_SESSIONS`` sessions and a held
series keeps an IV observed inside its life, so a day computed alone equals the same day in a
backfill of the whole year (tested in tests/test_backtest.py). The engine takes seconds per year, so
the recomputation is cheap.
"""


from pathlib import Path

import dagster as dg
import pandas as pd

from b3quant_models import settings
from b3quant_models.backtest.compare import backtest_period, compare_strategies
from b3quant_models.backtest.lookahead import lookahead_check
from b3quant_models.backtest.metrics import goal_assessment, summarize
from b3quant_models.backtest.report import equity_curves_plot, strategy_report_plot
from b3quant_models.backtest.strategies import TRUTH_NEXT, standard_strategies
from b3quant_models.features.dataset import sample_market_truth
from b3quant_models.models.tracking import log_training_run

from ..ingestion.resources import CotahistFiles
from ..models.resources import MlflowTracking
from ..shared.checks import png_markdown, table_preview
from ..shared.metadata import per_partition_metadata
from ..shared.partitions import partition_days, single_run_backfill, trading_day_partitions
from ..shared.resources import data_dir
from .resources import MAX_HOLD_DAYS, BacktestSettings

GROUP = "backtests"
PREDICTIONS = "model_predictions"
WARMUP_SESSIONS = MAX_HOLD_DAYS + 10
WINDOW = dg.TimeWindowPartitionMapping(start_offset=-WARMUP_SESSIONS)


def report_dir() -> Path:
    """Where the report pictures are written: ``$B3Q_DATA_DIR/backtests``."""
    return data_dir() / "backtests"


def _truth(files: CotahistFiles) -> pd.DataFrame | None:
    """The sample market's true next-day IV (the oracle's input) from the truth file its manifest names
    beside the ingested files; None on real data."""
    return sample_market_truth(files.landing(), columns=(TRUTH_NEXT,))


def _underlyings(underlying_quotes: pd.DataFrame) -> pd.DataFrame:
    return underlying_quotes.rename(columns={"ticker": "underlying_ticker", "close": "spot"})[
        ["trade_date", "underlying_ticker", "spot"]
    ]


@dg.multi_asset(
    outs={
        "backtest_daily_pnl": dg.AssetOut(
            metadata={"partition_expr": "trade_date"},
            description="Per strategy, instrument and day: P&L split into delta (with the hedge), gamma, vega, "
            "theta and residual; costs; total = gross - costs.",
        ),
        "backtest_positions": dg.AssetOut(
            metadata={"partition_expr": "trade_date"},
            description="Options and hedge shares held at each close, with mark, IV (and its age) and Greeks.",
        ),
    },
    partitions_def=trading_day_partitions,
    backfill_policy=single_run_backfill,
    ins={
        "option_iv": dg.AssetIn(partition_mapping=WINDOW),
        "underlying_quotes": dg.AssetIn(partition_mapping=WINDOW),
        "model_predictions": dg.AssetIn(PREDICTIONS),
    },
    group_name=GROUP,
    compute_kind="pandas",
)
def backtest_books(
    context: dg.AssetExecutionContext,
    backtest_settings: BacktestSettings,
    cotahist_files: CotahistFiles,
    option_iv: pd.DataFrame,
    underlying_quotes: pd.DataFrame,
    model_predictions: pd.DataFrame,
):
    """Every strategy traded on the stored predictions of ``split``: decisions at D's close from D's
    forecasts, fills at D's best bid/ask, daily delta hedge, B3 costs and expiry settlement."""
    days = pd.to_datetime(partition_days(context))
    s = backtest_settings
    cmp = compare_strategies(
        option_iv, model_predictions, _truth(cotahist_files),
        strategies=standard_strategies(model_predictions, s.split, s.random_seed),
        config=s.strategy_configs(), costs=s.cost_model(), split=s.split,
        underlyings=_underlyings(underlying_quotes),
    ) if len(model_predictions) and (model_predictions["split"] == s.split).any() else None  # fmt: skip
    if cmp is None:
        context.log.warning(f"no stored predictions for split {s.split!r}: nothing to trade")
        daily, positions = _empty_daily(), _empty_positions()
    else:
        daily = cmp.daily[cmp.daily["trade_date"].isin(days)].reset_index(drop=True)
        positions = cmp.positions[cmp.positions["trade_date"].isin(days)].reset_index(drop=True)
    for key, frame in (("backtest_daily_pnl", daily), ("backtest_positions", positions)):
        per_partition_metadata(context, frame, lambda g, day: {"rows": len(g), "preview": table_preview(g)},
                               asset_key=key)
    yield dg.Output(daily, "backtest_daily_pnl", metadata={"rows": len(daily), "preview": table_preview(daily)})
    yield dg.Output(positions, "backtest_positions", metadata={"rows": len(positions),
                                                               "preview": table_preview(positions)})  # fmt: skip


def _empty_daily() -> pd.DataFrame:
    from b3quant_models.backtest.engine import DAILY_COLUMNS

    d = pd.DataFrame({c: pd.Series(dtype=float) for c in DAILY_COLUMNS})
    return d.astype({"trade_date": "datetime64[ns]", "strategy": object, "n_positions": "int64"}).assign(
        instrument=pd.Series(dtype=object)
    )


def _empty_positions() -> pd.DataFrame:
    from b3quant_models.backtest.engine import POSITION_COLUMNS

    p = pd.DataFrame({c: pd.Series(dtype=float) for c in POSITION_COLUMNS})
    return p.astype({"trade_date": "datetime64[ns]", "strategy": object, "kind": object, "ticker": object,
                     "underlying_ticker": object}).assign(instrument=pd.Series(dtype=object))  # fmt: skip


@dg.asset(
    group_name=GROUP,
    ins={
        "backtest_daily_pnl": dg.AssetIn(),
        "option_iv": dg.AssetIn(),
        "underlying_quotes": dg.AssetIn(),
        "model_predictions": dg.AssetIn(PREDICTIONS),
    },
    check_specs=[
        dg.AssetCheckSpec(
            "no_lookahead", asset="backtest_summary", blocking=True,
            description="Re-runs every strategy with every input row after a cut-off day altered (market, "
            "predictions, truth); decisions up to the cut-off must not change. The oracle, which reads D+1 by "
            "design, must be caught: that shows the check can fail.",
        )
    ],
    compute_kind="pandas",
)
def backtest_summary(
    context: dg.AssetExecutionContext,
    backtest_settings: BacktestSettings,
    mlflow: MlflowTracking,
    cotahist_files: CotahistFiles,
    backtest_daily_pnl: pd.DataFrame,
    option_iv: pd.DataFrame,
    underlying_quotes: pd.DataFrame,
    model_predictions: pd.DataFrame,
):
    """Metrics per strategy and instrument (Sharpe, Sortino, max drawdown, hit rate, turnover, break-even
    cost multiple), the goal check, the equity curves as a picture (UI and MLflow), one report per model."""
    s = backtest_settings
    daily = backtest_daily_pnl
    summary = summarize(daily, s.capital) if len(daily) else pd.DataFrame()
    goal = goal_assessment(summary) if len(summary) else pd.DataFrame()
    out_dir = report_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, bytes] = {}
    if len(summary):
        plots["equity_curves"] = equity_curves_plot(daily, summary)
        for _, row in summary.iterrows():
            if row["strategy"] in ("no_trade", "persistence"):
                continue
            d = daily[(daily["strategy"] == row["strategy"]) & (daily["instrument"] == row["instrument"])]
            plots[f"report_{row['strategy']}_{row['instrument']}"] = strategy_report_plot(
                d, row, f"{row['strategy']} ({row['instrument']})"
            )
    for name, png in plots.items():
        (out_dir / f"{name}.png").write_bytes(png)
    run_id = None
    if len(summary):
        metrics = {f"{r.instrument}.{r.strategy}.{m}": getattr(r, m) for r in summary.itertuples()
                   for m in ("sharpe", "sharpe_2x_costs", "sortino", "max_drawdown", "hit_rate", "turnover",
                             "break_even_cost_x", "net_pnl")}  # fmt: skip
        run_id = log_training_run(
            mlflow.uri(), s.experiment, params=s.model_dump(), test_metrics=metrics, plots=plots,
            extra_tables={"summary": summary, "goal": goal}, run_name="backtest",
            tags={"dagster_run_id": context.run_id, "asset": "backtest_summary"},
        )  # fmt: skip
    meta = {
        "summary": dg.MetadataValue.md(_fmt(summary)) if len(summary) else dg.MetadataValue.md("_no predictions_"),
        "goal": dg.MetadataValue.md(_fmt(goal)) if len(goal) else dg.MetadataValue.md("_no model_"),
        "report_dir": dg.MetadataValue.path(settings.data_relative(out_dir)),  # relative to B3Q_DATA_DIR
    }
    if run_id:
        meta["mlflow_run_id"] = run_id
    if "equity_curves" in plots:
        meta["equity_curves"] = png_markdown(plots["equity_curves"], "equity curves")
    yield dg.Output(summary, metadata=meta)
    yield _lookahead_result(s, cotahist_files, option_iv, underlying_quotes, model_predictions)


def _fmt(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, floatfmt=".3g")


def _lookahead_result(s: BacktestSettings, files, option_iv, underlying_quotes, predictions) -> dg.AssetCheckResult:
    p = predictions[predictions["split"] == s.split] if len(predictions) else predictions
    if p.empty:
        return dg.AssetCheckResult(passed=True, check_name="no_lookahead", metadata={"note": "no predictions"})
    _, last = backtest_period(predictions, s.split)
    days = pd.to_datetime(option_iv["trade_date"])
    market = option_iv[(days <= last)]
    und = _underlyings(underlying_quotes)
    cfg = s.strategy_configs()[0]
    rows = []
    for strat in standard_strategies(predictions, s.split, s.random_seed):
        for r in lookahead_check(strat, market, p, _truth(files), config=cfg, costs=s.cost_model(), underlyings=und):
            rows.append({"strategy": strat.name, "reads_future_by_design": strat.uses_future,
                         "cutoff": str(r.cutoff.date()), "unchanged": r.passed, "detail": r.detail})  # fmt: skip
    t = pd.DataFrame(rows)
    honest = t[~t["reads_future_by_design"]]
    leaks = honest[~honest["unchanged"]]
    oracle = t[t["reads_future_by_design"]]
    alive = bool(oracle.empty or (~oracle["unchanged"]).all())
    return dg.AssetCheckResult(
        check_name="no_lookahead",
        passed=bool(leaks.empty and alive),
        metadata={
            "leaking_strategies": ", ".join(sorted(leaks["strategy"].unique())) or "none",
            "oracle_caught": alive,
            "results": dg.MetadataValue.md(t.to_markdown(index=False)),
        },
    )
