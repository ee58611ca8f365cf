"""Run the daily job every weekday evening, after B3 publishes the session's COTAHIST file."""

import dagster as dg

from .jobs import daily_market_job

# B3 publishes the day's file in the evening; holidays need no special case: the schedule asks
# for the latest trading-day partition, which on a holiday is the previous session (idempotent).
daily_market_schedule = dg.build_schedule_from_partitioned_job(
    daily_market_job,
    hour_of_day=21,
    minute_of_hour=0,
    name="daily_market_schedule",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
