"""Every real B3 session in ../shared/data/b3-real/ through ``b3q run --offline --landed``, measured per
session into docs/analytics.md ("The real sessions, measured").

Usage: uv run python benchmarks/real_sessions.py [--write-docs] [--data-dir DIR] [--reuse]

What a user does with files of scattered days: copy them and a rates file into a landing folder and run
``b3q run`` once over the span. The SGS JSON in shared/ starts on 2016-05-25, so the 2016 sessions get
their CDI from a ``cdi.csv`` (which wins over the SGS files), as a user would add it: 14.13% a year,
the CDI from the Selic's rise to 14.25% on 29 July 2015 until its cut on 19 October 2016 (the shared
README gives 14.13% for 4 January 2016).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import write_section

ROOT = Path(__file__).resolve().parents[1]
REAL_DIR = ROOT.parent / "shared" / "data" / "b3-real"
DOCS = ROOT / "docs" / "analytics.md"
SECTION = "## The real sessions, measured"
CDI_2016_PCT = 14.13  # the CDI of every 2016 session before 19 October 2016
NEAR_ATM = "iv_reason = 'ok' AND abs(k) < 0.05 AND bdays BETWEEN 10 AND 70"
# VALE3 had few listed options before Vale's 2017 share unification; the 2016 files list VALE5's.
UNDERLYINGS = ("PETR4", "VALE3", "VALE5", "BOVA11")
FILE_DAY = re.compile(r"COTAHIST_D(\d{2})(\d{2})(\d{4})\.TXT(\.zip)?$", re.IGNORECASE)


def real_files() -> dict[str, Path]:
    """``{YYYY-MM-DD: file}`` for every COTAHIST file in shared/."""
    out = {}
    for p in sorted(REAL_DIR.glob("COTAHIST_D*")):
        m = FILE_DAY.match(p.name)
        if m:
            out[f"{m.group(3)}-{m.group(2)}-{m.group(1)}"] = p
    return dict(sorted(out.items()))


def prepare_landing(data: Path, files: dict[str, Path]) -> None:
    """Symlink every real file and the SGS JSON into ``data/landing``; ``cdi.csv`` for the 2016 days."""
    landing = data / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    for p in [*files.values(), REAL_DIR / "cdi_sgs12.json"]:
        link = landing / p.name
        if not link.exists():
            link.symlink_to(p)
    days_2016 = [d for d in files if d.startswith("2016-")]
    rows = "".join(f"{d},{CDI_2016_PCT}\n" for d in days_2016)
    (landing / "cdi.csv").write_text("date,cdi_annual_pct\n" + rows)


def run_pipeline(data: Path, first: str, last: str) -> float:
    """``b3q run --offline --landed`` over ``first..last``; its wall time (s). Exits on a failed run."""
    env = {**os.environ, "DAGSTER_HOME": str(data / "dagster_home"), "B3Q_DATA_DIR": str(data)}
    for var in ("B3Q_LANDING_DIR", "B3Q_DUCKDB_PATH"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "b3quant_assets.cli", "run", "--offline", "--landed", "--data-dir", str(data),
           "--start", first, "--end", last, "--log-level", "WARNING"]  # fmt: skip
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"b3q run failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return wall


def _q(con, sql: str) -> pd.DataFrame:
    return con.execute(sql).fetchdf()


def measure(db: Path) -> pd.DataFrame:
    """One row per stored session: the figures of docs/analytics.md's table."""
    from b3quant_models.surface import butterfly_violations, calendar_violations

    with duckdb.connect(str(db), read_only=True) as con:
        iv = _q(con, "SELECT trade_date, count(*) AS options, avg((iv_reason = 'ok')::DOUBLE) AS valid "
                     "FROM b3.option_iv GROUP BY 1")  # fmt: skip
        reasons = _q(con, "SELECT trade_date, iv_reason, count(*) AS n FROM b3.option_iv WHERE iv_reason <> 'ok' "
                          "GROUP BY 1, 2")  # fmt: skip
        atm = _q(con, f"SELECT trade_date, underlying_ticker AS u, median(iv) AS iv, count(*) AS n FROM b3.option_iv "
                      f"WHERE {NEAR_ATM} AND underlying_ticker IN {UNDERLYINGS} GROUP BY 1, 2")  # fmt: skip
        surf = _q(con, "SELECT * FROM b3.iv_surface")
        feats = _q(con, "SELECT trade_date, count(*) AS features FROM b3.option_features GROUP BY 1")
        rejects = _q(con, "SELECT trade_date, reason, count(*) AS n FROM b3.quote_rejects GROUP BY 1, 2")
    rows = []
    for day, g in iv.groupby("trade_date"):
        s = surf[surf["trade_date"] == day]
        ok = s[s["status"] == "ok"]
        r = reasons[reasons["trade_date"] == day].sort_values("n", ascending=False)
        rj = rejects[rejects["trade_date"] == day]
        a = atm[atm["trade_date"] == day].set_index("u")
        rows.append({
            "session": pd.Timestamp(day).date().isoformat(),
            "options": int(g["options"].iat[0]),
            "valid_iv": float(g["valid"].iat[0]),
            **{u: (float(a.loc[u, "iv"]) if u in a.index else float("nan")) for u in UNDERLYINGS},
            "slices": len(s),
            "fitted": len(ok),
            "median_rmse": float(ok["rmse_vol_pts"].median()) if len(ok) else float("nan"),
            "repaired": int(ok["repaired"].sum()),
            "arbitrage_left": len(butterfly_violations(ok)) + len(calendar_violations(ok)),
            "features": int(feats.loc[feats["trade_date"] == day, "features"].sum()),
            "iv_reasons": ", ".join(f"{x.iv_reason} {x.n}" for x in r.itertuples()),
            "rejects": ", ".join(f"{x.reason} {x.n}" for x in rj.itertuples()) or "none",
        })  # fmt: skip
    return pd.DataFrame(rows)


def _pct(v: float) -> str:
    return "" if pd.isna(v) else f"{100 * v:.0f}%"


def render(m: pd.DataFrame, wall: float | None, n_runs: str) -> str:
    run = (f" in {wall:.0f} s ({n_runs}; 1-min load average {os.getloadavg()[0]:.1f})" if wall else "")
    lines = [
        "Generated by `uv run python benchmarks/real_sessions.py --write-docs`: every COTAHIST file in",
        "`../shared/data/b3-real/` through one `b3q run --offline --landed` over the whole span" + run + ". "
        "Near-ATM IV: median trusted IV with |k| < 0.05 and 10–70 business days (VALE5 in 2016, when Vale's "
        "options were on the preferred share). Slices: underlying × expiry; *fitted* passed the fit, the rest "
        "had too few eligible quotes. *Arbitrage left*: butterfly and calendar violations after repair.",
        "",
        "| session | options | valid IV | PETR4 | VALE3 / VALE5 | BOVA11 | slices fitted / all | median RMSE (vol pts) "
        "| repaired | arbitrage left | feature rows |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in m.itertuples():
        vale = _pct(r.VALE3) if not pd.isna(r.VALE3) else (_pct(r.VALE5) + " (VALE5)" if not pd.isna(r.VALE5) else "")
        lines.append(
            f"| {r.session} | {r.options:,} | {_pct(r.valid_iv)} | {_pct(r.PETR4)} | {vale} | {_pct(r.BOVA11)} "
            f"| {r.fitted} / {r.slices} | {r.median_rmse:.2f} | {r.repaired} | {r.arbitrage_left} | {r.features:,} |"
        )
    lines += ["", "Options without a trusted IV, by reason, and quotes rejected while cleaning:", ""]
    lines += ["| session | IV reasons (rows) | quote rejects |", "|---|---|---|"]
    lines += [f"| {r.session} | {r.iv_reasons} | {r.rejects} |" for r in m.itertuples()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--data-dir", default=None, help="data folder (default: a fresh temporary one)")
    ap.add_argument("--reuse", action="store_true", help="measure the database in --data-dir without running")
    a = ap.parse_args()
    files = real_files()
    if not files:
        raise SystemExit(f"no COTAHIST files in {REAL_DIR}")
    data = Path(a.data_dir or tempfile.mkdtemp(prefix="b3q-real-sessions-"))
    wall = None
    if not a.reuse:
        prepare_landing(data, files)
        wall = run_pipeline(data, min(files), max(files))
    m = measure(data / "b3quant.duckdb")
    from b3quant_assets.cli import session_blocks
    from b3quant_models.calendar import sessions

    days = [dt.date.fromisoformat(d) for d in files]
    n_runs = f"{len(files)} sessions in {len(session_blocks(days, sessions(days[0], days[-1])))} Dagster runs"
    text = render(m, wall, n_runs)
    print(text)
    if a.write_docs:
        write_section(SECTION, text, DOCS)


if __name__ == "__main__":
    main()
