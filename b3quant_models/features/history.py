"""Per-series history: the input of models that are not row-wise (sequence and surface models).

A row-wise model sees one feature row per (day, series). A sequence model also needs the series' last L
observations up to that day, and a surface model an underlying's grid over the last L sessions. Both come
from a :class:`SeriesHistory`: a panel of point-in-time values (never targets) keyed by series and day, from
which :meth:`SeriesHistory.window` cuts, for any rows, the L latest observations at or before each row's
day plus a mask of which exist. The panel is built once with the training dataset (from every stored
feature row, also those without a next-day target) and, in the service, from the stored history of the
live series plus the request's rows, so training, tuning, comparison, promotion and serving cut the same
windows with the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from b3quant_models.features.common import to_datetime_ns

# Never history values: they are known only the next session (a window holding them would leak the label).
TARGET_COLUMNS = frozenset({"iv_next", "iv_change", "target_date", "iv_next_optimal", "iv_next_true"})
OPTION_SERIES_KEY = ("ticker", "expiry")  # B3 recycles tickers across years: a series is (ticker, expiry)
GRID_SERIES_KEY = ("underlying_ticker", "tenor_days", "delta")


@dataclass(frozen=True)
class SeriesHistory:
    """Point-in-time ``values`` per series ``key`` and ``trade_date``, sorted by series then day."""

    panel: pd.DataFrame
    key: tuple[str, ...] = OPTION_SERIES_KEY
    values: tuple[str, ...] = ("iv",)
    # the underlyings' surface-grid history beside a per-option history: what a per-option model that
    # forecasts through the grid (the deep models) reads with ``grid_window`` (see ``with_grid``)
    grid: SeriesHistory | None = None

    @classmethod
    def from_rows(cls, rows: pd.DataFrame, key: Sequence[str] = OPTION_SERIES_KEY,
                  values: Sequence[str] = ("iv",)) -> SeriesHistory:
        """A history of ``rows`` (e.g. a feature table); the key columns absent from ``rows`` are dropped
        (a table without ``expiry`` is keyed by ticker alone). One row per series and day (the last wins)."""
        key = tuple(c for c in key if c in rows.columns)
        leak = sorted(TARGET_COLUMNS & set(values))
        if leak:
            raise ValueError(f"history values {leak} are next-day targets, not point-in-time values")
        missing = [c for c in ("trade_date", *key, *values) if c not in rows.columns]
        if missing or not key:
            raise KeyError(f"history needs trade_date, a series key and {list(values)}; missing {missing or key}")
        p = rows[["trade_date", *key, *values]].copy()
        p["trade_date"] = to_datetime_ns(p["trade_date"])
        if "expiry" in key:
            p["expiry"] = to_datetime_ns(p["expiry"])
        p[list(values)] = p[list(values)].astype(float)
        p = p.drop_duplicates(["trade_date", *key], keep="last").sort_values([*key, "trade_date"])
        return cls(p.reset_index(drop=True), key, tuple(values))

    def extended(self, rows: pd.DataFrame) -> SeriesHistory:
        """This history plus ``rows`` (their values win on a shared series and day): a request's own rows.
        The attached grid history (if any) is kept: request rows are options, not grid points."""
        out = SeriesHistory.from_rows(pd.concat([self.panel, rows[list(self.panel.columns)]], ignore_index=True),
                                      self.key, self.values)
        return out.with_grid(self.grid) if self.grid is not None else out

    def with_grid(self, grid: SeriesHistory | None) -> SeriesHistory:
        """This history with an underlying-grid history (keyed ``GRID_SERIES_KEY``) attached, so one object
        serves row models (``window``) and models that forecast through the surface grid (``grid_window``)."""
        if grid is not None and grid.key != GRID_SERIES_KEY:
            raise ValueError(f"the attached grid history must be keyed {GRID_SERIES_KEY}, not {grid.key}")
        return SeriesHistory(self.panel, self.key, self.values, grid)

    def __len__(self) -> int:
        return len(self.panel)

    def window(self, rows: pd.DataFrame, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(values, mask) for each row of ``rows``: ``values`` is (n, length, len(self.values)), the series'
        ``length`` latest observations dated at or before the row's trade_date, oldest first, with today's
        last; ``mask`` (n, length) is False where the series has fewer observations (values are NaN there).

        Every row must itself be in the panel (build it from the rows' table, or use :meth:`extended`).
        """
        if length < 1:
            raise ValueError("length must be >= 1")
        p = self.panel
        n = len(rows)
        pos = pd.Series(np.arange(len(p)), index=pd.MultiIndex.from_frame(p[["trade_date", *self.key]]))
        q = rows[["trade_date", *self.key]].copy()
        q["trade_date"] = to_datetime_ns(q["trade_date"])
        if "expiry" in self.key:
            q["expiry"] = to_datetime_ns(q["expiry"])
        idx = pos.reindex(pd.MultiIndex.from_frame(q)).to_numpy()
        if n and np.isnan(idx).any():
            bad = q.loc[np.isnan(idx)].head(3).to_dict("records")
            raise KeyError(f"{int(np.isnan(idx).sum())} rows are not in the history panel, e.g. {bad}")
        idx = idx.astype(np.int64)
        # first panel position of each row's series: the panel is sorted by series then day
        starts = p.groupby(list(self.key), sort=False, dropna=False).ngroup().to_numpy()
        first = np.zeros(len(p), dtype=np.int64)
        if len(p):
            new = np.r_[True, starts[1:] != starts[:-1]]
            first = np.maximum.accumulate(np.where(new, np.arange(len(p)), 0))
        lag = np.arange(length - 1, -1, -1)
        at = idx[:, None] - lag[None, :]
        mask = at >= first[idx][:, None] if n else np.zeros((0, length), dtype=bool)
        vals = p[list(self.values)].to_numpy(float)
        out = np.full((n, length, len(self.values)), np.nan)
        if n:
            out[mask] = vals[at[mask]]
        return out, mask

    def grid_window(self, rows: pd.DataFrame, length: int, value: str | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """An underlying's grid over its last ``length`` sessions, for a history keyed by ``GRID_SERIES_KEY``.

        For each row (its ``underlying_ticker`` and ``trade_date``, which must be one of that underlying's
        sessions in the panel): ``values`` (n, length, n_tenors, n_deltas) oldest session first, ``mask`` of
        the same shape (False where the session is before the underlying's first or the cell is absent that
        day, e.g. dropped as not quoted), and the ``tenors`` and ``deltas`` axes.
        """
        if self.key != GRID_SERIES_KEY:
            if self.grid is not None:
                return self.grid.grid_window(rows, length, value)
            raise ValueError(f"grid_window needs a history keyed {GRID_SERIES_KEY} (or one attached with "
                             f"with_grid), not {self.key}")
        value = value or self.values[0]
        p = self.panel
        tenors = np.sort(p["tenor_days"].unique())
        deltas = np.sort(p["delta"].unique())
        days = p[["underlying_ticker", "trade_date"]].drop_duplicates().sort_values(["underlying_ticker", "trade_date"])
        days = days.reset_index(drop=True)
        cube = np.full((len(days), len(tenors), len(deltas)), np.nan)
        at = pd.Series(np.arange(len(days)), index=pd.MultiIndex.from_frame(days))
        d = at.reindex(pd.MultiIndex.from_frame(p[["underlying_ticker", "trade_date"]])).to_numpy()
        cube[d, np.searchsorted(tenors, p["tenor_days"]), np.searchsorted(deltas, p["delta"])] = p[value].to_numpy()
        q = rows[["underlying_ticker", "trade_date"]].copy()
        q["trade_date"] = to_datetime_ns(q["trade_date"])
        idx = at.reindex(pd.MultiIndex.from_frame(q)).to_numpy()
        if len(q) and np.isnan(idx).any():
            raise KeyError(f"{int(np.isnan(idx).sum())} rows name an (underlying, day) not in the history panel")
        idx = idx.astype(np.int64)
        und = days["underlying_ticker"].to_numpy()
        first = np.zeros(len(days), dtype=np.int64)
        if len(days):
            new = np.r_[True, und[1:] != und[:-1]]
            first = np.maximum.accumulate(np.where(new, np.arange(len(days)), 0))
        pos = idx[:, None] - np.arange(length - 1, -1, -1)[None, :]
        ok = pos >= first[idx][:, None]
        out = np.full((len(q), length, len(tenors), len(deltas)), np.nan)
        out[ok] = cube[pos[ok]]
        return out, np.isfinite(out), tenors, deltas


def grid_history(surface_grid: pd.DataFrame) -> SeriesHistory:
    """The surface-grid history (``surface_grid_points`` rows: trade_date, underlying_ticker, tenor_days, delta,
    iv [, extrapolated]) keyed ``GRID_SERIES_KEY`` with values ``iv`` and ``extrapolated`` (1 where the fit
    extrapolated the cell): built the same way by the training set and by the service from its stored rows."""
    g = surface_grid.copy()
    g["delta"] = g["delta"].astype(float).round(4)
    g["tenor_days"] = g["tenor_days"].astype(int)
    g["extrapolated"] = g["extrapolated"].astype(float) if "extrapolated" in g.columns else 0.0
    iv = g["iv"].astype(float)
    g = g.loc[np.isfinite(iv) & (iv > 0)]
    return SeriesHistory.from_rows(g, GRID_SERIES_KEY, ("iv", "extrapolated"))
