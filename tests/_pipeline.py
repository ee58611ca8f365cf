"""Run the partitioned pipeline (ingestion + analytics) over a small generated sample market."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from b3quant_models.sample_market import SampleMarketConfig, SampleMarketManifest, generate_sample_market


@dataclass
class SampleRun:
    db: Path
    manifest: SampleMarketManifest
    summary: object  # b3quant_assets.demo.DemoSummary


def run_sample_pipeline(root: Path, seed: int, n_days: int = 8, log_level: str = "INFO") -> SampleRun:
    """Generate ``n_days`` sessions x PETR4/VALE3 under ``root`` and materialize them into a DuckDB."""
    from b3quant_assets.defs.analytics.definitions import defs as analytics_defs
    from b3quant_assets.defs.analytics.resources import RatesSource
    from b3quant_assets.defs.ingestion.definitions import defs as ingestion_defs
    from b3quant_assets.defs.ingestion.resources import CotahistFiles
    from b3quant_assets.defs.ops.assets import surface_pictures, surface_summary
    from b3quant_assets.defs.shared.resources import duckdb_io_manager
    from b3quant_assets.demo import run_demo

    cfg = SampleMarketConfig(seed=seed, start=dt.date(2025, 3, 6), n_days=n_days, underlyings=("PETR4", "VALE3"))
    manifest = generate_sample_market(root / "landing", cfg)
    db, landing = root / "market.duckdb", str(root / "landing")
    defs = dg.Definitions(
        assets=[*ingestion_defs.assets, *analytics_defs.assets, surface_pictures, surface_summary],
        resources={
            "io_manager": duckdb_io_manager(str(db)),
            "cotahist_files": CotahistFiles(landing_dir=landing),
            "rates_source": RatesSource(landing_dir=landing),
        },
    )
    mp = pytest.MonkeyPatch()
    (root / "dh").mkdir(exist_ok=True)
    mp.setenv("DAGSTER_HOME", str(root / "dh"))
    mp.setenv("B3Q_DUCKDB_PATH", str(db))
    try:
        summary = run_demo(manifest.start, manifest.end, defs=defs, log_level=log_level)
    finally:
        mp.undo()
    return SampleRun(db, manifest, summary)
