"""Barone-Adesi-Whaley American prices against a fine CRR binomial tree and basic bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from b3quant_models.pricing import bs_price
from b3quant_models.pricing.american import baw_american_price

R_B3 = math.log(1.1413)


def _crr_american(
    spot: float, strike: float, t: float, r: float, sigma: float, call: bool, q: float
) -> float:
    """Cox-Ross-Rubinstein tree with early exercise (2000 steps: ~1e-3 accurate reference)."""
    n = 2000
    dt = t / n
    u = math.exp(sigma * math.sqrt(dt))
    p = (math.exp((r - q) * dt) - 1 / u) / (u - 1 / u)
    disc = math.exp(-r * dt)
    sign = 1.0 if call else -1.0
    value = np.maximum(sign * (spot * u ** (n - 2.0 * np.arange(n + 1)) - strike), 0.0)
    for i in range(n - 1, -1, -1):
        st = spot * u ** (i - 2.0 * np.arange(i + 1))
        value = np.maximum(disc * (p * value[:-1] + (1 - p) * value[1:]), sign * (st - strike))
    return float(value[0])


@pytest.mark.parametrize(
    ("spot", "strike", "t", "sigma", "call", "q"),
    [
        (9.0, 9.5, 10 / 252, 0.40, False, 0.0),  # PETR4-like ITM put
        (100.0, 100.0, 0.25, 0.30, False, 0.0),
        (100.0, 120.0, 1.0, 0.30, False, 0.0),  # deep ITM long put: large early-exercise premium
        (100.0, 80.0, 1.0, 0.30, True, 0.08),  # call on a dividend payer
    ],
)
def test_baw_close_to_binomial_tree(
    spot: float, strike: float, t: float, sigma: float, call: bool, q: float
) -> None:
    baw = float(baw_american_price(spot, strike, t, R_B3, sigma, call, q))
    tree = _crr_american(spot, strike, t, R_B3, sigma, call, q)
    assert baw == pytest.approx(tree, abs=2e-3 * strike)  # BAW is an approximation (~bp of strike)


def test_baw_bounds_and_european_limits() -> None:
    rng = np.random.default_rng(2)
    n = 2000
    spot = rng.uniform(5, 100, n)
    strike = spot * np.exp(rng.normal(0, 0.3, n))
    t = rng.uniform(1 / 252, 2, n)
    sigma = rng.uniform(0.1, 1.0, n)
    call = rng.random(n) < 0.5
    amer = baw_american_price(spot, strike, t, R_B3, sigma, call)
    euro = bs_price(spot, strike, t, R_B3, sigma, call)
    assert (amer >= euro - 1e-12).all()
    assert (amer >= np.where(call, spot - strike, strike - spot) - 1e-12).all()
    # Without dividends an American call is never exercised early: equal to the European price.
    np.testing.assert_array_equal(amer[call], euro[call])
    # With r > 0 ITM puts carry a strictly positive early-exercise premium.
    itm_put = (~call) & (strike > spot * 1.05)
    assert (amer[itm_put] > euro[itm_put]).all()
    assert amer.shape == (n,) and baw_american_price(100.0, 100.0, 0.5, 0.1, 0.3, False).shape == ()
