"""Streaming a COTAHIST file into DuckDB with bounded memory (yearly files are ~1 GB)."""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
import pandas as pd


def typed_select(df: pd.DataFrame, relation: str) -> str:
    """``SELECT`` of a registered DataFrame with object columns cast to VARCHAR.

    DuckDB types an empty (or all-null) object column as NULL, so a table created from an empty
    first batch would reject every later string; casting keeps the schema stable.
    """
    casts = [f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in df.columns if df[c].dtype == object]
    return f"SELECT * REPLACE ({', '.join(casts)}) FROM {relation}" if casts else f"SELECT * FROM {relation}"


def _append(con: duckdb.DuckDBPyConnection, name: str, df: pd.DataFrame) -> None:
    con.register("_batch", df)
    try:
        select = typed_select(df, "_batch")
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} AS {select} LIMIT 0")
        con.execute(f"INSERT INTO {name} BY NAME {select}")
    finally:
        con.unregister("_batch")


def load_cotahist_into_duckdb(
    path: str | Path,
    con: duckdb.DuckDBPyConnection,
    table: str = "raw_quotes",
    quarantine_table: str = "cotahist_quarantine",
    chunk_bytes: int | None = None,
) -> tuple[int, int]:
    """Append a file's quotes and quarantined lines to two tables, all or nothing.

    The reader checks the trailer only after the last batch. Batches go to staging tables that
    are committed as they come (a single open transaction would hold the whole file in memory:
    1.1 GB extra for a 1 GB yearly file, measured), and are moved into the targets in one
    transaction only once the file proved complete; a truncated file leaves the targets untouched.
    Returns (quotes loaded, lines quarantined).
    """
    from .cotahist.reader import iter_cotahist  # numba kernels: not for importers of typed_select

    kwargs = {"chunk_bytes": chunk_bytes} if chunk_bytes else {}
    tag = uuid.uuid4().hex[:8]  # concurrent loads into one database must not share staging tables
    stage_q, stage_x = f"_staging_{table}_{tag}", f"_staging_{quarantine_table}_{tag}"
    for t in (stage_q, stage_x):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    n_quotes = n_quar = 0
    try:
        for quotes, quarantine in iter_cotahist(path, **kwargs):
            _append(con, stage_q, quotes)
            _append(con, stage_x, quarantine)
            n_quotes += len(quotes)
            n_quar += len(quarantine)
        con.execute("BEGIN TRANSACTION")
        try:
            for stage, target in ((stage_q, table), (stage_x, quarantine_table)):
                con.execute(f"CREATE TABLE IF NOT EXISTS {target} AS SELECT * FROM {stage} LIMIT 0")
                con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM {stage}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        for t in (stage_q, stage_x):
            con.execute(f"DROP TABLE IF EXISTS {t}")
    return n_quotes, n_quar
