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


@dg.sensor(job=daily_market_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def landing_folder_sensor(context: dg.SensorEvaluationContext, cotahist_files: CotahistFiles):
    """One run per new or changed daily file; files for non-sessions are skipped with a log line."""
    seen: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
    now = landed_days(cotahist_files.landing())
    valid = set(trading_day_partitions.get_partition_keys())
    requests = []
    for day, mtime in sorted(now.items()):
        if seen.get(day) == mtime:
            continue
        if day not in valid:
            context.log.warning(f"{day}: a COTAHIST file for a day that is not a B3 session partition; skipped")
            continue
        requests.append(dg.RunRequest(partition_key=day, run_key=f"{day}:{mtime}"))
    # Remember only what was requested or is settled: a file for a day that is not (yet) a partition
    # is looked at again on the next tick rather than forgotten.
    context.update_cursor(json.dumps({d: m for d, m in now.items() if d in valid}))
    return requests or dg.SkipReason(f"no new COTAHIST files in {cotahist_files.landing()}")
