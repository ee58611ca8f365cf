"""Trading-day partitions, declared once and imported by every partitioned asset.

B3 sessions only: weekends are excluded by cron, holidays by exclusions taken from the maintained
exchange-calendars ``BVMF`` calendar (Carnival, Good Friday, Corpus Christi, 20 Nov from 2024,
24 and 31 Dec, ...), so a backfill never asks for a file B3 never published.

The range is configurable so an instance shows the data it has, not "91% missing":
``B3Q_FIRST_SESSION`` (default: the data folder's ``partitions.json``, written by ``b3q demo`` and
``b3q run``, else 2016-01-01) and optionally ``B3Q_LAST_SESSION`` (default: through today's session).
Read when the code location loads (``b3quant_models.settings``); see docs/operations.md.
"""


import datetime as dt

import dagster as dg

from b3quant_models import settings
from b3quant_models.calendar import calendar_bounds, non_session_weekdays

DEFAULT_START = dt.date(2016, 1, 1)
PARTITIONS_START = settings.first_session() or DEFAULT_START
PARTITIONS_LAST = settings.last_session()  # inclusive; None: through today's session
if PARTITIONS_LAST is not None and PARTITIONS_LAST < PARTITIONS_START:
    raise ValueError(f"B3Q_LAST_SESSION {PARTITIONS_LAST} is before B3Q_FIRST_SESSION {PARTITIONS_START}")
TIMEZONE = "America/Sao_Paulo"
WEEKEND_CRONS = ["0 0 * * 6", "0 0 * * 0"]


def _holiday_exclusions() -> list[dt.datetime]:
    _, last = calendar_bounds()
    return [dt.datetime.combine(d, dt.time()) for d in non_session_weekdays(PARTITIONS_START, last)]


trading_day_partitions = dg.DailyPartitionsDefinition(
    start_date=PARTITIONS_START.isoformat(),
    # end_date is exclusive: the day after the last session
    end_date=(PARTITIONS_LAST + dt.timedelta(days=1)).isoformat() if PARTITIONS_LAST else None,
    timezone=TIMEZONE,
    # Today's session is a partition from midnight on, so the evening run (and a file landed today)
    # can target it; before B3 publishes, its run fails clearly for want of the file.
    end_offset=0 if PARTITIONS_LAST else 1,
    exclusions=[*WEEKEND_CRONS, *_holiday_exclusions()],
)

# One run per backfill: assets read and write a whole range of days at once (DuckDB has one writer).
single_run_backfill = dg.BackfillPolicy.single_run()


def partition_days(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The trading days a run covers (one for a partition run, many for a range backfill)."""
    return [dt.date.fromisoformat(k) for k in context.partition_keys]
