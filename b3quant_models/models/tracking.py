"""MLflow logging of a training run (library-level: plain mlflow, no Dagster).

MLflow 3.x refuses the plain file store (``file:///…/mlruns``) unless ``MLFLOW_ALLOW_FILE_STORE=true``
is set, so the offline default is a SQLite backend: ``sqlite:////abs/dir/mlflow.db`` (4 slashes for an
absolute path). Artifacts of new experiments then go to ``<dir>/mlartifacts`` rather than ``./mlruns``
under the current working directory.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

_MAX_PARAM = 500


def local_tracking_uri(directory: str | Path) -> str:
    """SQLite tracking URI for a local directory (created); works offline with MLflow 3.x."""
    d = Path(directory).resolve()
    d.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{d / 'mlflow.db'}"


def _default_artifact_location(tracking_uri: str) -> str | None:
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def ensure_experiment(tracking_uri: str, experiment: str, artifact_location: str | None = None) -> str:
    """Experiment id, creating it (with an artifact root beside a SQLite DB) when missing."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(experiment, artifact_location=artifact_location or
                                    _default_artifact_location(tracking_uri))


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{key}."))
        else:
            s = v if isinstance(v, int | float | bool) else str(v)
            out[key] = s[:_MAX_PARAM] if isinstance(s, str) else s
    return out


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))}


def log_training_run(
    tracking_uri: str,
    experiment: str,
    *,
    params: Mapping[str, Any],
    study_summary: Mapping[str, Any] | None = None,
    fold_metrics: pd.DataFrame | list[Mapping[str, Any]] | None = None,
    test_metrics: Mapping[str, Any] | None = None,
    dataset_df: pd.DataFrame | None = None,
    plots: Mapping[str, bytes] | None = None,
    model_dir: str | Path | None = None,
    model_card_md: str | None = None,
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
    dataset_name: str = "training_set",
    artifact_location: str | None = None,
    extra_tables: Mapping[str, pd.DataFrame] | None = None,
    curves: Mapping[str, Sequence[float]] | None = None,
) -> str:
    """Log one training run and return its run_id.

    Layout: params (model hyper-parameters and run settings), metrics ``test_*`` and per-fold
    ``fold_*`` (step = fold index), ``tuning_best_value``; input dataset (``mlflow.data.from_pandas``,
    context 'training'); artifacts ``model/`` (the saved model dir), ``plots/*.png``, ``model_card.md``,
    ``tuning/study_summary.json``, ``tables/*.csv``; ``curves`` (learning curves of models trained by
    epochs) as metrics ``curve_<name>`` with step = epoch. The global tracking URI is restored afterwards.
    """
    import mlflow  # lazy: a multi-second import the serving path does not need

    previous_uri = mlflow.get_tracking_uri()
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    exp_id = ensure_experiment(tracking_uri, experiment, artifact_location)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with mlflow.start_run(experiment_id=exp_id, run_name=run_name) as run:
            if tags:
                mlflow.set_tags(dict(tags))
            if params:
                mlflow.log_params(_flat(params))
            if test_metrics:
                mlflow.log_metrics({f"test_{k}": v for k, v in _finite(test_metrics).items()})
            if fold_metrics is not None:
                rows = fold_metrics.to_dict("records") if isinstance(fold_metrics, pd.DataFrame) else fold_metrics
                for i, row in enumerate(rows):
                    step = int(row.get("fold", i)) if isinstance(row.get("fold", i), int | float) else i
                    mlflow.log_metrics({f"fold_{k}": v for k, v in _finite(row).items() if k != "fold"}, step=step)
            for cname, values in (curves or {}).items():
                for epoch, v in enumerate(values):
                    if math.isfinite(float(v)):
                        mlflow.log_metric(f"curve_{cname}", float(v), step=epoch)
            if study_summary:
                mlflow.log_dict(json.loads(json.dumps(dict(study_summary), default=str)), "tuning/study_summary.json")
                best = study_summary.get("best_value")
                if isinstance(best, int | float) and math.isfinite(best):
                    mlflow.log_metric("tuning_best_value", float(best))
            if dataset_df is not None:
                targets = "iv_next" if "iv_next" in dataset_df.columns else None
                ds = mlflow.data.from_pandas(dataset_df, name=dataset_name, targets=targets)
                mlflow.log_input(ds, context="training")
            with tempfile.TemporaryDirectory() as tmp:
                if plots:
                    pdir = Path(tmp) / "plots"
                    pdir.mkdir()
                    for name, png in plots.items():
                        (pdir / (name if name.endswith(".png") else f"{name}.png")).write_bytes(png)
                    mlflow.log_artifacts(str(pdir), "plots")
                if extra_tables:
                    tdir = Path(tmp) / "tables"
                    tdir.mkdir()
                    for name, df in extra_tables.items():
                        df.to_csv(tdir / f"{name}.csv", index=False)
                    mlflow.log_artifacts(str(tdir), "tables")
            if model_dir is not None:
                mlflow.log_artifacts(str(model_dir), "model")
            if model_card_md:
                mlflow.log_text(model_card_md, "model_card.md")
            return run.info.run_id
    finally:
        mlflow.set_tracking_uri(previous_uri)
        # MLflow 3 also writes MLFLOW_TRACKING_URI when the URI is set: put the environment back too,
        # or every later run in this process follows the "restored" default (./mlflow.db).
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env
