"""Static-arbitrage checks on a (tenor × call delta) IV grid, in torch so the PINN can use them as
differentiable penalties and the evaluation can count violations with the same code.

On a fixed-delta grid the strike of each cell is explicit: with w = σ²T and z = N⁻¹(Δ),
d1 = −k/√w + √w/2 = z gives k = w/2 − z√w, and the forward-normalised call is c = Δ − e^k N(z − √w).
Butterfly (per tenor): strikes K = e^k increase as delta falls and c is convex and decreasing in K —
discrete slopes (c_{i+1} − c_i)/(K_{i+1} − K_i) increasing, within [−1, 0]. Calendar: total variance at
fixed k does not fall with tenor — w of the next tenor, linearly interpolated in k at this tenor's strikes
(inside its strike range), is ≥ this tenor's w. These are checks on the grid nodes (5 × 5 here), not on a
dense strike grid; between nodes the implied smile is whatever interpolation one chooses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

TOL = 1e-7


def _nodes(iv: torch.Tensor, tenors: Sequence[int], deltas: Sequence[float]):
    """k, K, call price and w per cell, deltas re-ordered to increasing strike (decreasing delta)."""
    order = np.argsort(-np.asarray(deltas, float))
    d = torch.as_tensor(np.asarray(deltas, float)[order], dtype=iv.dtype, device=iv.device)
    tau = torch.as_tensor(np.asarray(tenors, float) / 252.0, dtype=iv.dtype, device=iv.device)[:, None]
    sig = iv[..., order].clamp_min(1e-4)
    sw = sig * tau.sqrt()
    w = sw * sw
    z = torch.special.ndtri(d)
    k = 0.5 * w - z * sw
    kk = torch.exp(k)
    c = d - kk * torch.special.ndtr(z - sw)
    return k, kk, c, w


def _interp(xq: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear interpolation along the last axis (xs ascending); returns (values, inside-range mask)."""
    idx = torch.searchsorted(xs.detach().contiguous(), xq.detach().contiguous()).clamp(1, xs.shape[-1] - 1)
    x0, x1 = xs.gather(-1, idx - 1), xs.gather(-1, idx)
    y0, y1 = ys.gather(-1, idx - 1), ys.gather(-1, idx)
    lam = (xq - x0) / (x1 - x0).clamp_min(1e-12)
    inside = (xq >= xs[..., :1]) & (xq <= xs[..., -1:])
    return y0 + lam * (y1 - y0), inside


def arbitrage_terms(iv: torch.Tensor, tenors: Sequence[int], deltas: Sequence[float]) -> dict[str, torch.Tensor]:
    """Violation sizes (≥ 0, 0 = no arbitrage) per check, for ``iv`` of shape (..., T, D).

    ``strike_order`` (..., T, D−1), ``convexity`` (..., T, D−2), ``slope_bounds`` (..., T, D−1) in call-price
    slope units; ``calendar`` (..., T−1, D) in total variance.
    """
    k, kk, c, w = _nodes(iv, tenors, deltas)
    dk = kk[..., 1:] - kk[..., :-1]
    slope = (c[..., 1:] - c[..., :-1]) / torch.where(dk.abs() < 1e-12, torch.full_like(dk, 1e-12), dk)
    out = {
        "strike_order": torch.relu(-dk),
        "convexity": torch.relu(slope[..., :-1] - slope[..., 1:]),
        "slope_bounds": torch.relu(slope) + torch.relu(-1.0 - slope),
    }
    ks, order = torch.sort(k, dim=-1)  # ascending already when strike order holds; sort keeps interp valid
    ws = w.gather(-1, order)
    w_next, inside = _interp(k[..., :-1, :], ks[..., 1:, :], ws[..., 1:, :])
    out["calendar"] = torch.relu(w[..., :-1, :] - w_next) * inside
    return out


def arbitrage_penalty(iv: torch.Tensor, tenors: Sequence[int], deltas: Sequence[float]) -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
    """(butterfly, calendar) mean squared violations, scaled so 1 ≈ a violation of one vol point."""
    t = arbitrage_terms(iv, tenors, deltas)
    tau = torch.as_tensor(np.asarray(tenors, float)[:-1] / 252.0, dtype=iv.dtype, device=iv.device)[:, None]
    # calendar in vol points at the shorter tenor: dσ ≈ dw / (2 σ T)
    cal = 100 * t["calendar"] / (2 * iv[..., :-1, :].clamp_min(1e-3) * tau)
    fly = 100 * (t["convexity"].square().mean() + t["slope_bounds"].square().mean()
                 + t["strike_order"].square().mean())
    return fly, cal.square().mean()


def count_violations(iv: np.ndarray, tenors: Sequence[int], deltas: Sequence[float], tol: float = TOL
                     ) -> dict[str, int]:
    """Numbers of violated checks over grids ``iv`` (n, T, D); NaN grids are skipped."""
    iv = np.asarray(iv, float)
    ok = np.isfinite(iv).reshape(len(iv), -1).all(axis=1)
    with torch.no_grad():
        t = arbitrage_terms(torch.as_tensor(iv[ok], dtype=torch.float64), tenors, deltas)
    out = {name: int((v > tol).sum()) for name, v in t.items()}
    out["butterfly"] = out["strike_order"] + out["convexity"] + out["slope_bounds"]
    out["grids"] = int(ok.sum())
    out["grids_with_violation"] = int(sum(
        (v.reshape(v.shape[0], -1) > tol).any(dim=1).long() for v in t.values()).clamp_max(1).sum()) if ok.any() else 0
    out["checks"] = int(sum(v[0].numel() for v in t.values()) * ok.sum()) if ok.any() else 0
    return out
