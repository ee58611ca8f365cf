"""Weekly retraining: training sets → every model → comparison → predictions → the promotion gate."""

import dagster as dg

from ..models.assets import ALL_MODEL_ASSETS, training_config_for
from ..shared.partitions import TIMEZONE

MIN_SESSIONS = 20  # fewer: the walk-forward splits have nothing to train on

# The unpartitioned models domain (everything but the partitioned features it reads) and the gate. By group,
# so a model added to the models domain is retrained without touching this file.
RETRAINING_SELECTION = (dg.AssetSelection.groups("models") - dg.AssetSelection.assets("option_features")) | (
    dg.AssetSelection.assets("promoted_model")
)

weekly_retraining_job = dg.define_asset_job(
    "weekly_retraining_job",
    selection=RETRAINING_SELECTION,
    description="Rebuild the training sets from every stored session, retrain and compare every model, refresh "
    "their stored predictions and run the promotion gate.",
)


def stored_sessions(instance: dg.DagsterInstance) -> int:
    """Sessions whose features are materialized: what the training sets will hold."""
    return len(instance.get_materialized_partitions(dg.AssetKey("option_features")))


@dg.schedule(
    job=weekly_retraining_job,
    cron_schedule="@weekly",  # Sunday 00:00 São Paulo time: after Friday's session, before Monday's
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def weekly_retraining_schedule(context: dg.ScheduleEvaluationContext):
    """One run per week; split sizes scale down when few sessions are stored (a young instance or the demo),
    and the week is skipped, with the reason, while there are too few to train on."""
    n = stored_sessions(context.instance)
    if n < MIN_SESSIONS:
        return dg.SkipReason(f"{n} sessions of option_features stored; retraining needs {MIN_SESSIONS}")
    cfg = training_config_for(n)
    week = context.scheduled_execution_time.date().isoformat()
    return dg.RunRequest(
        run_key=f"retrain-{week}",
        run_config={"ops": {m: {"config": cfg} for m in ALL_MODEL_ASSETS}},
        tags={"b3q/retraining_week": week, "b3q/sessions": str(n)},
    )

