"""Optuna hyper-parameter search on the walk-forward validation folds (never the test block)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from b3quant_models.models.registry import MODEL_REGISTRY, make_model
from b3quant_models.models.splits import WalkForwardSplits, walk_forward_splits

if TYPE_CHECKING:
    import optuna  # imported in tune(): a second-long import that only tuning needs

    from b3quant_models.features.history import SeriesHistory


def fold_masks(dates: Any, splits: WalkForwardSplits, target_dates: Any = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Boolean row masks (train, val) per fold for a per-row ``dates`` array.

    With ``target_dates`` a training row is also dropped when its label's date reaches the validation block
    (possible when an underlying skipped sessions, so its "next session" lies beyond the purge gap).
    """
    d = pd.to_datetime(pd.Series(np.asarray(dates))).to_numpy("datetime64[ns]")
    td = None if target_dates is None else pd.to_datetime(pd.Series(np.asarray(target_dates))).to_numpy(
        "datetime64[ns]")
    out = []
    for tr, va in splits.folds:
        m = np.isin(d, tr)
        if td is not None:
            m &= td < va[0]
        out.append((m, np.isin(d, va)))
    return out


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def tune(
    model_name: str,
    X: pd.DataFrame,
    y: Any,
    dates: Any,
    *,
    n_trials: int = 20,
    timeout: float | None = None,
    seed: int = 0,
    splits: WalkForwardSplits | None = None,
    features: list[str] | None = None,
    n_jobs: int = 1,
    split_kwargs: dict[str, Any] | None = None,
    target_dates: Any = None,
    history: SeriesHistory | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Minimise the mean validation RMSE over walk-forward folds; returns (best_params, study_summary).

    Each fold's running mean is reported as an intermediate value so the MedianPruner can stop a trial
    whose early folds already lag the median trial. TPESampler(seed) + single-process optimisation +
    deterministic models make the search reproducible when ``timeout`` does not cut it short. ``X``/``y``/
    ``dates`` must contain only rows dated before the test block (pass ``splits`` or ``split_kwargs``).
    ``history`` (a ``SeriesHistory`` covering X's rows) reaches models that look back, so a validation fold
    arrives with its series' past (the rows before the fold, which the fold's training mask leaves out).
    """
    import optuna

    y = np.asarray(y, dtype=float)
    splits = splits or walk_forward_splits(dates, **(split_kwargs or {}))
    masks = fold_masks(dates, splits, target_dates)
    cls = MODEL_REGISTRY[model_name]

    def objective(trial: optuna.Trial) -> float:
        params = cls.suggest_params(trial)
        scores = []
        for i, (tr, va) in enumerate(masks):
            model = make_model(model_name, params, features=features, seed=seed, n_jobs=n_jobs)
            model.fit(X.loc[tr], y[tr], history=history)
            scores.append(_rmse(model.predict(X.loc[va], history=history), y[va]))
            trial.report(float(np.mean(scores)), step=i)
            if trial.should_prune():
                trial.set_user_attr("fold_rmse", scores)
                raise optuna.TrialPruned()
        trial.set_user_attr("fold_rmse", scores)
        return float(np.mean(scores))

    optuna.logging.set_verbosity(logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
        study_name=f"{model_name}_walk_forward",
    )
    has_params = _has_space(cls)
    study.optimize(objective, n_trials=n_trials if has_params else 1, timeout=timeout, n_jobs=1)
    best = study.best_trial
    trials = [
        {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
         "fold_rmse": t.user_attrs.get("fold_rmse")}
        for t in study.trials
    ]
    summary = {
        "model": model_name,
        "metric": "mean walk-forward validation RMSE (IV decimal)",
        "n_trials": len(study.trials),
        "n_complete": sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials),
        "n_pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        "best_value": float(best.value),
        "best_value_vol_pts": 100.0 * float(best.value),
        "best_trial": best.number,
        "best_fold_rmse": best.user_attrs.get("fold_rmse"),
        "sampler": f"TPESampler(seed={seed})",
        "pruner": "MedianPruner(n_startup_trials=3)",
        "n_folds": len(splits),
        "trials": trials,
    }
    return dict(best.params), summary


def _has_space(cls: type) -> bool:
    """Whether the model has hyper-parameters (persistence has none → a single evaluation trial)."""
    import optuna

    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return bool(cls.suggest_params(probe.ask()))
