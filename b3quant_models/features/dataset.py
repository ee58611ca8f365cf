"""The training dataset, built once: features, the next-session target, the optimal floor and the history.

Before, the training asset joined targets and the truth floor, the model asset split them apart again and
the trainer joined them back. A :class:`TrainingDataset` is built by the dataset assets (per option series
and per surface-grid point) and consumed as is by training, tuning, comparison and promotion.

On the sample market the floor (``iv_next_optimal``, the forecast that knows the simulator's dynamics) is
read from the truth file named in the market's ``manifest.json`` (:func:`sample_market_truth`); on real data
there is none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from b3quant_models.features.grid import GRID_FEATURE_COLUMNS, GRID_KEY_COLUMNS, build_grid_features, build_grid_targets
from b3quant_models.features.history import GRID_SERIES_KEY, OPTION_SERIES_KEY, SeriesHistory, grid_history
from b3quant_models.features.option import FEATURE_COLUMNS, ID_COLUMNS, KEY_COLUMNS, build_targets

TARGET = "iv_next"
FLOOR = "iv_next_optimal"
ANCHOR = "iv"
# known only after day D (targets, the floor, the simulator's truth) or not model inputs: never features
NOT_INPUTS = frozenset({TARGET, "iv_change", "target_date", FLOOR, "iv_next_true", "true_iv", "underlying_isin",
                        "fold"})


@dataclass(frozen=True)
class TrainingDataset:
    """One row per key (day and series) with a known next-session target.

    ``frame``: keys, ids, the feature columns, ``iv`` (today's IV), ``iv_next`` and ``target_date`` (and
    ``iv_next_optimal`` when the floor is known), sorted by the keys. ``history``: per-series point-in-time
    values over every stored day (rows without a target included) for models that look back.
    """

    frame: pd.DataFrame
    keys: tuple[str, ...]
    feature_columns: tuple[str, ...]
    kind: str  # "option" (per option series) or "grid" (per surface-grid point)
    history: SeriesHistory | None = None
    info: dict = field(default_factory=dict)

    @property
    def has_floor(self) -> bool:
        return FLOOR in self.frame.columns and bool(self.frame[FLOOR].notna().any())

    @property
    def target(self) -> np.ndarray:
        return self.frame[TARGET].to_numpy(float)

    def __len__(self) -> int:
        return len(self.frame)

    def subset(self, mask: np.ndarray | pd.Series) -> TrainingDataset:
        """The rows selected by a boolean ``mask`` (same history: windows only look back)."""
        return TrainingDataset(self.frame.loc[np.asarray(mask, dtype=bool)].reset_index(drop=True), self.keys,
                               self.feature_columns, self.kind, self.history, self.info)

    def summary(self) -> dict:
        f = self.frame
        return {
            "rows": len(f),
            "sessions": int(f["trade_date"].nunique()),
            "first_day": str(f["trade_date"].min().date()) if len(f) else "",
            "last_day": str(f["trade_date"].max().date()) if len(f) else "",
            "has_optimal_floor": self.has_floor,
            "history_rows": len(self.history) if self.history is not None else 0,
            **self.info,
        }


def _key_for(frame: pd.DataFrame) -> tuple[str, ...]:
    return tuple(KEY_COLUMNS) if "ticker" in frame.columns else tuple(GRID_KEY_COLUMNS)


def dataset_from_frame(frame: pd.DataFrame, feature_columns: list[str] | None = None,
                       history: SeriesHistory | None = None) -> TrainingDataset:
    """Wrap an already joined frame (features + ``iv_next`` [+ ``target_date``, floor]); the history
    defaults to the frame's own rows (enough when it holds every day of its series)."""
    keys = _key_for(frame)
    kind = "option" if "ticker" in keys else "grid"
    if feature_columns is None:
        cols = FEATURE_COLUMNS if kind == "option" else GRID_FEATURE_COLUMNS
        if set(cols) <= set(frame.columns):
            feature_columns = list(cols)
        else:  # any other numeric column that is neither an id, a target nor the floor
            skip = set(keys) | set(ID_COLUMNS) | NOT_INPUTS
            feature_columns = [c for c in frame.columns
                               if c not in skip and pd.api.types.is_numeric_dtype(frame[c])]
    f = frame.loc[np.isfinite(frame[TARGET].astype(float))].sort_values(list(keys)).reset_index(drop=True)
    if history is None:
        history = SeriesHistory.from_rows(frame, OPTION_SERIES_KEY if kind == "option" else GRID_SERIES_KEY)
    return TrainingDataset(f, keys, tuple(feature_columns), kind, history)


def as_dataset(data: TrainingDataset | pd.DataFrame) -> TrainingDataset:
    """``data`` itself, or a joined frame (features + ``iv_next`` ...) wrapped by :func:`dataset_from_frame`."""
    return data if isinstance(data, TrainingDataset) else dataset_from_frame(data)


def sample_market_truth(landing_dir: str | Path, columns: Sequence[str] = (FLOOR,)) -> pd.DataFrame | None:
    """(trade_date, ticker, *columns) from the option truth file the sample market's manifest names in
    ``landing_dir`` (default: the floor ``iv_next_optimal``; the backtests also read ``iv_next_true``); None
    when the folder holds no sample market (real data has no known truth)."""
    from b3quant_models.sample_market import MANIFEST_NAME, SampleMarketManifest

    landing = Path(landing_dir)
    if not (landing / MANIFEST_NAME).is_file():
        return None
    path = SampleMarketManifest.load(landing).truth_path("option_iv")
    if not path.is_file():
        raise FileNotFoundError(f"{landing / MANIFEST_NAME} names the truth file {path}, which is missing")
    truth = pd.read_parquet(path, columns=["trade_date", "ticker", *columns])
    truth["trade_date"] = pd.to_datetime(truth["trade_date"]).astype("datetime64[ns]")
    return truth.drop_duplicates(["trade_date", "ticker"])


def option_training_dataset(
    option_features: pd.DataFrame, option_iv: pd.DataFrame, truth: pd.DataFrame | None = None, *,
    window_sessions: int = 0, surface_grid: pd.DataFrame | None = None,
) -> TrainingDataset:
    """Features joined to the same series' IV on the underlying's next session (``build_targets``), with the
    floor from ``truth`` when given; ``window_sessions`` keeps the latest sessions only (0: all). The
    history holds every feature row (the window cuts the training rows, not what a model may look back at)
    and, with ``surface_grid`` (``surface_grid_points`` rows), the underlyings' grid history the per-option
    models that forecast through the grid read (``SeriesHistory.with_grid``)."""
    targets = build_targets(option_iv)
    df = option_features.merge(targets[["trade_date", "ticker", TARGET, "target_date"]], on=KEY_COLUMNS,
                               how="inner")
    if truth is not None:
        df = df.merge(truth[["trade_date", "ticker", FLOOR]].drop_duplicates(KEY_COLUMNS), on=KEY_COLUMNS,
                      how="left")
    if window_sessions:
        keep = sorted(df["trade_date"].unique())[-window_sessions:]
        df = df[df["trade_date"].isin(keep)]
    history = SeriesHistory.from_rows(option_features, OPTION_SERIES_KEY)
    if surface_grid is not None and len(surface_grid):
        history = history.with_grid(grid_history(surface_grid))
    return dataset_from_frame(df, list(FEATURE_COLUMNS), history)


def grid_training_dataset(surface_grid_points: pd.DataFrame, underlying_quotes: pd.DataFrame) -> TrainingDataset:
    """Per grid point and day: features and the next session's IV at the same point.

    Only points inside the quoted range on both days are kept: an extrapolated point (long tenors, far wings)
    is an artifact of the fit, and its day-to-day change is mostly fit noise (measured on the sample market:
    16 vol points RMSE at 252 days against 2 at 21 days)."""
    feats = build_grid_features(surface_grid_points, underlying_quotes)
    targets = build_grid_targets(surface_grid_points)[[*GRID_KEY_COLUMNS, TARGET, "target_date"]]
    df = feats.merge(targets, on=GRID_KEY_COLUMNS, how="inner")
    point = GRID_KEY_COLUMNS[1:]
    flags = surface_grid_points.rename(
        columns={"trade_date": "target_date", "extrapolated": "extrap_next"}
    )[["target_date", *point, "extrap_next"]]
    df = df.merge(flags, on=["target_date", *point], how="left")
    quoted = (df["extrapolated"] == 0) & df["extrap_next"].eq(False)
    out = df[quoted].drop(columns=["extrap_next"]).sort_values(GRID_KEY_COLUMNS).reset_index(drop=True)
    ds = dataset_from_frame(out, list(GRID_FEATURE_COLUMNS), grid_history(feats))
    return TrainingDataset(ds.frame, ds.keys, ds.feature_columns, ds.kind, ds.history,
                           {"dropped_extrapolated_rows": int((~quoted).sum())})
