"""Synthetic B3-like option quote days for tests, demos and timing (no market data needed).

The truth is an SSVI surface per underlying (so it is arbitrage-free) with small per-slice raw-SVI
perturbations (so plain SSVI does not fit it exactly), observed with vega-weighted noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from b3quant_models.surface.ssvi import ssvi_to_raw
from b3quant_models.surface.svi import SVI_PARAMS, svi_iv

TICKERS = ("PETR4", "VALE3", "BOVA11", "ITUB4", "BBDC4", "ABEV3", "BBAS3", "B3SA3")


def synthetic_day(
    seed: int = 0,
    *,
    n_underlyings: int = 6,
    n_expiries: int = 6,
    n_quotes: int = 30,
    noise_vol_pts: float = 0.3,
    perturb: float = 0.05,
    date: str | pd.Timestamp = "2024-03-01",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(quotes, truth) for one day. truth has one row per slice with the raw SVI params used."""
    rng = np.random.default_rng(seed)
    date = pd.Timestamp(date)
    quotes, truth = [], []
    for u in range(n_underlyings):
        und = TICKERS[u % len(TICKERS)] + ("" if u < len(TICKERS) else f"_{u}")
        rho = rng.uniform(-0.7, -0.2)
        s = rng.uniform(0.4, 0.9)
        eta, gamma = 2 * s / (1 + abs(rho)), rng.uniform(0.3, 0.5)
        atm0, atm_slope = rng.uniform(0.22, 0.5), rng.uniform(-0.1, 0.05)
        spot = rng.uniform(10, 120)
        bdays = np.cumsum(rng.integers(15, 27, n_expiries)) + rng.integers(2, 12)
        for bd in bdays:
            t = bd / 252
            atm = max(atm0 + atm_slope * np.sqrt(t), 0.1)
            a, b, r, m, sig = ssvi_to_raw(atm * atm * t, rho, eta, gamma)
            p = (a, b * (1 + rng.uniform(-perturb, perturb)), r, m + rng.uniform(-perturb, perturb) * sig,
                 sig * (1 + rng.uniform(-perturb, perturb)))
            width = min(0.5, 2.5 * atm * np.sqrt(t) + 0.05)
            k = np.sort(rng.uniform(-width, 0.8 * width, n_quotes))
            iv_true = svi_iv(k, t, *p)
            sw = np.sqrt(iv_true * iv_true * t)
            vega = np.exp(-0.5 * ((-k / sw + sw / 2) ** 2)) * np.sqrt(t)  # Black vega per unit forward
            weight = vega / vega.max()
            iv = iv_true + rng.normal(0.0, noise_vol_pts / 100, n_quotes) / np.sqrt(np.maximum(weight, 0.05))
            expiry = date + pd.offsets.BDay(int(bd))
            fwd = spot * np.exp(0.1 * t)
            quotes.append(pd.DataFrame({
                "trade_date": date, "underlying_ticker": und, "expiry": expiry, "t": t, "k": k, "iv": iv,
                "weight": weight, "is_call": k >= 0, "forward": fwd,
            }))
            truth.append({"underlying_ticker": und, "expiry": expiry, "t": t, **dict(zip(SVI_PARAMS, p, strict=True))})
    return pd.concat(quotes, ignore_index=True), pd.DataFrame(truth)

