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

import numpy as np
from scipy import optimize

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
) -> SSVIFit:
    """Fit SSVI to ``slices`` = [(k, iv, t, weight), ...] sorted by t, in implied-vol space.

    theta0 (e.g. ATM total variance of per-slice SVI fits) seeds θ; it is made non-decreasing first.
    Two starts for (η, γ) guard against the shallow valley between curvature level and decay.
    """
    n = len(slices)
    k = np.concatenate([s[0] for s in slices])
    iv = np.concatenate([s[1] for s in slices])
    t = np.concatenate([np.full(len(s[0]), s[2]) for s in slices])
    idx = np.concatenate([np.full(len(s[0]), i) for i, s in enumerate(slices)])
    sw = np.concatenate([np.asarray(s[3], float) / np.sum(s[3]) for s in slices])
    sqw = np.sqrt(sw / n)

    th0 = np.maximum.accumulate(np.maximum(np.asarray(theta0, dtype=float), 1e-6))
    d0 = np.diff(np.concatenate([[0.0], th0]))

    def unpack(x: np.ndarray) -> tuple[float, float, float, np.ndarray]:
        rho, s, gamma = x[:3]
        eta = 2.0 * s / (1.0 + abs(rho))
        return float(rho), float(eta), float(gamma), np.cumsum(x[3:])

    def resid(x: np.ndarray) -> np.ndarray:
        rho, eta, gamma, theta = unpack(x)
        w = ssvi_total_variance(k, theta[idx], rho, eta, gamma)
        return sqw * (np.sqrt(np.maximum(w, 1e-12) / t) - iv) * 100.0

    lo = np.concatenate([[-_RHO_MAX, _S_BOUNDS[0], _GAMMA_BOUNDS[0], 1e-6], np.zeros(n - 1)])
    hi = np.concatenate([[_RHO_MAX, _S_BOUNDS[1], _GAMMA_BOUNDS[1]], np.full(n, np.inf)])
    best = None
    for s0, g0 in ((0.5, 0.3), (0.95, 0.45)):
        x0 = np.clip(np.concatenate([[np.clip(rho0, -0.9, 0.9), s0, g0], np.maximum(d0, 1e-6)]), lo, hi)
        x0[4:] = np.maximum(x0[4:], 0.0)
        res = optimize.least_squares(resid, x0, bounds=(lo, hi), method="trf", x_scale="jac", max_nfev=400)
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    rho, eta, gamma, theta = unpack(best.x)
    wrmse = float(np.sqrt(2.0 * best.cost))  # residuals already carry sqrt(weight/n) and ×100
    return SSVIFit(rho, eta, gamma, theta, wrmse, bool(best.success))
