"""Streaming COTAHIST → DuckDB: all or nothing, in bounded chunks."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from b3quant_models.cotahist import CotahistError
from b3quant_models.storage import load_cotahist_into_duckdb


def test_load_appends_in_chunks(real_daily_file: Path) -> None:
    con = duckdb.connect()
    n, nq = load_cotahist_into_duckdb(real_daily_file, con, chunk_bytes=50_000)
    assert (n, nq) == (1743, 0)
    assert con.execute("SELECT count(*), count(DISTINCT ticker) FROM raw_quotes").fetchone()[0] == 1743
    assert con.execute("SELECT count(*) FROM cotahist_quarantine").fetchone()[0] == 0
    load_cotahist_into_duckdb(real_daily_file, con)
    assert con.execute("SELECT count(*) FROM raw_quotes").fetchone()[0] == 2 * 1743


def test_truncated_file_leaves_targets_untouched(real_daily_file: Path, tmp_path: Path) -> None:
    con = duckdb.connect()
    load_cotahist_into_duckdb(real_daily_file, con)
    cut = tmp_path / "COTAHIST_D04012016.TXT"
    cut.write_bytes(real_daily_file.read_bytes()[:300_000])  # a download that stopped mid-file
    with pytest.raises(CotahistError, match="truncated"):
        load_cotahist_into_duckdb(cut, con, chunk_bytes=50_000)
    assert con.execute("SELECT count(*) FROM raw_quotes").fetchone()[0] == 1743
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert tables == {"raw_quotes", "cotahist_quarantine"}  # staging tables are gone
