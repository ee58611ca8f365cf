"""Implied volatility: round-trip accuracy, the "no wrong finite number" property, reason codes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from b3quant_models.pricing import IVReason, bs_price, forward, greeks, implied_vol, implied_vol_with_reason
from b3quant_models.pricing.implied import DEFAULT_NOISE_TOL

R_B3 = math.log(1.1413)
EPS = np.finfo(float).eps
ACCURACY = 1e-8


def _grid() -> dict[str, np.ndarray]:
    """vol 1 %-300 %, t 1 day-3 y, ln(K/F) from 0 to +-8 sd (plus +-12, +-20 sd), calls and puts."""
    vols = np.geomspace(0.01, 3.0, 25)
    ts = np.geomspace(1 / 252, 3.0, 20)
    zs = np.r_[np.linspace(-8, 8, 33), -20, -12, 12, 20]  # ln(K/F) in units of sigma sqrt(t)
    v, t, z, c = (a.ravel() for a in np.meshgrid(vols, ts, zs, [True, False], indexing="ij"))
    spot = 100.0
    strike = forward(spot, t, R_B3) * np.exp(z * v * np.sqrt(t))
    return {"sigma": v, "t": t, "strike": strike, "is_call": c, "spot": np.full_like(v, spot)}


def _vol_noise(g: dict[str, np.ndarray], price: np.ndarray) -> np.ndarray:
    """Vol change equivalent to one ulp of the premium's reference scale (the documented criterion):
    eps * ref / vega_undiscounted, ref = forward premium (OTM) or max(F, K) (ITM)."""
    fwd = forward(g["spot"], g["t"], R_B3)
    disc = np.exp(-R_B3 * g["t"])
    vega_u = greeks(g["spot"], g["strike"], g["t"], R_B3, g["sigma"], g["is_call"])["vega"] / disc
    itm = np.where(g["is_call"], fwd > g["strike"], g["strike"] > fwd)
    ref = np.where(itm, np.maximum(fwd, g["strike"]), price / disc)
    return EPS * ref / vega_u


def test_round_trip_accuracy_and_coverage_over_grid() -> None:
    g = _grid()
    price = bs_price(g["spot"], g["strike"], g["t"], R_B3, g["sigma"], g["is_call"])
    iv, reason = implied_vol_with_reason(price, g["spot"], g["strike"], g["t"], R_B3, g["is_call"])
    finite = np.isfinite(iv)
    # Never a wrong finite number: every returned vol is within 1e-8 of the generating one.
    assert np.max(np.abs(iv[finite] - g["sigma"][finite])) <= ACCURACY
    # Coverage: wherever a 1e-8 vol move shifts the premium by >= 20 ulps of its reference scale
    # (noise <= tol / 2), the solver must return a vol; the rest is NaN with an explicit reason.
    well_posed = _vol_noise(g, price) <= 0.5 * DEFAULT_NOISE_TOL
    assert finite[well_posed].all()
    assert well_posed.mean() > 0.7  # the grid is mostly well posed, so this is not vacuous
    assert ((reason == IVReason.OK) == finite).all()
    assert set(np.unique(reason[~finite])) <= {
        IVReason.BELOW_INTRINSIC,
        IVReason.ABOVE_UPPER_BOUND,
        IVReason.VEGA_TOO_SMALL,
    }


def test_never_wrong_under_price_perturbations_of_a_few_ulps() -> None:
    g = _grid()
    price = bs_price(g["spot"], g["strike"], g["t"], R_B3, g["sigma"], g["is_call"])
    for k in (-4, -1, 1, 4):
        bumped = price * (1.0 + k * EPS)
        iv = implied_vol(bumped, g["spot"], g["strike"], g["t"], R_B3, g["is_call"])
        finite = np.isfinite(iv)
        assert np.max(np.abs(iv[finite] - g["sigma"][finite])) <= ACCURACY


def test_finite_result_reprices_on_random_inputs() -> None:
    # Arbitrary (partly infeasible) premiums: whenever a vol comes back, it must reproduce the premium.
    rng = np.random.default_rng(11)
    n = 20_000
    spot = rng.uniform(1, 100, n)
    strike = spot * np.exp(rng.normal(0, 0.7, n))
    t = rng.uniform(0.5 / 252, 3, n)
    r = rng.uniform(-0.01, 0.25, n)
    q = rng.uniform(0, 0.1, n)
    call = rng.random(n) < 0.5
    price = rng.uniform(0, 1.2, n) * np.where(call, spot, strike)
    iv, reason = implied_vol_with_reason(price, spot, strike, t, r, call, q)
    ok = np.isfinite(iv)
    assert 0.2 < ok.mean() < 1.0  # mix of solvable and infeasible rows
    repriced = bs_price(spot[ok], strike[ok], t[ok], r[ok], iv[ok], call[ok], q[ok])
    np.testing.assert_allclose(repriced, price[ok], rtol=1e-12, atol=1e-12 * spot.max())
    assert ((reason == IVReason.OK) == ok).all()


def test_agrees_with_vollib_lets_be_rational() -> None:
    bsm_iv = pytest.importorskip("vollib.black_scholes_merton.implied_volatility").implied_volatility
    rng = np.random.default_rng(5)
    n = 400
    spot = rng.uniform(5, 100, n)
    t = rng.integers(1, 500, n) / 252
    sigma = rng.uniform(0.05, 1.5, n)
    q = rng.uniform(0, 0.05, n)
    strike = forward(spot, t, R_B3, q) * np.exp(rng.uniform(-3, 3, n) * sigma * np.sqrt(t))
    call = rng.random(n) < 0.5
    price = bs_price(spot, strike, t, R_B3, sigma, call, q)
    ours = implied_vol(price, spot, strike, t, R_B3, call, q)
    ref = np.array(
        [bsm_iv(price[i], spot[i], strike[i], t[i], R_B3, q[i], "c" if call[i] else "p") for i in range(n)]
    )
    # Where vollib itself recovered the generating vol, we must match it (and the truth) to 1e-8.
    accurate = np.abs(ref - sigma) <= ACCURACY
    assert accurate.mean() > 0.95
    assert np.isfinite(ours[accurate]).all()
    assert np.max(np.abs(ours[accurate] - ref[accurate])) <= ACCURACY
    assert np.max(np.abs(ours[accurate] - sigma[accurate])) <= ACCURACY


def test_b3_petr4_like_case() -> None:
    # PETR4-like: spot 9.00, strike 9.50, 10 business days, DI 14.13 % a.a., premium 0.20.
    t, r = 10 / 252, R_B3
    iv = float(implied_vol(0.20, 9.0, 9.5, t, r, True))
    assert 0.4 < iv < 0.7
    assert float(bs_price(9.0, 9.5, t, r, iv, True)) == pytest.approx(0.20, abs=1e-13)
    # The matching ITM put (same vol by parity) must be solved to the same vol.
    put = float(bs_price(9.0, 9.5, t, r, iv, False))
    assert float(implied_vol(put, 9.0, 9.5, t, r, False)) == pytest.approx(iv, abs=ACCURACY)


def test_put_intrinsic_uses_discounted_forward() -> None:
    # K e^{-rt} - S = 0.78 < premium 1.0 < K - S = 2: a valid European put premium, must be solved.
    spot, strike, t, r = 8.0, 10.0, 1.0, 0.13
    assert strike * math.exp(-r * t) - spot < 1.0 < strike - spot
    iv, reason = implied_vol_with_reason(1.0, spot, strike, t, r, False)
    assert reason == IVReason.OK
    assert float(bs_price(spot, strike, t, r, iv, False)) == pytest.approx(1.0, abs=1e-13)
    _, reason = implied_vol_with_reason(0.7, spot, strike, t, r, False)
    assert reason == IVReason.BELOW_INTRINSIC


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((np.nan, 100, 100, 0.5, 0.1, True), IVReason.NAN_INPUT),
        ((5.0, np.inf, 100, 0.5, 0.1, True), IVReason.NAN_INPUT),
        ((5.0, 100, 100, 0.5, np.nan, False), IVReason.NAN_INPUT),
        ((0.0, 100, 100, 0.5, 0.1, True), IVReason.NON_POSITIVE_INPUT),
        ((5.0, -100, 100, 0.5, 0.1, True), IVReason.NON_POSITIVE_INPUT),
        ((5.0, 100, 0.0, 0.5, 0.1, False), IVReason.NON_POSITIVE_INPUT),
        ((5.0, 100, 100, 0.0, 0.1, True), IVReason.EXPIRED),
        ((5.0, 100, 100, -0.1, 0.1, True), IVReason.EXPIRED),
        # call below S - K e^{-rt} (= 14.39)
        ((13.5, 100, 90, 0.5, 0.1, True), IVReason.BELOW_INTRINSIC),
        ((100.0, 100, 90, 0.5, 0.1, True), IVReason.ABOVE_UPPER_BOUND),  # call >= S
        ((95.2, 50, 100, 0.5, 0.1, False), IVReason.ABOVE_UPPER_BOUND),  # put >= K e^{-rt} (= 95.12)
    ],
)
def test_reason_codes(args: tuple, expected: IVReason) -> None:
    iv, reason = implied_vol_with_reason(*args)
    assert np.isnan(iv)
    assert reason == expected
    assert reason.dtype == np.int8


def test_vega_too_small_and_noise_tolerance_knob() -> None:
    # Deep ITM call 5 business days out: premium = intrinsic + ~1e-7; one ulp of the 100-BRL forward
    # moves the vol by ~1e-8, so the default refuses it and a looser tolerance accepts it.
    spot, strike, t, sigma = 100.0, 80.0, 5 / 252, 0.3
    price = bs_price(spot, strike, t, R_B3, sigma, True)
    iv, reason = implied_vol_with_reason(price, spot, strike, t, R_B3, True)
    assert np.isnan(iv) and reason == IVReason.VEGA_TOO_SMALL
    loose = float(implied_vol(price, spot, strike, t, R_B3, True, noise_tol=1e-5))
    assert loose == pytest.approx(sigma, abs=1e-4)


def test_reason_labels_and_descriptions() -> None:
    assert IVReason.BELOW_INTRINSIC.describe().startswith("premium at or below")
    labels = IVReason.labels(np.array([0, 4, 6], dtype=np.int8))
    assert labels.tolist() == ["ok", "below_intrinsic", "vega_too_small"]
    assert all(m.describe() for m in IVReason)
    assert [int(m) for m in IVReason] == list(range(len(IVReason)))


def test_scalar_and_broadcasting() -> None:
    iv = implied_vol(5.0, 100.0, 100.0, 0.5, 0.1, True)
    assert isinstance(iv, np.ndarray) and iv.shape == ()
    strikes = np.array([90.0, 100.0, 110.0])
    vols = np.array([[0.2], [0.35]])  # (2, 1) x (3,) -> (2, 3)
    prices = bs_price(100.0, strikes, 0.5, 0.1, vols, "call")
    got, reason = implied_vol_with_reason(prices, 100.0, strikes, 0.5, 0.1, "call")
    assert got.shape == reason.shape == (2, 3)
    np.testing.assert_allclose(got, np.broadcast_to(vols, (2, 3)), atol=ACCURACY)
    # Large inputs take the multi-threaded path and must agree with the single-row path.
    big = np.tile(prices.ravel(), 3000)
    got_big = implied_vol(big, 100.0, np.tile(np.broadcast_to(strikes, (2, 3)).ravel(), 3000), 0.5, 0.1, True)
    np.testing.assert_array_equal(got_big, np.tile(got.ravel(), 3000))


def test_initial_guess_inverse_normal_is_accurate() -> None:
    # The solver's starting points rely on this approximation; a typo in a coefficient would only
    # show up as slower convergence, so check it directly against scipy.
    from scipy.special import ndtri

    from b3quant_models.pricing._kernels import inv_norm_cdf

    p = np.r_[1e-300, 1e-12, np.linspace(1e-4, 1 - 1e-4, 999), 0.02425, 0.97575, 1 - 1e-12]
    ours = np.array([inv_norm_cdf(x) for x in p])
    np.testing.assert_allclose(ours, ndtri(p), rtol=2e-9, atol=1e-12)
