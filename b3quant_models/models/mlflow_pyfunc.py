"""The MLflow pyfunc wrapper of a ``ForecastModel`` that has no library flavor (persistence, ``series_ar``).

Imports MLflow at module level (a ``PythonModel`` subclass needs it), so only :mod:`.mlflow_models` imports
this module, inside its functions. The wrapped model is the ``ForecastModel.save`` directory, an MLflow
artifact: loading it needs this package installed (the logged requirements say ``b3quant-ml``).

Input: the feature rows (``iv`` and the model's features); a model that looks back (``history_length`` > 0)
also needs its series' past rows in the same frame (``trade_date``, the series key, ``iv``), because a
pyfunc receives one frame and no side inputs. Output: the next-day IV level, one value per input row.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd

from b3quant_models.features.history import GRID_SERIES_KEY, OPTION_SERIES_KEY, SeriesHistory
from b3quant_models.models.base import ANCHOR, ForecastModel


def pyfunc_input(model: ForecastModel, rows: pd.DataFrame) -> pd.DataFrame:
    """The columns the wrapper reads from ``rows``: ``iv``, the features and (looking back) the history's."""
    cols = [ANCHOR, *(model.features or [])]
    if model.history_length > 0:
        key = OPTION_SERIES_KEY if "ticker" in rows.columns else GRID_SERIES_KEY
        cols = ["trade_date", *(c for c in key if c in rows.columns), *cols]
    return rows[list(dict.fromkeys(cols))]


def history_from_rows(model: ForecastModel, rows: pd.DataFrame) -> SeriesHistory | None:
    """The history a looking-back model cuts its windows from: the request's own rows."""
    if model.history_length == 0:
        return None
    key = OPTION_SERIES_KEY if "ticker" in rows.columns else GRID_SERIES_KEY
    return SeriesHistory.from_rows(rows, key)


class ForecastPyfunc(mlflow.pyfunc.PythonModel):
    """``predict(frame)`` -> next-day IV levels of the wrapped ``ForecastModel``."""

    def load_context(self, context) -> None:
        from b3quant_models.models.registry import load_model

        self.model = load_model(context.artifacts["forecast_model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        rows = pd.DataFrame(model_input)
        return self.model.predict(rows, history=history_from_rows(self.model, rows))
