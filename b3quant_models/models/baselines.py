"""Baselines reported beside every model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from b3quant_models.models.base import ANCHOR, ForecastModel


class PersistenceModel(ForecastModel):
    """Tomorrow's IV = today's IV (a random walk). Hard to beat at a one-day horizon, hence the yardstick."""

    name = "persistence"

    def fit(self, X: pd.DataFrame, y=None, *, X_val: pd.DataFrame | None = None, y_val=None,
            history=None) -> PersistenceModel:
        self.features = [ANCHOR]
        return super().fit(X, X[ANCHOR].to_numpy(float) if y is None else y, X_val=X_val, y_val=y_val)

    def _fit_change(self, X, dy, X_val, dy_val, history=None) -> None:
        return None

    def _predict_change(self, X: pd.DataFrame, history=None) -> np.ndarray:
        return np.zeros(len(X))
