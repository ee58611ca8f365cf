"""Next-day IV forecasts for request contracts, with the same library code as training.

No training/serving skew by construction: request quotes become ``option_iv`` rows through
``compute_option_iv`` (the asset's own function), and features come from ``build_option_features``
over those rows plus exactly the stored history the batch feature table would use for them:
the contracts' own series history, the last surface days and underlying quotes of the involved
underlyings, and one valid row per underlying that day (so same-day market factors count the same
underlyings). The promoted model is looked up in the BentoML model store; without one the service
serves the persistence baseline and says so.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from b3quant_models.calendar import next_session
from b3quant_models.features import DEFAULT_LOOKBACKS, build_option_features
from b3quant_models.features.common import RETURN_HORIZONS, VOLUME_WINDOW
from b3quant_models.models import ForecastModel, PersistenceModel
from b3quant_models.option_iv import compute_option_iv
from b3quant_models.pricing import greeks

from .schemas import ForecastRow
from .store import MarketStore

logger = logging.getLogger(__name__)

MODEL_NAME = "b3quant_iv_forecaster"
MODEL_TAG = f"{MODEL_NAME}:latest"
BASELINE_VERSION = "persistence-baseline"
SURFACE_DAYS = 10  # surface_summary needs the day and 5 earlier *available* surface days; margin for gaps
STRIKE_TOL = 1e-6


# ------------------------------------------------------------------------------------------ model lookup
@dataclass
class LoadedForecaster:
    model: ForecastModel
    version: str
    name: str
    note: str | None


def _model_dir(root: Path) -> Path:
    """The saved ForecastModel directory inside a BentoML model (at its root or under ``model/``)."""
    return root if (root / "metadata.json").is_file() else root / "model"


def promote(
    model_dir: str | Path, *, labels: dict[str, str] | None = None, metadata: dict[str, Any] | None = None
) -> str:
    """Copy a ``ForecastModel.save`` directory into the BentoML model store as ``b3quant_iv_forecaster``.

    ``metadata`` (run ids, metrics, features, data period) is stored beside the model's own facts.
    Returns the new tag; ``:latest`` then resolves to it, so the next service start serves it.
    """
    import bentoml

    src = Path(model_dir)
    meta = json.loads((src / "metadata.json").read_text())
    keep = {k: meta[k] for k in ("name", "format_version", "train_start", "train_end", "n_train") if k in meta}
    keep |= metadata or {}
    with bentoml.models.create(MODEL_NAME, labels=labels or {"model": str(meta.get("name"))}, metadata=keep) as m:
        shutil.copytree(src, Path(m.path) / "model", dirs_exist_ok=True)
        tag = str(m.tag)
    return tag


def promoted_tag() -> str | None:
    """The concrete tag ``b3quant_iv_forecaster:latest`` resolves to in the model store, if any."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return str(bentoml.models.get(MODEL_TAG).tag)
    except (NotFound, ValueError):
        return None


def load_forecaster() -> LoadedForecaster:
    """The promoted model from the BentoML store, else the persistence baseline (flagged in responses)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        stored = bentoml.models.get(MODEL_TAG)
    except (NotFound, ValueError):
        return LoadedForecaster(
            PersistenceModel(), BASELINE_VERSION, PersistenceModel.name,
            f"no promoted model '{MODEL_TAG}' in the BentoML model store: serving the persistence baseline "
            "(tomorrow's IV = today's)",
        )
    model = ForecastModel.load(_model_dir(Path(stored.path)))
    logger.info("serving %s (%s)", stored.tag, model.name)
    return LoadedForecaster(model, str(stored.tag), model.name, None)


def lookbacks_for(model: ForecastModel) -> tuple[int, ...]:
    """Realized-vol windows the model's features were built with (rv_<w>d), default when it has none."""
    ws = sorted({int(m.group(1)) for f in model.features or [] if (m := re.fullmatch(r"rv_(\d+)d", f))})
    return tuple(ws) or DEFAULT_LOOKBACKS


# ------------------------------------------------------------------------------------------ request rows
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
    out = compute_option_iv(opts, unds, pd.DataFrame({"date": [ts], "r_cont": [rate]}))
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


def _match_tickers(rows: list[ForecastRow], stored: pd.DataFrame) -> list[str]:
    """Explicit tickers, else the stored series with the same underlying/type/strike/expiry that day."""
    out = []
    for i, r in enumerate(rows):
        if r.ticker:
            out.append(r.ticker.strip().upper())
            continue
        m = stored[
            stored["underlying_ticker"].eq(r.underlying) & stored["option_type"].eq(r.option_type)
            & (stored["expiry"].dt.date == r.expiry) & ((stored["strike"] - r.strike).abs() < STRIKE_TOL)
        ] if len(stored) else stored
        out.append(str(m["ticker"].iloc[0]) if len(m) else f"__req{i}")  # new contract: no history
    return out


def forecast_features(store: MarketStore, rows: list[ForecastRow], day: dt.date, rate: float,
                      lookbacks: tuple[int, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(request rows as option_iv, feature table restricted to the request rows)."""
    unds = sorted({r.underlying for r in rows})
    stored_today = store.options_on(day, unds)
    tickers = _match_tickers(rows, stored_today)
    quote_days = 2 * max(*lookbacks, *RETURN_HORIZONS, VOLUME_WINDOW) + 2
    placeholders = store.one_valid_row_per_underlying(day)
    all_unds = sorted(set(unds) | set(placeholders["underlying_ticker"]))
    quotes = store.recent_underlying_quotes(day, all_unds, quote_days)
    ts = pd.Timestamp(day)
    q_today = quotes[pd.to_datetime(quotes["trade_date"]) == ts]
    spots = dict(zip(q_today["ticker"], q_today["close"].astype(float), strict=True))
    isins = dict(zip(q_today["ticker"], q_today["isin"], strict=True))
    req = request_option_iv(rows, day, rate, spots, isins, tickers)

    series = req[["ticker", "expiry"]]
    hist = store.series_history(day, series)
    keys = set(zip(req["ticker"], pd.to_datetime(req["expiry"]), strict=True))
    keep = [(t, e) not in keys for t, e in zip(placeholders["ticker"], pd.to_datetime(placeholders["expiry"]),
                                                strict=True)]
    frame = pd.concat([hist, placeholders.loc[keep], req[hist.columns.intersection(req.columns)]],
                      ignore_index=True)
    surfaces = store.recent_surfaces(day, all_unds, SURFACE_DAYS)
    feats = build_option_features(frame, surfaces, quotes, lookbacks=lookbacks)
    feats = feats[(feats["trade_date"] == ts) & feats["ticker"].isin(set(req["ticker"]))]
    return req, feats


def target_date(day: dt.date) -> dt.date:
    return next_session(day)


def predictions(req: pd.DataFrame, feats: pd.DataFrame, model: ForecastModel) -> list[dict[str, Any]]:
    """One dict per request row (in order): today's IV, the forecast, or why there is none."""
    pred = pd.Series(model.predict(feats), index=feats["ticker"].to_numpy()) if len(feats) else pd.Series()
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
