"""Operations: the weekly retraining schedule, the run-failure sensor (recorded, and POSTed to a loopback
webhook), and the automation conditions that make downstream partitions follow their parents."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from b3quant_assets.definitions import defs
from b3quant_assets.defs.ops.alerts import read_failures
from b3quant_assets.defs.ops.resources import AlertSettings
from b3quant_assets.defs.ops.schedules import MIN_SESSIONS
from b3quant_assets.defs.ops.sensors import run_failure_alert

TZ = ZoneInfo("America/Sao_Paulo")


def _tick(instance: dg.DagsterInstance, when: dt.datetime):
    sched = defs.resolve_schedule_def("weekly_retraining_schedule")
    ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                    repository_def=defs.get_repository_def())
    return sched.evaluate_tick(ctx)


def test_weekly_retraining_schedule_targets_training_through_promotion() -> None:
    sched = defs.resolve_schedule_def("weekly_retraining_schedule")
    assert sched.cron_schedule == "@weekly" and sched.execution_timezone == "America/Sao_Paulo"
    assert sched.default_status == dg.DefaultScheduleStatus.STOPPED
    job = defs.resolve_job_def(sched.job_name)
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    from b3quant_assets.defs.models.assets import ALL_MODEL_ASSETS

    expected = {"training_set", "grid_training_set", *ALL_MODEL_ASSETS, "model_comparison", "model_predictions",
                "promoted_model"}
    assert expected <= keys, expected - keys
    assert "option_features" not in keys and "raw_quotes" not in keys  # partitioned: the daily job's


def test_weekly_schedule_scales_training_to_stored_sessions_and_skips_when_too_few() -> None:
    from b3quant_assets.defs.shared.partitions import trading_day_partitions

    sunday = dt.datetime(2025, 6, 1, tzinfo=TZ)
    with dg.instance_for_test() as instance:
        skipped = _tick(instance, sunday)
        assert not skipped.run_requests and "0 sessions" in skipped.skip_message
        keys = trading_day_partitions.get_partition_keys_in_range(dg.PartitionKeyRange("2025-01-02", "2025-03-31"))
        for k in keys:
            instance.report_runless_asset_event(dg.AssetMaterialization("option_features", partition=k))
        result = _tick(instance, sunday)
    assert len(keys) >= MIN_SESSIONS
    (req,) = result.run_requests
    assert req.run_key == "retrain-2025-06-01" and req.tags["b3q/sessions"] == str(len(keys))
    cfg = req.run_config["ops"]["xgboost_model"]["config"]
    assert cfg["test_days"] == len(keys) // 6 and cfg["min_train_days"] == len(keys) // 4
    job = defs.resolve_job_def("weekly_retraining_job")
    assert dg.validate_run_config(job, req.run_config)  # every op named in the config exists and accepts it


@pytest.fixture
def webhook():
    """A loopback HTTP server recording the JSON bodies POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def _failed_run(instance: dg.DagsterInstance):
    @dg.op
    def explode():
        raise RuntimeError("COTAHIST file for 2025-06-02 not in the landing folder")

    @dg.job
    def failing_job():
        explode()

    result = failing_job.execute_in_process(instance=instance, raise_on_error=False,
                                            tags={"dagster/partition": "2025-06-02"})
    assert not result.success
    return result


def _evaluate(instance, result, alerts: AlertSettings):
    ctx = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert", dagster_event=result.get_run_failure_event(), dagster_instance=instance,
        dagster_run=result.dagster_run, resources={"alerts": alerts},
    ).for_run_failure()
    run_failure_alert(ctx)
    return result.dagster_run.run_id


def test_failure_sensor_records_and_posts_to_the_webhook(tmp_path: Path, webhook) -> None:
    url, received = webhook
    db = tmp_path / "ops.duckdb"
    with dg.instance_for_test() as instance:
        result = _failed_run(instance)
        run_id = _evaluate(instance, result, AlertSettings(webhook_url=url, ops_db=str(db)))
        _evaluate(instance, result, AlertSettings(webhook_url=url, ops_db=str(db)))  # a re-evaluated tick
    rows = read_failures(db)
    assert len(rows) == 1  # one row per run, however many times its tick is evaluated
    row = rows.iloc[0]
    assert row["run_id"] == run_id and row["job_name"] == "failing_job" and row["partition"] == "2025-06-02"
    assert row["failed_steps"] == "explode" and row["error"].startswith("RuntimeError: COTAHIST file")
    assert row["webhook_status"] == "200"
    assert len(received) == 2 and received[0]["run_id"] == run_id
    assert "failing_job failed (2025-06-02)" in received[0]["text"] and received[0]["run_url"].endswith(run_id)


def test_failure_sensor_records_when_the_webhook_is_down_or_unset(tmp_path: Path, monkeypatch) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    db = tmp_path / "ops.duckdb"
    monkeypatch.delenv("B3Q_ALERT_WEBHOOK", raising=False)
    with dg.instance_for_test() as instance:
        down = _evaluate(instance, _failed_run(instance), AlertSettings(webhook_url=dead, ops_db=str(db)))
        unset = _evaluate(instance, _failed_run(instance), AlertSettings(ops_db=str(db)))
    status = read_failures(db).set_index("run_id")["webhook_status"]
    assert status[down].startswith("error") and status[unset] == "not configured"


def test_webhook_url_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("B3Q_ALERT_WEBHOOK", "http://127.0.0.1:9/x")
    assert AlertSettings().webhook() == "http://127.0.0.1:9/x"
    assert AlertSettings(webhook_url="http://127.0.0.1:8/y").webhook() == "http://127.0.0.1:8/y"


def test_failure_sensor_is_registered_and_running_by_default() -> None:
    sensor = defs.resolve_sensor_def("run_failure_alert")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_partitioned_downstream_assets_follow_their_parents() -> None:
    graph = defs.resolve_asset_graph()
    followers = {"option_quotes", "underlying_quotes", "quote_rejects", "risk_free_rate", "option_iv", "iv_surface",
                 "surface_arbitrage", "surface_grid_points", "option_features"}
    for name in followers:
        cond = graph.get(dg.AssetKey(name)).automation_condition
        assert cond is not None, name
        assert cond.get_label() == "eager, upstream checks passed"
        assert graph.get(dg.AssetKey(name)).partitions_def is not None
    for root in ("raw_quotes", "cotahist_quarantine", "training_set"):  # started by schedules, sensors, backfills
        assert graph.get(dg.AssetKey(root)).automation_condition is None, root
    names = {s.name for s in defs.get_repository_def().sensor_defs}
    assert "default_automation_condition_sensor" in names
