"""option_iv rules: the price behind an IV decides min-tick; the rates table must be unambiguous."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from b3quant_models.option_iv import MAX_IV_MOVE_PER_TICK, MAX_TRUSTED_IV, MIN_TICK, compute_option_iv
from b3quant_models.schemas import OPTION_IV
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


def _deep_itm_penny(close: float, spot: float, strike: float, expiry: str):
    opt, und, rates = _tables(close=close, bid=0.0, ask=0.0)
    opt = opt.assign(strike=[strike], expiry=[pd.Timestamp(expiry)])
    return opt, und.assign(close=[spot]), rates


def test_an_iv_one_tick_cannot_pin_gets_a_reason_and_keeps_its_raw_value() -> None:
    # Real case (2026): a call on a stock under R$1, deep in the money, one session left: the close
    # implies thousands of percent, and one tick of premium moves that by tens of vol points.
    opt, und, rates = _deep_itm_penny(close=0.56, spot=0.85, strike=0.30, expiry="2025-03-11")
    row = compute_option_iv(opt, und, rates).iloc[0]
    assert row["iv_reason"] in ("iv_not_pinned", "iv_above_max")
    assert np.isnan(row["iv"]) and np.isnan(row["vega"]) and not row["surface_eligible"]
    assert row["iv_close"] > MAX_TRUSTED_IV  # what the close implies is kept, for the record
    OPTION_IV.validate(compute_option_iv(opt, und, rates))  # the day's table passes its blocking check


def test_a_low_premium_on_a_penny_stock_is_not_pinned() -> None:
    # At-the-money on a R$0.30 stock: vega ~0.02, so one tick (0.01) moves the IV by ~50 vol points.
    opt, und, rates = _deep_itm_penny(close=0.02, spot=0.30, strike=0.30, expiry="2025-03-21")
    row = compute_option_iv(opt, und, rates).iloc[0]
    assert row["iv_reason"] == "iv_not_pinned"
    assert MIN_TICK / vega_at(row) > MAX_IV_MOVE_PER_TICK


def test_an_ordinary_quote_is_pinned() -> None:
    row = compute_option_iv(*_tables(close=0.30, bid=0.20, ask=0.22)).iloc[0]
    assert row["iv_reason"] == "ok" and MIN_TICK / row["vega"] < MAX_IV_MOVE_PER_TICK


def test_a_zero_spot_is_no_underlying_quote() -> None:
    opt, und, rates = _tables(close=0.30, bid=0.20, ask=0.22)
    df = compute_option_iv(opt, und.assign(close=[0.0]), rates)
    assert df["iv_reason"].iat[0] == "no_underlying_quote" and np.isnan(df["spot"].iat[0])
    OPTION_IV.validate(df)


def vega_at(row: pd.Series) -> float:
    """The vega at the IV the chosen price implies (the row's own vega is blanked with its IV)."""
    from b3quant_models.pricing import greeks

    iv = row["iv_close"]
    g = greeks(*(np.array([row[c]]) for c in ("spot", "strike", "t", "r")), np.array([iv]), np.array([True]))
    return float(g["vega"][0])
