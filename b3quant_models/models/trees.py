"""Gradient-boosted trees (XGBoost, LightGBM) on the IV change, CPU and bit-for-bit reproducible.

Native Booster APIs (not the scikit-learn wrappers) keep save/load to one portable model file and avoid a
scikit-learn dependency. Determinism: fixed seed, fixed thread count, histogram method, and
``deterministic=True`` + ``force_row_wise=True`` for LightGBM. The default is one thread: OpenMP
spin-waits badly when the host is oversubscribed (a busy Dagster worker made fits ~15× slower with 2
threads on 2 busy cores); pass ``n_jobs`` > 1 for large training sets on an idle machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import xgboost as xgb

from b3quant_models.models.base import ForecastModel

EARLY_STOPPING_ROUNDS = 30


class _TreeModel(ForecastModel):
    """Row-wise tree models explained by exact TreeSHAP on their booster."""

    booster: Any

    def explain(self, X_sample: pd.DataFrame, history: Any = None) -> tuple[pd.DataFrame, dict[str, bytes]] | None:
        if self.booster is None or not len(X_sample):
            return None
        from b3quant_models.models.explain import importance_bar_png, shap_summary  # shap/matplotlib: lazily

        importance, beeswarm = shap_summary(self, X_sample)
        return importance, {"shap_beeswarm.png": beeswarm, "shap_importance.png": importance_bar_png(importance)}


class XGBoostModel(_TreeModel):
    name = "xgboost"
    mlflow_flavor = "xgboost"
    _file = "model.ubj"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.booster: xgb.Booster | None = None

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"n_estimators": 300, "learning_rate": 0.05, "max_depth": 4, "min_child_weight": 5.0,
                "subsample": 0.8, "colsample_bytree": 0.8, "reg_lambda": 1.0, "reg_alpha": 0.0}

    @classmethod
    def suggest_params(cls, trial: Any) -> dict[str, Any]:
        return {
            "n_estimators": trial.suggest_int("n_estimators", 50, 600, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "max_depth": trial.suggest_int("max_depth", 2, 8),
            "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 50.0, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
            "reg_alpha": trial.suggest_float("reg_alpha", 1e-4, 1.0, log=True),
        }

    def _booster_params(self) -> dict[str, Any]:
        p = {k: v for k, v in self.params.items() if k != "n_estimators"}
        return {**p, "objective": "reg:squarederror", "tree_method": "hist", "nthread": self.n_jobs,
                "seed": self.seed, "verbosity": 0}

    def _fit_change(self, X, dy, X_val, dy_val, history=None) -> None:
        dtrain = xgb.DMatrix(self._matrix(X), label=dy, feature_names=self.features)
        kw: dict[str, Any] = {}
        if X_val is not None:
            kw = {"evals": [(xgb.DMatrix(self._matrix(X_val), label=dy_val, feature_names=self.features), "val")],
                  "early_stopping_rounds": EARLY_STOPPING_ROUNDS, "verbose_eval": False}
        self.booster = xgb.train(self._booster_params(), dtrain, num_boost_round=int(self.params["n_estimators"]),
                                 **kw)
        if X_val is not None:
            # keep only the trees up to the best round so predict, save and SHAP all see the same model
            self.booster = self.booster[: self.booster.best_iteration + 1]

    def _predict_change(self, X: pd.DataFrame, history=None) -> np.ndarray:
        if self.booster is None:
            raise RuntimeError("model is not fitted")
        return self.booster.predict(xgb.DMatrix(self._matrix(X), feature_names=self.features))

    def _save(self, directory: Path) -> None:
        if self.booster is None:
            raise RuntimeError("model is not fitted")
        self.booster.save_model(str(directory / self._file))

    def _load(self, directory: Path) -> None:
        self.booster = xgb.Booster(model_file=str(directory / self._file))
        self.booster.set_param({"nthread": self.n_jobs})

    def library_versions(self) -> dict[str, str]:
        return {"xgboost_version": xgb.__version__}


class LightGBMModel(_TreeModel):
    name = "lightgbm"
    mlflow_flavor = "lightgbm"
    _file = "model.txt"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.booster: lgb.Booster | None = None

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 15, "max_depth": -1,
                "min_data_in_leaf": 20, "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1,
                "lambda_l2": 1.0, "lambda_l1": 0.0}

    @classmethod
    def suggest_params(cls, trial: Any) -> dict[str, Any]:
        return {
            "n_estimators": trial.suggest_int("n_estimators", 50, 600, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 4, 64, log=True),
            "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 5, 200, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
            "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
            "lambda_l1": trial.suggest_float("lambda_l1", 1e-4, 1.0, log=True),
        }

    def _booster_params(self) -> dict[str, Any]:
        p = {k: v for k, v in self.params.items() if k != "n_estimators"}
        return {**p, "objective": "regression", "num_threads": self.n_jobs, "seed": self.seed,
                "deterministic": True, "force_row_wise": True, "verbosity": -1}

    def _fit_change(self, X, dy, X_val, dy_val, history=None) -> None:
        params = self._booster_params()
        train = lgb.Dataset(self._matrix(X), label=dy, feature_name=self.features, params={"verbosity": -1},
                            free_raw_data=True)
        kw: dict[str, Any] = {}
        if X_val is not None:
            val = lgb.Dataset(self._matrix(X_val), label=dy_val, reference=train)
            kw = {"valid_sets": [val], "callbacks": [lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)]}
        self.booster = lgb.train(params, train, num_boost_round=int(self.params["n_estimators"]), **kw)
        if X_val is not None:
            # truncate to the best round so predict, save and SHAP all see the same model
            best = self.booster.best_iteration
            self.booster = lgb.Booster(model_str=self.booster.model_to_string(num_iteration=best))

    def _predict_change(self, X: pd.DataFrame, history=None) -> np.ndarray:
        if self.booster is None:
            raise RuntimeError("model is not fitted")
        return np.asarray(self.booster.predict(self._matrix(X), num_threads=self.n_jobs))

    def _save(self, directory: Path) -> None:
        if self.booster is None:
            raise RuntimeError("model is not fitted")
        self.booster.save_model(str(directory / self._file))

    def _load(self, directory: Path) -> None:
        self.booster = lgb.Booster(model_file=str(directory / self._file))

    def library_versions(self) -> dict[str, str]:
        return {"lightgbm_version": lgb.__version__}
