"""Every failed run of the code location is recorded and, when a webhook is configured, announced."""

import dagster as dg

from .alerts import failure_row, post_webhook, record_failure
from .resources import AlertSettings


def _root_cause(error) -> str:
    """The innermost error's class and message: Dagster wraps a step's exception in its own."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()  # "RuntimeError: ..." (the class name is part of it)


@dg.run_failure_sensor(
    name="run_failure_alert",
    minimum_interval_seconds=30,
    # Running by default: it launches nothing, and a failure nobody hears of is the one that hurts.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records each failed run in run_failures ($B3Q_DATA_DIR/ops.duckdb) and POSTs it to "
    "$B3Q_ALERT_WEBHOOK when set.",
)
def run_failure_alert(context: dg.RunFailureSensorContext, alerts: AlertSettings):
    steps = context.get_step_failure_events()
    errors = [_root_cause(e.event_specific_data.error) for e in steps if e.event_specific_data.error is not None]
    message = errors[0] if errors else (context.failure_event.message or "run failed")
    row = failure_row(context.dagster_run, message, [e.step_key for e in steps])
    url = alerts.webhook()
    status = "not configured"
    if url:
        text = f"b3quant-ml: run {row['run_id'][:8]} of {row['job_name']} failed"
        text += f" ({row['partition']})" if row["partition"] else ""
        payload = {"text": f"{text}: {message[:500]}", **row, "run_url": alerts.run_url(row["run_id"])}
        status = post_webhook(url, payload, alerts.timeout_s)
        if status.startswith("error"):
            context.log.warning(f"webhook {url}: {status}")
    record_failure(alerts.db_path(), row | {"webhook_status": status})
    context.log.info(f"recorded failure of run {row['run_id']} ({row['job_name']}); webhook: {status}")
