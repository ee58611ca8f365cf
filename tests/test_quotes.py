"""Cleaning: options linked to their underlying by ISIN, business-rule rejects, pandera reporting."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from b3quant_assets.defs.shared.checks import pandera_check_result
from b3quant_models import schemas
from b3quant_models.cotahist import read_cotahist
from b3quant_models.quotes import clean_quotes


def test_options_map_to_underlyings_by_isin_not_ticker_prefix(real_daily_file: Path) -> None:
    c = clean_quotes(read_cotahist(real_daily_file))
    o = c.options
    # PETR3 (ON) and PETR4 (PN) share the prefix PETR; the ISIN tells their options apart.
    by_isin = o.groupby("underlying_isin")["underlying_ticker"].unique()
    assert list(by_isin["BRPETRACNPR6"]) == ["PETR4"]
    petr3_isin = c.underlyings.loc[c.underlyings.ticker == "PETR3", "isin"].iat[0]
    assert petr3_isin != "BRPETRACNPR6"
    assert (o.loc[o.underlying_isin == petr3_isin, "underlying_ticker"] == "PETR3").all()
    # ETF options (BOVA11, BDI 14 on the cash market) find their underlying too.
    assert (o.loc[o.ticker.str.startswith("BOVA"), "underlying_ticker"] == "BOVA11").all()
    # Index options have no cash-market row: flagged, not mislinked.
    idx = o[o.is_index_option]
    assert len(idx) == 56 and idx["underlying_ticker"].isna().all()
    assert o.loc[~o.is_index_option, "underlying_ticker"].notna().all()
    assert len(c.rejects) == 0 and c.out_of_scope == 1743 - 961 - 424


def test_business_rule_failures_are_rejected_with_the_rule(real_daily_file: Path) -> None:
    raw = read_cotahist(real_daily_file)
    i = raw.index[(raw.market_type == "070") & (raw.trades > 0)][0]
    raw.loc[i, "high"] = raw.loc[i, "low"] - 0.01
    j = raw.index[raw.market_type == "080"][0]
    raw.loc[j, "expiry"] = raw.loc[j, "trade_date"] - pd.Timedelta(days=1)
    c = clean_quotes(raw)
    assert dict(zip(c.rejects.ticker, c.rejects.reason, strict=True)) == {
        raw.loc[i, "ticker"]: "high < low",
        raw.loc[j, "ticker"]: "expiry before trade date",
    }
    assert len(c.options) == 961 - 2


def test_failed_pandera_check_reports_counts_and_samples(real_daily_file: Path) -> None:
    raw = read_cotahist(real_daily_file)
    raw.loc[raw.index[:3], "quote_factor"] = 0
    res = pandera_check_result("raw_quotes", schemas.RAW_QUOTES, raw)
    assert not res.passed and res.severity == dg.AssetCheckSeverity.ERROR
    assert res.metadata["failure_cases"].value >= 3
    assert "quote_factor" in res.metadata["failures_by_check"].value
    assert "quote_factor" in res.metadata["sample_failures"].value
