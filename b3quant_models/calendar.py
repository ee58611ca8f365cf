"""B3 trading calendar: sessions, business-day counts and option expiry dates.

Backed by exchange-calendars' ``BVMF`` calendar (maintained upstream) rather than a hand-written
holiday list. All functions take and return ``datetime.date`` (or arrays of ``datetime64[D]``) so
they are cheap to call from vectorized code.

Every process that loads the Dagster code location needs the session list (partition exclusions), but
importing exchange-calendars and building the calendar take about a second. So the session list is
kept in a small file under ``$B3Q_DATA_DIR/cache``, keyed by the calendar's name, its end and the
installed exchange-calendars version, and exchange-calendars is imported only to (re)build it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from b3quant_models import settings

if TYPE_CHECKING:
    import exchange_calendars as xcals

logger = logging.getLogger(__name__)

CALENDAR_NAME = "BVMF"
# A fixed end, not exchange-calendars' default of "today + 1 year": the same trade must get the same
# business-day count whatever day the code runs, and B3 lists options years out. Holidays are
# rule-generated, so later years are as known as they can be.
CALENDAR_END = "2035-12-31"
DAYS_PER_YEAR = 252  # B3/ANBIMA business-day year used for option time and DI compounding

DateLike = dt.date | str | pd.Timestamp | np.datetime64


def _to_date(d: DateLike) -> dt.date:
    return pd.Timestamp(d).date()


@lru_cache(maxsize=1)
def b3_calendar() -> xcals.ExchangeCalendar:
    """The exchange-calendars B3 calendar (loaded once; ~0.2 s)."""
    import exchange_calendars as xcals

    return xcals.get_calendar(CALENDAR_NAME, end=CALENDAR_END)


def sessions_cache_file() -> Path:
    """Where the session list of this calendar and exchange-calendars version is kept."""
    version = metadata.version("exchange_calendars")
    return settings.data_dir() / "cache" / f"sessions-{CALENDAR_NAME}-{CALENDAR_END}-xcals{version}.npy"


def _read_sessions(path: Path) -> np.ndarray | None:
    try:
        s = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if s.dtype != np.dtype("datetime64[D]") or s.ndim != 1 or not len(s) or np.any(np.diff(s) <= np.timedelta64(0)):
        return None
    return s


def _write_sessions(path: Path, s: np.ndarray) -> None:
    """Atomic (temp file + rename) so concurrent processes never read half a file; best effort."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, s, allow_pickle=False)
        os.replace(tmp, path)
    except OSError as e:  # a read-only data folder only costs the next start its second
        logger.debug("B3 session cache not written to %s: %s", path, e)


@lru_cache(maxsize=1)
def _session_days() -> np.ndarray:
    """All known B3 sessions as sorted ``datetime64[D]`` (fast lookups via searchsorted)."""
    path = sessions_cache_file()
    if (s := _read_sessions(path)) is not None:
        return s
    s = b3_calendar().sessions.values.astype("datetime64[D]")
    _write_sessions(path, s)
    return s


def calendar_bounds() -> tuple[dt.date, dt.date]:
    """First and last session the calendar knows; dates outside raise instead of guessing."""
    s = _session_days()
    return s[0].astype(dt.date), s[-1].astype(dt.date)


def _check_in_range(*days: np.ndarray) -> None:
    lo, hi = _session_days()[[0, -1]]
    for d in days:
        d = np.asarray(d, dtype="datetime64[D]")
        valid = d[~np.isnat(d)]
        if valid.size and (valid.min() < lo or valid.max() > hi):
            raise ValueError(
                f"date outside the B3 calendar's range {lo}..{hi}: got {valid.min()}..{valid.max()}"
            )


def sessions(start: DateLike, end: DateLike) -> list[dt.date]:
    """B3 trading sessions in ``[start, end]`` (both inclusive)."""
    s = _session_days()
    a, b = np.datetime64(_to_date(start), "D"), np.datetime64(_to_date(end), "D")
    return [x.astype(dt.date) for x in s[(s >= a) & (s <= b)]]


def is_session(d: DateLike) -> bool:
    day = np.datetime64(_to_date(d), "D")
    s = _session_days()
    i = np.searchsorted(s, day)
    return bool(i < len(s) and s[i] == day)


def next_session(d: DateLike) -> dt.date:
    """First session strictly after ``d``."""
    s = _session_days()
    i = np.searchsorted(s, np.datetime64(_to_date(d), "D"), side="right")
    if i >= len(s):
        raise ValueError(f"no B3 session known after {d}")
    return s[i].astype(dt.date)


def previous_session(d: DateLike) -> dt.date:
    """Last session strictly before ``d``."""
    _check_in_range(np.datetime64(_to_date(d), "D"))
    s = _session_days()
    i = np.searchsorted(s, np.datetime64(_to_date(d), "D"), side="left") - 1
    if i < 0:
        raise ValueError(f"no B3 session known before {d}")
    return s[i].astype(dt.date)


def session_on_or_before(d: DateLike) -> dt.date:
    return _to_date(d) if is_session(d) else previous_session(d)


def business_days(start, end) -> np.ndarray | int:
    """Number of B3 sessions in ``(start, end]`` — the 252-day convention's day count.

    Vectorized: ``start``/``end`` may be scalars or arrays (broadcast). A trade on ``start`` with
    expiry ``end`` has ``business_days(start, end)`` sessions left, so an option expiring tomorrow
    has 1. Negative when ``end < start``.
    """
    s = _session_days()
    a = np.asarray(start, dtype="datetime64[D]")
    b = np.asarray(end, dtype="datetime64[D]")
    _check_in_range(a, b)
    out = np.searchsorted(s, b, side="right") - np.searchsorted(s, a, side="right")
    if out.ndim == 0:
        return int(out)
    return out.astype(np.int64)


def year_fraction(start, end) -> np.ndarray | float:
    """Business days / 252 between ``start`` and ``end`` (B3 convention for option time)."""
    n = business_days(start, end)
    return n / DAYS_PER_YEAR


def third_weekday(year: int, month: int, weekday: int) -> dt.date:
    """Third ``weekday`` (Mon=0 .. Fri=4) of a month."""
    first = dt.date(year, month, 1)
    offset = (weekday - first.weekday()) % 7
    return first + dt.timedelta(days=offset + 14)


# B3 moved monthly stock-option expiries from the third Monday to the third Friday in May 2021.
FRIDAY_EXPIRY_FROM = dt.date(2021, 5, 1)


def monthly_option_expiry(year: int, month: int) -> dt.date:
    """B3 monthly stock-option expiry: third Friday (since May 2021) or third Monday (before),
    moved to the previous session when that day is a holiday."""
    weekday = 4 if dt.date(year, month, 1) >= FRIDAY_EXPIRY_FROM else 0
    day = third_weekday(year, month, weekday)
    return session_on_or_before(day)


def non_session_weekdays(start: DateLike, end: DateLike) -> list[dt.date]:
    """Weekdays in ``[start, end]`` that are not B3 sessions (holidays) — for partition exclusions."""
    days = pd.bdate_range(_to_date(start), _to_date(end)).values.astype("datetime64[D]")
    s = _session_days()
    return [d.astype(dt.date) for d in days[~np.isin(days, s)]]
