"""Per underlying × day summaries of the fitted SVI surface (level, skew, curvature, term structure).

Raw SVI: w(k) = a + b(ρ(k−m) + √((k−m)² + σ²)), iv = √(w/t). The ATM derivatives in iv are taken
analytically from w: iv' = w'/(2 t iv) and iv'' = (w''/(2t) − iv'²)/iv at k = 0. The formulas are
repeated here (a few lines) so the feature table does not depend on the surface fitter's internals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from b3quant_models.features.common import lagged_changes, to_datetime_ns

USABLE_STATUS = frozenset({"ok", "fitted"})
MIN_SLICE_BDAYS = 5  # slices this close to expiry are dominated by microstructure; skip for the "front" slice
TENORS_BD = (21, 63)
SURFACE_LEVEL_COLUMNS = [
    "surf_atm_1", "surf_skew_1", "surf_curv_1", "surf_atm_2", "surf_term_12",
    "surf_atm_21", "surf_atm_63", "surf_term_63_21", "surf_skew_21", "surf_fit_rmse",
]
SURFACE_CHANGE_BASE = ["surf_atm_21", "surf_skew_21", "surf_term_63_21", "surf_curv_1"]
SURFACE_COLUMNS = SURFACE_LEVEL_COLUMNS + [f"{c}_chg_{lag}d" for c in SURFACE_CHANGE_BASE for lag in (1, 5)]


def svi_w_derivs(k, a, b, rho, m, sigma) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(w, w', w'') of raw SVI at log-moneyness k (broadcasts)."""
    x = np.asarray(k, dtype=float) - m
    r = np.sqrt(x * x + sigma * sigma)
    return a + b * (rho * x + r), b * (rho + x / r), b * sigma * sigma / r**3


def svi_iv(k, t, a, b, rho, m, sigma) -> np.ndarray:
    """SVI implied vol; NaN where total variance is not positive or t <= 0."""
    w, _, _ = svi_w_derivs(k, a, b, rho, m, sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.where((w > 0) & (np.asarray(t) > 0), w, np.nan) / t)


def usable_slices(iv_surface: pd.DataFrame) -> pd.DataFrame:
    """Fitted slices with finite parameters, one row per (trade_date, underlying_ticker, expiry),
    with atm_iv/skew/curvature added when the input lacks them."""
    s = iv_surface.copy()
    s["trade_date"] = to_datetime_ns(s["trade_date"])
    s["expiry"] = to_datetime_ns(s["expiry"])
    ok = np.isfinite(s[["a", "b", "rho", "m", "sigma", "t"]].astype(float)).all(axis=1) & (s["t"] > 0)
    if "status" in s.columns:
        ok &= s["status"].isin(USABLE_STATUS)
    s = s.loc[ok].reset_index(drop=True)
    w, w1, w2 = svi_w_derivs(0.0, s["a"], s["b"], s["rho"], s["m"], s["sigma"])
    t = s["t"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        atm = np.sqrt(np.where(w > 0, w, np.nan) / t)
        skew = w1 / (2 * t * atm)
        curv = (w2 / (2 * t) - skew**2) / atm
    for col, val in (("atm_iv", atm), ("skew", skew), ("curvature", curv)):
        if col not in s.columns or s[col].isna().all():
            s[col] = val
    return s


def _term_interp(t: np.ndarray, atm: np.ndarray, skew: np.ndarray, target: float) -> tuple[float, float]:
    """ATM vol (linear in total variance across t, flat vol outside) and skew (linear, flat) at ``target``."""
    if len(t) == 0:
        return np.nan, np.nan
    w = atm**2 * t
    if target <= t[0]:
        return atm[0], skew[0]
    if target >= t[-1]:
        return atm[-1], skew[-1]
    wt = np.interp(target, t, w)
    return float(np.sqrt(wt / target)), float(np.interp(target, t, skew))


def surface_summary(iv_surface: pd.DataFrame) -> pd.DataFrame:
    """One row per (trade_date, underlying_ticker) with SURFACE_COLUMNS.

    "1"/"2" are the first two slices with at least MIN_SLICE_BDAYS sessions left (falls back to the
    nearest slices); 21/63 are constant-maturity values interpolated in total variance, which keeps the
    feature's meaning fixed as expiries roll. Changes are vs 1 and 5 earlier *available* surface days.
    """
    s = usable_slices(iv_surface)
    rows = []
    for (day, und), grp in s.sort_values("t").groupby(["trade_date", "underlying_ticker"], sort=True):
        t = grp["t"].to_numpy(float)
        atm, skew, curv = (grp[c].to_numpy(float) for c in ("atm_iv", "skew", "curvature"))
        good = np.isfinite(atm)
        t, atm, skew, curv = t[good], atm[good], skew[good], curv[good]
        front = np.flatnonzero(t * 252 >= MIN_SLICE_BDAYS)
        idx = front if len(front) else np.arange(len(t))
        i1 = idx[0] if len(idx) else None
        i2 = idx[1] if len(idx) > 1 else None
        atm21, skew21 = _term_interp(t, atm, skew, TENORS_BD[0] / 252)
        atm63, _ = _term_interp(t, atm, skew, TENORS_BD[1] / 252)
        row = {
            "trade_date": day,
            "underlying_ticker": und,
            "surf_atm_1": atm[i1] if i1 is not None else np.nan,
            "surf_skew_1": skew[i1] if i1 is not None else np.nan,
            "surf_curv_1": curv[i1] if i1 is not None else np.nan,
            "surf_atm_2": atm[i2] if i2 is not None else np.nan,
            "surf_atm_21": atm21,
            "surf_atm_63": atm63,
            "surf_skew_21": skew21,
            "surf_fit_rmse": grp["rmse_vol_pts"].mean() if "rmse_vol_pts" in grp else np.nan,
        }
        rows.append(row)
    cols = ["trade_date", "underlying_ticker", *SURFACE_LEVEL_COLUMNS]
    out = pd.DataFrame(rows, columns=[c for c in cols if c not in ("surf_term_12", "surf_term_63_21")])
    out["surf_term_12"] = out["surf_atm_2"] - out["surf_atm_1"]
    out["surf_term_63_21"] = out["surf_atm_63"] - out["surf_atm_21"]
    out = out.astype({c: float for c in SURFACE_LEVEL_COLUMNS})
    out = pd.concat([out, lagged_changes(out, "underlying_ticker", SURFACE_CHANGE_BASE)], axis=1)
    out["trade_date"] = to_datetime_ns(out["trade_date"])
    return out[["trade_date", "underlying_ticker", *SURFACE_COLUMNS]]


def fitted_iv_at(rows: pd.DataFrame, slices: pd.DataFrame) -> np.ndarray:
    """The surface's iv at each row's own (underlying, expiry, k) that day; NaN without a fitted slice."""
    keys = ["trade_date", "underlying_ticker", "expiry"]
    p = slices[[*keys, "t", "a", "b", "rho", "m", "sigma"]].drop_duplicates(keys)
    m = rows[[*keys, "k"]].merge(p, on=keys, how="left")
    return svi_iv(m["k"], m["t"], m["a"], m["b"], m["rho"], m["m"], m["sigma"])
