"""Feature and target tables for per-option-series next-day implied-vol forecasts.

One row per (trade_date, ticker) with a valid IV. Every feature on day D is computed from rows dated
<= D only (see ``common``); the target is the same ticker's IV on the underlying's next session in
the data set. ``tests/test_features.py`` checks the rule by perturbing future rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from b3quant_models.features.common import (
    DEFAULT_LOOKBACKS,
    calendar_features,
    series_history,
    to_datetime_ns,
    underlying_feature_columns,
    underlying_features,
)
from b3quant_models.features.surface import SURFACE_COLUMNS, fitted_iv_at, surface_summary, usable_slices

KEY_COLUMNS = ["trade_date", "ticker"]
ID_COLUMNS = ["trade_date", "ticker", "underlying_ticker", "option_type", "strike", "expiry"]
CONTRACT_COLUMNS = [
    "iv", "k", "abs_k", "t", "bdays", "is_call", "delta", "vega", "iv_from_mid", "rel_spread", "log_volume",
    "iv_chg_prev", "iv_chg_prev5", "iv_dev_ma5", "sessions_since_prev", "iv_minus_surface",
]
MARKET_COLUMNS = ["mkt_atm_21", "mkt_atm_21_chg_1d", "mkt_ret_1d", "n_underlyings"]
CALENDAR_COLUMNS = ["day_of_week", "bdays_to_monthly_expiry"]


def feature_columns(lookbacks: Sequence[int] = DEFAULT_LOOKBACKS) -> list[str]:
    """Model inputs of :func:`build_option_features` for the given realized-vol lookbacks."""
    return [
        *CONTRACT_COLUMNS, *SURFACE_COLUMNS, *underlying_feature_columns(lookbacks),
        f"atm_minus_rv_{max(lookbacks)}d", *MARKET_COLUMNS, *CALENDAR_COLUMNS,
    ]


FEATURE_COLUMNS: list[str] = feature_columns()


def valid_iv_rows(option_iv: pd.DataFrame) -> pd.DataFrame:
    """Rows whose IV is usable: finite, positive and (when the column exists) iv_reason == 'ok'."""
    ok = np.isfinite(option_iv["iv"].astype(float)) & (option_iv["iv"] > 0)
    if "iv_reason" in option_iv.columns:
        ok &= option_iv["iv_reason"].eq("ok")
    out = option_iv.loc[ok].copy()
    out["trade_date"] = to_datetime_ns(out["trade_date"])
    if "expiry" in out.columns:
        out["expiry"] = to_datetime_ns(out["expiry"])
    return out.drop_duplicates(KEY_COLUMNS, keep="last")


def market_regime(per_underlying: pd.DataFrame) -> pd.DataFrame:
    """Cross-sectional means over underlyings on the same day (a market-wide vol / return factor)."""
    g = per_underlying.groupby("trade_date")
    out = pd.DataFrame({
        "mkt_atm_21": g["surf_atm_21"].mean(),
        "mkt_atm_21_chg_1d": g["surf_atm_21_chg_1d"].mean(),
        "mkt_ret_1d": g["ret_1d"].mean(),
        "n_underlyings": g["underlying_ticker"].nunique().astype(float),
    })
    return out.reset_index()


def per_underlying_day(
    iv_surface: pd.DataFrame, underlying_quotes: pd.DataFrame, pairs: pd.DataFrame, lookbacks: Sequence[int]
) -> pd.DataFrame:
    """Surface + underlying features for each (trade_date, underlying_ticker) in ``pairs``."""
    surf = surface_summary(iv_surface)
    und = underlying_features(underlying_quotes, lookbacks).rename(columns={"ticker": "underlying_ticker"})
    out = pairs.merge(surf, on=["trade_date", "underlying_ticker"], how="left")
    out = out.merge(und, on=["trade_date", "underlying_ticker"], how="left")
    w = max(lookbacks)
    out[f"atm_minus_rv_{w}d"] = out["surf_atm_21"] - out[f"rv_{w}d"]
    return out


def contract_features(rows: pd.DataFrame, slices: pd.DataFrame) -> pd.DataFrame:
    """ID_COLUMNS + CONTRACT_COLUMNS of ``valid_iv_rows`` output: the row's own quote, its series history
    (over the rows given) and its distance to the fitted slice in ``slices`` (``usable_slices`` output).

    Split from :func:`build_option_features` so a server can run it on request rows plus their series
    history alone, with the per-day context computed once (same code, so no training/serving skew).
    """
    f = rows[[c for c in ID_COLUMNS if c in rows.columns]].copy()
    f["iv"] = rows["iv"].astype(float)
    f["k"] = rows["k"].astype(float)
    f["abs_k"] = f["k"].abs()
    f["t"] = rows["t"].astype(float)
    f["bdays"] = rows["bdays"].astype(float)
    f["is_call"] = rows["option_type"].eq("call").astype(float)
    for c in ("delta", "vega"):
        f[c] = rows[c].astype(float) if c in rows.columns else np.nan
    f["iv_from_mid"] = rows["iv_source"].eq("mid").astype(float) if "iv_source" in rows.columns else np.nan
    if {"best_bid", "best_ask"} <= set(rows.columns):
        bid, ask = rows["best_bid"].astype(float), rows["best_ask"].astype(float)
        mid = (bid + ask) / 2
        f["rel_spread"] = ((ask - bid) / mid).where((bid > 0) & (ask >= bid))
    else:
        f["rel_spread"] = np.nan
    f["log_volume"] = np.log1p(rows["volume"].astype(float).clip(lower=0)) if "volume" in rows.columns else np.nan
    # B3 recycles option tickers across years, so a series is (ticker, expiry), not the ticker alone.
    hist = series_history(rows, ["ticker", "expiry"] if "expiry" in rows.columns else ["ticker"])
    for c in hist.columns:
        f[c] = hist[c]
    f["iv_minus_surface"] = f["iv"] - fitted_iv_at(rows, slices)
    return f


def day_context_features(per_underlying: pd.DataFrame, market: pd.DataFrame) -> pd.DataFrame:
    """``per_underlying_day`` rows joined to their day's ``market_regime`` and calendar features: every
    feature of a row that does not depend on the row itself, one row per (trade_date, underlying_ticker)."""
    out = per_underlying.merge(market, on="trade_date", how="left")
    return out.merge(calendar_features(out["trade_date"]), on="trade_date", how="left")


def add_context_features(f: pd.DataFrame, context: pd.DataFrame, lookbacks: Sequence[int]) -> pd.DataFrame:
    """Join ``contract_features`` rows to ``day_context_features`` (which must cover their (trade_date,
    underlying_ticker) pairs); the final column set, float64 casts and row order of :func:`build_option_features`."""
    f = f.merge(context, on=["trade_date", "underlying_ticker"], how="left")
    cols = feature_columns(lookbacks)
    f[cols] = f[cols].astype(float)
    ids = [c for c in ID_COLUMNS if c in f.columns]
    return f[ids + cols].sort_values(KEY_COLUMNS).reset_index(drop=True)


def build_option_features(
    option_iv: pd.DataFrame,
    iv_surface: pd.DataFrame,
    underlying_quotes: pd.DataFrame,
    *,
    lookbacks: Sequence[int] = DEFAULT_LOOKBACKS,
) -> pd.DataFrame:
    """Feature table: ID_COLUMNS + feature_columns(lookbacks), one row per (trade_date, ticker) with valid IV.

    All features are float64 (NaN where history or a fitted slice is missing) so every model sees the
    same dtypes; trees route NaN natively.
    """
    lookbacks = tuple(sorted(set(int(w) for w in lookbacks)))
    rows = valid_iv_rows(option_iv).reset_index(drop=True)
    if "underlying_ticker" not in rows.columns:
        raise KeyError("option_iv needs 'underlying_ticker'")
    f = contract_features(rows, usable_slices(iv_surface))
    pairs = rows[["trade_date", "underlying_ticker"]].drop_duplicates()
    pu = per_underlying_day(iv_surface, underlying_quotes, pairs, lookbacks)
    return add_context_features(f, day_context_features(pu, market_regime(pu)), lookbacks)


def next_session_map(df: pd.DataFrame, group: str, horizon: int = 1) -> pd.DataFrame:
    """(group, trade_date) -> the ``horizon``-th next trade_date of that group present in ``df``."""
    s = df[[group, "trade_date"]].drop_duplicates().sort_values([group, "trade_date"])
    s["target_date"] = s.groupby(group)["trade_date"].shift(-horizon)
    return s.dropna(subset=["target_date"])


def build_targets(option_iv: pd.DataFrame, horizon: int = 1) -> pd.DataFrame:
    """Targets: ``iv_next`` = same ticker's valid IV on the underlying's ``horizon``-th next session in the data.

    The "next session" is taken per underlying over *all* its rows (valid IV or not), so a series that
    is not quoted tomorrow is dropped rather than matched to a later day. Columns: trade_date, ticker,
    target_date, iv, iv_next, iv_change.
    """
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    allrows = option_iv.copy()
    allrows["trade_date"] = to_datetime_ns(allrows["trade_date"])
    group = "underlying_isin" if "underlying_isin" in allrows.columns else "underlying_ticker"
    nxt = next_session_map(allrows, group, horizon)
    valid = valid_iv_rows(option_iv)
    series = ["ticker", "expiry"] if "expiry" in valid.columns else ["ticker"]
    cur = valid[["trade_date", *series, group, "iv"]].merge(nxt, on=[group, "trade_date"], how="inner")
    later = valid[["trade_date", *series, "iv"]].rename(columns={"trade_date": "target_date", "iv": "iv_next"})
    out = cur.merge(later, on=["target_date", *series], how="inner")
    out["iv_change"] = out["iv_next"] - out["iv"]
    out = out[["trade_date", "ticker", "target_date", "iv", "iv_next", "iv_change"]]
    return out.sort_values(KEY_COLUMNS).reset_index(drop=True)
