"""Promotion: the best trained model goes to the BentoML model store, only if it beats production."""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from b3quant_models.models import ForecastModel, load_model

from ..models.assets import TRAINED_MODELS
from ..shared.resources import data_dir

GROUP = "serving"


class BentoModelStore(dg.ConfigurableResource):
    """The BentoML model store the service loads from (``$BENTOML_HOME/models``; default
    ``$B3Q_DATA_DIR/bentoml/models``). Start the service with the same BENTOML_HOME."""

    models_dir: str | None = None

    def path(self) -> str:
        from bento.model_store import default_bentoml_home

        return self.models_dir or str(default_bentoml_home(data_dir()) / "models")


def _rmse_pts(model: ForecastModel, rows: pd.DataFrame) -> float:
    err = model.predict(rows) - rows["iv_next"].to_numpy(float)
    return float(100 * np.sqrt(np.mean(err**2)))


def decide(candidates: dict[str, dict], test_rows: pd.DataFrame, production: ForecastModel | None) -> dict:
    """Pick the candidate with the lowest mean validation-fold RMSE, then promote it only if it beats
    the production model on the same held-out rows (or there is no usable production model)."""
    val = {n: float(c["fold_metrics"]["rmse_vol_pts"].mean()) for n, c in candidates.items()}
    winner = min(val, key=val.get)
    cand_rmse = _rmse_pts(load_model(candidates[winner]["model_dir"]), test_rows)
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
    prod_rmse = _rmse_pts(production, test_rows)
    out["production_test_rmse_vol_pts"] = prod_rmse
    if cand_rmse < prod_rmse:
        return out | {"promote": True, "reason": f"{winner} {cand_rmse:.3f} < production {prod_rmse:.3f} vol pts"}
    return out | {"promote": False, "reason": f"{winner} {cand_rmse:.3f} >= production {prod_rmse:.3f} vol pts: kept"}


@dg.asset(
    group_name=GROUP,
    ins={"training_set": dg.AssetIn(), **{f"{n}_model": dg.AssetIn(f"{n}_model") for n in TRAINED_MODELS}},
    deps=["model_comparison"],
    io_manager_key="model_io_manager",
    compute_kind="bentoml",
)
def promoted_model(
    context: dg.AssetExecutionContext, bento_store: BentoModelStore, training_set: pd.DataFrame, **models
):
    """Promote the validation winner to the BentoML store as ``b3quant_iv_forecaster`` when it beats the
    current production model on the held-out block (backtests will join this gate when they exist)."""
    from bento.forecast import MODEL_TAG, promote
    from bento.model_store import use_model_store

    candidates = {m["model_name"]: m for m in models.values()}
    first = next(iter(candidates.values()))
    test_rows = training_set[training_set["trade_date"].between(first["test_start"], first["test_end"])]
    with use_model_store(bento_store.path()):
        import bentoml
        from bentoml.exceptions import NotFound

        try:
            current = bentoml.models.get(MODEL_TAG)
            production = load_model(Path(current.path) / "model")
            prod_tag = str(current.tag)
        except NotFound:
            production, prod_tag = None, None
        decision = decide(candidates, test_rows, production) | {"production_tag": prod_tag}
        if decision["promote"]:
            w = candidates[decision["winner"]]
            meta = {
                "mlflow_run_id": w["mlflow_run_id"],
                "dagster_run_id": context.run_id,
                "test_metrics": {k: float(v) for k, v in w["test_metrics"].items()},
                "validation_rmse_vol_pts": decision["validation_rmse_vol_pts"][decision["winner"]],
                "features": w["metadata"].get("features", []),
                "data_period": w["metadata"].get("data_period", {}),
                "promotion_reason": decision["reason"],
            }
            decision["new_tag"] = promote(w["model_dir"], labels={"model": decision["winner"]}, metadata=meta)
    context.log.info(f"promotion: {decision['reason']}")
    context.add_output_metadata(
        {
            "promoted": decision["promote"],
            "reason": decision["reason"],
            "winner": decision["winner"],
            "tag": decision.get("new_tag") or prod_tag or "",
            "model_store": dg.MetadataValue.path(bento_store.path()),
        }
    )
    return decision
