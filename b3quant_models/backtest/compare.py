"""Every strategy over the same period and universe, side by side."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .config import CostModel, StrategyConfig
from .engine import Market, prepare_market, run_backtest
from .metrics import summarize
from .strategies import Strategy, standard_strategies, universe


@dataclass
class Comparison:
    daily: pd.DataFrame
    positions: pd.DataFrame
    trades: pd.DataFrame
    summary: pd.DataFrame


def backtest_period(predictions: pd.DataFrame, split: str = "test") -> tuple[pd.Timestamp, pd.Timestamp]:
    """First decision day to the last target day (where the last one-day positions are closed)."""
    u = universe(predictions, split)
    return u["trade_date"].min(), u["target_date"].max()


def compare_strategies(
    market: pd.DataFrame | Market,
    predictions: pd.DataFrame,
    truth: pd.DataFrame | None = None,
    strategies: list[Strategy] | None = None,
    config: StrategyConfig | None = None,
    costs: CostModel | None = None,
    split: str = "test",
    underlyings: pd.DataFrame | None = None,
    period: tuple | None = None,
) -> Comparison:
    cfg = config or StrategyConfig()
    mk = market if isinstance(market, Market) else prepare_market(market, underlyings)
    strategies = strategies if strategies is not None else standard_strategies(predictions, split)
    period = period or backtest_period(predictions, split)
    runs = [run_backtest(mk, s.signal(predictions, truth), cfg, costs, s.name, period) for s in strategies]
    daily = pd.concat([r.daily for r in runs], ignore_index=True)
    nonempty = [r for r in runs if len(r.positions)] or runs[:1]
    positions = pd.concat([r.positions for r in nonempty], ignore_index=True)
    trades = pd.concat([r.trades for r in ([r for r in runs if len(r.trades)] or runs[:1])], ignore_index=True)
    return Comparison(daily, positions, trades, summarize(daily, cfg.capital))
