"""Held-out evaluation of the grid forecasters against persistence and the grid-level floor.

Protocol (the trees' splits, ``walk_forward_splits`` on the samples' trade dates): the network trains on
every date before the last validation block minus the purge, early-stops on that block, and is scored once
on the test block, which nothing before has seen. Errors in vol points on the target cells (quoted today
and tomorrow), against the pipeline's next-day fitted grid and, on the sample market, against the true
next-day grid; ``iv_opt`` (the grid floor) is E[true grid_{t+1} | close t].
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from b3quant_models.models.deep.arbitrage import count_violations
from b3quant_models.models.deep.data import GridSequences
from b3quant_models.models.deep.dense import count_dense_violations
from b3quant_models.models.deep.engine import FitConfig
from b3quant_models.models.deep.grid_base import GridForecaster
from b3quant_models.models.metrics import diebold_mariano, regression_metrics
from b3quant_models.models.splits import walk_forward_splits


def split_sequences(seqs: GridSequences, *, n_folds: int = 3, test_days: int = 40, val_days: int = 20,
                    purge_days: int = 1, min_train_days: int = 60) -> dict[str, GridSequences]:
    """train / val (the last validation block, for early stopping) / test, purged like the trees."""
    sp = walk_forward_splits(seqs.keys["trade_date"], n_folds=n_folds, test_days=test_days, val_days=val_days,
                             purge_days=purge_days, min_train_days=min_train_days)
    tr_dates, va_dates = sp.folds[-1]
    td = seqs.keys["target_date"]
    train = seqs.subset((seqs.keys["trade_date"].isin(tr_dates) & (td < va_dates[0])).to_numpy())
    val = seqs.subset((seqs.keys["trade_date"].isin(va_dates) & (td < sp.test[0])).to_numpy())
    test = seqs.by_dates(sp.test)
    return {"train": train, "val": val, "test": test, "splits": sp}  # type: ignore[dict-item]


def _daily_mse(frame: pd.DataFrame, pred: str, truth: str) -> pd.Series:
    e = (frame[pred] - frame[truth]) ** 2
    return e.groupby(frame["trade_date"]).mean()


def score_grid_forecast(test: GridSequences, pred: np.ndarray, name: str) -> dict[str, Any]:
    """RMSE/MAE/bias vs persistence and the floor (fitted and true targets), DM vs persistence, arbitrage."""
    f = test.long_frame(pred, "forecast")
    row: dict[str, Any] = {"forecaster": name, "cells": len(f)}
    targets = [("fitted", "iv_next")] + ([("true", "iv_next_true")] if "iv_next_true" in f else [])
    for label, col in targets:
        ok = f[[col, "forecast", "iv"]].notna().all(axis=1) & (f["iv_opt"].notna() if "iv_opt" in f else True)
        g = f[ok]
        m = regression_metrics(g[col], g["forecast"], g["iv"], g.get("iv_opt", None))
        for k in ("rmse_vol_pts", "mae_vol_pts", "bias_vol_pts", "rmse_persistence_vol_pts", "improvement_pct",
                  "rmse_optimal_vol_pts", "captured_pct"):
            if k in m:
                row[f"{label}_{k}"] = m[k]
        dm = diebold_mariano(_daily_mse(g, "forecast", col), _daily_mse(g, "iv", col))
        row[f"{label}_dm_stat"], row[f"{label}_dm_pvalue"] = dm["dm_stat"], dm["dm_pvalue"]
        row["test_days"] = int(dm["dm_n"])
    arb = count_violations(pred, test.tenors, test.deltas)
    row.update({"butterfly_violations": arb["butterfly"], "calendar_violations": arb["calendar"],
                "grids_with_violation": arb["grids_with_violation"], "grids": arb["grids"]})
    dense = count_dense_violations(pred, test.tenors, test.deltas)
    row.update({k: dense[k] for k in ("dense_butterfly", "dense_calendar", "dense_grids_with_violation",
                                      "dense_points")})
    return row


def evaluate_grid_models(seqs: GridSequences, models: dict[str, type[GridForecaster]], *,
                         params: dict[str, dict] | None = None, fit_config: FitConfig | None = None, seed: int = 0,
                         split_kw: dict | None = None, log=None) -> tuple[pd.DataFrame, dict[str, GridForecaster]]:
    """Train each model on the same split and score it (plus persistence and the floor) on the test block."""
    parts = split_sequences(seqs, **(split_kw or {}))
    test = parts["test"]
    rows = [score_grid_forecast(test, test.last.astype(float), "persistence")]
    if test.y_opt is not None:
        rows.append(score_grid_forecast(test, test.y_opt, "grid floor (optimal)"))
    fitted: dict[str, GridForecaster] = {}
    for name, cls in models.items():
        cfg = FitConfig(**(fit_config or FitConfig()).to_dict())
        t0 = time.perf_counter()
        m = cls((params or {}).get(name), fit_config=cfg, seed=seed).fit(parts["train"], parts["val"], log=log)
        secs = time.perf_counter() - t0
        r = score_grid_forecast(test, m.predict(test), name)
        r.update({"train_seconds": round(secs, 1), "best_epoch": m.train_info["best_epoch"],
                  "epochs_run": m.train_info["epochs_run"], "device": m.train_info["device"]})
        rows.append(r)
        fitted[name] = m
    table = pd.DataFrame(rows)
    table.attrs["split"] = {k: (len(v) if k != "splits" else v.describe().astype(str).to_dict("records"))
                            for k, v in parts.items()}
    return table, fitted
