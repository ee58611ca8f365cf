"""The code location: every domain's Definitions merged, plus the shared IO manager."""

import dagster as dg

from .defs.analytics.definitions import defs as analytics_defs
from .defs.ingestion.definitions import defs as ingestion_defs
from .defs.models.definitions import defs as models_defs
from .defs.serving.definitions import defs as serving_defs
from .defs.shared.resources import duckdb_io_manager

defs = dg.Definitions.merge(
    ingestion_defs,
    analytics_defs,
    models_defs,
    serving_defs,
    dg.Definitions(resources={"io_manager": duckdb_io_manager()}),
)
