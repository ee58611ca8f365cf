"""Signals: each model's stored predictions and the reference strategies beside them.

A strategy is a function of the *inputs* (stored predictions, optional truth) returning
(trade_date, ticker, forecast): the look-ahead check re-runs it on inputs altered after a day.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

PREDICTION_COLUMNS = ["model", "split", "trade_date", "target_date", "ticker", "underlying_ticker", "iv", "iv_next",
                      "forecast"]  # fmt: skip
TRUTH_NEXT = "iv_next_true"  # the sample market's true next-day IV (truth/option_iv.parquet)


@dataclass(frozen=True)
class Strategy:
    name: str
    signal: Callable[[pd.DataFrame, pd.DataFrame | None], pd.DataFrame]
    uses_future: bool = False  # the oracle reads D+1 by design; the look-ahead check must flag it


def universe(predictions: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """The (day, series) rows every strategy may trade: those with a stored prediction in ``split``."""
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise ValueError(f"model_predictions: missing column(s) {missing}")
    p = predictions[predictions["split"] == split]
    cols = ["trade_date", "target_date", "ticker", "underlying_ticker", "iv", "iv_next"]
    cols += [c for c in ("iv_opt",) if c in p.columns]
    u = p[cols].drop_duplicates(["trade_date", "ticker"]).copy()
    u["trade_date"] = pd.to_datetime(u["trade_date"]).astype("datetime64[ns]")
    u["target_date"] = pd.to_datetime(u["target_date"]).astype("datetime64[ns]")
    return u.reset_index(drop=True)


def model_signal(model: str, split: str = "test") -> Callable:
    def signal(predictions: pd.DataFrame, truth: pd.DataFrame | None = None) -> pd.DataFrame:
        p = predictions[(predictions["model"] == model) & (predictions["split"] == split)]
        out = p[["trade_date", "ticker", "forecast"]].copy()
        out["trade_date"] = pd.to_datetime(out["trade_date"]).astype("datetime64[ns]")
        return out

    return signal


def persistence_signal(split: str = "test") -> Callable:
    """Tomorrow's IV = today's: no edge anywhere, so it never trades (the yardstick)."""

    def signal(predictions, truth=None):
        u = universe(predictions, split)
        return u.assign(forecast=u["iv"])[["trade_date", "ticker", "forecast"]]

    return signal


def no_trade_signal(predictions, truth=None) -> pd.DataFrame:
    return pd.DataFrame({"trade_date": pd.Series(dtype="datetime64[ns]"), "ticker": pd.Series(dtype=object),
                         "forecast": pd.Series(dtype=float)})  # fmt: skip


def random_signal(split: str = "test", seed: int = 0, scale: float = 0.02) -> Callable:
    """Today's IV plus N(0, ``scale``) noise, drawn from a hash of (seed, day, series): the same row
    always gets the same draw whatever else is in the table (so partitions and the look-ahead check
    agree). What pure cost drag looks like."""

    def signal(predictions, truth=None):
        u = universe(predictions, split)
        key = pd.DataFrame({"d": u["trade_date"].astype("int64"), "t": u["ticker"].astype(str), "s": seed})
        h = pd.util.hash_pandas_object(key, index=False).to_numpy()
        from scipy.special import ndtri  # scipy is heavy to import; only the random strategy needs it

        z = ndtri((h >> np.uint64(11)).astype(np.float64) / float(2**53) * (1 - 2e-12) + 1e-12)
        return u.assign(forecast=u["iv"] + scale * z)[["trade_date", "ticker", "forecast"]]

    return signal


def oracle_signal(split: str = "test") -> Callable:
    """Knows D+1: the sample market's true next-day IV where the truth is given, else the realized one."""

    def signal(predictions, truth=None):
        u = universe(predictions, split)
        f = u["iv_next"].astype(float)
        if truth is not None and TRUTH_NEXT in truth.columns:
            t = truth[["trade_date", "ticker", TRUTH_NEXT]].copy()
            t["trade_date"] = pd.to_datetime(t["trade_date"]).astype("datetime64[ns]")
            f = u.merge(t.drop_duplicates(["trade_date", "ticker"]), on=["trade_date", "ticker"], how="left")[
                TRUTH_NEXT
            ]
            f = f.fillna(u["iv_next"]).to_numpy()
        return u.assign(forecast=f)[["trade_date", "ticker", "forecast"]]

    return signal


def optimal_signal(split: str = "test") -> Callable:
    """The sample market's E[IV_{D+1} | close D]: the best forecast any model could make (no look-ahead)."""

    def signal(predictions, truth=None):
        u = universe(predictions, split)
        if "iv_opt" not in u.columns:
            return no_trade_signal(predictions)
        return u.assign(forecast=u["iv_opt"]).dropna(subset=["forecast"])[["trade_date", "ticker", "forecast"]]

    return signal


def standard_strategies(predictions: pd.DataFrame, split: str = "test", seed: int = 0) -> list[Strategy]:
    """Every model in the table, then persistence, random, no trade, the optimal forecast and the oracle."""
    models = sorted(predictions.loc[predictions["split"] == split, "model"].unique())
    out = [Strategy(m, model_signal(m, split)) for m in models if m != "persistence"]
    out += [Strategy("persistence", persistence_signal(split)), Strategy("random", random_signal(split, seed)),
            Strategy("no_trade", no_trade_signal)]  # fmt: skip
    if "iv_opt" in predictions.columns and predictions["iv_opt"].notna().any():
        out.append(Strategy("optimal", optimal_signal(split)))
    out.append(Strategy("oracle", oracle_signal(split), uses_future=True))
    return out
