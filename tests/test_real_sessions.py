"""The whole partitioned pipeline on real B3 sessions, through `b3q run --offline` (skips without ../shared).

One `b3q run --offline --landed` over 2016-01-04..2026-02-27 with the files of eight sessions in the
landing folder -- 4 Jan and 16 Mar 2016 (CRLF, third-Monday expiries), 25 Jun 2021, 3-4 Feb 2022 (B3's
ZIP deliveries) and 25-27 Feb 2026 (full market, LF) -- as a user with scattered days would run it: one
Dagster run per block of consecutive sessions, in one process. The SGS JSON starts in May 2016, so the
2016 days take their CDI from a ``cdi.csv`` (14.13% a year: the CDI from the Selic's rise to 14.25% in
July 2015 to its cut in October 2016); without it the run stops before any step, naming the days.
"""

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
SESSIONS = {
    "2016-01-04": "COTAHIST_D04012016.TXT",
    "2016-03-16": "COTAHIST_D16032016.TXT",
    "2021-06-25": "COTAHIST_D25062021.TXT",
    "2022-02-03": "COTAHIST_D03022022.TXT.zip",
    "2022-02-04": "COTAHIST_D04022022.TXT.zip",
    "2026-02-25": "COTAHIST_D25022026.TXT",
    "2026-02-26": "COTAHIST_D26022026.TXT",
    "2026-02-27": "COTAHIST_D27022026.TXT",
}
CDI_2016 = "date,cdi_annual_pct\n2016-01-04,14.13\n2016-03-16,14.13\n"
# The least a real session of each era gives: option records, fitted slices (underlying x expiry).
MIN_OPTIONS = {"2016": 900, "2021": 5000, "2022": 5000, "2026": 12000}
MIN_FITTED = {"2016": 25, "2021": 150, "2022": 150, "2026": 250}


def _b3q(data: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(data / "dh"), "B3Q_DATA_DIR": str(data)}
    env.pop("B3Q_LANDING_DIR", None)
    env.pop("B3Q_DUCKDB_PATH", None)
    cmd = [sys.executable, "-m", "b3quant_assets.cli", "run", "--offline", "--data-dir", str(data), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)


def _landing(data: Path) -> Path:
    names = [*SESSIONS.values(), "cdi_sgs12.json"]
    if not all((REAL_B3_DIR / n).exists() for n in names):
        pytest.skip(f"real B3 files not present in {REAL_B3_DIR}")
    (data / "landing").mkdir(parents=True)
    for n in names:
        shutil.copy(REAL_B3_DIR / n, data / "landing" / n)
    return data / "landing"


@pytest.fixture(scope="module")
def real_db(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("real")
    (_landing(data) / "cdi.csv").write_text(CDI_2016)
    res = _b3q(data, "--landed", "--start", min(SESSIONS), "--end", max(SESSIONS), "--log-level", "WARNING")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "success" in res.stdout and "FAILED" not in res.stdout and "[5/5]" in res.stdout
    return data / "b3quant.duckdb"


def _q(db: Path, sql: str):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchdf()


def _by_day(df, col: str) -> dict[str, float]:
    return {str(d.date()): v for d, v in zip(df["trade_date"], df[col], strict=True)}


def test_offline_run_without_a_days_rate_stops_before_any_step_naming_it(tmp_path: Path) -> None:
    _landing(tmp_path)  # the SGS JSON alone: it starts on 2016-05-25
    res = _b3q(tmp_path, "--start", "2016-01-04")
    assert res.returncode != 0
    assert "no CDI rate for 1 day(s)" in res.stderr and "2016-01-04" in res.stderr, res.stderr[-2000:]
    assert "2016-05-25..2026-05-22" in res.stderr and "cdi.csv" in res.stderr  # what the file has, what to add
    assert not (tmp_path / "b3quant.duckdb").exists()


def test_valid_iv_share_and_options_per_real_day(real_db: Path) -> None:
    df = _q(real_db, "SELECT trade_date, avg((iv_reason = 'ok')::INT) AS share, count(*) AS n FROM b3.option_iv "
                     "GROUP BY 1")  # fmt: skip
    share, n = _by_day(df, "share"), _by_day(df, "n")
    assert sorted(n) == sorted(SESSIONS)
    assert all(share[d] > 0.7 and n[d] >= MIN_OPTIONS[d[:4]] for d in SESSIONS), df
    iv = _q(real_db, "SELECT max(iv) AS m FROM b3.option_iv")["m"].iat[0]
    assert iv <= 5.0  # extreme or unpinned IVs carry a reason instead


# Near-ATM (|k| < 0.05, 10-70 business days) median IV bands. In 2016 Vale's options were on VALE5. On
# 16 Mar 2016 (the day the wiretaps of Lula were published) PETR4 closed 11% up at its high: its
# near-ATM IV was ~90%, so the 2016 band is wider.
BANDS = {
    "PETR4": {"2016": (0.3, 1.2), "*": (0.15, 0.6)},
    "VALE5": {"2016": (0.2, 1.0)},
    "VALE3": {"2021": (0.15, 0.6), "2022": (0.15, 0.6), "2026": (0.15, 0.6)},
    "BOVA11": {"2016": (0.15, 0.6), "*": (0.08, 0.4)},
}


@pytest.mark.parametrize("und", sorted(BANDS))
def test_near_atm_iv_is_plausible(real_db: Path, und: str) -> None:
    df = _q(
        real_db,
        f"SELECT trade_date, median(iv) AS iv FROM b3.option_iv WHERE underlying_ticker = '{und}' "
        "AND iv_reason = 'ok' AND abs(k) < 0.05 AND bdays BETWEEN 10 AND 70 GROUP BY 1",
    )
    got = _by_day(df, "iv")
    want = {d: BANDS[und].get(d[:4], BANDS[und].get("*")) for d in SESSIONS}
    want = {d: b for d, b in want.items() if b is not None}
    assert sorted(got) == sorted(want), df  # every session of the bands has near-ATM quotes
    assert all(lo <= got[d] <= hi for d, (lo, hi) in want.items()), (got, want)


def test_fitted_slices_per_day_and_no_arbitrage_after_repair(real_db: Path) -> None:
    df = _q(real_db, "SELECT trade_date, count(*) AS n FROM b3.iv_surface WHERE status = 'ok' GROUP BY 1")
    n = _by_day(df, "n")
    assert sorted(n) == sorted(SESSIONS) and all(n[d] >= MIN_FITTED[d[:4]] for d in SESSIONS), df
    from b3quant_models.surface import butterfly_violations, calendar_violations

    p = _q(real_db, "SELECT * FROM b3.iv_surface WHERE status = 'ok'")
    for _, g in p.groupby("trade_date"):
        assert len(butterfly_violations(g)) == 0 and len(calendar_violations(g)) == 0


def test_features_for_every_valid_option_of_every_real_day(real_db: Path) -> None:
    df = _q(
        real_db,
        "SELECT trade_date, count(*) AS n, any_value(v.valid) AS valid FROM b3.option_features JOIN "
        "(SELECT trade_date, sum((iv_reason = 'ok')::INT) AS valid FROM b3.option_iv GROUP BY 1) v USING (trade_date) "
        "GROUP BY 1",
    )
    assert sorted(_by_day(df, "n")) == sorted(SESSIONS)
    assert (df["n"] == df["valid"]).all(), df
