import dagster as dg

from .resources import AlertSettings
from .schedules import weekly_retraining_job, weekly_retraining_schedule
from .sensors import run_failure_alert

defs = dg.Definitions(
    jobs=[weekly_retraining_job],
    schedules=[weekly_retraining_schedule],
    sensors=[run_failure_alert],
    resources={"alerts": AlertSettings()},
)
