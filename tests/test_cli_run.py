"""`b3q run` over scattered sessions: blocks of consecutive sessions, clear refusals before any step."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from b3quant_assets.cli import main, session_blocks
from b3quant_models.calendar import sessions


def test_scattered_days_make_one_block_per_run_of_consecutive_sessions() -> None:
    d = dt.date.fromisoformat
    days = [d("2026-01-05"), d("2026-01-07"), d("2026-02-13"), d("2026-02-18"), d("2026-02-25"), d("2026-02-26")]
    # 13 Feb (Friday) and 18 Feb (Ash Wednesday) are consecutive sessions: Carnival Monday and Tuesday are not.
    assert session_blocks(days, sessions("2026-01-01", "2026-02-28")) == [
        (d("2026-01-05"), d("2026-01-05")),
        (d("2026-01-07"), d("2026-01-07")),
        (d("2026-02-13"), d("2026-02-18")),
        (d("2026-02-25"), d("2026-02-26")),
    ]


def test_landed_without_files_and_offline_without_files_say_so(tmp_path: Path, monkeypatch, capsys) -> None:
    # main() sets these in os.environ: monkeypatch puts the originals back afterwards.
    for var, value in {"DAGSTER_HOME": tmp_path / "dh", "B3Q_DATA_DIR": tmp_path, "B3Q_OFFLINE": "1",
                       "BENTOML_HOME": tmp_path / "bentoml"}.items():  # fmt: skip
        monkeypatch.setenv(var, str(value))
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "COTAHIST_D17022026.TXT").write_text("")  # Carnival Tuesday: no session
    base = ["run", "--offline", "--data-dir", str(tmp_path), "--start", "2026-02-17", "--end", "2026-02-19"]
    with pytest.raises(SystemExit, match=r"no COTAHIST file in .* for a session between 2026-02-17 and 2026-02-19"):
        main([*base, "--landed"])
    assert "not B3 sessions in the calendar, so not materialized: COTAHIST_D17022026.TXT" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="2 of 2 sessions have no COTAHIST file"):
        main(base)
    assert (tmp_path / "dh" / "dagster.yaml").exists()  # the project's instance settings: runs queued one at a time
