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
