"""Backtest engine: hand-computed trades (straddle to expiry, a day of delta hedging, costs, B3
settlement), the P&L attribution adding up, metrics, and the look-ahead check catching a leaky signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from b3quant_models.backtest import CostModel, StrategyConfig, prepare_market, run_backtest
from b3quant_models.backtest.compare import compare_strategies
from b3quant_models.backtest.lookahead import lookahead_check
from b3quant_models.backtest.metrics import break_even_multiple, max_drawdown, sharpe
from b3quant_models.backtest.strategies import Strategy, model_signal, standard_strategies
from b3quant_models.calendar import business_days
from b3quant_models.features import build_targets
from b3quant_models.pricing import bs_price, greeks
from b3quant_models.testing.features import toy_market

R = 0.1
EXPIRY = "2025-03-21"  # third Friday of March 2025: a B3 monthly expiry
DAYS = ["2025-03-13", "2025-03-14", "2025-03-17", "2025-03-18", "2025-03-19", "2025-03-20", "2025-03-21"]


def chain(days, spots, ivs, strikes=(10.0,), book=True, und="PETR4") -> pd.DataFrame:
    """An option_iv-like frame priced by BSM; no rows on the expiry day (as in the sample market)."""
    rows = []
    for d, s, iv in zip(days, spots, ivs, strict=True):
        bd = business_days(np.datetime64(d), np.datetime64(EXPIRY))
        if bd <= 0:
            continue
        t = bd / 252
        for k in strikes:
            for typ in ("call", "put"):
                v = float(bs_price(s, k, t, R, iv, typ == "call"))
                g = greeks(s, k, t, R, iv, typ == "call")
                rows.append({
                    "trade_date": pd.Timestamp(d), "ticker": f"PETR{'C' if typ == 'call' else 'O'}{int(k * 100)}",
                    "underlying_ticker": und, "option_type": typ, "strike": k, "expiry": pd.Timestamp(EXPIRY),
                    "spot": s, "t": t, "r": R, "k": np.log(k / (s * np.exp(R * t))), "iv": iv,
                    "vega": float(g["vega"]), "best_bid": round(v - 0.02, 2) if book else 0.0,
                    "best_ask": round(v + 0.02, 2) if book else 0.0,
                })  # fmt: skip
    return pd.DataFrame(rows)


def spots_frame(days, spots) -> pd.DataFrame:
    return pd.DataFrame({"trade_date": pd.to_datetime(days), "underlying_ticker": "PETR4", "spot": spots})


NO_FEES = CostModel(option_fee_bps=0.0, stock_fee_bps=0.0, stock_half_spread_bps=0.0)


@pytest.mark.parametrize("final_spot, call_exercised, put_exercised", [(10.5, True, False), (9.995, False, False),
                                                                       (9.6, False, True)])  # fmt: skip
def test_straddle_held_to_expiry_settles_at_intrinsic_under_b3_rules(final_spot, call_exercised, put_exercised):
    spots = [10, 10.2, 9.9, 10.1, 10.3, 10.4, final_spot]
    m = chain(DAYS, spots, [0.3] * 7)
    sig = m[m["trade_date"] == DAYS[0]].assign(forecast=lambda x: x["iv"] + 0.02)
    cfg = StrategyConfig(hold_days=30, min_bdays=1, option_lot=1, stock_lot=1, hedge=False, min_edge_over_cost=0)
    costs = CostModel(option_fee_bps=10.0, stock_fee_bps=3.0, stock_half_spread_bps=2.0)
    res = run_backtest(prepare_market(m, spots_frame(DAYS, spots)), sig, cfg, costs)

    d0 = m[m["trade_date"] == DAYS[0]].set_index("option_type")
    vpt = d0["vega"] / 100
    qty = round(1000 / (vpt["call"] + vpt["put"]))  # R$ 1,000 per vol point across the two legs
    assert res.legs["qty"].tolist() == [qty, qty]
    paid = qty * (d0.loc["call", "best_ask"] + d0.loc["put", "best_ask"])
    call_iv, put_iv = max(final_spot - 10, 0), max(10 - final_spot, 0)
    received = qty * ((call_iv if call_exercised else 0) + (put_iv if put_exercised else 0))
    exercised = call_exercised or put_exercised
    fees = paid * 10e-4 + (qty * 10 * 3e-4 if exercised else 0)  # option fees; exercise billed on the strike
    stock = qty * final_spot * 5e-4 if exercised else 0  # delivered shares sold at the close (no hedge book)
    assert res.daily["total"].sum() == pytest.approx(received - paid - fees - stock, abs=1e-6)
    settle = res.trades[res.trades["settle"]].set_index("ticker")
    assert settle["trade_date"].eq(pd.Timestamp(EXPIRY)).all()
    assert bool(settle.loc["PETRC1000", "exercised"]) is call_exercised
    assert bool(settle.loc["PETRO1000", "exercised"]) is put_exercised
    # the position is held every session up to the one before expiry, then nothing
    held = res.positions[res.positions["kind"] == "option"].groupby("trade_date").size()
    assert list(held.index) == list(pd.to_datetime(DAYS[:-1])) and (held == 2).all()


def test_one_day_of_delta_hedging_with_empty_book_hand_computed():
    days, spots, ivs = DAYS[:2], [10.0, 10.2], [0.30, 0.32]
    m = chain(days, spots, ivs, book=False)
    sig = m[(m["trade_date"] == days[0]) & (m["option_type"] == "call")].assign(forecast=lambda x: x["iv"] + 0.02)
    cfg = StrategyConfig(instrument="option", hold_days=1, min_bdays=1, option_lot=1, stock_lot=1,
                         min_edge_over_cost=0)
    costs = CostModel(option_fee_bps=6.5, stock_fee_bps=3.0, stock_half_spread_bps=2.0, brokerage_per_order=1.0)
    res = run_backtest(prepare_market(m), sig, cfg, costs)

    t0, t1 = 6 / 252, 5 / 252  # business days to 21 Mar 2025 from 13 and 14 Mar
    v0, v1 = float(bs_price(10.0, 10, t0, R, 0.30, True)), float(bs_price(10.2, 10, t1, R, 0.32, True))
    g0 = greeks(10.0, 10, t0, R, 0.30, True)
    q = round(1000 / (float(g0["vega"]) / 100))
    h = -round(q * float(g0["delta"]))
    half0, half1 = max(0.01, 0.05 * v0), max(0.01, 0.05 * v1)  # spread model: the book is empty
    option_costs = q * half0 + q * half1 + 6.5e-4 * q * ((v0 + half0) + (v1 - half1)) + 2 * 1.0
    stock_costs = abs(h) * (10.0 + 10.2) * 5e-4 + 2 * 1.0
    gross = q * (v1 - v0) + h * 0.2
    d = res.daily.set_index("trade_date")
    assert res.legs["qty"].tolist() == [q]
    assert d["costs"].sum() == pytest.approx(option_costs + stock_costs, rel=1e-9)
    assert d.loc[pd.Timestamp(days[1]), "gross"] == pytest.approx(gross, rel=1e-9)
    assert d["total"].sum() == pytest.approx(gross - option_costs - stock_costs, rel=1e-9)
    # attribution: Taylor terms at day 0's Greeks, the hedge in the delta line, and the rest in residual
    row = d.loc[pd.Timestamp(days[1])]
    assert row["delta"] == pytest.approx(q * float(g0["delta"]) * 0.2 + h * 0.2, rel=1e-9)
    assert row["gamma"] == pytest.approx(q * 0.5 * float(g0["gamma"]) * 0.04, rel=1e-9)
    assert row["vega"] == pytest.approx(q * float(g0["vega"]) * 0.02, rel=1e-9)
    assert row["theta"] == pytest.approx(q * float(g0["theta"]) / 252, rel=1e-9)
    others = row[["delta", "gamma", "vega", "theta"]].sum()
    assert row["residual"] == pytest.approx(gross - others, rel=1e-9)
    assert abs(row["residual"]) < 0.25 * abs(row["vega"])  # cross terms (vanna, volga) of a 2-point vol move
    # the hedge is held overnight and unwound when the option is sold
    stock = res.positions[res.positions["kind"] == "stock"]
    assert stock["qty"].tolist() == [h] and stock["trade_date"].tolist() == [pd.Timestamp(days[0])]


@pytest.fixture(scope="module")
def toy():
    """A toy market with predictions in the stored-predictions contract (a noisy model and a leaky one)."""
    mkt = toy_market(40, 2, seed=3)
    o = mkt["option_iv"]
    t = build_targets(o)[["trade_date", "ticker", "iv_next", "target_date"]]
    base = o[o["iv_reason"] == "ok"][["trade_date", "ticker", "underlying_ticker", "iv"]].merge(t, on=["trade_date",
                                                                                                      "ticker"])
    base = base.merge(mkt["truth"][["trade_date", "ticker", "iv_next_optimal"]], on=["trade_date", "ticker"])
    rng = np.random.default_rng(0)
    preds = []
    for name, fc in {
        "noisy_optimal": base["iv_next_optimal"] + rng.normal(0, 0.003, len(base)),
        "persistence": base["iv"],
    }.items():
        preds.append(base.assign(model=name, split="test", fold=-1, forecast=fc, iv_opt=base["iv_next_optimal"]))
    preds = pd.concat(preds, ignore_index=True).drop(columns=["iv_next_optimal"])
    return mkt, preds


def _market(mkt):
    o = mkt["option_iv"].copy()
    u = mkt["underlying_quotes"].rename(columns={"ticker": "underlying_ticker", "close": "spot"})
    return o, u


def test_attribution_adds_up_and_strategies_run_side_by_side(toy):
    mkt, preds = toy
    o, u = _market(mkt)
    cfg = StrategyConfig(instrument="option", threshold=0.003, min_bdays=2, min_edge_over_cost=0)
    cmp = compare_strategies(o, preds, mkt["truth"], config=cfg, underlyings=u)
    d = cmp.daily
    parts = d[["delta", "gamma", "vega", "theta", "residual"]].sum(axis=1)
    assert np.allclose(parts, d["gross"]) and np.allclose(d["gross"] - d["costs"], d["total"])
    assert d.groupby("strategy").size().nunique() == 1  # every strategy over the same days
    summary = cmp.summary.set_index("strategy")
    assert {"noisy_optimal", "persistence", "random", "no_trade", "optimal", "oracle"} <= set(summary.index)
    assert summary.loc["no_trade", "net_pnl"] == 0 and summary.loc["persistence", "costs"] == 0
    assert summary.loc["random", "costs"] > 0
    # knowing tomorrow's IV beats guessing it: the oracle's gross P&L is the largest
    assert summary.loc["oracle", "gross_pnl"] > max(summary.loc["random", "gross_pnl"], 0)
    assert summary.loc["oracle", "sharpe_gross"] > summary.loc["random", "sharpe_gross"]


def test_break_even_cost_multiple_zeroes_the_pnl(toy):
    mkt, preds = toy
    o, u = _market(mkt)
    mk = prepare_market(o, u)
    cfg = StrategyConfig(instrument="option", threshold=0.003, min_bdays=2, min_edge_over_cost=0)
    sig = Strategy("oracle", standard_strategies(preds)[-1].signal).signal(preds, mkt["truth"])
    res = run_backtest(mk, sig, cfg, CostModel())
    k = break_even_multiple(res.daily["gross"], res.daily["costs"])
    assert k > 0
    again = run_backtest(mk, sig, cfg, CostModel().scaled(k))  # decisions do not depend on costs
    assert again.daily["total"].sum() == pytest.approx(0.0, abs=1e-6 * res.daily["costs"].sum())
    assert sharpe(again.daily["total"]) == pytest.approx(0.0, abs=1e-9)


def test_metrics_on_a_known_series():
    pnl = np.array([1.0, -2.0, 3.0, -1.0, -1.0, 4.0])
    assert max_drawdown(pnl) == pytest.approx(2.0)  # peak 2 after day 3, trough 0 after day 5
    assert sharpe(pnl) == pytest.approx(np.sqrt(252) * pnl.mean() / pnl.std(ddof=1))
    assert break_even_multiple(np.array([2.0, 1.0]), np.array([1.0, 0.5])) == pytest.approx(2.0)
    assert break_even_multiple(np.array([-1.0]), np.array([1.0])) == 0.0


def test_lookahead_check_passes_honest_signals_and_catches_leaky_ones(toy):
    mkt, preds = toy
    o, u = _market(mkt)
    cfg = StrategyConfig(instrument="option", threshold=0.003, min_bdays=2, min_edge_over_cost=0)

    def leaky(p, truth=None):
        """Tomorrow's stored IV of the same series, read from the next row: a look-ahead bug."""
        p = p[(p["model"] == "persistence")].sort_values(["ticker", "trade_date"])
        nxt = p.groupby("ticker")["iv"].shift(-1)
        return p.assign(forecast=nxt.fillna(p["iv"]))[["trade_date", "ticker", "forecast"]]

    honest = Strategy("noisy_optimal", model_signal("noisy_optimal"))
    for r in lookahead_check(honest, o, preds, mkt["truth"], config=cfg, underlyings=u):
        assert r.passed, r.detail
    caught = lookahead_check(Strategy("leaky", leaky), o, preds, mkt["truth"], config=cfg, underlyings=u)
    assert not any(r.passed for r in caught) and all(r.changed_rows > 0 for r in caught)
    oracle = next(s for s in standard_strategies(preds) if s.name == "oracle")
    assert oracle.uses_future
    assert not any(r.passed for r in lookahead_check(oracle, o, preds, mkt["truth"], config=cfg, underlyings=u))


def test_a_partition_computed_from_a_warm_up_window_equals_the_full_run(toy):
    """How the Dagster partitions work: a day's rows recomputed from flat a warm-up window earlier
    equal that day in a run over the whole history (positions live at most hold_days sessions)."""
    mkt, preds = toy
    o, u = _market(mkt)
    cfg = StrategyConfig(instrument="option", threshold=0.003, min_bdays=2, hold_days=3, min_edge_over_cost=0)
    sig = model_signal("noisy_optimal")(preds)
    full = run_backtest(prepare_market(o, u), sig, cfg)
    days = np.sort(o["trade_date"].unique())
    day, start = days[30], days[30 - 5]
    # the window ends at the day itself, as in a one-partition run: later sessions are not loaded
    cut = (o["trade_date"] >= start) & (o["trade_date"] <= day)
    ucut = (u["trade_date"] >= start) & (u["trade_date"] <= day)
    win = run_backtest(prepare_market(o[cut], u[ucut]), sig[(sig["trade_date"] >= start) & (sig["trade_date"] <= day)],
                       cfg)  # fmt: skip
    a = full.daily[full.daily["trade_date"] == day].drop(columns="strategy").reset_index(drop=True)
    b = win.daily[win.daily["trade_date"] == day].drop(columns="strategy").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    pa = full.positions[full.positions["trade_date"] == day].reset_index(drop=True)
    pb = win.positions[win.positions["trade_date"] == day].reset_index(drop=True)
    pd.testing.assert_frame_equal(pa, pb)


def test_bad_input_names_the_missing_columns():
    with pytest.raises(ValueError, match="missing column"):
        prepare_market(pd.DataFrame({"trade_date": [], "ticker": []}))


def test_an_edge_that_does_not_pay_the_round_trip_is_not_traded():
    """The cost gate: the same 2-vol-point view is traded on a tight book and skipped on a wide one."""
    days, spots = DAYS[:2], [100.0, 102.0]  # ATM, vega about R$ 6 per unit per 1.00 of vol: the edge is R$ 0.12
    tight = chain(days, spots, [0.30, 0.32], strikes=(100.0,))  # quoted 0.04 wide
    wide = tight.assign(best_bid=tight["best_bid"] - 0.3, best_ask=tight["best_ask"] + 0.3)  # 0.64 wide
    cfg = StrategyConfig(instrument="option", hold_days=1, min_bdays=1, option_lot=1, stock_lot=1)
    for book, traded in ((tight, True), (wide, False)):
        sig = book[book["trade_date"] == days[0]].assign(forecast=lambda x: x["iv"] + 0.02)
        res = run_backtest(prepare_market(book), sig, cfg, NO_FEES)
        q = res.legs.set_index("ticker") if len(res.legs) else None
        assert (q is not None) is traded
        # the rule, by hand: |edge| x vega against the quoted spread
        d0 = book[book["trade_date"] == days[0]]
        pays = (0.02 * d0["vega"] >= d0["best_ask"] - d0["best_bid"]).all()
        assert bool(pays) == traded
