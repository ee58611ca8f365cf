"""Write the backtests' outcome on the sample market (the stored ``backtest_summary``) into docs/backtests.md.

Usage: uv run b3q demo && uv run python benchmarks/backtest_report.py [--db data/b3quant.duckdb] [--write-docs]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from b3quant_models import settings  # noqa: E402
from b3quant_models.backtest.metrics import goal_assessment  # noqa: E402
from benchmarks._docs import write_section  # noqa: E402

DOCS = ROOT / "docs" / "backtests.md"
SECTION = "## Outcome against the goals"
COLS = ["instrument", "strategy", "net_pnl", "sharpe", "sharpe_2x_costs", "sortino", "max_drawdown_pct", "hit_rate",
        "turnover", "break_even_cost_x", "active_days"]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=str(settings.duckdb_path()))  # $B3Q_DUCKDB_PATH, else under $B3Q_DATA_DIR
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    with duckdb.connect(a.db, read_only=True) as con:
        s = con.execute("SELECT * FROM b3.backtest_summary").fetchdf()
        period = con.execute(
            "SELECT min(trade_date)::DATE, max(trade_date)::DATE, count(DISTINCT trade_date) FROM b3.backtest_daily_pnl"
        ).fetchone()
    goal = goal_assessment(s)
    s = s.sort_values(["instrument", "sharpe"], ascending=[True, False])
    met = goal["goal_met"].any() if len(goal) else False
    lines = [
        f"Measured by `benchmarks/backtest_report.py` on the stored `backtest_summary` of `b3q demo` (default sample "
        f"market, held-out period {period[0]}..{period[1]}, {period[2]} sessions, default `CostModel` and books).",
        "",
        "Goal: the best model's net Sharpe ≥ 50% of the oracle's and still positive at 2× costs.",
        "",
        goal.to_markdown(index=False, floatfmt=".3g") if len(goal) else "_no model traded_",
        "",
        "Every strategy (net P&L in R$ on R$ 1 million of capital; `break_even_cost_x`: the cost multiple at which "
        "the Sharpe reaches 0):",
        "",
        s[[c for c in COLS if c in s.columns]].to_markdown(index=False, floatfmt=".3g"),
        "",
        ("**The goal is met** for " + ", ".join(goal.loc[goal["goal_met"], "instrument"]) + ".") if met else
        "**The goal is not met**: no model reaches half the oracle's Sharpe with a positive Sharpe at 2× costs.",
    ]
    text = "\n".join(lines)
    print(text)
    if a.write_docs:
        write_section(SECTION, text, DOCS)


if __name__ == "__main__":
    main()
