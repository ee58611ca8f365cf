"""End-to-end: materialize the ingestion chain for trading-day partitions into a temp DuckDB."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from b3quant_assets.defs.ingestion.assets import clean_quote_tables, raw_quotes
from b3quant_assets.defs.ingestion.resources import CotahistFiles
from b3quant_assets.defs.shared.resources import duckdb_io_manager
from b3quant_models.cotahist import read_cotahist
from b3quant_models.cotahist.writer import daily_file_name, write_cotahist

ASSETS = [raw_quotes, clean_quote_tables]


def _run(landing: Path, db: Path, partition: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        partition_key=partition,
        resources={
            "cotahist_files": CotahistFiles(landing_dir=str(landing)),
            "io_manager": duckdb_io_manager(str(db)),
        },
        raise_on_error=False,
    )


def _count(db: Path, table: str, where: str = "") -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM b3.{table} {where}").fetchone()[0]


@pytest.fixture
def landing(tmp_path: Path, real_daily_file: Path) -> Path:
    d = tmp_path / "landing"
    d.mkdir()
    shutil.copy(real_daily_file, d / real_daily_file.name)
    # A second day, made from the real file's records re-dated, to prove partitions are isolated.
    q = read_cotahist(real_daily_file)
    q["trade_date"] = pd.Timestamp("2016-01-05")
    write_cotahist(d / daily_file_name(dt.date(2016, 1, 5)), q.head(50), dt.date(2016, 1, 5), zip_it=True)
    return d


def test_chain_materializes_and_is_idempotent(landing: Path, tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    r1 = _run(landing, db, "2016-01-04")
    assert r1.success
    checks = r1.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks), [c.metadata for c in checks if not c.passed]
    assert _count(db, "raw_quotes") == 1743
    assert _count(db, "option_quotes") == 961  # 596 calls + 365 puts
    assert _count(db, "underlying_quotes") == 424
    assert _count(db, "cotahist_quarantine") == 0
    # The other day (a ZIP) lands beside it; re-running day 1 replaces, never duplicates.
    assert _run(landing, db, "2016-01-05").success
    assert _count(db, "raw_quotes", "WHERE trade_date = '2016-01-05'") == 50
    assert _run(landing, db, "2016-01-04").success
    assert _count(db, "raw_quotes", "WHERE trade_date = '2016-01-04'") == 1743
    assert _count(db, "raw_quotes", "WHERE trade_date = '2016-01-05'") == 50
    with duckdb.connect(str(db), read_only=True) as con:
        petr = con.execute(
            "SELECT count(*) FROM b3.option_quotes WHERE underlying_ticker = 'PETR4' AND trade_date = '2016-01-04'"
        ).fetchone()[0]
    assert petr == 173


def test_malformed_lines_are_quarantined_not_lost(tmp_path: Path, real_daily_file: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    lines = real_daily_file.read_bytes().split(b"\r\n")
    bad = bytearray(lines[5])
    bad[108:121] = b"00000000A4500"  # PREULT with a letter
    lines[5] = bytes(bad)
    (landing / real_daily_file.name).write_bytes(b"\r\n".join(lines))
    db = tmp_path / "t.duckdb"
    res = _run(landing, db, "2016-01-04")
    assert res.success
    assert _count(db, "raw_quotes") == 1742
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT line_number, reason, raw FROM b3.cotahist_quarantine").fetchall()
    assert len(row) == 1 and row[0][0] == 6 and "PREULT" in row[0][1]
    assert row[0][2] == bytes(bad).decode("latin-1")


def test_missing_file_fails_with_clear_message(tmp_path: Path) -> None:
    res = _run(tmp_path, tmp_path / "t.duckdb", "2016-01-04")
    assert not res.success
    msg = str(res.get_step_failure_events()[0].event_specific_data.error)
    assert "COTAHIST_D04012016.TXT" in msg and "landing folder" in msg and "b3q sample-market" in msg


def test_b3_mode_downloads_the_partition_from_a_loopback_server(tmp_path: Path, real_daily_file: Path) -> None:
    import io
    import zipfile

    from b3quant_models.testing.http import CannedResponse, LoopbackServer, block_non_loopback

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.write(real_daily_file, real_daily_file.name)
    landing, db = tmp_path / "landing", tmp_path / "t.duckdb"
    with block_non_loopback(), LoopbackServer() as server:
        server.routes["/COTAHIST_D04012016.ZIP"] = CannedResponse(body=buf.getvalue())
        res = dg.materialize(
            ASSETS,
            partition_key="2016-01-04",
            resources={
                "cotahist_files": CotahistFiles(
                    mode="b3", landing_dir=str(landing), base_url=server.base_url, max_retries=1
                ),
                "io_manager": duckdb_io_manager(str(db)),
            },
        )
        assert server.hits("/COTAHIST_D04012016.ZIP") == 1
    assert res.success
    assert (landing / "COTAHIST_D04012016.ZIP").exists()
    assert _count(db, "raw_quotes") == 1743
