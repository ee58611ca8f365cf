"""The whole partitioned pipeline on real B3 sessions, through `b3q run --offline` (skips without ../shared)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from conftest import REAL_B3_DIR

pytestmark = pytest.mark.slow
FEB = ["COTAHIST_D25022026.TXT", "COTAHIST_D26022026.TXT", "COTAHIST_D27022026.TXT"]
ZIPS = ["COTAHIST_D03022022.TXT.zip", "COTAHIST_D04022022.TXT.zip"]


def _b3q(data: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(data / "dh"), "B3Q_DATA_DIR": str(data)}
    env.pop("B3Q_LANDING_DIR", None)
    env.pop("B3Q_DUCKDB_PATH", None)
    cmd = [sys.executable, "-m", "b3quant_assets.cli", "run", "--offline", "--data-dir", str(data), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def real_db(tmp_path_factory) -> Path:
    names = [*FEB, *ZIPS, "cdi_sgs12.json"]
    if not all((REAL_B3_DIR / n).exists() for n in names):
        pytest.skip(f"real B3 files not present in {REAL_B3_DIR}")
    data = tmp_path_factory.mktemp("real")
    (data / "landing").mkdir()
    for n in names:
        shutil.copy(REAL_B3_DIR / n, data / "landing" / n)
    for rng in (("2026-02-25", "2026-02-27"), ("2022-02-03", "2022-02-04")):
        res = _b3q(data, "--start", rng[0], "--end", rng[1], "--log-level", "WARNING")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert "success" in res.stdout and "checks:" in res.stdout
    return data / "b3quant.duckdb"


def _q(db: Path, sql: str):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchdf()


def test_valid_iv_share_and_reasons_per_real_day(real_db: Path) -> None:
    df = _q(
        real_db, "SELECT trade_date, avg((iv_reason = 'ok')::INT) AS share, count(*) AS n FROM b3.option_iv GROUP BY 1"
    )
    assert len(df) == 5
    assert (df["share"] > 0.6).all() and (df["n"] > 4000).all(), df
    iv = _q(real_db, "SELECT max(iv) AS m FROM b3.option_iv")["m"].iat[0]
    assert iv <= 5.0  # extreme or unpinned IVs carry a reason instead


@pytest.mark.parametrize("und,lo,hi", [("PETR4", 0.15, 0.6), ("VALE3", 0.15, 0.6), ("BOVA11", 0.08, 0.4)])
def test_near_atm_iv_is_plausible(real_db: Path, und: str, lo: float, hi: float) -> None:
    df = _q(
        real_db,
        f"SELECT trade_date, median(iv) AS iv FROM b3.option_iv WHERE underlying_ticker = '{und}' "
        "AND iv_reason = 'ok' AND abs(k) < 0.05 AND bdays BETWEEN 10 AND 70 GROUP BY 1",
    )
    assert len(df) == 5 and df["iv"].between(lo, hi).all(), df


def test_fitted_slices_per_day_and_no_arbitrage_after_repair(real_db: Path) -> None:
    df = _q(real_db, "SELECT trade_date, count(*) AS n FROM b3.iv_surface WHERE status = 'ok' GROUP BY 1")
    assert len(df) == 5 and (df["n"] >= 100).all(), df
    from b3quant_models.surface import butterfly_violations, calendar_violations

    p = _q(real_db, "SELECT * FROM b3.iv_surface WHERE status = 'ok'")
    for _, g in p.groupby("trade_date"):
        assert len(butterfly_violations(g)) == 0 and len(calendar_violations(g)) == 0


def test_features_exist_for_every_real_day(real_db: Path) -> None:
    df = _q(real_db, "SELECT trade_date, count(*) AS n FROM b3.option_features GROUP BY 1")
    assert len(df) == 5 and (df["n"] > 3000).all(), df
