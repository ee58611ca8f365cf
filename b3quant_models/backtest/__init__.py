"""Backtests of forecast-driven, delta-hedged B3 option strategies (see docs/backtests.md)."""

from .config import CostModel, StrategyConfig
from .engine import BacktestResult, Market, prepare_market, run_backtest

__all__ = ["BacktestResult", "CostModel", "Market", "StrategyConfig", "prepare_market", "run_backtest"]
