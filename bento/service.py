"""BentoML service: implied vols with our solver, stored SVI surfaces, next-day IV forecasts.

Serve from the repo root: ``uv run bentoml serve bento.service:B3QuantService --host 127.0.0.1`` (loopback is
also the default). Endpoints, errors,
configuration and the model lookup are documented in docs/serving.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import weakref
from http import HTTPStatus

import anyio
import bentoml
import numpy as np
import pandas as pd
from bentoml.exceptions import InvalidArgument, NotFound, ServiceUnavailable

with bentoml.importing():
    from b3quant_models.calendar import DAYS_PER_YEAR, business_days
    from b3quant_models.features.day_context import STRIKE_TOL, DayContext, load_day_context
    from b3quant_models.models import promotion
    from b3quant_models.pricing import IVReason, greeks, implied_vol_with_reason
    from bento import forecast, http
    from bento.coalesce import Coalescer, Job
    from bento.schemas import (
        MAX_ROWS,
        Forecast,
        ForecastRequest,
        ForecastResponse,
        ForecastRow,
        ForecastRows,
        GridPoint,
        IVRequest,
        IVResult,
        IVRows,
        SurfaceRequest,
        SurfaceResponse,
        SVISlice,
        check_session,
    )
    from bento.store import MarketStore, StoreUnavailable, get_store

logger = logging.getLogger("bentoml.service")

# Resources are what a deployment reserves (and `bentoml serve` uses to size worker threads); set
# B3Q_BENTO_GPU=1 to request a GPU once a torch model (lstm/gru/pinn, or an ensemble holding one) is promoted:
# the service then also runs the network there (forecast.place_on_gpu); see docs/serving.md.
_RESOURCES: dict[str, object] = {"cpu": os.environ.get("B3Q_BENTO_CPU", "2"), "memory": "2Gi"}
if os.environ.get("B3Q_BENTO_GPU"):
    _RESOURCES |= {"gpu": int(os.environ["B3Q_BENTO_GPU"]), "gpu_type": "nvidia-l4"}

MAX_BATCH_LATENCY_MS = int(os.environ.get("B3Q_BENTO_MAX_LATENCY_MS", "1000"))


class Unprocessable(InvalidArgument):
    """Schema-valid but against the calendar or the stored data: 422 (see ``schemas.unprocessable``)."""

    error_code = HTTPStatus.UNPROCESSABLE_ENTITY


def _none_if_nan(a: np.ndarray) -> list[float | None]:
    return [float(x) if np.isfinite(x) else None for x in a]


def _maybe(d: dict, key: str, cast=float):
    v = d.get(key)
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return None
    return cast(v)


_SERIES_OF: dict[int, tuple[weakref.ref, dict[str, tuple[str, str, float, dt.date]]]] = {}


def _series_of(ctx: forecast.DayContext) -> dict[str, tuple[str, str, float, dt.date]]:
    """ticker -> (underlying, type, strike, expiry) of the day's stored series, built once per day context
    (a loop over every contract of the day: tens of thousands on a real B3 day, too many for each request)."""
    hit = _SERIES_OF.get(id(ctx))
    if hit is not None and hit[0]() is ctx:
        return hit[1]
    own: dict[str, tuple[str, str, float, dt.date]] = {}
    for (und, typ, exp), (strikes, tickers) in ctx.series.items():
        for k, t in zip(strikes, tickers, strict=True):
            own.setdefault(t, (und, typ, float(k), exp))
    for key in [k for k, (ref, _) in _SERIES_OF.items() if ref() is None]:
        del _SERIES_OF[key]
    _SERIES_OF[id(ctx)] = (weakref.ref(ctx), own)
    return own


def check_tickers(ctx: forecast.DayContext, contracts: list[ForecastRow]) -> None:
    """A given ticker must name the request's own contract: its history and stored features are used, so a
    ticker of another series (a call's on a put, another strike) would silently answer for that series."""
    if all(c.ticker is None for c in contracts):
        return
    own = _series_of(ctx)
    hist = ctx.history
    for i, c in enumerate(contracts):
        if c.ticker is None:
            continue
        if (s := own.get(c.ticker)) is None:
            pos = ctx.history_rows.get((c.ticker, pd.Timestamp(c.expiry)))
            if pos is None:
                continue  # a contract the store has never seen: no history is used
            r = hist.iloc[int(pos[-1])]
            s = (str(r["underlying_ticker"]), str(r["option_type"]), float(r["strike"]),
                 pd.Timestamp(r["expiry"]).date())
        if s[0] != c.underlying or s[1] != c.option_type or abs(s[2] - c.strike) >= STRIKE_TOL \
                or s[3] != c.expiry:
            raise Unprocessable(
                f"contracts[{i}].ticker: {c.ticker} is the stored series {s[0]} {s[1]} strike {s[2]:g} expiry {s[3]}, "
                f"not the contract given ({c.underlying} {c.option_type} strike {c.strike:g} expiry {c.expiry}); "
                "fix the ticker or leave it out to match by contract")


@bentoml.service(
    name="b3quant",
    resources=_RESOURCES,
    traffic={"timeout": 30, "concurrency": 32, "max_concurrency": 128},
    # Loopback unless asked otherwise (there is no authentication unless B3Q_BENTO_TOKEN is set): `bentoml serve`
    # without --host listens here; see docs/serving.md for exposing it.
    http={"host": os.environ.get("B3Q_BENTO_HOST", "127.0.0.1")},
    workers=int(os.environ.get("B3Q_BENTO_WORKERS", "1")),
    threads=int(os.environ.get("B3Q_BENTO_THREADS", "4")),
)
class B3QuantService:
    """B3 options: IVs and Greeks with the platform's solver, fitted surfaces, next-day IV forecasts."""

    # A promoted forecaster present at import/build time is declared, so `bentoml build` packs it into
    # the bento; without one the service still builds and serves the persistence baseline.
    if (_promoted := promotion.promoted_tag()) is not None:
        forecaster_model = bentoml.models.BentoModel(_promoted)

    def __init__(self) -> None:
        self.store: MarketStore = get_store()
        self.forecaster = promotion.load_forecaster()
        if os.environ.get("B3Q_BENTO_GPU"):  # a torch model promoted: run its network on the reserved GPU
            logger.info("GPU inference for %s", forecast.place_on_gpu(self.forecaster.model) or "nothing (no network)")
        self.lookbacks = forecast.lookbacks_for(self.forecaster.model)
        self.coalescer = Coalescer(self._run_forecasts, MAX_ROWS)
        # JIT-compile the numba solver now, not on the first request (it takes seconds, once).
        implied_vol_with_reason([10.0], [100.0], [100.0], [0.25], [0.1], [True])
        # Build the latest day's predict_iv context now too, so the first request does not pay for it.
        try:
            if (latest := self.store.snapshot().latest) is not None:
                self._day_context(latest)
        except StoreUnavailable as e:
            logger.warning("predict_iv context not preloaded: %s", e)
        logger.info("b3quant service: DuckDB %s (present: %s), model %s", self.store.path,
                    self.store.available(), self.forecaster.version)

    def _day_context(self, day: dt.date) -> DayContext:
        """The day's request-independent feature inputs, loaded once per day and DuckDB file version."""
        return self.store.cached(("day_context", day, self.lookbacks),
                                 lambda db: load_day_context(db, day, self.lookbacks))

    def __is_ready__(self) -> bool:
        """Not ready without a readable DuckDB file: surfaces, forecasts and default dates/rates need it."""
        try:
            self.store.snapshot()
        except StoreUnavailable as e:
            logger.warning("not ready: %s", e)
            return False
        return True

    # ------------------------------------------------------------------------------------------ implied_vol
    @bentoml.api(batchable=True, max_batch_size=MAX_ROWS, max_latency_ms=MAX_BATCH_LATENCY_MS, input_spec=IVRequest)
    def implied_vol(self, rows: IVRows) -> list[IVResult]:
        """Implied vol, reason and Greeks per quote (BSM, q = 0, t = B3 business days / 252).

        Rows arrive validated and with trade_date/rate resolved (see ``IVRow``), so nothing here can fail
        for one request only: adaptively batched requests share this call.
        """
        n = len(rows)
        price, spot, strike, rate = (np.fromiter((getattr(r, f) for r in rows), float, n)
                                     for f in ("price", "spot", "strike", "rate"))
        is_call = np.fromiter((r.option_type == "call" for r in rows), bool, n)
        has_exp = np.fromiter((r.expiry is not None for r in rows), bool, n)
        bdays = np.zeros(n, dtype=np.int64)
        t = np.fromiter((r.t if r.t is not None else np.nan for r in rows), float, n)
        if has_exp.any():
            idx = np.flatnonzero(has_exp)
            td = np.array([rows[i].trade_date for i in idx], dtype="datetime64[D]")
            ex = np.array([rows[i].expiry for i in idx], dtype="datetime64[D]")
            bdays[idx] = business_days(td, ex)
            t[idx] = bdays[idx] / DAYS_PER_YEAR
        with np.errstate(all="ignore"):  # extreme (valid) inputs overflow to inf/NaN, handled below
            iv, code = implied_vol_with_reason(price, spot, strike, t, rate, is_call)
            reason = IVReason.labels(code)
            bad = code != IVReason.OK
            g = greeks(spot, strike, t, rate, iv, is_call)
        g = {k: np.where(bad, np.nan, v) for k, v in g.items()}
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            fwd = spot * np.exp(rate * t)
            k = np.log(strike / fwd)
        # Bounded inputs keep these finite; should an extreme still overflow, the row says so (JSON has no inf).
        finite = np.isfinite(fwd) & np.isfinite(k) & np.isfinite(t)
        for v in g.values():
            finite &= np.isfinite(v) | bad
        reason = np.where(finite | bad, reason, "non_finite")
        keep = finite & ~bad
        iv = np.where(keep, iv, np.nan)
        cols = {"iv": _none_if_nan(iv), **{name: _none_if_nan(np.where(keep, v, np.nan)) for name, v in g.items()},
                "t": _none_if_nan(t), "forward": _none_if_nan(fwd), "k": _none_if_nan(k)}
        return [
            IVResult(
                iv=cols["iv"][i], reason=str(reason[i]), delta=cols["delta"][i], gamma=cols["gamma"][i],
                vega=cols["vega"][i], theta=cols["theta"][i], rho=cols["rho"][i], t=cols["t"][i],
                bdays=int(bdays[i]) if has_exp[i] else None, trade_date=rows[i].trade_date,
                rate=float(rate[i]), forward=cols["forward"][i], k=cols["k"][i],
            )
            for i in range(n)
        ]

    # ------------------------------------------------------------------------------------------ surface
    def _day(self, trade_date: dt.date | None) -> dt.date:
        try:
            snap = self.store.snapshot()
        except StoreUnavailable as e:
            raise ServiceUnavailable(str(e)) from e
        if trade_date is None:
            if snap.latest is None:
                raise NotFound("no trading day is stored yet")
            return snap.latest
        if trade_date not in snap.underlyings:
            raise NotFound(f"trade_date {trade_date} is not stored (stored: {snap.days[0]}..{snap.days[-1]})"
                           if snap.days else f"trade_date {trade_date} is not stored (nothing stored yet)")
        return trade_date

    @bentoml.api(input_spec=SurfaceRequest)
    def surface(self, underlying: str, trade_date: dt.date | None = None) -> SurfaceResponse:
        """The fitted SVI slices of one underlying and day, and its fixed tenor x delta grid."""
        try:
            check_session(trade_date)
        except ValueError as e:
            raise Unprocessable(f"trade_date: {e}") from None
        day = self._day(trade_date)
        und = underlying.strip().upper()
        try:
            with self.store.session() as db:
                slices, grid = db.surface(und, day)
                known = db.surface_underlyings(day) if slices.empty else []
        except StoreUnavailable as e:
            raise ServiceUnavailable(str(e)) from e
        if slices.empty:
            raise NotFound(f"underlying '{und}' has no surface on {day}; known underlyings that day: {known}")
        return SurfaceResponse(
            underlying=und,
            trade_date=day,
            slices=[
                SVISlice(
                    expiry=s["expiry"].date(), t=_maybe(s, "t"),
                    **{c: _maybe(s, c) for c in ("a", "b", "rho", "m", "sigma", "forward", "atm_iv", "rmse_vol_pts")},
                    n_quotes=_maybe(s, "n_quotes", int), status=str(s["status"]), reason=s.get("reason") or None,
                    repaired=_maybe(s, "repaired", bool), model=s.get("model"),
                )
                for s in slices.to_dict("records")
            ],
            grid=[
                GridPoint(
                    tenor_days=int(p["tenor_days"]), delta=_maybe(p, "delta"), t=_maybe(p, "t"), k=_maybe(p, "k"),
                    iv=_maybe(p, "iv"), total_variance=_maybe(p, "total_variance"),
                    extrapolated=bool(p["extrapolated"]), flag_reason=p.get("flag_reason") or None,
                )
                for p in grid.to_dict("records")
            ],
        )

    # ------------------------------------------------------------------------------------------ predict_iv
    @bentoml.api(input_spec=ForecastRequest)
    async def predict_iv(self, contracts: ForecastRows, trade_date: dt.date | None = None) -> ForecastResponse:
        """Next-session IV per contract from the promoted model (or the persistence baseline).

        Checks run per request; the feature computation is shared with concurrent requests (``bento.coalesce``).
        """
        day, job = await anyio.to_thread.run_sync(self._forecast_job, contracts, trade_date)
        f = self.forecaster
        return ForecastResponse(
            model_version=f.version, model_name=f.name, note=f.note, trade_date=day,
            target_date=forecast.target_date(day),
            predictions=[Forecast(**p) for p in await self.coalescer.submit(job)],
        )

    def _forecast_job(self, contracts: list[ForecastRow], trade_date: dt.date | None) -> tuple[dt.date, Job]:
        """Every check of one request (422/404/503 for it alone), then its share of a feature computation."""
        try:
            check_session(trade_date)
        except ValueError as e:
            raise Unprocessable(f"trade_date: {e}") from None
        day = self._day(trade_date)
        snap = self.store.snapshot()
        known = snap.underlyings.get(day, frozenset())
        for i, c in enumerate(contracts):
            if c.underlying not in known:
                raise NotFound(f"contracts[{i}].underlying: '{c.underlying}' has no stored options on {day}; "
                               f"known: {sorted(known)}")
            if c.expiry <= day:
                raise Unprocessable(f"contracts[{i}].expiry: expired contract, expiry {c.expiry} <= trade_date {day}")
        rate = snap.rates.get(day)
        if rate is None:
            raise NotFound(f"trade_date: no stored risk-free rate for {day}")
        try:
            ctx = self._day_context(day)
        except StoreUnavailable as e:
            raise ServiceUnavailable(str(e)) from e
        check_tickers(ctx, contracts)
        tickers = ctx.match_tickers(forecast.contract_frame(contracts))
        seen: set[str] = set()
        for i, t in enumerate(tickers):
            if t in seen:
                raise Unprocessable(f"contracts[{i}]: duplicate contract (ticker {t}) in one request")
            seen.add(t)
        alone = not {c.underlying for c in contracts} <= ctx.valid_underlyings
        named = frozenset(t for t in tickers if not t.startswith("__req"))
        return day, Job(key=(day, id(ctx), rate), rows=contracts, tickers=named, alone=alone, payload=(ctx, rate))

    def _run_forecasts(self, jobs: list[Job]) -> list[list[dict]]:
        """One feature computation and prediction for the merged rows of ``jobs``, split back per job."""
        ctx, rate = jobs[0].payload
        rows = [r for j in jobs for r in j.rows]
        req, feats = forecast.forecast_features(self.store, rows, ctx.day, rate, self.lookbacks, context=ctx)
        model = self.forecaster.model
        history = None
        if model.history_length:  # a model that looks back: the stored history of the live series
            history = self.store.cached(("series_history", ctx.day), lambda db: forecast.stored_series_history(ctx))
            if model.reads_grid_history:  # forecasts through the surface grid: the stored grids of the lookback
                n = model.history_length
                grid = self.store.cached(("grid_history", ctx.day, n),
                                         lambda db: forecast.stored_grid_history(db, ctx.day, n))
                history = history.with_grid(grid)
        preds = forecast.predictions(req, feats, model, history)
        out, at = [], 0
        for j in jobs:
            out.append(preds[at:at + len(j.rows)])
            at += len(j.rows)
        return out


async def _docs_redirect(scope, receive, send) -> None:
    """/docs -> BentoML's Swagger UI at / (the OpenAPI spec itself is at /docs.json)."""
    from starlette.responses import RedirectResponse

    await RedirectResponse("/", status_code=307)(scope, receive, send)


B3QuantService.mount_asgi_app(_docs_redirect, path="/docs")
http.install(B3QuantService)
