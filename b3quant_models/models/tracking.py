"""MLflow logging of a training run (library-level: plain mlflow, no Dagster).

MLflow 3.x refuses the plain file store (``file:///…/mlruns``) unless ``MLFLOW_ALLOW_FILE_STORE=true``
is set, so the offline default is a SQLite backend: ``sqlite:////abs/dir/mlflow.db`` (4 slashes for an
absolute path). Artifacts of new experiments then go to ``<dir>/mlartifacts`` rather than ``./mlruns``
under the current working directory.

MLflow 3 opens an experiment in its GenAI view unless the experiment says otherwise: experiments created
or reused here carry ``mlflow.experimentKind = custom_model_development`` (the training view: runs,
metrics, models).

Moving a data folder: MLflow writes absolute artifact URIs into its database (experiments, runs, logged
models, model versions). :func:`local_tracking_uri` re-bases them when the SQLite store it opens sits
somewhere else than where its artifacts were recorded (``relocate_local_store``), so a ``$B3Q_DATA_DIR``
can be moved or copied and its runs, models and registry still load.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from b3quant_models import settings
from b3quant_models.models.mlflow_models import RAW_ARTIFACT, log_forecast_model

if TYPE_CHECKING:
    from b3quant_models.models.base import ForecastModel

_MAX_PARAM = 500
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # read by MLflow 3's UI to pick the experiment's view
TRAINING_KIND = "custom_model_development"  # the training (not GenAI) view
ARTIFACTS = "mlartifacts"
# columns where MLflow's SQL store keeps artifact URIs (tables absent in an older schema are skipped)
_URI_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                ("logged_models", "artifact_location"), ("model_versions", "source"),
                ("model_versions", "storage_location"))


def local_tracking_uri(directory: str | Path) -> str:
    """SQLite tracking URI for a local directory (created); works offline with MLflow 3.x. A store that
    was moved here is re-based first (``relocate_local_store``)."""
    d = Path(directory).resolve()
    d.mkdir(parents=True, exist_ok=True)
    relocate_local_store(d / "mlflow.db")
    return f"sqlite:///{d / 'mlflow.db'}"


def _tables(con: sqlite3.Connection) -> set[str]:
    return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def relocate_local_store(db: str | Path) -> int:
    """Re-base the artifact URIs of a local SQLite store onto ``<db folder>/mlartifacts``; returns the
    number of rows changed (0 when nothing moved or there is no store yet).

    The recorded root is read from the experiments' artifact locations (``…/mlartifacts[/…]``); every URI
    under that root, in ``file://`` or plain-path form, is rewritten. Locations elsewhere (S3, a server's
    ``mlflow-artifacts:``) are left alone.
    """
    db = Path(db)
    if not db.is_file():
        return 0
    new_root = (db.parent / ARTIFACTS).resolve()
    changed = 0
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
        tables = _tables(con)
        if "experiments" not in tables:
            return 0
        roots = set()
        for (loc,) in con.execute("SELECT artifact_location FROM experiments"):
            loc = (loc or "").rstrip("/")
            head, sep, _ = f"{loc}/".rpartition(f"/{ARTIFACTS}/")
            if sep:
                roots.add(head + f"/{ARTIFACTS}")
        new_forms = (new_root.as_uri(), str(new_root))
        for old in roots - set(new_forms):
            new = new_forms[0] if old.startswith("file:") else new_forms[1]
            for table, col in _URI_COLUMNS:
                if table in tables:
                    cur = con.execute(
                        f"UPDATE {table} SET {col} = ? || substr({col}, ?) WHERE substr({col}, 1, ?) = ?",
                        (new, len(old) + 1, len(old) + 1, old + "/"),
                    )
                    changed += cur.rowcount
                    con.execute(f"UPDATE {table} SET {col} = ? WHERE {col} = ?", (new, old))
        con.commit()
    return changed


def stored_tracking_uri(tracking_uri: str) -> str:
    """The tracking URI as metadata shows it: a SQLite store inside ``$B3Q_DATA_DIR`` as
    ``sqlite:///$B3Q_DATA_DIR/…`` (no absolute path of this machine), anything else unchanged."""
    if tracking_uri.startswith("sqlite:///"):
        rel = settings.data_relative(tracking_uri.removeprefix("sqlite:///"))
        if not Path(rel).is_absolute():
            return f"sqlite:///$B3Q_DATA_DIR/{rel}"
    return tracking_uri


def run_url(tracking_uri: str, run_id: str) -> str:
    """The MLflow UI page of a run: on the tracking server, else where ``mlflow ui`` serves this store
    (``settings.mlflow_ui_url``)."""
    from mlflow.tracking import MlflowClient

    exp = MlflowClient(tracking_uri).get_run(run_id).info.experiment_id
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else settings.mlflow_ui_url()
    return f"{base}/#/experiments/{exp}/runs/{run_id}"


def _default_artifact_location(tracking_uri: str) -> str | None:
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def ensure_experiment(tracking_uri: str, experiment: str, artifact_location: str | None = None) -> str:
    """Experiment id, creating it (with an artifact root beside a SQLite DB) when missing; tagged for
    MLflow's training view either way (an experiment made by an older version gets the tag too)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return client.create_experiment(experiment, artifact_location=artifact_location or
                                        _default_artifact_location(tracking_uri),
                                        tags={EXPERIMENT_KIND_TAG: TRAINING_KIND})
    if exp.tags.get(EXPERIMENT_KIND_TAG) != TRAINING_KIND:
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
    return exp.experiment_id


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
    model: ForecastModel | None = None,
    model_sample: pd.DataFrame | None = None,
    register_as: str | None = None,
    curves: Mapping[str, Sequence[float]] | None = None,
) -> str:
    """Log one training run and return its run_id.

    Layout: params (model hyper-parameters and run settings), metrics ``test_*`` and per-fold
    ``fold_*`` (step = fold index), ``tuning_best_value``; input dataset (``mlflow.data.from_pandas``,
    context 'training'); artifacts ``forecast_model/`` (the saved model dir), ``plots/*.png``,
    ``model_card.md``, ``tuning/study_summary.json``, ``tables/*.csv``; with ``model`` (and rows
    ``model_sample`` for its signature, default the dataset's) the MLflow model ``model``
    (``mlflow_models.log_forecast_model``), registered as ``register_as`` when given. The global tracking
    URI is restored afterwards.
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
                mlflow.log_artifacts(str(model_dir), RAW_ARTIFACT)
            if model is not None:
                sample = model_sample if model_sample is not None else dataset_df
                if sample is None:
                    raise ValueError("logging an MLflow model needs rows for its signature: pass model_sample")
                log_forecast_model(model, sample, register_as=register_as)
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
