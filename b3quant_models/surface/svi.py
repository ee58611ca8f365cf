"""Raw SVI smile: formulas, the Gatheral–Jacquier density function g(k), and slice fitting.

Fitting follows the quasi-explicit method of Zeliade (2009): for fixed (m, σ) the total variance is
linear in three coefficients, so the 5-parameter problem collapses to a smooth 2-D outer search over
(m, σ) with an exact inner solve. The inner coefficients are chosen so every constraint is a box:

    w(k) = A + U·(r + y)/2 + V·(r − y)/2,   y = (k − m)/σ,  r = sqrt(y² + 1)
    U = bσ(1 + ρ) ≥ 0,  V = bσ(1 − ρ) ≥ 0   (⇔ b ≥ 0, |ρ| ≤ 1)
    U, V ≤ β_max·σ                            (wing slopes b(1 ± ρ) ≤ β_max, Lee's bound β_max = 2)

The remaining constraint, minimum variance a + bσ√(1 − ρ²) = A + √(UV) ≥ 0, is non-linear; when the
unconstrained-in-A solution breaks it the inner solve is redone with A ≥ 0, which is sufficient.
The inner box-constrained 3×3 least-squares problem is convex, so enumerating the 27 active sets and
keeping the best feasible candidate gives its exact optimum; it runs in numba because the outer search
calls it several hundred times per slice.

Weights: the fit is on total variance, but each quote's weight is divided by (2·iv·t)², the first-order
conversion of a total-variance error into a volatility error, so the objective is effectively a weighted
least-squares fit in implied-vol units without giving up the linear inner problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from b3quant_models.surface._lm import lm_trial, lm_update, raise_scaling

SVI_PARAMS = ("a", "b", "rho", "m", "sigma")
MAX_WING_SLOPE = 2.0  # Roger Lee's moment bound on the asymptotic slope of total variance
SIGMA_BOUNDS = (2e-3, 3.0)
_SIGMA_LO, _SIGMA_HI = SIGMA_BOUNDS  # plain floats: numba freezes them as constants
RHO_MAX = 1.0 - 1e-6
_OBJ_SCALE = 1e4  # objective in (vol points)² so optimizer tolerances are meaningful
# LM stop on relative decrease per penalty weight: 1e-8 instead of 1e-10 saves a quarter of the refit
# iterations; the repaired fits were as good on the real sessions (docs/surfaces.md, Performance)
_REFIT_FTOL = 1e-8
# fastmath for the hot residual loops, without "nnan"/"ninf": the kernels test for NaN and use ±inf
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


# --------------------------------------------------------------------------------------------- formulas
def svi_total_variance(k, a, b, rho, m, sigma):
    """Raw SVI total implied variance w(k) = a + b(ρ(k−m) + √((k−m)² + σ²)); broadcasts."""
    x = np.asarray(k, dtype=float) - m
    return a + b * (rho * x + np.sqrt(x * x + sigma * sigma))


def svi_derivatives(k, a, b, rho, m, sigma) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(w, w', w'') in k, the ingredients of the butterfly condition."""
    x = np.asarray(k, dtype=float) - m
    r = np.sqrt(x * x + sigma * sigma)
    w = a + b * (rho * x + r)
    w1 = b * (rho + x / r)
    w2 = b * sigma * sigma / r**3
    return w, w1, w2


def svi_g(k, a, b, rho, m, sigma) -> np.ndarray:
    """Gatheral–Jacquier g(k); the slice is free of butterfly arbitrage iff g ≥ 0 (and w > 0).

    g is proportional to the risk-neutral density implied by the smile, so negative values mean
    some butterfly spread has a negative price. Where w ≤ 0 the smile is meaningless; -inf is returned.
    """
    w, w1, w2 = svi_derivatives(k, a, b, rho, m, sigma)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (1.0 - np.asarray(k) * w1 / (2.0 * w)) ** 2 - w1 * w1 / 4.0 * (1.0 / w + 0.25) + w2 / 2.0
    return np.where(w > 0, g, -np.inf)


@numba.njit(cache=True, error_model="numpy")
def slice_arbitrage_margins(a, b, rho, m, sigma, k_grid, floor_w):
    """(min g, min (w − floor_w)) of one raw SVI slice on k_grid, in one pass (−inf where w ≤ 0 or g is NaN;
    the second is +inf for an empty floor_w). What the repair loop checks after every (re)fit."""
    g_min = np.inf
    c_min = np.inf
    s2 = sigma * sigma
    for j in range(k_grid.size):
        kk = k_grid[j]
        x = kk - m
        r = np.sqrt(x * x + s2)
        w = a + b * (rho * x + r)
        if floor_w.size:
            c_min = min(c_min, w - floor_w[j])
        if not w > 0:
            g_min = -np.inf
            continue
        w1 = b * (rho + x / r)
        w2 = b * s2 / (r * r * r)
        u = 1.0 - kk * w1 / (2.0 * w)
        g = u * u - w1 * w1 / 4.0 * (1.0 / w + 0.25) + w2 / 2.0
        g_min = min(g_min, g) if g == g else -np.inf
    return g_min, c_min


@numba.njit(cache=True, error_model="numpy")
def slice_errors(k, iv, t, weight, a, b, rho, m, sigma):
    """(RMSE, weighted RMSE, max abs error) of a slice's fitted IV in vol points; inf if w ≤ 0 at a quote."""
    ws = 0.0
    for i in range(weight.size):
        ws += weight[i]
    se = 0.0
    wse = 0.0
    mx = 0.0
    for i in range(k.size):
        x = k[i] - m
        w = a + b * (rho * x + np.sqrt(x * x + sigma * sigma))
        if not w > 0:
            return np.inf, np.inf, np.inf
        e = (np.sqrt(w / t) - iv[i]) * 100.0
        if not np.isfinite(e):
            return np.inf, np.inf, np.inf
        se += e * e
        wse += weight[i] / ws * e * e
        mx = max(mx, abs(e))
    return np.sqrt(se / k.size), np.sqrt(wse), mx


def svi_iv(k, t, a, b, rho, m, sigma):
    """Implied volatility from raw SVI total variance at maturity t (years); NaN where w ≤ 0."""
    w = svi_total_variance(k, a, b, rho, m, sigma)
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.where(w > 0, w, np.nan) / t)


def svi_wing_slopes(b: float, rho: float) -> tuple[float, float]:
    """Asymptotic (left, right) slopes of total variance in k: b(1 − ρ), b(1 + ρ)."""
    return b * (1.0 - rho), b * (1.0 + rho)


# ------------------------------------------------------------------------------- inner linear problem
@numba.njit(cache=True, error_model="numpy")
def _det3(m00, m01, m02, m10, m11, m12, m20, m21, m22):
    return m00 * (m11 * m22 - m12 * m21) - m01 * (m10 * m22 - m12 * m20) + m02 * (m10 * m21 - m11 * m20)


@numba.njit(cache=True, error_model="numpy")
def _solve_free(h, rhs, free, n_free, out):
    """Solve the n_free×n_free subsystem H_ff x = rhs_f (n_free ≤ 3) by Cramer's rule into out; ok flag."""
    if n_free == 0:
        return True
    i0 = free[0]
    if n_free == 1:
        if not abs(h[i0, i0]) > 0.0:
            return False
        out[0] = rhs[i0] / h[i0, i0]
        return True
    i1 = free[1]
    if n_free == 2:
        m00, m01, m10, m11 = h[i0, i0], h[i0, i1], h[i1, i0], h[i1, i1]
        scale = max(abs(m00), abs(m11))
        det = m00 * m11 - m01 * m10
        if scale <= 0.0 or abs(det) <= 1e-13 * scale * scale:
            return False
        out[0] = (rhs[i0] * m11 - m01 * rhs[i1]) / det
        out[1] = (m00 * rhs[i1] - m10 * rhs[i0]) / det
        return True
    i2 = free[2]
    m00, m01, m02 = h[i0, i0], h[i0, i1], h[i0, i2]
    m10, m11, m12 = h[i1, i0], h[i1, i1], h[i1, i2]
    m20, m21, m22 = h[i2, i0], h[i2, i1], h[i2, i2]
    v0, v1, v2 = rhs[i0], rhs[i1], rhs[i2]
    scale = max(abs(m00), abs(m11), abs(m22))
    det = _det3(m00, m01, m02, m10, m11, m12, m20, m21, m22)
    if scale <= 0.0 or abs(det) <= 1e-13 * scale * scale * scale:
        return False
    out[0] = _det3(v0, m01, m02, v1, m11, m12, v2, m21, m22) / det
    out[1] = _det3(m00, v0, m02, m10, v1, m12, m20, v2, m22) / det
    out[2] = _det3(m00, m01, v0, m10, m11, v1, m20, m21, v2) / det
    return True


@numba.njit(cache=True, error_model="numpy")
def _box_qp3(h, g, c0, lo, hi, best_x):
    """min x'Hx − 2g'x + c0 over lo ≤ x ≤ hi (3 variables) by active-set enumeration; x into best_x.

    The problem is convex, so the best feasible candidate over the 27 active sets is the optimum, and
    when the unconstrained solution (code 0, tried first) is feasible it is the optimum and the
    enumeration stops there.
    """
    best = np.inf
    xs = np.empty(3)
    sol = np.empty(3)
    free = np.empty(3, dtype=np.int64)
    rhs = np.empty(3)
    for code in range(27):
        c = code
        n_free = 0
        for i in range(3):
            state = c % 3  # 0 free, 1 lower, 2 upper
            c //= 3
            if state == 0:
                free[n_free] = i
                n_free += 1
                xs[i] = 0.0
            elif state == 1:
                xs[i] = lo[i]
            else:
                xs[i] = hi[i]
        # rhs of the reduced system: g_f − H_fb x_b (the free entries of xs are 0 here)
        for i in range(3):
            s = g[i]
            for j in range(3):
                s -= h[i, j] * xs[j]
            rhs[i] = s
        if not _solve_free(h, rhs, free, n_free, sol):
            continue
        feasible = True
        for j in range(n_free):
            i = free[j]
            xi = sol[j]
            tol = 1e-12 * (1.0 + abs(lo[i]) + abs(hi[i]))
            if xi < lo[i] - tol or xi > hi[i] + tol:
                feasible = False
                break
            xs[i] = min(max(xi, lo[i]), hi[i])
        if not feasible:
            continue
        val = c0
        for i in range(3):
            val -= 2.0 * g[i] * xs[i]
            for j in range(3):
                val += xs[i] * h[i, j] * xs[j]
        if val < best:
            best = val
            best_x[0], best_x[1], best_x[2] = xs[0], xs[1], xs[2]
        if code == 0:
            break
    return best


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _inner_into(m, sigma, k, w, om, a_hi, beta, slope_l_min, slope_r_min, x):
    """Optimal (A, U, V) into x and weighted SSE for fixed (m, σ), honouring the min-variance constraint.

    slope_*_min are lower bounds on the wing slopes b(1 ∓ ρ) (V/σ and U/σ): boxes too.
    """
    h = np.zeros((3, 3))
    g = np.zeros(3)
    c0 = 0.0
    for i in range(k.size):
        y = (k[i] - m) / sigma
        r = np.sqrt(y * y + 1.0)
        f1 = 0.5 * (r + y)
        f2 = 0.5 * (r - y)
        o = om[i]
        ow = o * w[i]
        g[0] += ow
        g[1] += ow * f1
        g[2] += ow * f2
        h[0, 0] += o
        h[0, 1] += o * f1
        h[0, 2] += o * f2
        h[1, 1] += o * f1 * f1
        h[1, 2] += o * f1 * f2
        h[2, 2] += o * f2 * f2
        c0 += ow * w[i]
    h[1, 0], h[2, 0], h[2, 1] = h[0, 1], h[0, 2], h[1, 2]
    lo = np.empty(3)
    hi = np.empty(3)
    lo[0], lo[1], lo[2] = -beta * sigma, slope_r_min * sigma, slope_l_min * sigma
    hi[0], hi[1], hi[2] = a_hi, beta * sigma, beta * sigma
    val = _box_qp3(h, g, c0, lo, hi, x)
    if x[0] + np.sqrt(x[1] * x[2]) < 0.0:
        lo[0] = 0.0
        val = _box_qp3(h, g, c0, lo, hi, x)
    return max(val, 0.0)


@numba.njit(cache=True, error_model="numpy")
def _inner(m, sigma, k, w, om, a_hi, beta, slope_l_min, slope_r_min):
    """(x, SSE) form of :func:`_inner_into`."""
    x = np.zeros(3)
    val = _inner_into(m, sigma, k, w, om, a_hi, beta, slope_l_min, slope_r_min, x)
    return x, val


@numba.njit(cache=True, error_model="numpy")
def _grid_search(ms, sigmas, k, w, om, a_hi, beta, slope_l_min, slope_r_min):
    """Objective on an (m, σ) grid; the outer problem has local minima, so start from the best node."""
    out = np.empty((ms.size, sigmas.size))
    x = np.zeros(3)
    for i in range(ms.size):
        for j in range(sigmas.size):
            out[i, j] = _inner_into(ms[i], sigmas[j], k, w, om, a_hi, beta, slope_l_min, slope_r_min, x)
    return out


@numba.njit(cache=True, error_model="numpy")
def _outer(z0, z1, k, w, om, a_hi, beta, sl_min, sr_min, x):
    return _inner_into(z0, np.exp(z1), k, w, om, a_hi, beta, sl_min, sr_min, x)


@numba.njit(cache=True, error_model="numpy")
def _sort3(sim, fsim):
    """Order the 3 simplex vertices by objective (stable insertion sort)."""
    for i in range(1, 3):
        j = i
        while j > 0 and fsim[j] < fsim[j - 1]:
            fsim[j], fsim[j - 1] = fsim[j - 1], fsim[j]
            for q in range(2):
                sim[j, q], sim[j - 1, q] = sim[j - 1, q], sim[j, q]
            j -= 1


@numba.njit(cache=True, error_model="numpy")
def _nelder_mead(z_start, lo, hi, k, w, om, a_hi, beta, sl_min, sr_min, xatol, fatol, maxfev):
    """Bounded Nelder–Mead on (m, log σ): scipy's algorithm (non-adaptive coefficients, its initial
    simplex, reflection of simplex points beyond the upper bound, clipping of every trial point) moved
    into numba, so a slice's outer search costs microseconds per step instead of Python overhead."""
    x = np.zeros(3)
    sim = np.empty((3, 2))
    fsim = np.full(3, np.inf)
    z0 = np.empty(2)
    for q in range(2):
        z0[q] = min(max(z_start[q], lo[q]), hi[q])
    for v in range(3):
        sim[v, 0], sim[v, 1] = z0[0], z0[1]
    for q in range(2):
        sim[q + 1, q] = 1.05 * z0[q] if z0[q] != 0.0 else 0.00025
    for v in range(3):
        for q in range(2):
            if sim[v, q] > hi[q]:
                sim[v, q] = 2.0 * hi[q] - sim[v, q]
            sim[v, q] = min(max(sim[v, q], lo[q]), hi[q])
    nfev = 0
    for v in range(3):
        fsim[v] = _outer(sim[v, 0], sim[v, 1], k, w, om, a_hi, beta, sl_min, sr_min, x)
        nfev += 1
    _sort3(sim, fsim)
    xbar = np.empty(2)
    trial = np.empty(2)
    while nfev < maxfev:
        spread = 0.0
        fspread = 0.0
        for v in range(1, 3):
            fspread = max(fspread, abs(fsim[0] - fsim[v]))
            for q in range(2):
                spread = max(spread, abs(sim[v, q] - sim[0, q]))
        if spread <= xatol and fspread <= fatol:
            break
        for q in range(2):
            xbar[q] = 0.5 * (sim[0, q] + sim[1, q])
        for q in range(2):  # reflection
            trial[q] = min(max(2.0 * xbar[q] - sim[2, q], lo[q]), hi[q])
        fxr = _outer(trial[0], trial[1], k, w, om, a_hi, beta, sl_min, sr_min, x)
        nfev += 1
        xr0, xr1 = trial[0], trial[1]
        if fxr < fsim[0]:
            if nfev >= maxfev:
                sim[2, 0], sim[2, 1], fsim[2] = xr0, xr1, fxr
            else:
                for q in range(2):  # expansion
                    trial[q] = min(max(3.0 * xbar[q] - 2.0 * sim[2, q], lo[q]), hi[q])
                fxe = _outer(trial[0], trial[1], k, w, om, a_hi, beta, sl_min, sr_min, x)
                nfev += 1
                if fxe < fxr:
                    sim[2, 0], sim[2, 1], fsim[2] = trial[0], trial[1], fxe
                else:
                    sim[2, 0], sim[2, 1], fsim[2] = xr0, xr1, fxr
        elif fxr < fsim[1]:
            sim[2, 0], sim[2, 1], fsim[2] = xr0, xr1, fxr
        elif nfev < maxfev:
            shrink = False
            if fxr < fsim[2]:
                for q in range(2):  # outside contraction
                    trial[q] = min(max(1.5 * xbar[q] - 0.5 * sim[2, q], lo[q]), hi[q])
                fxc = _outer(trial[0], trial[1], k, w, om, a_hi, beta, sl_min, sr_min, x)
                nfev += 1
                if fxc <= fxr:
                    sim[2, 0], sim[2, 1], fsim[2] = trial[0], trial[1], fxc
                else:
                    shrink = True
            else:
                for q in range(2):  # inside contraction
                    trial[q] = min(max(0.5 * xbar[q] + 0.5 * sim[2, q], lo[q]), hi[q])
                fxcc = _outer(trial[0], trial[1], k, w, om, a_hi, beta, sl_min, sr_min, x)
                nfev += 1
                if fxcc < fsim[2]:
                    sim[2, 0], sim[2, 1], fsim[2] = trial[0], trial[1], fxcc
                else:
                    shrink = True
            if shrink:
                for v in range(1, 3):
                    if nfev >= maxfev:
                        break
                    for q in range(2):
                        sim[v, q] = min(max(sim[0, q] + 0.5 * (sim[v, q] - sim[0, q]), lo[q]), hi[q])
                    fsim[v] = _outer(sim[v, 0], sim[v, 1], k, w, om, a_hi, beta, sl_min, sr_min, x)
                    nfev += 1
        _sort3(sim, fsim)
    return sim[0].copy(), fsim[0]


@numba.njit(cache=True, error_model="numpy")
def _fit_weights_into(iv, t, weight, out):
    """:func:`fit_weights` in numba, times ``_OBJ_SCALE``."""
    ws = 0.0
    for i in range(weight.size):
        ws += weight[i]
    for i in range(weight.size):
        d = 2.0 * iv[i] * t
        out[i] = weight[i] / ws / (d * d) * _OBJ_SCALE


@numba.njit(cache=True, error_model="numpy")
def _fit_slice_kernel(k, iv, t, weight, beta, sl_min, sr_min):
    """Grid start + Nelder–Mead polish of the outer (m, log σ) problem; returns (m, σ, A, U, V, SSE).

    Start grid: 17 vertices m over the quoted k range × 14 σ geometric from 2·σ_min to min(σ_max, 4·span)."""
    n = k.size
    w = np.empty(n)
    om = np.empty(n)
    _fit_weights_into(iv, t, weight, om)
    a_hi = -np.inf
    k_lo, k_hi = np.inf, -np.inf
    for i in range(n):
        w[i] = iv[i] * iv[i] * t
        a_hi = max(a_hi, w[i])
        k_lo = min(k_lo, k[i])
        k_hi = max(k_hi, k[i])
    span = max(k_hi - k_lo, 0.05)
    s_lo, s_hi = _SIGMA_LO, _SIGMA_HI
    ms = np.empty(17)
    for i in range(17):
        ms[i] = k_lo + (k_hi - k_lo) * i / 16.0
    sigmas = np.empty(14)
    g_lo, g_hi = np.log(s_lo * 2.0), np.log(min(s_hi, 4.0 * span))
    for j in range(14):
        sigmas[j] = np.exp(g_lo + (g_hi - g_lo) * j / 13.0)
    sigmas[0], sigmas[13] = s_lo * 2.0, min(s_hi, 4.0 * span)
    lo = np.empty(2)
    hi = np.empty(2)
    lo[0], lo[1] = k_lo, np.log(s_lo)
    hi[0], hi[1] = k_hi, np.log(s_hi)
    surf = _grid_search(ms, sigmas, k, w, om, a_hi, beta, sl_min, sr_min)
    bi, bj = 0, 0
    for i in range(ms.size):
        for j in range(sigmas.size):
            if surf[i, j] < surf[bi, bj]:
                bi, bj = i, j
    z_start = np.empty(2)
    z_start[0], z_start[1] = ms[bi], np.log(sigmas[bj])
    z, fz = _nelder_mead(z_start, lo, hi, k, w, om, a_hi, beta, sl_min, sr_min, 1e-7, 1e-10, 800)
    if not fz <= surf[bi, bj]:
        z = z_start
    m, sigma = z[0], np.exp(z[1])
    x = np.zeros(3)
    val = _inner_into(m, sigma, k, w, om, a_hi, beta, sl_min, sr_min, x)
    out = np.empty(6)
    out[0], out[1], out[2], out[3], out[4], out[5] = m, sigma, x[0], x[1], x[2], val
    return out


def _coeffs_to_raw(x: np.ndarray, m: float, sigma: float) -> tuple[float, float, float, float, float]:
    a, u, v = (float(z) for z in x)
    b = (u + v) / (2.0 * sigma)
    rho = (u - v) / (u + v) if u + v > 0 else 0.0
    return a, b, min(max(float(rho), -RHO_MAX), RHO_MAX), float(m), float(sigma)


# --------------------------------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class SliceFit:
    """Result of fitting one smile; params are raw SVI (a, b, rho, m, sigma)."""

    params: tuple[float, float, float, float, float]
    objective: float  # weighted mean squared IV error in vol points² (approximate, see module doc)
    success: bool
    message: str


def fit_weights(iv: np.ndarray, t: float, weight: np.ndarray) -> np.ndarray:
    """Total-variance LSQ weights that approximate an IV-space fit: weight/(2·iv·t)², normalized."""
    wt = np.asarray(weight, dtype=float)
    wt = wt / wt.sum()
    return wt / (2.0 * np.asarray(iv) * t) ** 2


def fit_svi_slice(
    k: np.ndarray,
    iv: np.ndarray,
    t: float,
    weight: np.ndarray | None = None,
    *,
    max_wing_slope: float = MAX_WING_SLOPE,
    min_slopes: tuple[float, float] = (0.0, 0.0),
) -> SliceFit:
    """Quasi-explicit weighted SVI fit of one smile (see module docstring).

    ``min_slopes`` = lower bounds on the (left, right) wing slopes b(1 − ρ), b(1 + ρ). Passing the
    previous expiry's slopes imposes the asymptotic part of calendar no-arbitrage (total variance of a
    later expiry cannot grow more slowly in the wings), which would otherwise be the main source of
    far-wing calendar crossings, where quotes do not pin the slopes down.
    """
    sl_min = float(min(max(min_slopes[0], 0.0), max_wing_slope))
    sr_min = float(min(max(min_slopes[1], 0.0), max_wing_slope))
    k = np.ascontiguousarray(k, dtype=float)
    iv = np.ascontiguousarray(iv, dtype=float)
    wt = np.ones_like(k) if weight is None else np.ascontiguousarray(weight, dtype=float)
    # vertex inside the quoted range (Zeliade): outside it both wings are extrapolation and the fits
    # that result are the main source of spurious butterfly arbitrage; the (m, σ) start grid and the
    # weights are built inside the kernel (numpy's linspace/geomspace cost more than the fit here)
    r = _fit_slice_kernel(k, iv, float(t), wt, float(max_wing_slope), sl_min, sr_min)
    m, sigma, x, val = float(r[0]), float(r[1]), r[2:5], float(r[5])
    return SliceFit(_coeffs_to_raw(x, m, sigma), float(val), True, "quasi-explicit")


@numba.njit(cache=True, error_model="numpy")
def _penalty_system(p, k, w_mkt, sq_om, kg, floor, has_floor, w_scale, margin, beta, sl):
    """Residuals and Jacobian of the penalized refit: fit rows, then sl·min(c, 0) for constraints c
    (g on kg, min variance, two Lee slopes, calendar on kg). Also returns the raw constraint values."""
    a, b, rho, m, sigma = p[0], p[1], p[2], p[3], p[4]
    n, ng = k.size, kg.size
    nc = ng + 3 + (ng if has_floor else 0)
    res = np.zeros(n + nc)
    jac = np.zeros((n + nc, 5))
    cons = np.zeros(nc)
    s2 = sigma * sigma
    for i in range(n):
        x = k[i] - m
        r = np.sqrt(x * x + s2)
        res[i] = sq_om[i] * (a + b * (rho * x + r) - w_mkt[i])
        jac[i, 0] = sq_om[i]
        jac[i, 1] = sq_om[i] * (rho * x + r)
        jac[i, 2] = sq_om[i] * b * x
        jac[i, 3] = -sq_om[i] * b * (rho + x / r)
        jac[i, 4] = sq_om[i] * b * sigma / r
    row = n
    for j in range(ng):
        kk = kg[j]
        x = kk - m
        r = np.sqrt(x * x + s2)
        r3 = r * r * r
        r5 = r3 * r * r
        w = max(a + b * (rho * x + r), 1e-12)
        w1 = b * (rho + x / r)
        w2 = b * s2 / r3
        u = 1.0 - kk * w1 / (2.0 * w)
        g = u * u - w1 * w1 / 4.0 * (1.0 / w + 0.25) + w2 / 2.0
        c = g - margin
        cons[j] = c
        if c < 0:
            g_w = u * kk * w1 / (w * w) + w1 * w1 / (4.0 * w * w)
            g_w1 = -u * kk / w - w1 / 2.0 * (1.0 / w + 0.25)
            jw = (1.0, rho * x + r, b * x, -w1, b * sigma / r)
            jw1 = (0.0, rho + x / r, b, -w2, -b * x * sigma / r3)
            jw2 = (0.0, s2 / r3, 0.0, 3.0 * b * s2 * x / r5, b * (2.0 * sigma / r3 - 3.0 * s2 * sigma / r5))
            res[row] = sl * c
            for q in range(5):
                jac[row, q] = sl * (g_w * jw[q] + g_w1 * jw1[q] + 0.5 * jw2[q])
        row += 1
    s1 = np.sqrt(max(1.0 - rho * rho, 1e-12))
    extra = (
        (a + b * sigma * s1) / w_scale - margin,
        beta - b * (1.0 + rho) - margin,
        beta - b * (1.0 - rho) - margin,
    )
    jex = (
        (1.0 / w_scale, sigma * s1 / w_scale, -b * sigma * rho / s1 / w_scale, 0.0, b * s1 / w_scale),
        (0.0, -(1.0 + rho), -b, 0.0, 0.0),
        (0.0, -(1.0 - rho), b, 0.0, 0.0),
    )
    for e in range(3):
        cons[ng + e] = extra[e]
        if extra[e] < 0:
            res[row] = sl * extra[e]
            for q in range(5):
                jac[row, q] = sl * jex[e][q]
        row += 1
    if has_floor:
        for j in range(ng):
            x = kg[j] - m
            r = np.sqrt(x * x + s2)
            c = (a + b * (rho * x + r) - floor[j]) / w_scale - margin
            cons[ng + 3 + j] = c
            if c < 0:
                res[row] = sl * c
                jac[row, 0] = sl / w_scale
                jac[row, 1] = sl * (rho * x + r) / w_scale
                jac[row, 2] = sl * b * x / w_scale
                jac[row, 3] = -sl * b * (rho + x / r) / w_scale
                jac[row, 4] = sl * b * sigma / r / w_scale
            row += 1
    return res, jac, cons


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _acc(jtj, grad, row, res):
    """Add one residual row (value res, Jacobian row) to JᵀJ and Jᵀr."""
    for q in range(5):
        grad[q] += row[q] * res
        for s in range(q, 5):
            jtj[q, s] += row[q] * row[s]


@numba.njit(cache=True, error_model="numpy", fastmath=_FASTMATH)
def _penalty_normal(p, k, w_mkt, sq_om, kg, floor, has_floor, w_scale, margin, beta, sl, jtj, grad):
    """The residual model of :func:`_penalty_system` reduced to what Gauss–Newton needs: returns
    (½‖r‖², min constraint) and fills JᵀJ and Jᵀr, without materializing the (n + 2·grid) × 5 Jacobian."""
    a, b, rho, m, sigma = p[0], p[1], p[2], p[3], p[4]
    jtj[:, :] = 0.0
    grad[:] = 0.0
    row = np.empty(5)
    s2 = sigma * sigma
    cost = 0.0
    c_min = np.inf
    for i in range(k.size):
        x = k[i] - m
        r = np.sqrt(x * x + s2)
        so = sq_om[i]
        res = so * (a + b * (rho * x + r) - w_mkt[i])
        row[0] = so
        row[1] = so * (rho * x + r)
        row[2] = so * b * x
        row[3] = -so * b * (rho + x / r)
        row[4] = so * b * sigma / r
        _acc(jtj, grad, row, res)
        cost += res * res
    inv_ws = 1.0 / w_scale
    for j in range(kg.size):
        kk = kg[j]
        x = kk - m
        r = np.sqrt(x * x + s2)
        ir = 1.0 / r
        xr = x * ir
        wv = a + b * (rho * x + r)
        w = max(wv, 1e-12)
        iw = 1.0 / w
        w1 = b * (rho + xr)
        ir3 = ir * ir * ir
        w2 = b * s2 * ir3
        u = 1.0 - 0.5 * kk * w1 * iw
        q1 = iw + 0.25
        c = u * u - 0.25 * w1 * w1 * q1 + 0.5 * w2 - margin
        c_min = min(c_min, c)
        if c < 0:
            ir5 = ir3 * ir * ir
            g_w = (u * kk * w1 + 0.25 * w1 * w1) * iw * iw
            g_w1 = -u * kk * iw - 0.5 * w1 * q1
            row[0] = sl * g_w
            row[1] = sl * (g_w * (rho * x + r) + g_w1 * (rho + xr) + 0.5 * s2 * ir3)
            row[2] = sl * (g_w * b * x + g_w1 * b)
            row[3] = sl * (-g_w * w1 - g_w1 * w2 + 1.5 * b * s2 * x * ir5)
            row[4] = sl * (g_w * b * sigma * ir - g_w1 * b * x * sigma * ir3
                           + 0.5 * b * (2.0 * sigma * ir3 - 3.0 * s2 * sigma * ir5))
            res = sl * c
            _acc(jtj, grad, row, res)
            cost += res * res
        if has_floor:
            c = (wv - floor[j]) * inv_ws - margin
            c_min = min(c_min, c)
            if c < 0:
                f = sl * inv_ws
                row[0] = f
                row[1] = f * (rho * x + r)
                row[2] = f * b * x
                row[3] = -f * b * (rho + xr)
                row[4] = f * b * sigma * ir
                res = sl * c
                _acc(jtj, grad, row, res)
                cost += res * res
    s1 = np.sqrt(max(1.0 - rho * rho, 1e-12))
    for e in range(3):
        if e == 0:
            c = (a + b * sigma * s1) / w_scale - margin
            row[0], row[1], row[2] = 1.0 / w_scale, sigma * s1 / w_scale, -b * sigma * rho / s1 / w_scale
            row[3], row[4] = 0.0, b * s1 / w_scale
        elif e == 1:
            c = beta - b * (1.0 + rho) - margin
            row[0], row[1], row[2], row[3], row[4] = 0.0, -(1.0 + rho), -b, 0.0, 0.0
        else:
            c = beta - b * (1.0 - rho) - margin
            row[0], row[1], row[2], row[3], row[4] = 0.0, -(1.0 - rho), b, 0.0, 0.0
        c_min = min(c_min, c)
        if c < 0:
            for q in range(5):
                row[q] *= sl
            res = sl * c
            _acc(jtj, grad, row, res)
            cost += res * res
    for q in range(5):
        for s in range(q):
            jtj[q, s] = jtj[s, q]
    return 0.5 * cost, c_min


@numba.njit(cache=True, error_model="numpy")
def _refit_kernel(x0, lo, hi, k, w_mkt, sq_om, kg, floor, has_floor, w_scale, margin, beta, max_iter):
    """Exterior-penalty continuation (λ = 1e3 … 1e9) with a bounded Levenberg–Marquardt solve per λ;
    stops at the first λ whose solution satisfies every constraint to within margin/2.
    Returns (params, min constraint, total LM iterations)."""
    x = x0.copy()
    jtj = np.zeros((5, 5))
    grad = np.zeros(5)
    jtj_n = np.zeros((5, 5))
    grad_n = np.zeros(5)
    d2 = np.zeros(5)
    c_min = -np.inf
    n_it = 0
    lam = 1e3
    while lam <= 1e9 * 1.0001:
        sl = np.sqrt(lam)
        cost, c_min = _penalty_normal(x, k, w_mkt, sq_om, kg, floor, has_floor, w_scale, margin, beta, sl,
                                      jtj, grad)
        for q in range(5):
            d2[q] = max(jtj[q, q], 1e-12)
        mu = 1e-3
        nu = 2.0
        for _ in range(max_iter):
            n_it += 1
            x_new, pred, step2, xn2, ok = lm_trial(jtj, grad, x, lo, hi, d2, mu)
            if ok and step2 == 0.0:
                break
            cost_n, c_n = np.inf, c_min
            if ok:
                cost_n, c_n = _penalty_normal(x_new, k, w_mkt, sq_om, kg, floor, has_floor, w_scale, margin,
                                              beta, sl, jtj_n, grad_n)
            accept, stop, mu, nu = lm_update(cost, cost_n, pred, step2, xn2, mu, nu, _REFIT_FTOL, 1e-10)
            if accept:
                x = x_new
                cost, c_min = cost_n, c_n
                jtj[:, :] = jtj_n
                grad[:] = grad_n
                raise_scaling(d2, jtj)
            if stop:
                break
        if c_min >= -0.5 * margin:
            break
        lam *= 100.0
    return x, c_min, n_it


def refit_svi_constrained(
    k: np.ndarray,
    iv: np.ndarray,
    t: float,
    weight: np.ndarray | None,
    start: tuple[float, float, float, float, float],
    k_grid: np.ndarray,
    *,
    floor_w: np.ndarray | None = None,
    margin: float = 1e-4,
    max_wing_slope: float = MAX_WING_SLOPE,
    max_iter: int = 400,
) -> SliceFit:
    """Refit all five SVI parameters with g(k) ≥ margin on ``k_grid`` (no butterfly arbitrage) and,
    if ``floor_w`` is given, w(k) ≥ floor_w on ``k_grid`` (no calendar arbitrage against the
    previous slice).

    Exterior quadratic penalty solved by a bounded Levenberg–Marquardt in numba (analytic Jacobian,
    normal equations accumulated without forming it) with the penalty weight raised until the
    constraints hold; this proved far more robust than SLSQP, whose linearized subproblems become
    incompatible on these wing constraints. ``max_iter`` bounds the LM iterations per penalty weight. The margin keeps
    the result strictly inside the feasible set (g ≥ margin/2, w ≥ floor + margin/2·mean w, min
    variance and Lee slopes likewise), so a check with tolerance 0 on the same grid passes.
    """
    k = np.ascontiguousarray(k, dtype=float)
    iv = np.ascontiguousarray(iv, dtype=float)
    w_mkt = iv * iv * t
    sq_om = np.empty_like(k)
    _fit_weights_into(iv, float(t), np.ones_like(k) if weight is None else np.ascontiguousarray(weight, dtype=float),
                      sq_om)
    np.sqrt(sq_om, out=sq_om)
    kg = np.ascontiguousarray(k_grid, dtype=float)
    has_floor = floor_w is not None
    floor = np.ascontiguousarray(floor_w if has_floor else np.zeros(1), dtype=float)
    w_scale = max(float(w_mkt.mean()), 1e-8)
    a_hi = max(float(w_mkt.max()), float(floor.max()) if has_floor else 0.0) * 2.0
    sig_lo, sig_hi = SIGMA_BOUNDS
    lo = np.array([-max_wing_slope * sig_hi, 0.0, -0.999, float(k.min()), sig_lo])
    hi = np.array([a_hi, max_wing_slope, 0.999, float(k.max()), sig_hi])
    x0 = np.minimum(np.maximum(np.asarray(start, dtype=float), lo), hi)
    x, c_min, _ = _refit_kernel(x0, lo, hi, k, w_mkt, sq_om, kg, floor, has_floor, w_scale, margin,
                                float(max_wing_slope), max_iter)
    feasible = bool(np.isfinite(c_min) and c_min >= -0.5 * margin)
    obj = float(np.sum((sq_om * (svi_total_variance(k, *x) - w_mkt)) ** 2))
    return SliceFit(tuple(float(v) for v in x), obj, feasible, "penalty refit")  # type: ignore[arg-type]
