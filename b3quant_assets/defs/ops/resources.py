"""Where run failures are recorded and who is told: a DuckDB file of its own and an optional webhook."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from b3quant_models import settings

WEBHOOK_ENV = "B3Q_ALERT_WEBHOOK"
OPS_DB_ENV = "B3Q_OPS_DUCKDB_PATH"


def default_ops_db() -> Path:
    """``$B3Q_OPS_DUCKDB_PATH`` or ``$B3Q_DATA_DIR/ops.duckdb``.

    Not the market database: DuckDB admits one writer process, and the run whose failure is being
    recorded (or the next one, queued) may hold that file's lock while the daemon's sensor writes."""
    return Path(os.environ.get(OPS_DB_ENV, settings.data_dir() / "ops.duckdb"))


class AlertSettings(dg.ConfigurableResource):
    """``webhook_url`` (default ``$B3Q_ALERT_WEBHOOK``, read at tick time): where a failed run is POSTed
    as JSON (Slack/Teams-style ``text`` plus the fields); unset means record only. ``ops_db``: the
    DuckDB file holding the ``run_failures`` table (default :func:`default_ops_db`)."""

    webhook_url: str | None = None
    ops_db: str | None = None
    timeout_s: float = 5.0
    dagster_url: str | None = None  # base URL of the UI for the run link; default $B3Q_DAGSTER_URL

    def webhook(self) -> str | None:
        return self.webhook_url or os.environ.get(WEBHOOK_ENV) or None

    def db_path(self) -> Path:
        return Path(self.ops_db) if self.ops_db else default_ops_db()

    def run_url(self, run_id: str) -> str:
        base = self.dagster_url or os.environ.get("B3Q_DAGSTER_URL", "http://127.0.0.1:3000")
        return f"{base.rstrip('/')}/runs/{run_id}"
