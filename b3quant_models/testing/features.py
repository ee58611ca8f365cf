"""A small synthetic B3-like market in the pipeline's table contracts, for tests and examples.

Not the sample market (``b3quant_models.sample_market`` writes real COTAHIST files with a calibrated
simulator); this is a few hundred rows a day built in memory in well under a second, with a known
structure: observed IV = true SVI surface IV + i.i.d. quote noise, and ATM vol mean-reverting. So the
next-day IV is partly predictable (noise reverts, ATM drifts to its mean) and persistence is beatable.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from b3quant_models.calendar import DAYS_PER_YEAR, business_days, monthly_option_expiry, sessions
from b3quant_models.features.surface import svi_iv

TENORS = (21, 42, 63, 126, 252)
DELTAS = (0.10, 0.25, 0.50, 0.75, 0.90)
MONEYNESS = (0.85, 0.925, 1.0, 1.075, 1.15)


def _expiries(first: dt.date, n_months: int) -> list[dt.date]:
    out, y, m = [], first.year, first.month
    for _ in range(n_months):
        out.append(monthly_option_expiry(y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _svi_params(atm: float, t: float, rho: float) -> tuple[float, float, float, float, float]:
    """SVI slice with ATM vol ``atm``: w(0) = a + b·σ = atm²·t."""
    b, sigma, m = 0.08 * np.sqrt(t), 0.25, 0.0
    atm = atm + 0.04 * (np.sqrt(t) - 0.3)  # mild upward term structure
    w0 = atm * atm * t
    a = w0 - b * (rho * (0 - m) + np.sqrt(m * m + sigma * sigma))
    return a, b, rho, m, sigma


def toy_market(
    n_days: int = 60,
    n_underlyings: int = 3,
    *,
    seed: int = 0,
    start: dt.date = dt.date(2023, 1, 2),
    noise_vol_pts: float = 0.6,
    missing_rate: float = 0.1,
) -> dict[str, pd.DataFrame]:
    """Tables ``option_iv``, ``iv_surface``, ``underlying_quotes``, ``surface_grid`` and ``truth``."""
    rng = np.random.default_rng(seed)
    days = sessions(start, start + dt.timedelta(days=int(n_days * 1.6) + 10))[:n_days]
    expiries = _expiries(days[0], len(days) // 15 + 4)
    r = 0.10
    opt_rows, surf_rows, und_rows, grid_rows = [], [], [], []
    for u in range(n_underlyings):
        root = ["PETR", "VALE", "ITUB", "BBDC", "ABEV", "BBAS"][u % 6] + ("4" if u % 2 else "3")
        isin = f"BR{root[:4]}ACNOR{u}"[:12].ljust(12, "0")
        spot0 = 20.0 + 10 * u
        strikes = [round(spot0 * x, 2) for x in MONEYNESS]
        theta, kappa, vv = 0.28 + 0.04 * u, 0.10, 0.012
        atm, spot, rho = theta, spot0, -0.35
        for d in days:
            live = [e for e in expiries if business_days(d, e) >= 1][:2]
            ret = rng.normal(0, atm / np.sqrt(DAYS_PER_YEAR)) if d != days[0] else 0.0
            spot *= float(np.exp(ret - 0.5 * atm * atm / DAYS_PER_YEAR))
            hi = spot * np.exp(abs(rng.normal(0, 0.6 * atm / np.sqrt(DAYS_PER_YEAR))))
            lo = spot * np.exp(-abs(rng.normal(0, 0.6 * atm / np.sqrt(DAYS_PER_YEAR))))
            und_rows.append({"trade_date": d, "ticker": root, "isin": isin, "open": spot, "high": hi, "low": lo,
                             "close": spot, "avg": spot, "volume": float(rng.lognormal(16, 0.3)),
                             "quantity": 1000, "trades": 100})
            atm_next_mean = atm + kappa * (theta - atm)
            for e in live:
                bd = int(business_days(d, e))
                t = bd / DAYS_PER_YEAR
                p = _svi_params(atm, t, rho)
                p_next = _svi_params(atm_next_mean, max(bd - 1, 1) / DAYS_PER_YEAR, rho)
                surf_rows.append({"trade_date": d, "underlying_ticker": root, "underlying_isin": isin, "expiry": e,
                                  "t": t, "a": p[0], "b": p[1], "rho": p[2], "m": p[3], "sigma": p[4],
                                  "rmse_vol_pts": noise_vol_pts, "n_quotes": 10, "status": "ok"})
                fwd = spot * np.exp(r * t)
                for j, K in enumerate(strikes):
                    for call in (True, False):
                        k = float(np.log(K / fwd))
                        true_iv = float(svi_iv(k, t, *p))
                        opt_next = float(svi_iv(k, max(bd - 1, 1) / DAYS_PER_YEAR, *p_next))
                        missing = rng.random() < missing_rate
                        iv = np.nan if missing else true_iv + rng.normal(0, noise_vol_pts / 100)
                        d1 = -k / (true_iv * np.sqrt(t)) + 0.5 * true_iv * np.sqrt(t)
                        tk = f"{root[:4]}{'C' if call else 'P'}{e:%y%m}{j}"
                        opt_rows.append({
                            "trade_date": d, "ticker": tk, "underlying_isin": isin, "underlying_ticker": root,
                            "option_type": "call" if call else "put", "strike": K, "expiry": e, "spot": spot,
                            "bdays": bd, "t": t, "r": r, "forward": fwd, "k": k, "price_close": np.nan,
                            "price_mid": np.nan, "iv": iv, "iv_source": None if missing else "mid",
                            "iv_reason": "no_quote" if missing else "ok",
                            "delta": float(ndtr(d1)) if call else float(ndtr(d1) - 1),
                            "gamma": np.nan, "vega": float(fwd * np.sqrt(t) * np.exp(-0.5 * d1 * d1) / 2.5066),
                            "theta": np.nan, "rho": np.nan, "volume": float(rng.integers(0, 1000)),
                            "trades": 10, "quantity": 100, "best_bid": np.nan, "best_ask": np.nan,
                            "true_iv": true_iv, "iv_next_optimal": opt_next,
                        })
            for ten in TENORS:
                tt = ten / DAYS_PER_YEAR
                p = _svi_params(atm, tt, rho)
                for de in DELTAS:
                    # k from the ATM vol (good enough for a toy grid), iv from the slice at that k
                    k = float(-ndtri(de) * atm * np.sqrt(tt) + 0.5 * atm * atm * tt)
                    grid_rows.append({"trade_date": d, "underlying_ticker": root, "tenor_days": ten, "delta": de,
                                      "k": k, "iv": float(svi_iv(k, tt, *p)) + rng.normal(0, 0.002),
                                      "extrapolated": bool(e < d + dt.timedelta(days=ten * 1.45))})
            atm = float(np.clip(atm_next_mean + rng.normal(0, vv), 0.08, 1.5))
    option_iv = pd.DataFrame(opt_rows)
    for c in ("trade_date", "expiry"):
        option_iv[c] = pd.to_datetime(option_iv[c])
    nxt = option_iv[["trade_date", "ticker", "true_iv"]].copy()
    order = {d: i for i, d in enumerate(pd.to_datetime(days))}
    nxt["i"] = nxt["trade_date"].map(order) - 1
    cur = option_iv.assign(i=option_iv["trade_date"].map(order))
    truth = cur[["trade_date", "ticker", "i", "true_iv", "iv_next_optimal"]].merge(
        nxt[["ticker", "i", "true_iv"]].rename(columns={"true_iv": "iv_next_true"}), on=["ticker", "i"], how="left"
    ).drop(columns="i")
    option_iv = option_iv.drop(columns=["true_iv", "iv_next_optimal"])
    iv_surface = pd.DataFrame(surf_rows)
    underlying_quotes = pd.DataFrame(und_rows)
    surface_grid = pd.DataFrame(grid_rows)
    for df in (iv_surface, underlying_quotes, surface_grid):
        df["trade_date"] = pd.to_datetime(df["trade_date"])
    iv_surface["expiry"] = pd.to_datetime(iv_surface["expiry"])
    return {"option_iv": option_iv, "iv_surface": iv_surface, "underlying_quotes": underlying_quotes,
            "surface_grid": surface_grid, "truth": truth}
