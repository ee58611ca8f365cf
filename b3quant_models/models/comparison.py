"""The model comparison as numbers and as a picture: every trained model beside persistence on its own rows.

Each trained model's metrics table holds the model, persistence (today's IV as tomorrow's forecast) and,
on the sample market, the ground-truth-optimal floor, all scored on the same held-out rows. A model that
does not beat persistence on those rows adds nothing a trader could not get for free: it is flagged here,
in the comparison picture, and by the models' non-blocking ``beats_persistence`` asset check.
"""

from __future__ import annotations

import io

import pandas as pd

PERSISTENCE = "persistence"
METRICS = (("rmse_vol_pts", "RMSE"), ("mae_vol_pts", "MAE"), ("bias_vol_pts", "bias"))


def persistence_verdict(metrics_table: pd.DataFrame, model: str | None = None) -> dict:
    """The model's and persistence's test metrics on the same rows, and whether the model beats it (lower
    RMSE). ``model``: the forecaster row (default: the first row that is not a baseline)."""
    t = metrics_table.set_index("forecaster")
    if model is None:
        model = next(f for f in t.index if f != PERSISTENCE and not str(f).startswith("optimal"))
    m, p = t.loc[model], t.loc[PERSISTENCE]
    return {
        "forecaster": model,
        "rmse_vol_pts": float(m["rmse_vol_pts"]),
        "persistence_rmse_vol_pts": float(p["rmse_vol_pts"]),
        "rmse_gain_vs_persistence_pct": float(100 * (1 - m["rmse_vol_pts"] / p["rmse_vol_pts"])),
        "mae_vol_pts": float(m["mae_vol_pts"]),
        "bias_vol_pts": float(m["bias_vol_pts"]),
        "beats_persistence": bool(m["rmse_vol_pts"] < p["rmse_vol_pts"]),
        "test_rows": int(m["n"]),
    }


def flag_losers(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison table (rows: target, trained_model, forecaster, metrics) with ``beats_persistence`` on
    each trained model's own row (True/False) and NA on the baseline rows."""
    out = table.copy()
    out["beats_persistence"] = pd.array([pd.NA] * len(out), dtype="boolean")
    for _, g in out.groupby("trained_model", sort=False):
        pers = g.loc[g["forecaster"] == PERSISTENCE, "rmse_vol_pts"]
        own = g.index[(g["forecaster"] != PERSISTENCE) & ~g["forecaster"].astype(str).str.startswith("optimal")]
        if len(pers):
            out.loc[own, "beats_persistence"] = out.loc[own, "rmse_vol_pts"] < float(pers.iloc[0])
    return out


def _bars(table: pd.DataFrame) -> pd.DataFrame:
    """One bar per trained model, then persistence and the floor once per target (their rows from the first
    trained model: every per-series model is scored on the same test rows, as is every grid model)."""
    rows = []
    for target, g in table.groupby("target", sort=False):
        models = g[g["beats_persistence"].notna()]
        for r in models.itertuples(index=False):
            rows.append({"target": target, "label": r.trained_model, "kind": "model" if r.beats_persistence
                         else "loser", **{m: getattr(r, m) for m, _ in METRICS}})
        first = g[g["trained_model"] == g["trained_model"].iloc[0]]
        for r in first[first["beats_persistence"].isna()].itertuples(index=False):
            kind = "persistence" if r.forecaster == PERSISTENCE else "floor"
            rows.append({"target": target, "label": str(r.forecaster), "kind": kind,
                         **{m: getattr(r, m) for m, _ in METRICS}})
    return pd.DataFrame(rows)


COLORS = {"model": "#4c72b0", "loser": "#c44e52", "persistence": "#8c8c8c", "floor": "#55a868"}


def comparison_plot(table: pd.DataFrame, dpi: int = 80) -> bytes:
    """PNG: one row of panels per target (per option series, per grid point), one panel per metric (RMSE,
    MAE, bias in vol points), a bar per trained model and the baselines. Axes are zoomed to the values (not
    from 0: 2.38 and 2.42 must look different); models losing to persistence are red and marked ✗."""
    from matplotlib.figure import Figure

    if "beats_persistence" not in table.columns:
        table = flag_losers(table)
    bars = _bars(table)
    targets = list(dict.fromkeys(bars["target"]))
    fig = Figure(figsize=(10, 0.9 + 0.42 * len(bars) + 0.5 * len(targets)), dpi=dpi)
    heights = [max((bars["target"] == t).sum(), 1) for t in targets]
    axes = fig.subplots(len(targets), len(METRICS), squeeze=False, gridspec_kw={"height_ratios": heights})
    for i, target in enumerate(targets):
        b = bars[bars["target"] == target].reset_index(drop=True)
        labels = [("✗ " if k == "loser" else "") + lab for lab, k in zip(b["label"], b["kind"], strict=True)]
        for j, (col, name) in enumerate(METRICS):
            ax = axes[i][j]
            v = b[col].to_numpy(float)
            ax.barh(range(len(b)), v, color=[COLORS[k] for k in b["kind"]])
            ax.set_yticks(range(len(b)), labels if j == 0 else [""] * len(b), fontsize=8)
            ax.invert_yaxis()
            lo, hi = float(min(v.min(), 0 if col == "bias_vol_pts" else v.min())), float(v.max())
            if col == "bias_vol_pts":
                lo, hi = min(lo, -abs(hi) * 0.1), max(hi, 0.0)
            pad = max(hi - lo, 1e-3) * 0.25
            ax.set_xlim(lo - pad if col == "bias_vol_pts" or lo - pad > 0 else 0, hi + pad)
            for y, x in enumerate(v):
                ax.annotate(f"{x:.3f}", (x, y), xytext=(2, 0), textcoords="offset points", va="center", fontsize=7)
            if col == "bias_vol_pts":
                ax.axvline(0, color="black", lw=0.6)
            elif (b["kind"] == "persistence").any():  # the line a model must be left of
                ax.axvline(float(b.loc[b["kind"] == "persistence", col].iloc[0]), color=COLORS["persistence"],
                           lw=0.8, ls="--")
            ax.tick_params(axis="x", labelsize=7)
            ax.set_title(f"{name} — {target}" if j == 0 else name, fontsize=9, loc="left" if j == 0 else "center")
    fig.suptitle("Next-day IV forecasts on the held-out block (vol points; red ✗: loses to persistence)",
                 fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
