"""Features and targets for next-day IV at fixed surface-grid points (tenor × call delta).

The grid keeps a point's meaning fixed as options roll, so it is the natural target for surface-level
models (and later image-like models). Features: the point's own lagged values, its neighbours on the
same day (smile and term slopes), the underlying's ATM level, underlying returns/vols and the market
factor. Same information-timing rule as the option table.
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
from b3quant_models.features.option import next_session_map

GRID_KEY_COLUMNS = ["trade_date", "underlying_ticker", "tenor_days", "delta"]
ATM_DELTA = 0.5
ATM_TENOR = 21
GRID_POINT_COLUMNS = [
    "iv", "k", "tenor_days", "delta", "extrapolated", "iv_chg_prev", "iv_chg_prev5", "iv_dev_ma5",
    "sessions_since_prev", "smile_slope", "smile_convexity", "term_slope", "atm_same_tenor", "iv_minus_atm",
    "grid_atm_21", "grid_atm_21_chg_1d",
]
GRID_MARKET_COLUMNS = ["mkt_grid_atm_21", "mkt_ret_1d"]


def grid_feature_columns(lookbacks: Sequence[int] = DEFAULT_LOOKBACKS) -> list[str]:
    return [
        *GRID_POINT_COLUMNS, *underlying_feature_columns(lookbacks), *GRID_MARKET_COLUMNS,
        "day_of_week", "bdays_to_monthly_expiry",
    ]


GRID_FEATURE_COLUMNS: list[str] = grid_feature_columns()


def _normalise_grid(surface_grid: pd.DataFrame) -> pd.DataFrame:
    g = surface_grid.copy()
    g["trade_date"] = to_datetime_ns(g["trade_date"])
    g["delta"] = g["delta"].astype(float).round(4)
    g["tenor_days"] = g["tenor_days"].astype(int)
    ok = np.isfinite(g["iv"].astype(float)) & (g["iv"] > 0)
    return g.loc[ok].drop_duplicates(GRID_KEY_COLUMNS, keep="last").reset_index(drop=True)


def _neighbour_slopes(g: pd.DataFrame) -> pd.DataFrame:
    """Same-day finite-difference smile slope/convexity (across delta) and term slope (across tenor)."""
    out = pd.DataFrame(index=g.index)
    by_smile = g.sort_values([*GRID_KEY_COLUMNS[:3], "delta"]).groupby(GRID_KEY_COLUMNS[:3], sort=False)
    lo_iv, hi_iv = by_smile["iv"].shift(1), by_smile["iv"].shift(-1)
    lo_d, hi_d = by_smile["delta"].shift(1), by_smile["delta"].shift(-1)
    iv = g["iv"]
    # one-sided at the wings, central inside
    up = (hi_iv - iv) / (hi_d - g["delta"])
    dn = (iv - lo_iv) / (g["delta"] - lo_d)
    out["smile_slope"] = pd.concat([up, dn], axis=1).mean(axis=1)
    out["smile_convexity"] = up - dn
    keys_t = ["trade_date", "underlying_ticker", "delta"]
    by_term = g.sort_values([*keys_t, "tenor_days"]).groupby(keys_t, sort=False)
    nxt_iv, nxt_t = by_term["iv"].shift(-1), by_term["tenor_days"].shift(-1)
    prv_iv, prv_t = by_term["iv"].shift(1), by_term["tenor_days"].shift(1)
    fwd = (nxt_iv - iv) / (nxt_t - g["tenor_days"])
    bwd = (iv - prv_iv) / (g["tenor_days"] - prv_t)
    out["term_slope"] = 252 * fwd.fillna(bwd)  # vol per year of tenor
    return out


def build_grid_features(
    surface_grid: pd.DataFrame,
    underlying_quotes: pd.DataFrame,
    *,
    lookbacks: Sequence[int] = DEFAULT_LOOKBACKS,
) -> pd.DataFrame:
    """GRID_KEY_COLUMNS + grid_feature_columns(lookbacks), one row per grid point and day (float64 features)."""
    lookbacks = tuple(sorted(set(int(w) for w in lookbacks)))
    g = _normalise_grid(surface_grid)
    f = g[GRID_KEY_COLUMNS].copy()
    f["iv"] = g["iv"].astype(float)
    f["k"] = g["k"].astype(float) if "k" in g.columns else np.nan
    f["extrapolated"] = g["extrapolated"].astype(float) if "extrapolated" in g.columns else np.nan
    hist = series_history(g, ["underlying_ticker", "tenor_days", "delta"])
    f = f.join(hist).join(_neighbour_slopes(g))
    atm = g.loc[np.isclose(g["delta"], ATM_DELTA), ["trade_date", "underlying_ticker", "tenor_days", "iv"]]
    f = f.merge(atm.rename(columns={"iv": "atm_same_tenor"}), on=["trade_date", "underlying_ticker", "tenor_days"],
                how="left")
    f["iv_minus_atm"] = f["iv"] - f["atm_same_tenor"]
    a21 = atm.loc[atm["tenor_days"] == ATM_TENOR, ["trade_date", "underlying_ticker", "iv"]]
    a21 = a21.rename(columns={"iv": "grid_atm_21"}).sort_values(["underlying_ticker", "trade_date"])
    a21["grid_atm_21_chg_1d"] = a21["grid_atm_21"] - a21.groupby("underlying_ticker")["grid_atm_21"].shift(1)
    f = f.merge(a21, on=["trade_date", "underlying_ticker"], how="left")
    und = underlying_features(underlying_quotes, lookbacks).rename(columns={"ticker": "underlying_ticker"})
    f = f.merge(und, on=["trade_date", "underlying_ticker"], how="left")
    per_und = f.drop_duplicates(["trade_date", "underlying_ticker"])
    mkt = per_und.groupby("trade_date").agg(mkt_grid_atm_21=("grid_atm_21", "mean"), mkt_ret_1d=("ret_1d", "mean"))
    f = f.merge(mkt.reset_index(), on="trade_date", how="left")
    f = f.merge(calendar_features(f["trade_date"]), on="trade_date", how="left")
    cols = grid_feature_columns(lookbacks)
    f[cols] = f[cols].astype(float)
    out_cols = [*GRID_KEY_COLUMNS, *(c for c in cols if c not in GRID_KEY_COLUMNS)]
    return f[out_cols].sort_values(GRID_KEY_COLUMNS).reset_index(drop=True)


def build_grid_targets(surface_grid: pd.DataFrame, horizon: int = 1) -> pd.DataFrame:
    """``iv_next`` at the same grid point on the underlying's ``horizon``-th next session in the grid data."""
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    g = _normalise_grid(surface_grid)
    nxt = next_session_map(g, "underlying_ticker", horizon)
    cur = g[[*GRID_KEY_COLUMNS, "iv"]].merge(nxt, on=["underlying_ticker", "trade_date"], how="inner")
    later = g[[*GRID_KEY_COLUMNS, "iv"]].rename(columns={"trade_date": "target_date", "iv": "iv_next"})
    out = cur.merge(later, on=["target_date", *GRID_KEY_COLUMNS[1:]], how="inner")
    out["iv_change"] = out["iv_next"] - out["iv"]
    return out[[*GRID_KEY_COLUMNS, "target_date", "iv", "iv_next", "iv_change"]].sort_values(
        GRID_KEY_COLUMNS).reset_index(drop=True)
