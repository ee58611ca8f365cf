"""A small reference model that is not row-wise: a ridge autoregression on each series' own IV history.

Its inputs are not columns of the feature row but the series' last ``lags`` + 1 IVs, cut from the
:class:`~b3quant_models.features.history.SeriesHistory` the pipeline passes (with a mask where the series is
younger). It exists to prove the history path end to end (tuning, training, comparison, promotion, serving)
with numpy alone; the deep sequence and surface models (torch) plug into the same hooks.

Inputs per row (standardised on the training rows): the last ``lags`` daily IV changes (0 where masked),
today's IV minus the mean of the window (mean reversion), and the share of the window that exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from b3quant_models.models.base import ANCHOR, ForecastModel

if TYPE_CHECKING:
    from b3quant_models.features.history import SeriesHistory

_COEF_FILE = "ridge.json"


class SeriesARModel(ForecastModel):
    """Next-day IV change = ridge regression on the series' recent IV changes and its distance to their mean."""

    name = "series_ar"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.features = self.features or [ANCHOR]  # reads today's IV from the row, the rest from the history
        self.coef: np.ndarray | None = None
        self.mu: np.ndarray | None = None
        self.sd: np.ndarray | None = None
        self.intercept = 0.0

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"lags": 5, "alpha": 1.0}

    @classmethod
    def suggest_params(cls, trial: Any) -> dict[str, Any]:
        return {"lags": trial.suggest_int("lags", 1, 10), "alpha": trial.suggest_float("alpha", 1e-3, 100.0, log=True)}

    @property
    def history_length(self) -> int:
        return int(self.params["lags"]) + 1

    def input_names(self) -> list[str]:
        lags = int(self.params["lags"])
        return [*(f"iv_chg_lag{j}" for j in range(lags)), "iv_minus_window_mean", "window_fill"]

    def _inputs(self, X: pd.DataFrame, history: SeriesHistory | None) -> np.ndarray:
        if history is None:
            raise ValueError(f"{self.name} needs the series history")
        vals, mask = history.window(X, self.history_length)
        iv = vals[:, :, 0]
        chg = np.where(mask[:, 1:] & mask[:, :-1], iv[:, 1:] - iv[:, :-1], 0.0)[:, ::-1]  # newest change first
        n_ok = mask.sum(axis=1)
        mean = np.where(mask, iv, 0.0).sum(axis=1) / np.maximum(n_ok, 1)
        dev = np.where(n_ok > 0, iv[:, -1] - mean, 0.0)
        return np.column_stack([chg, dev, n_ok / self.history_length])

    def _fit_change(self, X, dy, X_val, dy_val, history=None) -> None:
        Z = self._inputs(X, history)
        self.mu = Z.mean(axis=0)
        sd = Z.std(axis=0)
        self.sd = np.where(sd > 0, sd, 1.0)
        Zs = (Z - self.mu) / self.sd
        self.intercept = float(dy.mean()) if len(dy) else 0.0
        a = float(self.params["alpha"])
        gram = Zs.T @ Zs / max(len(Zs), 1) + a / max(len(Zs), 1) * np.eye(Zs.shape[1])
        self.coef = np.linalg.solve(gram, Zs.T @ (dy - self.intercept) / max(len(Zs), 1))

    def _standardised(self, X: pd.DataFrame, history: SeriesHistory | None) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("model is not fitted")
        return (self._inputs(X, history) - self.mu) / self.sd

    def _predict_change(self, X: pd.DataFrame, history=None) -> np.ndarray:
        return self.intercept + self._standardised(X, history) @ self.coef

    def explain(self, X_sample: pd.DataFrame, history: SeriesHistory | None = None
                ) -> tuple[pd.DataFrame, dict[str, bytes]] | None:
        """Exact linear SHAP (independent inputs): contribution_j = coef_j × standardised input_j − its mean."""
        if self.coef is None or not len(X_sample):
            return None
        from b3quant_models.models.explain import importance_bar_png

        Zs = self._standardised(X_sample, history)
        vals = Zs * self.coef  # standardised inputs have mean 0 on the training rows
        mean_abs = np.abs(vals).mean(axis=0)
        imp = pd.DataFrame({"feature": self.input_names(), "mean_abs_shap": mean_abs,
                            "mean_abs_shap_vol_pts": 100 * mean_abs, "mean_shap_vol_pts": 100 * vals.mean(axis=0)})
        imp = imp.sort_values("mean_abs_shap", ascending=False).reset_index(drop=True)
        return imp, {"shap_importance.png": importance_bar_png(imp)}

    def _save(self, directory: Path) -> None:
        if self.coef is None:
            raise RuntimeError("model is not fitted")
        state = {"coef": self.coef.tolist(), "mu": self.mu.tolist(), "sd": self.sd.tolist(),
                 "intercept": self.intercept, "inputs": self.input_names()}
        (directory / _COEF_FILE).write_text(json.dumps(state, indent=1))

    def _load(self, directory: Path) -> None:
        state = json.loads((directory / _COEF_FILE).read_text())
        self.coef, self.mu, self.sd = (np.asarray(state[k], dtype=float) for k in ("coef", "mu", "sd"))
        self.intercept = float(state["intercept"])

