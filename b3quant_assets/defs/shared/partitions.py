"""Trading-day partitions, declared once and imported by every partitioned asset.

B3 sessions only: weekends are excluded by cron, holidays by exclusions taken from the maintained
exchange-calendars ``BVMF`` calendar (Carnival, Good Friday, Corpus Christi, 20 Nov from 2024,
24 and 31 Dec, ...), so a backfill never asks for a file B3 never published.
"""


import datetime as dt

import dagster as dg

from b3quant_models.calendar import calendar_bounds, non_session_weekdays

PARTITIONS_START = dt.date(2016, 1, 1)
TIMEZONE = "America/Sao_Paulo"
WEEKEND_CRONS = ["0 0 * * 6", "0 0 * * 0"]


def _holiday_exclusions() -> list[dt.datetime]:
    _, last = calendar_bounds()
    return [dt.datetime.combine(d, dt.time()) for d in non_session_weekdays(PARTITIONS_START, last)]


trading_day_partitions = dg.DailyPartitionsDefinition(
    start_date=PARTITIONS_START.isoformat(),
    timezone=TIMEZONE,
    # Today's session is a partition from midnight on, so the evening run (and a file landed today)
    # can target it; before B3 publishes, its run fails clearly for want of the file.
    end_offset=1,
    exclusions=[*WEEKEND_CRONS, *_holiday_exclusions()],
)

# One run per backfill: assets read and write a whole range of days at once (DuckDB has one writer).
single_run_backfill = dg.BackfillPolicy.single_run()


def partition_days(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The trading days a run covers (one for a partition run, many for a range backfill)."""
    return [dt.date.fromisoformat(k) for k in context.partition_keys]
