"""MLflow models and the registry: native flavors load back and predict what the model predicts; promotion
crowns the winner's version ``champion`` with the BentoML tag; a moved data folder still serves and loads.

Models are fitted directly (no tuning) on a small synthetic panel: these tests are about what MLflow stores,
not about model quality (tests/test_models.py and tests/test_model_assets.py train through the pipeline).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from b3quant_models import settings
from b3quant_models.features.history import SeriesHistory
from b3quant_models.models import make_model
from b3quant_models.models.mlflow_models import champion, registered_model_name
from b3quant_models.models.tracking import (
    EXPERIMENT_KIND_TAG,
    TRAINING_KIND,
    local_tracking_uri,
    log_training_run,
)
from b3quant_models.models.training import assemble_dataset
from b3quant_models.testing import synthetic_panel

FEATS = ["iv", "x1", "x2", "x3", "x4", "x5"]
FAST = {"n_estimators": 40, "learning_rate": 0.1}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    f, t, _ = synthetic_panel(n_days=40, rows_per_day=12, seed=3)
    df = assemble_dataset(f, t)
    df["expiry"] = pd.Timestamp("2025-01-17")
    return df


def _fit(name: str, frame: pd.DataFrame):
    params = FAST if name in ("xgboost", "lightgbm") else None
    train = frame[frame["trade_date"] < frame["trade_date"].unique()[-10]]
    hist = SeriesHistory.from_rows(frame) if name == "series_ar" else None
    return make_model(name, params, features=FEATS if params else None).fit(train, train["iv_next"], history=hist)


def _log(uri: str, name: str, model, frame: pd.DataFrame) -> str:
    return log_training_run(uri, "registry-test", params={"model": name}, model=model, model_sample=frame.head(60),
                            register_as=registered_model_name(name), run_name=name,
                            fold_metrics=[{"fold": 0, "rmse_vol_pts": 1.0}])


@pytest.mark.parametrize("name", ["xgboost", "lightgbm", "series_ar"])
def test_native_flavor_round_trip(name: str, frame: pd.DataFrame, tmp_path: Path, monkeypatch) -> None:
    import mlflow

    monkeypatch.chdir(tmp_path)
    uri = local_tracking_uri(tmp_path / "mlflow")
    model = _fit(name, frame)
    run_id = _log(uri, name, model, frame)
    client = mlflow.MlflowClient(uri)
    (version,) = client.search_model_versions(f"name='b3q-{name}'")
    assert version.run_id == run_id and str(version.version) == "1"
    exp = client.get_experiment(client.get_run(run_id).info.experiment_id)
    assert exp.tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND  # opens in MLflow's training view, not GenAI

    rows = frame.tail(30)
    mlflow.set_tracking_uri(uri)
    try:
        info = mlflow.models.get_model_info(f"models:/b3q-{name}/1")
        pyfunc = mlflow.pyfunc.load_model(f"models:/b3q-{name}/1")
        if name == "series_ar":  # no library flavor: the wrapper predicts the level, history from the rows
            assert set(info.flavors) == {"python_function"}
            want = model.predict(rows, history=SeriesHistory.from_rows(rows))
            np.testing.assert_allclose(np.asarray(pyfunc.predict(rows)), want, rtol=1e-12)
            return
        assert name in info.flavors and info.metadata["prediction"].startswith("iv_change")
        native = getattr(mlflow, name).load_model(f"models:/b3q-{name}/1")  # the booster itself
    finally:
        mlflow.set_tracking_uri(None)
    X = rows[FEATS].astype(float)
    if name == "xgboost":
        import xgboost as xgb

        got = native.predict(xgb.DMatrix(X, feature_names=FEATS))
    else:
        got = native.predict(X)
    np.testing.assert_allclose(got, model.predict_change(rows), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(pyfunc.predict(X)).ravel(), model.predict_change(rows), rtol=1e-6)


def _text_hits(db: Path, needle: str) -> list[str]:
    """``table.column`` of every text cell of the SQLite store that still contains ``needle``."""
    hits = []
    with sqlite3.connect(db) as con:
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            for col in con.execute(f"PRAGMA table_info({table})"):
                n = con.execute(f'SELECT count(*) FROM {table} WHERE CAST("{col[1]}" AS TEXT) LIKE ?',
                                (f"%{needle}%",)).fetchone()[0]
                if n:
                    hits.append(f"{table}.{col[1]}")
    return hits


def test_promotion_after_moving_the_data_folder(frame: pd.DataFrame, tmp_path: Path, monkeypatch) -> None:
    """Train and log in one data folder, move it, promote and serve from the new place."""
    import mlflow

    from b3quant_models.models.model_store import use_model_store
    from b3quant_models.models.promotion import load_forecaster, promote_best

    old, new = tmp_path / "first-place", tmp_path / "moved" / "data"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("B3Q_DATA_DIR", str(old))
    uri = local_tracking_uri(settings.mlflow_dir())
    test_start = frame["trade_date"].unique()[-10]
    candidates = {}
    for name, val in (("xgboost", 1.0), ("series_ar", 2.0)):
        model = _fit(name, frame)
        run_id = _log(uri, name, model, frame)
        saved = model.save(settings.saved_models_dir() / name / run_id)
        candidates[name] = {"model_dir": settings.data_relative(saved), "mlflow_run_id": run_id,
                            "fold_metrics": pd.DataFrame({"rmse_vol_pts": [val]}), "test_metrics": {"rmse": val},
                            "metadata": {"features": model.features}}
    assert all(not Path(c["model_dir"]).is_absolute() for c in candidates.values())
    with duckdb.connect(str(settings.duckdb_path())) as con:  # stands in for the pipeline's tables
        con.execute("CREATE TABLE option_iv AS SELECT * FROM frame")

    shutil.move(old, new)
    monkeypatch.setenv("B3Q_DATA_DIR", str(new))
    uri = local_tracking_uri(settings.mlflow_dir())  # opening the moved store re-bases its artifact URIs
    db = settings.mlflow_dir() / "mlflow.db"
    assert _text_hits(db, str(old)) == []
    assert local_tracking_uri(settings.mlflow_dir()) == uri  # idempotent

    rows = frame[frame["trade_date"] >= test_start]
    history = SeriesHistory.from_rows(frame)
    decision = promote_best(candidates, rows, settings.bento_models_dir(), metadata={"dagster_run_id": "dg-1"},
                            history=history, tracking_uri=uri)
    assert decision["promote"] and decision["winner"] == "xgboost"
    reg = decision["mlflow_model"]
    assert reg == {"registered_model": "b3q-xgboost", "version": "1", "alias": "champion",
                   "uri": "models:/b3q-xgboost@champion"}
    champ = champion(uri, "xgboost")
    assert champ.run_id == candidates["xgboost"]["mlflow_run_id"]
    assert champ.tags["bentoml_tag"] == decision["new_tag"] and champ.tags["dagster_run_id"] == "dg-1"

    # The service's loader serves the promoted model from the moved store; MLflow loads the champion from
    # the moved artifacts; the tables read back.
    with use_model_store(settings.bento_models_dir()):
        served = load_forecaster()
        import bentoml

        assert bentoml.models.get(decision["new_tag"]).info.metadata["mlflow_model_version"] == "1"
    assert served.version == decision["new_tag"] and served.note is None
    np.testing.assert_allclose(served.model.predict(rows), make_model("xgboost").load(
        settings.resolve_data_path(candidates["xgboost"]["model_dir"])).predict(rows))
    mlflow.set_tracking_uri(uri)
    try:
        booster = mlflow.xgboost.load_model("models:/b3q-xgboost@champion")
    finally:
        mlflow.set_tracking_uri(None)
    assert booster.num_features() == len(FEATS)
    with duckdb.connect(str(settings.duckdb_path()), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM option_iv").fetchone()[0] == len(frame)
    assert not old.exists()


def test_paths_are_stored_relative(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("B3Q_DATA_DIR", str(tmp_path / "d"))
    inside = settings.saved_models_dir() / "xgboost" / "abc"
    assert settings.data_relative(inside) == "models/xgboost/abc"
    assert settings.resolve_data_path("models/xgboost/abc") == inside.resolve()
    outside = tmp_path / "elsewhere"
    assert settings.data_relative(outside) == str(outside.resolve())  # outside the folder: kept absolute
    assert settings.resolve_data_path(str(outside)) == outside
