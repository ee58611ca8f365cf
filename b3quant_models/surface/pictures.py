"""Pictures of the surfaces for every day of a backfill, and the time series that summarise them.

Per day and main underlying a small PNG (:func:`~b3quant_models.surface.plot.plot_surface_thumbnail`),
drawn in parallel processes (text layout makes matplotlib slow: ~0.2 s a picture on one core); and per day
and underlying the numbers a quant watches: ATM IV, 25-delta skew, term slope, fit RMSE, arbitrage counts.
"""

from __future__ import annotations

import io
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

PREFERRED = ("PETR4", "VALE3", "BOVA11")  # B3's most traded option underlyings, always drawn when present
MAX_UNDERLYINGS = 6
DAYS_PER_WORKER = 10  # below this a process pool costs more than it saves
ATM_TENOR, LONG_TENOR = 21, 126  # business days: one month, six months
ATM_DELTA, PUT_WING, CALL_WING = 0.50, 0.75, 0.25  # call deltas: 0.75 is the 25-delta put's strike


def main_underlyings(params: pd.DataFrame, n: int = MAX_UNDERLYINGS, preferred=PREFERRED) -> list[str]:
    """``preferred`` ones present, then the rest by quotes used in their fits (a proxy for option activity)."""
    if not len(params):
        return []
    activity = params.groupby("underlying_ticker")["n_quotes"].sum().sort_values(ascending=False)
    first = [u for u in preferred if u in activity.index]
    return (first + [u for u in activity.index if u not in first])[:n]


def _draw_day(args) -> list[tuple[pd.Timestamp, str, bytes]]:
    from b3quant_models.surface.plot import plot_surface_thumbnail

    day, quotes, params, grid, underlyings = args
    present = set(params["underlying_ticker"])
    return [(day, u, plot_surface_thumbnail(quotes, params, grid, u, date=day.date()))
            for u in underlyings if u in present]


def day_pictures(quotes: pd.DataFrame, params: pd.DataFrame, grid: pd.DataFrame, underlyings: list[str],
                 workers: int = 1) -> list[tuple[pd.Timestamp, str, bytes]]:
    """``(day, underlying, png)`` for every ``trade_date`` of ``params`` and each of ``underlyings`` it has."""
    def by_day(df):
        return {pd.Timestamp(d): g for d, g in df.groupby("trade_date")} if len(df) else {}

    q, g = by_day(quotes), by_day(grid)
    empty_q, empty_g = quotes.iloc[0:0], grid.iloc[0:0]
    jobs = [(day, q.get(day, empty_q), p, g.get(day, empty_g), underlyings)
            for day, p in sorted(by_day(params).items())]
    workers = max(1, min(workers, len(jobs) // DAYS_PER_WORKER))
    if workers == 1:
        out = [_draw_day(j) for j in jobs]
    else:  # spawn: numba's threads (the IV solver ran in this process) are not fork-safe
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
            out = list(ex.map(_draw_day, jobs, chunksize=max(1, len(jobs) // (4 * workers))))
    return [x for day in out for x in day]


def _grid_iv(grid: pd.DataFrame, tenor: int, delta: float) -> pd.Series:
    g = grid[(grid["tenor_days"] == tenor) & np.isclose(grid["delta"], delta)]
    return g.set_index(["trade_date", "underlying_ticker"])["iv"]


def surface_summary_table(params: pd.DataFrame, grid: pd.DataFrame, violations: pd.DataFrame,
                          underlyings: list[str]) -> pd.DataFrame:
    """Per day and underlying (vol points): ``atm_iv`` (21 bd, delta 0.5), ``skew_25d`` (IV of the 25-delta
    put strike minus the 25-delta call's, 21 bd), ``term_slope`` (ATM 126 bd minus 21 bd), ``fit_rmse``
    (median over fitted slices), and the day's ``raw_fit_arbitrage`` / ``final_arbitrage`` findings."""
    grid = grid[grid["underlying_ticker"].isin(underlyings)]
    out = pd.DataFrame({
        "atm_iv": 100 * _grid_iv(grid, ATM_TENOR, ATM_DELTA),
        "skew_25d": 100 * (_grid_iv(grid, ATM_TENOR, PUT_WING) - _grid_iv(grid, ATM_TENOR, CALL_WING)),
        "term_slope": 100 * (_grid_iv(grid, LONG_TENOR, ATM_DELTA) - _grid_iv(grid, ATM_TENOR, ATM_DELTA)),
    })
    fitted = params[(params["status"] == "ok") & params["underlying_ticker"].isin(underlyings)]
    out["fit_rmse"] = fitted.groupby(["trade_date", "underlying_ticker"])["rmse_vol_pts"].median()
    v = violations[violations["underlying_ticker"].isin(underlyings)] if len(violations) else violations
    for stage, col in (("raw_fit", "raw_fit_arbitrage"), ("final", "final_arbitrage")):
        n = v[v["stage"] == stage].groupby(["trade_date", "underlying_ticker"]).size() if len(v) else None
        out[col] = (n.reindex(out.index).fillna(0) if n is not None else 0).astype("int64")
    out = out.reset_index()
    out["trade_date"] = pd.to_datetime(out["trade_date"])
    return out.sort_values(["trade_date", "underlying_ticker"]).reset_index(drop=True)


PANELS = (("atm_iv", "ATM IV, 21 bd (%)"), ("skew_25d", "25-delta skew, 21 bd (vol pts)"),
          ("term_slope", "term slope, 126 − 21 bd (vol pts)"), ("fit_rmse", "median fit RMSE (vol pts)"),
          ("arbitrage", "arbitrage findings: raw fit (dashed) / after repair"))


def summary_plot(table: pd.DataFrame, dpi: int = 72) -> bytes:
    """PNG: one panel per series of :func:`surface_summary_table`, a line per underlying."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    unds = list(dict.fromkeys(table["underlying_ticker"]))
    colors = dict(zip(unds, colormaps["tab10"](np.arange(len(unds)) % 10), strict=True))
    fig = Figure(figsize=(10, 2.0 * len(PANELS)), dpi=dpi)
    axes = fig.subplots(len(PANELS), 1, sharex=True)
    for ax, (col, title) in zip(axes, PANELS, strict=True):
        for u, g in table.groupby("underlying_ticker", sort=False):
            if col == "arbitrage":
                ax.plot(g["trade_date"], g["raw_fit_arbitrage"], color=colors[u], lw=0.8, ls="--")
                ax.plot(g["trade_date"], g["final_arbitrage"], color=colors[u], lw=1.2)
            else:
                ax.plot(g["trade_date"], g[col], color=colors[u], lw=1.1, label=u)
        ax.set_title(title, fontsize=9, loc="left")
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, ncol=len(unds), loc="upper left", frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
