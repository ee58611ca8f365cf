"""Sample fitted surfaces on a fixed (tenor × call-delta) grid — the fixed-shape "image" for models.

Across maturities total variance is interpolated linearly in t at fixed k between the fitted slices that
bracket the tenor, which keeps the calendar ordering of the slices. Outside the quoted maturities
implied vol is held flat at fixed k (w scales with t), and such points are flagged.

Delta is the forward (undiscounted) Black call delta Δ = N(d1), d1 = −k/√w + √w/2, w = w(k, T). Because
w depends on k the inversion k(Δ) is a 1-D root per point: d1(k) − N⁻¹(Δ) = 0, solved by vectorized
bisection on a wide bracket (d1 is decreasing in k for arbitrage-free smiles with wing slope < 2).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from b3quant_models.surface.arbitrage import fitted_slices
from b3quant_models.surface.svi import SVI_PARAMS, svi_total_variance

DEFAULT_DELTAS = (0.10, 0.25, 0.50, 0.75, 0.90)
DEFAULT_TENORS = (21, 42, 63, 126, 252)
DAYS_PER_YEAR = 252
GRID_COLUMNS = ["underlying_ticker", "tenor_days", "delta", "t", "k", "iv", "total_variance", "extrapolated",
                "flag_reason"]
_K_BRACKET = (-8.0, 8.0)


def black_call_delta(k, iv, t):
    """Forward (undiscounted) Black call delta N(d1), d1 = −k/(σ√t) + σ√t/2, k = ln(K/F)."""
    sw = np.asarray(iv, dtype=float) * np.sqrt(t)
    return ndtr(-np.asarray(k, dtype=float) / sw + sw / 2)


def _bisect_k(w_fun, z: np.ndarray, n_iter: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Solve d1(k) = z for each z; returns (k, attained) where attained means the bracket had a sign change."""
    lo = np.full(z.shape, _K_BRACKET[0])
    hi = np.full(z.shape, _K_BRACKET[1])

    def f(k: np.ndarray) -> np.ndarray:
        sw = np.sqrt(np.maximum(w_fun(k), 1e-300))
        return -k / sw + 0.5 * sw - z

    f_lo, f_hi = f(lo), f(hi)
    attained = (f_lo > 0) & (f_hi < 0)
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        pos = f(mid) > 0
        lo = np.where(pos, mid, lo)
        hi = np.where(pos, hi, mid)
    return 0.5 * (lo + hi), attained


def _tenor_interp(ts: np.ndarray, ps: list[tuple], t: float) -> tuple[list[tuple[int, float]], str]:
    """[(slice index, weight on its w scaled to t)], flag reason for tenor t given sorted slice times ts."""
    if t < ts[0]:
        return [(0, t / ts[0])], "tenor_before_first_expiry"
    if t > ts[-1]:
        return [(len(ts) - 1, t / ts[-1])], "tenor_after_last_expiry"
    i = int(np.searchsorted(ts, t, side="left"))
    if np.isclose(ts[i], t, rtol=0, atol=1e-12):
        return [(i, 1.0)], ""
    lam = (t - ts[i - 1]) / (ts[i] - ts[i - 1])
    return [(i - 1, 1.0 - lam), (i, lam)], ""


def surface_grid(
    params: pd.DataFrame,
    *,
    deltas: tuple[float, ...] | list[float] = DEFAULT_DELTAS,
    tenors: tuple[int, ...] | list[int] = DEFAULT_TENORS,
    k_margin: float = 0.05,
    days_per_year: int = DAYS_PER_YEAR,
) -> pd.DataFrame:
    """Long-format grid: one row per underlying × tenor (business days) × call delta, fixed shape.

    extrapolated / flag_reason mark points outside the quoted maturities ('tenor_before_first_expiry',
    'tenor_after_last_expiry'), points whose k lies more than ``k_margin`` beyond the quoted k range of a
    slice used for them ('k_beyond_quoted_range'), unattainable deltas ('delta_not_attained'), and
    underlyings without any fitted slice ('no_fitted_slices', iv NaN).
    """
    deltas_a = np.asarray(deltas, dtype=float)
    if np.any((deltas_a <= 0) | (deltas_a >= 1)):
        raise ValueError("deltas must lie in (0, 1)")
    z = ndtri(deltas_a)
    fitted = fitted_slices(params)
    has_range = {"k_min_quoted", "k_max_quoted"} <= set(params.columns)
    rows = []
    for und in sorted(params["underlying_ticker"].dropna().unique()):
        grp = fitted[fitted["underlying_ticker"] == und].drop_duplicates("t")
        ts = grp["t"].to_numpy(dtype=float)
        ps = [tuple(float(getattr(r, c)) for c in SVI_PARAMS) for r in grp.itertuples(index=False)]
        k_lo = grp["k_min_quoted"].to_numpy(dtype=float) if has_range else None
        k_hi = grp["k_max_quoted"].to_numpy(dtype=float) if has_range else None
        for n_days in tenors:
            t = n_days / days_per_year
            if not ps:
                for d in deltas_a:
                    rows.append((und, int(n_days), float(d), t, np.nan, np.nan, np.nan, True, "no_fitted_slices"))
                continue
            parts, tenor_reason = _tenor_interp(ts, ps, t)

            def w_fun(k, parts=parts, ps=ps):
                return sum(c * svi_total_variance(k, *ps[i]) for i, c in parts)

            k, attained = _bisect_k(w_fun, z)
            w = w_fun(k)
            for j, d in enumerate(deltas_a):
                reasons = [tenor_reason] if tenor_reason else []
                if has_range and any(
                    k[j] < k_lo[i] - k_margin or k[j] > k_hi[i] + k_margin for i, _ in parts  # type: ignore[index]
                ):
                    reasons.append("k_beyond_quoted_range")
                if not attained[j]:
                    reasons.append("delta_not_attained")
                ok = attained[j] and w[j] > 0
                rows.append((
                    und, int(n_days), float(d), t, float(k[j]) if ok else np.nan,
                    float(np.sqrt(w[j] / t)) if ok else np.nan, float(w[j]) if ok else np.nan,
                    bool(reasons), ";".join(reasons),
                ))
    out = pd.DataFrame(rows, columns=GRID_COLUMNS)
    if "trade_date" in params.columns and params["trade_date"].nunique(dropna=True) == 1:
        out.insert(0, "trade_date", params["trade_date"].dropna().iloc[0])
    return out


class GridArray(NamedTuple):
    values: np.ndarray  # (n_underlyings, n_tenors, n_deltas)
    underlyings: list[str]
    tenors: list[int]
    deltas: list[float]


def grid_to_array(grid: pd.DataFrame, value: str = "iv", underlyings: list[str] | None = None) -> GridArray:
    """Pivot a :func:`surface_grid` frame to a dense (underlying, tenor, delta) array (NaN if missing).

    Pass ``underlyings`` to fix the first axis across days (missing names become NaN slices).
    """
    unds = sorted(grid["underlying_ticker"].unique()) if underlyings is None else list(underlyings)
    tenors = sorted(int(x) for x in grid["tenor_days"].unique())
    deltas = sorted(float(x) for x in grid["delta"].unique())
    full = pd.MultiIndex.from_product([unds, tenors, deltas], names=["underlying_ticker", "tenor_days", "delta"])
    s = grid.set_index(["underlying_ticker", "tenor_days", "delta"])[value].astype(float).reindex(full)
    return GridArray(s.to_numpy().reshape(len(unds), len(tenors), len(deltas)), unds, tenors, deltas)
