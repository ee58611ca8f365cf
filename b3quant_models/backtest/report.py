"""Pictures of a backtest: the equity curves side by side and one report per strategy (PNG bytes)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

PARTS = ["delta", "gamma", "vega", "theta", "residual"]
COLORS = {"delta": "#4c72b0", "gamma": "#55a868", "vega": "#c44e52", "theta": "#8172b2", "residual": "#ccb974",
          "costs": "#64b5cd"}  # fmt: skip


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def equity_curves_plot(daily: pd.DataFrame, summary: pd.DataFrame, title: str = "Backtest: net equity curves") -> bytes:
    """Cumulative net P&L per strategy (R$ thousands), the net Sharpe in the legend; one panel per instrument."""
    from matplotlib.figure import Figure

    books = list(daily["instrument"].unique()) if "instrument" in daily.columns else [None]
    fig = Figure(figsize=(9, 3.6 * len(books)), dpi=100)
    axes = fig.subplots(len(books), 1, squeeze=False)[:, 0]
    for ax, book in zip(axes, books, strict=True):
        d = daily if book is None else daily[daily["instrument"] == book]
        s = summary if book is None else summary[summary["instrument"] == book]
        sh = s.set_index("strategy")["sharpe"]
        for name, g in d.groupby("strategy", sort=False):
            g = g.sort_values("trade_date")
            style = {"oracle": ":", "optimal": "--", "random": "-.", "no_trade": "-", "persistence": "-"}
            ax.plot(g["trade_date"], g["total"].cumsum() / 1e3, style.get(name, "-"), lw=1.4,
                    label=f"{name} (Sharpe {sh.get(name, np.nan):.2f})")  # fmt: skip
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_ylabel("net P&L, R$ thousands")
        ax.set_title(title if book is None else f"{title} — {book}")
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.autofmt_xdate()
    fig.tight_layout()
    return _png(fig)


def strategy_report_plot(daily: pd.DataFrame, row: pd.Series, name: str) -> bytes:
    """One strategy: net and gross equity, the cumulative attribution by Greek and costs, the drawdown,
    and its metrics."""
    from matplotlib.figure import Figure

    d = daily.sort_values("trade_date")
    fig = Figure(figsize=(9, 7.5), dpi=100)
    a1, a2, a3 = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 3, 1.4]})
    eq = d["total"].cumsum() / 1e3
    a1.plot(d["trade_date"], eq, lw=1.6, label="net")
    a1.plot(d["trade_date"], d["gross"].cumsum() / 1e3, lw=1.0, ls="--", label="before costs")
    a1.axhline(0, color="grey", lw=0.6)
    a1.set_ylabel("R$ thousands")
    a1.legend(fontsize=8, loc="upper left")
    a1.set_title(f"{name}: net Sharpe {row['sharpe']:.2f}, at 2x costs {row['sharpe_2x_costs']:.2f}, "
                 f"break-even costs x{row['break_even_cost_x']:.2f}", fontsize=10)  # fmt: skip
    for p in PARTS:
        a2.plot(d["trade_date"], d[p].cumsum() / 1e3, lw=1.1, color=COLORS[p], label=p)
    a2.plot(d["trade_date"], -d["costs"].cumsum() / 1e3, lw=1.1, color=COLORS["costs"], label="-costs")
    a2.axhline(0, color="grey", lw=0.6)
    a2.set_ylabel("cumulative, R$ thousands")
    a2.legend(fontsize=7, ncol=6, loc="upper left")
    dd = (np.maximum.accumulate(np.concatenate([[0.0], eq.to_numpy()]))[1:] - eq.to_numpy())
    a3.fill_between(d["trade_date"], -dd, 0, color="#c44e52", alpha=0.5)
    a3.set_ylabel("drawdown")
    txt = (f"Sortino {row['sortino']:.2f}  max DD R$ {row['max_drawdown']:,.0f}  hit rate "
           f"{100 * row['hit_rate']:.0f}%  turnover {row['turnover']:.1f}x/yr  active days {row['active_days']}")
    a3.set_xlabel(txt, fontsize=8)  # fmt: skip
    fig.autofmt_xdate()
    fig.tight_layout()
    return _png(fig)
