"""The backtest engine on real B3 sessions (25-27 Feb 2026): real books, real fills, real expiries.

A smoke test of the mechanics on the real market, not of any edge: a hashed random signal (the
cost-drag yardstick) and the realized next-day IV (the oracle) trade straddles and single options;
fills must come from COTAHIST's best bid/ask where the book has them, the attribution must add up and
every number must be finite. Skips when ../shared/data/b3-real is absent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import REAL_B3_DIR

from b3quant_models.backtest.compare import compare_strategies
from b3quant_models.backtest.config import StrategyConfig
from b3quant_models.backtest.engine import PNL_PARTS
from b3quant_models.backtest.strategies import Strategy, oracle_signal, random_signal
from b3quant_models.cotahist import read_cotahist
from b3quant_models.features import build_targets
from b3quant_models.option_iv import compute_option_iv
from b3quant_models.quotes import clean_quotes
from b3quant_models.sources.rates import rates_for_days, read_sgs_file

DAYS = ("25022026", "26022026", "27022026")
FILES = [REAL_B3_DIR / f"COTAHIST_D{d}.TXT" for d in DAYS]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not all(f.exists() for f in FILES), reason="real B3 sessions of 25-27 Feb 2026 not present"),
]


@pytest.fixture(scope="module")
def real_books():
    opts, unds = [], []
    for f in FILES:
        c = clean_quotes(read_cotahist(f))
        opts.append(c.options)
        unds.append(c.underlyings)
    options, underlyings = pd.concat(opts, ignore_index=True), pd.concat(unds, ignore_index=True)
    days = sorted(pd.to_datetime(options["trade_date"]).unique())
    rates = rates_for_days(read_sgs_file(REAL_B3_DIR / "cdi_sgs12.json"), days)
    iv = compute_option_iv(options, underlyings, rates)
    ok = iv[iv["iv_reason"] == "ok"]
    t = build_targets(iv)[["trade_date", "ticker", "iv_next", "target_date"]].dropna(subset=["iv_next"])
    preds = ok[["trade_date", "ticker", "underlying_ticker", "iv"]].merge(t, on=["trade_date", "ticker"])
    preds = preds.assign(model="persistence", forecast=preds["iv"], split="test", fold=-1)
    und = underlyings.rename(columns={"ticker": "underlying_ticker", "close": "spot"})
    return iv, preds, und[["trade_date", "underlying_ticker", "spot"]]


def test_random_and_oracle_books_on_real_sessions(real_books):
    iv, preds, und = real_books
    assert preds["trade_date"].nunique() == 2 and preds["underlying_ticker"].nunique() > 30
    strategies = [Strategy("random", random_signal(seed=3)), Strategy("oracle", oracle_signal(), uses_future=True)]
    configs = [StrategyConfig(instrument="straddle", min_bdays=2), StrategyConfig(instrument="option", min_bdays=2)]
    cmp = compare_strategies(iv, preds, None, strategies=strategies, config=configs, underlyings=und)

    daily = cmp.daily
    assert set(daily["strategy"]) == {"random", "oracle"} and set(daily["instrument"]) == {"straddle", "option"}
    num = daily.select_dtypes("number")
    assert np.isfinite(num.to_numpy()).all()
    np.testing.assert_allclose(daily[PNL_PARTS].sum(axis=1), daily["gross"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(daily["gross"] - daily["costs"], daily["total"], rtol=0, atol=1e-6)
    assert (daily["costs"] > 0).any() and (daily["n_positions"] > 0).any()

    tr = cmp.trades
    opened = tr[~tr["settle"]]
    assert len(opened) > 20 and opened["underlying_ticker"].nunique() > 5
    # real books: where the closing book has the side, the fill is exactly COTAHIST's best ask (buy) or best
    # bid (sell); on these sessions a bit under half of the traded series have it (the rest use the spread model)
    assert opened["from_book"].mean() > 0.3
    books = iv[["trade_date", "ticker", "best_bid", "best_ask"]].assign(trade_date=pd.to_datetime(iv["trade_date"]))
    book = opened[opened["from_book"]].merge(books, on=["trade_date", "ticker"], how="left")
    side = np.where(book["trade"] > 0, book["best_ask"], book["best_bid"])
    np.testing.assert_allclose(book["fill"], side, rtol=0, atol=1e-9)
    assert (opened["cost"] >= 0).all() and np.isfinite(opened["fill"]).all() and (opened["fill"] > 0).all()

    pos = cmp.positions
    held = pos[pos["kind"] == "option"]
    assert len(held) and np.isfinite(held[["price", "iv", "position_vega_pt"]].to_numpy()).all()
