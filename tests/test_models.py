"""Models, splits, tuning, metrics, SHAP, model card and MLflow logging."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from b3quant_models.features import (
    GRID_FEATURE_COLUMNS,
    build_grid_features,
    build_grid_targets,
    build_option_features,
    build_targets,
)
from b3quant_models.models import (
    MODEL_REGISTRY,
    ForecastModel,
    LightGBMModel,
    PersistenceModel,
    XGBoostModel,
    explain_one,
    load_model,
    local_tracking_uri,
    make_model,
    model_card,
    regression_metrics,
    shap_summary,
    train_and_evaluate,
    tune,
    walk_forward_splits,
)
from b3quant_models.testing import synthetic_panel, toy_market

FEATS = ["iv", "x1", "x2", "x3", "x4", "x5"]
SPLIT = {"n_folds": 2, "test_days": 10, "purge_days": 1, "min_train_days": 25}
FAST = {"n_estimators": 60, "learning_rate": 0.1}


@pytest.fixture(scope="module")
def panel():
    return synthetic_panel()


@pytest.fixture(scope="module")
def lgb_result(panel):
    f, t, truth = panel
    return train_and_evaluate(f, t, "lightgbm", n_trials=3, seed=0, truth=truth, feature_columns=FEATS, **SPLIT)


# ----------------------------------------------------------------------------------------------- splits
@pytest.mark.parametrize(("n_folds", "test_days", "purge", "min_train"), [(3, 5, 1, 10), (2, 10, 3, 20), (1, 7, 0, 30)])
def test_walk_forward_splits_never_leak(n_folds, test_days, purge, min_train):
    dates = pd.bdate_range("2024-01-01", periods=80)
    s = walk_forward_splits(np.r_[dates, dates[:10]], n_folds, test_days, purge, min_train)  # duplicates ok
    pos = {d: i for i, d in enumerate(dates.values.astype("datetime64[ns]"))}
    assert len(s) == n_folds and len(s.test) == test_days
    assert s.test[-1] == dates[-1]
    prev_val_end = -1
    for train, val in s:
        assert len(train) >= min_train and len(val) == test_days
        assert pos[val[0]] - pos[train[-1]] - 1 == purge  # exactly `purge` sessions dropped between
        assert pos[val[0]] > prev_val_end  # folds walk forward
        assert pos[val[-1]] < pos[s.test[0]] - purge  # validation never touches the purge or test block
        prev_val_end = pos[val[-1]]
        assert np.all(np.diff(train.astype("int64")) > 0)  # sorted, distinct
    assert pos[s.test[0]] - pos[s.final_train[-1]] - 1 == purge
    assert set(s.final_train.tolist()).isdisjoint(s.test.tolist())
    assert len(s.describe()) == n_folds + 1


def test_walk_forward_splits_reject_short_history():
    with pytest.raises(ValueError, match="needed"):
        walk_forward_splits(pd.bdate_range("2024-01-01", periods=30), 3, 10, 1, 10)


# ---------------------------------------------------------------------------------------------- metrics
def test_regression_metrics_hand_case():
    y = [0.20, 0.30, 0.25]
    pred = [0.21, 0.29, np.nan]  # the NaN row is dropped for every number
    base = [0.22, 0.27, 0.25]
    opt = [0.20, 0.30, 0.25]
    m = regression_metrics(y, pred, base, opt)
    rb = np.sqrt((0.02**2 + 0.03**2) / 2)
    assert m["n"] == 2
    assert m["rmse_vol_pts"] == pytest.approx(1.0)
    assert m["mae_vol_pts"] == pytest.approx(1.0)
    assert m["bias_vol_pts"] == pytest.approx(0.0, abs=1e-12)
    assert m["r2"] == pytest.approx(1 - 0.0002 / 0.005)
    assert m["rmse_persistence_vol_pts"] == pytest.approx(100 * rb)
    assert m["improvement_pct"] == pytest.approx(100 * (1 - 0.01 / rb))
    assert m["r2_vs_persistence"] == pytest.approx(1 - 0.01**2 / rb**2)
    assert m["rmse_optimal_vol_pts"] == pytest.approx(0.0, abs=1e-12)
    assert m["gap_to_optimal_vol_pts"] == pytest.approx(1.0)
    assert m["captured_pct"] == pytest.approx(100 * (rb - 0.01) / rb)
    assert "gap_to_optimal_vol_pts" not in regression_metrics(y, pred, base)
    with pytest.raises(ValueError):
        regression_metrics([0.1], [0.1, 0.2])


# ----------------------------------------------------------------------------------------------- models
def test_registry_and_interface():
    assert set(MODEL_REGISTRY) == {"persistence", "xgboost", "lightgbm", "series_ar", "lstm", "gru", "pinn",
                                   "stacking_ensemble"}
    assert all(issubclass(c, ForecastModel) for c in MODEL_REGISTRY.values())
    with pytest.raises(KeyError, match="unknown model"):
        make_model("nope")


def test_persistence_predicts_todays_iv(panel):
    f, t, _ = panel
    m = PersistenceModel().fit(f, t["iv_next"])
    np.testing.assert_array_equal(m.predict(f), f["iv"].to_numpy())
    assert m.metadata()["features"] == ["iv"]


@pytest.mark.parametrize("cls", [XGBoostModel, LightGBMModel])
def test_training_is_deterministic(panel, cls):
    f, t, _ = panel
    p1 = cls(FAST, features=FEATS, seed=7).fit(f, t["iv_next"]).predict(f)
    p2 = cls(FAST, features=FEATS, seed=7).fit(f, t["iv_next"]).predict(f)
    np.testing.assert_array_equal(p1, p2)
    assert not np.array_equal(p1, f["iv"].to_numpy())  # it learned something


@pytest.mark.parametrize("name", ["persistence", "xgboost", "lightgbm"])
def test_save_load_round_trip(panel, tmp_path, name):
    f, t, _ = panel
    model = make_model(name, FAST if name != "persistence" else None, features=FEATS, seed=3)
    model.fit(f, t["iv_next"], X_val=f.tail(200), y_val=t["iv_next"].tail(200))
    path = model.save(tmp_path / name)
    loaded = load_model(path)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict(f), model.predict(f))
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["name"] == name and meta["train_start"] == "2024-01-02" and meta["n_train"] == len(f)
    assert loaded.metadata()["params"] == model.metadata()["params"]
    other = XGBoostModel if name != "xgboost" else LightGBMModel
    with pytest.raises(TypeError):
        other.load(path)


def test_fit_requires_todays_iv(panel):
    f, t, _ = panel
    with pytest.raises(KeyError, match="iv"):
        LightGBMModel(FAST, features=["x1"]).fit(f.drop(columns="iv"), t["iv_next"])


# ----------------------------------------------------------------------------------------------- tuning
def test_tune_is_reproducible_and_summarised(panel):
    f, t, _ = panel
    dev = f[f["trade_date"] < f["trade_date"].unique()[-11]]
    y = t.loc[dev.index, "iv_next"]
    kw = {"n_trials": 3, "seed": 5, "features": FEATS, "split_kwargs": {**SPLIT, "test_days": 8, "min_train_days": 20}}
    p1, s1 = tune("xgboost", dev, y, dev["trade_date"], **kw)
    p2, _ = tune("xgboost", dev, y, dev["trade_date"], **kw)
    assert p1 == p2
    assert s1["n_trials"] == 3 and s1["n_complete"] + s1["n_pruned"] == 3
    assert len(s1["best_fold_rmse"]) == 2 and s1["best_value"] == pytest.approx(np.mean(s1["best_fold_rmse"]))
    assert set(p1) == set(s1["trials"][s1["best_trial"]]["params"])
    p0, s0 = tune("persistence", dev, y, dev["trade_date"], **kw)
    assert p0 == {} and s0["n_trials"] == 1


# ------------------------------------------------------------------------------------ end-to-end training
def test_trees_beat_persistence_on_learnable_panel(panel, lgb_result):
    f, t, truth = panel
    xgb_result = train_and_evaluate(f, t, "xgboost", n_trials=3, seed=0, truth=truth, feature_columns=FEATS,
                                    **SPLIT)
    for r in (lgb_result, xgb_result):
        m = r.test_metrics
        assert m["rmse_vol_pts"] < m["rmse_persistence_vol_pts"]
        assert m["improvement_pct"] > 30  # signal sd ≈ 0.45 vol pts vs noise 0.2: most of it is learnable
        assert m["gap_to_optimal_vol_pts"] > -0.05  # cannot meaningfully beat the optimal forecast
        assert r.metrics_table["forecaster"].tolist() == [r.model_name, "persistence", "optimal (ground truth)"]
        assert len(r.fold_metrics) == SPLIT["n_folds"]
        test_dates = set(r.test_predictions["trade_date"])
        assert test_dates == set(pd.to_datetime(r.splits.test))
        assert r.model.train_info["train_end"] < str(min(test_dates).date())


def test_persistence_training_result(panel):
    f, t, truth = panel
    r = train_and_evaluate(f, t, "persistence", n_trials=3, seed=0, truth=truth, feature_columns=FEATS, **SPLIT)
    assert r.test_metrics["improvement_pct"] == pytest.approx(0.0)
    assert r.shap_importance is None and "shap_beeswarm.png" not in r.plots


def test_predictions_do_not_depend_on_future_data():
    """Perturb every raw table after day D: features, the tuned model and test predictions up to D stay identical."""
    m = toy_market(52, 2, seed=11)
    split = {"n_folds": 2, "test_days": 8, "purge_days": 1, "min_train_days": 25}

    def run(mk):
        f = build_option_features(mk["option_iv"], mk["iv_surface"], mk["underlying_quotes"])
        t = build_targets(mk["option_iv"])
        return train_and_evaluate(f, t, "lightgbm", n_trials=2, seed=0, shap_sample=0, **split).test_predictions

    base = run(m)
    cutoff = base["trade_date"].sort_values().unique()[3]
    rng = np.random.default_rng(1)
    pert = {k: v.copy() for k, v in m.items()}
    o = pert["option_iv"]
    fut = o["trade_date"] > cutoff
    o.loc[fut, "iv"] *= rng.uniform(0.6, 1.4, fut.sum())
    pert["iv_surface"].loc[pert["iv_surface"]["trade_date"] > cutoff, "a"] *= 1.5
    q = pert["underlying_quotes"]
    q.loc[q["trade_date"] > cutoff, ["close", "high", "low"]] *= 1.2
    new = run(pert)
    cols = ["trade_date", "ticker", "iv", "pred"]
    a = base.loc[base["trade_date"] <= cutoff, cols].reset_index(drop=True)
    b = new.loc[new["trade_date"] <= cutoff, cols].reset_index(drop=True)
    assert len(a) > 50
    pd.testing.assert_frame_equal(a, b)
    later = base["trade_date"] > cutoff
    assert not np.allclose(base.loc[later, "pred"], new.loc[new["trade_date"] > cutoff, "pred"])


def test_grid_table_trains_end_to_end():
    m = toy_market(50, 2, seed=4)
    f = build_grid_features(m["surface_grid"], m["underlying_quotes"])
    t = build_grid_targets(m["surface_grid"])
    r = train_and_evaluate(f, t, "lightgbm", n_trials=1, seed=0, shap_sample=0, n_folds=1, test_days=8,
                           min_train_days=25)
    assert r.feature_columns == GRID_FEATURE_COLUMNS
    assert {"underlying_ticker", "tenor_days", "delta", "pred"} <= set(r.test_predictions.columns)
    assert np.isfinite(r.test_metrics["rmse_vol_pts"]) and "rmse_optimal_vol_pts" not in r.test_metrics


# ------------------------------------------------------------------------------------ SHAP, card, MLflow
def test_shap_explanations_are_consistent(panel, lgb_result):
    f, _, _ = panel
    model = lgb_result.model
    row = f.iloc[[123]]
    contrib = explain_one(model, row, with_base=True)
    base = contrib.pop("_base_value")
    assert set(contrib) == set(FEATS)
    assert base + sum(contrib.values()) == pytest.approx(model.predict_change(row)[0], abs=1e-9)
    assert explain_one(model, row.iloc[0]) == contrib  # a Series works too
    imp, png = shap_summary(model, f.sample(300, random_state=0))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert imp["mean_abs_shap"].is_monotonic_decreasing
    assert set(imp["feature"].head(3)) <= {"x1", "x2", "x3", "x4"}  # the signal's inputs dominate; x5 is noise
    assert imp.set_index("feature").loc["x5", "mean_abs_shap"] < imp["mean_abs_shap"].iloc[0] / 5
    with pytest.raises(TypeError):
        explain_one(PersistenceModel().fit(f, f["iv"]), row)


def test_model_card_contents(lgb_result):
    card = lgb_result.model_card
    for part in ("# Model card — lightgbm", "## Held-out test performance", "persistence", "optimal (ground truth)",
                 "## Limits", "## Top features", "`x1`", "held-out test"):
        assert part in card
    plain = model_card({"name": "m", "params": {}}, pd.DataFrame(), {"data": "x"}, ["a"], ["limit one"])
    assert "(no test rows)" in plain and "- limit one" in plain


def test_mlflow_run_contents(lgb_result, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # nothing may be written to the working directory by accident
    uri = local_tracking_uri(tmp_path / "tracking")
    run_id = lgb_result.log_to_mlflow(uri, "iv_forecast_test", tags={"suite": "pytest"})
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.data.params["model"] == "lightgbm"
    assert "learning_rate" in run.data.params and run.data.params["purge_days"] == "1"
    assert run.data.metrics["test_rmse_vol_pts"] == pytest.approx(lgb_result.test_metrics["rmse_vol_pts"])
    assert "test_gap_to_optimal_vol_pts" in run.data.metrics and "tuning_best_value" in run.data.metrics
    assert len(client.get_metric_history(run_id, "fold_rmse_vol_pts")) == SPLIT["n_folds"]
    assert run.data.tags["suite"] == "pytest" and run.data.tags["model"] == "lightgbm"
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.name == "training_set"

    def walk(path=None):
        for a in client.list_artifacts(run_id, path):
            yield from (walk(a.path) if a.is_dir else [a.path])

    arts = set(walk())
    assert {"model_card.md", "forecast_model/metadata.json", "forecast_model/model.txt", "plots/shap_beeswarm.png",
            "plots/test_rmse_by_date.png", "tuning/study_summary.json", "tables/metrics_table.csv"} <= arts
    assert run.info.artifact_uri.startswith((tmp_path / "tracking").resolve().as_uri())
    assert not (tmp_path / "mlruns").exists()
