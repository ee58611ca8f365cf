"""Model-training resources: MLflow tracking and the model store folder."""

import os
from pathlib import Path

import dagster as dg

from b3quant_models import settings
from b3quant_models.models.tracking import local_tracking_uri


class MlflowTracking(dg.ConfigurableResource):
    """Where training runs are logged.

    Default: a local SQLite store under ``$B3Q_DATA_DIR/mlflow`` (offline; MLflow 3 refuses plain
    file stores). Set ``MLFLOW_TRACKING_URI`` (or ``tracking_uri``) for a server. We use this small
    resource rather than dagster-mlflow's ``mlflow_tracking``: that one is a legacy function-style
    resource that opens one global run per op, while each model asset here logs a complete run
    (params, Optuna summary, folds, dataset, plots, model, card) through the library.
    """

    tracking_uri: str | None = None
    experiment: str = "b3quant-iv-forecast"

    def uri(self) -> str:
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri(settings.mlflow_dir())


def model_store_dir() -> Path:
    """Saved models (one folder per model and MLflow run): ``$B3Q_DATA_DIR/models``."""
    return settings.saved_models_dir()
