"""Name → model class; the training asset and the service look models up here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from b3quant_models.models.base import ForecastModel
from b3quant_models.models.baselines import PersistenceModel
from b3quant_models.models.trees import LightGBMModel, XGBoostModel

MODEL_REGISTRY: dict[str, type[ForecastModel]] = {
    "persistence": PersistenceModel,
    "xgboost": XGBoostModel,
    "lightgbm": LightGBMModel,
}


def make_model(name: str, params: dict[str, Any] | None = None, **kwargs: Any) -> ForecastModel:
    try:
        cls = MODEL_REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model '{name}'; known: {sorted(MODEL_REGISTRY)}") from None
    return cls(params, **kwargs)


def load_model(directory: str | Path) -> ForecastModel:
    """Load any registered model saved with ``save`` (dispatches on metadata.json's name)."""
    return ForecastModel.load(directory)
