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
from b3quant_models.features.dataset import FLOOR, TrainingDataset, dataset_from_frame
from b3quant_models.features.history import GRID_SERIES_KEY, OPTION_SERIES_KEY, SeriesHistory
from b3quant_models.models.base import ANCHOR, ForecastModel, default_features
from b3quant_models.models.card import DEFAULT_LIMITS, model_card
from b3quant_models.models.metrics import metrics_by, regression_metrics
from b3quant_models.models.registry import make_model
from b3quant_models.models.splits import WalkForwardSplits, walk_forward_splits
from b3quant_models.models.tuning import tune

OPTIMAL = FLOOR
PREDICTION_COLUMNS = ["model", "split", "fold", "trade_date", "target_date", "ticker", "underlying_ticker", "iv",
                      "iv_next", "forecast", "iv_opt"]
GRID_PREDICTION_COLUMNS = ["model", "split", "fold", "trade_date", "target_date", "underlying_ticker",
                           "tenor_bdays", "delta", "iv", "iv_next", "forecast", "iv_opt"]


def _prediction_rows(rows: pd.DataFrame, forecast: Any, split: str, fold: int) -> pd.DataFrame:
    """The contract's columns (less ``model``) for evaluated ``rows`` and their forecasts."""
    grid = "ticker" not in rows.columns
    out = pd.DataFrame({"split": split, "fold": np.int64(fold),
                        "trade_date": pd.to_datetime(rows["trade_date"]).astype("datetime64[ns]").to_numpy()})
    td = rows["target_date"] if "target_date" in rows.columns else pd.Series(pd.NaT, index=rows.index)
    out["target_date"] = pd.to_datetime(td).astype("datetime64[ns]").to_numpy()
    if grid:
        out["underlying_ticker"] = rows["underlying_ticker"].astype(str).to_numpy()
        out["tenor_bdays"] = rows["tenor_days"].astype(np.int64).to_numpy()
        out["delta"] = rows["delta"].astype(float).to_numpy()
    else:
        out["ticker"] = rows["ticker"].astype(str).to_numpy()
        und = rows["underlying_ticker"] if "underlying_ticker" in rows.columns else pd.Series(None, index=rows.index)
        out["underlying_ticker"] = und.astype(object).to_numpy()
    out["iv"] = rows[ANCHOR].to_numpy(float)
    out["iv_next"] = rows["iv_next"].to_numpy(float)
    out["forecast"] = np.asarray(forecast, dtype=float)
    out["iv_opt"] = rows[OPTIMAL].to_numpy(float) if OPTIMAL in rows.columns else np.nan
    return out


def prediction_table(model: str, parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Out-of-fold (``split='oof'``, the fold's validation rows predicted by the model fitted on that fold's
    training window) and held-out test (``'test'``, fold -1, the final model) forecasts of one model, in the
    column order of the ``model_predictions`` / ``grid_model_predictions`` tables."""
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    df.insert(0, "model", model)
    cols = GRID_PREDICTION_COLUMNS if "tenor_bdays" in df.columns else PREDICTION_COLUMNS
    return df[cols]


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
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)  # prediction_table: oof and test rows

    def log_to_mlflow(self, tracking_uri: str, experiment: str, *, tags: dict[str, str] | None = None,
                      run_name: str | None = None, register_as: str | None = None) -> str:
        """Log this result with :func:`log_training_run`, the model as an MLflow model registered as
        ``register_as`` (default ``b3q-<run name>``, ``""``: not registered); returns the run_id."""
        from b3quant_models.models.mlflow_models import registered_model_name
        from b3quant_models.models.tracking import log_training_run

        if register_as is None:
            register_as = registered_model_name(run_name or self.model_name)

        with tempfile.TemporaryDirectory() as tmp:
            model_dir = self.model.save(Path(tmp) / "model")
            return log_training_run(
                tracking_uri, experiment,
                params={"model": self.model_name, **self.best_params, **self.settings},
                study_summary=self.study_summary, fold_metrics=self.fold_metrics, test_metrics=self.test_metrics,
                dataset_df=self.dataset, plots=self.plots, model_dir=model_dir, model_card_md=self.model_card,
                tags={"model": self.model_name, **(tags or {})}, run_name=run_name or self.model_name,
                curves=self.model.learning_curves(),
                extra_tables={"metrics_table": self.metrics_table, "fold_metrics": self.fold_metrics,
                              "splits": self.split_table.astype(str), "predictions": self.predictions},
                model=self.model, model_sample=self.dataset.head(200), register_as=register_as or None,
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


def _plot_curves(curves: dict[str, list[float]], name: str) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.4))
    ax = fig.add_subplot()
    for label, values in curves.items():
        ax.plot(range(len(values)), values, label=label, lw=1.4)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (vol pts²)")
    ax.set_yscale("log")
    ax.set_title(f"{name}: learning curve of the final fit")
    ax.legend()
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
    truth: pd.DataFrame | None = None,
    feature_columns: list[str] | None = None,
    **kwargs: Any,
) -> TrainingResult:
    """:func:`train_model` on ``assemble_dataset(features_df, targets_df, truth)``.

    ``features_df``: output of ``build_option_features`` (or ``build_grid_features``); ``targets_df``: of
    ``build_targets`` (``build_grid_targets``); ``truth`` (sample market): rows keyed (trade_date, ticker)
    with ``iv_next_optimal``. The history (for models that look back) is every row of ``features_df``.
    """
    frame = assemble_dataset(features_df, targets_df, truth)
    feats = list(feature_columns) if feature_columns else _default_feature_columns(frame)
    key = OPTION_SERIES_KEY if "ticker" in frame.columns else GRID_SERIES_KEY
    dataset = dataset_from_frame(frame, feats, SeriesHistory.from_rows(features_df, key))
    return train_model(dataset, model_name, **kwargs)


def train_model(
    dataset: TrainingDataset,
    model_name: str,
    *,
    n_trials: int = 20,
    timeout: float | None = None,
    seed: int = 0,
    n_folds: int = 3,
    test_days: int = 20,
    purge_days: int = 1,
    min_train_days: int = 40,
    val_days: int | None = None,
    n_jobs: int = 1,
    shap_sample: int = 2000,
    limits: tuple[str, ...] = DEFAULT_LIMITS,
    label: str | None = None,
    params: dict[str, Any] | None = None,
) -> TrainingResult:
    """Tune on walk-forward folds, refit on all pre-test data, score the held-out test block.

    ``shap_sample=0`` skips the explanation. Test rows are never used for tuning or fitting, and training
    rows whose target date falls inside the evaluated block are dropped (purge). The result keeps each
    fold's validation predictions (out-of-fold) and the test predictions in :func:`prediction_table`'s
    layout, labelled ``label`` (default: the model name). ``params`` are fixed settings under the tuned ones
    (the deep models' epochs, device ...); ``n_trials=0`` skips tuning (the models' defaults and ``params``),
    which the deep models use: one trial of theirs costs as much as the folds themselves.
    """
    df = dataset.frame
    feats = list(dataset.feature_columns)
    history = dataset.history
    has_opt = dataset.has_floor
    splits = walk_forward_splits(df["trade_date"], n_folds=n_folds, test_days=test_days, purge_days=purge_days,
                                 min_train_days=min_train_days, val_days=val_days)
    test_start = splits.test[0]
    dev_mask = _train_mask(df, splits.final_train, test_start)
    dev = df.loc[dev_mask].reset_index(drop=True)
    y_dev = dev["iv_next"].to_numpy(float)
    if n_trials > 0:
        best_params, summary = tune(model_name, dev, y_dev, dev["trade_date"], n_trials=n_trials, timeout=timeout,
                                    seed=seed, splits=splits, features=feats, n_jobs=n_jobs, history=history,
                                    target_dates=dev["target_date"] if "target_date" in dev.columns else None)
    else:
        best_params, summary = {}, {"model": model_name, "n_trials": 0, "note": "not tuned: fixed params"}
    best_params = {**(params or {}), **best_params}

    fold_rows, oof = [], []
    for i, (tr_dates, va_dates) in enumerate(splits.folds):
        tr = _train_mask(dev, tr_dates, va_dates[0])
        va = dev["trade_date"].isin(va_dates).to_numpy()
        m = make_model(model_name, best_params, features=feats, seed=seed, n_jobs=n_jobs)
        m.fit(dev.loc[tr], y_dev[tr], history=history)
        p = m.predict(dev.loc[va], history=history)
        oof.append(_prediction_rows(dev.loc[va], p, "oof", i))
        opt = dev.loc[va, OPTIMAL] if has_opt else None
        fold_rows.append({"fold": i, "val_start": str(pd.Timestamp(va_dates[0]).date()),
                          "val_end": str(pd.Timestamp(va_dates[-1]).date()),
                          **regression_metrics(y_dev[va], p, dev.loc[va, ANCHOR], opt)})
    fold_metrics = pd.DataFrame(fold_rows)

    model = make_model(model_name, best_params, features=feats, seed=seed, n_jobs=n_jobs)
    model.fit(dev, y_dev, history=history)
    test = df.loc[df["trade_date"].isin(splits.test)].reset_index(drop=True)
    keep = [c for c in (*KEY_COLUMNS, *GRID_KEY_COLUMNS, "underlying_ticker", "target_date") if c in test.columns]
    preds = test[list(dict.fromkeys(keep))].copy()
    preds[ANCHOR] = test[ANCHOR].to_numpy(float)
    preds["iv_next"] = test["iv_next"].to_numpy(float)
    preds["pred"] = model.predict(test, history=history)
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
    if curves := model.learning_curves():
        plots["learning_curve.png"] = _plot_curves(curves, model_name)
    importance = None
    if shap_sample > 0 and len(test):
        sample = test.sample(n=min(shap_sample, len(test)), random_state=seed)
        explained = model.explain(sample, history=history)
        if explained is not None:
            importance, explain_plots = explained
            plots.update(explain_plots)
    predictions = prediction_table(label or model_name, [*oof, _prediction_rows(test, preds["pred"], "test", -1)])

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
        predictions=predictions,
    )
