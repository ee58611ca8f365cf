"""Feature/target tables: information timing (no look-ahead), target alignment, formulas, schemas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from b3quant_models.features import (
    FEATURE_COLUMNS,
    FEATURES_SCHEMA,
    GRID_FEATURE_COLUMNS,
    GRID_FEATURES_SCHEMA,
    TARGETS_SCHEMA,
    build_grid_features,
    build_grid_targets,
    build_option_features,
    build_targets,
    surface_summary,
    svi_iv,
    underlying_features,
)
from b3quant_models.testing import toy_market


@pytest.fixture(scope="module")
def market() -> dict[str, pd.DataFrame]:
    return toy_market(45, 2, seed=3)


def _features(m: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return build_option_features(m["option_iv"], m["iv_surface"], m["underlying_quotes"])


def _perturb_after(m: dict[str, pd.DataFrame], cutoff: pd.Timestamp, seed: int = 9) -> dict[str, pd.DataFrame]:
    """Change every number dated after ``cutoff``, drop some future rows and add a new future series."""
    rng = np.random.default_rng(seed)
    out = {k: v.copy() for k, v in m.items()}
    o = out["option_iv"]
    fut = o["trade_date"] > cutoff
    o.loc[fut, "iv"] = o.loc[fut, "iv"] * rng.uniform(0.5, 1.5, fut.sum())
    o.loc[fut, ["k", "delta", "volume"]] = rng.normal(size=(fut.sum(), 3))
    extra = o.loc[fut].head(5).assign(ticker=lambda d: d["ticker"] + "X")
    out["option_iv"] = pd.concat([o.loc[~fut | (rng.random(len(o)) > 0.2)], extra], ignore_index=True)
    s = out["iv_surface"]
    fs = s["trade_date"] > cutoff
    s.loc[fs, "a"] *= 1.7
    s.loc[fs, "rho"] = -s.loc[fs, "rho"]
    q = out["underlying_quotes"]
    fq = q["trade_date"] > cutoff
    q.loc[fq, ["close", "high", "low"]] *= rng.uniform(0.7, 1.3, (fq.sum(), 1))
    q.loc[fq, "volume"] *= 5
    g = out["surface_grid"]
    fg = g["trade_date"] > cutoff
    g.loc[fg, "iv"] *= rng.uniform(0.5, 1.5, fg.sum())
    return out


def test_option_features_schema_and_columns(market):
    f = _features(market)
    FEATURES_SCHEMA.validate(f)
    assert set(FEATURE_COLUMNS) <= set(f.columns)
    assert not f.duplicated(["trade_date", "ticker"]).any()
    valid = market["option_iv"]["iv_reason"].eq("ok").sum()
    assert len(f) == valid  # one row per valid IV, no more, no less
    assert f["iv_from_mid"].eq(1).all()
    # enough history exists by the end for every lookback feature to be populated
    last = f[f["trade_date"] == f["trade_date"].max()]
    assert last[["rv_21d", "pk_vol_21d", "ret_21d", "surf_atm_21_chg_5d", "mkt_atm_21"]].notna().all().all()


def test_option_features_do_not_look_ahead(market):
    days = np.sort(market["option_iv"]["trade_date"].unique())
    cutoff = pd.Timestamp(days[30])
    base = _features(market)
    pert = _features(_perturb_after(market, cutoff))
    a = base[base["trade_date"] <= cutoff].reset_index(drop=True)
    b = pert[pert["trade_date"] <= cutoff].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    # and the perturbation did reach the future rows (the test is not vacuous)
    assert not base[base["trade_date"] > cutoff]["iv"].reset_index(drop=True).equals(
        pert[pert["trade_date"] > cutoff]["iv"].reset_index(drop=True))


def test_grid_features_do_not_look_ahead(market):
    days = np.sort(market["surface_grid"]["trade_date"].unique())
    cutoff = pd.Timestamp(days[25])
    base = build_grid_features(market["surface_grid"], market["underlying_quotes"])
    pert_m = _perturb_after(market, cutoff)
    pert = build_grid_features(pert_m["surface_grid"], pert_m["underlying_quotes"])
    pd.testing.assert_frame_equal(base[base["trade_date"] <= cutoff].reset_index(drop=True),
                                  pert[pert["trade_date"] <= cutoff].reset_index(drop=True))
    GRID_FEATURES_SCHEMA.validate(base)
    assert set(GRID_FEATURE_COLUMNS) <= set(base.columns)


def test_iv_minus_surface_is_the_quote_noise(market):
    """The toy surface is the true one, so iv − surface(k) must equal observed − true IV exactly."""
    f = _features(market)
    truth = market["truth"][["trade_date", "ticker", "true_iv"]]
    m = f.merge(truth, on=["trade_date", "ticker"])
    np.testing.assert_allclose(m["iv_minus_surface"], m["iv"] - m["true_iv"], atol=1e-10)


def _opt_rows(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["trade_date", "ticker", "underlying_isin", "iv", "iv_reason"])
    df["trade_date"] = pd.to_datetime(df["trade_date"])
    df["underlying_ticker"] = df["underlying_isin"].str[:4]
    df["expiry"] = pd.Timestamp("2024-12-20")
    return df


def test_targets_use_the_underlyings_next_session_only():
    d1, d2, d3, d4 = "2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07"
    U, V = "BRUUUUACNOR1", "BRVVVVACNOR1"
    df = _opt_rows([
        (d1, "A", U, 0.30, "ok"), (d2, "A", U, 0.31, "ok"), (d4, "A", U, 0.33, "ok"),
        (d1, "B", U, 0.40, "ok"), (d2, "B", U, np.nan, "no_quote"), (d4, "B", U, 0.42, "ok"),
        (d1, "C", V, 0.50, "ok"), (d3, "C", V, 0.52, "ok"),  # V trades on d3 when U does not
    ])
    t = build_targets(df)
    TARGETS_SCHEMA.validate(t)
    got = {(str(r.trade_date.date()), r.ticker): (str(r.target_date.date()), r.iv_next) for r in t.itertuples()}
    assert got == {
        (d1, "A"): (d2, 0.31),
        (d2, "A"): (d4, 0.33),  # U's next session in the data is d4 (d3 belongs to V only)
        (d1, "C"): (d3, 0.52),
    }  # B on d1 is dropped: its next-session IV is invalid, it is not matched to d4
    np.testing.assert_allclose(t["iv_change"], t["iv_next"] - t["iv"])
    h2 = build_targets(df, horizon=2)  # two of U's sessions ahead: d1 -> d4 (B is valid again on d4)
    assert set(zip(h2["ticker"], h2["target_date"].dt.strftime("%Y-%m-%d"), strict=True)) == {("A", d4), ("B", d4)}


def test_realized_and_parkinson_vol_use_252_and_log_returns():
    n = 30
    close = 100 * np.exp(np.cumsum(np.where(np.arange(n) % 2 == 0, 0.01, -0.01)))
    q = pd.DataFrame({
        "trade_date": pd.bdate_range("2024-01-01", periods=n), "ticker": "XXXX3", "close": close,
        "high": close * np.exp(0.01), "low": close * np.exp(-0.01), "volume": np.r_[np.ones(n - 1), 3.0],
    })
    u = underlying_features(q, lookbacks=(5, 21))
    assert u["rv_5d"].iloc[:5].isna().all()  # first return needs a previous close; 5 returns need 6 closes
    np.testing.assert_allclose(u["rv_5d"].iloc[5:], 0.01 * np.sqrt(252), rtol=1e-12)
    np.testing.assert_allclose(u["pk_vol_5d"].iloc[4:], np.sqrt(252 * 0.02**2 / (4 * np.log(2))), rtol=1e-12)
    np.testing.assert_allclose(u["ret_1d"].iloc[1:], np.log(close[1:] / close[:-1]), rtol=1e-12)
    assert u["volume_ratio_21d"].iloc[-1] == pytest.approx(3.0 / ((20 + 3) / 21))


def test_surface_summary_matches_finite_differences():
    p = {"a": 0.01, "b": 0.05, "rho": -0.4, "m": 0.02, "sigma": 0.2}
    rows = []
    for bd in (15, 40, 80):
        rows.append({"trade_date": pd.Timestamp("2024-03-04"), "underlying_ticker": "PETR4", "expiry":
                     pd.Timestamp("2024-03-04") + pd.Timedelta(days=int(bd * 1.4)), "t": bd / 252,
                     "status": "ok", "rmse_vol_pts": 0.3, **p})
    s = surface_summary(pd.DataFrame(rows)).iloc[0]
    t1, h = 15 / 252, 1e-4
    iv = lambda k, t=t1: float(svi_iv(k, t, **p))  # noqa: E731
    assert s["surf_atm_1"] == pytest.approx(iv(0.0), rel=1e-12)
    assert s["surf_skew_1"] == pytest.approx((iv(h) - iv(-h)) / (2 * h), rel=1e-6)
    assert s["surf_curv_1"] == pytest.approx((iv(h) - 2 * iv(0.0) + iv(-h)) / h**2, rel=1e-4)
    assert s["surf_atm_2"] == pytest.approx(iv(0.0, 40 / 252), rel=1e-12)
    # 21 bd lies between the 15 and 40 bd slices: total variance is interpolated linearly in t
    w = np.interp(21 / 252, [15 / 252, 40 / 252], [iv(0.0) ** 2 * 15 / 252, iv(0.0, 40 / 252) ** 2 * 40 / 252])
    assert s["surf_atm_21"] == pytest.approx(np.sqrt(w / (21 / 252)), rel=1e-12)
    assert s["surf_term_63_21"] == pytest.approx(s["surf_atm_63"] - s["surf_atm_21"])


def test_unfitted_slices_are_ignored():
    base = {"trade_date": pd.Timestamp("2024-03-04"), "underlying_ticker": "PETR4", "a": 0.01, "b": 0.05,
            "rho": -0.4, "m": 0.0, "sigma": 0.2}
    s = pd.DataFrame([
        {**base, "expiry": pd.Timestamp("2024-03-15"), "t": 9 / 252, "status": "fit_failed", "a": 5.0},
        {**base, "expiry": pd.Timestamp("2024-04-19"), "t": 33 / 252, "status": "ok"},
    ])
    out = surface_summary(s).iloc[0]
    assert out["surf_atm_1"] == pytest.approx(float(svi_iv(0.0, 33 / 252, 0.01, 0.05, -0.4, 0.0, 0.2)))
    assert np.isnan(out["surf_atm_2"])


def test_series_history_and_calendar(market):
    f = _features(market)
    one = f[f["ticker"] == f["ticker"].value_counts().index[0]].sort_values("trade_date")
    np.testing.assert_allclose(one["iv_chg_prev"].iloc[1:], np.diff(one["iv"].to_numpy()))
    assert np.isnan(one["iv_chg_prev"].iloc[0])
    # 2023-01-20 and 2023-02-17 are monthly expiries (third Friday) in the toy window
    on_expiry = f[f["trade_date"].isin(pd.to_datetime(["2023-01-20", "2023-02-17"]))]
    assert len(on_expiry) and on_expiry["bdays_to_monthly_expiry"].eq(0).all()
    day_before = f[f["trade_date"] == pd.Timestamp("2023-01-19")]
    assert day_before["bdays_to_monthly_expiry"].eq(1).all()


def test_grid_targets_align_points(market):
    g = market["surface_grid"]
    t = build_grid_targets(g)
    assert (t["target_date"] > t["trade_date"]).all()
    row = t.iloc[0]
    nxt = g[(g["trade_date"] == row["target_date"]) & (g["underlying_ticker"] == row["underlying_ticker"])
            & (g["tenor_days"] == row["tenor_days"]) & np.isclose(g["delta"], row["delta"])]
    assert nxt["iv"].iloc[0] == pytest.approx(row["iv_next"])
    n_days = g["trade_date"].nunique()
    assert len(t) == len(g) / n_days * (n_days - 1)  # every point but the last day's has a target


def test_series_history_rolling_mean_equals_per_series_rolling() -> None:
    """The grouped rolling mean (one pass) equals each series' own rolling mean, in any row order."""
    import numpy as np
    import pandas as pd

    from b3quant_models.features.common import series_history

    rng = np.random.default_rng(0)
    days = pd.bdate_range("2025-01-02", periods=12)
    rows = pd.DataFrame(
        [(d, t, e) for t, e in (("A1", "2025-03-21"), ("B1", "2025-03-21"), ("B1", "2025-04-17")) for d in days],
        columns=["trade_date", "ticker", "expiry"],
    )
    rows = rows.sample(frac=0.8, random_state=1)  # gaps and shuffled order
    rows["iv"] = rng.uniform(0.2, 0.6, len(rows))
    rows.index = rng.permutation(np.arange(100, 100 + len(rows)))
    got = series_history(rows, ["ticker", "expiry"])
    for _, s in rows.sort_values("trade_date").groupby(["ticker", "expiry"]):
        want = s["iv"] - s["iv"].rolling(5, min_periods=1).mean()
        np.testing.assert_allclose(got.loc[want.index, "iv_dev_ma5"], want, rtol=0, atol=1e-15)
