"""SVI/SSVI fitting, arbitrage checks and repair, cleaning and reporting of b3quant_models.surface."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from b3quant_models.surface import (
    DEFAULT_K_GRID,
    butterfly_violations,
    calendar_violations,
    clean_quotes,
    fit_ssvi,
    fit_surfaces,
    fit_svi_slice,
    ssvi_to_raw,
    ssvi_total_variance,
    svi_g,
    svi_iv,
    svi_total_variance,
)
from b3quant_models.surface.svi import refit_svi_constrained
from b3quant_models.testing import synthetic_day

VOGT = (-0.0410, 0.1331, 0.3060, 0.3586, 0.4153)  # Axel Vogt's SVI slice, t = 1: g < 0 for k ≈ 0.64..1.26
EXP1, EXP2 = pd.Timestamp("2024-04-15"), pd.Timestamp("2024-05-20")


def _slice_quotes(params, t, k, underlying_ticker="PETR4", expiry=EXP1, noise=0.0, seed=0) -> pd.DataFrame:
    iv = svi_iv(k, t, *params) + np.random.default_rng(seed).normal(0.0, noise, len(k))
    return pd.DataFrame({"underlying_ticker": underlying_ticker, "expiry": expiry, "t": t, "k": k, "iv": iv,
                         "weight": 1.0})


def _params_row(params, t, underlying_ticker="PETR4", expiry=EXP1) -> dict:
    return {"underlying_ticker": underlying_ticker, "expiry": expiry, "t": t, "status": "ok",
            **dict(zip(("a", "b", "rho", "m", "sigma"), params, strict=True))}


# ------------------------------------------------------------------------------------------------- SVI
def test_svi_recovers_known_parameters_from_noiseless_quotes():
    truth, t = (0.02, 0.12, -0.5, 0.05, 0.15), 0.25
    k = np.linspace(-0.4, 0.4, 30)
    fit = fit_svi_slice(k, svi_iv(k, t, *truth), t)
    np.testing.assert_allclose(fit.params, truth, atol=1e-5)
    kk = np.linspace(-0.5, 0.5, 101)
    assert np.max(np.abs(svi_iv(kk, t, *fit.params) - svi_iv(kk, t, *truth))) < 1e-6


def test_svi_fit_with_noise_has_rmse_near_noise_level_and_tracks_truth():
    truth, t, noise = (0.02, 0.12, -0.5, 0.05, 0.15), 0.25, 0.003  # 0.3 vol points
    k = np.linspace(-0.4, 0.4, 40)
    q = _slice_quotes(truth, t, k, noise=noise, seed=3)
    res = fit_surfaces(q)
    row = res.params.iloc[0]
    assert row["status"] == "ok" and row["n_quotes"] == 40
    assert 0.15 < row["rmse_vol_pts"] < 0.35  # residual ≈ noise (slightly below: 5 params fitted)
    fitted = tuple(row[c] for c in ("a", "b", "rho", "m", "sigma"))
    err = np.sqrt(np.mean((svi_iv(k, t, *fitted) - svi_iv(k, t, *truth)) ** 2)) * 100
    assert err < 0.2  # the fit averages the noise out instead of chasing it


def test_svi_total_variance_matches_formula_and_iv_is_consistent():
    a, b, rho, m, sigma = 0.01, 0.2, -0.3, 0.1, 0.2
    k = np.array([-0.3, 0.0, 0.4])
    expected = a + b * (rho * (k - m) + np.sqrt((k - m) ** 2 + sigma**2))
    np.testing.assert_allclose(svi_total_variance(k, a, b, rho, m, sigma), expected)
    np.testing.assert_allclose(svi_iv(k, 0.5, a, b, rho, m, sigma) ** 2 * 0.5, expected)


# ----------------------------------------------------------------------------------------- butterfly
def test_vogt_slice_has_negative_g_and_the_butterfly_check_reports_it():
    g = svi_g(DEFAULT_K_GRID, *VOGT)
    assert g.min() < -0.03
    viol = butterfly_violations(pd.DataFrame([_params_row(VOGT, 1.0)]), DEFAULT_K_GRID)
    assert len(viol) == 1
    row = viol.iloc[0]
    assert row["check"] == "butterfly" and row["underlying_ticker"] == "PETR4" and row["value"] < 0
    assert 0.6 < row["k"] < 1.3 and row["k_from"] >= 0.6 and row["k_to"] <= 1.3


def test_butterfly_check_ignores_unfitted_rows_and_is_empty_for_a_clean_slice():
    clean = (0.02, 0.12, -0.5, 0.05, 0.15)
    rows = [_params_row(clean, 0.25), {**_params_row(VOGT, 1.0, expiry=EXP2), "status": "too_few_quotes"}]
    viol = butterfly_violations(pd.DataFrame(rows), DEFAULT_K_GRID)
    assert viol.empty and "k" in viol.columns


def test_fit_surfaces_repairs_a_butterfly_violating_slice():
    k = np.linspace(-0.5, 0.5, 41)
    res = fit_surfaces(_slice_quotes(VOGT, 1.0, k))
    raw = res.violations[res.violations["stage"] == "raw_fit"]
    assert (raw["check"] == "butterfly").sum() == 1  # the noiseless fit reproduces Vogt's arbitrage
    assert res.final_violations.empty
    row = res.params.iloc[0]
    assert bool(row["repaired"]) and "butterfly" in row["repair"]
    fitted = tuple(row[c] for c in ("a", "b", "rho", "m", "sigma"))
    assert svi_g(DEFAULT_K_GRID, *fitted).min() >= 0
    assert butterfly_violations(res.params, DEFAULT_K_GRID).empty
    assert row["rmse_vol_pts"] < 1.0  # the arbitrage sits mostly outside the quotes: small price to pay


def test_constrained_refit_respects_g_on_grid():
    k = np.linspace(-0.5, 1.2, 40)
    res = refit_svi_constrained(k, svi_iv(k, 1.0, *VOGT), 1.0, None, VOGT, DEFAULT_K_GRID)
    assert res.success
    assert svi_g(DEFAULT_K_GRID, *res.params).min() > 0


# ------------------------------------------------------------------------------------------ calendar
SHORT, LONG = (0.01, 0.15, -0.4, 0.0, 0.1), (0.025, 0.05, -0.4, 0.0, 0.1)  # cross at |k| ≈ 0.2


def test_calendar_check_catches_crossed_slices_and_passes_ordered_ones():
    crossed = pd.DataFrame([_params_row(SHORT, 0.2), _params_row(LONG, 0.3, expiry=EXP2)])
    viol = calendar_violations(crossed, DEFAULT_K_GRID)
    assert len(viol) == 1
    row = viol.iloc[0]
    assert (row["expiry"], row["expiry_next"]) == (EXP1, EXP2) and row["value"] < 0
    assert abs(row["k"]) > 0.1  # ATM the long slice is above; the crossing is in the wings
    ordered = pd.DataFrame([_params_row(SHORT, 0.2), _params_row((0.02, *SHORT[1:]), 0.3, expiry=EXP2)])
    assert calendar_violations(ordered, DEFAULT_K_GRID).empty


def test_fit_surfaces_repairs_calendar_arbitrage_by_raising_the_longer_slice():
    k = np.linspace(-0.4, 0.4, 30)
    q = pd.concat([_slice_quotes(SHORT, 0.2, k), _slice_quotes(LONG, 0.3, k, expiry=EXP2)])
    res = fit_surfaces(q, use_ssvi=False)
    raw = res.violations[res.violations["stage"] == "raw_fit"]
    assert (raw["check"] == "calendar").any()
    assert res.final_violations.empty
    p = res.params.set_index("expiry")
    assert not p.loc[EXP1, "repaired"]  # the front month is the anchor
    assert p.loc[EXP2, "repaired"] and "calendar" in p.loc[EXP2, "repair"]
    w = {e: svi_total_variance(DEFAULT_K_GRID, *p.loc[e, ["a", "b", "rho", "m", "sigma"]]) for e in (EXP1, EXP2)}
    assert np.all(w[EXP2] >= w[EXP1])
    assert calendar_violations(res.params, DEFAULT_K_GRID).empty


# --------------------------------------------------------------------------------- cleaning/reporting
def test_too_few_quotes_slices_are_reported_not_fitted_and_dropped_rows_have_reasons():
    k = np.linspace(-0.3, 0.3, 12)
    good = _slice_quotes((0.02, 0.12, -0.5, 0.05, 0.15), 0.25, k)
    thin = _slice_quotes((0.03, 0.1, -0.4, 0.0, 0.2), 0.4, k[:3], expiry=EXP2)
    gone = _slice_quotes((0.03, 0.1, -0.4, 0.0, 0.2), 0.4, np.array([0.6, -0.7]), underlying_ticker="VALE3")
    bad = good.iloc[:4].copy()
    bad["iv"] = [np.nan, 0.3, 0.3, 0.3]
    bad["weight"] = [1.0, -1.0, 0.0, 1.0]
    bad["k"] = [0.0, 0.0, 0.0, 0.9]
    res = fit_surfaces(pd.concat([good, thin, gone, bad], ignore_index=True))

    p = res.params.set_index(["underlying_ticker", "expiry"])
    assert p.loc[("PETR4", EXP1), "status"] == "ok" and p.loc[("PETR4", EXP1), "n_quotes"] == 12
    thin_row = p.loc[("PETR4", EXP2)]
    assert thin_row["status"] == "too_few_quotes" and thin_row["n_quotes"] == 3
    assert "min_quotes=5" in thin_row["reason"] and np.isnan(thin_row["a"])
    gone_row = p.loc[("VALE3", EXP1)]  # every quote dropped, the slice is still listed
    assert gone_row["status"] == "too_few_quotes" and gone_row["n_quotes"] == 0

    counts = res.summary()["dropped_by_reason"]
    assert counts == {"abs_k_gt_k_max": 3, "non_finite": 1, "non_positive_weight": 2}
    assert res.summary()["n_input_quotes"] == len(good) + len(thin) + len(gone) + len(bad)


def test_min_quotes_is_configurable():
    k = np.linspace(-0.3, 0.3, 6)
    q = _slice_quotes((0.02, 0.12, -0.5, 0.05, 0.15), 0.25, k)
    assert fit_surfaces(q).params["status"].iloc[0] == "ok"
    assert fit_surfaces(q, min_quotes=7).params["status"].iloc[0] == "too_few_quotes"


def test_clean_quotes_reasons_and_missing_columns():
    q = pd.DataFrame({"underlying_ticker": ["A", "A", "A", None], "expiry": [EXP1] * 4, "t": [0.1, 0.0, 0.1, 0.1],
                      "k": [0.0, 0.0, np.inf, 0.0], "iv": [0.3, 0.3, 0.3, 0.3], "weight": [1.0] * 4})
    kept, dropped = clean_quotes(q)
    assert len(kept) == 1
    assert list(dropped["reason"]) == ["non_positive_t", "non_finite", "missing_key"]
    with pytest.raises(ValueError, match="weight"):
        clean_quotes(q.drop(columns="weight"))


# ---------------------------------------------------------------------------------------------- SSVI
def test_ssvi_slice_is_the_raw_svi_slice_it_maps_to():
    k = np.linspace(-1, 1, 41)
    theta, rho, eta, gamma = 0.04, -0.6, 1.0, 0.4
    np.testing.assert_allclose(svi_total_variance(k, *ssvi_to_raw(theta, rho, eta, gamma)),
                               ssvi_total_variance(k, theta, rho, eta, gamma), rtol=1e-12)


def test_ssvi_fit_recovers_parameters_and_is_arbitrage_free():
    rho, eta, gamma = -0.5, 1.1, 0.4
    thetas, ts = np.array([0.006, 0.012, 0.022, 0.04]), np.array([0.08, 0.17, 0.3, 0.55])
    k = np.linspace(-0.35, 0.3, 25)
    slices = [(k, np.sqrt(ssvi_total_variance(k, th, rho, eta, gamma) / t), t, np.ones_like(k))
              for th, t in zip(thetas, ts, strict=True)]
    fit = fit_ssvi(slices, thetas * 1.2, rho0=-0.2)
    assert fit.wrmse_vol_pts < 1e-3
    assert fit.rho == pytest.approx(rho, abs=1e-3) and fit.eta == pytest.approx(eta, rel=1e-2)
    np.testing.assert_allclose(fit.theta, thetas, rtol=1e-3)
    params = pd.DataFrame([_params_row(ssvi_to_raw(th, fit.rho, fit.eta, fit.gamma), t, expiry=e)
                           for th, t, e in zip(fit.theta, ts, pd.date_range(EXP1, periods=4, freq="MS"),
                                               strict=True)])
    assert butterfly_violations(params).empty and calendar_violations(params).empty


def test_ssvi_is_chosen_when_preferred_and_then_the_surface_is_clean():
    q, _ = synthetic_day(5, n_underlyings=2, n_expiries=4)
    res = fit_surfaces(q, ssvi_margin_vol_pts=100.0)  # i.e. always prefer the parsimonious model
    ok = res.params[res.params["status"] == "ok"]
    assert (ok["model"] == "ssvi").all()
    assert ok["model_note"].str.startswith("ssvi (wrmse").all()
    assert not ok["repaired"].any()
    assert ok.groupby("underlying_ticker")["ssvi_rho"].nunique().eq(1).all()  # one ρ per underlying
    assert res.final_violations.empty


# ------------------------------------------------------------------------------------------ full day
def test_synthetic_day_fits_cleanly_and_public_checks_agree():
    q, truth = synthetic_day(0)
    res = fit_surfaces(q)
    p = res.params
    assert len(p) == len(truth) and (p["status"] == "ok").all()
    assert p["rmse_vol_pts"].mean() < 1.0  # noise is 0.3 vol pts, larger in low-vega wings
    assert res.final_violations.empty
    assert butterfly_violations(p).empty and calendar_violations(p).empty
    assert set(p["model"]) <= {"svi", "ssvi"} and (p["model_note"] != "").all()
    assert (p["trade_date"] == pd.Timestamp("2024-03-01")).all()
    s = res.summary()
    assert s["n_fitted"] == len(p) and s["n_final_violations"] == 0
    # every repaired slice came from something the raw-fit check reported for its underlying
    raw = res.violations[res.violations["stage"] == "raw_fit"]
    assert set(p.loc[p["repaired"], "underlying_ticker"]) <= set(raw["underlying_ticker"])
