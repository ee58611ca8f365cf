"""Stacking ensemble: weights from the members' out-of-fold rows only, scored on the test rows, servable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from b3quant_models.models import load_model
from b3quant_models.models.ensemble import StackingEnsemble, nnls_weights, train_stacking, wide_predictions
from b3quant_models.models.training import GRID_PREDICTION_COLUMNS, PREDICTION_COLUMNS


def _table(seed: int = 0, n_days: int = 40, n_series: int = 30, grid: bool = False) -> pd.DataFrame:
    """Two members on the same rows: 'good' sees 80 % of the true change (plus noise), 'noise' sees nothing;
    days 0-29 are three oof folds, days 30-39 the test block."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2024-01-02", periods=n_days)
    d, s = np.meshgrid(np.arange(n_days), np.arange(n_series), indexing="ij")
    d, s = d.ravel(), s.ravel()
    iv = 0.3 + 0.05 * rng.standard_normal(len(d))
    change = 0.01 * rng.standard_normal(len(d))
    base = pd.DataFrame({"trade_date": days[d], "target_date": days[np.minimum(d + 1, n_days - 1)],
                         "underlying_ticker": "PETR4", "iv": iv, "iv_next": iv + change, "iv_opt": iv + change})
    if grid:
        base["tenor_bdays"] = np.int64(21 + s // 5)
        base["delta"] = 0.1 + 0.1 * (s % 5)
    else:
        base["ticker"] = [f"OPT{i}" for i in s]
    base["split"] = np.where(d < 30, "oof", "test")
    base["fold"] = np.where(d < 30, d // 10, -1).astype(np.int64)
    good = base.assign(model="good", forecast=iv + 0.8 * change + 0.002 * rng.standard_normal(len(d)))
    noise = base.assign(model="noise", forecast=iv + 0.01 * rng.standard_normal(len(d)))
    cols = GRID_PREDICTION_COLUMNS if grid else PREDICTION_COLUMNS
    return pd.concat([good, noise], ignore_index=True)[cols]


def test_nnls_weights_are_non_negative_and_recover_a_mix() -> None:
    rng = np.random.default_rng(1)
    A = rng.standard_normal((5000, 3))
    b = A @ np.array([0.6, -0.5, 0.3]) + 0.01 * rng.standard_normal(5000)
    w = nnls_weights(A, b)
    assert (w >= 0).all() and w[1] == 0  # a negative loading is cut to 0, not fitted
    assert w[0] == pytest.approx(0.6, abs=0.03) and w[2] == pytest.approx(0.3, abs=0.03)
    assert nnls_weights(A, b, alpha=10.0).sum() < w.sum()  # the ridge shrinks


@pytest.mark.parametrize("grid", [False, True], ids=["per-option", "per-grid-point"])
def test_weights_come_from_out_of_fold_rows_only(grid: bool) -> None:
    table = _table(grid=grid)
    res = train_stacking(table)
    assert res.members == ["good", "noise"]
    assert res.weights["good"] > 0.6 and res.weights["noise"] < 0.1
    # the ensemble beats persistence on the test block and reports leave-one-fold-out metrics per fold
    assert res.test_metrics["rmse_vol_pts"] < res.test_metrics["rmse_persistence_vol_pts"]
    assert list(res.fold_metrics["fold"]) == [0, 1, 2]
    assert set(res.predictions["split"]) == {"oof", "test"} and set(res.predictions["model"]) == {"stacking_ensemble"}

    # Perturbing the members' *test* forecasts changes the test score but not one bit of the weights ...
    test = table["split"] == "test"
    hit = table.copy()
    hit.loc[test, "forecast"] += np.random.default_rng(2).normal(0, 0.05, int(test.sum()))
    other = train_stacking(hit)
    assert other.weights == res.weights
    assert other.test_metrics["rmse_vol_pts"] != res.test_metrics["rmse_vol_pts"]
    # ... while perturbing their out-of-fold forecasts does change them.
    oof = table.copy()
    oof.loc[~test & (oof["model"] == "good"), "forecast"] += 0.02
    assert train_stacking(oof).weights != res.weights


def test_rows_some_member_lacks_are_dropped() -> None:
    table = _table()
    gap = (table["model"] == "noise") & (table["ticker"] == "OPT0")
    wide = wide_predictions(table[~gap], "oof", ["good", "noise"])
    assert "OPT0" not in set(wide["ticker"]) and len(wide) == 30 * 29
    with pytest.raises(ValueError, match="at least one base model"):
        train_stacking(table, [])


def test_servable_ensemble_round_trip(tmp_path: Path) -> None:
    """Members trained by train_model on a toy market; the saved ensemble reloads and reproduces its test
    forecasts exactly from the members it holds (zero-weight members are not kept)."""
    from b3quant_models.features import build_option_features
    from b3quant_models.features.dataset import option_training_dataset
    from b3quant_models.models.training import train_model
    from b3quant_models.testing import toy_market

    m = toy_market(60, 2, seed=4)
    feats = build_option_features(m["option_iv"], m["iv_surface"], m["underlying_quotes"])
    ds = option_training_dataset(feats, m["option_iv"], m["truth"][["trade_date", "ticker", "iv_next_optimal"]])
    kw = {"n_trials": 0, "n_folds": 3, "test_days": 10, "val_days": 6, "min_train_days": 15, "shap_sample": 0}
    results = {n: train_model(ds, n, **kw) for n in ("persistence", "series_ar")}
    dirs = {n: r.model.save(tmp_path / n) for n, r in results.items()}
    res = train_stacking(pd.concat([r.predictions for r in results.values()]), member_dirs=dirs)
    assert res.weights["persistence"] == 0 or res.weights["series_ar"] > 0  # persistence adds no change
    loaded = load_model(res.model.save(tmp_path / "ens"))
    assert isinstance(loaded, StackingEnsemble) and set(loaded.members) == {k for k, v in res.weights.items() if v}
    test = ds.frame[ds.frame["trade_date"].between(res.test_start, res.test_end)].reset_index(drop=True)
    got = pd.Series(loaded.predict(test, history=ds.history), index=test["ticker"] + test["trade_date"].astype(str))
    rows = res.predictions[res.predictions["split"] == "test"]
    want = pd.Series(rows["forecast"].to_numpy(), index=rows["ticker"] + rows["trade_date"].astype(str))
    # same numbers up to the order of the float sums (iv + Σw(f−iv) vs iv + Σw·change)
    np.testing.assert_allclose(got.loc[want.index].to_numpy(), want.to_numpy(), rtol=0, atol=1e-12)
    assert loaded.history_length == results["series_ar"].model.history_length
