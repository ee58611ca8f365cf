"""Deep grid forecasters (torch): data shapes, learning, save/load, determinism, CUDA, arbitrage."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from b3quant_models.models.deep import (  # noqa: E402
    GRID_MODELS,
    FitConfig,
    GridForecaster,
    build_grid_sequences,
)
from b3quant_models.models.deep.arbitrage import count_violations  # noqa: E402
from b3quant_models.testing.features import toy_market  # noqa: E402

LOOKBACK = 5


@pytest.fixture(scope="module")
def seqs():
    m = toy_market(50, 2, seed=5)
    return build_grid_sequences(m["surface_grid"], m["underlying_quotes"], lookback=LOOKBACK)


# tiny stage-1 settings for the VAE so the suite stays fast (given to the VAE only)
VAE_QUICK = {"vae_epochs": 25, "refine_steps": 10}


def _params(name: str, **kw) -> dict:
    return {**(VAE_QUICK if name == "vae_latent" else {}), **kw}


def _cfg(**kw) -> FitConfig:
    return FitConfig(**{"max_epochs": 6, "patience": 3, "batch_size": 16, "device": "cpu", **kw})


def test_sequences_shapes_and_masks(seqs):
    n = len(seqs)
    assert seqs.x.shape == (n, LOOKBACK, 5, 5) and seqs.x_mask.shape == seqs.x.shape
    assert seqs.y.shape == (n, 5, 5) and seqs.y_mask.dtype == bool
    assert seqs.extra.shape == (n, len(seqs.extra_columns))
    assert np.isfinite(seqs.x).all()  # gaps are filled, the mask says where
    assert np.isfinite(seqs.y[seqs.y_mask]).all()
    # target date is the underlying's next session and after the input's last day
    assert (seqs.keys["target_date"] > seqs.keys["trade_date"]).all()
    # every sample dated D only uses grids dated <= D: the window's last grid is D's grid
    first = seqs.keys.iloc[0]
    assert first["trade_date"] == sorted(seqs.keys["trade_date"].unique())[0]
    long = seqs.long_frame()
    assert len(long) == int(seqs.y_mask.sum())


def test_sequences_do_not_look_ahead():
    m = toy_market(40, 1, seed=2)
    g = m["surface_grid"]
    cut = sorted(g["trade_date"].unique())[25]
    base = build_grid_sequences(g, m["underlying_quotes"], lookback=LOOKBACK, require_target=False)
    g2 = g.copy()
    later = g2["trade_date"] > cut
    g2.loc[later, "iv"] = g2.loc[later, "iv"] * 1.5
    pert = build_grid_sequences(g2, m["underlying_quotes"], lookback=LOOKBACK, require_target=False)
    a = base.keys["trade_date"] <= cut
    np.testing.assert_array_equal(base.x[a.to_numpy()], pert.x[a.to_numpy()])


@pytest.mark.parametrize("name", sorted(GRID_MODELS))
def test_output_shape_and_untrained_net_is_persistence(seqs, name):
    model = GRID_MODELS[name](_params(name), fit_config=_cfg(max_epochs=0), seed=0).fit(seqs)
    pred = model.predict(seqs)
    assert pred.shape == seqs.y.shape
    np.testing.assert_allclose(pred, seqs.last, atol=1e-7)  # zero-initialised last layer


@pytest.mark.parametrize("name", sorted(GRID_MODELS))
def test_loss_falls_when_overfitting_a_fixed_batch(seqs, name):
    batch = seqs.subset(np.arange(16))
    model = GRID_MODELS[name](_params(name, dropout=0.0), fit_config=_cfg(max_epochs=150, lr=3e-3, batch_size=16,
                                                                   weight_decay=0.0), seed=1)
    model.fit(batch)
    h = model.history.train_loss
    assert h[-1] < 0.2 * h[0], (h[0], h[-1])


@pytest.mark.parametrize("name", sorted(GRID_MODELS))
def test_save_load_round_trip_gives_identical_predictions(seqs, name, tmp_path):
    train, val = seqs.subset(np.arange(40)), seqs.subset(np.arange(40, len(seqs)))
    model = GRID_MODELS[name](_params(name), fit_config=_cfg(), seed=3).fit(train, val)
    d = model.save(tmp_path / name)
    back = GridForecaster.load(d)
    assert type(back) is type(model)
    np.testing.assert_array_equal(back.predict(val), model.predict(val))
    assert back.train_info["best_epoch"] == model.train_info["best_epoch"]


def test_deterministic_on_cpu(seqs, tmp_path):
    train, val = seqs.subset(np.arange(40)), seqs.subset(np.arange(40, len(seqs)))
    preds = []
    for i in range(2):
        m = GRID_MODELS["lstm_grid"](fit_config=_cfg(checkpoint_dir=str(tmp_path / f"ck{i}")), seed=11)
        preds.append(m.fit(train, val).predict(val))
        assert (tmp_path / f"ck{i}" / "best.pt").exists() and (tmp_path / f"ck{i}" / "last.pt").exists()
    np.testing.assert_array_equal(preds[0], preds[1])
    other = GRID_MODELS["lstm_grid"](fit_config=_cfg(), seed=12).fit(train, val).predict(val)
    assert not np.array_equal(other, preds[0])


def test_early_stopping_keeps_the_best_epoch(seqs):
    train, val = seqs.subset(np.arange(40)), seqs.subset(np.arange(40, len(seqs)))
    m = GRID_MODELS["gru_grid"](fit_config=_cfg(max_epochs=60, patience=4), seed=0).fit(train, val)
    h = m.history
    assert h.best_val == pytest.approx(min(h.val_loss))
    assert len(h.val_loss) <= h.best_epoch + 1 + 4


def test_pinn_without_physics_is_the_gru(seqs):
    a = GRID_MODELS["gru_grid"](fit_config=_cfg(), seed=4).fit(seqs).predict(seqs)
    b = GRID_MODELS["pinn_grid"]({"butterfly_weight": 0, "calendar_weight": 0}, fit_config=_cfg(), seed=4)
    np.testing.assert_array_equal(b.fit(seqs).predict(seqs), a)


def test_arbitrage_counts_find_a_calendar_violation():
    tenors, deltas = [21, 42, 63], [0.1, 0.5, 0.9]
    flat = np.full((1, 3, 3), 0.3)
    assert count_violations(flat, tenors, deltas)["calendar"] == 0
    assert count_violations(flat, tenors, deltas)["butterfly"] == 0
    bad = flat.copy()
    bad[0, 1] = 0.15  # total variance at 42 days below that at 21 days
    assert count_violations(bad, tenors, deltas)["calendar"] > 0


def test_cuda_request_without_cuda_is_an_error(seqs):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(RuntimeError, match="CUDA"):
        GRID_MODELS["gru_grid"](fit_config=_cfg(device="cuda"), seed=0).fit(seqs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", sorted(GRID_MODELS))
def test_trains_on_cuda_with_mixed_precision(seqs, tmp_path, name):
    train, val = seqs.subset(np.arange(40)), seqs.subset(np.arange(40, len(seqs)))
    m = GRID_MODELS[name](_params(name), fit_config=_cfg(device="cuda", amp="auto"), seed=0).fit(train, val)
    assert m.train_info["device"].startswith("cuda") and m.train_info["amp"] is True
    pred = m.predict(val)  # the fitted net is moved back to the CPU for inference and saving
    assert np.isfinite(pred).all()
    back = GridForecaster.load(m.save(tmp_path / "m"))
    np.testing.assert_array_equal(back.predict(val), pred)


# ---------------------------------------------------------------------------------------------- VAE
@pytest.fixture(scope="module")
def vae(seqs):
    train, val = seqs.subset(np.arange(40)), seqs.subset(np.arange(40, len(seqs)))
    return GRID_MODELS["vae_latent"](_params("vae_latent"), fit_config=_cfg(), seed=2).fit(train, val)


def test_vae_reconstruction_loss_falls_when_overfitting(seqs):
    batch = seqs.subset(np.arange(16))
    m = GRID_MODELS["vae_latent"]({"vae_epochs": 150, "train_mask_frac": 0.0, "beta": 0.0},
                                  fit_config=_cfg(max_epochs=1, batch_size=16), seed=0).fit(batch)
    h = m.vae_history.train_loss
    assert h[-1] < 0.2 * h[0], (h[0], h[-1])


def test_vae_fill_keeps_visible_cells_and_fills_the_rest(vae, seqs):
    from b3quant_models.models.deep.fill import random_cell_mask

    iv, q = seqs.last.astype(float), seqs.x_mask[:, -1] > 0
    vis = random_cell_mask(q, 0.3, seed=0)
    assert (q & ~vis).sum() > 0 and (vis <= q).all()
    filled = vae.fill_masked(np.where(vis, iv, 0.0), vis)
    assert filled.shape == iv.shape and np.isfinite(filled).all()
    np.testing.assert_array_equal(filled[vis], iv[vis])
    err = 100 * np.abs(filled - iv)[q & ~vis]
    assert np.median(err) < 5.0  # vol points: the decoder's values are surfaces, not the 0.0 placeholder


def test_vae_anomaly_score_flags_a_distorted_surface(vae, seqs):
    from b3quant_models.models.deep import surface_anomaly_scores

    iv, q = seqs.last.astype(float), seqs.x_mask[:, -1] > 0
    normal = vae.anomaly_scores(iv, q)
    bad = iv.copy()
    bad[:, :, ::2] += 0.15  # a saw-tooth smile: 15 vol points up on every other delta
    distorted = vae.anomaly_scores(bad, q)
    assert np.isfinite(vae.anomaly_threshold)
    assert np.nanmedian(distorted) > 3 * np.nanmedian(normal)
    assert (distorted > vae.anomaly_threshold).mean() > 0.9
    m = toy_market(12, 1, seed=9)
    frame = surface_anomaly_scores(vae, m["surface_grid"])
    assert {"trade_date", "underlying_ticker", "anomaly_score", "threshold", "anomalous"} <= set(frame.columns)
    assert len(frame) == m["surface_grid"][["trade_date", "underlying_ticker"]].drop_duplicates().shape[0]


def test_vae_save_load_keeps_threshold_and_fill(vae, seqs, tmp_path):
    back = GridForecaster.load(vae.save(tmp_path / "vae"))
    assert back.anomaly_threshold == vae.anomaly_threshold
    iv, q = seqs.last.astype(float), seqs.x_mask[:, -1] > 0
    np.testing.assert_array_equal(back.fill_masked(iv, q), vae.fill_masked(iv, q))


def test_vae_deterministic_on_cpu(seqs):
    train, val = seqs.subset(np.arange(40)), seqs.subset(np.arange(40, len(seqs)))
    a, b = (GRID_MODELS["vae_latent"](_params("vae_latent"), fit_config=_cfg(), seed=5).fit(train, val).predict(val)
            for _ in range(2))
    np.testing.assert_array_equal(a, b)


def test_svi_and_ssvi_refits_recover_a_flat_surface():
    from b3quant_models.models.deep.fill import random_cell_mask, ssvi_fill, svi_fill

    tenors, deltas = [21, 42, 63], [0.1, 0.25, 0.5, 0.75, 0.9]
    iv = np.full((3, 3, 5), 0.25) + np.linspace(0, 0.02, 3)[None, :, None]
    vis = random_cell_mask(np.ones_like(iv, bool), 0.3, seed=1)
    for fill in (svi_fill, ssvi_fill):
        out = fill(iv, vis, tenors, deltas)
        np.testing.assert_array_equal(out[vis], iv[vis])
        assert np.nanmax(np.abs(out - iv)) < 0.01, fill.__name__


# ---------------------------------------------------------------------------------------------- per option
def test_interpolate_grid_hits_nodes_and_stays_flat_outside():
    from b3quant_models.models.deep.per_option import interpolate_grid

    tenors, deltas = [21, 63], [0.25, 0.5, 0.75]
    g = np.array([[[0.30, 0.25, 0.22], [0.28, 0.24, 0.21]]])
    g2 = np.repeat(g, 3, axis=0)
    at = interpolate_grid(g2, tenors, deltas, np.array([21, 63, 200.0]), np.array([0.5, 0.75, 0.99]))
    np.testing.assert_allclose(at, [0.25, 0.21, 0.21])
    mid = interpolate_grid(g, tenors, deltas, np.array([42.0]), np.array([0.375]))[0]
    assert 0.24 < mid < 0.275  # between its four neighbours


def test_option_forecasts_through_the_grid(seqs):
    import pandas as pd

    from b3quant_models.models.deep.per_option import option_forecasts_from_grid

    keys = seqs.keys.iloc[:3]
    today = seqs.last[:3].astype(float)
    contracts = pd.DataFrame({"trade_date": keys["trade_date"].to_numpy(), "ticker": ["A", "B", "C"],
                              "underlying_ticker": keys["underlying_ticker"].to_numpy(), "iv": [0.31, 0.27, 0.4],
                              "iv_minus_surface": [0.01, -0.002, 0.0], "k": [0.0, 0.1, -0.2], "t": [0.1, 0.2, 0.5],
                              "bdays": [25, 50, 126]})
    same = option_forecasts_from_grid(today, today, keys, seqs.tenors, seqs.deltas, contracts)
    np.testing.assert_allclose(same["forecast"], contracts["iv"])  # persistence grid -> persistence per option
    up = option_forecasts_from_grid(today + 0.01, today, keys, seqs.tenors, seqs.deltas, contracts)
    np.testing.assert_allclose(up["forecast"], contracts["iv"] + 0.01, atol=2e-4)
    assert list(up.columns[:4]) == ["trade_date", "ticker", "underlying_ticker", "iv"]
    flat = np.full_like(today, 0.3)
    lvl = option_forecasts_from_grid(flat, flat, keys, seqs.tenors, seqs.deltas, contracts, mode="level")
    np.testing.assert_allclose(lvl["forecast"], 0.3 + contracts["iv_minus_surface"])
    with pytest.raises(KeyError, match="bdays"):
        option_forecasts_from_grid(today, today, keys, seqs.tenors, seqs.deltas, contracts.drop(columns="bdays"))
