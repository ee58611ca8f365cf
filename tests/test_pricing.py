"""Black-Scholes-Merton prices and Greeks: parity, limits, finite differences, broadcasting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from b3quant_models.pricing import bs_price, forward, greeks, log_moneyness

R_B3 = math.log(1.1413)


def test_known_value_hull() -> None:
    # Hull, "Options, Futures and Other Derivatives", example 15.6: S=42, K=40, r=10 %, sigma=20 %, 6m.
    assert float(bs_price(42.0, 40.0, 0.5, 0.10, 0.20, True)) == pytest.approx(4.7594, abs=5e-5)
    assert float(bs_price(42.0, 40.0, 0.5, 0.10, 0.20, False)) == pytest.approx(0.8086, abs=5e-5)


def test_put_call_parity_over_grid() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    spot = rng.uniform(1, 200, n)
    strike = spot * np.exp(rng.normal(0, 0.5, n))
    t = rng.uniform(1 / 252, 3, n)
    r = rng.uniform(-0.02, 0.20, n)
    q = rng.uniform(0.0, 0.08, n)
    sigma = rng.uniform(0.01, 3.0, n)
    c = bs_price(spot, strike, t, r, sigma, True, q)
    p = bs_price(spot, strike, t, r, sigma, False, q)
    np.testing.assert_allclose(
        c - p, spot * np.exp(-q * t) - strike * np.exp(-r * t), rtol=0, atol=1e-12 * (spot + strike).max()
    )


def test_prices_respect_no_arbitrage_bounds() -> None:
    rng = np.random.default_rng(4)
    n = 5000
    spot, t, sigma = rng.uniform(1, 100, n), rng.uniform(1 / 252, 3, n), rng.uniform(0.01, 3.0, n)
    strike = spot * np.exp(rng.normal(0, 1.0, n))
    call = rng.random(n) < 0.5
    price = bs_price(spot, strike, t, R_B3, sigma, call)
    fwd_intrinsic = np.where(call, spot - strike * np.exp(-R_B3 * t), strike * np.exp(-R_B3 * t) - spot)
    upper = np.where(call, spot, strike * np.exp(-R_B3 * t))
    slack = 4 * np.finfo(float).eps * np.maximum(spot, strike)  # the two sides round differently
    assert (price >= np.maximum(fwd_intrinsic, 0.0) - slack).all()
    assert (price <= upper + slack).all()


def test_limits_zero_vol_zero_time_and_invalid() -> None:
    # sigma = 0: discounted forward intrinsic; t = 0: spot intrinsic; negative t/sigma: NaN.
    assert float(bs_price(100, 90, 1.0, 0.1, 0.0, True)) == pytest.approx(100 - 90 * math.exp(-0.1))
    assert float(bs_price(100, 120, 1.0, 0.1, 0.0, False)) == pytest.approx(120 * math.exp(-0.1) - 100)
    assert float(bs_price(100, 90, 0.0, 0.1, 0.3, True)) == pytest.approx(10.0)
    assert float(bs_price(100, 90, 0.0, 0.1, 0.3, False)) == 0.0
    assert np.isnan(bs_price(100, 90, -0.1, 0.1, 0.3, True))
    assert np.isnan(bs_price(100, 90, 0.5, 0.1, -0.3, True))


@pytest.mark.parametrize("is_call", [True, False])
@pytest.mark.parametrize(
    ("spot", "strike", "t", "r", "sigma", "q"),
    [(100, 100, 0.5, 0.05, 0.2, 0.0), (9.0, 9.5, 10 / 252, R_B3, 0.45, 0.0), (50, 70, 2.0, 0.12, 0.6, 0.03)],
)
def test_greeks_match_finite_differences(
    spot: float, strike: float, t: float, r: float, sigma: float, q: float, is_call: bool
) -> None:
    g = greeks(spot, strike, t, r, sigma, is_call, q)

    def price(**kw: float) -> float:
        args = {"spot": spot, "strike": strike, "t": t, "r": r, "sigma": sigma, "q": q} | kw
        return float(
            bs_price(args["spot"], args["strike"], args["t"], args["r"], args["sigma"], is_call, args["q"])
        )

    hs, hv, ht, hr = 1e-4 * spot, 1e-5, 1e-6, 1e-6
    fd = {
        "delta": (price(spot=spot + hs) - price(spot=spot - hs)) / (2 * hs),
        "gamma": (price(spot=spot + hs) - 2 * price() + price(spot=spot - hs)) / hs**2,
        "vega": (price(sigma=sigma + hv) - price(sigma=sigma - hv)) / (2 * hv),
        "theta": -(price(t=t + ht) - price(t=t - ht)) / (2 * ht),  # per year of calendar time elapsing
        "rho": (price(r=r + hr) - price(r=r - hr)) / (2 * hr),
    }
    for name, value in fd.items():
        assert float(g[name]) == pytest.approx(value, rel=1e-5, abs=1e-7), name


def test_greeks_put_call_relations() -> None:
    args = (100.0, 105.0, 0.75, 0.1, 0.3)
    c, p = greeks(*args, True, 0.02), greeks(*args, False, 0.02)
    assert float(c["delta"] - p["delta"]) == pytest.approx(math.exp(-0.02 * 0.75))
    assert float(c["gamma"]) == pytest.approx(float(p["gamma"]))
    assert float(c["vega"]) == pytest.approx(float(p["vega"]))
    assert float(c["rho"] - p["rho"]) == pytest.approx(105.0 * 0.75 * math.exp(-0.1 * 0.75))


def test_greeks_nan_where_undefined() -> None:
    g = greeks(100.0, 100.0, np.array([0.5, 0.0]), 0.1, np.array([0.0, 0.2]), True)
    for v in g.values():
        assert np.isnan(v).all()


def test_broadcasting_and_scalars() -> None:
    spot = np.array([[90.0], [100.0], [110.0]])  # (3, 1)
    strike = np.array([95.0, 100.0, 105.0, 110.0])  # (4,)
    price = bs_price(spot, strike, 0.25, 0.1, 0.3, ["C", "put", "call", "P"])
    assert price.shape == (3, 4)
    assert price[1, 0] == pytest.approx(float(bs_price(100.0, 95.0, 0.25, 0.1, 0.3, True)))
    assert price[2, 3] == pytest.approx(float(bs_price(110.0, 110.0, 0.25, 0.1, 0.3, False)))
    scalar = bs_price(100.0, 100.0, 0.25, 0.1, 0.3, True)
    assert isinstance(scalar, np.ndarray) and scalar.shape == ()
    assert greeks(spot, strike, 0.25, 0.1, 0.3, True)["delta"].shape == (3, 4)
    with pytest.raises(ValueError, match="is_call"):
        bs_price(100.0, 100.0, 0.25, 0.1, 0.3, "straddle")


def test_forward_and_log_moneyness() -> None:
    fwd = forward(9.0, 10 / 252, R_B3)
    assert float(fwd) == pytest.approx(9.0 * 1.1413 ** (10 / 252))
    assert float(forward(100.0, 1.0, 0.1, 0.1)) == pytest.approx(100.0)
    assert float(log_moneyness(fwd, fwd)) == 0.0
    assert float(log_moneyness(110.0, 100.0)) == pytest.approx(math.log(1.1))
