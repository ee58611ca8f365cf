"""Promotion: which trained model serves, and loading what serves.

The gate (``decide``) picks the candidate with the lowest mean validation-fold RMSE and promotes it only
when it beats the production model on the same held-out rows. ``promote_best`` runs the gate against the
BentoML model store and writes the winner there; ``load_forecaster`` is what the service starts with (the
promoted model, else the persistence baseline, flagged). The store itself is ``model_store`` (BentoML,
imported inside its functions). Used by the Dagster ``promoted_model`` asset and the BentoML service.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from b3quant_models.models.base import ForecastModel
from b3quant_models.models.baselines import PersistenceModel
from b3quant_models.models.mlflow_models import crown_champion, ensure_model_version
from b3quant_models.models.model_store import (
    MODEL_NAME,
    MODEL_TAG,
    promote,
    promoted_tag,
    stored_model,
    use_model_store,
)
from b3quant_models.models.registry import load_model
from b3quant_models.settings import resolve_data_path

if TYPE_CHECKING:
    from b3quant_models.features.history import SeriesHistory

__all__ = [
    "BASELINE_VERSION",
    "MODEL_NAME",
    "MODEL_TAG",
    "LoadedForecaster",
    "decide",
    "load_forecaster",
    "promote",
    "promote_best",
    "promoted_tag",
    "use_model_store",
]

logger = logging.getLogger(__name__)

BASELINE_VERSION = "persistence-baseline"


@dataclass
class LoadedForecaster:
    model: ForecastModel
    version: str
    name: str
    note: str | None


def load_forecaster() -> LoadedForecaster:
    """The promoted model from the BentoML store, else the persistence baseline (flagged in responses)."""
    found = stored_model()
    if found is None:
        return LoadedForecaster(
            PersistenceModel(), BASELINE_VERSION, PersistenceModel.name,
            f"no promoted model '{MODEL_TAG}' in the BentoML model store: serving the persistence baseline "
            "(tomorrow's IV = today's)",
        )
    model = load_model(found.model_dir)
    logger.info("serving %s (%s)", found.tag, model.name)
    return LoadedForecaster(model, found.tag, model.name, None)


def _rmse_pts(model: ForecastModel, rows: pd.DataFrame, history: SeriesHistory | None = None) -> float:
    err = model.predict(rows, history=history) - rows["iv_next"].to_numpy(float)
    return float(100 * np.sqrt(np.mean(err**2)))


def decide(candidates: dict[str, dict], test_rows: pd.DataFrame, production: ForecastModel | None,
           history: SeriesHistory | None = None) -> dict:
    """Pick the candidate with the lowest mean validation-fold RMSE, then promote it only if it beats
    the production model on the same held-out rows (or there is no usable production model). ``history``
    (the training dataset's) reaches models that look back."""
    val = {n: float(c["fold_metrics"]["rmse_vol_pts"].mean()) for n, c in candidates.items()}
    winner = min(val, key=val.get)
    cand_rmse = _rmse_pts(load_model(resolve_data_path(candidates[winner]["model_dir"])), test_rows, history)
    out = {
        "winner": winner,
        "validation_rmse_vol_pts": val,
        "winner_test_rmse_vol_pts": cand_rmse,
        "test_rows": len(test_rows),
    }
    if production is None:
        return out | {"promote": True, "reason": "no production model in the store"}
    missing = sorted(set(production.features or []) - set(test_rows.columns))
    if missing:
        return out | {"promote": True, "reason": f"production model needs features no longer built: {missing[:5]}"}
    prod_rmse = _rmse_pts(production, test_rows, history)
    out["production_test_rmse_vol_pts"] = prod_rmse
    if cand_rmse < prod_rmse:
        return out | {"promote": True, "reason": f"{winner} {cand_rmse:.3f} < production {prod_rmse:.3f} vol pts"}
    return out | {"promote": False, "reason": f"{winner} {cand_rmse:.3f} >= production {prod_rmse:.3f} vol pts: kept"}


def promote_best(
    candidates: dict[str, dict], test_rows: pd.DataFrame, models_dir: str | Path,
    metadata: dict[str, Any] | None = None, history: SeriesHistory | None = None,
    tracking_uri: str | None = None,
) -> dict:
    """Run ``decide`` against the production model in the store at ``models_dir`` and promote the winner
    when it wins. ``candidates``: training results by model name (``model_dir``, relative to
    ``$B3Q_DATA_DIR`` or absolute, ``fold_metrics``, ``test_metrics``, ``mlflow_run_id``, ``metadata``);
    ``metadata`` is stored with a promoted model; ``history`` (the training dataset's) reaches models that
    look back. With ``tracking_uri`` the winner's MLflow model version (``b3q-<winner>``) gets the
    ``champion`` alias and the new BentoML tag, and the BentoML model records that version.
    Returns the decision with ``production_tag`` and, when promoted, ``new_tag`` (and ``mlflow_model``)."""
    with use_model_store(models_dir):
        current = stored_model()
        production = load_model(current.model_dir) if current else None
        decision = decide(candidates, test_rows, production, history)
        decision["production_tag"] = current.tag if current else None
        if decision["promote"]:
            w = candidates[decision["winner"]]
            meta = {
                "mlflow_run_id": w["mlflow_run_id"],
                **(metadata or {}),
                "test_metrics": {k: float(v) for k, v in w["test_metrics"].items()},
                "validation_rmse_vol_pts": decision["validation_rmse_vol_pts"][decision["winner"]],
                "features": w["metadata"].get("features", []),
                "data_period": w["metadata"].get("data_period", {}),
                "promotion_reason": decision["reason"],
            }
            registered = None
            if tracking_uri:
                registered = ensure_model_version(tracking_uri, decision["winner"], w["mlflow_run_id"])
                meta |= {"mlflow_registered_model": registered[0], "mlflow_model_version": registered[1]}
            decision["new_tag"] = promote(resolve_data_path(w["model_dir"]), labels={"model": decision["winner"]},
                                          metadata=meta)
            if registered:
                decision["mlflow_model"] = crown_champion(
                    tracking_uri, *registered, bentoml_tag=decision["new_tag"],
                    tags={k: v for k, v in (metadata or {}).items() if k == "dagster_run_id"},
                )
    return decision
