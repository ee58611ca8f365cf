"""Vectorized Black-Scholes-Merton prices and Greeks (European exercise, continuous r and q).

All functions broadcast their arguments like numpy ufuncs and return float64 arrays (0-d for scalar
inputs). Conventions, shared with ``implied_vol``: ``t`` in years (B3: business days / 252), ``r``
and ``q`` continuously compounded per year (B3 DI rates are annual-252 effective: ``r = ln(1 + DI)``),
``sigma`` per 1.00 (0.25 = 25 %). See ``docs/pricing.md``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]

_INV_SQRT_2PI = 0.3989422804014327


def ndtr(x: ArrayLike) -> FloatArray:
    """Standard normal CDF (scipy's, imported on first use: scipy.special is a slow import)."""
    from scipy.special import ndtr as _ndtr

    return _ndtr(x)


def as_is_call(is_call: ArrayLike) -> npt.NDArray[np.bool_]:
    """Call/put flags as a bool array; accepts bools/0-1 or strings starting with 'c'/'p' (any case)."""
    flags = np.asarray(is_call)
    if flags.dtype.kind in "USO":
        first = np.char.lower(np.char.strip(flags.astype(str))).astype("U1")
        if not np.isin(first, ["c", "p"]).all():
            raise ValueError("is_call strings must start with 'c' (call) or 'p' (put)")
        return first == "c"
    return flags.astype(bool)


def _f(a: ArrayLike) -> FloatArray:
    return np.asarray(a, dtype=np.float64)


def forward(spot: ArrayLike, t: ArrayLike, r: ArrayLike, q: ArrayLike = 0.0) -> FloatArray:
    """Forward price ``S exp((r - q) t)``: the natural variable of the Black formula."""
    return _f(spot) * np.exp((_f(r) - _f(q)) * _f(t))


def log_moneyness(strike: ArrayLike, fwd: ArrayLike) -> FloatArray:
    """``ln(K / F)``: 0 at-the-money-forward, > 0 for OTM calls / ITM puts."""
    return np.log(_f(strike) / _f(fwd))


def _normalized_time_value(x_otm: FloatArray, s: FloatArray) -> FloatArray:
    """Black time value / sqrt(F K) for ``x_otm = -|ln(F/K)|`` and total vol ``s`` (0 where s == 0).

    Pricing the out-of-the-money side and adding the intrinsic value keeps ITM prices >= intrinsic
    in floating point, so round trips through ``implied_vol`` never fall below the no-arbitrage bound.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        h = x_otm / s
        half = 0.5 * s
        b = np.exp(0.5 * x_otm) * ndtr(h + half) - np.exp(-0.5 * x_otm) * ndtr(h - half)
    return np.where(s > 0.0, np.maximum(b, 0.0), np.where(s == 0.0, 0.0, np.nan))


def bs_price(
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = 0.0,
) -> FloatArray:
    """European BSM premium (discounted). ``t == 0`` or ``sigma == 0`` give the (discounted) intrinsic
    value on the forward; ``t < 0`` or ``sigma < 0`` give NaN."""
    spot, strike, t, r, sigma, q = (_f(a) for a in (spot, strike, t, r, sigma, q))
    call = as_is_call(is_call)
    with np.errstate(invalid="ignore"):
        fwd = forward(spot, t, r, q)
        disc = np.exp(-r * t)
        intrinsic = np.where(call, np.maximum(fwd - strike, 0.0), np.maximum(strike - fwd, 0.0))
        x_otm = -np.abs(np.log(fwd / strike))
        s = np.where(t >= 0.0, sigma * np.sqrt(np.maximum(t, 0.0)), np.nan)
        tv = np.sqrt(fwd * strike) * _normalized_time_value(x_otm, s)
        price = disc * (intrinsic + tv)
    return np.where((t < 0.0) | (sigma < 0.0), np.nan, price)


def greeks(
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
    q: ArrayLike = 0.0,
) -> dict[str, FloatArray]:
    """Analytic BSM Greeks (NaN where ``t <= 0`` or ``sigma <= 0``, where they are not defined).

    Units, chosen so that finite differences of ``bs_price`` match without rescaling:
    ``delta`` dV/dS, ``gamma`` d2V/dS2, ``vega`` dV/dsigma per 1.00 of vol (divide by 100 for one vol
    point), ``theta`` -dV/dt per *year* of business time (t = business days / 252; divide by 252 for
    one B3 business day), ``rho`` dV/dr per 1.00 of rate (divide by 100 for 1 %).
    """
    spot, strike, t, r, sigma, q = (_f(a) for a in (spot, strike, t, r, sigma, q))
    call = as_is_call(is_call)
    valid = (t > 0.0) & (sigma > 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sqrt_t = np.sqrt(np.where(valid, t, np.nan))
        s = sigma * sqrt_t
        d1 = (np.log(spot / strike) + (r - q) * t) / s + 0.5 * s
        d2 = d1 - s
        dq = np.exp(-q * t)
        dr = np.exp(-r * t)
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)
        sign = np.where(call, 1.0, -1.0)
        n1 = ndtr(sign * d1)
        n2 = ndtr(sign * d2)
        delta = sign * dq * n1
        gamma = dq * pdf / (spot * s)
        vega = spot * dq * pdf * sqrt_t
        theta = (
            -spot * dq * pdf * sigma / (2.0 * sqrt_t)
            - sign * r * strike * dr * n2
            + sign * q * spot * dq * n1
        )
        rho = sign * strike * t * dr * n2
    out = {"delta": delta, "gamma": gamma, "vega": vega, "theta": theta, "rho": rho}
    return {k: np.where(valid, v, np.nan) for k, v in out.items()}
