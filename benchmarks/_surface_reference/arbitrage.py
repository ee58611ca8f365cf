"""Static-arbitrage checks on fitted SVI parameter tables (used by fit repair and by asset checks).

Both checks work on a parameter DataFrame as produced by :func:`fit_surfaces` (columns underlying,
expiry, t, a, b, rho, m, sigma and optionally status) and evaluate on a fixed k grid, so a check run
later by the pipeline sees exactly what the repair step saw. One row is reported per offending slice
(butterfly) or per offending consecutive expiry pair (calendar), at the worst grid point, with the
extent of the offending k region; empty DataFrames mean clean.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd

from _surface_reference.svi import SVI_PARAMS, svi_g, svi_total_variance

# Wider than the quoted region (|k| ≤ 0.5) on purpose: wing arbitrage, e.g. the Vogt example's g < 0
# for k ∈ (0.64, 1.26), is still arbitrage even if no quote sits there.
DEFAULT_K_GRID = np.linspace(-1.5, 1.5, 301)

VIOLATION_COLUMNS = [
    "check", "underlying_ticker", "expiry", "expiry_next", "t", "t_next", "k", "value", "k_from", "k_to", "n_points",
]


def fitted_slices(params: pd.DataFrame) -> pd.DataFrame:
    """Rows with usable parameters (status 'ok' when the column exists), sorted by underlying and t."""
    ok = np.isfinite(params[list(SVI_PARAMS)].to_numpy(dtype=float)).all(axis=1)
    if "status" in params.columns:
        ok &= (params["status"] == "ok").to_numpy()
    return params.loc[ok].sort_values(["underlying_ticker", "t"], kind="stable")


def _row(check, und, exp, exp_next, t, t_next, k_grid, values, bad) -> dict:
    i = int(np.argmin(np.where(bad, values, np.inf)))
    return {
        "check": check, "underlying_ticker": und, "expiry": exp, "expiry_next": exp_next, "t": t, "t_next": t_next,
        "k": float(k_grid[i]), "value": float(values[i]), "k_from": float(k_grid[bad].min()),
        "k_to": float(k_grid[bad].max()), "n_points": int(bad.sum()),
    }


def _frame(rows: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=VIOLATION_COLUMNS)
    out["expiry"] = pd.to_datetime(out["expiry"])
    out["expiry_next"] = pd.to_datetime(out["expiry_next"])
    return out


def butterfly_violations(
    params_df: pd.DataFrame, k_grid: np.ndarray = DEFAULT_K_GRID, *, tol: float = 1e-8
) -> pd.DataFrame:
    """Slices whose Gatheral–Jacquier g(k) < −tol (or w(k) ≤ 0) somewhere on ``k_grid``."""
    k_grid = np.asarray(k_grid, dtype=float)
    rows = []
    for r in fitted_slices(params_df).itertuples(index=False):
        g = svi_g(k_grid, *(getattr(r, p) for p in SVI_PARAMS))
        g = np.where(np.isnan(g), -np.inf, g)
        bad = g < -tol
        if bad.any():
            rows.append(_row("butterfly", r.underlying_ticker, r.expiry, pd.NaT, r.t, np.nan, k_grid,
                             np.maximum(g, -1e6), bad))
    return _frame(rows)


def calendar_violations(
    params_df: pd.DataFrame, k_grid: np.ndarray = DEFAULT_K_GRID, *, tol: float = 1e-8
) -> pd.DataFrame:
    """Consecutive fitted expiries of an underlying where total variance decreases with maturity.

    value = w_next(k) − w(k) < −tol. Checking consecutive pairs suffices: if every consecutive pair is
    non-decreasing then every pair is.
    """
    k_grid = np.asarray(k_grid, dtype=float)
    rows = []
    for und, grp in fitted_slices(params_df).groupby("underlying_ticker", sort=True):
        recs = list(grp.itertuples(index=False))
        for r0, r1 in pairwise(recs):
            if not r1.t > r0.t:
                continue
            diff = svi_total_variance(k_grid, *(getattr(r1, p) for p in SVI_PARAMS)) - svi_total_variance(
                k_grid, *(getattr(r0, p) for p in SVI_PARAMS)
            )
            bad = diff < -tol
            if bad.any():
                rows.append(_row("calendar", und, r0.expiry, r1.expiry, r0.t, r1.t, k_grid, diff, bad))
    return _frame(rows)
