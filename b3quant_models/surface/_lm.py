"""Small numba kernels shared by the surface fitters: the bounded Levenberg–Marquardt step and its
trust update, the one home of the LM logic both the constrained SVI refit and SSVI run.

Why not scipy: the problems are tiny (5 SVI parameters; 3 + one θ per expiry for SSVI) and solved
hundreds of times a day, so scipy's per-iteration Python overhead (SVDs, norms, wrappers) was most of the
surface time on a real B3 session. Each solver keeps its residual model in numba and its loop is
``lm_trial`` → evaluate the model at the trial point → ``lm_update``. (A single driver taking the residual
model as a function argument would be shorter, but numba cannot cache functions with function arguments,
and recompiling at every import costs seconds.)
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, error_model="numpy")
def chol_solve(a: np.ndarray, b: np.ndarray, n: int) -> tuple[np.ndarray, bool]:
    """Solve a[:n, :n] x = b[:n] for a symmetric positive-definite a by Cholesky; ok=False if not SPD."""
    low = np.zeros((n, n))
    for j in range(n):
        s = a[j, j]
        for q in range(j):
            s -= low[j, q] * low[j, q]
        if not s > 0.0:
            return np.zeros(n), False
        d = np.sqrt(s)
        low[j, j] = d
        for i in range(j + 1, n):
            s = a[i, j]
            for q in range(j):
                s -= low[i, q] * low[j, q]
            low[i, j] = s / d
    y = np.zeros(n)
    for i in range(n):
        s = b[i]
        for q in range(i):
            s -= low[i, q] * y[q]
        y[i] = s / low[i, i]
    x = np.zeros(n)
    for i in range(n - 1, -1, -1):
        s = y[i]
        for q in range(i + 1, n):
            s -= low[q, i] * x[q]
        x[i] = s / low[i, i]
    return x, True


@numba.njit(cache=True, error_model="numpy")
def lm_step(jtj: np.ndarray, grad: np.ndarray, x: np.ndarray, lo: np.ndarray, hi: np.ndarray,
            d2: np.ndarray, mu: float) -> tuple[np.ndarray, bool]:
    """Projected damped Gauss–Newton step for min ½‖r‖² on lo ≤ x ≤ hi.

    Variables sitting on a bound with the gradient pushing them outward are held; the others solve
    (JᵀJ + μ·diag(d2)) δ = −Jᵀr (Marquardt scaling by d2, the running max of diag JᵀJ, which makes the
    step invariant to parameter units like scipy's ``x_scale='jac'``); the result is clipped to the box.
    """
    n = x.size
    free = np.empty(n, dtype=np.int64)
    nf = 0
    for i in range(n):
        at_lo = x[i] <= lo[i] and grad[i] > 0.0
        at_hi = x[i] >= hi[i] and grad[i] < 0.0
        if not (at_lo or at_hi):
            free[nf] = i
            nf += 1
    x_new = x.copy()
    if nf == 0:
        return x_new, False
    a = np.empty((nf, nf))
    b = np.empty(nf)
    for i in range(nf):
        fi = free[i]
        b[i] = -grad[fi]
        for j in range(nf):
            a[i, j] = jtj[fi, free[j]]
        a[i, i] += mu * d2[fi]
    dx, ok = chol_solve(a, b, nf)
    if not ok:
        return x_new, False
    for i in range(nf):
        fi = free[i]
        x_new[fi] = min(max(x[fi] + dx[i], lo[fi]), hi[fi])
    return x_new, True


@numba.njit(cache=True, error_model="numpy")
def predicted_reduction(jtj: np.ndarray, grad: np.ndarray, dx: np.ndarray) -> float:
    """Decrease of ½‖r‖² the Gauss–Newton model predicts for the step dx: −(gᵀdx + ½ dxᵀJᵀJ dx)."""
    n = dx.size
    s = 0.0
    for i in range(n):
        s += grad[i] * dx[i]
        for j in range(n):
            s += 0.5 * dx[i] * jtj[i, j] * dx[j]
    return -s


@numba.njit(cache=True, error_model="numpy")
def lm_trial(jtj: np.ndarray, grad: np.ndarray, x: np.ndarray, lo: np.ndarray, hi: np.ndarray,
             d2: np.ndarray, mu: float) -> tuple[np.ndarray, float, float, float, bool]:
    """One damped trial step from x: (x_new, predicted reduction, ‖dx‖², ‖x‖², ok)."""
    x_new, ok = lm_step(jtj, grad, x, lo, hi, d2, mu)
    if not ok:
        return x_new, 0.0, 0.0, 0.0, False
    dx = x_new - x
    step2 = 0.0
    xn2 = 0.0
    for q in range(x.size):
        step2 += dx[q] * dx[q]
        xn2 += x[q] * x[q]
    return x_new, predicted_reduction(jtj, grad, dx), step2, xn2, True


@numba.njit(cache=True, error_model="numpy")
def lm_update(cost: float, cost_new: float, pred: float, step2: float, xn2: float, mu: float, nu: float,
              ftol: float, xtol: float) -> tuple[bool, bool, float, float]:
    """Accept or reject a trial of cost ``cost_new`` (inf for a failed step): (accept, stop, μ, ν).

    Nielsen's damping update: on success μ shrinks by how well the model predicted the decrease; on
    failure it grows geometrically; stop when the decrease or the step is negligible, or μ explodes.
    """
    if cost_new < cost:
        ratio = (cost - cost_new) / pred if pred > 0 else 0.0
        small = cost - cost_new <= ftol * cost or np.sqrt(step2) <= xtol * (xtol + np.sqrt(xn2))
        return True, small, mu * max(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3), 2.0
    mu *= nu
    return False, mu > 1e12, mu, nu * 2.0


@numba.njit(cache=True, error_model="numpy")
def raise_scaling(d2: np.ndarray, jtj: np.ndarray) -> None:
    """Marquardt scaling: d2 = running max of diag JᵀJ (after an accepted step)."""
    for q in range(d2.size):
        d2[q] = max(d2[q], jtj[q, q])
