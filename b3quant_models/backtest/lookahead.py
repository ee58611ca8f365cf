"""Look-ahead check: decisions up to day D must not change when everything observed after D changes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import CostModel, StrategyConfig
from .engine import prepare_market, run_backtest
from .strategies import Strategy

FUTURE_COLUMNS = ("iv_next", "iv_next_true")  # D+1 observations stored on D's row


@dataclass
class LookaheadResult:
    strategy: str
    cutoff: pd.Timestamp
    passed: bool
    changed_rows: int
    detail: str


def _perturb(df: pd.DataFrame | None, cutoff: pd.Timestamp, rng: np.random.Generator, cols: tuple[str, ...]):
    """Alter every numeric value observed after ``cutoff``: rows dated later, and the D+1 columns of
    rows whose target day is later."""
    if df is None:
        return None
    out = df.copy()
    late = pd.to_datetime(out["trade_date"]) > cutoff
    for c in cols:
        if c in out.columns and late.any():
            v = out.loc[late, c].to_numpy(float)
            out.loc[late, c] = v * rng.uniform(0.5, 1.5, len(v)) + rng.normal(0, 0.05, len(v))
    # a D+1 value stored on day D's row is observed after D: without a target_date, on rows from D on
    day = pd.to_datetime(out["trade_date"])
    nxt = pd.to_datetime(out["target_date"]) > cutoff if "target_date" in out.columns else day >= cutoff
    for c in FUTURE_COLUMNS:
        if c in out.columns and nxt.any():
            out.loc[nxt, c] = out.loc[nxt, c].to_numpy(float) + rng.normal(0, 0.1, int(nxt.sum()))
    return out


def _decisions(res, cutoff) -> pd.DataFrame:
    legs = res.legs[res.legs["trade_date"] <= cutoff][["trade_date", "ticker", "qty"]]
    pos = res.positions[res.positions["trade_date"] <= cutoff][["trade_date", "ticker", "kind", "qty"]]
    return pd.concat([legs.assign(kind="leg"), pos.assign(kind="position")]).sort_values(
        ["kind", "trade_date", "ticker"]).reset_index(drop=True)  # fmt: skip


def lookahead_check(
    strategy: Strategy,
    market: pd.DataFrame,
    predictions: pd.DataFrame,
    truth: pd.DataFrame | None = None,
    cutoffs: list | None = None,
    config: StrategyConfig | None = None,
    costs: CostModel | None = None,
    underlyings: pd.DataFrame | None = None,
    seed: int = 0,
) -> list[LookaheadResult]:
    """Run ``strategy`` on the inputs, then on inputs altered after each cutoff; compare its legs and
    positions up to the cutoff. Market prices, IVs, spots; predictions and truth after D all change."""
    rng = np.random.default_rng(seed)
    mk = prepare_market(market, underlyings)
    base = run_backtest(mk, strategy.signal(predictions, truth), config, costs, strategy.name)
    days = np.sort(pd.to_datetime(predictions["trade_date"]).unique())
    if cutoffs is None:
        cutoffs = [days[len(days) // 3], days[2 * len(days) // 3]] if len(days) >= 3 else list(days[:1])
    out = []
    for c in cutoffs:
        c = pd.Timestamp(c)
        mcols = ("spot", "iv", "vega", "best_bid", "best_ask", "k")
        m2 = _perturb(market, c, rng, mcols)
        u2 = _perturb(underlyings, c, rng, ("spot",))
        p2 = _perturb(predictions, c, rng, ("iv", "forecast", "iv_next", "iv_opt"))
        t2 = _perturb(truth, c, rng, ("true_iv", "iv_next_optimal", "iv_next_true"))
        alt = run_backtest(prepare_market(m2, u2), strategy.signal(p2, t2), config, costs, strategy.name)
        a, b = _decisions(base, c), _decisions(alt, c)
        same = a.shape == b.shape and a[["kind", "trade_date", "ticker"]].equals(b[["kind", "trade_date", "ticker"]])
        same = same and np.allclose(a["qty"].to_numpy(float), b["qty"].to_numpy(float))
        changed = 0 if same else int(abs(len(a) - len(b)) or (~np.isclose(a["qty"], b["qty"])).sum())
        detail = "unchanged" if same else f"{len(a)} vs {len(b)} decision rows up to {c.date()}; {changed} differ"
        out.append(LookaheadResult(strategy.name, c, same, changed, detail))
    return out
