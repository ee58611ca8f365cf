"""Shared resources: the DuckDB IO manager every table goes through (paths: ``b3quant_models.settings``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster._core.storage.db_io_manager import DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBIOManager
from dagster_duckdb_pandas import DuckDBPandasTypeHandler

from b3quant_models import settings
from b3quant_models.settings import data_dir, offline
from b3quant_models.storage import typed_select

__all__ = ["B3DuckDBIOManager", "data_dir", "default_duckdb_path", "default_landing_dir", "duckdb_io_manager",
           "offline"]


def default_duckdb_path() -> str:
    return str(settings.duckdb_path())


def default_landing_dir() -> str:
    return str(settings.landing_dir())


class TypedDuckDBPandasTypeHandler(DuckDBPandasTypeHandler):
    """Like dagster-duckdb-pandas' handler, but an empty partition still creates a typed table.

    The stock handler skips empty frames, so a day without quarantined rows leaves no table and
    every downstream read fails; object columns are stored as VARCHAR (DuckDB would infer NULL).
    Unpartitioned tables are replaced whole, so a changed set of columns is no error.
    """

    def handle_output(self, context: dg.OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection):
        select = typed_select(obj, "obj")
        table = f"{table_slice.schema}.{table_slice.table}"
        if not context.has_asset_partitions:
            # A whole-table asset is replaced whole: its columns may change between runs.
            connection.execute(f"CREATE OR REPLACE TABLE {table} AS {select}")
        else:
            connection.execute(f"CREATE TABLE IF NOT EXISTS {table} AS {select} LIMIT 0")
            connection.execute(f"INSERT INTO {table} BY NAME {select}")
        meta: dict = {"storage_kind": "duckdb", "table": f"{table}"}
        key = "partition_row_count" if context.has_partition_key else "row_count"
        meta[f"dagster/{key}"] = int(obj.shape[0])
        context.add_output_metadata(meta)


class B3DuckDBIOManager(DuckDBIOManager):
    """DuckDB IO manager: one table per asset, re-materializing a partition replaces its rows."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [TypedDuckDBPandasTypeHandler()]

    @staticmethod
    def default_load_type() -> type | None:
        return pd.DataFrame


SCHEMA = "b3"


def duckdb_io_manager(database: str | None = None) -> B3DuckDBIOManager:
    path = database or default_duckdb_path()
    if Path(path).stem == SCHEMA:
        # DuckDB names the catalog after the file: "b3.duckdb" would make every "b3.table" ambiguous.
        raise ValueError(f"DuckDB file {path!r}: choose a file name other than '{SCHEMA}.duckdb' (clashes with schema)")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return B3DuckDBIOManager(database=path, schema=SCHEMA)
