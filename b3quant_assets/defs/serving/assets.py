"""Promotion: the best trained model goes to the BentoML model store, only if it beats production.

The gate and the store live in the library (``b3quant_models.models.promotion``); this asset wires them.
"""

import dagster as dg

from b3quant_models import settings
from b3quant_models.features.dataset import TrainingDataset
from b3quant_models.models.promotion import promote_best

from ..models.assets import PROMOTION_CANDIDATES
from ..models.resources import MlflowTracking

GROUP = "serving"


class BentoModelStore(dg.ConfigurableResource):
    """The BentoML model store the service loads from (``$BENTOML_HOME/models``; default
    ``$B3Q_DATA_DIR/bentoml/models``). Start the service with the same BENTOML_HOME."""

    models_dir: str | None = None

    def path(self) -> str:
        return self.models_dir or str(settings.bento_models_dir())


@dg.asset(
    group_name=GROUP,
    ins={"training_set": dg.AssetIn(), **{a: dg.AssetIn(a) for a in PROMOTION_CANDIDATES}},
    deps=["model_comparison"],
    io_manager_key="model_io_manager",
    compute_kind="bentoml",
)
def promoted_model(
    context: dg.AssetExecutionContext, bento_store: BentoModelStore, mlflow: MlflowTracking,
    training_set: TrainingDataset, **models
):
    """Promote the validation winner to the BentoML store as ``b3quant_iv_forecaster`` when it beats the
    current production model on the held-out block (backtests will join this gate when they exist); its
    MLflow model version becomes ``champion`` and records the BentoML tag (and the BentoML model the version).
    The metadata links the winner's MLflow run, its registry version, and this Dagster run. Candidates: every
    per-option model (trees, series_ar, the deep models through the grid) and the stacking ensemble; the
    dataset's history carries the grid history the deep ones read."""
    candidates = {m["model_name"]: m for m in models.values()}
    first = next(iter(candidates.values()))
    ds = training_set
    test_rows = ds.frame[ds.frame["trade_date"].between(first["test_start"], first["test_end"])]
    decision = promote_best(candidates, test_rows, bento_store.path(), metadata={"dagster_run_id": context.run_id},
                            history=ds.history, tracking_uri=mlflow.uri())
    context.log.info(f"promotion: {decision['reason']}")
    winner_run = candidates[decision["winner"]]["mlflow_run_id"]
    meta = {
        "promoted": decision["promote"],
        "reason": decision["reason"],
        "winner": decision["winner"],
        "tag": decision.get("new_tag") or decision["production_tag"] or "",
        "model_store": dg.MetadataValue.path(settings.data_relative(bento_store.path())),
        "dagster_run": dg.MetadataValue.dagster_run(context.run_id),
        **mlflow.run_metadata(winner_run),
    }
    if "mlflow_model" in decision:
        reg = decision["mlflow_model"]
        meta["mlflow_model"] = f"models:/{reg['registered_model']}/{reg['version']}"
        meta["mlflow_alias"] = reg["uri"]
    context.add_output_metadata(meta)
    return decision
