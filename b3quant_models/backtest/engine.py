"""Vectorized backtest of forecast-driven, delta-hedged option positions on B3.

Timing (the only rule that matters for honesty): at the close of session D the engine sees D's
forecasts and D's market (IV, Greeks, best bid/ask) and nothing later; it decides the positions held
from the close of D to the close of D+1, trades to them at D's close (best bid/ask, or the spread
model where the book is empty) and hedges delta with the underlying at D's close. P&L dated D+1 is
the revaluation of the positions held overnight; costs are dated on the day they are paid.

Marks: BSM at the day's observed IV (``option_iv.iv``) with that day's spot, business-day time and
rate; a series that did not trade that day keeps its last observed IV (age reported). Because the
sum of mark-to-mark P&L telescopes, marks only move P&L between days and between "costs" and the
market lines: the total over a position's life is its cash flows (fills, settlement).

Expiry (B3 rules): a series held into its expiry session is settled there at intrinsic value against
the underlying's close; B3 exercises automatically when it is in the money by at least R$ 0.01
(``StrategyConfig.exercise_threshold``), otherwise it expires worthless. Exercised shares are
delivered into the hedge book (B3 settles exercise physically), paying the cash-market fee on the
strike notional; the hedge then trades only the net.

Everything is computed with whole-table numpy/pandas operations: no per-day Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..calendar import DAYS_PER_YEAR, business_days
from ..pricing import bs_price, greeks
from .config import MIN_TICK, CostModel, StrategyConfig

MARKET_COLUMNS = [
    "trade_date", "ticker", "underlying_ticker", "option_type", "strike", "expiry",
    "spot", "t", "r", "k", "iv", "vega", "best_bid", "best_ask",
]  # fmt: skip
SIGNAL_COLUMNS = ["trade_date", "ticker", "forecast"]
PNL_PARTS = ["delta", "gamma", "vega", "theta", "residual"]


@dataclass
class Market:
    """The session grid and the per-day tables the engine indexes by session number ``i``."""

    sessions: np.ndarray  # datetime64[ns], sorted
    quotes: pd.DataFrame  # one row per (i, ticker): iv, bid/ask, k, vega ...
    series: pd.DataFrame  # per ticker: underlying, is_call, strike, expiry, e_i (expiry session index)
    spot: pd.DataFrame  # per (i, underlying_ticker)
    rate: pd.Series  # per i


@dataclass
class BacktestResult:
    name: str
    legs: pd.DataFrame  # decisions: (trade_date, ticker, qty, edge) opened at that close
    positions: pd.DataFrame  # options held at each close, and the hedge
    trades: pd.DataFrame  # option trades and settlements, with their cost
    daily: pd.DataFrame  # one row per session: P&L parts, costs, total


def _require(df: pd.DataFrame, cols: list[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; expected at least {cols}")


def prepare_market(market: pd.DataFrame, underlyings: pd.DataFrame | None = None) -> Market:
    """Index an ``option_iv``-like frame by session; every session in it is a trading day of the grid.

    ``underlyings`` (trade_date, underlying_ticker, spot): closes for sessions where no option of an
    underlying is quoted (the sample market quotes no series on its expiry day, yet settles it)."""
    _require(market, MARKET_COLUMNS, "backtest market (option_iv)")
    m = market[MARKET_COLUMNS].copy()
    m["trade_date"] = pd.to_datetime(m["trade_date"]).astype("datetime64[ns]")
    m["expiry"] = pd.to_datetime(m["expiry"]).astype("datetime64[ns]")
    extra = pd.DataFrame(columns=["trade_date", "underlying_ticker", "spot"])
    if underlyings is not None and len(underlyings):
        _require(underlyings, ["trade_date", "underlying_ticker", "spot"], "backtest underlyings")
        extra = underlyings[["trade_date", "underlying_ticker", "spot"]].copy()
        extra["trade_date"] = pd.to_datetime(extra["trade_date"]).astype("datetime64[ns]")
    dup = m.duplicated(["trade_date", "ticker"], keep="last")
    if dup.any():
        ex = m.loc[dup, ["trade_date", "ticker"]].head(3).to_dict("records")
        raise ValueError(f"backtest market: {int(dup.sum())} duplicate (trade_date, ticker) rows, e.g. {ex}")
    sessions = np.sort(np.union1d(m["trade_date"].unique(), extra["trade_date"].unique()).astype("datetime64[ns]"))
    m["i"] = np.searchsorted(sessions, m["trade_date"].to_numpy())
    for c in ("best_bid", "best_ask", "iv", "vega", "k", "spot", "r", "t", "strike"):
        m[c] = pd.to_numeric(m[c], errors="coerce").astype(float)
    series = m.sort_values("i").drop_duplicates("ticker", keep="last").set_index("ticker")
    series = series[["underlying_ticker", "option_type", "strike", "expiry"]].copy()
    series["is_call"] = series["option_type"].astype(str).str[0].str.lower().eq("c")
    series["e_i"] = _expiry_index(sessions, m, series)
    extra["i"] = np.searchsorted(sessions, extra["trade_date"].to_numpy())
    spot = m[["i", "underlying_ticker", "spot"]]
    if len(extra):
        spot = pd.concat([extra[["i", "underlying_ticker", "spot"]], spot])
    spot = spot.dropna(subset=["spot"]).groupby(["i", "underlying_ticker"], as_index=False)["spot"].first()
    rate = m.groupby("i")["r"].median()
    return Market(sessions, m.drop(columns=["option_type", "strike", "expiry"]), series, spot, rate)


# --- decisions -----------------------------------------------------------------------------------


def round_trip_cost(q: pd.DataFrame, costs: CostModel) -> np.ndarray:
    """R$ per unit to buy and later sell (or the reverse) a series at D's book: the quoted spread where both
    sides are there, else twice the spread model's half-spread around the BSM mark; plus the fees of both
    trades. The multiplier is left out: decisions never see it (break-even analysis scales costs)."""
    mark = bs_price(q["spot"].to_numpy(float), q["strike"].to_numpy(float), np.maximum(q["t"].to_numpy(float), 1e-12),
                    q["r"].to_numpy(float), q["iv"].to_numpy(float), q["is_call"].to_numpy(bool))  # fmt: skip
    bid, ask = q["best_bid"].to_numpy(float), q["best_ask"].to_numpy(float)
    both = np.isfinite(bid) & np.isfinite(ask) & (bid > 0) & (ask >= bid)
    model = 2.0 * np.maximum(costs.min_half_spread, costs.rel_half_spread * mark)
    spread = np.where(both, ask - bid, model)
    fees = 2.0 * mark * (costs.option_fee_bps + costs.brokerage_bps) / 1e4  # per-order fees depend on size: left out
    return spread + fees


def decide(mk: Market, signals: pd.DataFrame, cfg: StrategyConfig, costs: CostModel | None = None) -> pd.DataFrame:
    """Positions opened at each close from that close's forecasts only: (i, ticker, qty, edge)."""
    cm = costs or CostModel()
    empty = pd.DataFrame({"i": pd.Series(dtype=np.int64), "ticker": pd.Series(dtype=object),
                          "qty": pd.Series(dtype=float), "edge": pd.Series(dtype=float)})  # fmt: skip
    if signals is None or signals.empty:
        return empty
    _require(signals, SIGNAL_COLUMNS, "backtest signals")
    s = signals[SIGNAL_COLUMNS].copy()
    s["trade_date"] = pd.to_datetime(s["trade_date"]).astype("datetime64[ns]")
    s = s.drop_duplicates(["trade_date", "ticker"], keep="last")
    q = mk.quotes.merge(s, on=["trade_date", "ticker"], how="inner")
    q = q.join(mk.series[["is_call", "strike", "expiry", "e_i"]], on="ticker")
    bdays = q["e_i"] - q["i"]  # sessions left (the grid's count; B3 business days when no day is missing)
    ok = (
        np.isfinite(q["forecast"]) & np.isfinite(q["iv"]) & (q["vega"] / 100 >= cfg.min_vega_pt)
        & (q["k"].abs() <= cfg.max_abs_k)
        & (bdays >= cfg.min_bdays) & (bdays <= cfg.max_bdays)
    )  # fmt: skip
    q = q[ok].copy()
    q["bd"] = bdays[ok]
    q["edge"] = q["forecast"] - q["iv"]
    q["vpt"] = q["vega"] / 100.0  # R$ per vol point per unit
    q["rt"] = round_trip_cost(q, cm)
    q["gain"] = q["edge"].abs() * q["vega"]  # R$ per unit if the forecast is right
    if cfg.instrument == "option":
        q = q[(q["edge"].abs() > cfg.threshold) & (q["gain"] >= cfg.min_edge_over_cost * q["rt"])]
        q["absedge"] = q["edge"].abs()
        q["rank"] = q.groupby(["i", "underlying_ticker"])["absedge"].rank(ascending=False, method="first")
        q = q[q["rank"] <= cfg.max_per_underlying]
        legs = q[["i", "ticker", "underlying_ticker", "edge", "vpt"]].copy()
        legs["qty"] = np.sign(legs["edge"]) * cfg.vega_per_trade / legs["vpt"]
    elif cfg.instrument == "straddle":
        keys = ["i", "underlying_ticker", "expiry", "strike"]
        c = q[q["is_call"]][[*keys, "ticker", "edge", "vpt", "rt", "k", "bd"]]
        p = q[~q["is_call"]][[*keys, "ticker", "edge", "vpt", "rt"]]
        pair = c.merge(p, on=keys, suffixes=("_c", "_p"))
        if pair.empty:
            return empty
        pair["absk"] = pair["k"].abs()
        pair = pair.sort_values(["i", "underlying_ticker", "bd", "absk"])  # nearest expiry, then ATM-forward
        pair = pair.drop_duplicates(["i", "underlying_ticker"], keep="first")
        pair["edge"] = 0.5 * (pair["edge_c"] + pair["edge_p"])
        gain = pair["edge"].abs() * 100.0 * (pair["vpt_c"] + pair["vpt_p"])
        pays = gain >= cfg.min_edge_over_cost * (pair["rt_c"] + pair["rt_p"])
        pair = pair[(pair["edge"].abs() > cfg.threshold) & pays]
        size = np.sign(pair["edge"]) * cfg.vega_per_trade / (pair["vpt_c"] + pair["vpt_p"])
        legs = pd.concat(
            [
                pd.DataFrame({"i": pair["i"], "ticker": pair[f"ticker_{x}"],
                              "underlying_ticker": pair["underlying_ticker"],
                              "edge": pair["edge"], "vpt": pair[f"vpt_{x}"], "qty": size})
                for x in ("c", "p")
            ],
            ignore_index=True,
        )  # fmt: skip
    else:
        raise ValueError(f"StrategyConfig.instrument: expected 'straddle' or 'option', got {cfg.instrument!r}")
    if legs.empty:
        return empty
    # limits on gross vega, per underlying then in total
    legs["gv"] = legs["qty"].abs() * legs["vpt"]
    gu = legs.groupby(["i", "underlying_ticker"])["gv"].transform("sum")
    legs["qty"] *= np.minimum(1.0, cfg.max_vega_underlying / gu)
    gt = (legs["qty"].abs() * legs["vpt"]).groupby(legs["i"]).transform("sum")
    legs["qty"] *= np.minimum(1.0, cfg.max_vega_total / gt)
    legs["qty"] = np.clip(legs["qty"], -cfg.max_qty, cfg.max_qty)
    lot = max(cfg.option_lot, 1)
    legs["qty"] = np.round(legs["qty"] / lot) * lot
    legs = legs[legs["qty"] != 0]
    return legs[["i", "ticker", "qty", "edge"]].reset_index(drop=True)


def holdings(mk: Market, legs: pd.DataFrame, cfg: StrategyConfig) -> pd.DataFrame:
    """Net quantity held at each close: cohorts live ``hold_days`` sessions, never into the expiry session."""
    if legs.empty:
        return pd.DataFrame({"i": pd.Series(dtype=np.int64), "ticker": pd.Series(dtype=object),
                             "qty": pd.Series(dtype=float)})  # fmt: skip
    n = len(mk.sessions)
    h = max(int(cfg.hold_days), 1)
    rep = legs.loc[legs.index.repeat(h), ["i", "ticker", "qty"]].copy()
    rep["i"] = rep["i"].to_numpy() + np.tile(np.arange(h), len(legs))
    e_i = mk.series.loc[rep["ticker"], "e_i"].to_numpy()
    rep = rep[(rep["i"].to_numpy() < np.minimum(e_i, n))]
    pos = rep.groupby(["i", "ticker"], as_index=False)["qty"].sum()
    return pos[pos["qty"] != 0].reset_index(drop=True)


# --- marks ---------------------------------------------------------------------------------------


def marks(mk: Market, keys: pd.DataFrame, exercise_threshold: float = MIN_TICK) -> pd.DataFrame:
    """Value and Greeks of one unit of each (i, ticker): BSM at the day's IV (or the last observed one);
    on the expiry session the settlement value (intrinsic when exercised, else 0)."""
    k = keys[["i", "ticker"]].drop_duplicates().reset_index(drop=True)
    if k.empty:
        cols = [
            "i",
            "ticker",
            "value",
            "iv_mark",
            "iv_age",
            "spot",
            "delta",
            "gamma",
            "vega",
            "theta",
            "expiring",
            "exercised",
            "intrinsic",
        ]
        return pd.DataFrame({c: pd.Series(dtype=float) for c in cols}).astype({"ticker": object})
    k = k.join(mk.series[["underlying_ticker", "is_call", "strike", "expiry", "e_i"]], on="ticker")
    obs = mk.quotes.loc[np.isfinite(mk.quotes["iv"]), ["i", "ticker", "iv"]].rename(columns={"i": "i_obs"})
    k = k.sort_values("i")
    obs = obs.sort_values("i_obs")
    k = pd.merge_asof(k, obs, left_on="i", right_on="i_obs", by="ticker", direction="backward")
    sp = mk.spot.rename(columns={"i": "i_spot"}).sort_values("i_spot")
    k = pd.merge_asof(k, sp, left_on="i", right_on="i_spot", by="underlying_ticker", direction="backward")
    if k["spot"].isna().any():
        bad = k.loc[k["spot"].isna(), ["i", "ticker"]].head(3).to_dict("records")
        raise ValueError(f"backtest marks: no underlying close on or before session(s) {bad}")
    rate = mk.rate.reindex(np.arange(len(mk.sessions))).ffill().bfill().to_numpy()
    i = k["i"].to_numpy()
    r = rate[i]
    day = mk.sessions[i].astype("datetime64[D]")
    t = business_days(day, k["expiry"].to_numpy().astype("datetime64[D]")) / DAYS_PER_YEAR
    s, kk, call = k["spot"].to_numpy(float), k["strike"].to_numpy(float), k["is_call"].to_numpy(bool)
    sigma = k["iv"].to_numpy(float)
    expiring = i >= k["e_i"].to_numpy()
    intrinsic = np.where(call, np.maximum(s - kk, 0.0), np.maximum(kk - s, 0.0))
    exercised = expiring & (intrinsic >= exercise_threshold - 1e-12)
    tt = np.where(expiring, 0.0, np.maximum(t, 1e-12))
    value = np.where(expiring, np.where(exercised, intrinsic, 0.0), bs_price(s, kk, tt, r, sigma, call))
    g = greeks(s, kk, tt, r, sigma, call)
    out = pd.DataFrame({
        "i": i, "ticker": k["ticker"].to_numpy(), "value": value, "iv_mark": np.where(expiring, np.nan, sigma),
        "iv_age": (i - k["i_obs"].to_numpy(float)), "spot": s,
        **{n: np.where(expiring, 0.0, g[n]) for n in ("delta", "gamma", "vega", "theta")},
        "expiring": expiring, "exercised": exercised, "intrinsic": intrinsic,
    })  # fmt: skip
    missing = ~expiring & ~np.isfinite(value)
    if missing.any():
        bad = out.loc[missing, ["i", "ticker"]].head(3).to_dict("records")
        raise ValueError(f"backtest marks: a held series has no IV on or before {bad} (positions need an IV)")
    return out


# --- the run -------------------------------------------------------------------------------------


def _fills(mk: Market, tr: pd.DataFrame, costs: CostModel) -> pd.DataFrame:
    """Trade at the close: buy at the best ask, sell at the best bid; the spread model where a side is empty."""
    book = mk.quotes[["i", "ticker", "best_bid", "best_ask"]]
    tr = tr.merge(book, on=["i", "ticker"], how="left")
    half = np.maximum(costs.min_half_spread, costs.rel_half_spread * tr["value"].to_numpy())
    bid, ask = tr["best_bid"].to_numpy(float), tr["best_ask"].to_numpy(float)
    buy = tr["trade"].to_numpy() > 0
    ask_ok, bid_ok = np.isfinite(ask) & (ask > 0), np.isfinite(bid) & (bid > 0)
    fill_buy = np.where(ask_ok, ask, tr["value"] + half)
    fill_sell = np.where(bid_ok, bid, np.maximum(tr["value"] - half, 0.0))
    tr["fill"] = np.where(buy, fill_buy, fill_sell)
    tr["from_book"] = np.where(buy, ask_ok, bid_ok)
    return tr


def run_backtest(
    market: pd.DataFrame | Market,
    signals: pd.DataFrame | None,
    config: StrategyConfig | None = None,
    costs: CostModel | None = None,
    name: str = "strategy",
    period: tuple | None = None,
) -> BacktestResult:
    """Run one strategy. ``signals``: (trade_date, ticker, forecast) — D's forecast of D+1's IV.

    ``period`` (first, last) bounds the daily table; by default from the first signal day to the
    session after the last one (where the last positions are closed)."""
    cfg, cm = config or StrategyConfig(), costs or CostModel()
    mk = market if isinstance(market, Market) else prepare_market(market)
    n = len(mk.sessions)
    legs = decide(mk, signals, cfg, cm)
    if legs.empty:
        return _flat(mk, name, _period(mk, legs, period, 0))
    pos = holdings(mk, legs, cfg)
    ser = mk.series

    # option trades: change of the net holding; into the expiry session it is a settlement instead
    prev = pos.assign(i=pos["i"] + 1).rename(columns={"qty": "qty_prev"})
    tr = pos.merge(prev, on=["i", "ticker"], how="outer").fillna({"qty": 0.0, "qty_prev": 0.0})
    tr = tr[tr["i"] < n].copy()
    tr["i"] = tr["i"].astype(np.int64)
    tr["trade"] = tr["qty"] - tr["qty_prev"]
    tr = tr[tr["trade"] != 0]
    tr["settle"] = tr["i"].to_numpy() >= ser.loc[tr["ticker"], "e_i"].to_numpy()

    m = marks(mk, pd.concat([pos[["i", "ticker"]], tr[["i", "ticker"]], prev.loc[prev["i"] < n, ["i", "ticker"]]]),
              cfg.exercise_threshold)  # fmt: skip
    tr = tr.merge(m[["i", "ticker", "value", "spot", "exercised"]], on=["i", "ticker"], how="left")
    tr = tr.join(ser[["underlying_ticker", "strike", "is_call"]], on="ticker")
    trades = tr[~tr["settle"]].copy()
    trades = _fills(mk, trades, cm)
    notional = trades["trade"].abs() * trades["fill"]
    # the spread paid is measured from the book's mid where both sides are quoted (from the mark where the
    # spread model filled): never negative. A real closing book can sit away from the mark (the mark's IV
    # comes from a stale close), so buying at an ask below the mark is a gap between mark and book, not a
    # negative cost: it goes into the residual, and costs x k stays a pure cost multiple.
    bid, ask = trades["best_bid"].to_numpy(float), trades["best_ask"].to_numpy(float)
    both = np.isfinite(bid) & np.isfinite(ask) & (bid > 0) & (ask > 0)
    ref = np.where(both, 0.5 * (bid + ask), trades["value"].to_numpy(float))
    vs_mark = trades["trade"] * (trades["fill"] - trades["value"])
    trades["spread_cost"] = np.maximum(trades["trade"] * (trades["fill"] - ref), 0.0)
    trades["mark_gap"] = vs_mark - trades["spread_cost"]
    trades["fee_cost"] = notional * (cm.option_fee_bps + cm.brokerage_bps) / 1e4 + cm.brokerage_per_order
    settle = tr[tr["settle"]].copy()
    settle["fill"] = settle["value"]
    settle["from_book"] = False
    settle["spread_cost"] = 0.0
    settle["mark_gap"] = 0.0
    ex_notional = np.where(settle["exercised"], settle["trade"].abs() * settle["strike"], 0.0)
    settle["fee_cost"] = ex_notional * (cm.stock_fee_bps + cm.brokerage_bps) / 1e4
    alltr = pd.concat([trades, settle], ignore_index=True)
    alltr["cost"] = cm.multiplier * (alltr["spread_cost"] + alltr["fee_cost"])

    # overnight revaluation of what is held at each close, split by Greeks (Taylor at D's mark)
    p0 = pos.merge(m, on=["i", "ticker"], how="left")
    p0 = p0[p0["i"] + 1 < n]
    nxt = m[["i", "ticker", "value", "spot", "iv_mark"]].rename(
        columns={"value": "value1", "spot": "spot1", "iv_mark": "iv1"}
    )
    pl = p0.assign(i1=p0["i"] + 1).merge(nxt.rename(columns={"i": "i1"}), on=["i1", "ticker"], how="left")
    q = pl["qty"].to_numpy()
    ds = (pl["spot1"] - pl["spot"]).to_numpy()
    dvol = np.nan_to_num((pl["iv1"] - pl["iv_mark"]).to_numpy())
    pl["total"] = q * (pl["value1"] - pl["value"]).to_numpy()
    pl["delta"] = q * pl["delta"].to_numpy() * ds
    pl["gamma"] = q * 0.5 * pl["gamma"].to_numpy() * ds**2
    pl["vega"] = q * pl["vega"].to_numpy() * dvol
    pl["theta"] = q * pl["theta"].to_numpy() / DAYS_PER_YEAR
    pl["residual"] = pl["total"] - pl[["delta", "gamma", "vega", "theta"]].sum(axis=1)
    pl["underlying_ticker"] = ser.loc[pl["ticker"], "underlying_ticker"].to_numpy()

    # the hedge: shares held at each close = -(options' delta) in round lots; exercised shares arrive
    # in the book at the expiry close, so only the net is traded
    p0all = pos.merge(m[["i", "ticker", "delta"]], on=["i", "ticker"], how="left")
    p0all["underlying_ticker"] = ser.loc[p0all["ticker"], "underlying_ticker"].to_numpy()
    od = (p0all["qty"] * p0all["delta"]).groupby([p0all["i"], p0all["underlying_ticker"]]).sum()
    lot = max(cfg.stock_lot, 1)
    hedge = (-np.round(od / lot) * lot) if cfg.hedge else od * 0.0
    hedge = hedge.rename("shares").reset_index()
    ex = settle[settle["exercised"]]
    held = -ex["trade"]  # the quantity held into expiry: a held call delivers +shares, a held put -shares
    delivered = held * np.where(ex["is_call"], 1.0, -1.0)
    dlv = delivered.groupby([ex["i"], ex["underlying_ticker"]]).sum().rename("delivered").reset_index()
    hprev = hedge.assign(i=hedge["i"] + 1).rename(columns={"shares": "shares_prev"})
    hb = hedge.merge(hprev, on=["i", "underlying_ticker"], how="outer").merge(
        dlv, on=["i", "underlying_ticker"], how="outer"
    )
    hb = hb.fillna({"shares": 0.0, "shares_prev": 0.0, "delivered": 0.0})
    hb = hb[hb["i"] < n].copy()
    hb["i"] = hb["i"].astype(np.int64)
    spot_at = _spot_lookup(mk)
    hb["spot"] = spot_at(hb["i"].to_numpy(), hb["underlying_ticker"].to_numpy())
    hb["stock_trade"] = hb["shares"] - hb["shares_prev"] - hb["delivered"]
    stock_bps = cm.stock_half_spread_bps + cm.stock_fee_bps + cm.brokerage_bps
    hb["cost"] = cm.multiplier * (
        hb["stock_trade"].abs() * hb["spot"] * stock_bps / 1e4 + cm.brokerage_per_order * (hb["stock_trade"] != 0)
    )
    hp = hb[(hb["i"] + 1 < n) & (hb["shares"] != 0)]
    s1 = spot_at(hp["i"].to_numpy() + 1, hp["underlying_ticker"].to_numpy())
    hp = hp.assign(i1=hp["i"] + 1, hedge=hp["shares"] * (s1 - hp["spot"]))

    # daily table
    last = max([int(x.max()) + 1 for x in (legs["i"], pos["i"]) if len(x)] + [int(tr["i"].max()) if len(tr) else 0])
    days = _period(mk, legs, period, last)
    daily = pd.DataFrame({"i": days})
    parts = pl.groupby(pl["i"] + 1)[PNL_PARTS].sum()
    daily = daily.join(parts, on="i")
    daily = daily.join(hp.groupby("i1")["hedge"].sum().rename("hedge"), on="i")
    daily = daily.join(alltr.groupby("i")["cost"].sum().rename("option_costs"), on="i")
    daily = daily.join(hb.groupby("i")["cost"].sum().rename("stock_costs"), on="i")
    daily = daily.join(pos.groupby("i").size().rename("n_positions"), on="i")
    gv = p0all.assign(gv=(p0all["qty"].abs() * m.set_index(["i", "ticker"])["vega"].reindex(
        pd.MultiIndex.from_frame(p0all[["i", "ticker"]])).to_numpy() / 100.0))  # fmt: skip
    daily = daily.join(gv.groupby("i")["gv"].sum().rename("gross_vega"), on="i")
    daily = daily.join((trades["trade"].abs() * trades["fill"]).groupby(trades["i"]).sum().rename("premium_traded"),
                       on="i")  # fmt: skip
    daily = daily.join(alltr.groupby("i")["mark_gap"].sum().rename("mark_gap"), on="i")
    daily = daily.fillna(0.0)
    daily["delta"] = daily["delta"] + daily["hedge"]
    daily["residual"] = daily["residual"] - daily["mark_gap"]
    daily["costs"] = daily["option_costs"] + daily["stock_costs"]
    daily["gross"] = daily[PNL_PARTS].sum(axis=1)
    daily["total"] = daily["gross"] - daily["costs"]
    daily.insert(0, "trade_date", mk.sessions[daily["i"].to_numpy()])
    daily.insert(1, "strategy", name)
    daily["n_positions"] = daily["n_positions"].astype(np.int64)
    daily = daily.drop(columns=["i", "hedge", "mark_gap"])

    positions = _positions_table(mk, name, pos, m, hb)
    legs_out = legs.assign(trade_date=mk.sessions[legs["i"].to_numpy()], strategy=name).drop(columns=["i"])
    alltr = alltr.assign(trade_date=mk.sessions[alltr["i"].to_numpy()], strategy=name)
    trades_out = alltr[TRADE_COLUMNS].sort_values(["trade_date", "ticker"]).reset_index(drop=True)
    return BacktestResult(name, legs_out, positions, trades_out, daily[DAILY_COLUMNS])


DAILY_COLUMNS = ["trade_date", "strategy", *PNL_PARTS, "option_costs", "stock_costs", "n_positions", "gross_vega",
                 "premium_traded", "costs", "gross", "total"]  # fmt: skip
POSITION_COLUMNS = ["trade_date", "strategy", "kind", "ticker", "underlying_ticker", "qty", "price", "iv",
                    "iv_age", "position_delta", "position_vega_pt"]  # fmt: skip
TRADE_COLUMNS = ["trade_date", "strategy", "ticker", "underlying_ticker", "trade", "value", "fill", "from_book",
                 "settle", "exercised", "spread_cost", "mark_gap", "fee_cost", "cost"]  # fmt: skip


def _flat(mk: Market, name: str, days: np.ndarray) -> BacktestResult:
    """A strategy that never trades: zero P&L on every day of the period, no positions."""
    daily = pd.DataFrame({c: np.zeros(len(days)) for c in DAILY_COLUMNS})
    daily["trade_date"], daily["strategy"] = mk.sessions[days], name
    daily["n_positions"] = daily["n_positions"].astype(np.int64)
    empty = {"trade_date": pd.Series(dtype="datetime64[ns]"), "strategy": pd.Series(dtype=object)}
    positions = pd.DataFrame(empty | {c: pd.Series(dtype=float) for c in POSITION_COLUMNS[2:]})
    positions = positions.astype({c: object for c in ("kind", "ticker", "underlying_ticker")})
    trades = pd.DataFrame(empty | {c: pd.Series(dtype=float) for c in TRADE_COLUMNS[2:]})
    trades = trades.astype({"ticker": object, "underlying_ticker": object, "from_book": bool, "settle": bool,
                            "exercised": bool})  # fmt: skip
    legs = pd.DataFrame({"ticker": pd.Series(dtype=object), "qty": pd.Series(dtype=float),
                         "edge": pd.Series(dtype=float)} | empty)  # fmt: skip
    return BacktestResult(name, legs, positions, trades, daily)


def _expiry_index(sessions: np.ndarray, m: pd.DataFrame, series: pd.DataFrame) -> np.ndarray:
    """Session index of each series' expiry: the first session on or after it when the market reaches it;
    beyond the market's last session, counted on from the series' last quote by its B3 business days to
    expiry (``t`` x 252). So a window that ends at day D (one partition run) sees the same days to expiry,
    hence the same decisions, as a run over the whole history."""
    e_i = np.searchsorted(sessions, series["expiry"].to_numpy())
    beyond = series["expiry"].to_numpy() > sessions[-1]
    if beyond.any():
        last = m.sort_values("i").drop_duplicates("ticker", keep="last").set_index("ticker")
        last = last.loc[series.index[beyond]]
        e_i[beyond] = last["i"].to_numpy() + np.round(last["t"].to_numpy() * 252).astype(np.int64)
    return e_i


def _spot_lookup(mk: Market):
    """Underlying close at (session, underlying), the last known one when a session has none."""
    mat = mk.spot.pivot(index="i", columns="underlying_ticker", values="spot").reindex(range(len(mk.sessions))).ffill()
    arr, cols = mat.to_numpy(), mat.columns

    def at(i: np.ndarray, und: np.ndarray) -> np.ndarray:
        j = cols.get_indexer(und)
        if (j < 0).any():
            raise ValueError(f"backtest: no underlying close for {sorted(set(und[j < 0]))[:3]}")
        return arr[i, j]

    return at


def _period(mk: Market, legs: pd.DataFrame, period: tuple | None, last: int) -> np.ndarray:
    n = len(mk.sessions)
    if period is not None:
        a, b = (np.datetime64(pd.Timestamp(x), "ns") for x in period)
        return np.flatnonzero((mk.sessions >= a) & (mk.sessions <= b))
    if legs.empty:
        return np.arange(0, 0)
    return np.arange(int(legs["i"].min()), min(last, n - 1) + 1)


def _positions_table(mk: Market, name: str, pos: pd.DataFrame, m: pd.DataFrame, hb: pd.DataFrame) -> pd.DataFrame:
    o = pos.merge(m, on=["i", "ticker"], how="left").join(mk.series[["underlying_ticker"]], on="ticker")
    opt = pd.DataFrame({
        "i": o["i"], "kind": "option", "ticker": o["ticker"], "underlying_ticker": o["underlying_ticker"],
        "qty": o["qty"], "price": o["value"], "iv": o["iv_mark"], "iv_age": o["iv_age"],
        "position_delta": o["qty"] * o["delta"], "position_vega_pt": o["qty"] * o["vega"] / 100.0,
    })  # fmt: skip
    h = hb[hb["shares"] != 0]
    stk = pd.DataFrame({
        "i": h["i"], "kind": "stock", "ticker": h["underlying_ticker"],
        "underlying_ticker": h["underlying_ticker"],
        "qty": h["shares"], "price": h["spot"], "iv": np.nan, "iv_age": np.nan,
        "position_delta": h["shares"], "position_vega_pt": 0.0,
    })  # fmt: skip
    out = pd.concat([opt, stk], ignore_index=True).sort_values(["i", "kind", "ticker"])
    out.insert(0, "trade_date", mk.sessions[out["i"].to_numpy()])
    out.insert(1, "strategy", name)
    return out.drop(columns=["i"]).reset_index(drop=True)
