"""Generate the sample market: daily COTAHIST files, the CDI path and the ground truth.

The platform's demo and every model evaluation run on this data, so it must be (1) genuine
COTAHIST, readable by any parser, (2) byte-for-byte reproducible from the seed and (3) accompanied by
the true surface and the best achievable next-day forecast, so a model's error can be compared to the
irreducible one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..calendar import DAYS_PER_YEAR, business_days, calendar_bounds
from ..cotahist.layout import (
    BDI_ROUND_LOT,
    BDI_STOCK_CALL,
    BDI_STOCK_PUT,
    ENCODING,
    MARKET_CALL,
    MARKET_CASH,
    MARKET_PUT,
    QUOTE_COLUMNS,
)
from ..cotahist.writer import daily_file_name, format_cotahist, quotes_to_records, write_cotahist
from .chains import ChainBook, monthly_expiries, option_ticker, strike_code_multiplier, weekly_expiries
from .config import SampleMarketConfig, UnderlyingSpec
from .dynamics import (
    DT,
    DynParams,
    Paths,
    bs_price,
    cdi_path,
    expected_next_iv,
    next_day_nodes,
    session_days,
    simulate_paths,
    surface_iv,
    surface_summary,
)

GENERATOR_VERSION = "1.0.0"
MANIFEST_NAME = "manifest.json"
CDI_FILE = "cdi.csv"
TRUTH_FILES = {
    "surface_params": "truth/surface_params.parquet",
    "option_iv": "truth/option_iv.parquet",
    "underlying": "truth/underlying.parquet",
}
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SampleMarketManifest:
    """What was generated where; ``manifest.json`` is its JSON form."""

    out_dir: Path
    version: str
    seed: int
    start: dt.date
    end: dt.date
    n_sessions: int
    underlyings: tuple[str, ...]
    cotahist_files: tuple[str, ...]
    cdi_file: str
    truth_files: dict[str, str]
    counts: dict[str, int]
    sha256: dict[str, str]
    config: dict[str, Any]

    @property
    def cotahist_paths(self) -> list[Path]:
        return [self.out_dir / f for f in self.cotahist_files]

    def truth_path(self, name: str) -> Path:
        return self.out_dir / self.truth_files[name]

    def to_json(self) -> str:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "out_dir"}
        d["start"], d["end"] = self.start.isoformat(), self.end.isoformat()
        d["underlyings"], d["cotahist_files"] = list(self.underlyings), list(self.cotahist_files)
        return json.dumps(d, indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, out_dir: str | Path) -> SampleMarketManifest:
        out_dir = Path(out_dir)
        d = json.loads((out_dir / MANIFEST_NAME).read_text())
        d["start"], d["end"] = dt.date.fromisoformat(d["start"]), dt.date.fromisoformat(d["end"])
        d["underlyings"], d["cotahist_files"] = tuple(d["underlyings"]), tuple(d["cotahist_files"])
        return cls(out_dir=out_dir, **d)


def is_generated(out_dir: str | Path, config: SampleMarketConfig | None = None) -> bool:
    """True when ``out_dir`` holds a complete market for exactly this config (default: the default
    config) and generator version (the manifest is written last, so an interrupted run never counts)."""
    config = config or SampleMarketConfig()
    try:
        m = SampleMarketManifest.load(out_dir)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if m.version != GENERATOR_VERSION or m.config != json.loads(json.dumps(config.to_dict())):
        return False
    files = [*m.cotahist_files, m.cdi_file, *m.truth_files.values()]
    return all((m.out_dir / f).is_file() for f in files)


# --- microstructure ------------------------------------------------------------------------------


def _cash_rows(
    g: np.random.Generator,
    specs: tuple[UnderlyingSpec, ...],
    prev_close: np.ndarray,
    close: np.ndarray,
    var: np.ndarray,
    ret: np.ndarray,
) -> dict[str, np.ndarray]:
    """OHLC from an intraday Brownian bridge between a gapped open and the close (its max/min drawn
    exactly), VWAP-like average inside [low, high], volume = quantity x average to the cent."""
    n = len(specs)
    sd = np.sqrt(var * DT)
    open_c = np.maximum(np.round(prev_close * np.exp(0.3 * sd * g.standard_normal(n)) * 100), 1)
    close_c = np.round(close * 100)
    lo_, lc = np.log(open_c), np.log(close_c)
    s2 = 0.7 * sd**2
    u1, u2 = 1.0 - g.random(n), 1.0 - g.random(n)
    hi = np.exp(0.5 * (lo_ + lc + np.sqrt((lc - lo_) ** 2 - 2 * s2 * np.log(u1))))
    lw = np.exp(0.5 * (lo_ + lc - np.sqrt((lc - lo_) ** 2 - 2 * s2 * np.log(u2))))
    high_c = np.maximum(np.ceil(hi - 1e-9), np.maximum(open_c, close_c))
    low_c = np.maximum(np.minimum(np.floor(lw + 1e-9), np.minimum(open_c, close_c)), 1)
    avg_c = np.round((open_c + high_c + low_c + 2 * close_c) / 5)
    adv = np.array([s.avg_daily_shares for s in specs])
    qty = np.round(adv * np.exp(0.35 * g.standard_normal(n) - 0.06) * (1 + 8 * np.abs(ret)) / 100) * 100
    trades = np.clip(np.floor(qty / g.uniform(1500, 3000, n)), 1, 99_999)  # TOTNEG has 5 digits
    bid_c = close_c - g.integers(0, 2, n)
    return {
        "open": open_c, "high": high_c, "low": low_c, "avg": avg_c, "close": close_c,
        "best_bid": bid_c, "best_ask": bid_c + 1, "trades": trades, "quantity": qty,
    }


def _option_market(
    g: np.random.Generator,
    mid: np.ndarray,
    iv: np.ndarray,
    k: np.ndarray,
    tau: np.ndarray,
    is_call: np.ndarray,
    weekly: np.ndarray,
    liquidity: np.ndarray,
    elasticity_sd: np.ndarray,
) -> dict[str, np.ndarray]:
    """Spread, standing quotes and the day's trades (all in cents). Liquidity falls with distance
    from the money (in standard deviations), with ITM-ness, maturity, weekly-ness and cheapness."""
    n = len(mid)
    x = np.abs(k) / (iv * np.sqrt(tau))
    otm = np.where(is_call, k > 0, k < 0) | (x < 0.25)
    p = liquidity * 0.95 * np.exp(-0.5 * (x / 1.3) ** 2) * (0.65 + 0.35 * np.exp(-tau / 0.15))
    p *= np.where(otm, 1.0, 0.6) * np.where(weekly, 0.7, 1.0) * np.where(mid < 0.02, 0.5, 1.0)
    p = np.clip(p, 0.01, 0.97)
    half = 0.005 + mid * (0.01 + 0.05 * (1 - p))
    bid_c = np.maximum(np.floor((mid - half) * 100 + 1e-9), 0)
    ask_c = np.maximum(np.ceil((mid + half) * 100 - 1e-9), np.maximum(bid_c + 1, 1))
    bid_c = np.where(g.random(n) < 0.1 + 0.5 * (1 - p), 0, bid_c)
    ask_c = np.where(g.random(n) < 0.05 + 0.4 * (1 - p), 0, ask_c)
    traded = g.random(n) < p
    trades = np.where(traded, 1 + g.poisson(p * 30 * liquidity), 0)
    qty = trades * 100 * g.geometric(0.25, n) * np.where(mid < 0.1, 5, 1)
    close_c = np.maximum(np.round((mid + half * g.uniform(-1, 1, n)) * 100), 1)
    open_c = np.maximum(np.round(mid * np.exp(elasticity_sd * g.standard_normal(n)) * 100), 1)
    ext = np.abs(g.standard_normal((2, n))) * 0.3 * elasticity_sd * mid * 100
    high_c = np.maximum(open_c, close_c) + np.round(ext[0])
    low_c = np.maximum(np.minimum(open_c, close_c) - np.round(ext[1]), 1)
    single = trades <= 1
    open_c, high_c, low_c = (np.where(single, close_c, a) for a in (open_c, high_c, low_c))
    avg_c = np.round((open_c + high_c + low_c + 2 * close_c) / 5)
    return {
        "traded": traded, "open": open_c, "high": high_c, "low": low_c, "avg": avg_c, "close": close_c,
        "best_bid": bid_c, "best_ask": ask_c, "trades": trades, "quantity": qty,
    }


def _write_day(path: Path, quotes: pd.DataFrame, day: dt.date, zip_it: bool) -> Path:
    """Plain files go through the shared writer; ZIPs are built here with a fixed timestamp (the
    trade date) because ``zipfile.writestr(name, ...)`` stamps the current time, which would break
    byte-identical reproducibility."""
    if not zip_it:
        return write_cotahist(path, quotes, day)
    text = format_cotahist(quotes_to_records(quotes), day).encode(ENCODING)
    info = zipfile.ZipInfo(path.with_suffix(".TXT").name, date_time=(day.year, day.month, day.day, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    target = path.with_suffix(".ZIP")
    tmp = target.with_name(target.name + ".part")
    with zipfile.ZipFile(tmp, "w") as z:
        z.writestr(info, text)
    tmp.replace(target)
    return target


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- main ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedMarket:
    """The day-level simulation shared by the session loop and the truth tables."""

    config: SampleMarketConfig
    specs: tuple[UnderlyingSpec, ...]
    params: DynParams
    days: list[dt.date]  # the sessions plus the next one (whose CDI the last forecast uses)
    cdi: np.ndarray  # annual %, per entry of ``days``
    rates: np.ndarray  # continuous equivalent of the 252-day CDI
    paths: Paths

    @property
    def sessions(self) -> list[dt.date]:
        return self.days[: self.config.n_days]


@dataclass(frozen=True)
class Session:
    """One generated session: the exact quotes written to its COTAHIST file and the truth rows."""

    index: int
    day: dt.date
    quotes: pd.DataFrame  # reader's columns, per-unit prices, sorted by ticker
    truth: dict[str, np.ndarray]


def simulate_market(config: SampleMarketConfig | None = None) -> SimulatedMarket:
    """Calendar, CDI path and the underlyings' paths (cheap; the chains are built per session)."""
    config = config or SampleMarketConfig()
    specs = config.specs()
    days = session_days(config.start, config.n_days)
    horizon = days[-1] + dt.timedelta(days=40 * (config.max_monthly_expiries() + 1))
    if horizon > calendar_bounds()[1]:
        raise ValueError(f"the B3 calendar ends before the last listed expiry (~{horizon})")
    cdi = cdi_path(days[0], days, config.cdi_start_pct, config.seed)
    rates = np.log1p(cdi / 100.0)
    params = DynParams.from_specs(specs, config.equity_premium)
    paths = simulate_paths(specs, params, rates, config.seed)
    return SimulatedMarket(config, specs, params, days, cdi, rates, paths)


def iter_sessions(market: SimulatedMarket) -> Iterator[Session]:
    """Build each session in order: listings, true surface and prices, the optimal forecast and the
    day's trades. Generation writes these; tests compare them to what the readers get back."""
    config, specs, p, days, rates, paths = (
        market.config, market.specs, market.params, market.days, market.rates, market.paths,
    )
    n_und = len(specs)
    steps = [s.strike_step for s in specs]
    mults = [strike_code_multiplier(s) for s in steps]
    horizon = days[-1] + dt.timedelta(days=40 * (config.max_monthly_expiries() + 1))
    listings = [config.listing(s) for s in specs]
    book = ChainBook(
        steps, [x.monthly_expiries for x in listings], [x.weekly_expiries for x in listings],
        [x.strikes_per_expiry for x in listings], [x.weekly_strikes_per_expiry for x in listings],
        monthly_expiries(days[0], horizon), weekly_expiries(days[0], horizon),
    )
    ticker_cache: dict[tuple[int, dt.date, int, bool], str] = {}
    liq = np.array([s.liquidity for s in specs])

    for i in range(config.n_days):
        day, spot, v, z = days[i], paths.spot[i], paths.var[i], paths.z[i]
        g = np.random.default_rng(np.random.SeedSequence([config.seed, 3, i]))

        # chains: one group per (underlying, expiry)
        g_und, g_exp, g_week, g_lo, g_hi = [], [], [], [], []
        for u in range(n_und):
            for lst in book.update(u, day, float(spot[u]), config.weekly_on(day)):
                g_und.append(u)
                g_exp.append(lst.expiry)
                g_week.append(lst.week)
                g_lo.append(lst.lo)
                g_hi.append(lst.hi)
        g_bd = business_days(np.datetime64(day, "D"), np.array(g_exp, dtype="datetime64[D]"))
        sizes = np.array(g_hi) - np.array(g_lo) + 1
        group = np.repeat(np.arange(len(g_und)), 2 * sizes)
        idx = np.concatenate([np.tile(np.arange(lo, hi + 1), 2) for lo, hi in zip(g_lo, g_hi, strict=True)])
        is_call = np.concatenate([np.repeat([True, False], n) for n in sizes])
        und = np.asarray(g_und)[group]
        strike = idx * np.asarray(steps)[und]
        tickers = []
        for gi, ix, c in zip(group, idx, is_call, strict=True):
            key = (g_und[gi], g_exp[gi], int(ix), bool(c))
            t = ticker_cache.get(key)
            if t is None:
                u = key[0]
                t = option_ticker(specs[u].root, g_exp[gi], key[3], ix * steps[u], mults[u], g_week[gi])
                ticker_cache[key] = t
            tickers.append(t)

        # truth at the close
        bd = g_bd[group]
        tau = bd / DAYS_PER_YEAR
        s_row = spot[und]
        fwd = s_row * np.exp(rates[i] * tau)
        k = np.log(strike / fwd)
        iv = surface_iv(k, tau, v[und], z[und], p.take(und))
        mid, delta = bs_price(s_row, strike, tau, rates[i], iv, is_call)

        # optimal next-day forecast (series expiring tomorrow have no next-day IV)
        nodes = next_day_nodes(spot, v, z, np.full(n_und, rates[i]), p)
        g_tau_next = np.maximum(g_bd - 1, 1) / DAYS_PER_YEAR
        fc = expected_next_iv(
            np.log(strike), g_tau_next[group], np.full(len(group), rates[i + 1]), group,
            np.asarray(g_und), g_tau_next, nodes, p,
        )
        fc = np.where(bd >= 2, fc, np.nan)

        # microstructure
        opt_delta = np.abs(np.where(is_call, delta, delta - 1))
        elasticity = np.minimum(opt_delta * s_row / np.maximum(mid, 1e-4), 200)
        mkt = _option_market(
            g, mid, iv, k, tau, is_call, np.asarray(g_week)[group] > 0, liq[und],
            np.minimum(0.6 * elasticity * np.sqrt(v[und] * DT), 0.8),
        )
        cash = _cash_rows(g, specs, paths.spot[max(i - 1, 0)], spot, v, paths.log_ret[i])
        quotes = _quotes_frame(day, specs, cash, mkt, und, tickers, is_call, strike, g_exp, group)
        truth = {
            "day": np.full(len(group), i), "und": und, "ticker": np.asarray(tickers, dtype=object),
            "is_call": is_call, "expiry": np.asarray(g_exp, dtype="datetime64[D]")[group],
            "week": np.asarray(g_week)[group], "strike": strike, "bdays": bd, "t": tau, "spot": s_row,
            "rate": np.full(len(group), rates[i]), "forward": fwd, "k": k, "true_iv": iv, "true_mid": mid,
            "best_bid": mkt["best_bid"] / 100, "best_ask": mkt["best_ask"] / 100, "in_file": mkt["traded"],
            "close": np.where(mkt["traded"], mkt["close"] / 100, np.nan), "iv_next_optimal": fc,
        }
        yield Session(i, day, quotes, truth)


def generate_sample_market(
    out_dir: str | Path,
    config: SampleMarketConfig | None = None,
    progress: Progress | None = None,
) -> SampleMarketManifest:
    """Write the sample market into ``out_dir`` (see docs/sample_market.md) and return its manifest.

    ``progress(done, total)`` is called after each session's file. Files of a previous generation in
    the same directory that this one does not produce are removed (only those its manifest lists);
    the manifest is written last, so an interrupted run is never mistaken for a complete one.
    """
    config = config or SampleMarketConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    old = _previous_files(out_dir)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)

    market = simulate_market(config)
    n_und, n_days = len(market.specs), config.n_days
    truth_parts: list[dict[str, np.ndarray]] = []
    files: list[str] = []
    counts = {"cotahist_records": 0, "cash_rows": 0, "option_rows": 0}
    for sess in iter_sessions(market):
        path = _write_day(out_dir / daily_file_name(sess.day), sess.quotes, sess.day, config.zip_files)
        files.append(path.name)
        counts["cotahist_records"] += len(sess.quotes) + 2
        counts["cash_rows"] += n_und
        counts["option_rows"] += len(sess.quotes) - n_und
        truth_parts.append(sess.truth)
        if progress is not None:
            progress(sess.index + 1, n_days)

    counts["truth_option_rows"] = _write_truth(out_dir, market, truth_parts)
    counts["sessions"] = n_days
    _write_cdi(out_dir / CDI_FILE, market.sessions, market.cdi[:n_days])

    for stale in old - {*files, CDI_FILE, *TRUTH_FILES.values()}:
        (out_dir / stale).unlink(missing_ok=True)
    hashed = [*files, CDI_FILE, *TRUTH_FILES.values()]
    manifest = SampleMarketManifest(
        out_dir=out_dir, version=GENERATOR_VERSION, seed=config.seed, start=market.days[0],
        end=market.days[n_days - 1], n_sessions=n_days, underlyings=tuple(s.ticker for s in market.specs),
        cotahist_files=tuple(files), cdi_file=CDI_FILE, truth_files=dict(TRUTH_FILES), counts=counts,
        sha256={f: _sha256(out_dir / f) for f in hashed}, config=json.loads(json.dumps(config.to_dict())),
    )
    (out_dir / MANIFEST_NAME).write_text(manifest.to_json())
    return manifest


def _previous_files(out_dir: Path) -> set[str]:
    try:
        m = SampleMarketManifest.load(out_dir)
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {*m.cotahist_files, m.cdi_file, *m.truth_files.values()}


def _quotes_frame(
    day: dt.date,
    specs: tuple[UnderlyingSpec, ...],
    cash: dict[str, np.ndarray],
    mkt: dict[str, np.ndarray],
    und: np.ndarray,
    tickers: list[str],
    is_call: np.ndarray,
    strike: np.ndarray,
    g_exp: list[dt.date],
    group: np.ndarray,
) -> pd.DataFrame:
    """Cash rows plus the options that traded today (B3's daily file has no zero-trade option rows:
    an option that did not trade is absent), sorted by ticker as B3 does."""
    tr = np.flatnonzero(mkt["traded"])
    n_c, n_o = len(specs), len(tr)
    u = und[tr]
    call = is_call[tr]
    cents = {c: np.concatenate([cash[c], mkt[c][tr]]) for c in ("open", "high", "low", "avg", "close",
                                                                   "best_bid", "best_ask")}
    qty = np.concatenate([cash["quantity"], mkt["quantity"][tr]]).astype(np.int64)
    cols: dict[str, Any] = {
        "trade_date": [day] * (n_c + n_o),
        "bdi_code": [BDI_ROUND_LOT] * n_c + [BDI_STOCK_CALL if c else BDI_STOCK_PUT for c in call],
        "ticker": [s.ticker for s in specs] + [tickers[j] for j in tr],
        "market_type": [MARKET_CASH] * n_c + [MARKET_CALL if c else MARKET_PUT for c in call],
        "company": [s.company for s in specs] + [specs[j].root for j in u],
        "specification": [s.specification for s in specs] + [specs[j].specification for j in u],
        "forward_days": [""] * n_c + ["000"] * n_o,
        "currency": ["R$"] * (n_c + n_o),
        **{c: v / 100 for c, v in cents.items()},
        "trades": np.concatenate([cash["trades"], mkt["trades"][tr]]).astype(np.int64),
        "quantity": qty,
        "volume": qty * cents["avg"].astype(np.int64) / 100,  # exact to the cent
        "strike": np.concatenate([np.zeros(n_c), strike[tr]]),
        "strike_correction": 0,
        "expiry": [None] * n_c + [g_exp[j] for j in group[tr]],
        "quote_factor": [s.quote_factor for s in specs] + [1] * n_o,
        "strike_points": 0.0,
        "isin": [s.isin for s in specs] + [specs[j].isin for j in u],
        "distribution": [s.distribution for s in specs] + [specs[j].distribution for j in u],
    }
    df = pd.DataFrame(cols)[list(QUOTE_COLUMNS)]
    return df.sort_values("ticker", kind="stable").reset_index(drop=True)


def _write_cdi(path: Path, days: list[dt.date], cdi: np.ndarray) -> None:
    lines = ["date,cdi_annual_pct", *(f"{d.isoformat()},{c:.2f}" for d, c in zip(days, cdi, strict=True))]
    path.write_text("\n".join(lines) + "\n")


def _write_truth(out_dir: Path, market: SimulatedMarket, parts: list[dict[str, np.ndarray]]) -> int:
    """Write the three truth tables; returns the number of option rows."""
    days, specs, p, paths = market.sessions, market.specs, market.params, market.paths
    cdi, rates = market.cdi, market.rates
    (out_dir / "truth").mkdir(exist_ok=True)
    n_days, n_und = len(days), len(specs)
    dates = np.array(days, dtype="datetime64[D]")
    tick = np.array([s.ticker for s in specs], dtype=object)
    isin = np.array([s.isin for s in specs], dtype=object)
    d_ix, u_ix = np.divmod(np.arange(n_days * n_und), n_und)

    state = {"v": paths.var[:n_days].ravel(), "z": paths.z[:n_days].ravel()}
    pu = p.take(u_ix)
    summ = surface_summary(state["v"], state["z"], pu)
    surface = pd.DataFrame({
        "trade_date": dates[d_ix].astype("datetime64[ns]"), "underlying_ticker": tick[u_ix], "isin": isin[u_ix],
        "spot": paths.spot[:n_days].ravel(), "v": state["v"], "vbar": pu.vbar, "kappa": pu.kappa,
        "vrp": pu.vrp, "z": state["z"], "rho": summ["rho"], "eta": summ["eta"], "gamma": pu.gamma,
        "atm_vol_1m": summ["atm_vol_1m"], "atm_vol_3m": summ["atm_vol_3m"], "skew_1m": summ["skew_1m"],
        "term_slope": summ["term_slope"], "cdi_annual_pct": cdi[d_ix], "rate": rates[d_ix],
    })
    surface.to_parquet(out_dir / TRUTH_FILES["surface_params"], index=False)

    underlying = pd.DataFrame({
        "trade_date": dates[d_ix].astype("datetime64[ns]"), "underlying_ticker": tick[u_ix], "isin": isin[u_ix],
        "close": paths.spot[:n_days].ravel(), "log_return": paths.log_ret[:n_days].ravel(),
        "jump": paths.jump[:n_days].ravel(), "jumped": paths.jump[:n_days].ravel() != 0,
        "variance": state["v"], "inst_vol": np.sqrt(state["v"]),
        "var_shock": paths.var_shock[:n_days].ravel(),
    })
    underlying.to_parquet(out_dir / TRUTH_FILES["underlying"], index=False)

    cat = {c: np.concatenate([part[c] for part in parts]) for c in parts[0]}
    opt = pd.DataFrame({
        "trade_date": dates[cat["day"]].astype("datetime64[ns]"), "underlying_ticker": tick[cat["und"]],
        "ticker": cat["ticker"], "isin": isin[cat["und"]], "option_type": np.where(cat["is_call"], "C", "P"),
        "expiry": cat["expiry"].astype("datetime64[ns]"), "week": cat["week"].astype(np.int8),
        **{c: cat[c] for c in ("strike", "bdays", "t", "spot", "rate", "forward", "k", "true_iv",
                               "true_mid", "best_bid", "best_ask", "in_file", "close")},
        "iv_next_optimal": cat["iv_next_optimal"],
    })
    # the realised next-day IV of the same series (absent when it expires or on the last session)
    nxt = pd.DataFrame({"day": cat["day"] - 1, "ticker": cat["ticker"], "iv_next_true": cat["true_iv"]})
    opt["iv_next_true"] = (
        pd.DataFrame({"day": cat["day"], "ticker": cat["ticker"]})
        .merge(nxt, on=["day", "ticker"], how="left")["iv_next_true"].to_numpy()
    )
    opt.to_parquet(out_dir / TRUTH_FILES["option_iv"], index=False)
    return len(opt)
