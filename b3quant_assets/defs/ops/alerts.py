"""Recording a failed run (DuckDB ``run_failures``) and posting it to a webhook: plain functions, so the
sensor stays a few lines and tests call them directly."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from pathlib import Path

import duckdb

RUN_FAILURES_DDL = """
CREATE TABLE IF NOT EXISTS run_failures (
    failed_at TIMESTAMP, run_id VARCHAR, job_name VARCHAR, partition VARCHAR,
    failed_steps VARCHAR, error VARCHAR, webhook_status VARCHAR
)"""
MAX_ERROR_CHARS = 4000


def record_failure(db: Path, row: dict) -> None:
    """Append one failure (the columns of ``RUN_FAILURES_DDL``); idempotent per run id, since a sensor tick
    that fails after writing is evaluated again."""
    db.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(db)) as con:
        con.execute(RUN_FAILURES_DDL)
        con.execute("DELETE FROM run_failures WHERE run_id = ?", [row["run_id"]])
        cols = ["failed_at", "run_id", "job_name", "partition", "failed_steps", "error", "webhook_status"]
        con.execute(f"INSERT INTO run_failures ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [row.get(c) for c in cols])


def read_failures(db: Path):
    """Every recorded failure, newest first (a DataFrame; empty when nothing failed yet)."""
    import pandas as pd

    if not db.exists():
        return pd.DataFrame(columns=["failed_at", "run_id", "job_name", "partition", "failed_steps", "error",
                                     "webhook_status"])
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT * FROM run_failures ORDER BY failed_at DESC").df()


def post_webhook(url: str, payload: dict, timeout_s: float = 5.0) -> str:
    """POST ``payload`` as JSON; returns ``"200"``-style status or ``"error: ..."`` — an unreachable
    webhook must not fail the sensor (the failure is recorded either way)."""
    req = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return str(resp.status)
    except urllib.error.HTTPError as exc:
        return f"error: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"error: {exc}"


def failure_row(run, error: str, failed_steps: list[str], now: dt.datetime | None = None) -> dict:
    """The ``run_failures`` row for a failed ``DagsterRun``: its partition or partition range from the tags."""
    tags = run.tags or {}
    part = tags.get("dagster/partition") or (
        f"{tags['dagster/asset_partition_range_start']}..{tags['dagster/asset_partition_range_end']}"
        if "dagster/asset_partition_range_start" in tags else ""
    )
    return {
        "failed_at": (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None),
        "run_id": run.run_id,
        "job_name": run.job_name,
        "partition": part,
        "failed_steps": ", ".join(failed_steps),
        "error": error[:MAX_ERROR_CHARS],
    }
