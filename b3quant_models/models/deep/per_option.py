"""Per-option forecasts through a forecast grid: how a grid model is scored per option like the trees.

A grid model forecasts tomorrow's surface at fixed (tenor, call delta) points; a listed option sits
between them and off the fitted surface by its own residual. The option's forecast is

    mode "change" (default): iv_today + Δgrid(T, Δ)       Δgrid = forecast grid − today's grid
    mode "level":            grid_forecast(T, Δ) + (iv_today − surface_iv_today)

with (T, Δ) the contract's tenor in sessions and its forward call delta on today's fitted surface,
Δ = N(−k/(σ√t) + σ√t/2) with σ the surface IV (``iv − iv_minus_surface``), and today's residual to the
fitted surface carried over unchanged (it is persistent: the trees' largest feature). "change" needs only
the predicted move, so the grid's interpolation error cancels and a persistence grid gives exactly the
persistence forecast; "level" is what one does without today's grid. Interpolation: total variance linear in
tenor at fixed delta (as ``surface_grid`` between slices), IV linear in delta, both held flat beyond the grid.

Output follows ``model_predictions`` (docs/models.md "Stored predictions") minus ``model``/``split``/
``fold``, which the caller sets. numpy/pandas only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtr

REQUIRED = ("trade_date", "underlying_ticker", "iv", "k", "t", "bdays")


def interpolate_grid(grids: np.ndarray, tenors: Sequence[int], deltas: Sequence[float], tenor_q: np.ndarray,
                     delta_q: np.ndarray) -> np.ndarray:
    """Value of grid ``grids[i]`` (n, T, D) at (tenor_q[i], delta_q[i]); see the module for the scheme."""
    g = np.asarray(grids, float)
    ts = np.asarray(tenors, float)
    ds = np.asarray(deltas, float)
    od = np.argsort(ds)
    ds, g = ds[od], g[:, :, od]
    tq = np.clip(np.asarray(tenor_q, float), ts[0], ts[-1])
    dq = np.clip(np.asarray(delta_q, float), ds[0], ds[-1])
    n = len(g)
    rows = np.arange(n)
    jd = np.clip(np.searchsorted(ds, dq) - 1, 0, len(ds) - 2)
    ld = (dq - ds[jd]) / (ds[jd + 1] - ds[jd])
    per_tenor = g[rows, :, jd] * (1 - ld)[:, None] + g[rows, :, jd + 1] * ld[:, None]  # (n, T) IV at delta
    jt = np.clip(np.searchsorted(ts, tq) - 1, 0, len(ts) - 2)
    lt = (tq - ts[jt]) / (ts[jt + 1] - ts[jt])
    w0, w1 = per_tenor[rows, jt] ** 2 * ts[jt], per_tenor[rows, jt + 1] ** 2 * ts[jt + 1]
    return np.sqrt(np.maximum((1 - lt) * w0 + lt * w1, 0.0) / tq)


def option_forecasts_from_grid(forecast: np.ndarray, today: np.ndarray, keys: pd.DataFrame, tenors: Sequence[int],
                               deltas: Sequence[float], contracts: pd.DataFrame, *, mode: str = "change"
                               ) -> pd.DataFrame:
    """Per-option next-day IV forecasts from forecast grids.

    ``forecast``/``today`` (n, T, D): the forecast grid and today's grid per row of ``keys`` (trade_date,
    underlying_ticker) — a ``GridSequences``' ``keys`` with ``model.predict(seqs)`` and ``seqs.last``.
    ``contracts``: option rows with trade_date, underlying_ticker, iv, k, t (years), bdays (sessions to
    expiry) and, when present, ``iv_minus_surface`` (else 0), ticker, target_date, iv_next, iv_opt (kept).
    Rows whose (trade_date, underlying_ticker) has no grid are dropped.
    """
    if mode not in ("change", "level"):
        raise ValueError(f"mode must be 'change' or 'level', got {mode!r}")
    missing = [c for c in REQUIRED if c not in contracts.columns]
    if missing:
        raise KeyError(f"contracts: missing columns {missing}")
    kk = keys[["trade_date", "underlying_ticker"]].reset_index(drop=True).copy()
    kk["trade_date"] = pd.to_datetime(kk["trade_date"]).astype("datetime64[ns]")
    kk["_g"] = np.arange(len(kk))
    c = contracts.copy()
    c["trade_date"] = pd.to_datetime(c["trade_date"]).astype("datetime64[ns]")
    c = c.merge(kk.drop_duplicates(["trade_date", "underlying_ticker"]), on=["trade_date", "underlying_ticker"],
                how="inner")
    resid = c["iv_minus_surface"].astype(float).fillna(0.0).to_numpy() if "iv_minus_surface" in c else 0.0
    iv = c["iv"].astype(float).to_numpy()
    surf = iv - resid
    t = c["t"].astype(float).to_numpy()
    sw = surf * np.sqrt(np.maximum(t, 1e-8))
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = ndtr(-c["k"].astype(float).to_numpy() / sw + sw / 2)
    gi = c["_g"].to_numpy()
    tq = c["bdays"].astype(float).to_numpy()
    f_at = interpolate_grid(np.asarray(forecast, float)[gi], tenors, deltas, tq, delta)
    if mode == "change":
        now_at = interpolate_grid(np.asarray(today, float)[gi], tenors, deltas, tq, delta)
        fc = iv + (f_at - now_at)
    else:
        fc = f_at + resid
    cols = [x for x in ("trade_date", "target_date", "ticker", "underlying_ticker") if x in c.columns]
    out = c[cols].copy()
    out["iv"] = iv
    for x in ("iv_next",):
        if x in c.columns:
            out[x] = c[x].astype(float).to_numpy()
    out["forecast"] = fc
    out["iv_opt"] = c["iv_opt"].astype(float).to_numpy() if "iv_opt" in c.columns else np.nan
    out["grid_delta"] = delta
    return out.reset_index(drop=True)
