"""Forecast metrics in vol points (0.01 IV = 1 vol point) with the persistence and optimal yardsticks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

VOL_PTS = 100.0


def _rmse(e: np.ndarray) -> float:
    return float(np.sqrt(np.mean(e * e))) if len(e) else float("nan")


def regression_metrics(
    y_true: Any, y_pred: Any, baseline_pred: Any = None, optimal_pred: Any = None
) -> dict[str, float]:
    """RMSE/MAE in vol points, R² of the level, and the comparison with the yardsticks.

    ``r2`` is the usual R² of the next-day level (near 1 for any sane forecast, so not very telling);
    ``r2_vs_persistence`` = 1 − MSE/MSE_persistence (out-of-sample R² of the *change*) and
    ``improvement_pct`` = % RMSE reduction vs persistence are the numbers to read. With ``optimal_pred``
    (the simulator's best possible forecast) ``gap_to_optimal_vol_pts`` = RMSE − RMSE_optimal and
    ``captured_pct`` = share of the achievable RMSE reduction the model captured. Rows where any given
    input is NaN are dropped for all numbers, so model and yardsticks are scored on the same rows.
    """
    cols = {"y": y_true, "p": y_pred, "b": baseline_pred, "o": optimal_pred}
    arrs = {k: np.asarray(v, dtype=float).reshape(-1) for k, v in cols.items() if v is not None}
    n = len(arrs["y"])
    if any(len(a) != n for a in arrs.values()):
        raise ValueError("all inputs must have the same length")
    ok = np.logical_and.reduce([np.isfinite(a) for a in arrs.values()])
    a = {k: v[ok] for k, v in arrs.items()}
    y, p = a["y"], a["p"]
    e = p - y
    out: dict[str, float] = {
        "n": float(ok.sum()),
        "rmse_vol_pts": VOL_PTS * _rmse(e),
        "mae_vol_pts": VOL_PTS * float(np.mean(np.abs(e))) if len(e) else float("nan"),
        "bias_vol_pts": VOL_PTS * float(np.mean(e)) if len(e) else float("nan"),
    }
    sst = float(np.sum((y - y.mean()) ** 2)) if len(y) else float("nan")
    out["r2"] = 1.0 - float(np.sum(e * e)) / sst if sst > 0 else float("nan")
    if "b" in a:
        rb = _rmse(a["b"] - y)
        out["rmse_persistence_vol_pts"] = VOL_PTS * rb
        out["improvement_pct"] = 100.0 * (1.0 - _rmse(e) / rb) if rb > 0 else float("nan")
        out["r2_vs_persistence"] = 1.0 - _rmse(e) ** 2 / rb**2 if rb > 0 else float("nan")
    if "o" in a:
        ro = _rmse(a["o"] - y)
        out["rmse_optimal_vol_pts"] = VOL_PTS * ro
        out["gap_to_optimal_vol_pts"] = VOL_PTS * (_rmse(e) - ro)
        if "b" in a:
            room = _rmse(a["b"] - y) - ro
            out["captured_pct"] = 100.0 * (_rmse(a["b"] - y) - _rmse(e)) / room if room > 0 else float("nan")
    return out


def metrics_by(df: pd.DataFrame, by: str, pred: str = "pred", truth: str = "iv_next", baseline: str = "iv",
               optimal: str | None = None) -> pd.DataFrame:
    """``regression_metrics`` per group (e.g. per date or per fold), one row per group."""
    rows = []
    for key, g in df.groupby(by, sort=True):
        m = regression_metrics(g[truth], g[pred], g[baseline], g[optimal] if optimal else None)
        rows.append({by: key, **m})
    return pd.DataFrame(rows)


def diebold_mariano(loss_model: Any, loss_base: Any, horizon: int = 1) -> dict[str, float]:
    """Diebold–Mariano test of equal predictive accuracy with the Harvey–Leybourne–Newbold small-sample
    correction; ``loss_*`` are per-period losses (e.g. each day's mean squared error), aligned.

    d = loss_model − loss_base; a negative ``dm_stat`` means the model's loss is lower. The long-run
    variance uses ``horizon − 1`` autocovariances (0 for one-step forecasts); the p-value is two-sided
    from Student's t with n − 1 degrees of freedom.
    """
    from scipy import stats

    d = np.asarray(loss_model, float) - np.asarray(loss_base, float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 3:
        return {"dm_stat": float("nan"), "dm_pvalue": float("nan"), "dm_n": float(n)}
    dc = d - d.mean()
    lrv = float(np.mean(dc * dc))
    for k in range(1, horizon):
        lrv += 2.0 * float(np.mean(dc[k:] * dc[:-k]))
    if lrv <= 0:
        return {"dm_stat": float("nan"), "dm_pvalue": float("nan"), "dm_n": float(n)}
    dm = d.mean() / np.sqrt(lrv / n)
    hln = np.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    stat = float(dm * hln)
    return {"dm_stat": stat, "dm_pvalue": float(2 * stats.t.sf(abs(stat), df=n - 1)), "dm_n": float(n)}
