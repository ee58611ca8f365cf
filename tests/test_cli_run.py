"""`b3q run` over scattered sessions: blocks of consecutive sessions, clear refusals before any step."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from b3quant_assets.cli import session_blocks
from b3quant_models.calendar import sessions


def test_scattered_days_make_one_block_per_run_of_consecutive_sessions() -> None:
    d = dt.date.fromisoformat
    days = [d("2026-01-05"), d("2026-01-07"), d("2026-02-13"), d("2026-02-18"), d("2026-02-25"), d("2026-02-26")]
    # 13 Feb (Friday) and 18 Feb (Ash Wednesday) are consecutive sessions: Carnival Monday and Tuesday are not.
    assert session_blocks(days, sessions("2026-01-01", "2026-02-28")) == [
        (d("2026-01-05"), d("2026-01-05")),
        (d("2026-01-07"), d("2026-01-07")),
        (d("2026-02-13"), d("2026-02-18")),
        (d("2026-02-25"), d("2026-02-26")),
    ]


def _b3q(data: Path, *args: str) -> subprocess.CompletedProcess:
    """In a process of its own: the partitions are declared from the data folder when the code loads."""
    env = {**os.environ, "DAGSTER_HOME": str(data / "dh"), "B3Q_DATA_DIR": str(data), "B3Q_OFFLINE": "1"}
    for var in ("B3Q_LANDING_DIR", "B3Q_DUCKDB_PATH", "B3Q_FIRST_SESSION", "B3Q_LAST_SESSION"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "b3quant_assets.cli", "run", "--offline", "--data-dir", str(data), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_landed_without_files_and_offline_without_files_say_so(tmp_path: Path) -> None:
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "COTAHIST_D17022026.TXT").write_text("")  # Carnival Tuesday: no session
    span = ["--start", "2026-02-17", "--end", "2026-02-19"]
    res = _b3q(tmp_path, *span, "--landed")
    assert res.returncode == 2, res.stderr[-2000:]
    assert "no COTAHIST file in" in res.stderr and "for a session between 2026-02-17 and 2026-02-19" in res.stderr
    assert "not B3 sessions in the calendar, so not materialized: COTAHIST_D17022026.TXT" in res.stdout
    res = _b3q(tmp_path, *span)
    assert res.returncode == 2 and "2 of 2 sessions have no COTAHIST file" in res.stderr, res.stderr[-2000:]
    assert (tmp_path / "dh" / "dagster.yaml").exists()  # the project's instance settings: runs queued one at a time
