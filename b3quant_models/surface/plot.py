"""Diagnostic figure for one underlying: smiles with fitted curves, and the fixed grid as a heatmap."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from b3quant_models.surface.svi import SVI_PARAMS, svi_iv


def plot_surface(
    quotes_df: pd.DataFrame,
    params_df: pd.DataFrame,
    grid_df: pd.DataFrame,
    underlying: str,
    *,
    date: object | None = None,
    k_max: float = 0.5,
    dpi: int = 110,
) -> bytes:
    """PNG bytes: left, IV vs k per expiry (market points, fitted curve); right, tenor × delta IV grid.

    Calls are drawn as circles and puts as triangles when ``is_call`` is present; grid cells flagged as
    extrapolated are hatched and marked with '*'. Uses the object-oriented Agg API (no pyplot), so it is
    thread-safe enough for workers and never switches the caller's global matplotlib backend.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    q = quotes_df[quotes_df["underlying_ticker"] == underlying]
    q = q[np.isfinite(q["k"]) & np.isfinite(q["iv"]) & (q["k"].abs() <= k_max)]
    p = params_df[params_df["underlying_ticker"] == underlying].sort_values("t")
    g = grid_df[grid_df["underlying_ticker"] == underlying]
    if date is None:
        for df in (params_df, quotes_df, grid_df):
            if "trade_date" in df.columns and df["trade_date"].nunique(dropna=True) == 1:
                date = pd.Timestamp(df["trade_date"].dropna().iloc[0]).date()
                break

    fig = Figure(figsize=(13, 5.2))
    ax_l, ax_r = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1]})
    colors = colormaps["viridis"](np.linspace(0.0, 0.9, max(len(p), 1)))
    for color, row in zip(colors, p.itertuples(index=False), strict=False):
        exp = pd.Timestamp(row.expiry)
        pts = q[pd.to_datetime(q["expiry"]) == exp]
        label = f"{exp.date()} ({row.n_quotes}q"
        if "is_call" in pts.columns:
            calls = pts["is_call"].astype(bool).to_numpy()
            ax_l.scatter(pts["k"][calls], 100 * pts["iv"][calls], s=12, color=color, marker="o")
            ax_l.scatter(pts["k"][~calls], 100 * pts["iv"][~calls], s=14, color=color, marker="^")
        else:
            ax_l.scatter(pts["k"], 100 * pts["iv"], s=12, color=color)
        if row.status == "ok":
            lo = min(float(pts["k"].min()), -0.05) if len(pts) else -k_max
            hi = max(float(pts["k"].max()), 0.05) if len(pts) else k_max
            kk = np.linspace(lo - 0.05, hi + 0.05, 200)
            ax_l.plot(kk, 100 * svi_iv(kk, row.t, *(getattr(row, c) for c in SVI_PARAMS)), color=color, lw=1.4)
            label += f", {row.model}, rmse {row.rmse_vol_pts:.2f}" + (", repaired" if row.repaired else "")
        else:
            label += f", not fitted: {row.status}"
        ax_l.plot([], [], color=color, label=label + ")")
    ax_l.set_xlabel("k = ln(K/F)")
    ax_l.set_ylabel("implied vol (%)")
    ax_l.set_title("smiles: market (o call, ^ put) and fit")
    ax_l.grid(alpha=0.3)
    ax_l.legend(fontsize=7, loc="upper center", ncol=1, frameon=False)

    if len(g):
        tenors = sorted(g["tenor_days"].unique())
        deltas = sorted(g["delta"].unique())
        piv = g.pivot_table(index="tenor_days", columns="delta", values="iv", dropna=False).reindex(
            index=tenors, columns=deltas
        )
        flag = g.pivot_table(index="tenor_days", columns="delta", values="extrapolated", aggfunc="max",
                             dropna=False).reindex(index=tenors, columns=deltas)
        vals = 100 * piv.to_numpy(dtype=float)
        im = ax_r.imshow(vals, cmap="magma", aspect="auto", origin="upper")
        fig.colorbar(im, ax=ax_r, label="implied vol (%)")
        finite = vals[np.isfinite(vals)]
        mid = float(np.mean(finite)) if finite.size else 0.0
        for i in range(len(tenors)):
            for j in range(len(deltas)):
                v = vals[i, j]
                extrap = bool(flag.iat[i, j]) if pd.notna(flag.iat[i, j]) else True
                if extrap:
                    ax_r.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//",
                                             edgecolor="grey", lw=0))
                txt = "n/a" if not np.isfinite(v) else f"{v:.1f}" + ("*" if extrap else "")
                ax_r.text(j, i, txt, ha="center", va="center", fontsize=8,
                          color="black" if np.isfinite(v) and v > mid else "white")
        ax_r.set_xticks(range(len(deltas)), [f"{d:.2f}" for d in deltas])
        ax_r.set_yticks(range(len(tenors)), [str(t) for t in tenors])
    ax_r.set_xlabel("call delta (forward Black)")
    ax_r.set_ylabel("tenor (business days)")
    ax_r.set_title("grid IV (%), * = extrapolated")

    fig.suptitle(f"{underlying} implied-vol surface" + (f" — {date}" if date is not None else ""))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
