"""SHAP explanations for tree models (exact TreeSHAP), global and per prediction.

Contributions explain the predicted *change* iv_next − iv (IV decimal): for a row, base value + Σ
contributions = predicted change, and the forecast level = today's iv + that change.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from b3quant_models.models.base import ForecastModel

if TYPE_CHECKING:
    import shap

# shap and matplotlib are imported lazily: importing b3quant_models.models (e.g. in the serving process)
# should not pay shap's multi-second import.


def _explainer(model: ForecastModel) -> shap.TreeExplainer:
    import shap

    booster = getattr(model, "booster", None)
    if booster is None:
        raise TypeError(f"model '{model.name}' has no fitted tree booster to explain")
    return shap.TreeExplainer(booster)


def shap_values(model: ForecastModel, X: pd.DataFrame) -> tuple[np.ndarray, float]:
    """(n_rows × n_features SHAP matrix, base value) for the model's own feature matrix."""
    explainer = _explainer(model)
    Xm = model._matrix(X)
    vals = np.asarray(explainer.shap_values(Xm), dtype=float)
    base = float(np.asarray(explainer.expected_value).reshape(-1)[0])
    return vals, base


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def importance_bar_png(importance: pd.DataFrame, top: int = 20) -> bytes:
    """Horizontal bar chart of mean |SHAP| in vol points."""
    from matplotlib.figure import Figure

    imp = importance.head(top).iloc[::-1]
    fig = Figure(figsize=(7, 0.3 * len(imp) + 1.2))
    ax = fig.add_subplot()
    ax.barh(imp["feature"], imp["mean_abs_shap_vol_pts"], color="#3b6ea5")
    ax.set_xlabel("mean |SHAP| on the predicted IV change (vol points)")
    ax.set_title("Global feature importance")
    return _png(fig)


def shap_summary(model: ForecastModel, X_sample: pd.DataFrame, *, top: int = 20) -> tuple[pd.DataFrame, bytes]:
    """(importance table sorted by mean |SHAP|, PNG of the SHAP beeswarm) on a sample of rows.

    Use a sample from the evaluation period (a few thousand rows is plenty; TreeSHAP is exact).
    """
    import matplotlib.pyplot as plt
    import shap

    vals, _ = shap_values(model, X_sample)
    feats = list(model.features or [])
    mean_abs = np.abs(vals).mean(axis=0)
    imp = pd.DataFrame({"feature": feats, "mean_abs_shap": mean_abs, "mean_abs_shap_vol_pts": 100 * mean_abs,
                        "mean_shap_vol_pts": 100 * vals.mean(axis=0)})
    imp = imp.sort_values("mean_abs_shap", ascending=False).reset_index(drop=True)
    fig = plt.figure(figsize=(8, 0.35 * min(top, len(feats)) + 1.5))
    try:
        shap.summary_plot(vals, model._matrix(X_sample), feature_names=feats, max_display=top, show=False)
        return imp, _png(fig)
    finally:
        plt.close(fig)


def explain_one(model: ForecastModel, x_row: pd.Series | pd.DataFrame, *, with_base: bool = False
                ) -> dict[str, float]:
    """Feature → SHAP contribution (IV decimal) to one row's predicted change, largest |value| first.

    With ``with_base`` the dict also holds ``_base_value`` (the mean predicted change) so that
    ``_base_value`` + Σ contributions = predicted change.
    """
    X = x_row.to_frame().T if isinstance(x_row, pd.Series) else x_row
    if len(X) != 1:
        raise ValueError("explain_one takes exactly one row")
    vals, base = shap_values(model, X)
    pairs = sorted(zip(model.features or [], vals[0].tolist(), strict=True), key=lambda kv: -abs(kv[1]))
    out = {k: float(v) for k, v in pairs}
    if with_base:
        out["_base_value"] = base
    return out
