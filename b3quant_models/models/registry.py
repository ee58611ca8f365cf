"""Name → model class, resolved lazily; the training assets, tuning and the service look models up here.

Models are registered by ``"module:Class"`` so a model's framework (xgboost, lightgbm, torch) is imported
only when that model is first used: importing ``b3quant_models.models`` (the service, the code location)
costs nothing for the models it does not touch. Loading a saved model dispatches here on the name in its
``metadata.json``; ``ForecastModel.load`` on a concrete class loads that class only.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from b3quant_models.models.base import METADATA_FILE, ForecastModel


class ModelRegistry(Mapping[str, type[ForecastModel]]):
    """A read-mostly mapping name → model class whose entries are imported on first access.

    Iterating, ``len`` and ``in`` never import anything; ``registry[name]`` (and ``.values()``) import
    the model's module once and cache the class.
    """

    def __init__(self, specs: Mapping[str, str]) -> None:
        self._specs: dict[str, str] = dict(specs)
        self._classes: dict[str, type[ForecastModel]] = {}

    def register(self, name: str, target: str | type[ForecastModel]) -> None:
        """Add (or replace) a model: a class, or ``"package.module:ClassName"`` imported when first used."""
        if isinstance(target, str):
            if target.count(":") != 1:
                raise ValueError(f"model '{name}': expected 'module:Class', got {target!r}")
            self._specs[name] = target
            self._classes.pop(name, None)
        else:
            self._specs[name] = f"{target.__module__}:{target.__qualname__}"
            self._classes[name] = target

    def spec(self, name: str) -> str:
        """The ``"module:Class"`` a name resolves to (without importing it)."""
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(f"unknown model '{name}'; known: {sorted(self._specs)}") from None

    def __getitem__(self, name: str) -> type[ForecastModel]:
        if (cls := self._classes.get(name)) is not None:
            return cls
        module, _, attr = self.spec(name).partition(":")
        cls = getattr(importlib.import_module(module), attr)
        self._classes[name] = cls
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs


MODEL_REGISTRY = ModelRegistry({
    "persistence": "b3quant_models.models.baselines:PersistenceModel",
    "xgboost": "b3quant_models.models.trees:XGBoostModel",
    "lightgbm": "b3quant_models.models.trees:LightGBMModel",
    "series_ar": "b3quant_models.models.sequence:SeriesARModel",  # numpy only: reads each series' history
    # torch grid forecasters (per grid point, or per option through the grid): b3quant_models.models.deep
    "lstm": "b3quant_models.models.deep.forecast_model:LSTMModel",
    "gru": "b3quant_models.models.deep.forecast_model:GRUModel",
    "pinn": "b3quant_models.models.deep.forecast_model:PINNModel",
    # trained from the others' out-of-fold predictions (train_stacking), not by train_model
    "stacking_ensemble": "b3quant_models.models.ensemble:StackingEnsemble",
})


def register_model(name: str, target: str | type[ForecastModel]) -> None:
    """Register a model under ``name`` (see ``ModelRegistry.register``)."""
    MODEL_REGISTRY.register(name, target)


def model_class(name: str) -> type[ForecastModel]:
    """The class registered as ``name`` (imports its module on first use)."""
    return MODEL_REGISTRY[name]


def make_model(name: str, params: dict[str, Any] | None = None, **kwargs: Any) -> ForecastModel:
    return model_class(name)(params, **kwargs)


def saved_model_name(directory: str | Path) -> str:
    """The registered name a ``ForecastModel.save`` directory was written by."""
    return str(json.loads((Path(directory) / METADATA_FILE).read_text())["name"])


def load_model(directory: str | Path) -> ForecastModel:
    """Load any registered model saved with ``save`` (dispatches on metadata.json's name)."""
    return model_class(saved_model_name(directory)).load(directory)
