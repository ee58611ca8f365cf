"""The request-independent part of one stored day's features, for scoring contracts of that day.

``build_option_features`` is two stages: ``contract_features`` (per option series, over its own history)
and ``add_context_features`` (the day's per-underlying surface/underlying features and market factors).
A ``DayContext`` holds everything of a stored day that does not depend on which contracts are scored:
the day's fitted slices, the per-underlying context, the same-day market factors, the history of series
alive that day, and the features of the day's stored rows (a contract equal to a stored row on every
column the features read takes that row's features). Built from plain frames read through the small
``MarketReader`` protocol, with the feature builder's own functions, so a contract scored here has
exactly the features it has in the batch table. The BentoML service builds one per day and file version.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import pandas as pd

from b3quant_models.features.common import DEFAULT_LOOKBACKS
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
from b3quant_models.option_iv import OPTION_IV_COLUMNS

SURFACE_DAYS = 10  # surface_summary needs the day and 5 earlier *available* surface days; margin for gaps
STRIKE_TOL = 1e-6


class MarketReader(Protocol):
    """The stored tables a day context reads (the service's read-only ``MarketStore`` is one)."""

    def options_on(self, day: dt.date) -> pd.DataFrame:
        """Every stored ``option_iv`` row of ``day``."""
        ...

    def live_series_history(self, day: dt.date) -> pd.DataFrame:
        """``option_iv`` rows before ``day`` with a usable IV, of series still alive on ``day``."""
        ...

    def recent_surfaces(self, day: dt.date, underlyings: Iterable[str], n_days: int) -> pd.DataFrame:
        """``iv_surface`` rows of the last ``n_days`` surface days <= ``day`` per underlying."""
        ...

    def underlying_quotes_until(self, day: dt.date, underlyings: Iterable[str]) -> pd.DataFrame:
        """All ``underlying_quotes`` rows <= ``day`` of the given tickers (the whole history)."""
        ...


def lookbacks_from_features(features: Sequence[str] | None) -> tuple[int, ...]:
    """Realized-vol windows a feature list was built with (``rv_<w>d``), the default when it has none."""
    ws = sorted({int(m.group(1)) for f in features or [] if (m := re.fullmatch(r"rv_(\d+)d", f))})
    return tuple(ws) or DEFAULT_LOOKBACKS


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

    def match_tickers(self, contracts: pd.DataFrame) -> list[str]:
        """Explicit tickers, else the first stored series that day with the same underlying/type/strike/expiry.

        ``contracts``: one row per requested contract with ``ticker`` (None when not given),
        ``underlying_ticker``, ``option_type``, ``strike`` and ``expiry`` (a ``datetime.date``).
        """
        out = []
        for i, r in enumerate(contracts.itertuples(index=False)):
            if isinstance(r.ticker, str) and r.ticker:
                out.append(r.ticker.strip().upper())
                continue
            strikes, tickers = self.series.get((r.underlying_ticker, r.option_type, r.expiry), (np.empty(0), []))
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

    def features(self, req: pd.DataFrame) -> pd.DataFrame:
        """The feature rows of ``req`` (``option_iv`` rows of the day, e.g. request contracts priced with
        ``compute_option_iv``), as the batch table would have them.

        Rows equal to a stored row (same series, same quote) take its precomputed features; the others run
        ``contract_features`` over themselves and their series' history, joined to the day's context.
        """
        hit = self.stored_hits(req)
        parts = []
        if not hit.all():
            f = self.contract_rows(req[~hit])
            unds = set(f["underlying_ticker"])
            if hit.any() and not unds <= self.valid_underlyings:  # the market factors change for every row
                hit[:] = False
                f = self.contract_rows(req)
            parts.append(add_context_features(f, self.context_for(unds), self.lookbacks))
        if hit.any():
            parts.append(self.stored_features.loc[req.loc[hit, "ticker"]].reset_index(drop=True))
        if len(parts) == 1:
            return parts[0]
        return pd.concat(parts, ignore_index=True).sort_values(KEY_COLUMNS).reset_index(drop=True)

    def stored_hits(self, req: pd.DataFrame) -> np.ndarray:
        """Request rows equal to the stored row of their ticker on every column the features read."""
        if not self.stored_quotes:
            return np.zeros(len(req), dtype=bool)
        vals = req[list(_MATCH_COLUMNS)].itertuples(index=False, name=None)
        return np.array([self.stored_quotes.get(t) == _quote_key(v) for t, v in zip(req["ticker"], vals,
                                                                                   strict=True)], dtype=bool)


def load_day_context(store: MarketReader, day: dt.date, lookbacks: tuple[int, ...]) -> DayContext:
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
