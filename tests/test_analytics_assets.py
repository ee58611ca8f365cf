"""Analytics assets on the real B3 day: rates from a landing cdi.csv, IVs and reasons."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from b3quant_assets.defs.analytics.assets import option_iv, risk_free_rate
from b3quant_assets.defs.analytics.resources import RatesSource
from b3quant_assets.defs.ingestion.assets import clean_quote_tables, raw_quotes
from b3quant_assets.defs.ingestion.resources import CotahistFiles
from b3quant_assets.defs.shared.resources import duckdb_io_manager
from b3quant_models.sources.rates import cdi_to_continuous


def _materialize(landing: Path, db: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [raw_quotes, clean_quote_tables, risk_free_rate, option_iv],
        partition_key="2016-01-04",
        resources={
            "cotahist_files": CotahistFiles(landing_dir=str(landing)),
            "rates_source": RatesSource(landing_dir=str(landing)),
            "io_manager": duckdb_io_manager(str(db)),
        },
        raise_on_error=False,
    )


@pytest.fixture
def landing(tmp_path: Path, real_daily_file: Path) -> Path:
    d = tmp_path / "landing"
    d.mkdir()
    shutil.copy(real_daily_file, d)
    return d


def test_real_day_ivs_are_plausible(landing: Path, tmp_path: Path) -> None:
    (landing / "cdi.csv").write_text("date,cdi_annual_pct\n2016-01-04,14.13\n")
    db = tmp_path / "t.duckdb"
    res = _materialize(landing, db)
    assert res.success
    assert all(c.passed for c in res.get_asset_check_evaluations())
    with duckdb.connect(str(db), read_only=True) as con:
        r = con.execute("SELECT r_cont FROM b3.risk_free_rate").fetchone()[0]
        df = con.execute("SELECT * FROM b3.option_iv").fetchdf()
    assert r == pytest.approx(cdi_to_continuous(0.1413))
    assert len(df) == 961
    assert (df.loc[df.underlying_isin == "BRIBOVINDM18", "iv_reason"] == "index_option").all()
    assert (df["iv_reason"] == "ok").mean() > 0.8
    # PETR4 near the money, January series (10 business days): PETR4 was very volatile then.
    petr = df[(df.underlying_ticker == "PETR4") & (df.iv_reason == "ok") & (df.k.abs() < 0.05)]
    assert len(petr) >= 4
    assert 0.35 < petr["iv"].median() < 0.7
    jan = df[df.expiry == "2016-01-18"]
    assert (jan["bdays"] == 10).all()  # 5-8, 11-15 and 18 January: 10 sessions after the 4th
    # Greeks only where there is an IV; calls have positive delta, puts negative.
    ok = df[df.iv_reason == "ok"]
    assert (ok.loc[ok.option_type == "call", "delta"] > 0).all()
    assert (ok.loc[ok.option_type == "put", "delta"] < 0).all()
    assert df.loc[df.iv_reason != "ok", "delta"].isna().all()


def test_day_without_rate_fails_loudly(landing: Path, tmp_path: Path) -> None:
    (landing / "cdi.csv").write_text("date,cdi_annual_pct\n2016-01-05,14.13\n")
    res = _materialize(landing, tmp_path / "t.duckdb")
    assert not res.success
    msg = str(res.get_step_failure_events()[0].event_specific_data.error)
    assert "2016-01-04" in msg


def test_rates_source_auto_uses_the_file_else_the_central_bank(tmp_path: Path, monkeypatch) -> None:
    import json

    from b3quant_models.testing.http import CannedResponse, LoopbackServer, block_non_loopback

    monkeypatch.delenv("B3Q_OFFLINE", raising=False)
    body = json.dumps([{"data": "04/01/2016", "valor": "14.13"}]).encode()
    with block_non_loopback(), LoopbackServer() as sgs:
        sgs.routes["/dados/serie/bcdata.sgs.4389/dados"] = CannedResponse(body=body, content_type="application/json")
        online = RatesSource(landing_dir=str(tmp_path), base_url=sgs.base_url)
        assert not online.use_file()
        r = online.rates("2016-01-04", "2016-01-04")
        assert sgs.hits("/dados/serie/bcdata.sgs.4389/dados") == 1
    assert r["cdi_annual"].iloc[0] == pytest.approx(0.1413)
    (tmp_path / "cdi.csv").write_text("date,cdi_annual_pct\n2016-01-04,14.00\n")
    assert RatesSource(landing_dir=str(tmp_path)).use_file()
    monkeypatch.setenv("B3Q_OFFLINE", "1")
    assert RatesSource(landing_dir=str(tmp_path / "empty")).use_file()
