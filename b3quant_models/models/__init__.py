"""Next-day implied-volatility forecasters behind one interface, plus the training toolkit.

``ForecastModel`` (fit/predict/save/load/metadata), ``MODEL_REGISTRY`` (persistence, xgboost, lightgbm),
``walk_forward_splits``, ``tune`` (Optuna), ``regression_metrics``, ``shap_summary``/``explain_one``,
``model_card``, ``log_training_run`` (MLflow) and ``train_and_evaluate`` tying them together.
Never imports dagster/bentoml. See docs/models.md.
"""

from b3quant_models.models.base import ANCHOR, ForecastModel
from b3quant_models.models.baselines import PersistenceModel
from b3quant_models.models.card import model_card
from b3quant_models.models.explain import explain_one, importance_bar_png, shap_summary
from b3quant_models.models.metrics import metrics_by, regression_metrics
from b3quant_models.models.registry import MODEL_REGISTRY, load_model, make_model
from b3quant_models.models.splits import WalkForwardSplits, walk_forward_splits
from b3quant_models.models.tracking import local_tracking_uri, log_training_run
from b3quant_models.models.training import TrainingResult, assemble_dataset, train_and_evaluate
from b3quant_models.models.trees import LightGBMModel, XGBoostModel
from b3quant_models.models.tuning import tune

__all__ = [
    "ANCHOR",
    "MODEL_REGISTRY",
    "ForecastModel",
    "LightGBMModel",
    "PersistenceModel",
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
    "regression_metrics",
    "shap_summary",
    "train_and_evaluate",
    "tune",
    "walk_forward_splits",
]
