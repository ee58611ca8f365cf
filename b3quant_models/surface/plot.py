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


def plot_surface_thumbnail(
    quotes_df: pd.DataFrame,
    params_df: pd.DataFrame,
    grid_df: pd.DataFrame,
    underlying: str,
    *,
    date: object | None = None,
    k_max: float = 0.5,
    max_expiries: int = 6,
    dpi: int = 64,
) -> bytes:
    """A small PNG (about 20 kB) of :func:`plot_surface`'s two panels, cheap enough to draw for every day and
    main underlying of a backfill: left, the smiles (market points, fitted curve) of the nearest
    ``max_expiries`` expiries; right, the tenor × delta grid IV with extrapolated cells marked '*'.
    No legend, no per-slice labels and a fixed layout (``tight_layout`` alone costs as much as the drawing)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    q = quotes_df[quotes_df["underlying_ticker"] == underlying]
    q = q[np.isfinite(q["k"]) & np.isfinite(q["iv"]) & (q["k"].abs() <= k_max)]
    p = params_df[params_df["underlying_ticker"] == underlying].sort_values("t").head(max_expiries)
    g = grid_df[grid_df["underlying_ticker"] == underlying]
    fig = Figure(figsize=(8, 2.9), dpi=dpi)
    fig.subplots_adjust(left=0.07, right=0.97, bottom=0.17, top=0.85, wspace=0.25)
    ax_l, ax_r = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    colors = colormaps["viridis"](np.linspace(0.0, 0.9, max(len(p), 1)))
    q_exp = pd.to_datetime(q["expiry"])
    for color, row in zip(colors, p.itertuples(index=False), strict=False):
        pts = q[q_exp == pd.Timestamp(row.expiry)]
        ax_l.scatter(pts["k"], 100 * pts["iv"], s=6, color=color)
        if row.status == "ok":
            kk = np.linspace(-k_max * 0.6, k_max * 0.6, 60)
            if len(pts):
                kk = np.linspace(min(float(pts["k"].min()), -0.05) - 0.03, max(float(pts["k"].max()), 0.05) + 0.03, 60)
            ax_l.plot(kk, 100 * svi_iv(kk, row.t, *(getattr(row, c) for c in SVI_PARAMS)), color=color, lw=1.2,
                      label=f"{round(row.t * 252)}bd")
    ax_l.set_xlabel("k = ln(K/F)", fontsize=8)
    ax_l.set_ylabel("IV (%)", fontsize=8)
    ax_l.tick_params(labelsize=7)
    ax_l.grid(alpha=0.3)
    if (p["status"] == "ok").any():  # the fitted curves carry the labels
        ax_l.legend(fontsize=6, loc="upper center", ncol=min(len(p), 6), frameon=False, handlelength=1)
    if len(g):
        tenors, deltas = sorted(g["tenor_days"].unique()), sorted(g["delta"].unique())
        piv = g.pivot_table(index="tenor_days", columns="delta", values="iv", dropna=False).reindex(
            index=tenors, columns=deltas)
        ext = g.pivot_table(index="tenor_days", columns="delta", values="extrapolated", aggfunc="max",
                            dropna=False).reindex(index=tenors, columns=deltas)
        vals = 100 * piv.to_numpy(dtype=float)
        ax_r.imshow(vals, cmap="magma", aspect="auto", origin="upper")
        finite = vals[np.isfinite(vals)]
        mid = float(np.mean(finite)) if finite.size else 0.0
        for i in range(len(tenors)):
            for j in range(len(deltas)):
                v, e = vals[i, j], ext.iat[i, j]
                star = "*" if (pd.isna(e) or bool(e)) else ""
                ax_r.text(j, i, "n/a" if not np.isfinite(v) else f"{v:.0f}{star}", ha="center", va="center",
                          fontsize=6, color="black" if np.isfinite(v) and v > mid else "white")
        ax_r.set_xticks(range(len(deltas)), [f"{d:.2f}" for d in deltas])
        ax_r.set_yticks(range(len(tenors)), [str(t) for t in tenors])
    ax_r.tick_params(labelsize=7)
    ax_r.set_xlabel("call delta", fontsize=8)
    ax_r.set_ylabel("tenor (bd)", fontsize=8)
    when = f" {date}" if date is not None else ""
    fig.suptitle(f"{underlying}{when}: smiles and grid IV (%, * extrapolated)", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
