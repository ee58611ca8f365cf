"""Backtest assets through Dagster on a toy market: trading-day partitions (a day run alone equals the
same day in a range backfill), the summary with its pictures and MLflow run, and the look-ahead check."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import mlflow
import numpy as np
import pandas as pd
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from b3quant_assets.defs.backtests.assets import backtest_books, backtest_summary, report_dir
from b3quant_assets.defs.backtests.resources import BacktestSettings
from b3quant_assets.defs.ingestion.resources import CotahistFiles
from b3quant_assets.defs.models.resources import MlflowTracking
from b3quant_assets.defs.shared.partitions import trading_day_partitions
from b3quant_assets.defs.shared.resources import duckdb_io_manager
from b3quant_models.features import build_targets
from b3quant_models.models.tracking import local_tracking_uri
from b3quant_models.testing.features import toy_market

UPSTREAM = [
    dg.AssetSpec("option_iv", partitions_def=trading_day_partitions, metadata={"partition_expr": "trade_date"}),
    dg.AssetSpec("underlying_quotes", partitions_def=trading_day_partitions, metadata={"partition_expr": "trade_date"}),
    dg.AssetSpec("model_predictions"),
]


def _write_inputs(db: Path) -> tuple[pd.Timestamp, pd.Timestamp]:
    mkt = toy_market(45, 2, seed=11)
    o = mkt["option_iv"]
    t = build_targets(o)[["trade_date", "ticker", "iv_next", "target_date"]]
    base = o[o["iv_reason"] == "ok"][["trade_date", "ticker", "underlying_ticker", "iv"]]
    base = base.merge(t, on=["trade_date", "ticker"]).merge(
        mkt["truth"][["trade_date", "ticker", "iv_next_optimal"]], on=["trade_date", "ticker"]
    )
    rng = np.random.default_rng(1)
    test_days = sorted(base["trade_date"].unique())[-20:]
    b = base[base["trade_date"].isin(test_days)]
    preds = pd.concat([
        b.assign(model="toy_model", forecast=b["iv_next_optimal"] + rng.normal(0, 0.003, len(b))),
        b.assign(model="persistence", forecast=b["iv"]),
    ]).rename(columns={"iv_next_optimal": "iv_opt"}).assign(split="test", fold=-1)  # fmt: skip
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS b3")
        tables = {"option_iv": o, "underlying_quotes": mkt["underlying_quotes"], "model_predictions": preds}
        for name, df in tables.items():
            con.register("df", df)
            con.execute(f"CREATE OR REPLACE TABLE b3.{name} AS SELECT * FROM df")
            con.unregister("df")
    return pd.Timestamp(o["trade_date"].min()), pd.Timestamp(o["trade_date"].max())


def _resources(db: Path, tmp: Path) -> dict:
    return {
        "io_manager": duckdb_io_manager(str(db)),
        "backtest_settings": BacktestSettings(threshold=0.003, min_bdays=2, min_edge_over_cost=0),
        "cotahist_files": CotahistFiles(landing_dir=str(tmp / "landing")),
        "mlflow": MlflowTracking(tracking_uri=local_tracking_uri(tmp / "mlflow"), experiment="bt-test"),
    }


def _books(db: Path, tmp: Path, first, last) -> dg.ExecuteInProcessResult:
    tags = {ASSET_PARTITION_RANGE_START_TAG: str(first.date()), ASSET_PARTITION_RANGE_END_TAG: str(last.date())}
    return dg.materialize([*UPSTREAM, backtest_books], resources=_resources(db, tmp), tags=tags)


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bt")
    db = tmp / "bt.duckdb"
    first, last = _write_inputs(db)
    assert _books(db, tmp, first, last).success
    return tmp, db, first, last


def test_summary_pictures_mlflow_and_lookahead_check(backfilled, monkeypatch):
    tmp, db, _, _ = backfilled
    monkeypatch.setenv("B3Q_DATA_DIR", str(tmp / "data"))
    res = dg.materialize([*UPSTREAM, dg.AssetSpec("backtest_daily_pnl", partitions_def=trading_day_partitions,
                                                  metadata={"partition_expr": "trade_date"}), backtest_summary],
                         resources=_resources(db, tmp), selection=["backtest_summary"])  # fmt: skip
    assert res.success
    checks = res.get_asset_check_evaluations()
    assert [c.check_name for c in checks] == ["no_lookahead"] and checks[0].passed
    assert checks[0].metadata["oracle_caught"].value is True
    summary = res.output_for_node("backtest_summary")
    assert {"toy_model", "random", "oracle", "no_trade"} <= set(summary["strategy"])
    assert set(summary["instrument"]) == {"straddle", "option"}
    mat = res.get_asset_materialization_events()[0].materialization
    assert mat.metadata["equity_curves"].value.startswith("![equity curves](data:image/png;base64,")
    pngs = {p.name for p in report_dir().glob("*.png")}
    assert "equity_curves.png" in pngs and "report_toy_model_straddle.png" in pngs
    run = mlflow.MlflowClient(local_tracking_uri(tmp / "mlflow")).get_run(mat.metadata["mlflow_run_id"].value)
    assert "test_straddle.toy_model.sharpe" in run.data.metrics



def test_a_day_materialized_alone_equals_that_day_in_the_range_backfill(backfilled):
    """Carried positions through Dagster: one partition run on its own (its warm-up window loaded by the
    partition mapping) writes the same P&L and positions as the whole-range backfill wrote for that day."""
    tmp, db, _, _ = backfilled
    with duckdb.connect(str(db), read_only=True) as con:
        days = [d for (d,) in con.execute(
            "SELECT DISTINCT trade_date FROM b3.backtest_daily_pnl WHERE n_positions > 0 ORDER BY 1").fetchall()]
    assert days, "the backfill traded on no day: nothing to compare"
    day = pd.Timestamp(days[len(days) // 2])

    def rows(table: str) -> pd.DataFrame:
        with duckdb.connect(str(db), read_only=True) as con:
            df = con.execute(f"SELECT * FROM b3.{table} WHERE trade_date = ?", [day.to_pydatetime()]).df()
        keys = [c for c in ("strategy", "instrument", "kind", "ticker") if c in df.columns]
        return df.sort_values(keys).reset_index(drop=True)

    before = {t: rows(t) for t in ("backtest_daily_pnl", "backtest_positions")}
    res = dg.materialize([*UPSTREAM, backtest_books], resources=_resources(db, tmp), partition_key=str(day.date()))
    assert res.success
    for table, expected in before.items():
        assert len(expected), table
        pd.testing.assert_frame_equal(rows(table), expected, check_dtype=False)
