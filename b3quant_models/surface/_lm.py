"""Small numba kernels shared by the surface fitters: a bounded Levenberg–Marquardt step and bounded
Nelder–Mead bookkeeping.

Why not scipy: the problems are tiny (5 SVI parameters; 3 + one θ per expiry for SSVI) and solved
hundreds of times a day, so scipy's per-iteration Python overhead (SVDs, norms, wrappers) was most of the
surface time on a real B3 session. Each solver keeps its residual model in numba and calls these helpers.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
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


@numba.njit(cache=True)
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


@numba.njit(cache=True)
def predicted_reduction(jtj: np.ndarray, grad: np.ndarray, dx: np.ndarray) -> float:
    """Decrease of ½‖r‖² the Gauss–Newton model predicts for the step dx: −(gᵀdx + ½ dxᵀJᵀJ dx)."""
    n = dx.size
    s = 0.0
    for i in range(n):
        s += grad[i] * dx[i]
        for j in range(n):
            s += 0.5 * dx[i] * jtj[i, j] * dx[j]
    return -s
