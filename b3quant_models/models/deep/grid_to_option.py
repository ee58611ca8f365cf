"""From a forecast grid to per-option forecasts: each contract reads the predicted change at its own point.

A grid forecaster predicts tomorrow's change of every (tenor, call delta) cell of its underlying. A contract
sits at tenor = its business days to expiry and at the forward call delta of its strike, N(d1) with
d1 = −k/(σ√t) + σ√t/2 (k = ln(K/F), σ its IV today, the grid's own definition: ``surface.grid``), which
holds for calls and puts alike because it is a function of the strike. Its forecast is its own IV today
plus the change interpolated bilinearly there (tenor linear in days, delta linear), clamped at the grid's
edges: the grid carries the surface's move, the contract keeps its own level (and its spread to the fit).

numpy/scipy only, so it is tested without torch; the deep package's ``DeepGridModel`` uses it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtr


def option_grid_coords(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(tenor in business days, forward call delta) of option feature rows (``bdays``, ``k``, ``t``, ``iv``);
    NaN where the IV or the time is not usable."""
    iv = rows["iv"].to_numpy(float)
    t = rows["t"].to_numpy(float)
    k = rows["k"].to_numpy(float)
    with np.errstate(all="ignore"):
        sw = iv * np.sqrt(t)
        delta = np.where((sw > 0) & np.isfinite(sw) & np.isfinite(k), ndtr(-k / sw + sw / 2), np.nan)
    tenor = rows["bdays"].to_numpy(float)
    return np.where(tenor > 0, tenor, np.nan), delta


def _axis(x: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower node index and weight of the upper node for ``x`` clamped into ``nodes`` (sorted)."""
    if len(nodes) == 1:
        return np.zeros(len(x), dtype=np.int64), np.zeros(len(x))
    xc = np.clip(x, nodes[0], nodes[-1])
    i = np.clip(np.searchsorted(nodes, xc, side="right") - 1, 0, len(nodes) - 2)
    w = (xc - nodes[i]) / (nodes[i + 1] - nodes[i])
    return i, w


def interpolate_grid(cube: np.ndarray, sample: np.ndarray, tenor: np.ndarray, delta: np.ndarray,
                     tenors: Sequence[float], deltas: Sequence[float]) -> np.ndarray:
    """Bilinear value of ``cube[sample]`` (cube (n, T, D) on the ``tenors`` × ``deltas`` axes) at each
    (tenor, delta); NaN where either coordinate is NaN. On a node it returns the node's value exactly."""
    tn, dn = np.asarray(tenors, float), np.asarray(deltas, float)
    ok = np.isfinite(tenor) & np.isfinite(delta)
    t0, wt = _axis(np.where(ok, tenor, tn[0]), tn)
    d0, wd = _axis(np.where(ok, delta, dn[0]), dn)
    t1 = np.minimum(t0 + 1, len(tn) - 1)
    d1 = np.minimum(d0 + 1, len(dn) - 1)
    c = cube[sample]
    r = np.arange(len(sample))
    v = ((1 - wt) * (1 - wd) * c[r, t0, d0] + (1 - wt) * wd * c[r, t0, d1]
         + wt * (1 - wd) * c[r, t1, d0] + wt * wd * c[r, t1, d1])
    return np.where(ok, v, np.nan)


def option_changes(change_cube: np.ndarray, sample: np.ndarray, rows: pd.DataFrame, tenors: Sequence[float],
                   deltas: Sequence[float]) -> np.ndarray:
    """Predicted next-day IV change of each option row from its underlying-day's predicted grid change
    (``change_cube[sample[i]]``); 0 (persistence) where the contract has no usable grid coordinate."""
    tenor, delta = option_grid_coords(rows)
    out = interpolate_grid(change_cube, sample, tenor, delta, tenors, deltas)
    return np.where(np.isfinite(out), out, 0.0)
