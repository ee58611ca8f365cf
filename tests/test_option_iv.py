"""option_iv rules: the price behind an IV decides min-tick; the rates table must be unambiguous."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from b3quant_models.option_iv import compute_option_iv
from b3quant_models.sources.rates import cdi_to_continuous

DAY = pd.Timestamp("2025-03-10")


def _tables(close: float, bid: float, ask: float, trades: int = 3):
    opt = pd.DataFrame(
        {
            "trade_date": [DAY], "ticker": ["PETRC40"], "option_type": ["call"], "underlying_isin": ["BRPETRACNPR6"],
            "underlying_ticker": ["PETR4"], "is_index_option": [False], "strike": [40.0],
            "expiry": [pd.Timestamp("2025-03-21")], "close": [close], "best_bid": [bid], "best_ask": [ask],
            "trades": [trades], "quantity": [100 * trades], "volume": [close * 100 * trades],
        }
    )  # fmt: skip
    und = pd.DataFrame({"trade_date": [DAY], "isin": ["BRPETRACNPR6"], "close": [36.0]})
    rates = pd.DataFrame({"trade_date": [DAY], "r_cont": [cdi_to_continuous(0.13)]})
    return opt, und, rates


def test_a_min_tick_close_used_for_the_iv_is_not_ok() -> None:
    # Wide book (0.01 / 0.40): the close is used, and it is at the tick: no usable IV.
    row = compute_option_iv(*_tables(close=0.01, bid=0.01, ask=0.40)).iloc[0]
    assert row["iv_reason"] == "min_tick_price" and np.isnan(row["iv"]) and not row["surface_eligible"]


def test_a_tight_mid_is_preferred_to_the_close() -> None:
    row = compute_option_iv(*_tables(close=0.30, bid=0.20, ask=0.22)).iloc[0]
    assert row["iv_reason"] == "ok" and row["iv_source"] == "mid"
    assert row["iv"] == pytest.approx(row["iv_mid"])


def test_duplicate_rates_for_a_day_raise() -> None:
    opt, und, rates = _tables(close=0.30, bid=0.20, ask=0.22)
    with pytest.raises(ValueError, match="more than one rate"):
        compute_option_iv(opt, und, pd.concat([rates, rates]))
