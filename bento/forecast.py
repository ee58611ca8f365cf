"""Next-day IV forecasts for request contracts, with the same library code as training.

No training/serving skew by construction: request quotes become ``option_iv`` rows through
``compute_option_iv`` (the asset's own function), and features come from the two stages
``build_option_features`` itself is made of. What does not depend on the request (the day's fitted
slices, per-underlying surface and underlying features, the same-day market factors, the stored
history of live series) is a ``DayContext``, built once per stored day and DuckDB file version with
the library's functions; a request only runs ``contract_features`` over its own rows plus its series'
history and joins the context with ``add_context_features``; a request row equal to a stored row (same
series, same quote) takes that row's features, precomputed the same way in one batch with the context.
Which model serves is ``b3quant_models.models.promotion``'s business (promoted model, else the
persistence baseline, flagged).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np
import pandas as pd

from b3quant_models.calendar import next_session
from b3quant_models.features.day_context import DayContext, MarketReader, load_day_context, lookbacks_from_features
from b3quant_models.features.history import SeriesHistory, grid_history
from b3quant_models.models import ForecastModel
from b3quant_models.option_iv import compute_option_iv
from b3quant_models.pricing import greeks

from .schemas import ForecastRow

logger = logging.getLogger(__name__)


def lookbacks_for(model: ForecastModel) -> tuple[int, ...]:
    """Realized-vol windows the model's features were built with (rv_<w>d), default when it has none."""
    return lookbacks_from_features(model.features)


# ------------------------------------------------------------------------------------------ request rows
def contract_frame(rows: list[ForecastRow]) -> pd.DataFrame:
    """The contracts' identifying fields as the plain frame ``DayContext.match_tickers`` reads."""
    return pd.DataFrame({
        "ticker": pd.Series([r.ticker for r in rows], dtype=object),
        "underlying_ticker": [r.underlying for r in rows],
        "option_type": [r.option_type for r in rows],
        "strike": pd.Series([r.strike for r in rows], dtype=float),
        "expiry": pd.Series([r.expiry for r in rows], dtype=object),
    })


def request_option_iv(rows: list[ForecastRow], day: dt.date, rate: float, spots: dict[str, float],
                      isins: dict[str, str], tickers: list[str]) -> pd.DataFrame:
    """Request contracts as ``option_iv`` rows of ``day``, via ``compute_option_iv`` like the asset."""
    ts = pd.Timestamp(day)
    n = len(rows)
    opts = pd.DataFrame({
        "trade_date": [ts] * n,
        "ticker": tickers,
        "underlying_isin": [f"__req{i}" for i in range(n)],
        "underlying_ticker": [r.underlying for r in rows],
        "option_type": [r.option_type for r in rows],
        "strike": [r.strike for r in rows],
        "expiry": pd.to_datetime([r.expiry for r in rows]),
        "trades": [r.trades if r.trades is not None else int(r.price is not None) for r in rows],
        "quantity": np.zeros(n, dtype=np.int64),
        "volume": [np.nan if r.volume is None else r.volume for r in rows],
        "close": [np.nan if r.price is None else r.price for r in rows],
        "best_bid": [np.nan if r.best_bid is None else r.best_bid for r in rows],
        "best_ask": [np.nan if r.best_ask is None else r.best_ask for r in rows],
        "is_index_option": np.zeros(n, dtype=bool),
    })
    unds = pd.DataFrame({
        "trade_date": [ts] * n,
        "isin": opts["underlying_isin"],
        "close": [r.spot if r.spot is not None else spots.get(r.underlying, np.nan) for r in rows],
    })
    out = compute_option_iv(opts, unds, pd.DataFrame({"trade_date": [ts], "r_cont": [rate]}))
    out["underlying_isin"] = [isins.get(r.underlying, r.underlying) for r in rows]
    given = np.array([r.iv is not None for r in rows])
    if given.any():  # a quoted IV overrides the solver; Greeks from the same formulas as the asset
        iv = np.array([np.nan if r.iv is None else r.iv for r in rows])
        g = greeks(out["spot"], out["strike"], out["t"], out["r"], iv, out["option_type"].eq("call"))
        ok = given & out["spot"].notna().to_numpy() & (out["bdays"].to_numpy() > 0)
        out.loc[ok, "iv"] = iv[ok]
        out.loc[ok, "iv_source"] = "given"
        out.loc[ok, "iv_reason"] = "ok"
        for c in ("delta", "gamma", "vega", "theta", "rho"):
            out.loc[ok, c] = g[c][ok]
    return out


def forecast_features(
    store: MarketReader, rows: list[ForecastRow], day: dt.date, rate: float, lookbacks: tuple[int, ...],
    context: DayContext | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(request rows as option_iv, feature table restricted to the request rows).

    ``context`` is the cached ``load_day_context(store, day, lookbacks)``; without it one is built (see
    ``DayContext.features`` for how the rows' features are made).
    """
    ctx = context if context is not None else load_day_context(store, day, lookbacks)
    if (ctx.day, ctx.lookbacks) != (day, lookbacks):
        raise ValueError(f"context of {ctx.day} {ctx.lookbacks} used for {day} {lookbacks}")
    req = request_option_iv(rows, day, rate, ctx.spots, ctx.isins, ctx.match_tickers(contract_frame(rows)))
    return req, ctx.features(req)


def target_date(day: dt.date) -> dt.date:
    return next_session(day)


def stored_series_history(ctx: DayContext) -> SeriesHistory:
    """The stored history of the series alive on the context's day, as the ``SeriesHistory`` models that look
    back read (the training dataset's is built the same way from the feature table's rows)."""
    return SeriesHistory.from_rows(ctx.history)


def stored_grid_history(store: Any, day: dt.date, sessions: int) -> SeriesHistory:
    """The stored surface grids of the last ``sessions`` sessions up to ``day``, as the grid history the
    training dataset attaches for models that forecast through the grid (``grid_history``, same code)."""
    return grid_history(store.recent_grid(day, sessions))


def place_on_gpu(model: ForecastModel, device: str = "cuda") -> list[str]:
    """Move the torch networks of ``model`` (or of an ensemble's members) to ``device`` for inference;
    returns the names moved. Models without a network are left alone (they run on the CPU anyway)."""
    moved = []
    for m in [model, *getattr(model, "members", {}).values()]:
        if hasattr(m, "to_device"):
            m.to_device(device)
            moved.append(m.name)
    return moved


def predictions(req: pd.DataFrame, feats: pd.DataFrame, model: ForecastModel,
                history: SeriesHistory | None = None) -> list[dict[str, Any]]:
    """One dict per request row (in order): today's IV, the forecast, or why there is none. ``history``
    (``stored_series_history`` of the day; the request's rows are added here) for models that look back."""
    if model.history_length and history is not None:
        history = history.extended(feats)
    pred = pd.Series(model.predict(feats, history=history), index=feats["ticker"].to_numpy()) if len(feats) \
        else pd.Series()
    out = []
    for r in req.itertuples(index=False):
        iv = float(r.iv) if np.isfinite(r.iv) else None
        p = pred.get(r.ticker)
        ok = r.iv_reason == "ok" and p is not None and np.isfinite(p)
        out.append({
            "ticker": None if str(r.ticker).startswith("__req") else r.ticker,
            "iv_today": iv,
            "iv_source": r.iv_source if isinstance(r.iv_source, str) else None,
            "iv_next": float(p) if ok else None,
            "reason": "ok" if ok else (r.iv_reason if r.iv_reason != "ok" else "no_forecast"),
        })
    return out
