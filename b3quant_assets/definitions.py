"""The code location: every domain's Definitions merged, plus the shared IO manager.

Domains are imported as modules (not their ``defs`` objects) because Dagster refuses a module
that holds more than one ``Definitions`` at module scope.
"""

import dagster as dg

from .defs.analytics import definitions as analytics
from .defs.backtests import definitions as backtests
from .defs.ingestion import definitions as ingestion
from .defs.models import definitions as models
from .defs.serving import definitions as serving
from .defs.shared.resources import duckdb_io_manager

defs = dg.Definitions.merge(
    ingestion.defs,
    analytics.defs,
    models.defs,
    serving.defs,
    backtests.defs,
    dg.Definitions(resources={"io_manager": duckdb_io_manager()}),
)
