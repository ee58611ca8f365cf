"""Streaming a COTAHIST file into DuckDB with bounded memory (yearly files are ~1 GB)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from .cotahist.reader import iter_cotahist


def load_cotahist_into_duckdb(
    path: str | Path,
    con: duckdb.DuckDBPyConnection,
    table: str = "raw_quotes",
    quarantine_table: str = "cotahist_quarantine",
    chunk_bytes: int | None = None,
) -> tuple[int, int]:
    """Append a file's quotes and quarantined lines to two tables inside one transaction.

    The reader checks the trailer only after the last batch, so the batches are written in a
    transaction that is rolled back if the file turns out truncated: nothing half-loaded remains.
    Returns (quotes loaded, lines quarantined).
    """
    kwargs = {"chunk_bytes": chunk_bytes} if chunk_bytes else {}
    n_quotes = n_quar = 0
    con.execute("BEGIN TRANSACTION")
    try:
        for quotes, quarantine in iter_cotahist(path, **kwargs):
            for df, name in ((quotes, table), (quarantine, quarantine_table)):
                con.register("_batch", df)
                con.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM _batch LIMIT 0")
                con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _batch")
                con.unregister("_batch")
            n_quotes += len(quotes)
            n_quar += len(quarantine)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return n_quotes, n_quar
