"""The DuckDB IO manager: whole-table assets may change columns between runs."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from b3quant_assets.defs.shared.resources import duckdb_io_manager


def test_unpartitioned_table_is_replaced_with_its_new_columns(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    frames = iter([pd.DataFrame({"a": [1, 2], "old": ["x", "y"]}), pd.DataFrame({"a": [3], "new": [0.5]})])

    @dg.asset
    def table() -> pd.DataFrame:
        return next(frames)

    for _ in range(2):
        assert dg.materialize([table], resources={"io_manager": duckdb_io_manager(str(db))}).success
    with duckdb.connect(str(db), read_only=True) as con:
        df = con.execute("SELECT * FROM b3.table").fetchdf()
    assert list(df.columns) == ["a", "new"] and df["a"].tolist() == [3]


# ------------------------------------------------------------------ atomic partition rewrites

DAYS = dg.DailyPartitionsDefinition(start_date="2026-02-25", end_date="2026-02-28")


def _partitioned_asset(frames):
    @dg.asset(partitions_def=DAYS, metadata={"partition_expr": "trade_date"})
    def day_table(context) -> pd.DataFrame:
        return next(frames)(context.partition_key)

    return day_table


def _rows(day: str, n: int, tag: str) -> pd.DataFrame:
    return pd.DataFrame({"trade_date": pd.to_datetime([day] * n), "tag": [tag] * n, "i": range(n)})


def _stored(db: Path) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT * FROM b3.day_table ORDER BY i").fetchdf()


def test_a_failure_between_delete_and_insert_keeps_the_old_rows(tmp_path: Path, monkeypatch) -> None:
    from b3quant_assets.defs.shared import resources

    db = tmp_path / "t.duckdb"
    asset = _partitioned_asset(iter([lambda d: _rows(d, 322, "old"), lambda d: _rows(d, 300, "new")]))
    io = {"io_manager": duckdb_io_manager(str(db))}
    assert dg.materialize([asset], partition_key="2026-02-26", resources=io).success

    def fail_after_delete(self, context, table_slice, obj, connection):
        # The IO manager has deleted the day's rows on this connection by now.
        assert connection.execute("SELECT count(*) FROM b3.day_table").fetchone()[0] == 0
        raise RuntimeError("killed between delete and insert")

    monkeypatch.setattr(resources.TypedDuckDBPandasTypeHandler, "handle_output", fail_after_delete)
    res = dg.materialize([asset], partition_key="2026-02-26", resources=io, raise_on_error=False)
    assert not res.success
    stored = _stored(db)
    assert len(stored) == 322 and set(stored["tag"]) == {"old"}


KILLED_WRITER = r"""
import sys, time
import dagster as dg, pandas as pd
sys.path.insert(0, sys.argv[2])
from b3quant_assets.defs.shared import resources
from test_io_manager import _partitioned_asset, _rows

original = resources.TypedDuckDBPandasTypeHandler.handle_output

def slow_insert(self, context, table_slice, obj, connection):
    original(self, context, table_slice, obj, connection)  # inserted, not committed yet
    print("inserted", flush=True)
    time.sleep(60)

resources.TypedDuckDBPandasTypeHandler.handle_output = slow_insert
asset = _partitioned_asset(iter([lambda d: _rows(d, 50_000, "new")]))
dg.materialize([asset], partition_key="2026-02-26", resources={"io_manager": resources.duckdb_io_manager(sys.argv[1])})
"""


def test_a_writer_killed_mid_write_leaves_the_old_rows(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    db = tmp_path / "t.duckdb"
    asset = _partitioned_asset(iter([lambda d: _rows(d, 322, "old")]))
    io = {"io_manager": duckdb_io_manager(str(db))}
    assert dg.materialize([asset], partition_key="2026-02-26", resources=io).success
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    env = {**__import__("os").environ, "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), str(Path(__file__).parent)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        line = proc.stdout.readline()  # blocks until the new rows are inserted in the open transaction
        assert line.strip() == "inserted", line
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    stored = _stored(db)
    assert len(stored) == 322 and set(stored["tag"]) == {"old"}


def test_a_day_replaced_by_no_rows_is_said_in_metadata(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    asset = _partitioned_asset(iter([lambda d: _rows(d, 5, "old"), lambda d: _rows(d, 0, "new")]))
    io = {"io_manager": duckdb_io_manager(str(db))}
    assert dg.materialize([asset], partition_key="2026-02-26", resources=io).success
    res = dg.materialize([asset], partition_key="2026-02-26", resources=io)
    meta = res.asset_materializations_for_node("day_table")[0].metadata
    assert meta["days_emptied"].value == "2026-02-26" and meta["stored_rows_replaced"].value == 5
    assert meta["days_with_fewer_rows"].value == {"2026-02-26": "5 -> 0"}
