"""A day whose file has no options, or whose options all fail, is said, never wiped silently.

Re-materializing such a day replaces its stored option, IV and surface rows with fewer or none: the
run goes on (no step fails), a non-blocking check per table fails naming the day, and the IO
manager's metadata lists the days whose stored rows were emptied.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from b3quant_models.cotahist import read_cotahist_with_quarantine
from b3quant_models.cotahist.writer import write_cotahist
from b3quant_models.sample_market import SampleMarketConfig, generate_sample_market
from b3quant_models.sources.cotahist_download import find_landing_file


def _defs(root: Path):
    from b3quant_assets.defs.analytics.definitions import defs as analytics_defs
    from b3quant_assets.defs.analytics.resources import RatesSource
    from b3quant_assets.defs.ingestion.definitions import defs as ingestion_defs
    from b3quant_assets.defs.ingestion.resources import CotahistFiles
    from b3quant_assets.defs.shared.resources import duckdb_io_manager

    landing = str(root / "landing")
    return dg.Definitions(
        assets=[*ingestion_defs.assets, *analytics_defs.assets],
        resources={
            "io_manager": duckdb_io_manager(str(root / "m.duckdb")),
            "cotahist_files": CotahistFiles(landing_dir=landing),
            "rates_source": RatesSource(landing_dir=landing),
        },
    )


def _keep_only(path: Path, day: dt.date, market_type: str) -> None:
    """Rewrite a COTAHIST file keeping one market (010: no options; 070/080 dropped cash: all IVs fail)."""
    q = read_cotahist_with_quarantine(path).quotes
    keep = q["market_type"] == market_type if market_type == "010" else q["market_type"] != "010"
    path.unlink()
    write_cotahist(path.with_suffix(".TXT"), q[keep], generated=day)


def _emptied(instance: dg.DagsterInstance, asset: str, day: dt.date) -> str:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[str(day)]), limit=1
    ).records
    return records[0].asset_materialization.metadata["days_emptied"].value


def test_days_replaced_by_nothing_are_said_and_the_run_goes_on(tmp_path: Path, monkeypatch) -> None:
    from b3quant_assets.demo import run_demo

    cfg = SampleMarketConfig(seed=3, start=dt.date(2025, 3, 6), n_days=3, underlyings=("PETR4",))
    manifest = generate_sample_market(tmp_path / "landing", cfg)
    d1, d2, d3 = _sessions(manifest)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("B3Q_DUCKDB_PATH", str(tmp_path / "m.duckdb"))
    defs = _defs(tmp_path)
    first = run_demo(d1, d3, defs=defs, log_level="WARNING")
    assert first.ok, first.render()

    _keep_only(find_landing_file(tmp_path / "landing", d2), d2, "010")  # a file without options
    _keep_only(find_landing_file(tmp_path / "landing", d3), d3, "options")  # options whose IVs all fail
    again = run_demo(d2, d3, defs=defs, log_level="ERROR")

    assert not again.failures, again.failures  # no step failed: the days went on
    failed = {(a, c) for a, c, ok in again.checks if not ok}
    assert failed == {
        ("option_quotes", "every_day_has_options"),
        ("option_iv", "every_day_has_valid_ivs"),
        ("iv_surface", "every_day_has_fitted_slices"),
    }
    instance = dg.DagsterInstance.get()
    evals = {
        (e.asset_key.to_user_string(), e.check_name): e for e in _check_evaluations(instance, again.run_id)
    }
    assert evals[("option_quotes", "every_day_has_options")].metadata["empty_days"].value == str(d2)
    assert evals[("option_iv", "every_day_has_valid_ivs")].metadata["empty_days"].value == f"{d2}, {d3}"
    assert evals[("option_iv", "every_day_has_valid_ivs")].severity == dg.AssetCheckSeverity.WARN
    # The IO manager says which stored days lost all their rows.
    assert _emptied(instance, "option_quotes", d2) == str(d2)
    assert _emptied(instance, "option_iv", d2) == str(d2)  # day 3 keeps its rows, each with a reason
    assert _emptied(instance, "iv_surface", d2) == f"{d2}, {d3}"


def _sessions(manifest) -> list[dt.date]:
    from b3quant_models.calendar import sessions

    return sessions(manifest.start, manifest.end)


def _check_evaluations(instance: dg.DagsterInstance, run_id: str):
    from dagster._core.events import DagsterEventType

    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records
    return [r.event_log_entry.dagster_event.event_specific_data for r in records]

