"""Static-arbitrage checks on fitted SVI parameter tables (used by fit repair and by asset checks).

Both checks work on a parameter DataFrame as produced by :func:`fit_surfaces` (columns underlying,
expiry, t, a, b, rho, m, sigma and optionally status) and evaluate on a fixed k grid, so a check run
later by the pipeline sees exactly what the repair step saw. One row is reported per offending slice
(butterfly) or per offending consecutive expiry pair (calendar), at the worst grid point, with the
extent of the offending k region; empty DataFrames mean clean.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd

from b3quant_models.surface.svi import SVI_PARAMS

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


@numba.njit(cache=True, error_model="numpy")
def _grid_kernel(a, b, rho, m, sigma, k_grid, with_g):
    """(g, w) on the grid for every slice; g = −inf where w ≤ 0 or g is NaN (g left empty unless with_g)."""
    n, ng = a.size, k_grid.size
    w_out = np.empty((n, ng))
    g_out = np.empty((n, ng if with_g else 0))
    for i in range(n):
        s2 = sigma[i] * sigma[i]
        for j in range(ng):
            kk = k_grid[j]
            x = kk - m[i]
            r = np.sqrt(x * x + s2)
            w = a[i] + b[i] * (rho[i] * x + r)
            w_out[i, j] = w
            if with_g:
                if not w > 0:
                    g_out[i, j] = -np.inf
                    continue
                w1 = b[i] * (rho[i] + x / r)
                w2 = b[i] * s2 / (r * r * r)
                u = 1.0 - kk * w1 / (2.0 * w)
                g = u * u - w1 * w1 / 4.0 * (1.0 / w + 0.25) + w2 / 2.0
                g_out[i, j] = g if g == g else -np.inf
    return g_out, w_out


def _grid_values(params: pd.DataFrame, k_grid: np.ndarray, with_g: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(g, w) of every row of ``params`` on ``k_grid`` at once, each (n_rows, n_grid), in one numba pass
    (the numpy version built a dozen (slices × grid) temporaries and was most of the check time)."""
    cols = [np.ascontiguousarray(params[c].to_numpy(dtype=float)) for c in SVI_PARAMS]
    return _grid_kernel(*cols, np.ascontiguousarray(k_grid, dtype=float), with_g)


def _keys(fitted: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (fitted["underlying_ticker"].to_numpy(), pd.to_datetime(fitted["expiry"]).to_numpy(),
            fitted["t"].to_numpy(dtype=float))


def butterfly_violations(
    params_df: pd.DataFrame, k_grid: np.ndarray = DEFAULT_K_GRID, *, tol: float = 1e-8
) -> pd.DataFrame:
    """Slices whose Gatheral–Jacquier g(k) < −tol (or w(k) ≤ 0) somewhere on ``k_grid``."""
    k_grid = np.asarray(k_grid, dtype=float)
    fitted = fitted_slices(params_df)
    g, _ = _grid_values(fitted, k_grid)  # one (slices × grid) evaluation, not a loop over slices
    bad = g < -tol
    und, exp, t = _keys(fitted)
    rows = [_row("butterfly", und[i], exp[i], pd.NaT, t[i], np.nan, k_grid, np.maximum(g[i], -1e6), bad[i])
            for i in np.flatnonzero(bad.any(axis=1))]
    return _frame(rows)


def calendar_violations(
    params_df: pd.DataFrame, k_grid: np.ndarray = DEFAULT_K_GRID, *, tol: float = 1e-8
) -> pd.DataFrame:
    """Consecutive fitted expiries of an underlying where total variance decreases with maturity.

    value = w_next(k) − w(k) < −tol. Checking consecutive pairs suffices: if every consecutive pair is
    non-decreasing then every pair is.
    """
    k_grid = np.asarray(k_grid, dtype=float)
    fitted = fitted_slices(params_df)  # sorted by underlying, then t
    _, w = _grid_values(fitted, k_grid, with_g=False)
    und, exp, t = _keys(fitted)
    # consecutive rows of the same underlying with strictly increasing t
    pair = np.flatnonzero((und[1:] == und[:-1]) & (t[1:] > t[:-1]))
    diff = w[pair + 1] - w[pair]
    bad = diff < -tol
    rows = [_row("calendar", und[i], exp[i], exp[i + 1], t[i], t[i + 1], k_grid, diff[j], bad[j])
            for j, i in ((j, pair[j]) for j in np.flatnonzero(bad.any(axis=1)))]
    return _frame(rows)
