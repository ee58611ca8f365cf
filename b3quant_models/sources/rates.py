"""Brazilian risk-free rate (CDI) for option pricing: Central Bank SGS series or an offline CSV.

The CDI is quoted as an annual rate with 252-business-day exponential compounding: money grows by
``(1 + r)^(n/252)`` over ``n`` sessions. Pricing models want a continuously compounded rate, and
``r_cont = ln(1 + r)`` reproduces that growth exactly for every ``n`` (``exp(r_cont * n/252)``), so
it is the only conversion used here -- no 360/365-day approximations.

Sources
-------
* Online: BCB SGS series **4389** ("Taxa de juros - CDI anualizada base 252", % a.a., one value per
  business day) fetched through python-bcb. Series **12** ("Taxa de juros - CDI", % per day) is also
  accepted and compounded to the annual rate: ``(1 + d/100)^252 - 1``.
* Offline: landing files, looked for in this order (a day found in an earlier file wins):
  ``<landing>/cdi.csv`` with columns ``date`` (YYYY-MM-DD) and ``cdi_annual_pct`` (annual %, 252 basis,
  e.g. ``14.13``) -- the format the sample-market simulator writes; ``cdi_sgs4389.json`` and
  ``cdi_sgs12.json`` -- the SGS API's own JSON answer for series 4389 / 12, saved as returned (UTF-8,
  with or without a BOM). The series is in the file name because the JSON does not say which it is.

Both normalise to a frame with ``trade_date`` (datetime64, midnight) and ``cdi_annual`` (decimal, 0.1413).
A day without a rate is an error, never a forward-filled guess.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from b3quant_models.calendar import DAYS_PER_YEAR

logger = logging.getLogger(__name__)

SGS_BASE_URL = "https://api.bcb.gov.br"  # hard-coded in python-bcb; see _redirect_python_bcb
SGS_CDI_ANNUAL_252 = 4389  # CDI annualised, 252-day basis, % a.a.
SGS_CDI_DAILY = 12  # CDI, % per day
SGS_SERIES = {SGS_CDI_ANNUAL_252: "annual_pct", SGS_CDI_DAILY: "daily_pct"}
# Since 2025 the SGS API refuses daily-series queries spanning more than 10 years (HTTP 406).
SGS_MAX_WINDOW_DAYS = 3650
RATES_FILE_NAME = "cdi.csv"
SGS_FILE_PATTERN = "cdi_sgs{series}.json"  # the SGS API's JSON for that series, saved as returned
# Landing rate files in preference order: a day found in an earlier file wins over a later one.
RATES_FILE_NAMES = (RATES_FILE_NAME, *(SGS_FILE_PATTERN.format(series=s) for s in (4389, 12)))
RATES_FILE_COLUMNS = ("date", "cdi_annual_pct")
RATE_COLUMNS = ("trade_date", "cdi_annual")

DayLike = dt.date | str | pd.Timestamp


class RateError(RuntimeError):
    """Base class for risk-free-rate problems."""


class RateSourceError(RateError):
    """The source could not be read or returned something unusable."""


class MissingRateError(RateError, LookupError):
    """A trading day has no rate in the source; pricing with a guessed rate would be silently wrong."""


# --------------------------------------------------------------------------------------------------
# Conventions


def cdi_to_continuous(r252: float | np.ndarray) -> float | np.ndarray:
    """Annual 252-basis rate (decimal) -> continuously compounded rate: ``ln(1 + r)``."""
    out = np.log1p(np.asarray(r252, dtype=float))
    return float(out) if out.ndim == 0 else out


def continuous_to_cdi(r_cont: float | np.ndarray) -> float | np.ndarray:
    """Inverse of :func:`cdi_to_continuous`: ``exp(r_cont) - 1``."""
    out = np.expm1(np.asarray(r_cont, dtype=float))
    return float(out) if out.ndim == 0 else out


def di_discount_factor(r252: float | np.ndarray, business_days: float | np.ndarray) -> float | np.ndarray:
    """B3/ANBIMA DI discount factor ``(1 + r)^(-n/252)`` for ``n`` business days."""
    out = np.power(
        1.0 + np.asarray(r252, dtype=float), -np.asarray(business_days, dtype=float) / DAYS_PER_YEAR
    )
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------------------------------
# Normalised frame and lookups


def _normalise(dates: pd.Series, cdi_annual: pd.Series, source: str) -> pd.DataFrame:
    df = pd.DataFrame({"trade_date": pd.to_datetime(dates).dt.normalize(), "cdi_annual": cdi_annual.astype(float)})
    df = df.drop_duplicates().sort_values("trade_date", ignore_index=True)
    dup = df["trade_date"][df["trade_date"].duplicated()]
    if not dup.empty:
        days = ", ".join(d.date().isoformat() for d in dup.iloc[:5])
        raise RateSourceError(f"{source}: conflicting rates for the same day(s): {days}")
    df.attrs["source"] = source
    return df


def _source_of(rates: pd.DataFrame) -> str:
    return str(rates.attrs.get("source", "the given rates"))


@dataclass(frozen=True)
class DailyRate:
    """The risk-free rate of one trading day in both conventions."""

    trade_date: dt.date
    cdi_annual: float  # decimal, 252-day exponential basis
    r_cont: float  # ln(1 + cdi_annual)
    source: str = ""

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"trade_date": [pd.Timestamp(self.trade_date)], "cdi_annual": [self.cdi_annual], "r_cont": [self.r_cont]}
        )


def _coverage(rates: pd.DataFrame) -> str:
    """What the source holds: a frame cut to a date range keeps its whole source's coverage in
    ``attrs`` (a day outside the file's span is then reported as such, not as "no days at all")."""
    if "coverage" in rates.attrs:
        return str(rates.attrs["coverage"])
    if rates.empty:
        return "no days at all"
    return f"{len(rates)} days, {rates['trade_date'].min().date()}..{rates['trade_date'].max().date()}"


def rate_for_day(rates: pd.DataFrame, day: DayLike) -> DailyRate:
    """The rate of ``day``; raises :class:`MissingRateError` naming the day and the source if absent."""
    ts = pd.Timestamp(day).normalize()
    hit = rates.loc[rates["trade_date"] == ts, "cdi_annual"]
    if hit.empty:
        raise MissingRateError(
            f"no CDI rate for {ts.date()} in {_source_of(rates)} ({_coverage(rates)}); "
            "refusing to price with a guessed rate -- fetch or add that day"
        )
    r = float(hit.iloc[0])
    return DailyRate(ts.date(), r, math.log1p(r), _source_of(rates))


def rates_for_days(rates: pd.DataFrame, days: Iterable[DayLike]) -> pd.DataFrame:
    """Vectorised :func:`rate_for_day`: ``trade_date, cdi_annual, r_cont`` for every day, or one error listing
    every missing day."""
    wanted = pd.DataFrame({"trade_date": pd.to_datetime(pd.Series(list(days), dtype=object)).dt.normalize()})
    out = wanted.merge(rates[list(RATE_COLUMNS)], on="trade_date", how="left")
    missing = out.loc[out["cdi_annual"].isna(), "trade_date"].drop_duplicates()
    if not missing.empty:
        shown = ", ".join(d.date().isoformat() for d in missing.iloc[:10])
        more = f" (+{len(missing) - 10} more)" if len(missing) > 10 else ""
        raise MissingRateError(
            f"no CDI rate for {len(missing)} day(s) in {_source_of(rates)} "
            f"({_coverage(rates)}): {shown}{more}; refusing to price with a guessed rate -- add those days "
            f"to the landing folder's {RATES_FILE_NAME} (date,cdi_annual_pct; it wins over the SGS files) "
            "or fetch them from the Central Bank (not offline)"
        )
    out["r_cont"] = np.log1p(out["cdi_annual"].to_numpy())
    return out


# --------------------------------------------------------------------------------------------------
# Offline CSV


def read_rates_file(path: str | Path) -> pd.DataFrame:
    """Read ``date,cdi_annual_pct`` (annual %, 252 basis) into the normalised frame (decimal rates)."""
    path = Path(path)
    source = f"rates file {path}"
    if not path.exists():
        raise RateSourceError(f"{source} does not exist")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    raw.columns = [c.strip() for c in raw.columns]
    missing = [c for c in RATES_FILE_COLUMNS if c not in raw.columns]
    if missing:
        raise RateSourceError(f"{source} lacks column(s) {missing}; found {list(raw.columns)}")
    dates = pd.to_datetime(raw["date"].str.strip(), format="%Y-%m-%d", errors="coerce")
    pct = pd.to_numeric(raw["cdi_annual_pct"].str.strip(), errors="coerce")
    bad = raw.index[dates.isna() | ~np.isfinite(pct)]  # NaN and ±inf alike
    if len(bad):
        rows = raw.loc[bad[:5], list(RATES_FILE_COLUMNS)].to_dict("records")
        raise RateSourceError(
            f"{source}: {len(bad)} unreadable row(s) (want YYYY-MM-DD and a number): {rows}"
        )
    if len(pct) and (pct.abs() < 1.0).all():
        # The CDI has never been below 1% a.a.; all values < 1 almost surely means decimals (0.1413).
        raise RateSourceError(
            f"{source}: every cdi_annual_pct is below 1 (max {pct.abs().max()}); the column is in "
            "percent (14.13 for 14.13% a.a.), not decimals"
        )
    if (pct <= -100).any():
        raise RateSourceError(f"{source}: cdi_annual_pct <= -100% is impossible")
    return _normalise(dates, pct / 100.0, source)


def write_rates_file(rates: pd.DataFrame, path: str | Path) -> Path:
    """Write the normalised frame as ``date,cdi_annual_pct`` (e.g. to freeze an SGS fetch for offline
    runs). Written to a temporary name and renamed, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = pd.DataFrame(
        {
            "date": pd.to_datetime(rates["trade_date"]).dt.strftime("%Y-%m-%d"),
            "cdi_annual_pct": rates["cdi_annual"].astype(float) * 100.0,
        }
    )
    tmp = path.with_name(path.name + ".part")
    out.to_csv(tmp, index=False, float_format="%.10g")
    tmp.replace(path)
    return path


def read_sgs_file(path: str | Path, series: int | None = None) -> pd.DataFrame:
    """Read a saved SGS JSON answer (``[{"data": "dd/mm/yyyy", "valor": "0.055131"}]``).

    ``series`` defaults to the one in the name (``cdi_sgs12.json`` -> 12): series 12 is a daily %,
    4389 an annual %, and the JSON itself does not say which. A BOM (as some tools save it) is accepted.
    """
    path = Path(path)
    if series is None:
        m = re.fullmatch(r"cdi_sgs(\d+)\.json", path.name, flags=re.IGNORECASE)
        if not m:
            raise RateSourceError(f"{path}: cannot tell the SGS series from the name; call it cdi_sgs<series>.json")
        series = int(m.group(1))
    if series not in SGS_SERIES:
        raise RateSourceError(f"{path}: unsupported SGS series {series}; use one of {sorted(SGS_SERIES)}")
    if not path.exists():
        raise RateSourceError(f"rates file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise RateSourceError(f"rates file {path} is not UTF-8 text: {e}") from e
    return parse_sgs_json(text, series, source=f"SGS series {series} file {path}")


def landing_rates_files(landing_dir: str | Path) -> list[Path]:
    """The rate files present in ``landing_dir``, in preference order (see :data:`RATES_FILE_NAMES`)."""
    return [p for p in (Path(landing_dir) / n for n in RATES_FILE_NAMES) if p.exists()]


def read_landing_rates(landing_dir: str | Path) -> pd.DataFrame:
    """Every rate file in ``landing_dir`` merged: a day in an earlier file wins over a later one."""
    files = landing_rates_files(landing_dir)
    if not files:
        raise RateSourceError(
            f"no rates file in {landing_dir}: looked for {', '.join(RATES_FILE_NAMES)} "
            "(cdi.csv: date,cdi_annual_pct; cdi_sgs<series>.json: the SGS API's JSON)"
        )
    frames = [read_rates_file(p) if p.suffix.lower() == ".csv" else read_sgs_file(p) for p in files]
    if len(frames) == 1:
        return frames[0]
    df = pd.concat(frames, ignore_index=True).drop_duplicates("trade_date", keep="first")
    return _normalise(df["trade_date"], df["cdi_annual"], " + ".join(_source_of(f) for f in frames))


# --------------------------------------------------------------------------------------------------
# SGS (Central Bank) through python-bcb

_REDIRECT_LOCK = threading.Lock()


@contextlib.contextmanager
def _redirect_python_bcb(base_url: str) -> Iterator[None]:
    """Point python-bcb's SGS calls at ``base_url`` (a mirror, or a loopback server in tests).

    python-bcb 0.4 hard-codes ``https://api.bcb.gov.br`` in the private ``bcb.sgs._get_url_and_payload``
    and uses a module-global HTTP client, so there is no public knob. With the default URL nothing is
    patched; otherwise the URL builder is wrapped for the duration of the call, under a lock.
    """
    base_url = base_url.rstrip("/")
    if base_url == SGS_BASE_URL:
        yield
        return
    from bcb import sgs as bcb_sgs

    original = getattr(bcb_sgs, "_get_url_and_payload", None)
    if original is None:
        raise RateSourceError(
            "this python-bcb version has no bcb.sgs._get_url_and_payload; cannot redirect SGS "
            f"requests to {base_url}"
        )

    def redirected(*args, **kwargs):  # type: ignore[no-untyped-def]
        url, payload = original(*args, **kwargs)
        if not url.startswith(SGS_BASE_URL):
            raise RateSourceError(f"unexpected python-bcb SGS URL {url!r}; cannot redirect it")
        return base_url + url[len(SGS_BASE_URL) :], payload

    with _REDIRECT_LOCK:
        bcb_sgs._get_url_and_payload = redirected
        try:
            yield
        finally:
            bcb_sgs._get_url_and_payload = original


def _windows(
    start: dt.date, end: dt.date, max_days: int = SGS_MAX_WINDOW_DAYS
) -> list[tuple[dt.date, dt.date]]:
    out = []
    a = start
    while a <= end:
        b = min(end, a + dt.timedelta(days=max_days - 1))
        out.append((a, b))
        a = b + dt.timedelta(days=1)
    return out


def parse_sgs_json(text: str, series: int = SGS_CDI_ANNUAL_252, source: str = "SGS") -> pd.DataFrame:
    """Parse SGS JSON (``[{"data": "04/01/2016", "valor": "14.13"}, ...]``) into the normalised frame."""
    if series not in SGS_SERIES:
        raise ValueError(f"unsupported SGS series {series}; use one of {sorted(SGS_SERIES)}")
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise RateSourceError(f"{source}: response is not JSON ({e}): {text[:200]!r}") from e
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and {"data", "valor"} <= r.keys() for r in rows
    ):
        raise RateSourceError(f"{source}: expected a list of {{data, valor}} objects, got {text[:200]!r}")
    if not rows:
        return _normalise(pd.Series([], dtype="datetime64[ns]"), pd.Series([], dtype=float), source)
    df = pd.DataFrame(rows)
    dates = pd.to_datetime(df["data"], format="%d/%m/%Y", errors="coerce")
    value = pd.to_numeric(df["valor"].astype(str).str.replace(",", ".", regex=False), errors="coerce")
    bad = df.index[dates.isna() | value.isna()]
    if len(bad):
        raise RateSourceError(f"{source}: unreadable rows {df.loc[bad[:5]].to_dict('records')}")
    if SGS_SERIES[series] == "daily_pct":
        annual = (1.0 + value / 100.0) ** DAYS_PER_YEAR - 1.0
    else:
        annual = value / 100.0
    return _normalise(dates, annual, source)


def fetch_cdi_sgs(
    start: DayLike,
    end: DayLike,
    *,
    series: int = SGS_CDI_ANNUAL_252,
    base_url: str = SGS_BASE_URL,
    timeout: float = 30.0,
) -> pd.DataFrame:
    """CDI rates for ``[start, end]`` from the BCB SGS API (python-bcb), split into <=10-year windows.

    Raises :class:`RateSourceError` naming the series, window and URL on any HTTP/API/parse failure.
    python-bcb retries transport errors itself (4 attempts, 1-10 s exponential waits).
    """
    if series not in SGS_SERIES:
        raise ValueError(f"unsupported SGS series {series}; use one of {sorted(SGS_SERIES)}")
    a, b = pd.Timestamp(start).date(), pd.Timestamp(end).date()
    if b < a:
        raise ValueError(f"end {b} is before start {a}")
    from bcb import sgs as bcb_sgs  # python-bcb (and its HTTP stack) only when the Central Bank is asked
    from bcb.exceptions import BCBError

    base_url = base_url.rstrip("/")
    url = f"{base_url}/dados/serie/bcdata.sgs.{series}/dados"
    frames = []
    for w0, w1 in _windows(a, b):
        where = f"SGS series {series} {w0}..{w1} ({url})"
        logger.info("fetching %s", where)
        try:
            with _redirect_python_bcb(base_url):
                text = bcb_sgs.get_json(series, w0, w1, timeout=timeout)
        except BCBError as e:
            raise RateSourceError(f"{where}: {e}") from e
        frames.append(parse_sgs_json(text, series, source=where))
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return _normalise(df["trade_date"], df["cdi_annual"], f"SGS series {series} {a}..{b} ({url})")


# --------------------------------------------------------------------------------------------------
# One entry point for the pipeline


class RateSource:
    """CDI rates from the landing folder's rate files (offline) or from the BCB SGS API (online).

    Offline, ``file_name=None`` (default) reads every file of :data:`RATES_FILE_NAMES` present;
    a name reads that one file only.
    """

    def __init__(
        self,
        landing_dir: str | Path | None = None,
        *,
        offline: bool = False,
        base_url: str = SGS_BASE_URL,
        series: int = SGS_CDI_ANNUAL_252,
        timeout: float = 30.0,
        file_name: str | None = None,
    ):
        if offline and landing_dir is None:
            raise ValueError("offline mode needs a landing_dir holding " + (file_name or " or ".join(RATES_FILE_NAMES)))
        self.landing_dir = Path(landing_dir) if landing_dir is not None else None
        self.offline = offline
        self.base_url = base_url
        self.series = series
        self.timeout = timeout
        self.file_name = file_name

    @property
    def rates_file(self) -> Path | None:
        """The file read offline: the named one, else the first present (``cdi.csv`` if none is)."""
        if self.landing_dir is None:
            return None
        if self.file_name:
            return self.landing_dir / self.file_name
        found = landing_rates_files(self.landing_dir)
        return found[0] if found else self.landing_dir / RATES_FILE_NAME

    def rates(self, start: DayLike, end: DayLike) -> pd.DataFrame:
        """Normalised rates for ``[start, end]`` (not guaranteed complete: look days up with
        :func:`rate_for_day` / :func:`rates_for_days`, which fail on gaps)."""
        if self.offline:
            assert self.landing_dir is not None
            if self.file_name is None:
                df = read_landing_rates(self.landing_dir)
            elif self.file_name.lower().endswith(".json"):
                df = read_sgs_file(self.landing_dir / self.file_name)
            else:
                df = read_rates_file(self.landing_dir / self.file_name)
        else:
            df = fetch_cdi_sgs(start, end, series=self.series, base_url=self.base_url, timeout=self.timeout)
        a, b = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
        out = df[(df["trade_date"] >= a) & (df["trade_date"] <= b)].reset_index(drop=True)
        out.attrs["source"] = _source_of(df)
        out.attrs["coverage"] = _coverage(df)
        return out

    def rate_for_day(self, day: DayLike) -> DailyRate:
        return rate_for_day(self.rates(day, day), day)


__all__ = [
    "RATES_FILE_NAME",
    "RATES_FILE_NAMES",
    "SGS_BASE_URL",
    "SGS_CDI_ANNUAL_252",
    "SGS_CDI_DAILY",
    "DailyRate",
    "MissingRateError",
    "RateError",
    "RateSource",
    "RateSourceError",
    "cdi_to_continuous",
    "continuous_to_cdi",
    "di_discount_factor",
    "fetch_cdi_sgs",
    "landing_rates_files",
    "parse_sgs_json",
    "rate_for_day",
    "rates_for_days",
    "read_landing_rates",
    "read_rates_file",
    "read_sgs_file",
    "write_rates_file",
]
