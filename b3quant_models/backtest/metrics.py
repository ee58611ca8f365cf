"""Performance metrics of a daily P&L table (R$), including the break-even cost multiple."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..calendar import DAYS_PER_YEAR


def sharpe(x: np.ndarray) -> float:
    x = np.asarray(x, float)
    sd = x.std(ddof=1) if len(x) > 1 else 0.0
    return float(np.sqrt(DAYS_PER_YEAR) * x.mean() / sd) if sd > 0 else 0.0


def sortino(x: np.ndarray) -> float:
    x = np.asarray(x, float)
    down = np.sqrt(np.mean(np.minimum(x, 0.0) ** 2)) if len(x) else 0.0
    return float(np.sqrt(DAYS_PER_YEAR) * x.mean() / down) if down > 0 else 0.0


def max_drawdown(pnl: np.ndarray) -> float:
    """Largest fall of cumulative P&L from its running peak (R$, >= 0); the curve starts at 0."""
    eq = np.concatenate([[0.0], np.cumsum(np.asarray(pnl, float))])
    return float(np.max(np.maximum.accumulate(eq) - eq))


def break_even_multiple(gross: np.ndarray, costs: np.ndarray) -> float:
    """k with mean(gross - k costs) = 0, i.e. the cost multiple at which the Sharpe reaches 0
    (decisions do not depend on costs, so P&L is linear in k). inf without costs; 0 when the gross
    P&L is not positive (no cost level makes it pay)."""
    g, c = float(np.sum(gross)), float(np.sum(costs))
    if c <= 0:
        return float("inf") if g > 0 else 0.0
    return max(g / c, 0.0)


def summarize(daily: pd.DataFrame, capital: float = 1_000_000.0) -> pd.DataFrame:
    """One row per strategy: net and gross Sharpe, Sortino, Sharpe at 2x costs, max drawdown, hit rate,
    turnover and the break-even cost multiple, with the P&L attribution summed."""
    rows = []
    keys = ["instrument", "strategy"] if "instrument" in daily.columns else ["strategy"]
    for key, d in daily.groupby(keys, sort=False):
        d = d.sort_values("trade_date")
        ident = dict(zip(keys, key, strict=True))
        tot, gross, costs = (d[c].to_numpy(float) for c in ("total", "gross", "costs"))
        active = d["n_positions"].to_numpy() > 0
        traded = tot[active | (costs > 0)]
        rows.append({
            **ident,
            "days": len(d),
            "net_pnl": float(tot.sum()),
            "gross_pnl": float(gross.sum()),
            "costs": float(costs.sum()),
            "sharpe": sharpe(tot),
            "sharpe_gross": sharpe(gross),
            "sharpe_2x_costs": sharpe(gross - 2 * costs),
            "sortino": sortino(tot),
            "max_drawdown": max_drawdown(tot),
            "max_drawdown_pct": 100 * max_drawdown(tot) / capital,
            "hit_rate": float((traded > 0).mean()) if len(traded) else float("nan"),
            "turnover": float(d["premium_traded"].sum() / capital / max(len(d), 1) * DAYS_PER_YEAR),
            "break_even_cost_x": break_even_multiple(gross, costs),
            "active_days": int(active.sum()),
            **{f"pnl_{c}": float(d[c].sum()) for c in ("delta", "gamma", "vega", "theta", "residual")},
        })  # fmt: skip
    return pd.DataFrame(rows)


REFERENCE = ("persistence", "random", "no_trade", "optimal", "oracle")  # yardsticks, not models


def goal_assessment(summary: pd.DataFrame) -> pd.DataFrame:
    """Per instrument: the best model's net Sharpe against the oracle's and at 2x costs (docs/backtests.md's goal)."""
    rows = []
    for book, s in summary.groupby("instrument", sort=False):
        models = s[~s["strategy"].isin(REFERENCE)]
        oracle = s[s["strategy"] == "oracle"]
        if models.empty:
            continue
        best = models.sort_values("sharpe", ascending=False).iloc[0]
        o = float(oracle["sharpe"].iloc[0]) if len(oracle) else float("nan")
        ratio = best["sharpe"] / o if o > 0 else float("nan")
        rows.append({
            "instrument": book, "best_model": best["strategy"], "net_sharpe": best["sharpe"], "oracle_sharpe": o,
            "share_of_oracle": ratio, "sharpe_2x_costs": best["sharpe_2x_costs"],
            "break_even_cost_x": best["break_even_cost_x"],
            "goal_met": bool(ratio >= 0.5 and best["sharpe_2x_costs"] > 0),
        })  # fmt: skip
    return pd.DataFrame(rows)
