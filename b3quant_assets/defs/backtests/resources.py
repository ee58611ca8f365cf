"""Backtest settings shared by the daily books and the summary (one resource, so they never disagree)."""


import dagster as dg
from pydantic import Field

from b3quant_models.backtest import CostModel, StrategyConfig

MAX_HOLD_DAYS = 60  # positions live at most this many sessions (so a partition's warm-up window covers them)


class BacktestSettings(dg.ConfigurableResource):
    """Trading rules and costs (defaults and their sources: docs/backtests.md)."""

    split: str = "test"  # which stored predictions to trade: "test" (held out) or "oof"
    instruments: list[str] = Field(default_factory=lambda: ["straddle", "option"])
    threshold: float = 0.005
    hold_days: int = 1
    min_edge_over_cost: float = 1.0
    min_bdays: int = 5
    max_bdays: int = 63
    vega_per_trade: float = 1_000.0
    max_vega_underlying: float = 2_000.0
    max_vega_total: float = 6_000.0
    max_per_underlying: int = 4
    hedge: bool = True
    capital: float = 1_000_000.0
    option_fee_bps: float = 6.5
    stock_fee_bps: float = 3.0
    brokerage_bps: float = 0.0
    brokerage_per_order: float = 0.0
    rel_half_spread: float = 0.05
    min_half_spread: float = 0.01
    stock_half_spread_bps: float = 2.0
    random_seed: int = 0
    experiment: str = "b3quant-backtests"

    def strategy_configs(self) -> list[StrategyConfig]:
        if not 1 <= self.hold_days <= MAX_HOLD_DAYS:
            raise ValueError(f"BacktestSettings.hold_days: expected 1..{MAX_HOLD_DAYS}, got {self.hold_days}")
        return [
            StrategyConfig(
                instrument=i, threshold=self.threshold, hold_days=self.hold_days,
                min_edge_over_cost=self.min_edge_over_cost, min_bdays=self.min_bdays,
                max_bdays=self.max_bdays, vega_per_trade=self.vega_per_trade,
                max_vega_underlying=self.max_vega_underlying, max_vega_total=self.max_vega_total,
                max_per_underlying=self.max_per_underlying, hedge=self.hedge, capital=self.capital,
            )
            for i in self.instruments
        ]

    def cost_model(self) -> CostModel:
        return CostModel(
            option_fee_bps=self.option_fee_bps, stock_fee_bps=self.stock_fee_bps, brokerage_bps=self.brokerage_bps,
            brokerage_per_order=self.brokerage_per_order, rel_half_spread=self.rel_half_spread,
            min_half_spread=self.min_half_spread, stock_half_spread_bps=self.stock_half_spread_bps,
        )  # fmt: skip
