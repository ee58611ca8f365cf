"""``b3q``'s user errors (issue 13): one line on stderr, exit status 2, and table names that cannot inject SQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from b3quant_assets import cli
from b3quant_models.cotahist import format_cotahist


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as e:  # argparse's own exit
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture
def cotahist(tmp_path: Path) -> Path:
    p = tmp_path / "COTAHIST_D15032024.TXT"
    p.write_bytes(format_cotahist([], dt.date(2024, 3, 15)).encode("latin-1"))
    return p


@pytest.mark.parametrize("table", ["x; DROP TABLE raw_quotes; --", 'a"b', "1abc", "a.b.c", "", "a b"])
def test_load_rejects_table_names_that_are_not_identifiers(tmp_path: Path, cotahist: Path, capsys,
                                                           table: str) -> None:
    db = tmp_path / "t.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE raw_quotes AS SELECT 1 AS x")
    code, err = _run(capsys, "load", str(cotahist), "--db", str(db), "--table", table)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "invalid table name" in err, err
    with duckdb.connect(str(db), read_only=True) as con:  # the DROP never ran
        assert con.execute("SELECT count(*) FROM raw_quotes").fetchone() == (1,)


def test_load_accepts_plain_identifiers(tmp_path: Path, cotahist: Path, capsys) -> None:
    db = tmp_path / "t.duckdb"
    for table in ("my_quotes", "_Other_2"):
        code, _ = _run(capsys, "load", str(cotahist), "--db", str(db), "--table", table)
        assert code == 0
    assert cli.table_name("raw_quotes") == "raw_quotes"


def test_user_errors_are_one_line_and_exit_2(tmp_path: Path, cotahist: Path, capsys) -> None:
    cr = tmp_path / "cr.TXT"
    cr.write_bytes(cotahist.read_bytes().replace(b"\r\n", b"\r"))
    bom = tmp_path / "bom.TXT"
    bom.write_bytes(b"\xef\xbb\xbf" + cotahist.read_bytes())
    (tmp_path / "dbdir").mkdir()
    cases = [
        (("read", str(tmp_path)), "is a directory"),
        (("read", str(tmp_path / "missing.TXT")), "no such file"),
        (("read", str(cr)), "CR only"),
        (("read", str(bom)), "byte-order mark"),
        (("load", str(tmp_path), "--db", str(tmp_path / "x.duckdb")), "is a directory"),
        (("load", str(cotahist), "--db", str(tmp_path / "dbdir")), "is a directory"),
        (("load", str(cr), "--db", str(tmp_path / "y.duckdb")), "CR only"),
        (("run", "--start", "2024-13-01", "--offline", "--data-dir", str(tmp_path / "d")), "is not a date"),
        (("run", "--start", "2024-03-16", "--offline", "--data-dir", str(tmp_path / "d")), "no B3 session"),
        (("demo", "--underlyings", "99", "--data-dir", str(tmp_path / "d")), "--underlyings"),
        (("nonsense",), "invalid choice"),
    ]
    for argv, text in cases:
        code, err = _run(capsys, *argv)
        assert code == 2, (argv, code, err)
        assert len(err.strip().splitlines()) == 1 and text in err and "Traceback" not in err, (argv, err)


def test_a_bug_still_has_its_traceback(monkeypatch) -> None:
    def boom(args):
        raise KeyError("bug")

    monkeypatch.setattr(cli, "cmd_read", boom)
    with pytest.raises(KeyError):
        cli.main(["read", "x"])
