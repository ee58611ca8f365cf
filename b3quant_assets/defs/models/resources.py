"""Model-training resources: MLflow tracking and the model store folder."""

import os
from pathlib import Path

import dagster as dg

from b3quant_models import settings
from b3quant_models.models.mlflow_models import model_version, registered_model_name
from b3quant_models.models.tracking import local_tracking_uri, run_url, stored_tracking_uri


class MlflowTracking(dg.ConfigurableResource):
    """Where training runs are logged and their models registered.

    Default: a local SQLite store under ``$B3Q_DATA_DIR/mlflow`` (offline; MLflow 3 refuses plain
    file stores; re-based when the data folder moved). Set ``MLFLOW_TRACKING_URI`` (or ``tracking_uri``)
    for a server. Why this and not dagster-mlflow's ``mlflow_tracking``: docs/models.md ("dagster-mlflow").
    """

    tracking_uri: str | None = None
    experiment: str = "b3quant-iv-forecast"

    def uri(self) -> str:
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri(settings.mlflow_dir())

    def run_metadata(self, run_id: str, model_name: str | None = None) -> dict:
        """Asset metadata linking an MLflow run (and the registry version it logged of ``b3q-<model_name>``);
        no absolute path of this machine (a local store shows as ``$B3Q_DATA_DIR/…``)."""
        uri = self.uri()
        meta = {"mlflow_run_id": run_id, "mlflow_run": dg.MetadataValue.url(run_url(uri, run_id)),
                "mlflow_tracking_uri": stored_tracking_uri(uri)}
        if model_name is not None:
            name = registered_model_name(model_name)
            version = model_version(uri, name, run_id)
            if version is not None:
                meta["mlflow_model"] = f"models:/{name}/{version}"
        return meta


def model_store_dir() -> Path:
    """Saved models (one folder per model and MLflow run): ``$B3Q_DATA_DIR/models``."""
    return settings.saved_models_dir()
