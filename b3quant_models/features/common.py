"""Building blocks shared by the option and surface-grid feature tables.

Information-timing rule: a feature on trade_date D may use only rows with trade_date <= D. Every
function here therefore works per series sorted by date and looks backwards only (shift/rolling/
diff with positive lags); cross-sectional aggregates use the same day's rows only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from b3quant_models.calendar import DAYS_PER_YEAR, business_days, monthly_option_expiry

DEFAULT_LOOKBACKS: tuple[int, ...] = (5, 10, 21)
RETURN_HORIZONS: tuple[int, ...] = (1, 5, 21)
VOLUME_WINDOW = 21
_LN2x4 = 4.0 * np.log(2.0)


def to_datetime_ns(s: pd.Series) -> pd.Series:
    """Normalise a date column to datetime64[ns] so joins and the pandera schema agree on the dtype."""
    return pd.to_datetime(s).astype("datetime64[ns]")


# ------------------------------------------------------------------------------------------ underlying
def underlying_feature_columns(lookbacks: Sequence[int] = DEFAULT_LOOKBACKS) -> list[str]:
    return (
        [f"rv_{w}d" for w in lookbacks]
        + [f"pk_vol_{w}d" for w in lookbacks]
        + [f"ret_{h}d" for h in RETURN_HORIZONS]
        + [f"volume_ratio_{VOLUME_WINDOW}d"]
    )


def underlying_features(quotes: pd.DataFrame, lookbacks: Sequence[int] = DEFAULT_LOOKBACKS) -> pd.DataFrame:
    """Per (trade_date, ticker) realized-vol, range-vol, return and volume features of the underlying.

    Why our own code rather than ``b3quant.features``: that package annualises a *simple-return* std and
    only merges on an 'underlying' column; here vols are zero-mean close-to-close log-return vols
    annualised with 252 B3 sessions (the convention option time uses), and Parkinson high-low vol is added.
    Windows are counted in available sessions of the underlying and need the full window (NaN before).
    """
    cols = ["trade_date", "ticker", "close", "high", "low", "volume"]
    q = quotes[cols].copy()
    q["trade_date"] = to_datetime_ns(q["trade_date"])
    q = q.sort_values(["ticker", "trade_date", "volume"]).drop_duplicates(["ticker", "trade_date"], keep="last")
    q = q.reset_index(drop=True)
    g = q.groupby("ticker", sort=False)
    close = q["close"].where(q["close"] > 0)
    log_close = np.log(close)
    ret = log_close - g["close"].shift(1).where(lambda s: s > 0).pipe(np.log)
    hl = np.log(q["high"].where(q["high"] > 0) / q["low"].where(q["low"] > 0))
    out = q[["trade_date", "ticker"]].copy()
    r2 = (ret**2).groupby(q["ticker"])
    hl2 = (hl**2).groupby(q["ticker"])
    for w in lookbacks:
        out[f"rv_{w}d"] = np.sqrt(DAYS_PER_YEAR * r2.transform(lambda s, w=w: s.rolling(w, min_periods=w).mean()))
        out[f"pk_vol_{w}d"] = np.sqrt(
            DAYS_PER_YEAR / _LN2x4 * hl2.transform(lambda s, w=w: s.rolling(w, min_periods=w).mean())
        )
    for h in RETURN_HORIZONS:
        out[f"ret_{h}d"] = log_close - np.log(g["close"].shift(h).where(lambda s: s > 0))
    vol_mean = q.groupby("ticker")["volume"].transform(
        lambda s: s.rolling(VOLUME_WINDOW, min_periods=5).mean()
    )
    out[f"volume_ratio_{VOLUME_WINDOW}d"] = q["volume"] / vol_mean.where(vol_mean > 0)
    return out


# ------------------------------------------------------------------------------------------ calendar
def calendar_features(dates: pd.Series) -> pd.DataFrame:
    """Day of week and B3 sessions until the next monthly option expiry (0 on expiry day), per date."""
    uniq = pd.Series(pd.to_datetime(dates).unique()).sort_values()
    nxt = []
    for d in uniq:
        e = monthly_option_expiry(d.year, d.month)
        if e < d.date():
            y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
            e = monthly_option_expiry(y, m)
        nxt.append(np.datetime64(e, "D"))
    days = uniq.values.astype("datetime64[D]")
    out = pd.DataFrame({"trade_date": to_datetime_ns(uniq).values})
    out["day_of_week"] = uniq.dt.dayofweek.to_numpy().astype(float)
    out["bdays_to_monthly_expiry"] = np.asarray(business_days(days, np.array(nxt)), dtype=float)
    return out


def sessions_between(prev: pd.Series, cur: pd.Series) -> np.ndarray:
    """B3 sessions in (prev, cur]; NaN where prev is missing (first observation of a series)."""
    out = np.full(len(cur), np.nan)
    ok = prev.notna().to_numpy()
    if ok.any():
        a = prev.to_numpy()[ok].astype("datetime64[D]")
        b = cur.to_numpy()[ok].astype("datetime64[D]")
        out[ok] = business_days(a, b)
    return out


def series_history(df: pd.DataFrame, key: Sequence[str], value: str = "iv", prefix: str = "iv") -> pd.DataFrame:
    """Backward-looking history of ``value`` per series ``key`` (rows must hold valid values only).

    Returns, aligned with ``df``'s index: change vs the previous available observation, change vs five
    observations back, deviation from the mean of the last five observations (incl. today) and the number
    of B3 sessions since the previous observation (stale series behave differently).
    """
    d = df.sort_values([*key, "trade_date"])
    g = d.groupby(list(key), sort=False)
    v = d[value]
    out = pd.DataFrame(index=d.index)
    out[f"{prefix}_chg_prev"] = v - g[value].shift(1)
    out[f"{prefix}_chg_prev5"] = v - g[value].shift(5)
    # groupby-rolling, not transform(lambda): one pass instead of a Python call per series (a request's
    # 100 contracts cost 100 calls), bit-identical (the window sums restart at each group either way).
    ma5 = g[value].rolling(5, min_periods=1).mean().reset_index(level=list(range(len(key))), drop=True)
    out[f"{prefix}_dev_ma5"] = v - ma5
    out["sessions_since_prev"] = sessions_between(g["trade_date"].shift(1), d["trade_date"])
    return out.reindex(df.index)


def lagged_changes(df: pd.DataFrame, key: str, cols: Sequence[str], lags: Sequence[int] = (1, 5)) -> pd.DataFrame:
    """Changes of per-day summary columns vs ``lag`` available sessions earlier of the same ``key``."""
    d = df.sort_values([key, "trade_date"])
    g = d.groupby(key, sort=False)
    out = pd.DataFrame(index=d.index)
    for c in cols:
        for lag in lags:
            out[f"{c}_chg_{lag}d"] = d[c] - g[c].shift(lag)
    return out.reindex(df.index)
