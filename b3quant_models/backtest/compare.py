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
    config: StrategyConfig | list[StrategyConfig] | None = None,
    costs: CostModel | None = None,
    split: str = "test",
    underlyings: pd.DataFrame | None = None,
    period: tuple | None = None,
) -> Comparison:
    """Run each strategy with each config (one "book" per instrument, labelled in column ``instrument``)."""
    configs = config if isinstance(config, list) else [config or StrategyConfig()]
    mk = market if isinstance(market, Market) else prepare_market(market, underlyings)
    strategies = strategies if strategies is not None else standard_strategies(predictions, split)
    period = period or backtest_period(predictions, split)
    signals = {s.name: s.signal(predictions, truth) for s in strategies}
    runs = []
    for cfg in configs:
        for s in strategies:
            r = run_backtest(mk, signals[s.name], cfg, costs, s.name, period)
            runs.append((cfg.instrument, r))

    def cat(attr: str) -> pd.DataFrame:
        parts = [getattr(r, attr).assign(instrument=book) for book, r in runs if len(getattr(r, attr))]
        if not parts:
            book, r = runs[0]
            parts = [getattr(r, attr).assign(instrument=book)]
        return pd.concat(parts, ignore_index=True)

    daily = cat("daily")
    return Comparison(daily, cat("positions"), cat("trades"), summarize(daily, configs[0].capital))
