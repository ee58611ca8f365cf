"""The second target of the ViT: an underlying's realized volatility over the next 21 sessions, and the
HAR-RV baseline it is judged against (Corsi 2009), fitted by plain least squares (numpy, no sklearn).

RV_{t→t+h} = √(252/h · Σ_{j=1..h} r²_{t+j}) with r the close-to-close log return (zero mean, annualised with
252 B3 sessions like ``underlying_features``). HAR-RV regresses it on the daily, weekly (5) and monthly (22)
realized vols known at t's close: RV_fut = b0 + b_d·√252|r_t| + b_w·RV_5 + b_m·RV_22. Information timing: the
regressors use returns up to t, the target starts at t+1.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from b3quant_models.features.common import to_datetime_ns

HORIZON = 21
HAR_LAGS = (1, 5, 22)


def _returns(quotes: pd.DataFrame) -> pd.DataFrame:
    q = quotes[["trade_date", "ticker", "close"]].copy()
    q["trade_date"] = to_datetime_ns(q["trade_date"])
    q = q.sort_values(["ticker", "trade_date"]).drop_duplicates(["ticker", "trade_date"], keep="last")
    c = q["close"].where(q["close"] > 0)
    q["ret"] = np.log(c) - np.log(c.groupby(q["ticker"]).shift(1))
    return q.reset_index(drop=True)


def realized_vol_frame(quotes: pd.DataFrame, horizon: int = HORIZON) -> pd.DataFrame:
    """Per (trade_date, underlying_ticker): the HAR regressors ``har_rv_1d``/``_5d``/``_22d`` (known at the
    close) and ``rv_next_{horizon}d`` (NaN where fewer than ``horizon`` later sessions exist)."""
    q = _returns(quotes)
    out = q[["trade_date"]].copy()
    out["underlying_ticker"] = q["ticker"]
    r2 = (q["ret"] ** 2).groupby(q["ticker"])
    for lag in HAR_LAGS:
        out[f"har_rv_{lag}d"] = np.sqrt(252 * r2.transform(lambda s, w=lag: s.rolling(w, min_periods=w).mean()))
    fut = r2.transform(lambda s: s[::-1].rolling(horizon, min_periods=horizon).mean()[::-1].shift(-1))
    out[f"rv_next_{horizon}d"] = np.sqrt(252 * fut)
    return out


class HARRV:
    """OLS of the future realized vol on the HAR regressors (rows with any NaN are left out of the fit)."""

    columns: ClassVar[list[str]] = [f"har_rv_{lag}d" for lag in HAR_LAGS]

    def __init__(self) -> None:
        self.coef: np.ndarray | None = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> HARRV:
        x, y = np.asarray(x, float), np.asarray(y, float)
        ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
        if ok.sum() < x.shape[1] + 2:
            raise ValueError(f"HAR-RV: {int(ok.sum())} complete rows, need at least {x.shape[1] + 2}")
        a = np.column_stack([np.ones(ok.sum()), x[ok]])
        self.coef = np.linalg.lstsq(a, y[ok], rcond=None)[0]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("HAR-RV: not fitted")
        x = np.asarray(x, float)
        return self.coef[0] + x @ self.coef[1:]


def rv_scores(y: np.ndarray, pred: np.ndarray, baseline: np.ndarray | None = None) -> dict[str, float]:
    """RMSE (vol points) and out-of-sample R² (vs the test mean; vs ``baseline`` too) on finite rows."""
    y, p = np.asarray(y, float), np.asarray(pred, float)
    ok = np.isfinite(y) & np.isfinite(p)
    if baseline is not None:
        ok &= np.isfinite(np.asarray(baseline, float))
    e = p[ok] - y[ok]
    out = {"n": int(ok.sum()), "rmse_vol_pts": 100 * float(np.sqrt(np.mean(e * e))) if ok.any() else float("nan")}
    sst = float(np.sum((y[ok] - y[ok].mean()) ** 2))
    out["r2"] = 1 - float(np.sum(e * e)) / sst if sst > 0 else float("nan")
    if baseline is not None:
        eb = np.asarray(baseline, float)[ok] - y[ok]
        out["r2_vs_baseline"] = 1 - float(np.sum(e * e)) / float(np.sum(eb * eb)) if np.any(eb) else float("nan")
    return out
