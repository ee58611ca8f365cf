"""Model assets through Dagster: train on a toy market, log to MLflow, save model + card, compare."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import mlflow
import pandas as pd
import pytest

from b3quant_assets.defs.models.assets import model_assets, model_comparison, training_config_for
from b3quant_assets.defs.models.resources import MlflowTracking
from b3quant_models.features import build_option_features, build_targets
from b3quant_models.features.synthetic import toy_market
from b3quant_models.models import load_model
from b3quant_models.models.tracking import local_tracking_uri


@pytest.fixture(scope="module")
def toy_training_set() -> pd.DataFrame:
    m = toy_market(70, 2, seed=5)
    feats = build_option_features(m["option_iv"], m["iv_surface"], m["underlying_quotes"])
    t = build_targets(m["option_iv"])[["trade_date", "ticker", "iv_next", "target_date"]]
    truth = m["truth"][["trade_date", "ticker", "iv_next_optimal"]]
    return feats.merge(t, on=["trade_date", "ticker"]).merge(truth, on=["trade_date", "ticker"], how="left")


def test_models_train_log_and_compare(toy_training_set: pd.DataFrame, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("B3Q_DATA_DIR", str(tmp_path))

    @dg.asset(name="training_set")
    def training_set_stub() -> pd.DataFrame:
        return toy_training_set

    uri = local_tracking_uri(tmp_path / "mlflow")
    cfg = {**training_config_for(70), "n_trials": 2, "timeout_s": 30.0, "shap_sample": 200}
    res = dg.materialize(
        [training_set_stub, *model_assets, model_comparison],
        resources={
            "mlflow": MlflowTracking(tracking_uri=uri, experiment="test"),
            "io_manager": dg.mem_io_manager,
            "model_io_manager": dg.mem_io_manager,
        },
        run_config={"ops": {"xgboost_model": {"config": cfg}, "lightgbm_model": {"config": cfg}}},
    )
    assert res.success
    table = res.output_for_node("model_comparison")
    assert set(table["trained_model"]) == {"xgboost", "lightgbm"}
    assert {"persistence", "optimal (ground truth)"} <= set(table["forecaster"])

    out = res.output_for_node("xgboost_model")
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(out["mlflow_run_id"])
    assert run.data.tags["dagster_run_id"] == res.run_id
    assert any(k.startswith("test_") or k.startswith("rmse") for k in run.data.metrics)
    model_dir = Path(out["model_dir"])
    assert (model_dir / "MODEL_CARD.md").read_text().strip()
    reloaded = load_model(model_dir)
    x = toy_training_set.head(50)
    assert reloaded.predict(x).shape == (50,)
    meta = res.asset_materializations_for_node("xgboost_model")[0].metadata
    assert "model_card" in meta and "test_metrics" in meta
