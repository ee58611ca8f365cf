"""Pydantic request/response models of the serving API.

Every check that can be made on a row alone lives here, so bad input is rejected per HTTP request with
a 400 naming the field and row index *before* BentoML's adaptive batcher merges requests: an error
raised inside a merged batch would fail every request that shares it. Checks that need stored data
(default trade date and rate) run in ``IVRow``'s validator through the cached ``MarketStore`` snapshot
for the same reason.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import os
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from b3quant_models.calendar import calendar_bounds, is_session

MAX_ROWS = int(os.environ.get("B3Q_BENTO_MAX_ROWS", "10000"))  # per request; larger batches get a 400
MAX_PRICE = 1e9  # BRL (or index points): bounds keep every derived quantity (forward, k, Greeks) finite
MAX_T = 100.0  # years
OptionType = Literal["call", "put"]


def _json_number(v: object) -> object:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return v


# strict: JSON true/"1.5" are not numbers (an int is still a float); bounded so that results stay finite.
Price = Annotated[float, Field(gt=0, le=MAX_PRICE, strict=True)]
Quantity = Annotated[float, Field(ge=0, le=1e15, strict=True)]
# JSON Schema's "integer" includes 3.0, so an integer-valued float is a count too; true and "3" are not.
Count = Annotated[int, Field(ge=0, le=10**12), BeforeValidator(_json_number)]
Rate = Annotated[float, Field(gt=-1.0, lt=5.0, strict=True, description="continuous annual rate r = ln(1 + CDI)")]
Underlying = Annotated[str, Field(min_length=1, max_length=12, pattern=r"^\s*[A-Za-z0-9]{1,12}\s*$",
                                  description="B3 ticker of the underlying, e.g. PETR4")]
Ticker = Annotated[str, Field(min_length=1, max_length=20, pattern=r"^\s*[A-Za-z0-9]{1,20}\s*$",
                              description="B3 option ticker, e.g. PETRA420")]

# Request examples (OpenAPI "Try it out", docs/serving.md): valid against the demo's data and the tests' market,
# since they leave trade_date to default to the latest stored day. tests/test_bento_service.py posts them.
EXAMPLE_EXPIRY = "2026-06-19"
IMPLIED_VOL_EXAMPLE = {"rows": [{"price": 7.5, "spot": 41.2, "strike": 42.0, "option_type": "call",
                                 "expiry": EXAMPLE_EXPIRY}]}
SURFACE_EXAMPLE = {"underlying": "PETR4"}
PREDICT_IV_EXAMPLE = {"contracts": [{"underlying": "PETR4", "option_type": "call", "strike": 42.0,
                                     "expiry": EXAMPLE_EXPIRY, "spot": 41.2, "price": 7.5}]}


def unprocessable(msg: str) -> PydanticCustomError:
    """A rule no JSON Schema can state (the B3 calendar, stored data, comparisons between fields).

    Such a request is schema-valid, so it is answered 422, not 400 (``bento.http`` maps a 400 whose every
    error has this type): a 400 always means the request contradicts the OpenAPI document.
    """
    return PydanticCustomError("unprocessable", msg.replace("{", "(").replace("}", ")"))


def check_session(d: dt.date | None) -> dt.date | None:
    """B3 time is counted in sessions, so a non-session trade date has no well-defined time to expiry."""
    if d is None:
        return d
    lo, hi = calendar_bounds()
    if not lo <= d <= hi:
        raise unprocessable(f"trade_date {d} is outside the B3 calendar ({lo}..{hi})")
    if not is_session(d):
        raise unprocessable(f"trade_date {d} is not a B3 trading session (weekend or exchange holiday)")
    return d


def check_expiry(d: dt.date | None) -> dt.date | None:
    """Time to expiry is counted on the B3 calendar; past its end the count would be unknown."""
    if d is not None:
        _, hi = calendar_bounds()
        if d > hi:
            raise unprocessable(f"expiry {d} is beyond the B3 calendar's last known session ({hi})")
    return d


def _at_most_rows(v: object) -> object:
    """``max_length`` is checked after every item was validated: 100k rows would cost seconds before their
    400; counting the raw list first rejects them at once (the same error pydantic would give)."""
    if isinstance(v, list) and len(v) > MAX_ROWS:
        raise PydanticCustomError("too_long", "List should have at most {max_length} items after validation, not "
                                  "{actual_length}", {"field_type": "List", "max_length": MAX_ROWS,
                                                      "actual_length": len(v)})
    return v


# Set (to None, then the snapshot once a row needs it) while an IVRequest is validated; False outside one.
_REQUEST_SNAPSHOT: contextvars.ContextVar = contextvars.ContextVar("b3q_request_snapshot", default=False)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Out(BaseModel):
    """Responses: a non-finite float is written as null, never as the invalid JSON token ``Infinity``."""

    model_config = ConfigDict(ser_json_inf_nan="null")


# ------------------------------------------------------------------------------------------------ implied_vol
class IVRow(_Strict):
    """One option quote to invert. Give ``expiry`` (B3 business days / 252 from ``trade_date``) or ``t``."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["expiry"], "properties": {"expiry": {"type": "string"}}},
        {"required": ["t"], "properties": {"t": {"type": "number"}}},
    ]})

    price: Price = Field(description="option premium per unit")
    spot: Price = Field(description="underlying price")
    strike: Price
    option_type: OptionType
    expiry: dt.date | None = Field(None, description="expiry date; time = B3 sessions in (trade_date, expiry] / 252")
    t: Annotated[float, Field(gt=0, le=MAX_T, strict=True)] | None = Field(
        None, description="time to expiry in years (instead of expiry)")
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
            raise unprocessable(f"expired contract: expiry {self.expiry} <= trade_date {self.trade_date}")
        return self

    def _defaults_from_store(self) -> None:
        from bento.store import StoreUnavailable, get_store

        held = _REQUEST_SNAPSHOT.get()
        try:
            snap = held if held not in (None, False) else get_store().snapshot()
            if held is None:  # inside an IVRequest: its other rows reuse this snapshot
                _REQUEST_SNAPSHOT.set(snap)
        except StoreUnavailable as e:
            raise unprocessable(f"{e}; pass 'trade_date' and 'rate' explicitly") from None
        if self.trade_date is None:
            if snap.latest is None:
                raise unprocessable("no stored trading day to default 'trade_date' to; pass it explicitly")
            self.trade_date = snap.latest
        if self.rate is None:
            r = snap.rates.get(self.trade_date)
            if r is None:
                raise unprocessable(f"no stored risk-free rate for trade_date {self.trade_date}; pass 'rate'")
            self.rate = r


class IVResult(_Out):
    """Solver output per row; ``iv`` and Greeks are null unless ``reason == 'ok'``.

    Units: vega per 1.00 vol, theta per year (-dV/dt), rho per 1.00 rate (as in docs/pricing.md).
    ``t``/``forward``/``k`` are null (reason ``non_finite``) when the inputs' extremes overflow them.
    """

    iv: float | None
    reason: str
    delta: float | None
    gamma: float | None
    vega: float | None
    theta: float | None
    rho: float | None
    t: float | None
    bdays: int | None
    trade_date: dt.date | None
    rate: float
    forward: float | None
    k: float | None


IVRows = Annotated[list[IVRow], BeforeValidator(_at_most_rows), Field(min_length=1, max_length=MAX_ROWS)]


class IVRequest(_Strict):
    """Body of ``/implied_vol``: unknown top-level fields are rejected like unknown row fields."""

    model_config = ConfigDict(json_schema_extra={"example": IMPLIED_VOL_EXAMPLE})
    rows: IVRows

    @model_validator(mode="wrap")
    @classmethod
    def _one_snapshot(cls, data: object, handler):
        """The rows' defaults come from one store snapshot per request (a stat per row cost 10k-row bodies)."""
        token = _REQUEST_SNAPSHOT.set(None)
        try:
            return handler(data)
        finally:
            _REQUEST_SNAPSHOT.reset(token)


class SurfaceRequest(_Strict):
    model_config = ConfigDict(json_schema_extra={"example": SURFACE_EXAMPLE})
    underlying: Underlying
    trade_date: dt.date | None = Field(None, description="default: the latest stored day")


# ------------------------------------------------------------------------------------------------ surface
class SVISlice(_Out):
    """One fitted expiry: raw SVI w(k) = a + b(rho(k-m) + sqrt((k-m)^2 + sigma^2)), k = ln(K/F)."""

    expiry: dt.date
    t: float | None
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


class GridPoint(_Out):
    tenor_days: int
    delta: float | None
    t: float | None
    k: float | None
    iv: float | None
    total_variance: float | None
    extrapolated: bool
    flag_reason: str | None


class SurfaceResponse(_Out):
    underlying: str
    trade_date: dt.date
    slices: list[SVISlice]
    grid: list[GridPoint]


# ------------------------------------------------------------------------------------------------ predict_iv
class ForecastRow(_Strict):
    """A contract quoted on the request's trade date. Today's IV comes from ``iv`` if given, else it is
    solved from ``price`` (last trade) and/or ``best_bid``/``best_ask`` exactly as the option_iv asset does."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["iv"], "properties": {"iv": {"type": "number"}}},
        {"required": ["price"], "properties": {"price": {"type": "number"}}},
        {"required": ["best_bid", "best_ask"], "properties": {"best_bid": {"type": "number", "exclusiveMinimum": 0},
                                                             "best_ask": {"type": "number", "exclusiveMinimum": 0}}},
    ]})

    underlying: Underlying
    option_type: OptionType
    strike: Price
    expiry: dt.date
    ticker: Ticker | None = Field(None, description="B3 option ticker; must name this contract's stored series "
                                  "(a 400 otherwise); default: matched by underlying/type/strike/expiry")
    spot: Price | None = Field(None, description="default: the underlying's stored close that day")
    iv: Annotated[float, Field(gt=0, le=10.0, strict=True)] | None = Field(
        None, description="today's implied vol (decimal)")
    price: Price | None = Field(None, description="last trade price")
    best_bid: Annotated[float, Field(ge=0, le=MAX_PRICE, strict=True)] | None = Field(
        None, description="0 = no bid (as in COTAHIST)")
    best_ask: Annotated[float, Field(ge=0, le=MAX_PRICE, strict=True)] | None = Field(None, description="0 = no offer")
    volume: Quantity | None = None
    trades: Count | None = None

    @field_validator("expiry")
    @classmethod
    def _expiry_in_calendar(cls, v: dt.date) -> dt.date:
        return check_expiry(v)

    @model_validator(mode="after")
    def _has_quote(self) -> ForecastRow:
        self.underlying = self.underlying.strip().upper()
        if self.ticker is not None:
            self.ticker = self.ticker.strip().upper()
        book = bool(self.best_bid and self.best_ask)  # both sides present and > 0
        if self.iv is None and self.price is None and not book:
            raise ValueError("give today's 'iv', or a 'price', or both 'best_bid' and 'best_ask' > 0")
        if book and self.best_ask < self.best_bid:
            raise unprocessable(f"best_ask {self.best_ask} < best_bid {self.best_bid}")
        return self


ForecastRows = Annotated[list[ForecastRow], BeforeValidator(_at_most_rows), Field(min_length=1, max_length=MAX_ROWS)]


class ForecastRequest(_Strict):
    model_config = ConfigDict(json_schema_extra={"example": PREDICT_IV_EXAMPLE})
    contracts: ForecastRows
    trade_date: dt.date | None = Field(None, description="day the quotes are from; default the latest stored day")


class Forecast(_Out):
    ticker: str | None
    iv_today: float | None
    iv_source: str | None
    iv_next: float | None
    reason: str


class ForecastResponse(_Out):
    model_version: str
    model_name: str
    note: str | None
    trade_date: dt.date
    target_date: dt.date
    predictions: list[Forecast]


# ------------------------------------------------------------------------------------------------ errors
class ErrorItem(BaseModel):
    """One pydantic validation error: ``loc`` names the field (``["rows", 3, "price"]``)."""

    type: str
    loc: list[str | int]
    msg: str


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body (bento/http.py rewrites BentoML's and Starlette's into this shape)."""

    error: str = Field(description="what was wrong, naming the field/row; inputs quoted truncated")
    detail: list[ErrorItem] | None = Field(None, description="validation errors, one per field")
