"""The true surface grid (tenor × call delta) of the sample market and its optimal next-day forecast.

The grid-level floor, computed the way the per-series ``iv_next_optimal`` is (docs/sample_market.md):
the one-day transition of the state (v, z) is integrated by the same Gauss–Hermite nodes pushed
through the same ``advance`` step (``next_day_nodes``), and the true grid is evaluated at every node.
A grid point is fixed in tenor (business days) and forward call delta, so unlike a listed series it
does not depend on the spot or the rate: at close t+1 it is a function of (v_{t+1}, z_{t+1}) only.

Delta is the forward Black call delta N(d1), d1 = −k/√w + √w/2 with w = w(k, T) the SSVI total
variance, as in ``b3quant_models.surface.grid`` (the pipeline's fitted grid); k(Δ) is found by
vectorized bisection (d1 is decreasing in k on an arbitrage-free smile).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtri

from ..calendar import DAYS_PER_YEAR
from .config import SampleMarketConfig
from .dynamics import DynParams, atm_total_variance, next_day_nodes, ssvi_phi, ssvi_rho_eta, ssvi_total_variance
from .generate import SimulatedMarket, simulate_market

DEFAULT_TENORS = (21, 42, 63, 126, 252)
DEFAULT_DELTAS = (0.10, 0.25, 0.50, 0.75, 0.90)
GRID_TRUTH_COLUMNS = ["trade_date", "underlying_ticker", "tenor_days", "delta", "true_iv", "iv_next_true",
                      "iv_next_optimal"]


def true_grid_iv(v: np.ndarray, z: np.ndarray, p: DynParams, tenors: Sequence[int] = DEFAULT_TENORS,
                 deltas: Sequence[float] = DEFAULT_DELTAS, n_iter: int = 70) -> np.ndarray:
    """True IV on the grid for states ``v``, ``z`` of shape (n_und, m) (m nodes or 1) with ``p`` per
    underlying (shape (n_und,)); returns (n_und, m, n_tenors, n_deltas)."""
    v = np.asarray(v, float)[..., None, None]
    z = np.asarray(z, float)[..., None, None]
    tau = (np.asarray(tenors, float) / DAYS_PER_YEAR)[None, None, :, None]
    target = ndtri(np.asarray(deltas, float))[None, None, None, :]
    pc = DynParams(**{k: (val if k == "erp" else val[:, None, None, None]) for k, val in p.__dict__.items()})
    theta = atm_total_variance(tau, v, pc)
    rho, eta = ssvi_rho_eta(z, pc)
    phi = ssvi_phi(theta, eta, pc.gamma)
    shape = np.broadcast_shapes(theta.shape, target.shape)
    lo, hi = np.full(shape, -8.0), np.full(shape, 8.0)
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        sw = np.sqrt(ssvi_total_variance(mid, theta, rho, phi))
        pos = -mid / sw + 0.5 * sw - target > 0  # d1 too high: the root lies at larger k
        lo, hi = np.where(pos, mid, lo), np.where(pos, hi, mid)
    k = 0.5 * (lo + hi)
    return np.sqrt(ssvi_total_variance(k, theta, rho, phi) / tau)


def grid_truth(market: SimulatedMarket | SampleMarketConfig | None = None, *, tenors: Sequence[int] = DEFAULT_TENORS,
               deltas: Sequence[float] = DEFAULT_DELTAS) -> pd.DataFrame:
    """One row per session × underlying × tenor × delta: ``true_iv`` today, ``iv_next_true`` (the true
    grid on the next session; NaN on the last) and ``iv_next_optimal`` = E[IV_{t+1} | close t]."""
    if not isinstance(market, SimulatedMarket):
        market = simulate_market(market)
    p, paths = market.params, market.paths
    n_days, n_und = market.config.n_days, len(market.specs)
    nt, nd = len(tenors), len(deltas)
    true = np.empty((n_days, n_und, nt, nd))
    opt = np.empty((n_days, n_und, nt, nd))
    for i in range(n_days):
        true[i] = true_grid_iv(paths.var[i][:, None], paths.z[i][:, None], p, tenors, deltas)[:, 0]
        _, v1, z1, wt = next_day_nodes(paths.spot[i], paths.var[i], paths.z[i], np.full(n_und, market.rates[i]), p)
        iv1 = true_grid_iv(v1, z1, p, tenors, deltas)
        opt[i] = np.einsum("um,umtd->utd", wt, iv1) / wt.sum(axis=1)[:, None, None]
    nxt = np.full_like(true, np.nan)
    nxt[:-1] = true[1:]
    dates = np.array(market.sessions, dtype="datetime64[ns]")
    tick = np.array([s.ticker for s in market.specs], dtype=object)
    idx = np.indices((n_days, n_und, nt, nd)).reshape(4, -1)
    return pd.DataFrame({
        "trade_date": dates[idx[0]], "underlying_ticker": tick[idx[1]],
        "tenor_days": np.asarray(tenors, int)[idx[2]], "delta": np.round(np.asarray(deltas, float)[idx[3]], 4),
        "true_iv": true.ravel(), "iv_next_true": nxt.ravel(), "iv_next_optimal": opt.ravel(),
    })
