"""SSVI (Gatheral & Jacquier 2014) with the power-law φ, fitted per underlying across expiries.

    w(k, θ_t) = θ_t/2 · (1 + ρφk + √((φk + ρ)² + 1 − ρ²)),   φ(θ) = η / (θ^γ (1 + θ)^(1−γ))

With θ_t non-decreasing in t, 0 < γ ≤ 1/2 and η(1 + |ρ|) ≤ 2 the surface is free of static arbitrage
(GJ 2014, §4), so it is the fallback that needs no repair. Those conditions are imposed through the
parametrization: θ is a cumulative sum of non-negative increments and η = 2s/(1 + |ρ|), s ∈ (0, 1].
Every SSVI slice is a raw SVI slice (GJ 2014, Lemma 3.3), so results are stored as raw parameters
and all downstream code (checks, grid, plots) stays SVI-only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from b3quant_models.surface._lm import lm_trial, lm_update, raise_scaling

_RHO_MAX = 0.999
_GAMMA_BOUNDS = (0.01, 0.5)
_S_BOUNDS = (1e-3, 1.0)


def ssvi_phi(theta, eta: float, gamma: float):
    """Power-law curvature function φ(θ) = η θ^−γ (1 + θ)^(γ−1)."""
    theta = np.asarray(theta, dtype=float)
    return eta / (theta**gamma * (1.0 + theta) ** (1.0 - gamma))


def ssvi_total_variance(k, theta, rho: float, eta: float, gamma: float):
    """SSVI total variance at log-moneyness k for ATM total variance θ (broadcasts)."""
    phi = ssvi_phi(theta, eta, gamma)
    pk = phi * np.asarray(k, dtype=float)
    return 0.5 * theta * (1.0 + rho * pk + np.sqrt((pk + rho) ** 2 + 1.0 - rho * rho))


def ssvi_to_raw(theta: float, rho: float, eta: float, gamma: float) -> tuple[float, float, float, float, float]:
    """Raw SVI (a, b, ρ, m, σ) of one SSVI slice: a = θ(1−ρ²)/2, b = θφ/2, m = −ρ/φ, σ = √(1−ρ²)/φ."""
    phi = float(ssvi_phi(theta, eta, gamma))
    return (
        0.5 * theta * (1.0 - rho * rho),
        0.5 * theta * phi,
        rho,
        -rho / phi,
        float(np.sqrt(1.0 - rho * rho)) / phi,
    )


@numba.njit(cache=True, error_model="numpy")
def _ssvi_normal(x, k, iv, t, idx, sqw, jtj, grad):
    """½‖r‖² of the IV-space SSVI residuals r = √w·(√(w/t) − iv)·100 at x = (ρ, s, γ, Δθ…); fills JᵀJ, Jᵀr.

    Analytic Jacobian through η = 2s/(1 + |ρ|), φ(θ) and θ_j = Σ_{i≤j} Δθ_i (a quote of slice j depends on
    the first j + 1 increments)."""
    rho, s, gamma = x[0], x[1], x[2]
    npar = x.size
    n_sl = npar - 3
    ar = abs(rho)
    eta = 2.0 * s / (1.0 + ar)
    deta_ds = 2.0 / (1.0 + ar)
    deta_drho = -2.0 * s * np.sign(rho) / (1.0 + ar) ** 2
    theta = np.empty(n_sl)
    acc = 0.0
    for j in range(n_sl):
        acc += x[3 + j]
        theta[j] = acc
    jtj[:, :] = 0.0
    grad[:] = 0.0
    row = np.zeros(npar)
    cost = 0.0
    for i in range(k.size):
        j = idx[i]
        th = theta[j]
        phi = eta * th ** (-gamma) * (1.0 + th) ** (gamma - 1.0)
        kk = k[i]
        pk = phi * kk
        rr = np.sqrt((pk + rho) ** 2 + 1.0 - rho * rho)
        w = 0.5 * th * (1.0 + rho * pk + rr)
        wc = max(w, 1e-12)
        vol = np.sqrt(wc / t[i])
        res = sqw[i] * (vol - iv[i]) * 100.0
        cost += res * res
        dres_dw = sqw[i] * 100.0 * 0.5 / (vol * t[i]) if w > 1e-12 else 0.0
        dw_dphi = 0.5 * th * (rho * kk + (pk + rho) * kk / rr)
        dphi_deta = phi / eta
        row[0] = dres_dw * (0.5 * th * (pk + pk / rr) + dw_dphi * dphi_deta * deta_drho)
        row[1] = dres_dw * dw_dphi * dphi_deta * deta_ds
        row[2] = dres_dw * dw_dphi * phi * (np.log(1.0 + th) - np.log(th))
        dth = dres_dw * (0.5 * (1.0 + rho * pk + rr) + dw_dphi * phi * (-gamma / th + (gamma - 1.0) / (1.0 + th)))
        for q in range(n_sl):
            row[3 + q] = dth if q <= j else 0.0
        last = 3 + j + 1
        for q in range(last):
            grad[q] += row[q] * res
            for r in range(q, last):
                jtj[q, r] += row[q] * row[r]
    for q in range(npar):
        for r in range(q):
            jtj[q, r] = jtj[r, q]
    return 0.5 * cost


@numba.njit(cache=True, error_model="numpy")
def _ssvi_lm(x0, lo, hi, k, iv, t, idx, sqw, max_iter, ftol, xtol):
    """Bounded Levenberg–Marquardt on the SSVI residuals; returns (x, ½‖r‖²)."""
    npar = x0.size
    x = x0.copy()
    jtj = np.zeros((npar, npar))
    grad = np.zeros(npar)
    jtj_n = np.zeros((npar, npar))
    grad_n = np.zeros(npar)
    cost = _ssvi_normal(x, k, iv, t, idx, sqw, jtj, grad)
    d2 = np.empty(npar)
    for q in range(npar):
        d2[q] = max(jtj[q, q], 1e-12)
    mu = 1e-3
    nu = 2.0
    for _ in range(max_iter):
        x_new, pred, step2, xn2, ok = lm_trial(jtj, grad, x, lo, hi, d2, mu)
        if ok and step2 == 0.0:
            break
        cost_n = _ssvi_normal(x_new, k, iv, t, idx, sqw, jtj_n, grad_n) if ok else np.inf
        accept, stop, mu, nu = lm_update(cost, cost_n, pred, step2, xn2, mu, nu, ftol, xtol)
        if accept:
            x = x_new
            cost = cost_n
            jtj[:, :] = jtj_n
            grad[:] = grad_n
            raise_scaling(d2, jtj)
        if stop:
            break
    return x, cost


@dataclass(frozen=True)
class SSVIFit:
    rho: float
    eta: float
    gamma: float
    theta: np.ndarray  # ATM total variance per slice, in the order the slices were given (sorted by t)
    wrmse_vol_pts: float  # weighted RMSE, each slice's weights normalized to sum 1
    success: bool


def fit_ssvi(
    slices: list[tuple[np.ndarray, np.ndarray, float, np.ndarray]],
    theta0: np.ndarray,
    rho0: float = -0.3,
    *,
    max_iter: int = 400,
) -> SSVIFit:
    """Fit SSVI to ``slices`` = [(k, iv, t, weight), ...] sorted by t, in implied-vol space.

    theta0 (e.g. ATM total variance of per-slice SVI fits) seeds θ; it is made non-decreasing first.
    Two starts for (η, γ) guard against the shallow valley between curvature level and decay.
    """
    n = len(slices)
    k = np.concatenate([np.asarray(s[0], float) for s in slices])
    iv = np.concatenate([np.asarray(s[1], float) for s in slices])
    t = np.concatenate([np.full(len(s[0]), float(s[2])) for s in slices])
    idx = np.concatenate([np.full(len(s[0]), i, dtype=np.int64) for i, s in enumerate(slices)])
    sw = np.concatenate([np.asarray(s[3], float) / np.sum(s[3]) for s in slices])
    sqw = np.sqrt(sw / n)

    th0 = np.maximum.accumulate(np.maximum(np.asarray(theta0, dtype=float), 1e-6))
    d0 = np.diff(np.concatenate([[0.0], th0]))

    def unpack(x: np.ndarray) -> tuple[float, float, float, np.ndarray]:
        rho, s, gamma = x[:3]
        eta = 2.0 * s / (1.0 + abs(rho))
        return float(rho), float(eta), float(gamma), np.cumsum(x[3:])

    lo = np.concatenate([[-_RHO_MAX, _S_BOUNDS[0], _GAMMA_BOUNDS[0], 1e-6], np.zeros(n - 1)])
    hi = np.concatenate([[_RHO_MAX, _S_BOUNDS[1], _GAMMA_BOUNDS[1]], np.full(n, np.inf)])
    best_x, best_cost = None, np.inf
    for s0, g0 in ((0.5, 0.3), (0.95, 0.45)):
        x0 = np.clip(np.concatenate([[np.clip(rho0, -0.9, 0.9), s0, g0], np.maximum(d0, 1e-6)]), lo, hi)
        x0[4:] = np.maximum(x0[4:], 0.0)
        x, cost = _ssvi_lm(x0, lo, hi, k, iv, t, idx, sqw, max_iter, 1e-10, 1e-10)
        if best_x is None or cost < best_cost:
            best_x, best_cost = x, float(cost)
    rho, eta, gamma, theta = unpack(best_x)
    wrmse = float(np.sqrt(2.0 * best_cost))  # residuals already carry sqrt(weight/n) and ×100
    return SSVIFit(rho, eta, gamma, theta, wrmse, bool(np.isfinite(best_cost)))
