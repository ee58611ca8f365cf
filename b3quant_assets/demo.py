"""Run the platform end to end over a date range in one Dagster run (what ``b3q demo`` does).

Partitioned assets use single-run backfills, so one run covers every trading day of the range;
the run is recorded in the Dagster instance ($DAGSTER_HOME) and shows up in the UI.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG


@dataclass
class DemoSummary:
    ok: bool
    database: str
    run_id: str
    tables: dict[str, int] = field(default_factory=dict)
    checks: list[tuple[str, str, bool]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    promotion: str = ""
    skipped: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    # failed checks of WARN severity (non-blocking: beats_persistence, days_complete, ...): shown, not fatal
    warnings: set[tuple[str, str]] = field(default_factory=set)

    def render(self) -> str:
        lines = [f"run {self.run_id}: {'success' if self.ok else 'FAILED'}", "", "table                      rows"]
        lines += [f"  {name:<24} {n:>10,}" for name, n in self.tables.items()]
        bad = [c for c in self.checks if not c[2]]
        lines.append(f"\nasset checks: {len(self.checks) - len(bad)}/{len(self.checks)} passed")
        lines += [f"  {'warn' if (a, c) in self.warnings else 'FAILED'} {a}.{c}" for a, c, _ in bad]
        lines += [f"  step failure: {f}" for f in self.failures]
        lines += [f"  skipped: {x}" for x in self.skipped]
        if self.reports:
            lines.append(f"\nbacktest reports (PNG): {Path(self.reports[0]).parent}")
            lines += [f"  {Path(r).name}" for r in self.reports]
        return "\n".join(lines)


def merge_summaries(summaries: list[DemoSummary]) -> DemoSummary:
    """One summary for several runs over one database (``b3q run --landed`` over scattered sessions):
    every run's checks and failures; tables, promotion and reports as the last run left them."""
    last = summaries[-1]
    return DemoSummary(
        ok=all(s.ok for s in summaries),
        database=last.database,
        run_id=", ".join(s.run_id for s in summaries),
        tables=last.tables,
        checks=[c for s in summaries for c in s.checks],
        failures=[f for s in summaries for f in s.failures],
        promotion=last.promotion,
        skipped=last.skipped,
        reports=last.reports,
        warnings=set().union(*(s.warnings for s in summaries)),
    )


def partitioned_and_global_assets(defs: dg.Definitions):
    """Split the code location's assets into trading-day partitioned and unpartitioned ones."""
    graph = defs.resolve_asset_graph()
    part, glob = [], []
    for key in graph.materializable_asset_keys:
        (part if graph.get(key).partitions_def is not None else glob).append(key)
    return part, glob


def demo_stages(defs: dg.Definitions, instance: dg.DagsterInstance | None = None):
    """Materializable assets in run order: ``[(partitioned, keys), ...]``, and the keys left out.

    Partitioned (range) and unpartitioned stages alternate wherever one kind needs the other (the
    backtests are partitioned but read the models' stored predictions). Assets that need an external
    asset never materialized in this instance are left out, with the reason."""
    graph = defs.resolve_asset_graph()
    keys = set(graph.materializable_asset_keys)
    part = {k: graph.get(k).partitions_def is not None for k in keys}
    missing_ext = {
        k for k in graph.get_all_asset_keys() - keys
        if instance is None or instance.get_latest_materialization_event(k) is None
    }  # fmt: skip
    level: dict = {}
    blocked: dict = {}

    def visit(k):
        if k in level:
            return level[k]
        lv, why = 0, None
        for p in graph.get(k).parent_keys:
            if p in missing_ext:
                why = why or p
            elif p in keys:
                lv = max(lv, visit(p) + (part[p] != part[k]))
                why = why or blocked.get(p)
        level[k] = lv
        if why is not None:
            blocked[k] = why
        return lv

    for k in keys:
        visit(k)
    stages: dict = {}
    for k in keys - blocked.keys():
        stages.setdefault((level[k], not part[k]), []).append(k)
    ordered = [(not glob, stages[(lv, glob)]) for lv, glob in sorted(stages)]
    skipped = [f"{k.to_user_string()} (needs {blocked[k].to_user_string()}, not materialized)" for k in sorted(blocked)]
    return ordered, skipped


def run_demo(
    first: dt.date,
    last: dt.date,
    defs: dg.Definitions | None = None,
    log_level: str = "INFO",
    models: bool = True,
) -> DemoSummary:
    """Materialize every asset over ``first..last`` stage by stage (see :func:`demo_stages`); with
    ``models=False`` only the partitioned stages before the first unpartitioned (model) one."""
    if defs is None:
        from b3quant_assets.definitions import defs as loaded

        defs = loaded
    from b3quant_assets.defs.shared.partitions import trading_day_partitions
    from b3quant_assets.defs.shared.resources import default_duckdb_path

    instance = dg.DagsterInstance.get()
    stages, skipped = demo_stages(defs, instance)
    job = defs.resolve_implicit_global_asset_job_def()
    tags = {ASSET_PARTITION_RANGE_START_TAG: first.isoformat(), ASSET_PARTITION_RANGE_END_TAG: last.isoformat()}
    quiet = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    from b3quant_assets.defs.models.assets import ALL_MODEL_ASSETS, DEEP_MODEL_ASSETS, DEEP_QUICK, training_config_for

    sessions = len(trading_day_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(str(first), str(last))))
    cfg = training_config_for(sessions)
    results = []
    for partitioned, keys in stages:
        if not models and not partitioned:
            break  # without the models: the partitioned assets that need none of them
        names = {k.to_user_string() for k in keys}
        ops = {m: {"config": cfg} for m in ALL_MODEL_ASSETS if m in names}
        ops |= {m: {"config": {**cfg, **DEEP_QUICK}} for m in DEEP_MODEL_ASSETS if m in names}  # quick torch fits
        run_config = {**quiet, "ops": ops} if ops else quiet
        res = job.execute_in_process(
            asset_selection=keys, tags=tags if partitioned else None, instance=instance, run_config=run_config,
            raise_on_error=False,
        )
        results.append(res)
        if not res.success:
            break
    ok = all(r.success for r in results)
    checks, failures, warnings = [], [], set()
    for r in results:
        for c in r.get_asset_check_evaluations():
            checks.append((c.asset_key.to_user_string(), c.check_name, c.passed))
            if not c.passed and c.severity == dg.AssetCheckSeverity.WARN:
                warnings.add((c.asset_key.to_user_string(), c.check_name))
        for e in r.get_step_failure_events():
            failures.append(f"{e.step_key}: {e.event_specific_data.error.message.strip()}")
    db = default_duckdb_path()
    tables: dict[str, int] = {}
    with duckdb.connect(db) as con:  # same config as the IO manager's, which may still hold a handle
        for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'b3' ORDER BY table_name"
        ).fetchall():
            tables[name] = con.execute(f"SELECT count(*) FROM b3.{name}").fetchone()[0]
    promotion = ""
    event = instance.get_latest_materialization_event(dg.AssetKey("promoted_model"))
    if event is not None and event.run_id == results[-1].run_id:
        meta = event.asset_materialization.metadata
        promotion = f"{meta['reason'].value} (tag {meta['tag'].value})"
    ok = ok and all(c[2] or (c[0], c[1]) in warnings for c in checks)
    reports = []
    if any(k.to_user_string() == "backtest_summary" for _, ks in stages for k in ks):
        from b3quant_assets.defs.backtests.assets import report_dir

        reports = sorted(str(p) for p in report_dir().glob("*.png"))
    return DemoSummary(ok, db, results[0].run_id, tables, checks, failures, promotion, skipped, reports, warnings)
