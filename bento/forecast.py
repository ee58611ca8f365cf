"""Next-day IV forecasts for request contracts, with the same library code as training.

No training/serving skew by construction: request quotes become ``option_iv`` rows through
``compute_option_iv`` (the asset's own function), and features come from the two stages
``build_option_features`` itself is made of. What does not depend on the request (the day's fitted
slices, per-underlying surface and underlying features, the same-day market factors, the stored
history of live series) is a ``DayContext``, built once per stored day and DuckDB file version with
the library's functions; a request only runs ``contract_features`` over its own rows plus its series'
history and joins the context with ``add_context_features``; a request row equal to a stored row (same
series, same quote) takes that row's features, precomputed the same way in one batch with the context.
The promoted model is looked up in the BentoML model store; without one the service serves the
persistence baseline and says so.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from b3quant_models.calendar import next_session
from b3quant_models.features import DEFAULT_LOOKBACKS
from b3quant_models.features.option import (
    KEY_COLUMNS,
    add_context_features,
    contract_features,
    day_context_features,
    market_regime,
    per_underlying_day,
    valid_iv_rows,
)
from b3quant_models.features.surface import usable_slices
from b3quant_models.models import ForecastModel, PersistenceModel, load_model
from b3quant_models.option_iv import OPTION_IV_COLUMNS, compute_option_iv
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
    model = load_model(_model_dir(Path(stored.path)))
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


# ------------------------------------------------------------------------------------------ day context
# option_iv columns the feature builder never reads (trades only acts through price_close, which is compared):
# a request row equal to the stored row on every other column has the stored row's features.
# tests/test_bento_service.py checks build_option_features is blind to them.
NOT_FEATURE_INPUTS = frozenset({"quantity", "trades"})
_MATCH_COLUMNS = tuple(c for c in OPTION_IV_COLUMNS if c not in NOT_FEATURE_INPUTS)


def _quote_key(row: tuple) -> tuple:
    """A row's values with NaN as None, so equal quotes compare equal (NaN != NaN)."""
    return tuple(None if isinstance(v, float) and v != v else v for v in row)


@dataclass(frozen=True)
class DayContext:
    """Everything a request of one stored day needs besides its own rows, built once (read-only after)."""

    day: dt.date
    lookbacks: tuple[int, ...]
    series: dict[tuple[str, str, dt.date], tuple[np.ndarray, list[str]]]  # (und, type, expiry) -> strikes, tickers
    spots: dict[str, float]  # underlying -> stored close that day
    isins: dict[str, str]
    history: pd.DataFrame  # valid rows before the day of series alive that day
    history_rows: dict[tuple[str, pd.Timestamp], np.ndarray]  # (ticker, expiry) -> positions in history
    slices: pd.DataFrame  # usable_slices of the day
    per_underlying: pd.DataFrame  # per_underlying_day of the day, every underlying with options that day
    valid_underlyings: frozenset[str]  # with a valid IV that day: they make up the market factors
    context: pd.DataFrame  # day_context_features with the market factors over valid_underlyings
    stored_quotes: dict[str, tuple] = field(default_factory=dict)  # ticker -> _MATCH_COLUMNS values
    stored_features: pd.DataFrame = field(default_factory=pd.DataFrame)  # of those rows, indexed by ticker

    def match_tickers(self, rows: list[ForecastRow]) -> list[str]:
        """Explicit tickers, else the first stored series that day with the same underlying/type/strike/expiry."""
        out = []
        for i, r in enumerate(rows):
            if r.ticker:
                out.append(r.ticker.strip().upper())
                continue
            strikes, tickers = self.series.get((r.underlying, r.option_type, r.expiry), (np.empty(0), []))
            hit = np.flatnonzero(np.abs(strikes - r.strike) < STRIKE_TOL)
            out.append(tickers[hit[0]] if len(hit) else f"__req{i}")  # new contract: no history
        return out

    def series_history(self, tickers: pd.Series, expiries: pd.Series) -> pd.DataFrame:
        """Stored history of the given (ticker, expiry) series, in stored order."""
        pos = [self.history_rows.get((str(t), pd.Timestamp(e))) for t, e in zip(tickers, expiries, strict=True)]
        pos = [p for p in pos if p is not None]
        return self.history.iloc[np.unique(np.concatenate(pos))] if pos else self.history.iloc[:0]

    def contract_rows(self, rows: pd.DataFrame) -> pd.DataFrame:
        """``contract_features`` of the day's valid ``rows`` (option_iv rows of the day), over their own
        rows plus their series' stored history: exactly what those rows see in the batch table."""
        hist = self.series_history(rows["ticker"], rows["expiry"])
        cols = self.history.columns.intersection(rows.columns)
        frame = pd.concat([hist, rows[cols]], ignore_index=True) if len(hist) else rows[cols]
        f = contract_features(valid_iv_rows(frame).reset_index(drop=True), self.slices)
        return f[f["trade_date"] == pd.Timestamp(self.day)]

    def context_for(self, underlyings: set[str]) -> pd.DataFrame:
        """Context rows with the market factors over the underlyings with a valid IV that day plus those
        given (an underlying whose stored quotes were all unusable counts once a request gives a valid one)."""
        if underlyings <= self.valid_underlyings:
            return self.context
        pu = self.per_underlying
        return day_context_features(pu, market_regime(pu[pu["underlying_ticker"].isin(self.valid_underlyings
                                                                                      | underlyings)]))

    def stored_hits(self, req: pd.DataFrame) -> np.ndarray:
        """Request rows equal to the stored row of their ticker on every column the features read."""
        if not self.stored_quotes:
            return np.zeros(len(req), dtype=bool)
        vals = req[list(_MATCH_COLUMNS)].itertuples(index=False, name=None)
        return np.array([self.stored_quotes.get(t) == _quote_key(v) for t, v in zip(req["ticker"], vals,
                                                                                   strict=True)], dtype=bool)


def load_day_context(store: MarketStore, day: dt.date, lookbacks: tuple[int, ...]) -> DayContext:
    """The request-independent part of the features of ``day``, with the library's own functions.

    Inputs are those the batch table would see for any contract of that day: the day's fitted slices,
    ``SURFACE_DAYS`` surface days (surface changes are lags over available days), every underlying
    quote up to the day (rolling sums depend on where a series starts), the history of live series.
    Also the features of every stored valid series that day, computed like a request's.
    """
    ts = pd.Timestamp(day)
    today = store.options_on(day)
    unds = sorted(set(today["underlying_ticker"]))
    quotes = store.underlying_quotes_until(day, unds)
    surfaces = store.recent_surfaces(day, unds, SURFACE_DAYS)
    history = store.live_series_history(day)
    q_today = quotes[pd.to_datetime(quotes["trade_date"]) == ts]

    series: dict[tuple[str, str, dt.date], tuple[list[float], list[str]]] = {}
    for u, o, e, k, t in zip(today["underlying_ticker"], today["option_type"], pd.to_datetime(today["expiry"]),
                             today["strike"].astype(float), today["ticker"], strict=True):
        strikes, tickers = series.setdefault((str(u), str(o), e.date()), ([], []))
        strikes.append(k)
        tickers.append(str(t))
    expiry_ns = pd.to_datetime(history["expiry"]).astype("datetime64[ns]")
    history_rows = history.groupby([history["ticker"].astype(str), expiry_ns]).indices if len(history) else {}

    slices = usable_slices(surfaces)
    slices = slices[slices["trade_date"] == ts].reset_index(drop=True)
    pairs = pd.DataFrame({"trade_date": pd.Series([ts] * len(unds), dtype="datetime64[ns]"),
                          "underlying_ticker": unds})
    pu = per_underlying_day(surfaces, quotes, pairs, lookbacks)
    valid = frozenset(valid_iv_rows(today)["underlying_ticker"].astype(str))
    ctx = DayContext(
        day=day, lookbacks=lookbacks,
        series={k: (np.asarray(v[0], dtype=float), v[1]) for k, v in series.items()},
        spots=dict(zip(q_today["ticker"], q_today["close"].astype(float), strict=True)),
        isins=dict(zip(q_today["ticker"], q_today["isin"], strict=True)),
        history=history, history_rows=history_rows, slices=slices, per_underlying=pu, valid_underlyings=valid,
        context=day_context_features(pu, market_regime(pu[pu["underlying_ticker"].isin(valid)])),
    )
    return _with_stored_features(ctx, today)


def _with_stored_features(ctx: DayContext, today: pd.DataFrame) -> DayContext:
    """``ctx`` plus the features of the day's stored valid rows, all in one batch through the request path.

    Only tickers that name one series (one row that day, one expiry in the history): with a recycled
    ticker the batch's per-(trade_date, ticker) dedup could see rows a single request would not.
    """
    valid = valid_iv_rows(today)
    expiries = pd.concat([ctx.history[["ticker", "expiry"]], today[["ticker", "expiry"]]]).drop_duplicates()
    one = set(valid["ticker"]) - set(today.loc[today["ticker"].duplicated(), "ticker"]) \
        - set(expiries.loc[expiries["ticker"].duplicated(), "ticker"])
    rows = today[today["ticker"].isin(one) & today.index.isin(valid.index)].reset_index(drop=True)
    if not len(rows):
        return ctx
    feats = add_context_features(ctx.contract_rows(rows), ctx.context, ctx.lookbacks)
    keys = rows[list(_MATCH_COLUMNS)].itertuples(index=False, name=None)
    return replace(ctx, stored_quotes={str(t): _quote_key(v) for t, v in zip(rows["ticker"], keys, strict=True)},
                   stored_features=feats.set_index("ticker", drop=False))


def forecast_features(
    store: MarketStore, rows: list[ForecastRow], day: dt.date, rate: float, lookbacks: tuple[int, ...],
    context: DayContext | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(request rows as option_iv, feature table restricted to the request rows).

    ``context`` is the cached ``load_day_context(store, day, lookbacks)``; without it one is built. Rows
    equal to a stored row (same series, same quote) take its precomputed features; the others run
    ``contract_features`` over themselves and their series' history, joined to the day's context.
    """
    ctx = context if context is not None else load_day_context(store, day, lookbacks)
    if (ctx.day, ctx.lookbacks) != (day, lookbacks):
        raise ValueError(f"context of {ctx.day} {ctx.lookbacks} used for {day} {lookbacks}")
    req = request_option_iv(rows, day, rate, ctx.spots, ctx.isins, ctx.match_tickers(rows))
    hit = ctx.stored_hits(req)
    parts = []
    if not hit.all():
        f = ctx.contract_rows(req[~hit])
        unds = set(f["underlying_ticker"])
        if hit.any() and not unds <= ctx.valid_underlyings:  # the market factors change for every row
            hit[:] = False
            f = ctx.contract_rows(req)
        parts.append(add_context_features(f, ctx.context_for(unds), lookbacks))
    if hit.any():
        parts.append(ctx.stored_features.loc[req.loc[hit, "ticker"]].reset_index(drop=True))
    if len(parts) == 1:
        return req, parts[0]
    return req, pd.concat(parts, ignore_index=True).sort_values(KEY_COLUMNS).reset_index(drop=True)


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
