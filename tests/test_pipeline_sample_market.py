"""The whole partitioned pipeline on a small sample market, scored against its ground truth."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from b3quant_assets.defs.analytics.definitions import defs as analytics_defs
from b3quant_assets.defs.ingestion.definitions import defs as ingestion_defs
from b3quant_assets.defs.shared.resources import duckdb_io_manager
from b3quant_assets.demo import run_demo
from b3quant_models.sample_market import SampleMarketConfig, generate_sample_market


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("market")
    cfg = SampleMarketConfig(seed=11, start=dt.date(2025, 3, 6), n_days=8, underlyings=("PETR4", "VALE3"))
    manifest = generate_sample_market(root / "landing", cfg)
    return root, manifest


def test_pipeline_over_sample_market_matches_truth(market, monkeypatch: pytest.MonkeyPatch) -> None:
    root, manifest = market
    db = root / "market.duckdb"
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dh"))
    (root / "dh").mkdir(exist_ok=True)
    monkeypatch.setenv("B3Q_DUCKDB_PATH", str(db))
    from b3quant_assets.defs.analytics.resources import RatesSource
    from b3quant_assets.defs.ingestion.resources import CotahistFiles

    landing = str(root / "landing")
    defs = dg.Definitions(
        assets=[*ingestion_defs.assets, *analytics_defs.assets],
        resources={
            "io_manager": duckdb_io_manager(str(db)),
            "cotahist_files": CotahistFiles(landing_dir=landing),
            "rates_source": RatesSource(landing_dir=landing),
        },
    )
    summary = run_demo(manifest.start, manifest.end, defs=defs)
    assert summary.ok, summary.render()
    assert {"no_butterfly_arbitrage", "no_calendar_arbitrage", "pandera_schema"} <= {c for _, c, _ in summary.checks}
    assert summary.tables["risk_free_rate"] == 8

    with duckdb.connect(str(db), read_only=True) as con:
        iv = con.execute("SELECT * FROM b3.option_iv").fetchdf()
        grid = con.execute("SELECT * FROM b3.surface_grid_points").fetchdf()
        surf = con.execute("SELECT * FROM b3.iv_surface").fetchdf()
    truth = pd.read_parquet(manifest.truth_path("option_iv"))
    m = iv.merge(truth[["trade_date", "ticker", "true_iv"]], on=["trade_date", "ticker"], how="left")
    assert m["true_iv"].notna().all()  # every quoted option is in the ground truth
    ok = m[m["iv_reason"] == "ok"]
    err_pts = (ok["iv"] - ok["true_iv"]).abs() * 100
    assert (ok["iv_reason"] == "ok").sum() > 0.8 * len(m)
    # Tight mids are rounded to the cent only; closes carry the simulated trade noise.
    assert err_pts[ok["iv_source"] == "mid"].median() < 0.2
    assert err_pts.median() < 1.0
    # Fixed-shape grid: 2 underlyings x 5 tenors x 5 deltas per day.
    assert len(grid) == 8 * 2 * 5 * 5
    assert surf.loc[surf["status"] == "ok", "rmse_vol_pts"].median() < 2.0
