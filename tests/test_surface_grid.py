"""Fixed tenor × delta grid and the diagnostic plot of b3quant_models.surface."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from b3quant_models.surface import (
    black_call_delta,
    fit_surfaces,
    grid_to_array,
    plot_surface,
    surface_grid,
    svi_iv,
    svi_total_variance,
)
from b3quant_models.testing import synthetic_day

P1, P2 = (0.004, 0.05, -0.5, 0.05, 0.12), (0.012, 0.08, -0.45, 0.06, 0.18)


def _params(t1=42 / 252, t2=126 / 252, k_range=(-0.5, 0.5)) -> pd.DataFrame:
    rows = []
    for p, t, e in ((P1, t1, "2024-05-01"), (P2, t2, "2024-09-02")):
        rows.append({"underlying_ticker": "PETR4", "expiry": pd.Timestamp(e), "t": t, "status": "ok",
                     "k_min_quoted": k_range[0], "k_max_quoted": k_range[1],
                     **dict(zip(("a", "b", "rho", "m", "sigma"), p, strict=True))})
    rows.append({"underlying_ticker": "VALE3", "expiry": pd.Timestamp("2024-05-01"), "t": t1,
                 "status": "too_few_quotes", "a": np.nan, "b": np.nan, "rho": np.nan, "m": np.nan,
                 "sigma": np.nan})
    return pd.DataFrame(rows)


def test_grid_has_fixed_shape_and_black_delta_at_returned_k_equals_requested_delta():
    g = surface_grid(_params())
    assert list(g.columns[:8]) == ["underlying_ticker", "tenor_days", "delta", "t", "k", "iv", "total_variance",
                                   "extrapolated"]
    assert len(g) == 2 * 5 * 5
    ok = g[g["underlying_ticker"] == "PETR4"]
    assert ok["iv"].notna().all()
    np.testing.assert_allclose(black_call_delta(ok["k"], ok["iv"], ok["t"]), ok["delta"], atol=1e-9)
    np.testing.assert_allclose(ok["total_variance"], ok["iv"] ** 2 * ok["t"], rtol=1e-12)
    # higher call delta = lower strike
    for _, grp in ok.groupby("tenor_days"):
        assert np.all(np.diff(grp.sort_values("delta")["k"].to_numpy()) < 0)


def test_grid_interpolates_total_variance_linearly_in_t_and_flags_extrapolation():
    g = surface_grid(_params()).set_index(["underlying_ticker", "tenor_days", "delta"])
    t1, t2 = 42 / 252, 126 / 252

    r = g.loc[("PETR4", 63, 0.25)]  # between the slices: linear in t at fixed k
    lam = (63 / 252 - t1) / (t2 - t1)
    w_expected = (1 - lam) * svi_total_variance(r["k"], *P1) + lam * svi_total_variance(r["k"], *P2)
    assert r["total_variance"] == pytest.approx(w_expected, rel=1e-10)
    assert not r["extrapolated"] and r["flag_reason"] == ""

    r = g.loc[("PETR4", 42, 0.5)]  # on a slice: exactly that slice
    assert r["iv"] == pytest.approx(svi_iv(r["k"], t1, *P1), rel=1e-10) and not r["extrapolated"]

    r = g.loc[("PETR4", 252, 0.5)]  # beyond the last expiry: flat vol at fixed k
    assert r["extrapolated"] and r["flag_reason"] == "tenor_after_last_expiry"
    assert r["iv"] == pytest.approx(svi_iv(r["k"], t2, *P2), rel=1e-10)

    r = g.loc[("PETR4", 21, 0.9)]  # before the first expiry
    assert r["extrapolated"] and r["flag_reason"] == "tenor_before_first_expiry"

    r = g.loc[("VALE3", 63, 0.5)]
    assert r["extrapolated"] and r["flag_reason"] == "no_fitted_slices" and np.isnan(r["iv"])


def test_grid_flags_points_far_beyond_the_quoted_k_range():
    g = surface_grid(_params(k_range=(-0.08, 0.08)), k_margin=0.02)
    inner = g[(g["underlying_ticker"] == "PETR4") & (g["tenor_days"] == 63)].set_index("delta")
    assert inner.loc[0.5, "flag_reason"] == ""
    for d in (0.1, 0.9):
        assert abs(inner.loc[d, "k"]) > 0.1
        assert inner.loc[d, "extrapolated"] and "k_beyond_quoted_range" in inner.loc[d, "flag_reason"]


def test_grid_to_array_pivots_to_underlying_tenor_delta():
    g = surface_grid(_params(), deltas=(0.25, 0.5, 0.75), tenors=(21, 63))
    arr = grid_to_array(g)
    assert arr.values.shape == (2, 2, 3)
    assert arr.underlyings == ["PETR4", "VALE3"] and arr.tenors == [21, 63] and arr.deltas == [0.25, 0.5, 0.75]
    expected = g.set_index(["underlying_ticker", "tenor_days", "delta"]).loc[("PETR4", 63, 0.75), "iv"]
    assert arr.values[0, 1, 2] == expected
    assert np.isnan(arr.values[1]).all()
    fixed = grid_to_array(g, value="k", underlyings=["BOVA11", "PETR4"])  # stable first axis across days
    assert fixed.values.shape == (2, 2, 3) and np.isnan(fixed.values[0]).all()


def test_grid_rejects_invalid_deltas():
    with pytest.raises(ValueError, match="deltas"):
        surface_grid(_params(), deltas=(0.0, 0.5))


def test_plot_surface_returns_png_bytes():
    q, _ = synthetic_day(1, n_underlyings=2, n_expiries=3)
    res = fit_surfaces(q)
    png = plot_surface(q, res.params, surface_grid(res.params), "PETR4")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
