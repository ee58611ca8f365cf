"""Launch the daily job for COTAHIST files dropped into the landing folder."""

import datetime as dt
import json
import re
from pathlib import Path

import dagster as dg

from ..shared.partitions import trading_day_partitions
from .jobs import daily_market_job
from .resources import CotahistFiles

DAILY_FILE = re.compile(r"^COTAHIST_D(\d{2})(\d{2})(\d{4})\.(TXT|ZIP)$", re.IGNORECASE)


def landed_days(landing: Path) -> dict[str, float]:
    """Partition key → file modification time for every daily COTAHIST file in ``landing``."""
    out: dict[str, float] = {}
    if not landing.exists():
        return out
    for p in landing.iterdir():
        m = DAILY_FILE.match(p.name)
        if m and p.is_file():
            day = dt.date(int(m.group(3)), int(m.group(2)), int(m.group(1))).isoformat()
            out[day] = max(out.get(day, 0.0), p.stat().st_mtime)
    return out


def _load_cursor(cursor: str | None) -> tuple[dict[str, float], dict[str, float]]:
    """(requested, skipped): day -> file mtime. A cursor of the first format (a flat dict) is all requested."""
    data = json.loads(cursor) if cursor else {}
    if "requested" in data or "skipped" in data:
        return dict(data.get("requested", {})), dict(data.get("skipped", {}))
    return data, {}


@dg.sensor(job=daily_market_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def landing_folder_sensor(context: dg.SensorEvaluationContext, cotahist_files: CotahistFiles):
    """One run per new or changed daily file; a file for a non-session is reported once, with a log line.

    Both kinds are remembered in the cursor by file mtime: a requested day is not requested again until its
    file changes, and a skipped file is not reported again on every tick (issue 13). A skipped day that
    later becomes a partition (the calendar was extended) is requested then, since it was never requested.
    """
    requested, skipped = _load_cursor(context.cursor)
    now = landed_days(cotahist_files.landing())
    valid = set(trading_day_partitions.get_partition_keys())
    requests = []
    for day, mtime in sorted(now.items()):
        if day not in valid:
            if skipped.get(day) != mtime:
                context.log.warning(f"{day}: a COTAHIST file for a day that is not a B3 session partition; skipped")
            continue
        if requested.get(day) == mtime:
            continue
        requests.append(dg.RunRequest(partition_key=day, run_key=f"{day}:{mtime}"))
    context.update_cursor(json.dumps({
        "requested": {d: m for d, m in now.items() if d in valid},
        "skipped": {d: m for d, m in now.items() if d not in valid},
    }, sort_keys=True))
    return requests or dg.SkipReason(f"no new COTAHIST files in {cotahist_files.landing()}")
