"""B3 option-chain conventions: expiry schedules, series letters, strike codes and listing rules."""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass, field

from ..calendar import monthly_option_expiry, session_on_or_before, third_weekday

CALL_LETTERS = "ABCDEFGHIJKL"  # Jan..Dec
PUT_LETTERS = "MNOPQRSTUVWX"


def series_letter(expiry_month: int, is_call: bool) -> str:
    """B3 series letter: A–L calls and M–X puts, by the expiry month."""
    return (CALL_LETTERS if is_call else PUT_LETTERS)[expiry_month - 1]


def strike_code_multiplier(step: float) -> int:
    """Strike codes are strike*10 when the grid is in R$0.10 multiples, else strike*100: unique per
    series and stable over the listing, like B3's (which are arbitrary but unique numbers)."""
    tenths = step * 10
    return 10 if abs(tenths - round(tenths)) < 1e-9 else 100


def option_ticker(root: str, expiry: dt.date, is_call: bool, strike: float, mult: int, week: int) -> str:
    """e.g. PETRB380 (monthly Feb call, strike 38.00) or PETRN375W1 (weekly Feb put, first Friday)."""
    code = round(strike * mult)
    suffix = f"W{week}" if week else ""
    return f"{root}{series_letter(expiry.month, is_call)}{code}{suffix}"


def monthly_expiries(first: dt.date, last: dt.date) -> list[dt.date]:
    """Monthly expiries (B3 rule, calendar.monthly_option_expiry) from ``first``'s month through
    the month of ``last``."""
    out, y, m = [], first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(monthly_option_expiry(y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def weekly_expiries(first: dt.date, last: dt.date) -> list[tuple[dt.date, int]]:
    """Weekly expiries: every Friday except the third (the monthly one), labelled W1/W2/W4/W5 by
    its rank in the month, moved to the previous session on a holiday."""
    out, y, m = [], first.year, first.month
    while (y, m) <= (last.year, last.month):
        fri = third_weekday(y, m, 4) - dt.timedelta(days=14)
        for week in range(1, 6):
            if fri.month == m and week != 3:
                out.append((session_on_or_before(fri), week))
            fri += dt.timedelta(days=7)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


@dataclass
class Listing:
    """One listed expiry of one underlying: a contiguous block of strike indices (K = i*step) that
    only ever grows, so a series once listed is quoted until expiry."""

    expiry: dt.date
    week: int  # 0 monthly, else 1/2/4/5
    lo: int
    hi: int


@dataclass
class ChainBook:
    """Listings per underlying, updated each session from the spot. The expiry counts and strike
    widths are per underlying (liquid names list more of both)."""

    steps: list[float]
    n_monthly: list[int]
    n_weekly: list[int]
    strikes_monthly: list[int]
    strikes_weekly: list[int]
    monthly: list[dt.date]
    weekly: list[tuple[dt.date, int]]
    books: list[dict[dt.date, Listing]] = field(default_factory=list)
    _weekly_dates: list[dt.date] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.books = [{} for _ in self.steps]
        self._weekly_dates = [e for e, _ in self.weekly]

    def _upcoming(self, u: int, day: dt.date, weekly_on: bool) -> list[tuple[dt.date, int]]:
        n_monthly, n_weekly = self.n_monthly[u], self.n_weekly[u]
        i = bisect.bisect_right(self.monthly, day)
        out = [(e, 0) for e in self.monthly[i : i + n_monthly]]
        if len(out) < n_monthly:
            raise ValueError(f"expiry schedule too short after {day}")
        if weekly_on and n_weekly:
            j = bisect.bisect_right(self._weekly_dates, day)
            out += self.weekly[j : j + n_weekly]
        return sorted(out)

    def update(self, u: int, day: dt.date, spot: float, weekly_on: bool) -> list[Listing]:
        """List new expiries around the money and extend strike blocks so that at least a third of
        the listing's width stays on each side of the spot; drop expired ones."""
        book, step = self.books[u], self.steps[u]
        atm = round(spot / step)
        for expiry in [e for e in book if e <= day]:
            del book[expiry]
        for expiry, week in self._upcoming(u, day, weekly_on):
            n = self.strikes_weekly[u] if week else self.strikes_monthly[u]
            keep = max(2, n // 3)
            if expiry not in book:
                lo = max(1, atm - n // 2)
                book[expiry] = Listing(expiry, week, lo, lo + n - 1)
            else:
                lst = book[expiry]
                lst.lo = max(1, min(lst.lo, atm - keep))
                lst.hi = max(lst.hi, atm + keep)
        return [book[e] for e in sorted(book)]
