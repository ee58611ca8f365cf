"""Pydantic request/response models of the serving API.

Every check that can be made on a row alone lives here, so bad input is rejected per HTTP request with
a 400 naming the field and row index *before* BentoML's adaptive batcher merges requests: an error
raised inside a merged batch would fail every request that shares it. Checks that need stored data
(default trade date and rate) run in ``IVRow``'s validator through the cached ``MarketStore`` snapshot
for the same reason.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, field_validator, model_validator

from b3quant_models.calendar import calendar_bounds, is_session

MAX_ROWS = int(os.environ.get("B3Q_BENTO_MAX_ROWS", "10000"))  # per request; larger batches get a 400
OptionType = Literal["call", "put"]
Rate = Annotated[float, Field(gt=-1.0, lt=5.0, description="continuous annual rate r = ln(1 + CDI)")]


def check_session(d: dt.date | None) -> dt.date | None:
    """B3 time is counted in sessions, so a non-session trade date has no well-defined time to expiry."""
    if d is None:
        return d
    lo, hi = calendar_bounds()
    if not lo <= d <= hi:
        raise ValueError(f"trade_date {d} is outside the B3 calendar ({lo}..{hi})")
    if not is_session(d):
        raise ValueError(f"trade_date {d} is not a B3 trading session (weekend or exchange holiday)")
    return d


def check_expiry(d: dt.date | None) -> dt.date | None:
    """Time to expiry is counted on the B3 calendar; past its end the count would be unknown."""
    if d is not None:
        _, hi = calendar_bounds()
        if d > hi:
            raise ValueError(f"expiry {d} is beyond the B3 calendar's last known session ({hi})")
    return d


def _finite(v: float | None, name: str) -> float | None:
    if v is not None and not math.isfinite(v):
        raise ValueError(f"{name} must be finite")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ------------------------------------------------------------------------------------------------ implied_vol
class IVRow(_Strict):
    """One option quote to invert. Give ``expiry`` (B3 business days / 252 from ``trade_date``) or ``t``."""

    price: PositiveFloat = Field(description="option premium per unit")
    spot: PositiveFloat = Field(description="underlying price")
    strike: PositiveFloat
    option_type: OptionType
    expiry: dt.date | None = Field(None, description="expiry date; time = B3 sessions in (trade_date, expiry] / 252")
    t: PositiveFloat | None = Field(None, description="time to expiry in years (instead of expiry)")
    trade_date: dt.date | None = Field(None, description="default: the latest stored trading day")
    rate: Rate | None = Field(None, description="default: that day's r_cont from b3.risk_free_rate")

    @field_validator("expiry")
    @classmethod
    def _expiry_in_calendar(cls, v: dt.date | None) -> dt.date | None:
        return check_expiry(v)

    @field_validator("trade_date")
    @classmethod
    def _session(cls, v: dt.date | None) -> dt.date | None:
        return check_session(v)

    @model_validator(mode="after")
    def _resolve(self) -> IVRow:
        if (self.expiry is None) == (self.t is None):
            raise ValueError("give exactly one of 'expiry' and 't'")
        if (self.trade_date is None and self.expiry is not None) or self.rate is None:
            self._defaults_from_store()
        if self.expiry is not None and self.expiry <= self.trade_date:
            raise ValueError(f"expired contract: expiry {self.expiry} <= trade_date {self.trade_date}")
        return self

    def _defaults_from_store(self) -> None:
        from bento.store import StoreUnavailable, get_store

        try:
            snap = get_store().snapshot()
        except StoreUnavailable as e:
            raise ValueError(f"{e}; pass 'trade_date' and 'rate' explicitly") from None
        if self.trade_date is None:
            if snap.latest is None:
                raise ValueError("no stored trading day to default 'trade_date' to; pass it explicitly")
            self.trade_date = snap.latest
        if self.rate is None:
            r = snap.rates.get(self.trade_date)
            if r is None:
                raise ValueError(f"no stored risk-free rate for trade_date {self.trade_date}; pass 'rate'")
            self.rate = r


class IVResult(BaseModel):
    """Solver output per row; ``iv`` and Greeks are null unless ``reason == 'ok'``.

    Units: vega per 1.00 vol, theta per year (-dV/dt), rho per 1.00 rate (as in docs/pricing.md).
    """

    iv: float | None
    reason: str
    delta: float | None
    gamma: float | None
    vega: float | None
    theta: float | None
    rho: float | None
    t: float
    bdays: int | None
    trade_date: dt.date | None
    rate: float
    forward: float
    k: float


IVRows = Annotated[list[IVRow], Field(min_length=1, max_length=MAX_ROWS)]


# ------------------------------------------------------------------------------------------------ surface
class SVISlice(BaseModel):
    """One fitted expiry: raw SVI w(k) = a + b(rho(k-m) + sqrt((k-m)^2 + sigma^2)), k = ln(K/F)."""

    expiry: dt.date
    t: float
    a: float | None
    b: float | None
    rho: float | None
    m: float | None
    sigma: float | None
    forward: float | None
    atm_iv: float | None
    rmse_vol_pts: float | None
    n_quotes: int | None
    status: str
    reason: str | None
    repaired: bool | None
    model: str | None


class GridPoint(BaseModel):
    tenor_days: int
    delta: float
    t: float
    k: float | None
    iv: float | None
    total_variance: float | None
    extrapolated: bool
    flag_reason: str | None


class SurfaceResponse(BaseModel):
    underlying: str
    trade_date: dt.date
    slices: list[SVISlice]
    grid: list[GridPoint]


# ------------------------------------------------------------------------------------------------ predict_iv
class ForecastRow(_Strict):
    """A contract quoted on the request's trade date. Today's IV comes from ``iv`` if given, else it is
    solved from ``price`` (last trade) and/or ``best_bid``/``best_ask`` exactly as the option_iv asset does."""

    underlying: str = Field(min_length=1, max_length=12)
    option_type: OptionType
    strike: PositiveFloat
    expiry: dt.date
    ticker: str | None = Field(None, description="B3 option ticker; default: matched by underlying/type/strike/expiry")
    spot: PositiveFloat | None = Field(None, description="default: the underlying's stored close that day")
    iv: PositiveFloat | None = Field(None, le=10.0, description="today's implied vol (decimal)")
    price: PositiveFloat | None = Field(None, description="last trade price")
    best_bid: Annotated[float, Field(ge=0)] | None = Field(None, description="0 = no bid (as in COTAHIST)")
    best_ask: Annotated[float, Field(ge=0)] | None = Field(None, description="0 = no offer")
    volume: Annotated[float, Field(ge=0)] | None = None
    trades: Annotated[int, Field(ge=0)] | None = None

    @field_validator("expiry")
    @classmethod
    def _expiry_in_calendar(cls, v: dt.date) -> dt.date:
        return check_expiry(v)

    @model_validator(mode="after")
    def _has_quote(self) -> ForecastRow:
        self.underlying = self.underlying.strip().upper()
        book = bool(self.best_bid and self.best_ask)  # both sides present and > 0
        if self.iv is None and self.price is None and not book:
            raise ValueError("give today's 'iv', or a 'price', or both 'best_bid' and 'best_ask' > 0")
        if book and self.best_ask < self.best_bid:
            raise ValueError(f"best_ask {self.best_ask} < best_bid {self.best_bid}")
        return self


ForecastRows = Annotated[list[ForecastRow], Field(min_length=1, max_length=MAX_ROWS)]


class Forecast(BaseModel):
    ticker: str | None
    iv_today: float | None
    iv_source: str | None
    iv_next: float | None
    reason: str


class ForecastResponse(BaseModel):
    model_version: str
    model_name: str
    note: str | None
    trade_date: dt.date
    target_date: dt.date
    predictions: list[Forecast]
