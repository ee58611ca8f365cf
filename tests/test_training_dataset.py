"""The training dataset object, the series history, the stored predictions and the history reference model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from b3quant_models.features import (
    FEATURE_COLUMNS,
    build_option_features,
    build_targets,
    grid_training_dataset,
    option_training_dataset,
    sample_market_truth,
)
from b3quant_models.features.history import SeriesHistory
from b3quant_models.models import SeriesARModel, load_model, make_model, train_and_evaluate, train_model
from b3quant_models.models.training import GRID_PREDICTION_COLUMNS, PREDICTION_COLUMNS
from b3quant_models.schemas import GRID_MODEL_PREDICTIONS, MODEL_PREDICTIONS
from b3quant_models.testing import toy_market

SPLIT = {"n_folds": 2, "test_days": 8, "val_days": 8, "purge_days": 1, "min_train_days": 25}


@pytest.fixture(scope="module")
def market():
    return toy_market(60, 2, seed=5)


@pytest.fixture(scope="module")
def features(market):
    return build_option_features(market["option_iv"], market["iv_surface"], market["underlying_quotes"])


@pytest.fixture(scope="module")
def dataset(market, features):
    return option_training_dataset(features, market["option_iv"], market["truth"])


# ------------------------------------------------------------------------------------------ dataset object
def test_dataset_joins_target_and_floor_once(market, features, dataset):
    t = build_targets(market["option_iv"])
    expect = features.merge(t[["trade_date", "ticker", "iv_next", "target_date"]], on=["trade_date", "ticker"])
    assert len(dataset) == len(expect) and dataset.kind == "option"
    assert dataset.keys == ("trade_date", "ticker") and list(dataset.feature_columns) == FEATURE_COLUMNS
    assert not dataset.frame.duplicated(list(dataset.keys)).any()
    assert (dataset.frame["target_date"] > dataset.frame["trade_date"]).all()
    np.testing.assert_array_equal(dataset.target, dataset.frame["iv_next"].to_numpy())
    assert dataset.has_floor and dataset.frame["iv_next_optimal"].notna().mean() > 0.9
    # the history holds every feature row, also the last day's (which has no target yet)
    assert len(dataset.history) == len(features)
    assert dataset.frame["trade_date"].max() < features["trade_date"].max()
    window = option_training_dataset(features, market["option_iv"], window_sessions=10)
    assert window.frame["trade_date"].nunique() == 10 and not window.has_floor
    assert len(window.history) == len(features)
    assert dataset.summary()["rows"] == len(dataset)


def test_truth_is_found_through_the_sample_market_manifest(tmp_path):
    from b3quant_models.sample_market import SampleMarketConfig, generate_sample_market

    assert sample_market_truth(tmp_path) is None  # no manifest: real data has no floor
    m = generate_sample_market(tmp_path, SampleMarketConfig(n_days=3, underlyings=("PETR4",)))
    truth = sample_market_truth(tmp_path)
    assert list(truth.columns) == ["trade_date", "ticker", "iv_next_optimal"] and len(truth)
    m.truth_path("option_iv").unlink()
    with pytest.raises(FileNotFoundError, match=r"manifest\.json"):
        sample_market_truth(tmp_path)


def test_grid_dataset_keeps_quoted_points(market):
    grid = market["surface_grid"].copy()
    grid["extrapolated"] = grid["tenor_days"] >= 126
    ds = grid_training_dataset(grid, market["underlying_quotes"])
    assert ds.kind == "grid" and (ds.frame["tenor_days"] < 126).all()
    assert ds.info["dropped_extrapolated_rows"] > 0
    assert ds.history.key == ("underlying_ticker", "tenor_days", "delta")


# ------------------------------------------------------------------------------------------ series history
def test_history_window_looks_back_only_and_masks_young_series():
    rows = pd.DataFrame({
        "trade_date": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-03", "2024-01-04"]),
        "ticker": ["A", "A", "A", "B", "B"],
        "iv": [0.1, 0.2, 0.3, 0.5, 0.6],
    })
    h = SeriesHistory.from_rows(rows)
    assert h.key == ("ticker",)  # no expiry column: keyed by ticker
    vals, mask = h.window(rows.iloc[[2, 4, 0]], 3)
    np.testing.assert_array_equal(vals[0, :, 0], [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(mask[1], [False, True, True])
    np.testing.assert_array_equal(vals[1, 1:, 0], [0.5, 0.6])
    assert np.isnan(vals[1, 0, 0]) and mask[2].tolist() == [False, False, True]
    # a request row not stored: extended() adds it (its value wins over a stored one of the same day)
    req = pd.DataFrame({"trade_date": pd.to_datetime(["2024-01-05"]), "ticker": ["A"], "iv": [0.9]})
    with pytest.raises(KeyError, match="not in the history panel"):
        h.window(req, 2)
    v, m = h.extended(req).window(req, 2)
    np.testing.assert_array_equal(v[0, :, 0], [0.3, 0.9])
    assert m.all()
    with pytest.raises(ValueError, match="next-day targets"):
        SeriesHistory.from_rows(rows.assign(iv_next=0.2), values=("iv", "iv_next"))


def test_grid_window_is_the_underlyings_recent_grids(market):
    ds = grid_training_dataset(market["surface_grid"], market["underlying_quotes"])
    rows = ds.frame.drop_duplicates(["underlying_ticker", "trade_date"]).reset_index(drop=True)
    vals, mask, tenors, deltas = ds.history.grid_window(rows, 4)
    assert vals.shape == (len(rows), 4, len(tenors), len(deltas)) and mask.shape == vals.shape
    p = ds.history.panel
    for i in (0, len(rows) // 2, len(rows) - 1):
        r = rows.iloc[i]
        sessions = sorted(p.loc[p["underlying_ticker"] == r["underlying_ticker"], "trade_date"].unique())
        k = sessions.index(r["trade_date"])
        for j, day in enumerate(sessions[max(k - 3, 0): k + 1][::-1]):  # newest first, from the window's end
            cells = p[(p["underlying_ticker"] == r["underlying_ticker"]) & (p["trade_date"] == day)]
            grid = vals[i, 3 - j]
            got = grid[np.searchsorted(tenors, cells["tenor_days"]), np.searchsorted(deltas, cells["delta"])]
            np.testing.assert_array_equal(got, cells["iv"].to_numpy())
            assert mask[i, 3 - j].sum() == len(cells)
        assert not mask[i, : max(3 - k, 0)].any()  # before the underlying's first session
    per_series = rows[["trade_date", "underlying_ticker", "iv"]].rename(columns={"underlying_ticker": "ticker"})
    with pytest.raises(ValueError, match="grid_window"):
        SeriesHistory.from_rows(per_series).grid_window(rows, 2)


def test_history_model_refuses_to_run_without_history(dataset):
    m = SeriesARModel()
    with pytest.raises(ValueError, match="pass history"):
        m.fit(dataset.frame, dataset.target)


# ------------------------------------------------------------------------------------------ predictions
def _check_predictions(res, dataset):
    p = res.predictions
    cols = PREDICTION_COLUMNS if dataset.kind == "option" else GRID_PREDICTION_COLUMNS
    assert list(p.columns) == cols
    (MODEL_PREDICTIONS if dataset.kind == "option" else GRID_MODEL_PREDICTIONS).validate(p)
    f = dataset.frame
    for i, (tr_dates, va_dates) in enumerate(res.splits.folds):
        oof = p[(p["split"] == "oof") & (p["fold"] == i)]
        assert len(oof) == f["trade_date"].isin(va_dates).sum()
        assert set(oof["trade_date"]) <= set(pd.to_datetime(va_dates))
        # never in its own fold's training window, and no training label from inside the block
        assert not oof["trade_date"].isin(tr_dates).any()
        train = f[f["trade_date"].isin(tr_dates) & (f["target_date"] < va_dates[0])]
        assert train["target_date"].max() < oof["trade_date"].min()
    test = p[p["split"] == "test"]
    assert (test["fold"] == -1).all() and set(test["trade_date"]) == set(pd.to_datetime(res.splits.test))
    windows = [tr for tr, _ in res.splits.folds] + [res.splits.final_train]
    assert not any(test["trade_date"].isin(w).any() for w in windows)
    np.testing.assert_allclose(test["forecast"].to_numpy(), res.test_predictions["pred"].to_numpy())
    return p


def test_oof_and_test_predictions_are_out_of_sample(dataset):
    res = train_model(dataset, "xgboost", n_trials=1, seed=0, shap_sample=0, **SPLIT)
    p = _check_predictions(res, dataset)
    assert (p["model"] == "xgboost").all() and p["iv_opt"].notna().any()
    # each fold's rows are exactly what a model fitted on that fold's training rows alone predicts
    f = dataset.frame
    for i, (tr_dates, va_dates) in enumerate(res.splits.folds):
        tr = f["trade_date"].isin(tr_dates) & (f["target_date"] < va_dates[0])
        va = f["trade_date"].isin(va_dates)
        m = make_model("xgboost", res.best_params, features=list(dataset.feature_columns), seed=0)
        m.fit(f[tr], f.loc[tr, "iv_next"])
        oof = p[(p["split"] == "oof") & (p["fold"] == i)]
        np.testing.assert_array_equal(oof["forecast"].to_numpy(), m.predict(f[va]))


def test_grid_predictions_keep_the_grid_key(market):
    ds = grid_training_dataset(market["surface_grid"], market["underlying_quotes"])
    res = train_model(ds, "lightgbm", n_trials=1, seed=0, shap_sample=0, label="lightgbm_grid", **SPLIT)
    p = _check_predictions(res, ds)
    assert (p["model"] == "lightgbm_grid").all() and p["iv_opt"].isna().all()
    assert p["tenor_bdays"].dtype == np.int64


# ------------------------------------------------------------------------------------------ history model
def test_history_model_end_to_end(dataset, tmp_path):
    res = train_model(dataset, "series_ar", n_trials=4, seed=0, shap_sample=300, **SPLIT)
    _check_predictions(res, dataset)
    m = res.model
    assert m.history_length == m.params["lags"] + 1 and set(res.best_params) == {"lags", "alpha"}
    assert res.metrics_table["forecaster"].tolist() == ["series_ar", "persistence", "optimal (ground truth)"]
    assert np.isfinite(res.test_metrics["rmse_vol_pts"])
    # explain(): exact linear SHAP of its own inputs, not the feature row's columns
    assert res.shap_importance is not None and "shap_importance.png" in res.plots
    assert set(res.shap_importance["feature"]) == set(m.input_names())
    # the prediction really depends on the series' past: a history with an altered past changes it
    test = dataset.frame[dataset.frame["trade_date"].isin(res.splits.test)]
    base = m.predict(test, history=dataset.history)
    h = dataset.history.panel.copy()
    past = h["trade_date"] < test["trade_date"].min()
    h.loc[past, "iv"] *= 1.3
    moved = m.predict(test, history=SeriesHistory(h, dataset.history.key, dataset.history.values))
    assert not np.allclose(base, moved)
    # ... but not on the future: altering rows after each row's day leaves it unchanged
    first = test["trade_date"] == test["trade_date"].min()
    h = dataset.history.panel.copy()
    h.loc[h["trade_date"] > test["trade_date"].min(), "iv"] *= 1.3
    same = m.predict(test[first], history=SeriesHistory(h, dataset.history.key, dataset.history.values))
    np.testing.assert_array_equal(same, base[first.to_numpy()])
    # save/load round trip gives identical predictions
    d = m.save(tmp_path / "ar")
    assert json.loads((d / "metadata.json").read_text())["history_length"] == m.history_length
    np.testing.assert_array_equal(load_model(d).predict(test, history=dataset.history), base)


def test_train_and_evaluate_wrapper_equals_train_model(market, features, dataset):
    t = build_targets(market["option_iv"])
    truth = market["truth"][["trade_date", "ticker", "iv_next_optimal"]]
    a = train_and_evaluate(features, t, "series_ar", truth=truth, n_trials=2, seed=0, shap_sample=0, **SPLIT)
    b = train_model(dataset, "series_ar", n_trials=2, seed=0, shap_sample=0, **SPLIT)
    pd.testing.assert_frame_equal(a.predictions, b.predictions)
