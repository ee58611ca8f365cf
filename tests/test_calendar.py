"""B3 calendar and trading-day partitions: sessions only, business-day counts across holidays."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from b3quant_assets.defs.shared.partitions import trading_day_partitions
from b3quant_models.calendar import (
    business_days,
    is_session,
    monthly_option_expiry,
    next_session,
    previous_session,
    sessions,
    year_fraction,
)

HOLIDAYS_2024 = ["2024-01-01", "2024-02-12", "2024-02-13", "2024-03-29", "2024-05-01", "2024-05-30",
                 "2024-11-15", "2024-11-20", "2024-12-24", "2024-12-25", "2024-12-31"]  # fmt: skip


def test_2024_has_251_sessions_and_no_holidays() -> None:
    s = sessions("2024-01-01", "2024-12-31")
    assert len(s) == 251
    assert all(d.weekday() < 5 for d in s)
    assert not {dt.date.fromisoformat(h) for h in HOLIDAYS_2024} & set(s)


def test_partitions_are_sessions_only() -> None:
    keys = trading_day_partitions.get_partition_keys()
    in_2024 = [k for k in keys if k.startswith("2024")]
    assert in_2024 == [d.isoformat() for d in sessions("2024-01-01", "2024-12-31")]
    assert keys[0] == "2016-01-04"  # first session of 2016 (1 Jan holiday, 2-3 weekend)
    for h in [*HOLIDAYS_2024, "2016-02-08", "2016-02-09", "2025-04-18", "2025-11-20"]:
        assert h not in keys


def test_business_days_across_carnival_and_year_end() -> None:
    # Carnival 2024: Mon 12 and Tue 13 Feb closed; Ash Wednesday 14 Feb is a (late-opening) session.
    assert business_days("2024-02-09", "2024-02-15") == 2
    assert business_days("2024-02-09", "2024-02-14") == 1
    # Year end: 24, 25, 31 Dec and 1 Jan closed -> from Fri 20 Dec 2024 to Thu 2 Jan 2025.
    assert business_days("2024-12-20", "2025-01-02") == 5  # 23, 26, 27, 30 Dec and 2 Jan
    assert year_fraction("2024-01-02", "2024-12-30") == pytest.approx(250 / 252)  # 251 sessions less 2 Jan
    v = business_days(np.array(["2024-01-02", "2024-06-03"], dtype="datetime64[D]"), "2024-12-30")
    assert v.tolist() == [250, int(business_days("2024-06-03", "2024-12-30"))]
    assert business_days("2024-03-01", "2024-02-01") < 0


def test_session_navigation() -> None:
    assert not is_session("2024-02-12") and is_session("2024-02-14")
    assert next_session("2024-02-09") == dt.date(2024, 2, 14)
    assert previous_session("2025-01-02") == dt.date(2024, 12, 30)


@pytest.mark.parametrize(
    ("year", "month", "expected"),
    [
        (2016, 1, dt.date(2016, 1, 18)),  # third Monday (rule before May 2021)
        (2021, 4, dt.date(2021, 4, 19)),  # last month on the Monday rule
        (2021, 5, dt.date(2021, 5, 21)),  # third Friday from May 2021
        (2024, 3, dt.date(2024, 3, 15)),
        (2025, 4, dt.date(2025, 4, 17)),  # third Friday is Good Friday -> previous session
    ],
)
def test_monthly_option_expiry(year: int, month: int, expected: dt.date) -> None:
    assert monthly_option_expiry(year, month) == expected


def test_dates_outside_the_calendar_raise() -> None:
    with pytest.raises(ValueError, match="outside the B3 calendar"):
        business_days("1990-01-02", "1990-02-01")


def test_dates_past_the_calendar_end_raise_instead_of_undercounting() -> None:
    from b3quant_models.calendar import CALENDAR_END, calendar_bounds

    _, last = calendar_bounds()
    assert last.year == int(CALENDAR_END[:4])  # fixed, not "today + 1 year"
    with pytest.raises(ValueError, match="outside the B3 calendar"):
        business_days("2030-01-02", "2036-06-12")
    with pytest.raises(ValueError, match="outside the B3 calendar"):
        monthly_option_expiry(2036, 6)
    assert business_days("2027-01-04", "2028-06-16") > 350  # two-year listings are counted in full


def test_session_cache_holds_exactly_the_calendars_sessions(tmp_path, monkeypatch) -> None:
    """The cached session list (read instead of importing exchange-calendars) equals the calendar's, and a
    damaged cache file is ignored rather than trusted."""
    from b3quant_models import calendar as cal

    monkeypatch.setenv("B3Q_DATA_DIR", str(tmp_path))
    path = cal.sessions_cache_file()
    assert path.is_relative_to(tmp_path) and not path.exists()
    fresh = cal.b3_calendar().sessions.values.astype("datetime64[D]")
    cal._write_sessions(path, fresh)
    np.testing.assert_array_equal(cal._read_sessions(path), fresh)
    np.testing.assert_array_equal(cal._session_days(), fresh)  # what every lookup uses
    path.write_bytes(b"not an npy file")
    assert cal._read_sessions(path) is None
    np.save(path, fresh[::-1])  # unsorted
    assert cal._read_sessions(path) is None
