"""Next-day implied-volatility forecasters behind one interface, plus the training toolkit.

``ForecastModel`` (fit/predict/save/load/metadata/explain), ``MODEL_REGISTRY`` (persistence, xgboost, lightgbm,
series_ar: the reference model reading each series' history; registered as ``"module:Class"``),
``walk_forward_splits``, ``tune`` (Optuna), ``regression_metrics``, ``shap_summary``/``explain_one``,
``model_card``, ``log_training_run`` (MLflow), ``train_model``/``train_and_evaluate`` tying them together
(their result keeps the out-of-fold and test predictions, ``prediction_table``) and ``promotion`` (the gate
and the model store). Never imports dagster/bentoml.

Importing this package loads only the interface, the registry and the light helpers: the names that need
xgboost, lightgbm, optuna, shap, matplotlib or mlflow are imported on first access (PEP 562), so the service
and the Dagster code location do not pay for frameworks they do not use. See docs/models.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from b3quant_models._lazy import lazy_getattr
from b3quant_models.models.base import ANCHOR, ForecastModel
from b3quant_models.models.baselines import PersistenceModel
from b3quant_models.models.card import model_card
from b3quant_models.models.metrics import metrics_by, regression_metrics
from b3quant_models.models.registry import MODEL_REGISTRY, load_model, make_model, model_class, register_model
from b3quant_models.models.splits import WalkForwardSplits, walk_forward_splits

if TYPE_CHECKING:
    from b3quant_models.models.explain import explain_one, importance_bar_png, shap_summary
    from b3quant_models.models.sequence import SeriesARModel
    from b3quant_models.models.tracking import local_tracking_uri, log_training_run
    from b3quant_models.models.training import (
        TrainingResult,
        assemble_dataset,
        prediction_table,
        train_and_evaluate,
        train_model,
    )
    from b3quant_models.models.trees import LightGBMModel, XGBoostModel
    from b3quant_models.models.tuning import tune

_LAZY = {
    "explain_one": "explain", "importance_bar_png": "explain", "shap_summary": "explain",
    "SeriesARModel": "sequence",
    "local_tracking_uri": "tracking", "log_training_run": "tracking",
    "TrainingResult": "training", "assemble_dataset": "training", "prediction_table": "training",
    "train_and_evaluate": "training", "train_model": "training",
    "LightGBMModel": "trees", "XGBoostModel": "trees",
    "tune": "tuning",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


__all__ = [
    "ANCHOR",
    "MODEL_REGISTRY",
    "ForecastModel",
    "LightGBMModel",
    "PersistenceModel",
    "SeriesARModel",
    "TrainingResult",
    "WalkForwardSplits",
    "XGBoostModel",
    "assemble_dataset",
    "explain_one",
    "importance_bar_png",
    "load_model",
    "local_tracking_uri",
    "log_training_run",
    "make_model",
    "metrics_by",
    "model_card",
    "model_class",
    "prediction_table",
    "register_model",
    "regression_metrics",
    "shap_summary",
    "train_and_evaluate",
    "train_model",
    "tune",
    "walk_forward_splits",
]
