"""What real B3 files hold beyond a simulator's chains, written with the COTAHIST writer into one day of a
small sample market and run through every partitioned asset (ingestion to features).

Each odd record is either priced (ETF and unit options, weekly tickers, a stock quoted per thousand
shares, a strike lowered after a dividend) or gets a reason and is counted (index options, series
with no trade and no book, options whose underlying has no cash row, expiring today), or breaks a
business rule and lands in ``quote_rejects`` (a repeated record, a blank ISIN, an impossible expiry,
high < low). No step fails and no blocking check fails: the day goes on.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from b3quant_models.calendar import business_days, calendar_bounds, monthly_option_expiry, next_session
from b3quant_models.cotahist import read_cotahist
from b3quant_models.cotahist.writer import write_cotahist
from b3quant_models.pricing.black import bs_price
from b3quant_models.sample_market import SampleMarketConfig, generate_sample_market
from b3quant_models.sources.cotahist_download import find_landing_file
from b3quant_models.sources.rates import read_landing_rates

pytestmark = pytest.mark.slow
VOL = 0.30


def _row(day: dt.date, **kw) -> dict:
    """A COTAHIST quote record with the reader's columns; prices per unit, traded once."""
    px = kw.pop("px", 1.0)
    base = {
        "trade_date": pd.Timestamp(day), "bdi_code": "02", "ticker": "", "market_type": "010", "company": "ODD",
        "specification": "ON", "forward_days": "", "currency": "R$", "open": px, "high": px, "low": px, "avg": px,
        "close": px, "best_bid": 0.0, "best_ask": 0.0, "trades": 1, "quantity": 100, "volume": 100 * px,
        "strike": 0.0, "strike_correction": 0, "expiry": pd.NaT, "quote_factor": 1, "strike_points": 0.0,
        "isin": "", "distribution": 100,
    }  # fmt: skip
    base.update(kw)
    return base


def _option(day: dt.date, r: float, spot: float, strike: float, expiry: dt.date, call: bool, **kw) -> dict:
    """An option whose close is its BSM premium at ``VOL`` (to the tick), so its IV is known."""
    t = business_days(day, expiry) / 252
    px = round(float(bs_price(spot, strike, t, r, VOL, call)), 2)
    kind = {"market_type": "070", "bdi_code": "78"} if call else {"market_type": "080", "bdi_code": "82"}
    return _row(day, px=px, strike=strike, expiry=pd.Timestamp(expiry), forward_days="000", **{**kind, **kw})


def _odd_records(day: dt.date, r: float, petr: pd.Series) -> tuple[list[dict], dict[str, str]]:
    """The odd records of ``day`` and the IV reason each option must get."""
    exp = monthly_option_expiry(*((day.year, day.month + 1) if day.month < 12 else (day.year + 1, 1)))
    weekly = next_session(next_session(next_session(next_session(next_session(day)))))
    isin = {"BOVA11": "BRBOVACTF003", "TAEE11": "BRTAEECDAM10", "XYZA3": "BRXYZAACNOR9", "GONE3": "BRGONEACNOR2"}
    recs = [
        # Odd lot of PETR4: same ISIN, market 020 -- out of scope, never the options' underlying.
        _row(day, ticker="PETR4F", market_type="020", bdi_code="96", isin=petr["isin"], px=petr["close"] * 1.5),
        _row(day, ticker="BOVA11", bdi_code="14", specification="CI", isin=isin["BOVA11"], px=120.0),
        _row(day, ticker="TAEE11", specification="UNT N2", isin=isin["TAEE11"], px=35.0),
        # Quoted per thousand shares (FATCOT 1000): the file says 5,000.00, a share costs 5.00.
        _row(day, ticker="XYZA3", isin=isin["XYZA3"], px=5.0, quote_factor=1000),
        # A cash row that breaks a rule: rejected, so its options have no underlying quote.
        {**_row(day, ticker="GONE3", isin=isin["GONE3"], px=10.0), "high": 9.0, "low": 10.0},
        # A stock that lists no options at all.
        _row(day, ticker="NOPT3", isin="BRNOPTACNOR5", px=12.0),
    ]
    want = {}

    def opt(ticker, spot, strike, expiry, call, reason, **kw):
        recs.append(_option(day, r, spot, strike, expiry, call, ticker=ticker, **kw))
        want[ticker] = reason

    opt("BOVAC125", 120.0, 125.0, exp, True, "ok", isin=isin["BOVA11"], company="ISHAREBOVA", specification="CI")
    opt("BOVAO115", 120.0, 115.0, exp, False, "ok", isin=isin["BOVA11"], company="ISHAREBOVA", specification="CI")
    opt("TAEEC360W2", 35.0, 36.0, weekly, True, "ok", isin=isin["TAEE11"], specification="UNT N2")
    opt("XYZAC55", 5.0, 5.5, exp, True, "ok", isin=isin["XYZA3"])
    # Strike lowered by a dividend (B3 adjusts PREEXE): not a round number, priced as it is.
    opt("PETRC293", petr["close"], round(petr["close"] * 1.02 - 0.37, 2), exp, True, "ok", isin=petr["isin"])
    opt("GONEC110", 10.0, 11.0, exp, True, "no_underlying_quote", isin=isin["GONE3"])
    opt("ABSTC100", 10.0, 10.0, exp, True, "no_underlying_quote", isin="BRABSTACNOR0")  # no cash row at all
    opt("IBOVC135", 130_000.0, 135_000.0, exp, True, "index_option", isin="BRIBOVINDM18", bdi_code="74")
    opt("PETRC300", petr["close"], round(petr["close"] * 0.9, 1), day, True, "expires_today", isin=petr["isin"])
    # Listed, never traded, no book (zero-volume series): no price to invert.
    recs.append(
        {**_option(day, r, petr["close"], petr["close"] * 1.3, exp, True, ticker="PETRC400", isin=petr["isin"]),
         "trades": 0, "quantity": 0, "volume": 0.0, "close": 0.0, "open": 0.0, "high": 0.0, "low": 0.0, "avg": 0.0}
    )  # fmt: skip
    want["PETRC400"] = "no_price"
    # Rule breakers: one row each in quote_rejects, none in option_quotes.
    bad = _option(day, r, petr["close"], petr["close"], exp, True, ticker="PETRC999", isin=petr["isin"])
    recs += [
        bad,  # kept ...
        {**bad, "volume": bad["volume"] / 2},  # ... and the same ticker again, less traded
        _option(day, r, petr["close"], petr["close"], exp, False, ticker="PETRO998", isin=""),
        {**bad, "ticker": "PETRL997", "expiry": pd.Timestamp("2099-12-18")},
        {**_option(day, r, petr["close"], petr["close"], exp, False, ticker="PETRO996", isin=petr["isin"]),
         "high": 0.10, "low": 0.50},
    ]  # fmt: skip
    return recs, want


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory):
    from b3quant_assets.defs.analytics.definitions import defs as analytics_defs
    from b3quant_assets.defs.analytics.resources import RatesSource
    from b3quant_assets.defs.ingestion.definitions import defs as ingestion_defs
    from b3quant_assets.defs.ingestion.resources import CotahistFiles
    from b3quant_assets.defs.models.assets import option_features
    from b3quant_assets.defs.shared.resources import duckdb_io_manager
    from b3quant_assets.demo import run_demo

    root = tmp_path_factory.mktemp("odd")
    cfg = SampleMarketConfig(seed=11, start=dt.date(2025, 3, 6), n_days=3, underlyings=("PETR4",))
    manifest = generate_sample_market(root / "landing", cfg)
    days = [d for d in pd.bdate_range(manifest.start, manifest.end).date if find_landing_file(root / "landing", d)]
    day = days[1]
    path = find_landing_file(root / "landing", day)
    quotes = read_cotahist(path)
    petr = quotes[(quotes["ticker"] == "PETR4") & (quotes["market_type"] == "010")].iloc[0]
    r = float(np.log1p(read_landing_rates(root / "landing").set_index("trade_date").loc[pd.Timestamp(day)].iat[0]))
    recs, want = _odd_records(day, r, petr)
    path.unlink()
    write_cotahist(path.with_suffix(".TXT"), pd.concat([quotes, pd.DataFrame(recs)], ignore_index=True), day)

    db, landing = root / "odd.duckdb", str(root / "landing")
    defs = dg.Definitions(
        assets=[*ingestion_defs.assets, *analytics_defs.assets, option_features],
        resources={
            "io_manager": duckdb_io_manager(str(db)),
            "cotahist_files": CotahistFiles(landing_dir=landing),
            "rates_source": RatesSource(landing_dir=landing),
        },
    )
    mp = pytest.MonkeyPatch()
    (root / "dh").mkdir()
    mp.setenv("DAGSTER_HOME", str(root / "dh"))
    mp.setenv("B3Q_DUCKDB_PATH", str(db))
    try:
        summary = run_demo(manifest.start, manifest.end, defs=defs, log_level="WARNING", models=False)
    finally:
        mp.undo()
    return summary, db, day, want


def _q(db: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchdf()


def test_no_step_and_no_check_fails_on_the_odd_day(odd_run) -> None:
    summary, db, day, _ = odd_run
    assert summary.ok, (summary.failures, [c for c in summary.checks if not c[2]])
    assert {"raw_quotes", "option_iv", "iv_surface", "option_features"} <= set(summary.tables)
    feats = _q(db, f"SELECT ticker FROM b3.option_features WHERE trade_date = '{day}'")
    assert {"BOVAC125", "BOVAO115", "XYZAC55", "PETRC293"} <= set(feats["ticker"])


def test_every_odd_option_is_priced_or_has_its_reason(odd_run) -> None:
    _, db, day, want = odd_run
    iv = _q(db, f"SELECT ticker, underlying_ticker, spot, iv, iv_reason FROM b3.option_iv WHERE trade_date = '{day}'")
    got = iv.set_index("ticker")
    assert {t: got.loc[t, "iv_reason"] for t in want} == want
    ok = got.loc[[t for t, w in want.items() if w == "ok"]]
    # The close is the premium at VOL rounded to the tick: the IV comes back within a few vol points.
    assert np.allclose(ok["iv"], VOL, atol=0.03), ok
    assert got.loc["BOVAC125", "underlying_ticker"] == "BOVA11"
    assert got.loc["TAEEC360W2", "underlying_ticker"] == "TAEE11"
    assert got.loc["XYZAC55", "spot"] == pytest.approx(5.0)  # per share, FATCOT 1000 undone
    under = _q(db, f"SELECT ticker FROM b3.underlying_quotes WHERE trade_date = '{day}'")
    assert "PETR4F" not in set(under["ticker"]) and "NOPT3" in set(under["ticker"])


def test_rule_breakers_are_rejected_with_their_rule(odd_run) -> None:
    _, db, day, _ = odd_run
    rej = _q(db, f"SELECT ticker, reason FROM b3.quote_rejects WHERE trade_date = '{day}'")
    assert dict(zip(rej["ticker"], rej["reason"], strict=True)) == {
        "GONE3": "high < low",
        "PETRC999": "duplicate option row for the same ticker and day (less traded)",
        "PETRO998": "ISIN (CODISI) not 12 characters",
        "PETRL997": f"expiry after the B3 calendar's last session ({calendar_bounds()[1]})",
        "PETRO996": "high < low",
    }
    opts = _q(db, f"SELECT ticker FROM b3.option_quotes WHERE trade_date = '{day}'")
    assert (opts["ticker"] == "PETRC999").sum() == 1 and not {"PETRO998", "PETRL997", "PETRO996"} & set(opts["ticker"])
