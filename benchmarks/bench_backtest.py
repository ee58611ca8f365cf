"""Backtest engine benchmark: every strategy of the demo, one year x all underlyings, both books.

Reads what ``b3q demo`` stored (``option_iv``, ``underlying_quotes``, ``model_predictions``) from its DuckDB
file and times the library calls the Dagster assets make: ``prepare_market`` once, then
``compare_strategies`` with the standard strategies (every model, persistence, random, no trade, optimal,
oracle) over the straddle and single-option books, ``summarize``, and one ``lookahead_check``. No other
tool backtests B3 options (rb3 and b3quant have no backtester), so there is no reference to divide by: the
figures are absolute, with the machine's load. A cProfile run says where the time goes.

    uv run python benchmarks/bench_backtest.py --db data/b3quant.duckdb --write-docs
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from b3quant_models import settings  # noqa: E402
from b3quant_models.backtest.compare import backtest_period, compare_strategies  # noqa: E402
from b3quant_models.backtest.config import CostModel, StrategyConfig  # noqa: E402
from b3quant_models.backtest.engine import prepare_market  # noqa: E402
from b3quant_models.backtest.lookahead import lookahead_check  # noqa: E402
from b3quant_models.backtest.metrics import summarize  # noqa: E402
from b3quant_models.backtest.strategies import standard_strategies  # noqa: E402
from benchmarks._docs import write_section  # noqa: E402

SECTION = "## Backtest engine"


def load(db: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    with duckdb.connect(str(db), read_only=True) as con:
        iv = con.execute("SELECT * FROM b3.option_iv").df()
        und = con.execute(
            "SELECT trade_date, ticker AS underlying_ticker, close AS spot FROM b3.underlying_quotes"
        ).df()
        preds = con.execute("SELECT * FROM b3.model_predictions").df()
    return iv, und, preds


def run(iv, und, preds):
    configs = [StrategyConfig(instrument="straddle"), StrategyConfig(instrument="option")]
    t0 = time.perf_counter()
    mk = prepare_market(iv, und)
    t1 = time.perf_counter()
    cmp = compare_strategies(mk, preds, None, strategies=standard_strategies(preds), config=configs,
                             costs=CostModel())  # fmt: skip
    t2 = time.perf_counter()
    summary = summarize(cmp.daily)
    t3 = time.perf_counter()
    return mk, cmp, summary, {"prepare_market": t1 - t0, "compare_strategies": t2 - t1, "summarize": t3 - t2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=settings.duckdb_path())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    if not a.db.exists():
        raise SystemExit(f"{a.db} not found: run `uv run b3q demo` first (or pass --db)")
    load_avg = os.getloadavg()[0]
    iv, und, preds = load(a.db)
    first, last = backtest_period(preds)
    n_days = iv["trade_date"].nunique()
    times = []
    for _ in range(a.repeats):
        _, cmp, summary, t = run(iv, und, preds)
        times.append(t)
    med = {k: sorted(x[k] for x in times)[len(times) // 2] for k in times[0]}
    strategies = standard_strategies(preds)
    t0 = time.perf_counter()
    market = iv[pd.to_datetime(iv["trade_date"]) <= last]
    p = preds[preds["split"] == "test"]
    lookahead_check(strategies[0], market, p, None, config=StrategyConfig(instrument="straddle"),
                    underlyings=und)  # fmt: skip
    t_look = time.perf_counter() - t0

    prof = cProfile.Profile()
    prof.enable()
    run(iv, und, preds)
    prof.disable()
    st = pstats.Stats(prof)
    total = sum(v[3] for k, v in st.stats.items() if k[2] == "run")
    wanted = ["decide", "holdings", "marks", "_fills", "_positions_table", "prepare_market", "summarize"]
    shares = {w: max((v[3] for k, v in st.stats.items() if k[2] == w and "backtest" in k[0]), default=0.0)
              for w in wanted}  # fmt: skip

    n_strat = len(strategies)
    books = cmp.daily.groupby(["strategy", "instrument"]).ngroups
    lines = [
        f"`uv run python benchmarks/bench_backtest.py --db <demo>/b3quant.duckdb --write-docs` on the default demo "
        f"market ({n_days} sessions, {iv['underlying_ticker'].nunique()} underlyings, {len(iv):,} option rows; "
        f"held-out period {first.date()}..{last.date()}), {os.cpu_count()} CPUs, 1-min load average "
        f"{load_avg:.1f} at start (the machine was shared), median of {a.repeats} runs.",
        "",
        "| step | seconds |",
        "|---|---:|",
        f"| `prepare_market` (index {len(iv):,} rows by session and series) | {med['prepare_market']:.2f} |",
        f"| `compare_strategies`: {n_strat} strategies × 2 books = {books} backtests | "
        f"{med['compare_strategies']:.2f} |",
        f"| `summarize` | {med['summarize']:.3f} |",
        f"| one `lookahead_check` (straddle, {strategies[0].name}) | {t_look:.2f} |",
        "",
        "Where `compare_strategies`'s time goes (cProfile, cumulative seconds of the engine's stages over all "
        f"backtests; total run {total:.2f} s under the profiler): "
        + ", ".join(f"`{k}` {v:.2f}" for k, v in shares.items()) + ".",
        "",
        f"Trades: {len(cmp.trades):,}; positions rows: {len(cmp.positions):,}; strategies: "
        + ", ".join(sorted(summary["strategy"].unique())) + ".",
    ]
    text = "\n".join(lines)
    print(text)
    if a.write_docs:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
