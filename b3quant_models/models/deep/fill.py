"""Masked-cell fill-in on the grid: the SVI re-fit baseline and the experiment that scores it against the VAE.

The baseline is what a desk would do without a model of surfaces: per tenor, fit a raw SVI slice
(``b3quant_models.surface.svi.fit_svi_slice``, the pipeline's own fitter) to the visible cells — each cell's
log-moneyness follows from its delta and IV, k = w/2 − N⁻¹(Δ)√w — and read the missing deltas off the fitted
slice (k(Δ) by the pipeline grid's bisection). A row with fewer than 3 visible cells cannot pin a smile; it
falls back to linear interpolation of total variance in tenor at the same delta (flat IV beyond the ends).
No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import ndtri

MIN_SLICE_CELLS = 3


def _cell_k(iv: np.ndarray, t: float, z: np.ndarray) -> np.ndarray:
    sw = iv * np.sqrt(t)
    return 0.5 * sw * sw - z * sw


def svi_fill(iv: np.ndarray, visible: np.ndarray, tenors: Sequence[int], deltas: Sequence[float]) -> np.ndarray:
    """Grids (n, T, D) with the invisible cells replaced by the SVI re-fit of the visible ones (see module)."""
    from b3quant_models.surface.grid import _bisect_k
    from b3quant_models.surface.svi import fit_svi_slice, svi_total_variance

    iv = np.asarray(iv, float)
    vis = np.asarray(visible, bool) & np.isfinite(iv)
    z = ndtri(np.asarray(deltas, float))
    ts = np.asarray(tenors, float) / 252.0
    out = np.where(vis, iv, np.nan)
    for i in range(len(iv)):
        for j, t in enumerate(ts):
            miss = ~vis[i, j]
            if not miss.any() or vis[i, j].sum() < MIN_SLICE_CELLS:
                continue
            k = _cell_k(iv[i, j, vis[i, j]], t, z[vis[i, j]])
            p = fit_svi_slice(k, iv[i, j, vis[i, j]], t).params
            kq, ok = _bisect_k(lambda kk, p=p: svi_total_variance(kk, *p), z[miss])
            w = svi_total_variance(kq, *p)
            out[i, j, miss] = np.where(ok & (w > 0), np.sqrt(np.maximum(w, 0) / t), np.nan)
        _tenor_fill(out[i], ts)
    return out


def ssvi_fill(iv: np.ndarray, visible: np.ndarray, tenors: Sequence[int], deltas: Sequence[float]) -> np.ndarray:
    """As :func:`svi_fill` but one SSVI surface (``b3quant_models.surface.ssvi.fit_ssvi``: 3 shared
    parameters + θ per tenor) through every row with ≥ 2 visible cells — far fewer free parameters per
    slice, so thin rows do not extrapolate wildly; thinner rows fall back to the tenor interpolation."""
    from b3quant_models.surface.grid import _bisect_k
    from b3quant_models.surface.ssvi import fit_ssvi, ssvi_total_variance

    iv = np.asarray(iv, float)
    vis = np.asarray(visible, bool) & np.isfinite(iv)
    z = ndtri(np.asarray(deltas, float))
    ts = np.asarray(tenors, float) / 252.0
    out = np.where(vis, iv, np.nan)
    for i in range(len(iv)):
        rows = [j for j in range(len(ts)) if vis[i, j].sum() >= 2]
        if rows and (~vis[i, rows]).any():
            slices, theta0 = [], []
            for j in rows:
                v = vis[i, j]
                k = _cell_k(iv[i, j, v], ts[j], z[v])
                slices.append((k, iv[i, j, v], float(ts[j]), np.ones(int(v.sum()))))
                theta0.append(float(np.interp(0.0, np.sort(k), (iv[i, j, v] ** 2 * ts[j])[np.argsort(k)])))
            f = fit_ssvi(slices, np.asarray(theta0))
            for r, j in enumerate(rows):
                miss = ~vis[i, j]
                if not miss.any():
                    continue
                th = float(f.theta[r])

                def w_fun(kk, th=th, f=f):
                    return ssvi_total_variance(kk, th, f.rho, f.eta, f.gamma)

                kq, ok = _bisect_k(w_fun, z[miss])
                w = w_fun(kq)
                out[i, j, miss] = np.where(ok & (w > 0), np.sqrt(np.maximum(w, 0) / ts[j]), np.nan)
        _tenor_fill(out[i], ts)
    return out


def _tenor_fill(grid: np.ndarray, ts: np.ndarray) -> None:
    """In place: NaN cells from total variance linear in tenor at fixed delta (flat IV beyond the ends)."""
    for d in range(grid.shape[1]):
        col = grid[:, d]
        have = np.isfinite(col)
        if have.all() or not have.any():
            continue
        th = ts[have]
        w = np.interp(ts, th, col[have] ** 2 * th)
        flat = np.interp(ts, th, col[have])  # np.interp holds the end values: flat IV beyond the ends
        inside = (ts >= th[0]) & (ts <= th[-1])
        col[~have] = np.where(inside, np.sqrt(w / ts), flat)[~have]


def random_cell_mask(quoted: np.ndarray, frac: float, seed: int = 0) -> np.ndarray:
    """Hide ``frac`` of each grid's quoted cells (at least one, never all): returns the visible mask."""
    rng = np.random.default_rng(seed)
    q = np.asarray(quoted, bool)
    vis = q.copy()
    flat_q, flat_v = q.reshape(len(q), -1), vis.reshape(len(q), -1)
    for i in range(len(q)):
        cells = np.flatnonzero(flat_q[i])
        if len(cells) < 2:
            continue
        n_hide = min(max(1, round(frac * len(cells))), len(cells) - 1)
        flat_v[i, rng.choice(cells, n_hide, replace=False)] = False
    return vis


def fill_in_experiment(model, iv: np.ndarray, quoted: np.ndarray, tenors: Sequence[int], deltas: Sequence[float],
                       *, frac: float = 0.3, seed: int = 0) -> dict[str, float]:
    """Hide ``frac`` of the quoted cells, fill them with the VAE (``model.fill_masked``), the per-slice SVI
    re-fit and the SSVI re-fit; RMSE/MAE in vol points on the hidden cells all three filled."""
    vis = random_cell_mask(quoted, frac, seed)
    hidden = np.asarray(quoted, bool) & ~vis
    vae = model.fill_masked(np.where(vis, iv, 0.3), vis)
    fills = {"vae": vae, "svi": svi_fill(iv, vis, tenors, deltas), "ssvi": ssvi_fill(iv, vis, tenors, deltas)}
    ok = hidden & np.isfinite(iv) & np.logical_and.reduce([np.isfinite(f) for f in fills.values()])
    out: dict[str, float] = {"hidden_cells": int(hidden.sum()), "scored_cells": int(ok.sum()), "mask_frac": frac}
    for name, f in fills.items():
        e = (f - iv)[ok]
        out[f"{name}_rmse_vol_pts"] = 100 * float(np.sqrt(np.mean(e ** 2)))
        out[f"{name}_mae_vol_pts"] = 100 * float(np.mean(np.abs(e)))
    return out
