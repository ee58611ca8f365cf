"""Markdown model card: what the model is, what it was trained on, how it scores, where it fails."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

DEFAULT_LIMITS = (
    "Forecasts one trading day ahead only; errors compound if chained.",
    "Trained on a single market regime window; retrain and re-check against persistence after regime shifts.",
    "Rows need a valid IV today; illiquid series (IV from close prices, wide spreads) are noisier targets.",
    "On the sample market the optimal floor is the simulator's conditional expectation; real data has none.",
)


def _table(df: pd.DataFrame, floatfmt: str = "{:.4g}") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = [floatfmt.format(v) if isinstance(v, float) else str(v) for v in r.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_card(
    metadata: Mapping[str, Any],
    metrics_table: pd.DataFrame,
    data_period: Mapping[str, Any],
    features: Sequence[str],
    limits: Sequence[str] = DEFAULT_LIMITS,
    *,
    importance: pd.DataFrame | None = None,
) -> str:
    """Markdown card. ``metrics_table``: one row per forecaster (model, persistence, optimal) on the test block."""
    name = metadata.get("name", "model")
    params = metadata.get("params", {}) or {}
    lines = [
        f"# Model card — {name}",
        "",
        "## What it predicts",
        "Next trading day's implied volatility (decimal) of an option series / surface-grid point, "
        f"learned as the change from today's IV (target_mode = `{metadata.get('target_mode', 'change')}`). "
        "Errors are in vol points (0.01 IV = 1 vol point).",
        "",
        "## Training data",
        *[f"- **{k}**: {v}" for k, v in data_period.items()],
        *[f"- **{k}**: {metadata[k]}" for k in ("train_start", "train_end", "n_train", "seed") if k in metadata],
        "",
        "## Parameters",
        *([f"- `{k}` = {v}" for k, v in params.items()] or ["- (none)"]),
        "",
        "## Held-out test performance (vs baselines)",
        _table(metrics_table) if len(metrics_table) else "(no test rows)",
        "",
        f"## Features ({len(features)})",
        ", ".join(f"`{f}`" for f in features),
        "",
    ]
    if importance is not None and len(importance):
        top = importance.head(10)[["feature", "mean_abs_shap_vol_pts"]]
        lines += ["## Top features (mean |SHAP|, vol points)", _table(top), ""]
    lines += ["## Limits", *[f"- {x}" for x in limits], "",
              "## Versions", *[f"- {k}: {v}" for k, v in metadata.items() if k.endswith("version")], ""]
    return "\n".join(lines)
