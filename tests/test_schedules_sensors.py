"""The landing-folder sensor and the daily schedule."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from b3quant_assets.definitions import defs
from b3quant_assets.defs.ingestion.resources import CotahistFiles
from b3quant_assets.defs.ingestion.sensors import landing_folder_sensor


def _tick(landing: Path, cursor: str | None = None):
    ctx = dg.build_sensor_context(cursor=cursor, resources={"cotahist_files": CotahistFiles(landing_dir=str(landing))})
    return landing_folder_sensor(ctx), ctx.cursor


def test_sensor_requests_new_session_files_once(tmp_path: Path) -> None:
    (tmp_path / "COTAHIST_D04012016.TXT").write_text("x")
    (tmp_path / "cotahist_d05012016.zip").write_text("x")
    (tmp_path / "COTAHIST_D09022016.TXT").write_text("x")  # Carnival Tuesday: not a session
    (tmp_path / "notes.txt").write_text("x")
    result, cursor = _tick(tmp_path)
    assert [r.partition_key for r in result] == ["2016-01-04", "2016-01-05"]
    again, cursor = _tick(tmp_path, cursor)
    assert isinstance(again, dg.SkipReason)
    (tmp_path / "COTAHIST_D06012016.TXT").write_text("x")
    third, _ = _tick(tmp_path, cursor)
    assert [r.partition_key for r in third] == ["2016-01-06"]


def test_daily_schedule_targets_the_partitioned_job() -> None:
    sched = defs.resolve_schedule_def("daily_market_schedule")
    assert sched.job_name == "daily_market_job"
    assert sched.execution_timezone == "America/Sao_Paulo" and sched.cron_schedule == "0 21 * * 1-5"
    assert sched.default_status == dg.DefaultScheduleStatus.STOPPED


def test_schedule_runs_today_on_sessions_and_skips_holidays() -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    sched = defs.resolve_schedule_def("daily_market_schedule")
    tz = ZoneInfo("America/Sao_Paulo")

    def tick(day: str):
        when = dt.datetime.fromisoformat(day).replace(hour=21, tzinfo=tz)
        ctx = dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def())
        return sched.evaluate_tick(ctx)

    run = tick("2025-11-19").run_requests
    assert [r.partition_key for r in run] == ["2025-11-19"]
    assert tick("2025-11-20").skip_message == "2025-11-20 is not a B3 session"  # Black Consciousness Day


def test_sensor_retries_a_file_whose_day_is_not_yet_a_partition(tmp_path: Path, monkeypatch) -> None:
    from b3quant_assets.defs.ingestion import sensors

    (tmp_path / "COTAHIST_D04012016.TXT").write_text("x")
    real = sensors.trading_day_partitions

    class NoPartitionsYet:
        def get_partition_keys(self):
            return []

    monkeypatch.setattr(sensors, "trading_day_partitions", NoPartitionsYet())
    first, cursor = _tick(tmp_path)
    assert isinstance(first, dg.SkipReason)
    monkeypatch.setattr(sensors, "trading_day_partitions", real)
    second, _ = _tick(tmp_path, cursor)
    assert [r.partition_key for r in second] == ["2016-01-04"]


def test_sensor_reports_a_non_session_file_once_and_again_when_it_changes(tmp_path: Path, monkeypatch) -> None:
    """Issue 13: a file for a non-session day was reported on every tick (it never reached the cursor)."""
    import os

    warned: list[str] = []

    class Log:
        def warning(self, msg: str) -> None:
            warned.append(msg)

    monkeypatch.setattr(dg.SensorEvaluationContext, "log", property(lambda self: Log()))
    f = tmp_path / "COTAHIST_D09022016.TXT"  # Carnival Tuesday: not a session
    f.write_text("x")
    first, cursor = _tick(tmp_path)
    assert isinstance(first, dg.SkipReason) and len(warned) == 1 and "2016-02-09" in warned[0]
    for _ in range(3):
        again, cursor = _tick(tmp_path, cursor)
        assert isinstance(again, dg.SkipReason)
    assert len(warned) == 1
    os.utime(f, (1_700_000_000, 1_700_000_000))  # the file was replaced: say so once more
    _tick(tmp_path, cursor)
    assert len(warned) == 2


def test_sensor_reads_the_first_cursor_format(tmp_path: Path) -> None:
    (tmp_path / "COTAHIST_D04012016.TXT").write_text("x")
    import json

    first, cursor = _tick(tmp_path)
    assert [r.partition_key for r in first] == ["2016-01-04"]
    flat = json.dumps(json.loads(cursor)["requested"])  # what the sensor wrote before the skipped files
    assert isinstance(_tick(tmp_path, flat)[0], dg.SkipReason)
