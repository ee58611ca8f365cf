"""Numba kernels for the implied-volatility solver (normalised Black space).

Everything here works on the *normalised out-of-the-money call*: with ``x = ln(F/K) <= 0`` and total
volatility ``s = sigma * sqrt(t)``,

    b(x, s) = exp(x/2) * Phi(x/s + s/2) - exp(-x/2) * Phi(x/s - s/2),

which is the undiscounted time value divided by ``sqrt(F K)``. Puts and in-the-money options map onto
it exactly (put-call symmetry), so one well-conditioned problem covers every option: the time value
is never recovered by subtracting two large numbers inside the solver.

The algorithm follows Jäckel ("By Implication", 2006): the inflection point ``s_c = sqrt(2|x|)``
splits the curve into a convex lower branch (solved on ``ln b``) and a concave upper branch (solved
on ``b``); closed-form asymptotic guesses start third-order Householder iterations, and a bracket
that is tightened on every evaluation catches any step that leaves it (bisection fallback).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._reasons import (
    ABOVE_UPPER_BOUND,
    BELOW_INTRINSIC,
    EXPIRED,
    NAN_INPUT,
    NO_CONVERGENCE,
    NON_POSITIVE_INPUT,
    OK,
    VEGA_TOO_SMALL,
)  # reason codes: plain ints (numba cannot see the IntEnum ``IVReason``)

INV_SQRT_2PI = 0.3989422804014327
INV_SQRT2 = 0.7071067811865476
DBL_EPS = 2.220446049250313e-16

MAX_ITER = 60
# A Householder step smaller than this (relative) leaves an error of order (step)^4: far below eps.
STEP_TOL = 1e-10


@njit(cache=True, fastmath=False)
def norm_cdf(z: float) -> float:
    """Phi(z) via erfc: keeps full *relative* precision in the lower tail (down to ~1e-308)."""
    return 0.5 * math.erfc(-z * INV_SQRT2)


# Acklam's coefficients, highest degree first (central region a/b, tails c/d).
_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
    1.0,
)
_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00, 1.0)


@njit(cache=True, fastmath=False)
def _horner(coeffs: tuple[float, ...], z: float) -> float:
    acc = 0.0
    for c in coeffs:
        acc = acc * z + c
    return acc


@njit(cache=True, fastmath=False)
def inv_norm_cdf(p: float) -> float:
    """Acklam's rational approximation of Phi^-1 (rel. error ~1e-9): only used for initial guesses."""
    if p <= 0.0:
        return -np.inf
    if p >= 1.0:
        return np.inf
    if p < 0.02425:
        z = math.sqrt(-2.0 * math.log(p))
        return _horner(_C, z) / _horner(_D, z)
    if p > 0.97575:
        z = math.sqrt(-2.0 * math.log1p(-p))
        return -_horner(_C, z) / _horner(_D, z)
    z = p - 0.5
    return z * _horner(_A, z * z) / _horner(_B, z * z)


@njit(cache=True, fastmath=False)
def otm_call(x: float, s: float) -> float:
    """Normalised OTM call b(x, s) for x <= 0, s > 0 (clamped at 0 against rounding)."""
    h = x / s
    t = 0.5 * s
    b = math.exp(0.5 * x) * norm_cdf(h + t) - math.exp(-0.5 * x) * norm_cdf(h - t)
    return b if b > 0.0 else 0.0


@njit(cache=True, fastmath=False)
def otm_call_complement(x: float, s: float) -> float:
    """b_max - b(x, s) = exp(x/2) Phi(-d1) + exp(-x/2) Phi(d2): a sum, so no cancellation near b_max."""
    h = x / s
    t = 0.5 * s
    return math.exp(0.5 * x) * norm_cdf(-(h + t)) + math.exp(-0.5 * x) * norm_cdf(h - t)


@njit(cache=True, fastmath=False)
def otm_vega(x: float, s: float) -> float:
    """db/ds = exp(x/2) phi(d1) = phi(x/s) exp(-s^2/8): the normalised vega."""
    h = x / s
    t = 0.5 * s
    return INV_SQRT_2PI * math.exp(-0.5 * (h * h + t * t))


@njit(cache=True, fastmath=False)
def solve_otm(beta: float, x: float) -> tuple[float, int]:
    """Total vol s with b(x, s) == beta for x <= 0 and 0 < beta < exp(x/2); returns (s, reason)."""
    ax = -x
    b_max = math.exp(0.5 * x)
    s_c = math.sqrt(2.0 * ax)
    lower = False
    if s_c > 0.0:
        b_c = otm_call(x, s_c)
        if beta < b_c:
            lower = True
            s = math.sqrt(2.0 * x * x / (ax - 4.0 * math.log(beta / b_c)))
        else:
            c_c = otm_call_complement(x, s_c)
            s = -2.0 * inv_norm_cdf((b_max - beta) / c_c * norm_cdf(-0.5 * s_c))
    else:
        s = -2.0 * inv_norm_cdf(0.5 * (b_max - beta))
    if not (s > 0.0 and s < np.inf):
        s = s_c if s_c > 0.0 else 1.0

    lo = 0.0
    hi = np.inf
    log_beta = math.log(beta) if lower else 0.0
    x2 = x * x
    for _ in range(MAX_ITER):
        b = otm_call(x, s)
        if b > beta:
            hi = s
        elif b < beta:
            lo = s
        else:
            return s, OK
        v = otm_vega(x, s)
        r2 = x2 / (s * s * s) - 0.25 * s  # b''/b'
        r3 = r2 * r2 - 3.0 * x2 / (s * s * s * s) - 0.25  # b'''/b'
        ds = np.nan
        if lower:
            if b > 0.0 and v > 0.0:
                bv = v / b
                g = math.log(b) - log_beta
                nu = -g / bv
                h2 = r2 - bv
                h3 = r3 - 3.0 * r2 * bv + 2.0 * bv * bv
                ds = nu * (1.0 + 0.5 * h2 * nu) / (1.0 + nu * (h2 + h3 * nu / 6.0))
        elif v > 0.0:
            nu = -(b - beta) / v
            ds = nu * (1.0 + 0.5 * r2 * nu) / (1.0 + nu * (r2 + r3 * nu / 6.0))
        s_new = s + ds
        if abs(ds) <= STEP_TOL * s and s_new >= lo and s_new <= hi:  # false for NaN too
            return s_new, OK
        if s_new > lo and s_new < hi:
            s = s_new
        else:  # Householder left the bracket: bisect (geometrically while hi is unbounded/lo is 0)
            if hi == np.inf:
                s_new = 2.0 * s
            elif lo == 0.0:
                s_new = 0.5 * hi
            else:
                s_new = 0.5 * (lo + hi)
            if hi < np.inf and hi - lo <= 4.0 * DBL_EPS * hi:
                return s_new, OK
            s = s_new
    return np.nan, NO_CONVERGENCE


@njit(cache=True, fastmath=False)
def iv_one(
    price: float, spot: float, strike: float, t: float, r: float, q: float, is_call: bool, noise_tol: float
) -> tuple[float, int]:
    """Black-Scholes-Merton implied vol of one option; (nan, reason) when no vol reproduces it."""
    if (
        math.isnan(price)
        or math.isnan(spot)
        or math.isnan(strike)
        or math.isnan(t)
        or math.isnan(r)
        or math.isnan(q)
        or math.isinf(price)
        or math.isinf(spot)
        or math.isinf(strike)
        or math.isinf(t)
        or math.isinf(r)
        or math.isinf(q)
    ):
        return np.nan, NAN_INPUT
    if t <= 0.0:
        return np.nan, EXPIRED
    if price <= 0.0 or spot <= 0.0 or strike <= 0.0:
        return np.nan, NON_POSITIVE_INPUT
    fwd = spot * math.exp((r - q) * t)
    p_u = price * math.exp(r * t)  # undiscounted (forward) premium
    if is_call:
        intrinsic = fwd - strike if fwd > strike else 0.0
        upper = fwd
    else:
        intrinsic = strike - fwd if strike > fwd else 0.0
        upper = strike
    if p_u >= upper:
        return np.nan, ABOVE_UPPER_BOUND
    if p_u <= intrinsic:
        return np.nan, BELOW_INTRINSIC
    sqrt_fk = math.sqrt(fwd * strike)
    x = -abs(math.log(fwd / strike))
    beta = (p_u - intrinsic) / sqrt_fk
    if beta >= math.exp(0.5 * x):
        return np.nan, ABOVE_UPPER_BOUND
    if beta <= 0.0:
        return np.nan, BELOW_INTRINSIC
    s, reason = solve_otm(beta, x)
    if reason != OK:
        return np.nan, reason
    sqrt_t = math.sqrt(t)
    # Vol change that one ulp of the premium's reference scale amounts to: the premium itself for an
    # OTM option, max(F, K) once the forward intrinsic value had to be subtracted (ITM).
    ref = p_u if intrinsic == 0.0 else max(fwd, strike)
    vega_u = sqrt_fk * otm_vega(x, s) * sqrt_t
    if not (DBL_EPS * ref <= noise_tol * vega_u):
        return np.nan, VEGA_TOO_SMALL
    return s / sqrt_t, OK


@njit(cache=True, fastmath=False)
def iv_serial(
    price: np.ndarray,
    spot: np.ndarray,
    strike: np.ndarray,
    t: np.ndarray,
    r: np.ndarray,
    q: np.ndarray,
    is_call: np.ndarray,
    noise_tol: float,
    out: np.ndarray,
    reason: np.ndarray,
) -> None:
    """Loop over 1-D, equally long arrays (small batches: no thread start-up cost)."""
    for i in range(price.shape[0]):
        out[i], reason[i] = iv_one(price[i], spot[i], strike[i], t[i], r[i], q[i], is_call[i], noise_tol)


@njit(cache=True, fastmath=False, parallel=True)
def iv_parallel(
    price: np.ndarray,
    spot: np.ndarray,
    strike: np.ndarray,
    t: np.ndarray,
    r: np.ndarray,
    q: np.ndarray,
    is_call: np.ndarray,
    noise_tol: float,
    out: np.ndarray,
    reason: np.ndarray,
) -> None:
    """Same as ``iv_serial`` spread over all numba threads."""
    for i in prange(price.shape[0]):
        out[i], reason[i] = iv_one(price[i], spot[i], strike[i], t[i], r[i], q[i], is_call[i], noise_tol)
