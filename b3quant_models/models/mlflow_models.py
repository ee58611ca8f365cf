"""Trained forecasters as MLflow models, registered in the MLflow Model Registry; the champion alias.

Why native flavors: a tree's booster logged with ``mlflow.xgboost`` / ``mlflow.lightgbm`` loads back with
MLflow alone (``mlflow.xgboost.load_model("models:/b3q-xgboost@champion")``), is served by ``mlflow models
serve`` and shows its signature in the UI — raw files under ``forecast_model/`` do none of that. A native
model predicts what the booster learned, the **change** ``iv_next - iv`` (add ``iv`` for the level; the
model's ``metadata.prediction`` says so). Models without a library flavor (persistence, ``series_ar``) are
logged as a pyfunc wrapper (:mod:`.mlflow_pyfunc`) that predicts the **level** like the service does.

One registered model per trained model name: ``b3q-<name>`` (``b3q-xgboost``, ``b3q-xgboost_grid``); each
training run adds a version. Promotion gives the promoted version the alias ``champion`` and the tag
``bentoml_tag`` (the BentoML model it became), so both stores point at each other. MLflow is imported in
the functions (a multi-second import the code location and the service do not pay).
"""

from __future__ import annotations

import importlib.metadata
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from b3quant_models.models.base import ForecastModel

CHAMPION_ALIAS = "champion"
MODEL_ARTIFACT = "model"  # the MLflow model's name in the run
RAW_ARTIFACT = "forecast_model"  # the ForecastModel.save directory, as plain run artifacts
_SIGNATURE_ROWS = 20


def registered_model_name(model_name: str) -> str:
    """The MLflow registry name of a trained model: ``b3q-<name>``."""
    return f"b3q-{model_name}"


def _pins(*dists: str) -> list[str]:
    """Pinned requirements, given explicitly: MLflow's inference loads the model in a subprocess (seconds)."""
    out = []
    for d in dists:
        try:
            out.append(f"{d}=={importlib.metadata.version(d)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(d)
    return out


def log_forecast_model(model: ForecastModel, sample: pd.DataFrame, *, register_as: str | None = None) -> Any:
    """Log ``model`` into the active MLflow run as ``model`` (native flavor where there is one) and, with
    ``register_as``, register it as a new version of that registered model. Returns MLflow's ModelInfo."""
    import mlflow
    from mlflow.models import infer_signature

    rows = sample.head(_SIGNATURE_ROWS)
    meta = {"b3q_model": model.name, "features": list(model.features or []),
            "history_length": model.history_length}
    kw: dict[str, Any] = {"name": MODEL_ARTIFACT, "registered_model_name": register_as}
    flavor = getattr(model, "mlflow_flavor", "pyfunc")
    if flavor in ("xgboost", "lightgbm") and model.history_length == 0:
        X = model._matrix(rows)
        change = model.predict_change(rows)
        kw |= {"signature": infer_signature(X, change),
               "metadata": meta | {"prediction": "iv_change: next-day IV minus today's iv (decimal)"}}
        if flavor == "xgboost":
            return mlflow.xgboost.log_model(model.booster, pip_requirements=_pins("xgboost"), model_format="ubj",
                                            **kw)
        return mlflow.lightgbm.log_model(model.booster, pip_requirements=_pins("lightgbm"), **kw)

    from b3quant_models.models.mlflow_pyfunc import ForecastPyfunc, pyfunc_input

    inputs = pyfunc_input(model, rows)
    with tempfile.TemporaryDirectory() as tmp:
        saved = model.save(Path(tmp) / "forecast_model")
        return mlflow.pyfunc.log_model(
            python_model=ForecastPyfunc(), artifacts={"forecast_model": str(saved)},
            signature=infer_signature(inputs, model.predict(rows, history=_history_of(model, rows))),
            pip_requirements=_pins("b3quant-ml", "numpy", "pandas"),
            metadata=meta | {"prediction": "iv_next: next-day IV level (decimal)"}, **kw,
        )


def _history_of(model: ForecastModel, rows: pd.DataFrame):
    from b3quant_models.models.mlflow_pyfunc import history_from_rows

    return history_from_rows(model, rows)


def model_version(tracking_uri: str, name: str, run_id: str) -> str | None:
    """The registry version of ``name`` logged by ``run_id`` (the latest if several), else None."""
    from mlflow import MlflowClient

    found = MlflowClient(tracking_uri).search_model_versions(f"name='{name}' and run_id='{run_id}'")
    best = max((int(v.version) for v in found), default=None)
    return None if best is None else str(best)


def ensure_model_version(tracking_uri: str, model_name: str, run_id: str) -> tuple[str, str]:
    """(registered name, version) of ``b3q-<model_name>`` logged by ``run_id``; a run logged without
    registering (or by an older version of this code) has its ``model`` registered now."""
    name = registered_model_name(model_name)
    version = model_version(tracking_uri, name, run_id)
    if version is None:
        import mlflow

        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(tracking_uri)
        try:
            version = mlflow.register_model(f"runs:/{run_id}/{MODEL_ARTIFACT}", name).version
        finally:
            mlflow.set_tracking_uri(previous)
    return name, str(version)


def crown_champion(tracking_uri: str, name: str, version: str, *, bentoml_tag: str,
                   tags: dict[str, str] | None = None) -> dict[str, str]:
    """Move the ``champion`` alias of registered model ``name`` to ``version`` and tag that version with
    the BentoML model it was promoted to (and ``tags``). Returns what the promotion's metadata shows."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    for key, value in {"bentoml_tag": bentoml_tag, **(tags or {})}.items():
        client.set_model_version_tag(name, version, key, str(value))
    return {"registered_model": name, "version": str(version), "alias": CHAMPION_ALIAS,
            "uri": f"models:/{name}@{CHAMPION_ALIAS}"}


def champion(tracking_uri: str, model_name: str) -> Any | None:
    """The registry's ``champion`` version of ``b3q-<model_name>`` (MLflow ModelVersion), else None."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient(tracking_uri).get_model_version_by_alias(registered_model_name(model_name),
                                                                     CHAMPION_ALIAS)
    except MlflowException:
        return None
