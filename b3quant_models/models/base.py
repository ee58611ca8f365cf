"""The common model interface: every forecaster (baselines, trees, later torch models) looks the same
to the training asset, a stacking ensemble and the BentoML service.

Contract: ``fit(X, y, history=...)`` takes the feature frame and the next-day IV *level*; ``predict(X,
history=...)`` returns the next-day IV *level*. Learned models fit the *change* ``y − X['iv']`` internally:
the level is ~99% explained by today's IV, so regressing the change lets trees spend their capacity on what
moves, and a model that learns nothing degrades gracefully to persistence instead of to a coarse level grid.

Row-wise models (``history_length == 0``) read only their rows. A model that looks back (a sequence or
surface model) says how far with ``history_length`` and receives a
:class:`~b3quant_models.features.history.SeriesHistory`, from which it cuts each row's window; every caller
(tuning, training, comparison, promotion, the service) passes the history it was given, so a validation fold
or a request arrives with its series' past. ``explain`` replaces testing for a ``booster`` attribute.
"""

from __future__ import annotations

import datetime as dt
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from b3quant_models.features.history import SeriesHistory

MODEL_FORMAT_VERSION = "1"
METADATA_FILE = "metadata.json"
ANCHOR = "iv"  # today's IV; the persistence forecast and the base the change is added to
_NOT_FEATURES = frozenset({
    "trade_date", "target_date", "ticker", "underlying_ticker", "underlying_isin", "option_type", "expiry",
    "strike", "iv_next", "iv_change", "fold",
})


def default_features(X: pd.DataFrame) -> list[str]:
    """Numeric columns of X that are not identifiers or targets (used when no feature list is given)."""
    return [c for c in X.columns if c not in _NOT_FEATURES and pd.api.types.is_numeric_dtype(X[c])]


def _as_array(y: Any) -> np.ndarray:
    return np.asarray(y, dtype=float).reshape(-1)


class ForecastModel(ABC):
    """Next-day IV forecaster. Subclasses implement ``_fit_change``, ``_predict_change``, ``_save``, ``_load``."""

    name: ClassVar[str] = "base"
    # how MLflow logs it (``models.mlflow_models``): a library flavor name, else a pyfunc wrapper
    mlflow_flavor: ClassVar[str] = "pyfunc"

    def __init__(
        self, params: dict[str, Any] | None = None, *, features: Sequence[str] | None = None, seed: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.params: dict[str, Any] = {**self.default_params(), **(params or {})}
        self.features: list[str] | None = list(features) if features is not None else None
        self.seed = int(seed)
        self.n_jobs = int(n_jobs)
        self.train_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ hooks for subclasses
    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def suggest_params(cls, trial: Any) -> dict[str, Any]:
        """Optuna search space; models without hyper-parameters return {}."""
        return {}

    @property
    def history_length(self) -> int:
        """Sessions of per-series history each row needs (0: row-wise, the history is ignored)."""
        return 0

    @property
    def reads_grid_history(self) -> bool:
        """Whether the model reads the underlyings' surface-grid history (``SeriesHistory.grid`` beside a
        per-option history, see ``with_grid``): the service then attaches the stored grid to the history."""
        return False

    @abstractmethod
    def _fit_change(self, X: pd.DataFrame, dy: np.ndarray, X_val: pd.DataFrame | None,
                    dy_val: np.ndarray | None, history: SeriesHistory | None = None) -> None: ...

    @abstractmethod
    def _predict_change(self, X: pd.DataFrame, history: SeriesHistory | None = None) -> np.ndarray: ...

    def explain(self, X_sample: pd.DataFrame, history: SeriesHistory | None = None
                ) -> tuple[pd.DataFrame, dict[str, bytes]] | None:
        """(importance table with ``feature`` and ``mean_abs_shap_vol_pts``-like columns sorted by importance,
        plots as PNG bytes) on a sample of evaluation rows; None when the model has no explanation."""
        return None

    def learning_curves(self) -> dict[str, list[float]]:
        """Per-epoch losses of a model trained by epochs (``train_loss``, ``val_loss``), logged to MLflow with
        step = epoch and plotted beside the test plots; {} for models fitted in one go."""
        return {}

    def _save(self, directory: Path) -> None:  # noqa: B027 - optional hook
        """Write the fitted state (beyond metadata.json) into ``directory``."""

    def _load(self, directory: Path) -> None:  # noqa: B027 - optional hook
        """Restore the fitted state written by ``_save``."""

    # ------------------------------------------------------------------ public API
    def _need_history(self, history: SeriesHistory | None) -> SeriesHistory | None:
        if self.history_length > 0 and history is None:
            raise ValueError(f"model '{self.name}' looks back {self.history_length} sessions: pass history=")
        return history if self.history_length > 0 else None

    def fit(self, X: pd.DataFrame, y: Any, *, X_val: pd.DataFrame | None = None, y_val: Any = None,
            history: SeriesHistory | None = None) -> Self:
        """Fit on next-day IV levels ``y``; ``X_val``/``y_val`` (optional) enable early stopping; ``history``
        (required when ``history_length`` > 0) covers the rows of X and X_val."""
        history = self._need_history(history)
        if self.features is None:
            self.features = default_features(X)
        if ANCHOR not in X.columns:
            raise KeyError(f"X needs the '{ANCHOR}' column (today's IV)")
        y = _as_array(y)
        if len(y) != len(X):
            raise ValueError(f"len(y)={len(y)} != len(X)={len(X)}")
        dy = y - X[ANCHOR].to_numpy(float)
        dy_val = None
        if X_val is not None and y_val is not None:
            dy_val = _as_array(y_val) - X_val[ANCHOR].to_numpy(float)
        self._fit_change(X, dy, X_val if dy_val is not None else None, dy_val, history)
        self.train_info = {
            "n_train": len(X),
            "n_val": 0 if X_val is None else len(X_val),
            "fitted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        if "trade_date" in X.columns and len(X):
            self.train_info["train_start"] = str(pd.Timestamp(X["trade_date"].min()).date())
            self.train_info["train_end"] = str(pd.Timestamp(X["trade_date"].max()).date())
            self.train_info["n_train_days"] = int(pd.Series(X["trade_date"]).nunique())
        return self

    def predict_change(self, X: pd.DataFrame, *, history: SeriesHistory | None = None) -> np.ndarray:
        return np.asarray(self._predict_change(X, self._need_history(history)), dtype=float)

    def predict(self, X: pd.DataFrame, *, history: SeriesHistory | None = None) -> np.ndarray:
        """Next-day IV level = today's IV + predicted change (``history`` as for :meth:`fit`)."""
        return X[ANCHOR].to_numpy(float) + self.predict_change(X, history=history)

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "format_version": MODEL_FORMAT_VERSION,
            "target": "iv_next (next trading day's implied vol, decimal)",
            "target_mode": "change",  # kept in saved metadata: every model learns iv_next - iv
            "history_length": self.history_length,
            "params": self.params,
            "features": list(self.features or []),
            "seed": self.seed,
            "n_jobs": self.n_jobs,
            **self.library_versions(),
            **self.train_info,
        }

    def library_versions(self) -> dict[str, str]:
        return {}

    def save(self, directory: str | Path) -> Path:
        """Write ``metadata.json`` plus the model's own files into ``directory`` (created)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self._save(d)
        (d / METADATA_FILE).write_text(json.dumps(self.metadata(), indent=2, default=str))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> ForecastModel:
        """Load a model of this class saved by :meth:`save` (``registry.load_model`` dispatches on the name)."""
        d = Path(directory)
        meta = json.loads((d / METADATA_FILE).read_text())
        if cls is ForecastModel or cls.name != meta["name"]:
            raise TypeError(f"{d} holds a '{meta['name']}' model, not {cls.name}: load it with "
                            "b3quant_models.models.load_model, which dispatches on the saved name")
        model = cls(meta.get("params"), features=meta.get("features"), seed=meta.get("seed", 0),
                       n_jobs=meta.get("n_jobs", 1))
        model.train_info = {k: meta[k] for k in ("n_train", "n_val", "fitted_at", "train_start", "train_end",
                                                 "n_train_days") if k in meta}
        model._load(d)
        return model

    def _matrix(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.features or [] if c not in X.columns]
        if missing:
            raise KeyError(f"{self.name}: missing feature columns {missing[:5]}{'...' if len(missing) > 5 else ''}")
        return X[self.features].astype(float)
