"""Per-option implied volatility and Greeks for one or more trading days (the ``option_iv`` table).

Conventions (see docs/pricing.md): European BSM with q = 0 (B3 lowers strikes for dividends, so
early exercise of calls is rarely optimal), time = B3 business days / 252, continuous rate
r = ln(1 + CDI_252), strike = that day's PREEXE. The close is an unsynchronized last trade, so the
bid/ask mid is preferred when both sides exist, the spread is tight and the mid gives a valid IV.

Every row keeps a reason: ``ok`` or why no usable IV exists (index option, no underlying quote,
a strike indexed to another unit, expires today, no price, min-tick price, the solver's own reason
such as below_intrinsic, or an IV the price does not pin: ``iv_not_pinned`` when one price tick moves it by more than
``MAX_IV_MOVE_PER_TICK``, ``iv_above_max`` above ``MAX_TRUSTED_IV``). ``iv_close`` and ``iv_mid`` keep
what each price implies, however extreme; only ``iv`` (and the Greeks) are trusted values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .calendar import DAYS_PER_YEAR, business_days
from .pricing import IVReason, greeks, implied_vol_with_reason

MIN_TICK = 0.01
MIN_SURFACE_BDAYS = 5  # shorter series are priced but kept out of surface fits (pin risk, noise)
MAX_SURFACE_ABS_K = 0.5
MAX_TIGHT_SPREAD_TICKS = 2  # a spread of up to 2 ticks, or
MAX_TIGHT_SPREAD_REL = 0.2  # up to 20% of the mid, counts as tight
# A premium is known to one tick: an IV that a one-tick change of premium moves by more than 10 vol
# points (tick / vega > 0.10) is set by rounding and by the close's asynchrony, not by the market.
MAX_IV_MOVE_PER_TICK = 0.10
# Above 500% a listed equity option's IV says nothing a surface or a model can use (real cases:
# deep in-the-money closes one day before expiry, stocks under R$1); the check bound of `iv`.
MAX_TRUSTED_IV = 5.0

OPTION_IV_COLUMNS = [
    "trade_date", "ticker", "underlying_isin", "underlying_ticker", "option_type", "strike", "expiry",
    "spot", "bdays", "t", "r", "forward", "k",
    "price_close", "price_mid", "iv_close", "iv_mid", "iv", "iv_source", "iv_reason",
    "delta", "gamma", "vega", "theta", "rho",
    "trades", "quantity", "volume", "best_bid", "best_ask", "surface_eligible", "surface_reason",
]  # fmt: skip


def _solve(price: np.ndarray, spot, strike, t, r, is_call) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(price) & (price > 0)
    iv = np.full(price.shape, np.nan)
    reason = np.full(price.shape, "no_price", dtype=object)
    if ok.any():
        v, code = implied_vol_with_reason(price[ok], spot[ok], strike[ok], t[ok], r[ok], is_call[ok])
        iv[ok] = v
        reason[ok] = IVReason.labels(code)
    return iv, reason


def compute_option_iv(options: pd.DataFrame, underlyings: pd.DataFrame, rates: pd.DataFrame) -> pd.DataFrame:
    """Join options to their underlying's close (by ISIN) and the day's rate; solve IVs and Greeks.

    ``rates`` has one row per trade day with ``trade_date`` and ``r_cont``; a trade day without a rate
    raises (a silently wrong discount rate would corrupt every IV of the day).
    """
    spot = underlyings[["trade_date", "isin", "close"]].rename(columns={"isin": "underlying_isin", "close": "spot"})
    df = options.merge(spot, on=["trade_date", "underlying_isin"], how="left")
    df["spot"] = df["spot"].where(df["spot"] > 0)  # a zero close (untraded row) is no level at all
    rr = rates[["trade_date", "r_cont"]].rename(columns={"r_cont": "r"})
    rr = rr.assign(trade_date=pd.to_datetime(rr["trade_date"]))
    if rr["trade_date"].duplicated().any():
        dup = sorted(rr.loc[rr["trade_date"].duplicated(), "trade_date"].dt.date.unique())[:5]
        raise ValueError(f"the rates table has more than one rate for {dup}: cannot choose")
    df = df.merge(rr, on="trade_date", how="left")
    missing = df.loc[df["r"].isna(), "trade_date"].dt.date.unique()
    if len(missing):
        raise ValueError(f"no risk-free rate for trade day(s) {sorted(missing)[:5]}: cannot compute IVs")

    # Columns are computed as arrays and the frame is built once: a column assignment costs pandas ~0.1 ms
    # whatever the row count, and the service calls this per request with one row (docs/benchmarks.md).
    td = df["trade_date"].to_numpy("datetime64[D]")
    ex = df["expiry"].to_numpy("datetime64[D]")
    bdays = business_days(td, ex) if len(df) else np.array([], dtype=np.int64)
    t = bdays / DAYS_PER_YEAR
    s, k_, r = (df[c].to_numpy(float) for c in ("spot", "strike", "r"))
    is_call = (df["option_type"] == "call").to_numpy()
    forward = s * np.exp(r * t)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.log(k_ / forward)

    close = np.where(df["trades"].to_numpy() > 0, df["close"].to_numpy(float), np.nan)
    bid, ask = df["best_bid"].to_numpy(float), df["best_ask"].to_numpy(float)
    mid = np.where((bid > 0) & (ask > 0) & (ask >= bid), 0.5 * (bid + ask), np.nan)
    iv_c, why_c = _solve(close, s, k_, t, r, is_call)
    iv_m, why_m = _solve(mid, s, k_, t, r, is_call)
    # A wide book's mid is no better than a stale trade: prefer the mid only when the spread is tight.
    tight = (ask - bid) <= np.maximum(MAX_TIGHT_SPREAD_TICKS * MIN_TICK, MAX_TIGHT_SPREAD_REL * mid)
    use_mid = np.isfinite(iv_m) & (tight | ~np.isfinite(iv_c))
    use_close = ~use_mid & np.isfinite(iv_c)
    iv = np.where(use_mid, iv_m, iv_c)
    iv_source = np.where(use_mid, "mid", np.where(use_close, "close", None))

    # Reason precedence (last assignment wins): solver < price problems < structural problems.
    reason = np.where(np.isfinite(close), why_c, why_m).astype(object)
    reason[use_mid | use_close] = "ok"
    quoted = np.where(np.isfinite(mid), mid, close)
    used = np.where(use_mid, mid, np.where(use_close, close, quoted))  # the price behind the IV
    with np.errstate(invalid="ignore", divide="ignore"):
        vega_used = greeks(s, k_, t, r, iv, is_call)["vega"]
        move_per_tick = MIN_TICK / vega_used
    trusted_so_far = reason == "ok"
    reason[trusted_so_far & ~(move_per_tick <= MAX_IV_MOVE_PER_TICK)] = "iv_not_pinned"
    reason[trusted_so_far & (iv > MAX_TRUSTED_IV)] = "iv_above_max"
    reason[used <= MIN_TICK + 1e-12] = "min_tick_price"  # a 0.01 premium pins no volatility
    reason[~np.isfinite(quoted)] = "no_price"
    reason[bdays <= 0] = "expires_today"
    reason[~(s > 0)] = "no_underlying_quote"  # no cash row, or no positive close
    # INDOPC != 0: the strike is corrected by an index (US$, TJLP, IGP-M, URV), so PREEXE is not in reais.
    if "strike_correction" in df:
        reason[df["strike_correction"].to_numpy() != 0] = "strike_indexed"
    reason[df["is_index_option"].to_numpy(bool)] = "index_option"
    bad = reason != "ok"
    iv = np.where(bad, np.nan, iv)
    iv_source = iv_source.astype(object)
    iv_source[bad] = None

    g = greeks(s, k_, t, r, iv, is_call)
    otm = np.where(is_call, k >= 0, k < 0)
    sreason = np.full(len(df), "ok", dtype=object)
    sreason[np.abs(k) > MAX_SURFACE_ABS_K] = f"|k| > {MAX_SURFACE_ABS_K}"
    sreason[~otm] = "in the money (surfaces use OTM quotes)"
    sreason[bdays < MIN_SURFACE_BDAYS] = f"fewer than {MIN_SURFACE_BDAYS} business days"
    sreason[bad] = "no valid IV"
    computed = {
        "bdays": bdays, "t": t, "forward": forward, "k": k, "price_close": close, "price_mid": mid,
        "iv_close": iv_c, "iv_mid": iv_m, "iv": iv, "iv_source": iv_source, "iv_reason": reason,
        **{name: np.where(bad, np.nan, g[name]) for name in ("delta", "gamma", "vega", "theta", "rho")},
        "surface_eligible": sreason == "ok", "surface_reason": sreason,
    }
    return pd.DataFrame({c: computed[c] if c in computed else df[c].array for c in OPTION_IV_COLUMNS})


def surface_quotes(option_iv: pd.DataFrame) -> pd.DataFrame:
    """The surface fitter's input: eligible OTM quotes, vega-weighted."""
    q = option_iv[option_iv["surface_eligible"]]
    return pd.DataFrame(
        {
            "trade_date": q["trade_date"],
            "underlying_ticker": q["underlying_ticker"],
            "expiry": q["expiry"],
            "t": q["t"],
            "k": q["k"],
            "iv": q["iv"],
            "weight": q["vega"].clip(lower=1e-8),
            "is_call": q["option_type"] == "call",
            "forward": q["forward"],
        }
    ).reset_index(drop=True)
