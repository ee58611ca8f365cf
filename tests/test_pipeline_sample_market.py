"""The whole partitioned pipeline on a small sample market, scored against its ground truth."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest
from _pipeline import SampleRun, run_sample_pipeline


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SampleRun:
    return run_sample_pipeline(tmp_path_factory.mktemp("market"), seed=11)


def test_pipeline_over_sample_market_matches_truth(run: SampleRun) -> None:
    db, manifest, summary = run.db, run.manifest, run.summary
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


def test_surface_plots_are_attached_once_not_per_partition(run: SampleRun) -> None:
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(run.db.parent / "dh")))
    key = dg.AssetKey("surface_grid_points")
    mats = instance.fetch_materializations(key, limit=100).records
    assert len(mats) == 8
    assert not any("data:image/png" in str(m.asset_materialization.metadata) for m in mats)
    obs = instance.fetch_observations(key, limit=10).records
    assert [o.asset_observation.partition for o in obs] == [str(run.manifest.end)]
    images = obs[0].asset_observation.metadata
    assert {"surface_PETR4", "surface_VALE3"} <= set(images)
    assert "data:image/png;base64," in images["surface_PETR4"].value


def test_each_partition_of_a_range_run_describes_its_own_day(run: SampleRun) -> None:
    """One range run materializes 8 days; each day's event carries that day's numbers, not the run's."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(run.db.parent / "dh")))

    def by_day(asset: str) -> dict[str, dict]:
        recs = instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
        return {r.asset_materialization.partition: r.asset_materialization.metadata for r in recs}

    with duckdb.connect(str(run.db), read_only=True) as con:
        def counts(sql: str) -> dict[str, tuple]:
            return {str(r[0]): r[1:] for r in con.execute(sql).fetchall()}

        surf = counts("SELECT CAST(trade_date AS DATE), count(*), count(*) FILTER (status = 'ok'), "
                      "median(rmse_vol_pts) FILTER (status = 'ok') FROM b3.iv_surface GROUP BY 1")
        iv = counts("SELECT CAST(trade_date AS DATE), count(*), count(*) FILTER (iv_reason = 'ok') "
                    "FROM b3.option_iv GROUP BY 1")
        grid = counts("SELECT CAST(trade_date AS DATE), count(*), avg(CAST(extrapolated AS INT)) "
                      "FROM b3.surface_grid_points GROUP BY 1")
    assert len(surf) == 8
    s_meta, iv_meta, g_meta = by_day("iv_surface"), by_day("option_iv"), by_day("surface_grid_points")
    for day, (slices, fitted, rmse) in surf.items():
        m = s_meta[day]
        assert (m["slices"].value, m["fitted_slices"].value) == (slices, fitted)
        assert m["dagster/partition_row_count"].value == slices
        assert m["median_rmse_vol_pts"].value == pytest.approx(rmse, abs=1e-4)  # rounded to 4 decimals
        assert m["median_rmse_vol_pts"].value == round(m["median_rmse_vol_pts"].value, 4)
        assert iv_meta[day]["valid_iv_rows"].value == iv[day][1]
        assert iv_meta[day]["dagster/partition_row_count"].value == iv[day][0]
        assert g_meta[day]["points"].value == grid[day][0] == 2 * 5 * 5
        assert g_meta[day]["extrapolated_share"].value == pytest.approx(grid[day][1], abs=1e-4)
