"""Model assets through Dagster: train on a toy market, log to MLflow, save model + card, compare."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest

from b3quant_assets.defs.models.assets import (
    DEEP_MODEL_ASSETS,
    deep_grid_model_assets,
    deep_model_assets,
    ensemble_assets,
    grid_model_assets,
    grid_model_predictions,
    model_assets,
    model_comparison,
    model_predictions,
    training_config_for,
)
from b3quant_assets.defs.models.resources import MlflowTracking
from b3quant_assets.defs.serving.assets import BentoModelStore, promoted_model
from b3quant_models import settings
from b3quant_models.features import (
    GRID_KEY_COLUMNS,
    build_grid_features,
    build_grid_targets,
    build_option_features,
    build_targets,
)
from b3quant_models.features.dataset import TrainingDataset, dataset_from_frame
from b3quant_models.features.history import grid_history
from b3quant_models.models import load_model
from b3quant_models.models.tracking import local_tracking_uri
from b3quant_models.testing import toy_market


@pytest.fixture(scope="module")
def toy_training_set() -> pd.DataFrame:
    m = toy_market(70, 2, seed=5)
    feats = build_option_features(m["option_iv"], m["iv_surface"], m["underlying_quotes"])
    t = build_targets(m["option_iv"])[["trade_date", "ticker", "iv_next", "target_date"]]
    truth = m["truth"][["trade_date", "ticker", "iv_next_optimal"]]
    return feats.merge(t, on=["trade_date", "ticker"]).merge(truth, on=["trade_date", "ticker"], how="left")


@pytest.fixture(scope="module")
def toy_grid_training_set() -> pd.DataFrame:
    m = toy_market(70, 2, seed=5)
    feats = build_grid_features(m["surface_grid"], m["underlying_quotes"])
    t = build_grid_targets(m["surface_grid"])[[*GRID_KEY_COLUMNS, "iv_next", "target_date"]]
    return feats.merge(t, on=GRID_KEY_COLUMNS)


def test_models_train_log_and_compare(
    toy_training_set: pd.DataFrame, toy_grid_training_set: pd.DataFrame, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("B3Q_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    grid = grid_history(toy_market(70, 2, seed=5)["surface_grid"])  # what the deep per-option models read

    @dg.asset(name="training_set")
    def training_set_stub() -> TrainingDataset:
        ds = dataset_from_frame(toy_training_set)
        return TrainingDataset(ds.frame, ds.keys, ds.feature_columns, ds.kind, ds.history.with_grid(grid))

    @dg.asset(name="grid_training_set")
    def grid_training_set_stub() -> TrainingDataset:
        return dataset_from_frame(toy_grid_training_set)

    uri = local_tracking_uri(tmp_path / "mlflow")
    cfg = {**training_config_for(70), "n_trials": 2, "timeout_s": 30.0, "shap_sample": 200}
    store = tmp_path / "bentoml_models"
    assets = [training_set_stub, grid_training_set_stub, *model_assets, *grid_model_assets, *deep_model_assets,
              *deep_grid_model_assets, *ensemble_assets]
    tiny = {**cfg, "max_epochs": 3, "patience": 2, "hidden": 8, "lookback": 3, "device": "cpu"}
    res = dg.materialize(
        [*assets, model_comparison, model_predictions, grid_model_predictions, promoted_model],
        resources={
            "mlflow": MlflowTracking(tracking_uri=uri, experiment="test"),
            "io_manager": dg.mem_io_manager,
            "model_io_manager": dg.mem_io_manager,
            "bento_store": BentoModelStore(models_dir=str(store)),
        },
        run_config={"ops": {**{m: {"config": cfg} for m in ("xgboost_model", "lightgbm_model", "series_ar_model",
                                                             "xgboost_grid_model")},
                            **{m: {"config": tiny} for m in DEEP_MODEL_ASSETS}}},
    )
    assert res.success
    table = res.output_for_node("model_comparison")
    deep = {"lstm", "gru", "pinn", "lstm_grid", "gru_grid", "pinn_grid"}
    assert set(table["trained_model"]) == {"xgboost", "lightgbm", "series_ar", "xgboost_grid", *deep,
                                           "stacking_ensemble", "stacking_ensemble_grid"}
    assert set(table["target"]) == {"per option series", "per surface-grid point"}
    grid = table[table["trained_model"] == "xgboost_grid"].set_index("forecaster")["rmse_vol_pts"]
    assert "persistence" in grid.index and np.isfinite(grid["xgboost"])
    assert {"persistence", "optimal (ground truth)"} <= set(table["forecaster"])

    # The predictions tables: every model's out-of-fold and test rows, validated by their schema.
    preds = res.output_for_node("model_predictions")
    assert set(preds["model"]) == {"xgboost", "lightgbm", "series_ar", "lstm", "gru", "pinn", "stacking_ensemble"}
    assert set(preds["split"]) == {"oof", "test"}
    assert list(preds.columns[:11]) == ["model", "split", "fold", "trade_date", "target_date", "ticker",
                                        "underlying_ticker", "iv", "iv_next", "forecast", "iv_opt"]
    gpreds = res.output_for_node("grid_model_predictions")
    assert set(gpreds["model"]) == {"xgboost_grid", "lstm_grid", "gru_grid", "pinn_grid", "stacking_ensemble_grid"}
    assert "tenor_bdays" in gpreds.columns
    assert all(c.passed for c in res.get_asset_check_evaluations())

    # Every model's run is in the configured store, and logging leaves the environment as it was.
    assert "MLFLOW_TRACKING_URI" not in os.environ
    client = mlflow.MlflowClient(tracking_uri=uri)
    for node in ("xgboost_model", "lightgbm_model", "xgboost_grid_model", "lstm_model", "pinn_grid_model",
                 "stacking_ensemble", "stacking_ensemble_grid"):
        assert client.get_run(res.output_for_node(node)["mlflow_run_id"]).info.status == "FINISHED"
    # a deep model's run: its learning curve per epoch, the model (torch weights) and its card
    gru = res.output_for_node("gru_grid_model")
    curve = client.get_metric_history(gru["mlflow_run_id"], "curve_train_loss")
    assert [m.step for m in curve] == list(range(len(curve))) and len(curve) >= 1
    arts = {a.path for a in client.list_artifacts(gru["mlflow_run_id"], "model/network")}
    assert {"model/network/weights.pt", "model/network/deep_config.json"} <= arts
    assert (Path(gru["model_dir"]) / "MODEL_CARD.md").read_text().startswith("# Model card — gru")
    out = res.output_for_node("xgboost_model")
    run = client.get_run(out["mlflow_run_id"])
    assert run.data.tags["dagster_run_id"] == res.run_id
    assert any(k.startswith("test_") or k.startswith("rmse") for k in run.data.metrics)
    assert not Path(out["model_dir"]).is_absolute()  # stored relative to B3Q_DATA_DIR: the folder can move
    model_dir = settings.resolve_data_path(out["model_dir"])
    assert (model_dir / "MODEL_CARD.md").read_text().strip()
    reloaded = load_model(model_dir)
    x = toy_training_set.head(50)
    assert reloaded.predict(x).shape == (50,)
    meta = res.asset_materializations_for_node("xgboost_model")[0].metadata
    assert "model_card" in meta and "test_metrics" in meta
    assert meta["mlflow_run"].value.endswith(f"/runs/{out['mlflow_run_id']}")
    assert meta["mlflow_model"].value == "models:/b3q-xgboost/1" and str(tmp_path) not in str(meta["model_dir"].value)
    # every trained model is a registered MLflow model of its own name, in MLflow's training view
    assert {m.name for m in client.search_registered_models()} == {"b3q-xgboost", "b3q-lightgbm", "b3q-series_ar",
                                                                   "b3q-xgboost_grid"}
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"

    # Promotion: with an empty store the validation winner goes in, with its provenance; every per-option
    # model and the ensemble were candidates.
    decision = res.output_for_node("promoted_model")
    assert set(decision["validation_rmse_vol_pts"]) == {"xgboost", "lightgbm", "series_ar", "lstm", "gru", "pinn",
                                                        "stacking_ensemble"}
    assert decision["promote"] and decision["reason"] == "no production model in the store"
    from b3quant_models.models.promotion import MODEL_TAG, decide, use_model_store

    with use_model_store(store):
        import bentoml

        stored = bentoml.models.get(MODEL_TAG)
        assert str(stored.tag) == decision["new_tag"]
        winner = res.output_for_node(f"{decision['winner']}_model")
        assert stored.info.metadata["mlflow_run_id"] == winner["mlflow_run_id"]
        assert stored.info.metadata["dagster_run_id"] == res.run_id
        assert stored.info.labels["model"] == decision["winner"]
        bento_version = stored.info.metadata["mlflow_model_version"]

    # ... and in the MLflow registry the winner's version is the champion and names the BentoML tag
    champ = client.get_model_version_by_alias(f"b3q-{decision['winner']}", "champion")
    assert champ.run_id == winner["mlflow_run_id"] and str(champ.version) == bento_version
    assert champ.tags["bentoml_tag"] == decision["new_tag"] and champ.tags["dagster_run_id"] == res.run_id
    pmeta = res.asset_materializations_for_node("promoted_model")[0].metadata
    assert pmeta["dagster_run"].value == res.run_id and pmeta["mlflow_run_id"].value == winner["mlflow_run_id"]
    assert pmeta["mlflow_alias"].value == f"models:/b3q-{decision['winner']}@champion"

    # The gate: the same model again is not better than production, so production is kept.
    candidates = {m: res.output_for_node(f"{m}_model") for m in ("xgboost", "lightgbm")}
    rows = toy_training_set[toy_training_set["trade_date"].between(winner["test_start"], winner["test_end"])]
    again = decide(candidates, rows, load_model(settings.resolve_data_path(winner["model_dir"])))
    assert not again["promote"] and "kept" in again["reason"]
    assert again["production_test_rmse_vol_pts"] == pytest.approx(again["winner_test_rmse_vol_pts"])

    # A model that reads the series history goes through the same gate, scored with the dataset's history.
    ar = {"series_ar": res.output_for_node("series_ar_model")}
    ds = dataset_from_frame(toy_training_set)
    first = decide(ar, rows, None, ds.history)
    assert first["promote"] and np.isfinite(first["winner_test_rmse_vol_pts"])
    kept = decide(ar, rows, load_model(settings.resolve_data_path(ar["series_ar"]["model_dir"])), ds.history)
    assert not kept["promote"]


def test_grid_training_set_keeps_points_quoted_on_both_days() -> None:
    from b3quant_assets.defs.models.assets import grid_training_set

    m = toy_market(30, 2, seed=3)
    grid = m["surface_grid"].copy()
    grid["extrapolated"] = grid["tenor_days"] >= 126  # as the real grid flags long tenors
    out = grid_training_set(dg.build_asset_context(), grid, m["underlying_quotes"]).frame
    assert len(out) and (out["tenor_days"] < 126).all() and (out["extrapolated"] == 0).all()
    assert out["iv_next"].notna().all()
