"""A learnable feature/target panel with a known optimal forecast, for tests of models and training code.

``iv_next = iv + f(x1..x4) + noise``: a model that finds ``f`` beats persistence, and the optimal
forecast ``iv + f`` is the floor. Five generic features (one with 5% missing values) instead of the
pipeline's feature set, so it exercises the model interface, not the feature builder.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PANEL_FEATURES = ["iv", "x1", "x2", "x3", "x4", "x5"]


def _signal(df: pd.DataFrame) -> np.ndarray:
    return 0.006 * np.tanh(df["x1"]) - 0.004 * (df["x2"] > 0) + 0.003 * df["x3"] * (df["x4"] > 0.5)


def synthetic_panel(n_days: int = 60, rows_per_day: int = 40, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                                          pd.DataFrame]:
    """(features, targets, truth) where iv_next = iv + f(features) + noise and the optimal forecast is iv + f."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2024-01-02", periods=n_days)
    n = n_days * rows_per_day
    f = pd.DataFrame({
        "trade_date": np.repeat(dates, rows_per_day),
        "ticker": np.tile([f"OPT{i:03d}" for i in range(rows_per_day)], n_days),
        "iv": rng.uniform(0.2, 0.5, n), "x1": rng.normal(size=n), "x2": rng.normal(size=n),
        "x3": rng.normal(size=n), "x4": rng.uniform(size=n), "x5": rng.normal(size=n),
    })
    f.loc[rng.random(n) < 0.05, "x5"] = np.nan  # trees must cope with missing features
    opt = f["iv"] + _signal(f)
    t = f[["trade_date", "ticker", "iv"]].copy()
    t["iv_next"] = opt + rng.normal(0, 0.002, n)
    t["target_date"] = t["trade_date"] + pd.offsets.BDay(1)
    truth = f[["trade_date", "ticker"]].assign(iv_next_optimal=opt)
    return f, t, truth
