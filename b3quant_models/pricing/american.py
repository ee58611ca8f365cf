"""Barone-Adesi & Whaley (1987) quadratic approximation for American options.

B3 single-stock puts are American-style while ``bs_price``/``implied_vol`` assume European exercise.
With Brazilian rates (~10-14 %) the early-exercise premium of an ITM put is material, so this gives a
fast, vectorized way to size it (see ``docs/pricing.md``). BAW is an approximation: expect errors
of a few basis points of the strike against a fine binomial tree, largest for long-dated ITM puts.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from .black import ArrayLike, FloatArray, _f, as_is_call, bs_price

_INV_SQRT_2PI = 0.3989422804014327
_MAX_ITER = 100
_TOL = 1e-10


def _critical_price(
    strike: FloatArray, t: FloatArray, r: FloatArray, b: FloatArray, sigma: FloatArray, is_call: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Critical spot S* (early-exercise boundary) and the BAW exponent q1/q2, by vectorized Newton."""
    sig2 = sigma * sigma
    sqrt_t = np.sqrt(t)
    m = 2.0 * r / sig2
    nn = 2.0 * b / sig2
    one_minus_df = -np.expm1(-r * t)
    with np.errstate(divide="ignore", invalid="ignore"):
        m_over_k = np.where(r != 0.0, m / one_minus_df, 2.0 / (sig2 * t))
    sign = np.where(is_call, 1.0, -1.0)
    root = np.sqrt((nn - 1.0) ** 2 + 4.0 * m_over_k)
    qq = 0.5 * (-(nn - 1.0) + sign * root)
    # Haug's seed: the perpetual boundary, pulled towards the strike for finite maturity.
    q_inf = 0.5 * (-(nn - 1.0) + sign * np.sqrt((nn - 1.0) ** 2 + 4.0 * m))
    s_inf = strike / (1.0 - 1.0 / q_inf)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        h = np.where(
            is_call,
            -(b * t + 2.0 * sigma * sqrt_t) * strike / (s_inf - strike),
            (b * t - 2.0 * sigma * sqrt_t) * strike / (strike - s_inf),
        )
        s_star = np.where(
            is_call, strike + (s_inf - strike) * (1.0 - np.exp(h)), s_inf + (strike - s_inf) * np.exp(h)
        )
    carry = np.exp((b - r) * t)
    active = np.isfinite(s_star)
    for _ in range(_MAX_ITER):
        if not active.any():
            break
        s = s_star
        d1 = (np.log(s / strike) + (b + 0.5 * sig2) * t) / (sigma * sqrt_t)
        euro = bs_price(s, strike, t, r, sigma, is_call, r - b)
        nd = ndtr(sign * d1)
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)
        # Exercise condition sign*(S - K) = euro + sign*(1 - carry*N(sign*d1)) * S / q, Newton in S.
        rhs = euro + sign * (1.0 - carry * nd) * s / qq
        slope = (
            sign * carry * nd * (1.0 - 1.0 / qq) + sign * (1.0 - sign * carry * pdf / (sigma * sqrt_t)) / qq
        )
        new = (sign * strike + rhs - slope * s) / (sign - slope)
        resid = np.abs(sign * (s - strike) - rhs) / strike
        active = active & (resid > _TOL) & np.isfinite(new) & (new > 0.0)
        s_star = np.where(active, new, s_star)
    return s_star, qq


def baw_american_price(
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = 0.0,
) -> FloatArray:
    """American premium by Barone-Adesi-Whaley; falls back to the European price where early exercise
    is never optimal (calls with q <= 0, puts with r <= 0) and to intrinsic beyond the boundary."""
    arrays = np.broadcast_arrays(*(_f(a) for a in (spot, strike, t, r, sigma, q)), as_is_call(is_call))
    shape = arrays[0].shape
    spot, strike, t, r, sigma, q, call = (np.ravel(a) for a in arrays)
    euro = bs_price(spot, strike, t, r, sigma, call, q)
    b = r - q
    early = np.where(call, q > 0.0, r > 0.0) & (t > 0.0) & (sigma > 0.0)
    if early.any():
        k_, t_, r_, b_, v_, c_, s_ = (a[early] for a in (strike, t, r, b, sigma, call, spot))
        s_star, qq = _critical_price(k_, t_, r_, b_, v_, c_)
        sign = np.where(c_, 1.0, -1.0)
        d1 = (np.log(s_star / k_) + (b_ + 0.5 * v_ * v_) * t_) / (v_ * np.sqrt(t_))
        a_coef = sign * (s_star / qq) * (1.0 - np.exp((b_ - r_) * t_) * ndtr(sign * d1))
        exercise = sign * (s_ - s_star) >= 0.0
        amer = np.where(exercise, sign * (s_ - k_), euro[early] + a_coef * (s_ / s_star) ** qq)
        euro[early] = np.maximum(amer, euro[early])
    return euro.reshape(shape)
