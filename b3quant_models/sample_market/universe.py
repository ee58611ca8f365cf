"""A real-scale sample market: about 170 optionable underlyings, weeklies on the liquid ones.

The default market (six stocks) is small so that the demo and the tests run in seconds. Performance
is judged at B3's real size, so this builds a market with the full market's shape, calibrated on
the 2026 COTAHIST files in ``shared/data/b3-real`` (Jan–Feb 2026: 168–174 underlyings with traded
options, 11.8–14.5 thousand option records a day, the ten busiest names about 34 % of the records
and the thirty busiest about 60 %, a median name 38 records, about 50 names with weekly series and
10–18 % of the records weekly). The six registry stocks head the list; the other names are
synthetic (made-up four-letter roots, ISINs with a valid check digit, "SINT" company names), drawn
from a fixed generator so that the universe never depends on the market's seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .config import UNDERLYING_REGISTRY, SampleMarketConfig, UnderlyingSpec

REAL_SCALE_UNDERLYINGS = 170
UNIVERSE_SEED = 20260225  # fixed: names and parameters do not move with the market's seed
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# (spot below, strike step): B3-like strike grids, 2-5 % of the spot; steps of R$0.10 multiples
# above R$20 keep the strike codes (strike x 10) short enough for the 12-character ticker field.
LIQUIDITY_TOP = 3.0
STRIKE_STEPS = ((4.0, 0.10), (10.0, 0.25), (20.0, 0.50), (60.0, 1.0), (np.inf, 2.0))


def isin_check_digit(body: str) -> int:
    """ISIN check digit (ISO 6166): letters to numbers (A=10 … Z=35), then the Luhn rule."""
    digits = "".join(str(int(c, 36)) for c in body)
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d // 10 + d % 10
    return (10 - total % 10) % 10


def _strike_step(spot: float) -> float:
    return next(step for below, step in STRIKE_STEPS if spot < below)


def _listing(rank: int) -> dict[str, int]:
    """Listing width by liquidity rank: the busiest names list many expiries, strikes and weeklies,
    the tail a few monthly expiries of a few strikes (B3's median name trades about 9 strikes on 5
    expiries a day, its busiest 700-800 series)."""
    if rank < 10:
        return {"monthly_expiries": 8, "strikes_per_expiry": 41, "weekly_expiries": 4, "weekly_strikes_per_expiry": 21}
    if rank < 30:
        return {"monthly_expiries": 6, "strikes_per_expiry": 27, "weekly_expiries": 3, "weekly_strikes_per_expiry": 13}
    if rank < 50:
        return {"monthly_expiries": 5, "strikes_per_expiry": 19, "weekly_expiries": 2, "weekly_strikes_per_expiry": 9}
    if rank < 100:
        return {"monthly_expiries": 4, "strikes_per_expiry": 13, "weekly_expiries": 0}
    return {"monthly_expiries": 3, "strikes_per_expiry": 9, "weekly_expiries": 0}


def _liquidity(rank: int) -> float:
    """Scales the chance a listed series trades (above 1: near-the-money series trade almost every
    day): steep at the top, a long thin tail (a quarter of B3's names trade ten series or fewer)."""
    return float(np.clip(LIQUIDITY_TOP * (1 + rank / 12) ** -0.75, 0.15, LIQUIDITY_TOP))


def real_scale_underlyings(n: int = REAL_SCALE_UNDERLYINGS) -> tuple[UnderlyingSpec, ...]:
    """``n`` underlyings in liquidity order: the six registry stocks, then synthetic ones."""
    if n < 1:
        raise ValueError("need at least one underlying")
    g = np.random.default_rng(UNIVERSE_SEED)
    taken = {s.root for s in UNDERLYING_REGISTRY.values()}
    out: list[UnderlyingSpec] = []
    for rank in range(n):
        over = {**_listing(rank), "liquidity": _liquidity(rank)}
        if rank < len(UNDERLYING_REGISTRY):
            out.append(dataclasses.replace(list(UNDERLYING_REGISTRY.values())[rank], **over))
            continue
        root = "".join(g.choice(list(LETTERS), 4))
        while root in taken:
            root = "".join(g.choice(list(LETTERS), 4))
        taken.add(root)
        pn = bool(g.random() < 0.35)
        body = f"BR{root}ACN{'PR' if pn else 'OR'}"
        spot = float(np.round(np.exp(g.uniform(np.log(3.0), np.log(90.0))), 2))
        vol = float(g.uniform(0.22, 0.55))
        out.append(
            UnderlyingSpec(
                ticker=f"{root}{'4' if pn else '3'}",
                isin=f"{body}{isin_check_digit(body)}",
                company=f"SINT {root}",
                specification="PN      N1" if pn else "ON      NM",
                spot0=spot,
                strike_step=_strike_step(spot),
                vol_long=vol,
                vol0=float(vol * g.uniform(0.85, 1.15)),
                kappa=float(g.uniform(2.5, 6.0)),
                vol_of_var=float(g.uniform(0.4, 0.9)),
                rho_sv=float(g.uniform(-0.75, -0.35)),
                jump_intensity=float(g.uniform(0.5, 2.5)),
                rho_skew=float(g.uniform(-0.6, -0.25)),
                avg_daily_shares=float(np.round(3e7 * (1 + rank / 8) ** -0.9, -3)),
                distribution=int(g.integers(100, 400)),
                **over,
            )
        )
    return tuple(out)


def real_scale_config(n_days: int = 250, n_underlyings: int = REAL_SCALE_UNDERLYINGS, **kwargs) -> SampleMarketConfig:
    """A B3 year at real size (about 13 thousand option records a session, 3 million a year):
    the benchmark market of docs/benchmarks.md. ``kwargs`` go to ``SampleMarketConfig`` (seed, start)."""
    return SampleMarketConfig(n_days=n_days, underlyings=real_scale_underlyings(n_underlyings), **kwargs)
