"""The code location: every domain's Definitions merged, plus the shared IO manager.

Domains are imported as modules (not their ``defs`` objects) because Dagster refuses a module
that holds more than one ``Definitions`` at module scope.

Every job (runs launched from the UI, ``dagster asset materialize``, schedules, sensors, backfills) uses
the in-process executor: each step of Dagster's default multiprocess executor is a fresh process that
re-imports the code location and the step's libraries (seconds each), for no gain here, as the steps of
a run share one DuckDB file and DuckDB admits one writer process; a run is one process, and its steps
use the cores themselves where it pays (surface fitting's process pool, numba's parallel IV solve).
See docs/architecture.md. Schedules, sensors and automation conditions: docs/operations.md.
"""

import dagster as dg

from .defs.analytics import definitions as analytics
from .defs.backtests import definitions as backtests
from .defs.ingestion import definitions as ingestion
from .defs.models import definitions as models
from .defs.ops import definitions as ops
from .defs.ops.automation import with_automation
from .defs.serving import definitions as serving
from .defs.shared.resources import duckdb_io_manager

defs = with_automation(
    dg.Definitions.merge(
        ingestion.defs,
        analytics.defs,
        models.defs,
        serving.defs,
        backtests.defs,
        ops.defs,
        dg.Definitions(resources={"io_manager": duckdb_io_manager()}, executor=dg.in_process_executor),
    )
)
