"""The daily job: every trading-day-partitioned asset, ingestion through features."""

import dagster as dg

daily_market_job = dg.define_asset_job(
    "daily_market_job",
    selection=dg.AssetSelection.groups("ingestion", "analytics")
    | dg.AssetSelection.assets("option_features", "surface_pictures"),
    description="Ingest one B3 session and compute its IVs, surfaces, grid, features and surface pictures.",
)
