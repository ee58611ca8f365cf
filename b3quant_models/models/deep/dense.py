"""A dense (k × T) surface from a 5 × 5 (tenor × delta) grid, its Dupire residuals, and violation counts.

Why: the node checks in ``arbitrage`` say nothing about what happens between nodes, and a forecast grid is
used between nodes (per-option forecasts interpolate it). Here a grid is turned into a continuous surface
and checked on a dense collocation set, differentiably, so the same code is the PINN's physics loss and the
evaluation's dense counts.

Surface: per tenor, total variance w(k) through the nodes (k_i, w_i) (k from delta and IV as in
``arbitrage``) by a cubic Hermite spline with three-point slopes (C¹, w' and w'' in closed form); across
tenors w linear in T at fixed k (as the pipeline's ``surface_grid``). Collocation: ``n_sub`` points per
node interval on every tenor, and the same k's on the mid-tenor slice between adjacent tenors (inside
both tenors' k ranges).

Physics (Dupire / Gatheral's local variance in total-variance form): σ²_loc(k, T) = ∂_T w / g(k) with
g = (1 − k w'/(2w))² − w'²/4 (1/w + 1/4) + w''/2. A surface admits a non-negative local variance — the
Dupire PDE has a solution reproducing it — iff ∂_T w ≥ 0 (no calendar arbitrage) and g ≥ 0 (no butterfly
arbitrage) everywhere; the residuals are relu(−g) and relu(−∂_T w) on the collocation set. This is the
"PDE residual" of a physics-informed surface model in the spirit of arXiv 2209.10771, evaluated on the
forecast surface rather than on a price grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

G_TOL = 1e-6  # g below −G_TOL is a butterfly violation
W_TOL = 1e-7  # ∂_T w·ΔT below −W_TOL (total variance) is a calendar violation


def _nodes_kw(iv: torch.Tensor, tenors: Sequence[int], deltas: Sequence[float]):
    tau = torch.as_tensor(np.asarray(tenors, float) / 252.0, dtype=iv.dtype, device=iv.device)
    z = torch.special.ndtri(torch.as_tensor(np.asarray(deltas, float), dtype=iv.dtype, device=iv.device))
    sw = iv.clamp_min(1e-4) * tau.sqrt()[:, None]
    w = sw * sw
    k = 0.5 * w - z * sw
    k, order = torch.sort(k, dim=-1)
    return k, w.gather(-1, order), tau


def _slopes(k: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    h = (k[..., 1:] - k[..., :-1]).clamp_min(1e-9)
    d = (w[..., 1:] - w[..., :-1]) / h
    inner = (h[..., 1:] * d[..., :-1] + h[..., :-1] * d[..., 1:]) / (h[..., 1:] + h[..., :-1])
    return torch.cat([d[..., :1], inner, d[..., -1:]], dim=-1)


def hermite(kq: torch.Tensor, k: torch.Tensor, w: torch.Tensor, m: torch.Tensor):
    """(w, w', w'', inside) of the Hermite spline through (k, w) with slopes m at queries ``kq`` (…, P)."""
    idx = torch.searchsorted(k.detach().contiguous(), kq.detach().contiguous()).clamp(1, k.shape[-1] - 1) - 1
    k0, k1 = k.gather(-1, idx), k.gather(-1, idx + 1)
    w0, w1 = w.gather(-1, idx), w.gather(-1, idx + 1)
    m0, m1 = m.gather(-1, idx), m.gather(-1, idx + 1)
    h = (k1 - k0).clamp_min(1e-9)
    u = (kq - k0) / h
    u2, u3 = u * u, u * u * u
    val = (2 * u3 - 3 * u2 + 1) * w0 + (u3 - 2 * u2 + u) * h * m0 + (-2 * u3 + 3 * u2) * w1 + (u3 - u2) * h * m1
    d1 = ((6 * u2 - 6 * u) * w0 + (3 * u2 - 4 * u + 1) * h * m0 + (-6 * u2 + 6 * u) * w1
          + (3 * u2 - 2 * u) * h * m1) / h
    d2 = ((12 * u - 6) * w0 + (6 * u - 4) * h * m0 + (-12 * u + 6) * w1 + (6 * u - 2) * h * m1) / (h * h)
    inside = (kq >= k[..., :1] - 1e-12) & (kq <= k[..., -1:] + 1e-12)
    return val, d1, d2, inside


def g_function(k: torch.Tensor, w: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """Gatheral's g(k); negative means a negative risk-neutral density (butterfly arbitrage)."""
    ws = w.clamp_min(1e-9)
    return (1 - k * w1 / (2 * ws)) ** 2 - w1 * w1 / 4 * (1 / ws + 0.25) + w2 / 2


def dense_terms(iv: torch.Tensor, tenors: Sequence[int], deltas: Sequence[float], n_sub: int = 8
                ) -> dict[str, torch.Tensor]:
    """Residuals on the dense collocation set for grids ``iv`` (…, T, D) (see module docstring).

    ``g`` (…, T, P) on the tenors, ``g_mid`` (…, T−1, P) on the mid-tenor slices, ``dtw`` (…, T−1, P) =
    w_{T+1}(k) − w_T(k) at tenor T's collocation k (total variance), with ``mid_inside`` marking the k's inside
    the next tenor's node range; P = (D − 1)·n_sub + 1.
    """
    k, w, _tau = _nodes_kw(iv, tenors, deltas)
    m = _slopes(k, w)
    u = torch.arange(n_sub, dtype=iv.dtype, device=iv.device) / n_sub
    kq = (k[..., :-1, None] + u * (k[..., 1:, None] - k[..., :-1, None])).flatten(-2)
    kq = torch.cat([kq, k[..., -1:]], dim=-1)  # (…, T, P)
    wv, w1, w2, _ = hermite(kq, k, w, m)
    g = g_function(kq, wv, w1, w2)
    # next tenor evaluated at this tenor's collocation k
    kn, wn, mn = k[..., 1:, :], w[..., 1:, :], m[..., 1:, :]
    kq0 = kq[..., :-1, :]
    wv_n, w1_n, w2_n, inside = hermite(kq0, kn, wn, mn)
    dtw = wv_n - wv[..., :-1, :]
    g_mid = g_function(kq0, 0.5 * (wv[..., :-1, :] + wv_n), 0.5 * (w1[..., :-1, :] + w1_n),
                       0.5 * (w2[..., :-1, :] + w2_n))
    return {"g": g, "g_mid": g_mid, "dtw": dtw, "mid_inside": inside, "k": kq}


def dupire_residual(iv: torch.Tensor, tenors: Sequence[int], deltas: Sequence[float], n_sub: int = 8
                    ) -> torch.Tensor:
    """Mean squared negative part of g (dense, tenors and mid-tenors) and of ∂_T w (in vol points at the
    shorter tenor) — 0 iff the forecast surface has a non-negative Dupire local variance on the set."""
    t = dense_terms(iv, tenors, deltas, n_sub)
    ins = t["mid_inside"].to(iv.dtype)
    tau = torch.as_tensor(np.asarray(tenors, float)[:-1] / 252.0, dtype=iv.dtype, device=iv.device)[:, None]
    sig = iv.mean(dim=-1, keepdim=True)[..., :-1, :].clamp_min(1e-3)
    cal = 100 * torch.relu(-t["dtw"]) / (2 * sig * tau) * ins
    fly = torch.relu(-t["g"]).square().mean() + (torch.relu(-t["g_mid"]) * ins).square().mean()
    return fly + cal.square().mean()


def count_dense_violations(iv: np.ndarray, tenors: Sequence[int], deltas: Sequence[float], n_sub: int = 8
                           ) -> dict[str, int]:
    """Dense butterfly (g < −G_TOL on tenors and mid-tenors) and calendar (∂_T w < −W_TOL) counts over grids
    (n, T, D); NaN grids are skipped."""
    iv = np.asarray(iv, float)
    ok = np.isfinite(iv).reshape(len(iv), -1).all(axis=1)
    if not ok.any():
        return {"dense_butterfly": 0, "dense_calendar": 0, "dense_grids_with_violation": 0, "dense_points": 0,
                "grids": 0}
    with torch.no_grad():
        t = dense_terms(torch.as_tensor(iv[ok], dtype=torch.float64), tenors, deltas, n_sub)
    ins = t["mid_inside"]
    fly = (t["g"] < -G_TOL).flatten(1).sum(1) + ((t["g_mid"] < -G_TOL) & ins).flatten(1).sum(1)
    cal = ((t["dtw"] < -W_TOL) & ins).flatten(1).sum(1)
    points = t["g"][0].numel() + int(ins[0].numel())
    return {"dense_butterfly": int(fly.sum()), "dense_calendar": int(cal.sum()),
            "dense_grids_with_violation": int(((fly + cal) > 0).sum()), "dense_points": int(points * ok.sum()),
            "grids": int(ok.sum())}
