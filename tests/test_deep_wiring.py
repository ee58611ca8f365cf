"""The torch grid forecasters behind ForecastModel: the grid -> option mapping, train_model on grid rows and
on option rows (through the grid), save/load, determinism, persistence fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from b3quant_models.features import build_option_features
from b3quant_models.features.dataset import grid_training_dataset, option_training_dataset
from b3quant_models.models import load_model, make_model
from b3quant_models.models.deep.grid_to_option import interpolate_grid, option_grid_coords
from b3quant_models.models.training import train_model
from b3quant_models.surface.grid import black_call_delta
from b3quant_models.testing import toy_market

TINY = {"lookback": 4, "hidden": 8, "max_epochs": 4, "patience": 2, "device": "cpu"}
SPLITS = {"n_folds": 2, "test_days": 8, "val_days": 6, "min_train_days": 15, "shap_sample": 0, "n_trials": 0}


@pytest.fixture(scope="module")
def market():
    return toy_market(45, 2, seed=8)


@pytest.fixture(scope="module")
def option_ds(market):
    feats = build_option_features(market["option_iv"], market["iv_surface"], market["underlying_quotes"])
    truth = market["truth"][["trade_date", "ticker", "iv_next_optimal"]]
    return option_training_dataset(feats, market["option_iv"], truth, surface_grid=market["surface_grid"])


@pytest.fixture(scope="module")
def grid_ds(market):
    return grid_training_dataset(market["surface_grid"], market["underlying_quotes"])


def test_interpolation_is_exact_on_nodes_bilinear_between_and_clamped() -> None:
    tenors, deltas = [21, 42, 63], [0.1, 0.5, 0.9]
    cube = np.arange(9, dtype=float).reshape(1, 3, 3)
    s = np.zeros(5, dtype=np.int64)
    v = interpolate_grid(cube, s, np.array([42, 31.5, 5, 400, np.nan]), np.array([0.5, 0.3, 0.0, 1.0, 0.5]),
                         tenors, deltas)
    assert v[0] == 4.0  # node (42, 0.5)
    assert v[1] == pytest.approx((0 + 1 + 3 + 4) / 4)  # midway in both axes
    assert v[2] == 0.0 and v[3] == 8.0  # clamped to the corners
    assert np.isnan(v[4])


def test_option_coords_use_the_grids_delta_for_calls_and_puts() -> None:
    rows = pd.DataFrame({"iv": [0.3, 0.3], "t": [0.25, 0.25], "k": [0.05, 0.05], "bdays": [63, 63],
                         "is_call": [1.0, 0.0]})
    tenor, delta = option_grid_coords(rows)
    assert list(tenor) == [63, 63] and delta[0] == delta[1]  # a function of the strike, not the option type
    assert delta[0] == pytest.approx(float(black_call_delta(0.05, 0.3, 0.25)))


def test_untrained_network_is_persistence_per_grid_point_and_per_option(option_ds, grid_ds) -> None:
    for ds in (grid_ds, option_ds):
        m = make_model("lstm", {**TINY, "max_epochs": 0}).fit(ds.frame, ds.target, history=ds.history)
        np.testing.assert_array_equal(m.predict(ds.frame, history=ds.history), ds.frame["iv"].to_numpy())


@pytest.mark.parametrize("name", ["lstm", "gru", "pinn"])
def test_train_model_on_grid_rows(name: str, grid_ds, tmp_path: Path) -> None:
    res = train_model(grid_ds, name, params=TINY, label=f"{name}_grid", **SPLITS)
    p = res.predictions
    assert set(p["split"]) == {"oof", "test"} and set(p["model"]) == {f"{name}_grid"}
    assert "tenor_bdays" in p.columns and np.isfinite(p["forecast"]).all()
    assert set(res.metrics_table["forecaster"]) >= {name, "persistence"}
    curves = res.model.learning_curves()
    assert len(curves["train_loss"]) == res.model.net_model.train_info["epochs_run"] >= 1
    assert "learning_curve.png" in res.plots and res.model_card.startswith(f"# Model card — {name}")
    # save/load: identical predictions from the saved weights
    test = grid_ds.frame[grid_ds.frame["trade_date"] >= res.splits.test[0]]
    again = load_model(res.model.save(tmp_path / name))
    np.testing.assert_array_equal(again.predict(test, history=grid_ds.history),
                                  res.model.predict(test, history=grid_ds.history))


def test_per_option_through_the_grid_is_deterministic_and_falls_back_to_persistence(option_ds) -> None:
    ds = option_ds
    fit = lambda: make_model("gru", TINY, seed=3).fit(ds.frame, ds.target, history=ds.history)  # noqa: E731
    a, b = fit(), fit()
    pa = a.predict(ds.frame, history=ds.history)
    np.testing.assert_array_equal(pa, b.predict(ds.frame, history=ds.history))
    assert not np.array_equal(pa, ds.frame["iv"].to_numpy()) and a.last_fallback_rows == 0
    # a row whose underlying has no grid that day: persistence, counted
    lost = ds.frame.head(3).assign(underlying_ticker="NOGRID")
    np.testing.assert_array_equal(a.predict(lost, history=ds.history), lost["iv"].to_numpy())
    assert a.last_fallback_rows == 3
    # without the grid history: fitting is an error, predicting falls back to persistence for every row
    bare = ds.history.with_grid(None)
    with pytest.raises(ValueError, match="grid"):
        make_model("gru", TINY).fit(ds.frame, ds.target, history=bare)
    np.testing.assert_array_equal(a.predict(ds.frame.head(3), history=bare), ds.frame["iv"].head(3).to_numpy())
    assert a.last_fallback_rows == 3


def test_gpu_inference_matches_cpu_where_cuda_exists(grid_ds) -> None:
    """The service's B3Q_BENTO_GPU path (``place_on_gpu`` -> ``to_device``): same forecasts on the GPU; without
    CUDA an explicit device is an error, not a silent CPU fallback."""
    import torch

    from bento.forecast import place_on_gpu

    ds = grid_ds
    m = make_model("gru", TINY).fit(ds.frame, ds.target, history=ds.history)
    cpu = m.predict(ds.frame, history=ds.history)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            place_on_gpu(m)
        return
    assert place_on_gpu(m) == ["gru"]
    np.testing.assert_allclose(m.predict(ds.frame, history=ds.history), cpu, rtol=0, atol=1e-6)
