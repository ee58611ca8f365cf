"""The real-scale sample market (benchmarks/bench_realscale.py): B3's full-market shape on a few
sessions, names that B3's conventions accept, and per-underlying listing widths."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pandas as pd
import pytest

from b3quant_models.cotahist.reader import read_cotahist
from b3quant_models.quotes import clean_quotes
from b3quant_models.sample_market import SampleMarketConfig, generate_sample_market, iter_sessions, simulate_market
from b3quant_models.sample_market.config import LISTING_OVERRIDES, UNDERLYING_REGISTRY
from b3quant_models.sample_market.universe import isin_check_digit, real_scale_config, real_scale_underlyings


@pytest.fixture(scope="module")
def real_scale_market(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("real_scale")
    manifest = generate_sample_market(out, real_scale_config(n_days=2))
    return manifest, pd.concat([read_cotahist(p) for p in manifest.cotahist_paths], ignore_index=True)


def test_universe_names_are_unique_and_b3_shaped() -> None:
    specs = real_scale_underlyings()
    assert len(specs) == 170
    roots = [s.root for s in specs]
    assert len(set(roots)) == len(roots) and all(re.fullmatch("[A-Z]{4}", r) for r in roots)
    assert len({s.ticker for s in specs}) == len(specs) and len({s.isin for s in specs}) == len(specs)
    assert all(re.fullmatch(r"[A-Z]{4}[34]", s.ticker) for s in specs)
    assert all(re.fullmatch(r"BR[A-Z]{4}ACN(OR|PR)\d", s.isin) for s in specs)
    assert all(int(s.isin[-1]) == isin_check_digit(s.isin[:-1]) for s in specs)
    # the registry's stocks (real names, liquidity rank 1-6) head the list
    assert [s.ticker for s in specs[:6]] == list(UNDERLYING_REGISTRY)
    assert real_scale_underlyings() == specs  # fixed universe, whatever the market's seed


def test_isin_check_digit_matches_real_isins() -> None:
    for spec in UNDERLYING_REGISTRY.values():
        assert isin_check_digit(spec.isin[:-1]) == int(spec.isin[-1]), spec.isin


def test_default_manifest_identity_has_no_listing_overrides() -> None:
    """Markets generated before the per-underlying listing existed keep their manifest identity."""
    d = SampleMarketConfig().to_dict()
    assert all(k not in u for u in d["underlyings"] for k in LISTING_OVERRIDES)
    rs = real_scale_config(n_days=2).to_dict()
    assert all(u["monthly_expiries"] >= 3 for u in rs["underlyings"])


def test_listing_overrides_are_per_underlying() -> None:
    petr = dataclasses.replace(UNDERLYING_REGISTRY["PETR4"], weekly_expiries=0, monthly_expiries=5)
    cfg = SampleMarketConfig(n_days=2, underlyings=(petr, "VALE3"))
    truth = next(iter_sessions(simulate_market(cfg))).truth  # every listed series, traded or not
    listed = pd.DataFrame({"und": truth["und"], "week": truth["week"], "expiry": truth["expiry"]})
    petr_rows, vale_rows = listed[listed["und"] == 0], listed[listed["und"] == 1]
    assert (petr_rows["week"] == 0).all() and petr_rows["expiry"].nunique() == 5
    assert vale_rows.loc[vale_rows["week"] == 0, "expiry"].nunique() == cfg.n_monthly_expiries
    assert vale_rows.loc[vale_rows["week"] > 0, "expiry"].nunique() == cfg.n_weekly_expiries


def test_real_scale_counts_match_the_full_b3_market(real_scale_market) -> None:
    """Calibrated on the 2026 COTAHIST files (shared/data/b3-real): 168-174 underlyings with traded
    options, 11.8-14.5 thousand option records a day, ~50 names with weeklies (10-18 % of records),
    the ten busiest names ~34 % of the records."""
    manifest, quotes = real_scale_market
    opts = quotes[quotes["market_type"].isin(["070", "080"])].copy()
    opts["root"] = opts["ticker"].str[:4]
    for _, day in opts.groupby("trade_date"):
        assert 11_000 <= len(day) <= 16_000
        per = day.groupby("root").size().sort_values(ascending=False)
        assert len(per) >= 160
        assert 0.25 <= per.head(10).sum() / len(day) <= 0.45
        weekly = day["ticker"].str.contains(r"W\d$")
        assert 0.05 <= weekly.mean() <= 0.20
        assert 40 <= day.loc[weekly, "root"].nunique() <= 60
    assert (quotes["market_type"] == "010").sum() == 2 * 170
    # a year of it is about 3 million option rows (B3: ~3.3 million in 2026)
    assert 2.7e6 <= manifest.counts["option_rows"] / 2 * 250 <= 4.0e6


def test_real_scale_files_clean_without_rejects(real_scale_market) -> None:
    """Every synthetic name passes the platform's cleaning rules (options matched to their stock)."""
    _, quotes = real_scale_market
    c = clean_quotes(quotes)
    assert len(c.rejects) == 0
    assert c.options["underlying_ticker"].notna().all()
    assert c.options["underlying_ticker"].nunique() == 170


def test_real_scale_needs_no_registry_entry(tmp_path: Path) -> None:
    """The synthetic specs travel in the config itself (the manifest spells them out)."""
    cfg = real_scale_config(n_days=2, n_underlyings=8, seed=3)
    m = generate_sample_market(tmp_path, cfg)
    assert len(m.underlyings) == 8 and m.config["underlyings"][7]["ticker"] == cfg.specs()[7].ticker
