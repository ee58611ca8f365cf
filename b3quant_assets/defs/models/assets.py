"""Features, training set, one asset per trained model, and their comparison against baselines."""

import json
from pathlib import Path

import dagster as dg
import pandas as pd

from b3quant_models import settings
from b3quant_models.features import FEATURES_SCHEMA, build_option_features
from b3quant_models.features.dataset import (
    TrainingDataset,
    grid_training_dataset,
    option_training_dataset,
    sample_market_truth,
)
from b3quant_models.models.ensemble import train_stacking, weights_json
from b3quant_models.models.training import train_model
from b3quant_models.schemas import GRID_MODEL_PREDICTIONS, MODEL_PREDICTIONS

from ..ingestion.resources import CotahistFiles
from ..shared.checks import pandera_check_result, pandera_check_spec, png_markdown, table_preview
from ..shared.metadata import per_partition_metadata
from ..shared.partitions import partition_days, single_run_backfill, trading_day_partitions
from ..shared.types import column_schema, table_type
from .resources import MlflowTracking, model_store_dir

GROUP = "models"
LOOKBACK_SESSIONS = 40  # realized vol over 21 sessions and 5-day changes need ~a month of history
HISTORY = dg.TimeWindowPartitionMapping(start_offset=-LOOKBACK_SESSIONS)


@dg.asset(
    partitions_def=trading_day_partitions,
    backfill_policy=single_run_backfill,
    metadata={"partition_expr": "trade_date", **column_schema(FEATURES_SCHEMA)},
    dagster_type=table_type("option_features", FEATURES_SCHEMA),
    ins={
        "option_iv": dg.AssetIn(partition_mapping=HISTORY),
        "iv_surface": dg.AssetIn(partition_mapping=HISTORY),
        "underlying_quotes": dg.AssetIn(partition_mapping=HISTORY),
    },
    check_specs=[pandera_check_spec("option_features")],
    group_name=GROUP,
    compute_kind="pandas",
)
def option_features(
    context: dg.AssetExecutionContext,
    option_iv: pd.DataFrame,
    iv_surface: pd.DataFrame,
    underlying_quotes: pd.DataFrame,
):
    """Point-in-time features per option series and day (only information at that day's close),
    computed with a lookback of prior sessions loaded through the partition mapping."""
    feats = build_option_features(option_iv, iv_surface, underlying_quotes)
    days = pd.to_datetime(partition_days(context))
    out = feats[feats["trade_date"].isin(days)].reset_index(drop=True)
    per_partition_metadata(context, out, lambda g, day: {"rows": len(g), "preview": table_preview(g)})
    yield dg.Output(out, metadata={"rows": len(out), "features": len(out.columns), "preview": table_preview(out)})
    yield pandera_check_result("option_features", FEATURES_SCHEMA, out)


class TrainingConfig(dg.Config):
    """Quick defaults (the demo trains in minutes on 2 cores); raise ``n_trials`` for real work."""

    n_trials: int = 8
    timeout_s: float = 90.0
    seed: int = 7
    n_folds: int = 3
    test_days: int = 40
    val_days: int = 20
    purge_days: int = 1
    min_train_days: int = 60
    shap_sample: int = 1000
    window_sessions: int = 0  # 0: every stored session


class DeepTrainingConfig(TrainingConfig):
    """The torch grid models: the trees' split settings (keep them equal: the stacking ensemble needs the same
    folds) and the network's. Defaults are the full settings (200 epochs, patience 20, hidden 64); the demo
    passes ``DEEP_QUICK``. ``n_trials`` 0: no tuning (one trial costs as much as the folds themselves)."""

    n_trials: int = 0
    shap_sample: int = 0
    max_epochs: int = 200
    patience: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    hidden: int = 64
    lookback: int = 10
    device: str = "auto"  # "cpu", "cuda", "cuda:N"; auto = CUDA when present (bf16 autocast there)

    def params(self) -> dict:
        return {k: getattr(self, k) for k in ("max_epochs", "patience", "batch_size", "lr", "hidden", "lookback",
                                              "device")}


DEEP_QUICK = {"max_epochs": 25, "patience": 5, "hidden": 32, "lookback": 5}  # the demo's (docs/models.md)


@dg.asset(group_name=GROUP, io_manager_key="model_io_manager", compute_kind="pandas")
def training_set(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    cotahist_files: CotahistFiles,
    option_features: pd.DataFrame,
    option_iv: pd.DataFrame,
    surface_grid_points: pd.DataFrame,
) -> TrainingDataset:
    """Features joined to the next session's IV of the same series (the target), over the stored window; on
    the sample market also the ground-truth-optimal forecast (the floor), from the truth file its manifest
    names beside the ingested files. A ``TrainingDataset`` (with the series history, and the grid history
    the deep per-option models forecast through) the model assets use as is."""
    truth = sample_market_truth(cotahist_files.landing())
    ds = option_training_dataset(option_features, option_iv, truth, window_sessions=config.window_sessions,
                                 surface_grid=surface_grid_points)
    context.add_output_metadata(ds.summary())
    return ds


@dg.asset(
    group_name=GROUP,
    ins={"surface_grid_points": dg.AssetIn(), "underlying_quotes": dg.AssetIn()},
    io_manager_key="model_io_manager",
    compute_kind="pandas",
)
def grid_training_set(
    context: dg.AssetExecutionContext, surface_grid_points: pd.DataFrame, underlying_quotes: pd.DataFrame
) -> TrainingDataset:
    """Per surface-grid point (underlying × tenor × delta) and day: features and the next session's IV
    at the same point — the fixed-shape target the sequence and vision models will share.

    Only points inside the quoted range on both days are kept (``grid_training_dataset`` says why)."""
    ds = grid_training_dataset(surface_grid_points, underlying_quotes)
    context.add_output_metadata({k: ds.summary()[k] for k in ("rows", "dropped_extrapolated_rows", "sessions")})
    return ds


def _train(context: dg.AssetExecutionContext, kind: str, name: str, config: TrainingConfig, ds: TrainingDataset,
           mlflow, params: dict | None = None):
    """Train registry model ``kind``; ``name`` labels the run, the saved model, the comparison and prediction rows."""
    context.log.info(f"tuning {name}: {config.n_trials} Optuna trials (timeout {config.timeout_s:.0f} s)"
                     if config.n_trials else f"training {name} with fixed params {params or {}} (not tuned)")
    res = train_model(
        ds, kind, n_trials=config.n_trials, timeout=config.timeout_s, seed=config.seed,
        n_folds=config.n_folds, test_days=config.test_days, val_days=config.val_days, purge_days=config.purge_days,
        min_train_days=config.min_train_days, shap_sample=config.shap_sample, label=name, params=params,
    )  # fmt: skip
    run_id = res.log_to_mlflow(
        mlflow.uri(), mlflow.experiment, tags={"dagster_run_id": context.run_id, "asset": context.asset_key.path[-1]},
        run_name=name,
    )
    model_dir = res.model.save(model_store_dir() / name / run_id)
    (Path(model_dir) / "MODEL_CARD.md").write_text(res.model_card)
    meta = {
        **mlflow.run_metadata(run_id, name),
        "model_dir": dg.MetadataValue.path(settings.data_relative(model_dir)),  # relative: the folder can move
        "model_card": dg.MetadataValue.md(res.model_card),
        "test_metrics": dg.MetadataValue.md(res.metrics_table.to_markdown(index=False)),
        **{f"test_{k}": float(v) for k, v in res.test_metrics.items() if isinstance(v, int | float)},
    }
    for plot_name, png in list(res.plots.items())[:3]:
        meta[f"plot_{plot_name}"] = png_markdown(png, plot_name)
    context.add_output_metadata(meta)
    return {
        "model_name": name,
        "test_start": pd.Timestamp(res.splits.test[0]),
        "test_end": pd.Timestamp(res.splits.test[-1]),
        "mlflow_run_id": run_id,
        "model_dir": settings.data_relative(model_dir),  # read back with settings.resolve_data_path
        "test_metrics": res.test_metrics,
        "metrics_table": res.metrics_table,
        "fold_metrics": res.fold_metrics,
        "best_params": res.best_params,
        "metadata": res.metadata,
        "history_length": res.model.history_length,
        "predictions": res.predictions,  # oof + test rows: the model_predictions tables
    }


def _model_asset(name: str, dataset: str = "training_set", suffix: str = "_model"):
    what = "per option series" if dataset == "training_set" else "per surface-grid point"

    @dg.asset(
        name=f"{name}{suffix}",
        group_name=GROUP,
        ins={"dataset": dg.AssetIn(dataset)},
        io_manager_key="model_io_manager",
        compute_kind=name,
        description=f"{name} next-day IV forecaster ({what}): Optuna-tuned on walk-forward folds, scored on "
        "the held-out test block against persistence (and the optimal floor), logged to MLflow.",
    )
    def _asset(context: dg.AssetExecutionContext, config: TrainingConfig, mlflow: MlflowTracking, dataset):
        label = f"{name}{suffix.removesuffix('_model')}"
        return _train(context, name, label, config, dataset, mlflow) | {"target": what}

    return _asset


def _deep_asset(name: str, dataset: str = "training_set", suffix: str = "_model"):
    what = "per option series" if dataset == "training_set" else "per surface-grid point"
    how = "through the grid (the change at the contract's tenor and delta)" if dataset == "training_set" else ""

    @dg.asset(
        name=f"{name}{suffix}",
        group_name=GROUP,
        ins={"dataset": dg.AssetIn(dataset)},
        io_manager_key="model_io_manager",
        compute_kind="pytorch",
        description=f"{name} torch grid forecaster ({what}{', ' + how if how else ''}): the underlying's last "
        "grids -> next-day grid, early-stopped on the end of each training window; the trees' walk-forward folds "
        "and held-out block, baselines, MLflow run (learning curves per epoch), card and prediction rows.",
    )
    def _asset(context: dg.AssetExecutionContext, config: DeepTrainingConfig, mlflow: MlflowTracking, dataset):
        label = f"{name}{suffix.removesuffix('_model')}"
        return _train(context, name, label, config, dataset, mlflow, config.params()) | {"target": what}

    return _asset


# per option series: what the service predicts and promotion picks; series_ar is the small reference model
# that reads each series' history (the path the sequence models take)
TRAINED_MODELS = ("xgboost", "lightgbm", "series_ar")
GRID_MODELS = ("xgboost",)  # per grid point
DEEP_MODELS = ("lstm", "gru", "pinn")  # torch, b3quant_models.models.deep: per grid point and per option
ENSEMBLE = "stacking_ensemble"


def training_config_for(n_sessions: int) -> dict:
    """Split sizes scaled to a short history (a small demo), capped at the defaults."""
    d = TrainingConfig()
    return {
        "test_days": min(d.test_days, n_sessions // 6),
        "val_days": min(d.val_days, n_sessions // 10),
        "min_train_days": min(d.min_train_days, n_sessions // 4),
    }
model_assets = [_model_asset(n) for n in TRAINED_MODELS]
grid_model_assets = [_model_asset(n, "grid_training_set", "_grid_model") for n in GRID_MODELS]
deep_model_assets = [_deep_asset(n) for n in DEEP_MODELS]
deep_grid_model_assets = [_deep_asset(n, "grid_training_set", "_grid_model") for n in DEEP_MODELS]
DEEP_MODEL_ASSETS = [*(f"{n}_model" for n in DEEP_MODELS), *(f"{n}_grid_model" for n in DEEP_MODELS)]
OPTION_MODEL_ASSETS = [f"{n}_model" for n in (*TRAINED_MODELS, *DEEP_MODELS)]  # the ensemble's members
GRID_MODEL_ASSETS = [f"{n}_grid_model" for n in (*GRID_MODELS, *DEEP_MODELS)]
PROMOTION_CANDIDATES = [*OPTION_MODEL_ASSETS, ENSEMBLE]  # per option: what the service serves
# the tree-style assets (their config is TrainingConfig); every model asset, deep and ensembles included, gets checks
ALL_MODEL_ASSETS = [*(f"{n}_model" for n in TRAINED_MODELS), *(f"{n}_grid_model" for n in GRID_MODELS)]
CHECKED_MODEL_ASSETS = [*OPTION_MODEL_ASSETS, *GRID_MODEL_ASSETS, ENSEMBLE, f"{ENSEMBLE}_grid"]


class EnsembleConfig(dg.Config):
    """``alpha``: ridge penalty on the non-negative weights (0: plain NNLS)."""

    alpha: float = 0.0


def _ensemble_asset(name: str, members: list[str], what: str):
    @dg.asset(
        name=name,
        group_name=GROUP,
        ins={m: dg.AssetIn(m) for m in members},
        io_manager_key="model_io_manager",
        compute_kind="scipy",
        description=f"Stacking ensemble ({what}): non-negative weights on the members' predicted changes fitted "
        "on their out-of-fold rows only, scored on the held-out test rows; a servable model holding its members.",
    )
    def _asset(context: dg.AssetExecutionContext, config: EnsembleConfig, mlflow: MlflowTracking, **trained):
        preds = pd.concat([m["predictions"] for m in trained.values()], ignore_index=True)
        dirs = {m["model_name"]: settings.resolve_data_path(m["model_dir"]) for m in trained.values()}
        res = train_stacking(preds, sorted(dirs), label=name, alpha=config.alpha, member_dirs=dirs)
        run_id = res.log_to_mlflow(mlflow.uri(), mlflow.experiment, run_name=name,
                                   tags={"dagster_run_id": context.run_id, "asset": name})
        model_dir = res.model.save(model_store_dir() / name / run_id)
        (Path(model_dir) / "MODEL_CARD.md").write_text(res.model_card)
        context.add_output_metadata({
            **mlflow.run_metadata(run_id, name),
            "model_dir": dg.MetadataValue.path(settings.data_relative(model_dir)),
            "weights": dg.MetadataValue.json(json.loads(weights_json(res))),
            "model_card": dg.MetadataValue.md(res.model_card),
            "test_metrics": dg.MetadataValue.md(res.metrics_table.to_markdown(index=False)),
            **{f"test_{k}": float(v) for k, v in res.test_metrics.items() if isinstance(v, int | float)},
        })
        own = res.metrics_table["forecaster"].isin([name, "persistence", "optimal (ground truth)"])
        return {
            "model_name": name, "target": what, "test_start": res.test_start, "test_end": res.test_end,
            "mlflow_run_id": run_id, "model_dir": settings.data_relative(model_dir), "test_metrics": res.test_metrics,
            "metrics_table": res.metrics_table[own].reset_index(drop=True), "fold_metrics": res.fold_metrics,
            "best_params": {"weights": res.weights}, "metadata": {**res.metadata, "features": res.model.features},
            "history_length": res.model.history_length, "predictions": res.predictions, "weights": res.weights,
        }

    return _asset


stacking_ensemble = _ensemble_asset(ENSEMBLE, OPTION_MODEL_ASSETS, "per option series")
stacking_ensemble_grid = _ensemble_asset(f"{ENSEMBLE}_grid", GRID_MODEL_ASSETS, "per surface-grid point")
ensemble_assets = [stacking_ensemble, stacking_ensemble_grid]


@dg.asset(
    group_name=GROUP,
    ins={name: dg.AssetIn(name) for name in [*OPTION_MODEL_ASSETS, *GRID_MODEL_ASSETS, ENSEMBLE, f"{ENSEMBLE}_grid"]},
    compute_kind="pandas",
)
def model_comparison(context: dg.AssetExecutionContext, **models) -> pd.DataFrame:
    """Every model's held-out test metrics beside the persistence baseline and the optimal floor."""
    rows = []
    for m in models.values():
        t = m["metrics_table"].copy()
        t.insert(0, "target", m["target"])
        t.insert(1, "trained_model", m["model_name"])
        t["mlflow_run_id"] = m["mlflow_run_id"]
        rows.append(t)
    from b3quant_models.models.comparison import flag_losers

    table = flag_losers(pd.concat(rows, ignore_index=True))  # beats_persistence on each model's own row
    losers = table.loc[table["beats_persistence"].eq(False).fillna(False), "trained_model"].tolist()
    context.add_output_metadata(
        {
            "comparison": dg.MetadataValue.md(table.round(4).to_markdown(index=False)),
            "plot": png_markdown(comparison_plot(table), "held-out RMSE, MAE and bias by model"),
            "losing_to_persistence": ", ".join(losers) if losers else "none",
        }
    )
    return table


def _predictions_asset(name: str, assets: list[str], schema):
    @dg.asset(
        name=name,
        group_name=GROUP,
        ins={a: dg.AssetIn(a) for a in assets},
        check_specs=[pandera_check_spec(name)],
        dagster_type=table_type(name, schema),
        metadata=column_schema(schema),
        compute_kind="pandas",
        description="Out-of-fold (split='oof') and held-out test (split='test') forecasts of every "
        f"{'grid' if 'grid' in name else 'per-option'} model asset and the stacking ensemble, one row per model, "
        "series and decision day: what the ensemble trains on (oof only) and the backtests trade. "
        "Columns: docs/models.md.",
    )
    def _asset(context: dg.AssetExecutionContext, **trained):
        table = pd.concat([m["predictions"] for m in trained.values()], ignore_index=True)
        counts = table.groupby(["model", "split"]).size().rename("rows").reset_index()
        yield dg.Output(table, metadata={"rows": len(table), "by_model": dg.MetadataValue.md(
            counts.to_markdown(index=False)), "preview": table_preview(table)})
        yield pandera_check_result(name, schema, table)

    return _asset


model_predictions = _predictions_asset("model_predictions", [*OPTION_MODEL_ASSETS, ENSEMBLE], MODEL_PREDICTIONS)
grid_model_predictions = _predictions_asset("grid_model_predictions", [*GRID_MODEL_ASSETS, f"{ENSEMBLE}_grid"],
                                            GRID_MODEL_PREDICTIONS)


def comparison_plot(table: pd.DataFrame) -> bytes:
    """Every model (grid models too) beside persistence and the floor: RMSE, MAE and bias on zoomed axes,
    losers to persistence flagged (``b3quant_models.models.comparison``)."""
    from b3quant_models.models.comparison import comparison_plot as plot

    return plot(table)
