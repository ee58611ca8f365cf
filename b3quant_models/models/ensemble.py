"""Stacking ensemble: weights on the base models' forecasts learned from their out-of-fold predictions only.

Each base model's ``train_model`` keeps, per walk-forward fold, the validation rows predicted by the model
fitted on that fold's training window (``split='oof'``), and the held-out test rows predicted by the final
model (``'test'``). All base models share the folds (same dataset, same split settings), so a row key
(day and series, or day and grid point) has one out-of-fold forecast per model. The stacker is

    forecast = iv + Σ_m w_m · (forecast_m − iv),   w_m ≥ 0   (non-negative least squares, optional ridge)

on the predicted *changes*: persistence is the implicit remaining weight (1 − Σ w), and a base model that
adds nothing gets w = 0 instead of a negative weight that only fits noise. The weights are fitted on the
``oof`` rows only and the ensemble is scored on the ``test`` rows, which neither the base models' tuning nor
the weights have seen (``tests/test_ensemble.py`` perturbs the test forecasts and gets the same weights).

``fold_metrics`` (what the promotion gate compares across candidates) are leave-one-fold-out: fold k's
validation rows are scored with weights fitted on the other folds' oof rows. The weights are a handful of
scalars, so the look-ahead this admits (later folds inform an earlier fold's weights) is small; the test
block stays clean. ``StackingEnsemble`` is a ``ForecastModel`` holding copies of its members (those with a
non-zero weight), so it is promoted and served like any other model.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from b3quant_models.models.base import ANCHOR, ForecastModel
from b3quant_models.models.card import model_card
from b3quant_models.models.metrics import regression_metrics
from b3quant_models.models.registry import load_model

if TYPE_CHECKING:
    from b3quant_models.features.history import SeriesHistory

NAME = "stacking_ensemble"
OPTION_KEY = ["trade_date", "ticker"]
GRID_KEY = ["trade_date", "underlying_ticker", "tenor_bdays", "delta"]
MEMBERS_DIR = "members"
LIMITS = (
    "Only as good as its members: it reweights their forecasts and adds no information of its own.",
    "Weights are fitted on out-of-fold rows of a short history; refit them whenever a member is retrained.",
    "Fold metrics are leave-one-fold-out (a fold's weights saw the other folds' oof rows, later ones included).",
)


def nnls_weights(changes: np.ndarray, target: np.ndarray, alpha: float = 0.0) -> np.ndarray:
    """argmin_w ||changes·w − target||² + alpha·n·||w||², w ≥ 0 (``scipy.optimize.nnls`` on stacked rows)."""
    from scipy.optimize import nnls

    A = np.asarray(changes, float)
    b = np.asarray(target, float)
    if alpha > 0:
        A = np.vstack([A, np.sqrt(alpha * len(b)) * np.eye(A.shape[1])])
        b = np.concatenate([b, np.zeros(A.shape[1])])
    if not len(b) or not A.shape[1]:
        return np.zeros(A.shape[1])
    return nnls(A, b)[0]


def wide_predictions(table: pd.DataFrame, split: str, members: Sequence[str]) -> pd.DataFrame:
    """One row per key of ``split`` with every member's forecast (columns named after the members), the key,
    ``fold``, ``target_date``, ``underlying_ticker``, ``iv``, ``iv_next`` and ``iv_opt``; keys some member
    lacks are dropped (each member must forecast the same rows)."""
    key = GRID_KEY if "tenor_bdays" in table.columns else OPTION_KEY
    t = table[(table["split"] == split) & table["model"].isin(members)]
    wide = t.pivot_table(index=key, columns="model", values="forecast", aggfunc="first")
    wide = wide.reindex(columns=list(members)).dropna()
    carry = [c for c in ("fold", "target_date", "underlying_ticker", "iv", "iv_next", "iv_opt") if c not in key]
    first = t[t["model"] == members[0]].drop_duplicates(key).set_index(key)[carry]
    out = wide.join(first, how="inner").reset_index()
    return out.sort_values(key).reset_index(drop=True)


class StackingEnsemble(ForecastModel):
    """iv + Σ w_m (member_m − iv) over saved member models (see the module docstring)."""

    name = NAME

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.members: dict[str, ForecastModel] = {}

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"method": "nnls", "alpha": 0.0, "weights": {}}

    @classmethod
    def from_members(cls, member_dirs: Mapping[str, str | Path], weights: Mapping[str, float],
                     params: Mapping[str, Any] | None = None) -> StackingEnsemble:
        """An ensemble of the saved models in ``member_dirs`` (label → ``ForecastModel.save`` dir); members
        with weight 0 are left out (nothing to load or serve for them)."""
        w = {m: float(v) for m, v in weights.items() if float(v) > 0}
        missing = sorted(set(w) - set(member_dirs))
        if missing:
            raise KeyError(f"no saved model for ensemble member(s) {missing}")
        ens = cls({**(params or {}), "weights": w})
        ens.members = {m: load_model(member_dirs[m]) for m in w}
        ens.features = list(dict.fromkeys(f for m in ens.members.values() for f in (m.features or [])))
        return ens

    @property
    def weights(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.params["weights"].items()}

    @property
    def history_length(self) -> int:
        return max((m.history_length for m in self.members.values()), default=0)

    @property
    def reads_grid_history(self) -> bool:
        return any(m.reads_grid_history for m in self.members.values())

    def _fit_change(self, X, dy, X_val, dy_val, history=None) -> None:
        raise TypeError(f"{self.name} is fitted from its members' out-of-fold predictions: use train_stacking")

    def _predict_change(self, X: pd.DataFrame, history: SeriesHistory | None = None) -> np.ndarray:
        out = np.zeros(len(X))
        for m, w in self.weights.items():
            out += w * self.members[m].predict_change(X, history=history)
        return out

    def _save(self, directory: Path) -> None:
        for m, model in self.members.items():
            model.save(directory / MEMBERS_DIR / m)

    def _load(self, directory: Path) -> None:
        self.members = {m: load_model(directory / MEMBERS_DIR / m) for m in self.weights}


@dataclass
class StackingResult:
    """Weights, leave-one-fold-out and test metrics, prediction rows and card of one stacking fit."""

    model_name: str
    members: list[str]
    weights: dict[str, float]
    fold_metrics: pd.DataFrame
    test_metrics: dict[str, float]
    metrics_table: pd.DataFrame
    predictions: pd.DataFrame
    model_card: str
    metadata: dict[str, Any]
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    model: StackingEnsemble | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def log_to_mlflow(self, tracking_uri: str, experiment: str, *, tags: dict[str, str] | None = None,
                      run_name: str | None = None) -> str:
        from b3quant_models.models.tracking import log_training_run

        weights = pd.DataFrame({"member": list(self.weights), "weight": list(self.weights.values())})
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = self.model.save(Path(tmp) / "model") if self.model is not None else None
            return log_training_run(
                tracking_uri, experiment,
                params={"model": NAME, **self.settings, "members": ",".join(self.members),
                        **{f"weight.{m}": w for m, w in self.weights.items()}},
                fold_metrics=self.fold_metrics, test_metrics=self.test_metrics, model_dir=model_dir,
                model_card_md=self.model_card, tags={"model": self.model_name, **(tags or {})},
                run_name=run_name or self.model_name,
                extra_tables={"metrics_table": self.metrics_table, "weights": weights, "predictions": self.predictions},
            )


def _rows(w: pd.DataFrame, forecast: np.ndarray, split: str, label: str) -> pd.DataFrame:
    from b3quant_models.models.training import GRID_PREDICTION_COLUMNS, PREDICTION_COLUMNS

    grid = "tenor_bdays" in w.columns
    out = w.copy()
    out["model"], out["split"], out["forecast"] = label, split, np.asarray(forecast, float)
    out["fold"] = out["fold"].astype(np.int64) if split == "oof" else np.int64(-1)
    return out[GRID_PREDICTION_COLUMNS if grid else PREDICTION_COLUMNS]


def _metrics(w: pd.DataFrame, pred: np.ndarray) -> dict[str, float]:
    opt = w["iv_opt"] if w["iv_opt"].notna().any() else None
    return regression_metrics(w["iv_next"], pred, w[ANCHOR], opt)


def train_stacking(
    predictions: pd.DataFrame,
    members: Sequence[str] | None = None,
    *,
    label: str = NAME,
    alpha: float = 0.0,
    member_dirs: Mapping[str, str | Path] | None = None,
) -> StackingResult:
    """Fit the weights on the members' ``oof`` rows of ``predictions`` (the ``model_predictions`` /
    ``grid_model_predictions`` layout), score on their ``test`` rows; with ``member_dirs`` (label → saved
    model) also build the servable :class:`StackingEnsemble`."""
    members = sorted(set(predictions["model"]) - {label}) if members is None else list(members)
    if not members:
        raise ValueError("stacking needs at least one base model's predictions")
    oof, test = wide_predictions(predictions, "oof", members), wide_predictions(predictions, "test", members)
    if not len(oof) or not len(test):
        raise ValueError(f"stacking: {len(oof)} out-of-fold and {len(test)} test rows forecast by every member "
                         f"{members}; each member must cover the same rows")
    change = lambda w: w[members].to_numpy(float) - w[ANCHOR].to_numpy(float)[:, None]  # noqa: E731
    target = lambda w: w["iv_next"].to_numpy(float) - w[ANCHOR].to_numpy(float)  # noqa: E731
    weights = nnls_weights(change(oof), target(oof), alpha)

    fold_rows, oof_pred = [], np.full(len(oof), np.nan)
    for f in sorted(oof["fold"].unique()):
        va = (oof["fold"] == f).to_numpy()
        if va.all():  # a single fold: no other fold to fit on
            wf = weights
        else:
            wf = nnls_weights(change(oof[~va]), target(oof[~va]), alpha)
        oof_pred[va] = oof.loc[va, ANCHOR].to_numpy(float) + change(oof[va]) @ wf
        d = oof.loc[va, "trade_date"]
        fold_rows.append({"fold": int(f), "val_start": str(pd.Timestamp(d.min()).date()),
                          "val_end": str(pd.Timestamp(d.max()).date()), **_metrics(oof[va], oof_pred[va])})
    fold_metrics = pd.DataFrame(fold_rows)

    test_pred = test[ANCHOR].to_numpy(float) + change(test) @ weights
    test_metrics = _metrics(test, test_pred)
    has_opt = bool(test["iv_opt"].notna().any())
    rows = test.assign(_ens=test_pred)
    rows = rows.dropna(subset=["iv_opt"]) if has_opt else rows
    table = [{"forecaster": label, **regression_metrics(rows["iv_next"], rows["_ens"])}]
    table += [{"forecaster": m, **regression_metrics(rows["iv_next"], rows[m])} for m in members]
    table.append({"forecaster": "persistence", **regression_metrics(rows["iv_next"], rows[ANCHOR])})
    if has_opt:
        table.append({"forecaster": "optimal (ground truth)", **regression_metrics(rows["iv_next"], rows["iv_opt"])})
    metrics_table = pd.DataFrame(table)[["forecaster", "n", "rmse_vol_pts", "mae_vol_pts", "bias_vol_pts", "r2"]]

    w = {m: float(v) for m, v in zip(members, weights, strict=True)}
    settings = {"method": "nnls", "alpha": alpha, "oof_rows": len(oof), "test_rows": len(test)}
    period = {
        "weights fitted on": f"out-of-fold rows {pd.Timestamp(oof['trade_date'].min()).date()} .. "
                             f"{pd.Timestamp(oof['trade_date'].max()).date()} ({len(oof)} rows, "
                             f"{oof['fold'].nunique()} folds)",
        "held-out test": f"{pd.Timestamp(test['trade_date'].min()).date()} .. "
                         f"{pd.Timestamp(test['trade_date'].max()).date()} ({len(test)} rows)",
        "weights": ", ".join(f"{m} {v:.3f}" for m, v in w.items()) + f"; persistence {1 - sum(w.values()):.3f}",
    }
    model = StackingEnsemble.from_members(member_dirs, w, settings) if member_dirs is not None else None
    meta = {"name": NAME, "target_mode": "change", "params": {**settings, "weights": w}, "members": members}
    card = model_card(meta, metrics_table, period, members, LIMITS)
    preds = pd.concat([_rows(oof, oof_pred, "oof", label), _rows(test, test_pred, "test", label)], ignore_index=True)
    return StackingResult(
        model_name=label, members=members, weights=w, fold_metrics=fold_metrics, test_metrics=test_metrics,
        metrics_table=metrics_table, predictions=preds, model_card=card,
        metadata={**meta, "test_metrics": test_metrics, "data_period": period,
                  "features": list(model.features or []) if model is not None else []},
        test_start=pd.Timestamp(test["trade_date"].min()), test_end=pd.Timestamp(test["trade_date"].max()),
        model=model, settings=settings,
    )


def weights_json(result: StackingResult) -> str:
    """The weights with persistence's implicit share, for asset metadata and docs."""
    return json.dumps({**result.weights, "persistence (implicit)": 1 - sum(result.weights.values())}, indent=1)
