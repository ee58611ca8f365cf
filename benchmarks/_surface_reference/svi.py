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
from scipy import optimize

SVI_PARAMS = ("a", "b", "rho", "m", "sigma")
MAX_WING_SLOPE = 2.0  # Roger Lee's moment bound on the asymptotic slope of total variance
SIGMA_BOUNDS = (2e-3, 3.0)
RHO_MAX = 1.0 - 1e-6
_OBJ_SCALE = 1e4  # objective in (vol points)² so optimizer tolerances are meaningful


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


def svi_iv(k, t, a, b, rho, m, sigma):
    """Implied volatility from raw SVI total variance at maturity t (years); NaN where w ≤ 0."""
    w = svi_total_variance(k, a, b, rho, m, sigma)
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.where(w > 0, w, np.nan) / t)


def svi_wing_slopes(b: float, rho: float) -> tuple[float, float]:
    """Asymptotic (left, right) slopes of total variance in k: b(1 − ρ), b(1 + ρ)."""
    return b * (1.0 - rho), b * (1.0 + rho)


def svi_min_variance(a, b, rho, sigma) -> float:
    """Minimum of w over k: a + bσ√(1−ρ²); must be ≥ 0."""
    return a + b * sigma * np.sqrt(max(0.0, 1.0 - rho * rho))


# ------------------------------------------------------------------------------- inner linear problem
@numba.njit(cache=True)
def _solve_small(h, rhs, free, n_free):
    """Solve the n_free×n_free subsystem (n_free ≤ 3) by Cramer's rule; returns (x, ok)."""
    x = np.zeros(3)
    if n_free == 0:
        return x, True
    mat = np.zeros((n_free, n_free))
    vec = np.zeros(n_free)
    for i in range(n_free):
        vec[i] = rhs[free[i]]
        for j in range(n_free):
            mat[i, j] = h[free[i], free[j]]
    scale = 0.0
    for i in range(n_free):
        scale = max(scale, abs(mat[i, i]))
    if scale <= 0.0:
        return x, False
    if n_free == 1:
        x[0] = vec[0] / mat[0, 0]
        return x, True
    if n_free == 2:
        det = mat[0, 0] * mat[1, 1] - mat[0, 1] * mat[1, 0]
        if abs(det) <= 1e-13 * scale * scale:
            return x, False
        x[0] = (vec[0] * mat[1, 1] - mat[0, 1] * vec[1]) / det
        x[1] = (mat[0, 0] * vec[1] - mat[1, 0] * vec[0]) / det
        return x, True
    det = (
        mat[0, 0] * (mat[1, 1] * mat[2, 2] - mat[1, 2] * mat[2, 1])
        - mat[0, 1] * (mat[1, 0] * mat[2, 2] - mat[1, 2] * mat[2, 0])
        + mat[0, 2] * (mat[1, 0] * mat[2, 1] - mat[1, 1] * mat[2, 0])
    )
    if abs(det) <= 1e-13 * scale * scale * scale:
        return x, False
    for c in range(3):
        m2 = mat.copy()
        for r in range(3):
            m2[r, c] = vec[r]
        x[c] = (
            m2[0, 0] * (m2[1, 1] * m2[2, 2] - m2[1, 2] * m2[2, 1])
            - m2[0, 1] * (m2[1, 0] * m2[2, 2] - m2[1, 2] * m2[2, 0])
            + m2[0, 2] * (m2[1, 0] * m2[2, 1] - m2[1, 1] * m2[2, 0])
        ) / det
    return x, True


@numba.njit(cache=True)
def _box_qp3(h, g, c0, lo, hi):
    """min x'Hx − 2g'x + c0 over lo ≤ x ≤ hi (3 variables) by active-set enumeration."""
    best = np.inf
    best_x = np.zeros(3)
    xs = np.zeros(3)
    free = np.zeros(3, dtype=np.int64)
    rhs = np.zeros(3)
    for code in range(27):
        c = code
        n_free = 0
        for i in range(3):
            state = c % 3  # 0 free, 1 lower, 2 upper
            c //= 3
            if state == 0:
                free[n_free] = i
                n_free += 1
            elif state == 1:
                xs[i] = lo[i]
            else:
                xs[i] = hi[i]
        # rhs of reduced system: g_f − H_fb x_b
        for i in range(3):
            rhs[i] = g[i]
        is_free = np.zeros(3, dtype=np.bool_)
        for j in range(n_free):
            is_free[free[j]] = True
        for i in range(3):
            for j in range(3):
                if not is_free[j]:
                    rhs[i] -= h[i, j] * xs[j]
        sol, ok = _solve_small(h, rhs, free, n_free)
        if not ok:
            continue
        feasible = True
        for j in range(n_free):
            xi = sol[j]
            i = free[j]
            tol = 1e-12 * (1.0 + abs(lo[i]) + abs(hi[i]))
            if xi < lo[i] - tol or xi > hi[i] + tol:
                feasible = False
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
            best_x[:] = xs
    return best_x, best


@numba.njit(cache=True)
def _inner(m, sigma, k, w, om, a_hi, beta, slope_l_min, slope_r_min):
    """Optimal (A, U, V) and weighted SSE for fixed (m, σ), honouring the min-variance constraint.

    slope_*_min are lower bounds on the wing slopes b(1 ∓ ρ) (V/σ and U/σ): boxes too.
    """
    h = np.zeros((3, 3))
    g = np.zeros(3)
    c0 = 0.0
    f = np.zeros(3)
    for i in range(k.size):
        y = (k[i] - m) / sigma
        r = np.sqrt(y * y + 1.0)
        f[0] = 1.0
        f[1] = 0.5 * (r + y)
        f[2] = 0.5 * (r - y)
        for p in range(3):
            g[p] += om[i] * f[p] * w[i]
            for q in range(3):
                h[p, q] += om[i] * f[p] * f[q]
        c0 += om[i] * w[i] * w[i]
    lo = np.array([-beta * sigma, slope_r_min * sigma, slope_l_min * sigma])
    hi = np.array([a_hi, beta * sigma, beta * sigma])
    x, val = _box_qp3(h, g, c0, lo, hi)
    if x[0] + np.sqrt(x[1] * x[2]) < 0.0:
        lo[0] = 0.0
        x, val = _box_qp3(h, g, c0, lo, hi)
    return x, max(val, 0.0)


@numba.njit(cache=True)
def _grid_search(ms, sigmas, k, w, om, a_hi, beta, slope_l_min, slope_r_min):
    """Objective on an (m, σ) grid; the outer problem has local minima, so start from the best node."""
    out = np.empty((ms.size, sigmas.size))
    for i in range(ms.size):
        for j in range(sigmas.size):
            out[i, j] = _inner(ms[i], sigmas[j], k, w, om, a_hi, beta, slope_l_min, slope_r_min)[1]
    return out


def _coeffs_to_raw(x: np.ndarray, m: float, sigma: float) -> tuple[float, float, float, float, float]:
    a, u, v = (float(z) for z in x)
    b = (u + v) / (2.0 * sigma)
    rho = (u - v) / (u + v) if u + v > 0 else 0.0
    return a, b, float(np.clip(rho, -RHO_MAX, RHO_MAX)), float(m), float(sigma)


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
    iv = np.asarray(iv, dtype=float)
    w = np.ascontiguousarray(iv * iv * t)
    om = np.ascontiguousarray(fit_weights(iv, t, np.ones_like(k) if weight is None else weight))
    om_s = om * _OBJ_SCALE
    a_hi = float(w.max())
    k_lo, k_hi = float(k.min()), float(k.max())
    span = max(k_hi - k_lo, 0.05)
    # vertex inside the quoted range (Zeliade): outside it both wings are extrapolation and the fits
    # that result are the main source of spurious butterfly arbitrage
    m_lo, m_hi = k_lo, k_hi
    s_lo, s_hi = SIGMA_BOUNDS
    ms = np.linspace(m_lo, m_hi, 17)
    sigmas = np.geomspace(s_lo * 2, min(s_hi, 4.0 * span), 14)
    surf = _grid_search(ms, sigmas, k, w, om_s, a_hi, max_wing_slope, sl_min, sr_min)
    i, j = np.unravel_index(int(np.argmin(surf)), surf.shape)

    def obj(z: np.ndarray) -> float:
        return float(_inner(z[0], float(np.exp(z[1])), k, w, om_s, a_hi, max_wing_slope, sl_min, sr_min)[1])

    res = optimize.minimize(
        obj,
        x0=np.array([ms[i], np.log(sigmas[j])]),
        method="Nelder-Mead",
        bounds=[(m_lo, m_hi), (np.log(s_lo), np.log(s_hi))],
        options={"xatol": 1e-7, "fatol": 1e-10, "maxfev": 800},
    )
    z = res.x if res.fun <= surf[i, j] else np.array([ms[i], np.log(sigmas[j])])
    m, sigma = float(z[0]), float(np.exp(z[1]))
    x, val = _inner(m, sigma, k, w, om_s, a_hi, max_wing_slope, sl_min, sr_min)
    return SliceFit(_coeffs_to_raw(x, m, sigma), float(val), True, "quasi-explicit")


def _svi_jac(k: np.ndarray, p) -> tuple[np.ndarray, ...]:
    """w, w', w'' and their (n, 5) Jacobians with respect to (a, b, ρ, m, σ)."""
    a, b, rho, m, sigma = p
    x = k - m
    r = np.sqrt(x * x + sigma * sigma)
    r3 = r**3
    w = a + b * (rho * x + r)
    w1 = b * (rho + x / r)
    w2 = b * sigma * sigma / r3
    one, zero = np.ones_like(k), np.zeros_like(k)
    jw = np.stack([one, rho * x + r, b * x, -w1, b * sigma / r], axis=1)
    jw1 = np.stack([zero, rho + x / r, b * one, -w2, -b * x * sigma / r3], axis=1)
    jw2 = np.stack([zero, sigma * sigma / r3, zero, 3 * b * sigma * sigma * x / r**5,
                    b * (2 * sigma / r3 - 3 * sigma**3 / r**5)], axis=1)
    return w, w1, w2, jw, jw1, jw2


def _g_and_jac(k: np.ndarray, p) -> tuple[np.ndarray, np.ndarray]:
    """g(k) and its Jacobian in the SVI parameters (chain rule through w, w', w'')."""
    w, w1, w2, jw, jw1, jw2 = _svi_jac(k, p)
    w = np.maximum(w, 1e-12)
    u = 1.0 - k * w1 / (2.0 * w)
    g = u * u - w1 * w1 / 4.0 * (1.0 / w + 0.25) + w2 / 2.0
    g_w = u * k * w1 / (w * w) + w1 * w1 / (4.0 * w * w)
    g_w1 = -u * k / w - w1 / 2.0 * (1.0 / w + 0.25)
    return g, g_w[:, None] * jw + g_w1[:, None] * jw1 + 0.5 * jw2


@numba.njit(cache=True)
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
) -> SliceFit:
    """Refit all five SVI parameters with g(k) ≥ margin on ``k_grid`` (no butterfly arbitrage) and,
    if ``floor_w`` is given, w(k) ≥ floor_w on ``k_grid`` (no calendar arbitrage against the
    previous slice).

    Exterior quadratic penalty solved by bounded Gauss–Newton (``least_squares``, analytic Jacobian in
    numba) with the penalty weight raised until the constraints hold; this proved far more robust than
    SLSQP, whose linearized subproblems become incompatible on these wing constraints. The margin keeps
    the result strictly inside the feasible set (g ≥ margin/2, w ≥ floor + margin/2·mean w, min
    variance and Lee slopes likewise), so a check with tolerance 0 on the same grid passes.
    """
    k = np.ascontiguousarray(k, dtype=float)
    iv = np.asarray(iv, dtype=float)
    w_mkt = np.ascontiguousarray(iv * iv * t)
    sq_om = np.ascontiguousarray(
        np.sqrt(fit_weights(iv, t, np.ones_like(k) if weight is None else weight) * _OBJ_SCALE))
    kg = np.ascontiguousarray(k_grid, dtype=float)
    has_floor = floor_w is not None
    floor = np.ascontiguousarray(floor_w if has_floor else np.zeros(1), dtype=float)
    w_scale = max(float(w_mkt.mean()), 1e-8)
    a_hi = float(max(w_mkt.max(), float(np.max(floor)) if has_floor else 0.0) * 2.0)
    sig_lo, sig_hi = SIGMA_BOUNDS
    lo = np.array([-max_wing_slope * sig_hi, 0.0, -0.999, float(k.min()), sig_lo])
    hi = np.array([a_hi, max_wing_slope, 0.999, float(k.max()), sig_hi])
    args = (k, w_mkt, sq_om, kg, floor, has_floor, w_scale, margin, max_wing_slope)

    x = np.clip(np.asarray(start, dtype=float), lo, hi)
    for lam in (1e3, 1e5, 1e7, 1e9):
        sl = float(np.sqrt(lam))
        cache: dict = {}

        def system(p: np.ndarray, sl: float = sl, cache: dict = cache):
            key = p.tobytes()
            if key not in cache:
                cache.clear()
                cache[key] = _penalty_system(p, *args, sl)
            return cache[key]

        res = optimize.least_squares(lambda p, f=system: f(p)[0], x, jac=lambda p, f=system: f(p)[1],
                                     bounds=(lo, hi), x_scale="jac", method="trf", max_nfev=200,
                                     ftol=1e-6, xtol=1e-6)
        x = res.x
        c_min = float(np.min(_penalty_system(x, *args, 0.0)[2]))
        if c_min >= -0.5 * margin:
            break
    feasible = bool(np.isfinite(c_min) and c_min >= -0.5 * margin)
    obj = float(np.sum((sq_om * (svi_total_variance(k, *x) - w_mkt)) ** 2))
    return SliceFit(tuple(float(v) for v in x), obj, feasible, "penalty refit")  # type: ignore[arg-type]
