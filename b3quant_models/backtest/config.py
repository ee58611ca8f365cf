"""Backtest settings: B3 costs and the strategy's trading rules, with documented defaults.

Defaults are meant to be roughly what a professional account pays on B3 stock options in 2025
(see docs/backtests.md for the sources and why each is a parameter, not a constant).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

MIN_TICK = 0.01


@dataclass(frozen=True)
class CostModel:
    """What a trade costs beyond the mid: the book's half-spread, B3's fees and the broker's.

    - ``option_fee_bps``: B3 *emolumentos + taxa de registro* on the premium traded (stock options,
      non day trade; a few bps of premium, regressive in volume).
    - ``stock_fee_bps``: B3 *negociação + liquidação* on the hedge's notional (0.005% + 0.025%); also
      charged on the strike notional of an exercise (B3 bills an exercise as a cash-market trade).
    - ``brokerage_bps`` (of traded notional) and ``brokerage_per_order`` (R$ per order, one order per
      series and day): most Brazilian brokers charge no percentage; set your own.
    - Spread model where the book is empty on the side needed: half-spread =
      max(``min_half_spread``, ``rel_half_spread`` x mark).
    - ``stock_half_spread_bps``: the hedge crosses half the cash-market spread.
    - ``multiplier`` scales every cost (the break-even analysis varies it; decisions never see it).
    """

    option_fee_bps: float = 6.5
    stock_fee_bps: float = 3.0
    brokerage_bps: float = 0.0
    brokerage_per_order: float = 0.0
    min_half_spread: float = MIN_TICK
    rel_half_spread: float = 0.05
    stock_half_spread_bps: float = 2.0
    multiplier: float = 1.0

    def scaled(self, k: float) -> CostModel:
        return replace(self, multiplier=k)


@dataclass(frozen=True)
class StrategyConfig:
    """How a day's forecasts become positions.

    ``instrument``: ``"straddle"`` (per underlying and day, the ATM-forward call + put of the nearest
    expiry with at least ``min_bdays`` left) or ``"option"`` (each series whose edge clears the
    threshold, the ``max_per_underlying`` largest edges per underlying). Edge = forecast - today's IV;
    long vol when positive. Size: ``vega_per_trade`` R$ per vol point per position, then scaled down
    to ``max_vega_underlying`` and ``max_vega_total`` (gross vega, R$ per vol point). Positions live
    ``hold_days`` sessions (or until expiry; overlapping cohorts are netted, so an unchanged signal
    costs nothing to keep). Delta is hedged at every close with the underlying. A view is traded
    only when its expected value, |edge| x vega, is at least ``min_edge_over_cost`` times what a round trip
    in it costs at D's book: a half-point edge on a series quoted 10% wide is cost, not signal.
    """

    instrument: Literal["straddle", "option"] = "straddle"
    threshold: float = 0.005  # edge in vol (0.005 = half a vol point)
    min_bdays: int = 5
    max_bdays: int = 63
    max_abs_k: float = 0.3
    vega_per_trade: float = 1_000.0
    max_vega_underlying: float = 2_000.0
    max_vega_total: float = 6_000.0
    max_per_underlying: int = 4
    min_vega_pt: float = 0.005  # R$ per vol point per unit: a vol view cannot live in an option that moves
    # less than half a tick per vol point (deep ITM/OTM, days from expiry), and vega sizing would explode
    max_qty: float = 1_000_000.0  # units per leg
    hold_days: int = 1
    min_edge_over_cost: float = 1.0  # trade only when |edge| x vega pays this multiple of the round trip
    # (D's quoted spread, or the spread model's, plus fees on both trades); 0 turns the gate off
    hedge: bool = True
    option_lot: int = 100
    stock_lot: int = 100
    exercise_threshold: float = MIN_TICK  # B3 exercises automatically when at least R$ 0.01 in the money
    capital: float = 1_000_000.0  # only for returns, drawdown % and turnover; P&L is in R$
