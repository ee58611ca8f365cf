"""Surface-sequence data for the deep grid models: per underlying and session the tenor × delta grid
with a mask, the last L sessions as input and the next session's grid as the target.

Plain numpy (no torch), so it can be built, inspected and tested without the deep-learning stack.
A cell is *quoted* when its IV is finite and the fit did not extrapolate it (``extrapolated`` False):
extrapolated cells (long tenors, far wings) are artifacts of the fit whose changes are mostly fit noise
(see ``grid_training_set``), so they are inputs with mask 0 and never targets. Target cells are quoted
today and tomorrow — the same rows the per-point trees (``grid_training_set``) are scored on.
Information timing: the input of the sample dated D uses grids and underlying quotes dated ≤ D only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from b3quant_models.features.common import to_datetime_ns, underlying_features

DEFAULT_LOOKBACK = 10
# underlying features appended to the sequence summary (point-in-time, from underlying_features)
DEFAULT_EXTRA_COLUMNS = ("ret_1d", "ret_5d", "rv_5d", "rv_21d", "pk_vol_5d", "pk_vol_21d")
FILL_LEVEL = 0.30  # IV used where a cell has never been seen (mask says so)


@dataclass
class GridSequences:
    """Samples of (last L grids, underlying features) -> next grid, as float arrays.

    Shapes: ``x`` (n, L, T, D) IV levels with gaps filled, ``x_mask`` (n, L, T, D) 1 where quoted,
    ``extra`` (n, F) raw underlying features (NaN kept; models standardise them on the training set),
    ``last`` (n, T, D) today's grid (= ``x[:, -1]``), ``y`` (n, T, D) tomorrow's grid (NaN where absent),
    ``y_mask`` (n, T, D) target cells. ``keys``: trade_date, target_date, underlying_ticker per sample.
    With the sample market's truth: ``y_true`` (true next grid) and ``y_opt`` (its optimal forecast),
    and ``last_true`` (today's true grid).
    """

    x: np.ndarray
    x_mask: np.ndarray
    extra: np.ndarray
    y: np.ndarray
    y_mask: np.ndarray
    keys: pd.DataFrame
    tenors: list[int]
    deltas: list[float]
    extra_columns: list[str]
    y_true: np.ndarray | None = None
    y_opt: np.ndarray | None = None
    last_true: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    aux: dict[str, np.ndarray] = field(default_factory=dict)  # per-sample side targets/regressors, e.g. RV

    @property
    def last(self) -> np.ndarray:
        return self.x[:, -1]

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx) -> GridSequences:
        """Samples ``idx`` (boolean mask or integer positions)."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        opt = {k: (None if getattr(self, k) is None else getattr(self, k)[idx])
               for k in ("y_true", "y_opt", "last_true")}
        return GridSequences(self.x[idx], self.x_mask[idx], self.extra[idx], self.y[idx], self.y_mask[idx],
                             self.keys.iloc[idx].reset_index(drop=True), self.tenors, self.deltas,
                             self.extra_columns, **opt, meta=dict(self.meta),
                             aux={k: v[idx] for k, v in self.aux.items()})

    def with_realized_vol(self, underlying_quotes: pd.DataFrame, horizon: int = 21) -> GridSequences:
        """Adds ``aux["rv_next"]`` (the next ``horizon`` sessions' realized vol) and ``aux["har"]`` (the
        HAR-RV regressors at the close), joined on (trade_date, underlying_ticker)."""
        from b3quant_models.models.deep.realized import HARRV, realized_vol_frame

        rv = realized_vol_frame(underlying_quotes, horizon)
        f = self.keys[["trade_date", "underlying_ticker"]].merge(rv, on=["trade_date", "underlying_ticker"],
                                                                  how="left")
        aux = {**self.aux, "rv_next": f[f"rv_next_{horizon}d"].to_numpy(float),
               "har": f[HARRV.columns].to_numpy(float)}
        out = self.subset(np.arange(len(self)))
        out.aux = aux
        return out

    def by_dates(self, dates) -> GridSequences:
        return self.subset(self.keys["trade_date"].isin(pd.to_datetime(np.asarray(dates))).to_numpy())

    def long_frame(self, pred: np.ndarray | None = None, name: str = "forecast") -> pd.DataFrame:
        """Target cells as rows (trade_date, target_date, underlying_ticker, tenor_days, delta, iv, iv_next,
        [iv_next_true, iv_opt], [forecast]) — the grid prediction-table layout."""
        _n, _nt, _nd = self.y.shape
        i, t, d = np.nonzero(self.y_mask)
        out = self.keys.iloc[i].reset_index(drop=True)
        out["tenor_days"] = np.asarray(self.tenors)[t]
        out["delta"] = np.asarray(self.deltas)[d]
        out["iv"] = self.last[i, t, d].astype(float)
        out["iv_next"] = self.y[i, t, d].astype(float)
        if self.y_true is not None:
            out["iv_next_true"] = self.y_true[i, t, d]
            out["iv_opt"] = self.y_opt[i, t, d]
        if pred is not None:
            out[name] = pred[i, t, d]
        return out


def _grid_frame(surface_grid: pd.DataFrame) -> pd.DataFrame:
    g = surface_grid.copy()
    if "underlying_ticker" not in g.columns and "underlying" in g.columns:  # tables written before the rename
        g = g.rename(columns={"underlying": "underlying_ticker"})
    if "trade_date" not in g.columns and "date" in g.columns:
        g = g.rename(columns={"date": "trade_date"})
    for c in ("trade_date", "underlying_ticker", "tenor_days", "delta", "iv"):
        if c not in g.columns:
            raise KeyError(f"surface grid: missing column '{c}' (expected the surface_grid_points layout)")
    g["trade_date"] = to_datetime_ns(g["trade_date"])
    g["delta"] = g["delta"].astype(float).round(4)
    g["tenor_days"] = g["tenor_days"].astype(int)
    iv = g["iv"].astype(float)
    extrap = g["extrapolated"].astype(bool) if "extrapolated" in g.columns else pd.Series(False, index=g.index)
    g["iv"] = iv.where(np.isfinite(iv) & (iv > 0))
    g["quoted"] = g["iv"].notna() & ~extrap
    return g.drop_duplicates(["trade_date", "underlying_ticker", "tenor_days", "delta"], keep="last")


def grid_cube(surface_grid: pd.DataFrame, tenors: Sequence[int] | None = None, deltas: Sequence[float] | None = None
              ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per underlying: (dates (n,), iv (n, T, D) with NaN where absent, quoted mask (n, T, D))."""
    g = _grid_frame(surface_grid)
    tenors = sorted(int(x) for x in g["tenor_days"].unique()) if tenors is None else list(tenors)
    deltas = sorted(float(x) for x in g["delta"].unique()) if deltas is None else [round(float(d), 4) for d in deltas]
    out = {}
    for und, gu in g.groupby("underlying_ticker", sort=True):
        dates = np.array(sorted(gu["trade_date"].unique()), dtype="datetime64[ns]")
        full = pd.MultiIndex.from_product([dates, tenors, deltas], names=["trade_date", "tenor_days", "delta"])
        s = gu.set_index(["trade_date", "tenor_days", "delta"])[["iv", "quoted"]].reindex(full)
        shape = (len(dates), len(tenors), len(deltas))
        iv = s["iv"].to_numpy(float).reshape(shape)
        quoted = s["quoted"].fillna(False).to_numpy(bool).reshape(shape)
        out[str(und)] = (dates, iv, quoted)
    return out


def _ffill(iv: np.ndarray) -> np.ndarray:
    """Fill each cell's gaps with its last value seen (point-in-time), then the day's mean, then FILL_LEVEL."""
    out = iv.copy()
    for i in range(1, len(out)):
        gap = ~np.isfinite(out[i])
        out[i][gap] = out[i - 1][gap]
    day_mean = np.nanmean(np.where(np.isfinite(out), out, np.nan).reshape(len(out), -1), axis=1) \
        if np.isfinite(out).any() else np.full(len(out), FILL_LEVEL)
    day_mean = np.where(np.isfinite(day_mean), day_mean, FILL_LEVEL)
    return np.where(np.isfinite(out), out, day_mean[:, None, None])


def build_grid_sequences(
    surface_grid: pd.DataFrame,
    underlying_quotes: pd.DataFrame | None = None,
    *,
    lookback: int = DEFAULT_LOOKBACK,
    extra_columns: Sequence[str] = DEFAULT_EXTRA_COLUMNS,
    truth: pd.DataFrame | None = None,
    tenors: Sequence[int] | None = None,
    deltas: Sequence[float] | None = None,
    require_target: bool = True,
) -> GridSequences:
    """Samples for every underlying and session with ``lookback`` sessions of history and a next session.

    ``truth`` (optional): :func:`b3quant_models.sample_market.grid_truth.grid_truth` frame, adds the true
    next grid and its optimal forecast. ``require_target=False`` also keeps the last session (no target;
    ``y`` NaN) — what a live forecast needs.
    """
    if lookback < 1:
        raise ValueError("lookback must be >= 1")
    cube = grid_cube(surface_grid, tenors, deltas)
    if not cube:
        raise ValueError("surface grid is empty")
    first = next(iter(cube.values()))
    nt, nd = first[1].shape[1:]
    g = _grid_frame(surface_grid)
    tenors_l = sorted(int(x) for x in g["tenor_days"].unique()) if tenors is None else list(tenors)
    deltas_l = sorted(float(x) for x in g["delta"].unique()) if deltas is None else [round(float(d), 4)
                                                                                      for d in deltas]
    extra_columns = list(extra_columns)
    und_feats = None
    if underlying_quotes is not None and extra_columns:
        und_feats = underlying_features(underlying_quotes).rename(columns={"ticker": "underlying_ticker"})
        missing = [c for c in extra_columns if c not in und_feats.columns]
        if missing:
            raise KeyError(f"underlying features: unknown columns {missing}")
    elif extra_columns and underlying_quotes is None:
        extra_columns = []
    tr_cube = None
    if truth is not None:
        tr_cube = {}
        t = truth.copy()
        t["trade_date"] = to_datetime_ns(t["trade_date"])
        t["delta"] = t["delta"].astype(float).round(4)
        for und, tu in t.groupby("underlying_ticker"):
            tr_cube[str(und)] = tu.set_index(["trade_date", "tenor_days", "delta"])
    xs, ms, ex, ys, yms, keys, yt, yo, lt = [], [], [], [], [], [], [], [], []
    for und, (dates, iv, quoted) in cube.items():
        filled = _ffill(iv)
        n = len(dates)
        last_i = n - 1 if require_target else n
        idx = np.arange(lookback - 1, last_i)
        if not len(idx):
            continue
        win = idx[:, None] + np.arange(-lookback + 1, 1)[None, :]
        xs.append(filled[win])
        ms.append(quoted[win].astype(np.float32))
        nxt = np.minimum(idx + 1, n - 1)
        has_next = idx + 1 < n
        y = np.where(has_next[:, None, None], iv[nxt], np.nan)
        ys.append(y)
        yms.append(quoted[idx] & quoted[nxt] & has_next[:, None, None] & np.isfinite(y))
        k = pd.DataFrame({"trade_date": dates[idx],
                          "target_date": np.where(has_next, dates[nxt], np.datetime64("NaT")).astype("datetime64[ns]"),
                          "underlying_ticker": und})
        keys.append(k)
        if und_feats is not None:
            f = k[["trade_date", "underlying_ticker"]].merge(und_feats, on=["trade_date", "underlying_ticker"],
                                                              how="left")
            ex.append(f[extra_columns].to_numpy(float))
        else:
            ex.append(np.zeros((len(idx), 0)))
        if tr_cube is not None:
            tu = tr_cube.get(und)
            shape = (len(idx), nt, nd)
            if tu is None:
                yt.append(np.full(shape, np.nan))
                yo.append(np.full(shape, np.nan))
                lt.append(np.full(shape, np.nan))
            else:
                full = pd.MultiIndex.from_product([dates[idx], tenors_l, deltas_l])
                r = tu.reindex(full)
                yt.append(r["iv_next_true"].to_numpy(float).reshape(shape))
                yo.append(r["iv_next_optimal"].to_numpy(float).reshape(shape))
                lt.append(r["true_iv"].to_numpy(float).reshape(shape))
    keys_df = pd.concat(keys, ignore_index=True)
    order = np.lexsort((keys_df["underlying_ticker"].to_numpy(), keys_df["trade_date"].to_numpy()))
    cat = lambda parts: np.concatenate(parts)[order]  # noqa: E731
    seq = GridSequences(
        x=cat(xs).astype(np.float32), x_mask=cat(ms), extra=cat(ex).astype(np.float32), y=cat(ys).astype(np.float32),
        y_mask=cat(yms), keys=keys_df.iloc[order].reset_index(drop=True), tenors=tenors_l, deltas=deltas_l,
        extra_columns=extra_columns,
        y_true=cat(yt) if yt else None, y_opt=cat(yo) if yo else None, last_true=cat(lt) if lt else None,
        meta={"lookback": lookback},
    )
    if require_target:
        seq = seq.subset(seq.y_mask.reshape(len(seq), -1).any(axis=1))
    return seq
