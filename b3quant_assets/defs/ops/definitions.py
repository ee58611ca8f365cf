import dagster as dg

from .assets import surface_pictures, surface_summary
from .resources import AlertSettings
from .schedules import weekly_retraining_job, weekly_retraining_schedule
from .sensors import run_failure_alert

defs = dg.Definitions(
    assets=[surface_pictures, surface_summary],
    jobs=[weekly_retraining_job],
    schedules=[weekly_retraining_schedule],
    sensors=[run_failure_alert],
    resources={"alerts": AlertSettings()},
)
