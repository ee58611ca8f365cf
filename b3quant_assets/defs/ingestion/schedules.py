"""Run the daily job every weekday evening, after B3 publishes the session's COTAHIST file."""

import dagster as dg

from b3quant_models.calendar import is_session

from ..shared.partitions import TIMEZONE
from .jobs import daily_market_job


@dg.schedule(
    job=daily_market_job,
    cron_schedule="0 21 * * 1-5",
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def daily_market_schedule(context: dg.ScheduleEvaluationContext):
    """Today's session at 21:00 São Paulo time; holidays are skipped, not re-run."""
    today = context.scheduled_execution_time.date()
    if not is_session(today):
        return dg.SkipReason(f"{today} is not a B3 session")
    return dg.RunRequest(partition_key=today.isoformat(), run_key=today.isoformat())
