"""Shared resources: the DuckDB IO manager every table goes through (paths: ``b3quant_models.settings``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBIOManager
from dagster_duckdb.io_manager import DuckDbClient
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


class TransactionalDuckDbClient(DuckDbClient):
    """dagster-duckdb's client with every connection's work in one transaction.

    The stock client deletes a partition's rows and inserts the new ones in separate auto-committed
    statements, so a run killed between them leaves the day empty. Here delete and insert commit
    together or not at all (DuckDB's DDL is transactional too), and a reader sees the old rows or
    the new ones, never none.
    """

    @staticmethod
    @contextmanager
    def connect(context, table_slice) -> Iterator:
        with DuckDbClient.connect(context, table_slice) as conn:
            conn.execute("BEGIN TRANSACTION")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                conn.close()
                raise
            conn.execute("COMMIT")

    @staticmethod
    def get_table_name(table_slice: TableSlice) -> str:
        """``dagster/table_name`` with the database as stored paths are (relative to ``$B3Q_DATA_DIR``):
        Dagster's default puts this machine's absolute file path into every materialization."""
        if not table_slice.database:
            return f"{table_slice.schema}.{table_slice.table}"
        return f"{settings.data_relative(table_slice.database)}.{table_slice.schema}.{table_slice.table}"

    @staticmethod
    def delete_table_slice(context, table_slice: TableSlice, connection) -> None:
        # A failed statement aborts the transaction, so look the table up instead of catching the error.
        if _table_exists(connection, table_slice):
            DuckDbClient.delete_table_slice(context, table_slice, connection)


def _table_exists(connection, table_slice: TableSlice) -> bool:
    return bool(
        connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [table_slice.schema, table_slice.table],
        ).fetchone()[0]
    )


def _rows_per_day(connection, table_slice: TableSlice) -> dict[str, int]:
    """Stored rows of the slice per partition day (before it is replaced)."""
    if not table_slice.partition_dimensions or not _table_exists(connection, table_slice):
        return {}
    expr = table_slice.partition_dimensions[0].partition_expr
    select = DuckDbClient.get_select_statement(table_slice._replace(columns=None))
    rows = connection.execute(f"SELECT CAST({expr} AS DATE) AS d, count(*) FROM ({select}) GROUP BY 1").fetchall()
    return {str(d): int(n) for d, n in rows}


class ReportingDbIOManager(DbIOManager):
    """Rewrites a partition slice in one transaction and says when stored days lose rows.

    A day whose new result has no rows (a file without options, a day whose IVs all fail) replaces
    the stored rows with nothing: the materialization's metadata lists such days (``days_emptied``,
    and ``days_with_fewer_rows`` with before → after) and the run log warns.
    """

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is None or not isinstance(obj, pd.DataFrame) or not context.has_asset_partitions:
            return super().handle_output(context, obj)
        table_slice = self._get_table_slice(context, context)
        with self._db_client.connect(context, table_slice) as conn:
            before = _rows_per_day(conn, table_slice)
        super().handle_output(context, obj)
        if not table_slice.partition_dimensions:
            return
        expr = table_slice.partition_dimensions[0].partition_expr
        after = (
            pd.to_datetime(obj[expr]).dt.date.astype(str).value_counts().to_dict() if expr in obj.columns else {}
        )
        emptied = sorted(d for d, n in before.items() if n and not after.get(d))
        fewer = {d: f"{n} -> {after.get(d, 0)}" for d, n in sorted(before.items()) if after.get(d, 0) < n}
        context.add_output_metadata(
            {
                "stored_rows_replaced": int(sum(before.values())),
                "days_emptied": ", ".join(emptied) if emptied else "none",
                "days_with_fewer_rows": dg.MetadataValue.json(fewer),
            }
        )
        if emptied:
            context.log.warning(
                f"{context.asset_key.to_user_string()}: stored rows of {len(emptied)} day(s) replaced by none: "
                f"{', '.join(emptied[:10])}"
            )


class B3DuckDBIOManager(DuckDBIOManager):
    """DuckDB IO manager: one table per asset; re-materializing a partition replaces its rows atomically."""

    def create_io_manager(self, context) -> DbIOManager:
        return ReportingDbIOManager(
            db_client=TransactionalDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="DuckDBIOManager",
        )

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
