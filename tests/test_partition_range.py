"""The first (and last) trading-day partition is configurable, so an instance shows the data it has."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import json; from b3quant_assets.defs.shared.partitions import trading_day_partitions as p\n"
    "k = p.get_partition_keys(); print(json.dumps([k[0], k[-1], len(k)]))"
)


def _partitions(tmp_path: Path, **env: str):
    clean = {k: v for k, v in os.environ.items() if k not in ("B3Q_FIRST_SESSION", "B3Q_LAST_SESSION")}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**clean, "B3Q_DATA_DIR": str(tmp_path), **env})
    if out.returncode:
        return out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_environment_sets_the_first_and_last_session(tmp_path: Path) -> None:
    first, last, n = _partitions(tmp_path, B3Q_FIRST_SESSION="2025-01-02", B3Q_LAST_SESSION="2025-03-31")
    assert (first, last) == ("2025-01-02", "2025-03-31")
    from b3quant_models.calendar import sessions

    assert n == len(sessions(dt.date(2025, 1, 2), dt.date(2025, 3, 31)))  # B3 sessions only, Carnival excluded


def test_data_folder_file_sets_the_range_and_the_environment_wins(tmp_path: Path, monkeypatch) -> None:
    from b3quant_models import settings

    monkeypatch.setenv("B3Q_DATA_DIR", str(tmp_path))
    settings.record_sessions(dt.date(2025, 3, 6), dt.date(2025, 3, 20), widen=False)
    assert json.loads((tmp_path / "partitions.json").read_text()) == {"first_session": "2025-03-06",
                                                                      "last_session": "2025-03-20"}
    first, last, _ = _partitions(tmp_path)
    assert (first, last) == ("2025-03-06", "2025-03-20")
    first, _, _ = _partitions(tmp_path, B3Q_FIRST_SESSION="2025-03-10")
    assert first == "2025-03-10"
    # real data accumulates: a later `b3q run --start` keeps the earlier first session
    settings.record_sessions(dt.date(2025, 6, 2))
    assert json.loads((tmp_path / "partitions.json").read_text()) == {"first_session": "2025-03-06"}


def test_default_starts_in_2016_and_runs_through_today(tmp_path: Path) -> None:
    first, last, _ = _partitions(tmp_path)
    assert first == "2016-01-04"  # the first session of 2016
    assert dt.date.fromisoformat(last) >= dt.date.today() - dt.timedelta(days=7)


@pytest.mark.parametrize(("env", "message"), [
    ({"B3Q_FIRST_SESSION": "2025-13-01"}, "B3Q_FIRST_SESSION: '2025-13-01' is not a date"),
    ({"B3Q_FIRST_SESSION": "2025-03-10", "B3Q_LAST_SESSION": "2025-03-01"}, "is before B3Q_FIRST_SESSION"),
])
def test_bad_settings_fail_clearly(tmp_path: Path, env: dict, message: str) -> None:
    err = _partitions(tmp_path, **env)
    assert isinstance(err, str) and message in err
