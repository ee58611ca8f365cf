"""Promote after every new model comparison."""

import dagster as dg

promotion_job = dg.define_asset_job("promotion_job", selection=dg.AssetSelection.assets("promoted_model"))


@dg.asset_sensor(
    asset_key=dg.AssetKey("model_comparison"), job=promotion_job, default_status=dg.DefaultSensorStatus.STOPPED
)
def promote_after_comparison(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    yield dg.RunRequest(run_key=asset_event.run_id)
