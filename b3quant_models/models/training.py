"""End-to-end training: splits → Optuna tuning → refit → held-out test vs baselines → SHAP → card.

Returns everything the Dagster training asset logs and displays, without touching Dagster or MLflow
itself (``TrainingResult.log_to_mlflow`` does the logging when asked).
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from b3quant_models.features import FEATURE_COLUMNS, GRID_FEATURE_COLUMNS, GRID_KEY_COLUMNS, KEY_COLUMNS
from b3quant_models.models.base import ANCHOR, ForecastModel, default_features
from b3quant_models.models.card import DEFAULT_LIMITS, model_card
from b3quant_models.models.explain import importance_bar_png, shap_summary
from b3quant_models.models.metrics import metrics_by, regression_metrics
from b3quant_models.models.registry import make_model
from b3quant_models.models.splits import WalkForwardSplits, walk_forward_splits
from b3quant_models.models.tuning import tune

OPTIMAL = "iv_next_optimal"


@dataclass
class TrainingResult:
    """Outputs of :func:`train_and_evaluate` (tables are pandas, plots are PNG bytes)."""

    model_name: str
    model: ForecastModel
    best_params: dict[str, Any]
    study_summary: dict[str, Any]
    splits: WalkForwardSplits
    split_table: pd.DataFrame
    fold_metrics: pd.DataFrame
    test_metrics: dict[str, float]
    metrics_table: pd.DataFrame
    test_predictions: pd.DataFrame
    daily_test_metrics: pd.DataFrame
    shap_importance: pd.DataFrame | None
    plots: dict[str, bytes]
    model_card: str
    metadata: dict[str, Any]
    dataset: pd.DataFrame
    feature_columns: list[str]
    settings: dict[str, Any] = field(default_factory=dict)

    def log_to_mlflow(self, tracking_uri: str, experiment: str, *, tags: dict[str, str] | None = None,
                      run_name: str | None = None) -> str:
        """Log this result with :func:`log_training_run`; returns the run_id."""
        from b3quant_models.models.tracking import log_training_run

        with tempfile.TemporaryDirectory() as tmp:
            model_dir = self.model.save(Path(tmp) / "model")
            return log_training_run(
                tracking_uri, experiment,
                params={"model": self.model_name, **self.best_params, **self.settings},
                study_summary=self.study_summary, fold_metrics=self.fold_metrics, test_metrics=self.test_metrics,
                dataset_df=self.dataset, plots=self.plots, model_dir=model_dir, model_card_md=self.model_card,
                tags={"model": self.model_name, **(tags or {})}, run_name=run_name or self.model_name,
                extra_tables={"metrics_table": self.metrics_table, "fold_metrics": self.fold_metrics,
                              "splits": self.split_table.astype(str)},
            )


def _keys(features_df: pd.DataFrame, targets_df: pd.DataFrame) -> list[str]:
    for keys in (KEY_COLUMNS, GRID_KEY_COLUMNS):
        if set(keys) <= set(features_df.columns) and set(keys) <= set(targets_df.columns):
            return list(keys)
    raise KeyError("features and targets share neither (trade_date, ticker) nor the grid key")


def _default_feature_columns(df: pd.DataFrame) -> list[str]:
    for cols in (FEATURE_COLUMNS, GRID_FEATURE_COLUMNS):
        if set(cols) <= set(df.columns):
            return list(cols)
    return default_features(df.drop(columns=[OPTIMAL, "iv_next_true", "true_iv"], errors="ignore"))


def assemble_dataset(features_df: pd.DataFrame, targets_df: pd.DataFrame, truth: pd.DataFrame | None = None
                     ) -> pd.DataFrame:
    """Inner-join features and targets on the row key; add the optimal forecast when ``truth`` is given."""
    keys = _keys(features_df, targets_df)
    t = targets_df[[*keys, "iv_next", *(c for c in ("target_date",) if c in targets_df.columns)]]
    df = features_df.merge(t, on=keys, how="inner")
    df = df.loc[np.isfinite(df["iv_next"].astype(float))]
    if truth is not None:
        tk = ["trade_date", "ticker"]
        if not (set(tk) <= set(truth.columns) and set(tk) <= set(df.columns)):
            raise KeyError("truth must be keyed (trade_date, ticker) like the option feature table")
        tr = truth[[*tk, OPTIMAL]].copy()
        tr["trade_date"] = pd.to_datetime(tr["trade_date"]).astype("datetime64[ns]")
        df = df.merge(tr.drop_duplicates(tk), on=tk, how="left")
    return df.sort_values(keys).reset_index(drop=True)


def _train_mask(df: pd.DataFrame, train_dates: np.ndarray, eval_start: np.datetime64) -> np.ndarray:
    """Rows dated in ``train_dates`` whose target is also known before the evaluation block starts."""
    m = df["trade_date"].isin(train_dates).to_numpy()
    if "target_date" in df.columns:
        m &= (df["target_date"] < eval_start).to_numpy()
    return m


def _plot_daily(daily: pd.DataFrame, has_opt: bool, name: str) -> bytes:
    from matplotlib.figure import Figure  # lazy: matplotlib is a second-long import the code location skips

    fig = Figure(figsize=(9, 3.6))
    ax = fig.add_subplot()
    ax.plot(daily["trade_date"], daily["rmse_vol_pts"], label=name, lw=1.6)
    ax.plot(daily["trade_date"], daily["rmse_persistence_vol_pts"], label="persistence", lw=1.2, ls="--")
    if has_opt and "rmse_optimal_vol_pts" in daily:
        ax.plot(daily["trade_date"], daily["rmse_optimal_vol_pts"], label="optimal", lw=1.0, ls=":")
    ax.set_ylabel("RMSE (vol pts)")
    ax.set_title("Held-out test: RMSE by trade date")
    ax.legend()
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _plot_scatter(pred: pd.DataFrame) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 4.5))
    ax = fig.add_subplot()
    dy_true = 100 * (pred["iv_next"] - pred[ANCHOR])
    dy_pred = 100 * (pred["pred"] - pred[ANCHOR])
    ax.scatter(dy_pred, dy_true, s=4, alpha=0.4)
    lim = float(np.nanpercentile(np.abs(dy_true), 99)) if len(pred) else 1.0
    ax.plot([-lim, lim], [-lim, lim], color="k", lw=0.8)
    ax.set_xlabel("predicted change (vol pts)")
    ax.set_ylabel("realized change (vol pts)")
    ax.set_title("Test: predicted vs realized IV change")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def train_and_evaluate(
    features_df: pd.DataFrame,
    targets_df: pd.DataFrame,
    model_name: str,
    *,
    n_trials: int = 20,
    timeout: float | None = None,
    seed: int = 0,
    truth: pd.DataFrame | None = None,
    feature_columns: list[str] | None = None,
    n_folds: int = 3,
    test_days: int = 20,
    purge_days: int = 1,
    min_train_days: int = 40,
    val_days: int | None = None,
    n_jobs: int = 1,
    shap_sample: int = 2000,
    limits: tuple[str, ...] = DEFAULT_LIMITS,
) -> TrainingResult:
    """Tune on walk-forward folds, refit on all pre-test data, score the held-out test block.

    ``features_df``: output of ``build_option_features`` (or ``build_grid_features``); ``targets_df``: of
    ``build_targets`` (``build_grid_targets``); ``truth`` (sample market): rows keyed (trade_date, ticker)
    with ``iv_next_optimal``. ``shap_sample=0`` skips SHAP. Test rows are never used for tuning or fitting,
    and training rows whose target date falls inside the evaluated block are dropped (purge).
    """
    df = assemble_dataset(features_df, targets_df, truth)
    feats = list(feature_columns) if feature_columns else _default_feature_columns(df)
    has_opt = OPTIMAL in df.columns and df[OPTIMAL].notna().any()
    splits = walk_forward_splits(df["trade_date"], n_folds=n_folds, test_days=test_days, purge_days=purge_days,
                                 min_train_days=min_train_days, val_days=val_days)
    test_start = splits.test[0]
    dev_mask = _train_mask(df, splits.final_train, test_start)
    dev = df.loc[dev_mask].reset_index(drop=True)
    y_dev = dev["iv_next"].to_numpy(float)
    best_params, summary = tune(model_name, dev, y_dev, dev["trade_date"], n_trials=n_trials, timeout=timeout,
                                seed=seed, splits=splits, features=feats, n_jobs=n_jobs,
                                target_dates=dev["target_date"] if "target_date" in dev.columns else None)

    fold_rows = []
    for i, (tr_dates, va_dates) in enumerate(splits.folds):
        tr = _train_mask(dev, tr_dates, va_dates[0])
        va = dev["trade_date"].isin(va_dates).to_numpy()
        m = make_model(model_name, best_params, features=feats, seed=seed, n_jobs=n_jobs)
        m.fit(dev.loc[tr], y_dev[tr])
        p = m.predict(dev.loc[va])
        opt = dev.loc[va, OPTIMAL] if has_opt else None
        fold_rows.append({"fold": i, "val_start": str(pd.Timestamp(va_dates[0]).date()),
                          "val_end": str(pd.Timestamp(va_dates[-1]).date()),
                          **regression_metrics(y_dev[va], p, dev.loc[va, ANCHOR], opt)})
    fold_metrics = pd.DataFrame(fold_rows)

    model = make_model(model_name, best_params, features=feats, seed=seed, n_jobs=n_jobs)
    model.fit(dev, y_dev)
    test = df.loc[df["trade_date"].isin(splits.test)].reset_index(drop=True)
    keep = [c for c in (*KEY_COLUMNS, *GRID_KEY_COLUMNS, "underlying_ticker", "target_date") if c in test.columns]
    preds = test[list(dict.fromkeys(keep))].copy()
    preds[ANCHOR] = test[ANCHOR].to_numpy(float)
    preds["iv_next"] = test["iv_next"].to_numpy(float)
    preds["pred"] = model.predict(test)
    if has_opt:
        preds[OPTIMAL] = test[OPTIMAL].to_numpy(float)
    test_metrics = regression_metrics(preds["iv_next"], preds["pred"], preds[ANCHOR],
                                      preds[OPTIMAL] if has_opt else None)

    # same rows for all three forecasters (rows without an optimal value are excluded when it exists)
    rows = preds.dropna(subset=[OPTIMAL]) if has_opt else preds
    table = [{"forecaster": model_name, **regression_metrics(rows["iv_next"], rows["pred"])},
             {"forecaster": "persistence", **regression_metrics(rows["iv_next"], rows[ANCHOR])}]
    if has_opt:
        table.append({"forecaster": "optimal (ground truth)", **regression_metrics(rows["iv_next"], rows[OPTIMAL])})
    metrics_table = pd.DataFrame(table)[["forecaster", "n", "rmse_vol_pts", "mae_vol_pts", "bias_vol_pts", "r2"]]
    daily = metrics_by(preds, "trade_date", optimal=OPTIMAL if has_opt else None)

    plots = {"test_rmse_by_date.png": _plot_daily(daily, has_opt, model_name),
             "test_pred_vs_actual.png": _plot_scatter(preds)}
    importance = None
    if shap_sample > 0 and getattr(model, "booster", None) is not None and len(test):
        sample = test.sample(n=min(shap_sample, len(test)), random_state=seed)
        importance, beeswarm = shap_summary(model, sample)
        plots["shap_beeswarm.png"] = beeswarm
        plots["shap_importance.png"] = importance_bar_png(importance)

    period = {
        "data": f"{pd.Timestamp(df['trade_date'].min()).date()} .. {pd.Timestamp(df['trade_date'].max()).date()}",
        "tuning/validation": "; ".join(
            f"fold {i}: {pd.Timestamp(v[0]).date()}..{pd.Timestamp(v[-1]).date()}" for i, (_, v) in enumerate(splits)
        ),
        "held-out test": f"{pd.Timestamp(splits.test[0]).date()} .. {pd.Timestamp(splits.test[-1]).date()}",
        "purge (sessions)": purge_days,
        "rows (train / test)": f"{len(dev)} / {len(test)}",
    }
    settings = {"n_trials": n_trials, "timeout": timeout, "seed": seed, "n_folds": n_folds, "test_days": test_days,
                "purge_days": purge_days, "min_train_days": min_train_days, "n_features": len(feats)}
    metadata = {**model.metadata(), "best_params": best_params, "settings": settings,
                "test_metrics": test_metrics, "data_period": period}
    card = model_card(model.metadata(), metrics_table, period, feats, limits, importance=importance)
    return TrainingResult(
        model_name=model_name, model=model, best_params=best_params, study_summary=summary, splits=splits,
        split_table=splits.describe(), fold_metrics=fold_metrics, test_metrics=test_metrics,
        metrics_table=metrics_table, test_predictions=preds, daily_test_metrics=daily, shap_importance=importance,
        plots=plots, model_card=card, metadata=metadata, dataset=df, feature_columns=feats, settings=settings,
    )
