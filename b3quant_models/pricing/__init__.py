"""Black-Scholes-Merton pricing, Greeks and implied volatility for B3 options (numpy/numba only).

Public API (downstream code depends on these names)::

    from b3quant_models.pricing import (
        bs_price, greeks, implied_vol, implied_vol_with_reason, IVReason, forward, log_moneyness,
    )

Conventions are in ``docs/pricing.md``: European exercise, ``t`` in years, continuous ``r``/``q``.
"""

from .black import bs_price, forward, greeks, log_moneyness
from .implied import IVReason, implied_vol, implied_vol_with_reason

__all__ = [
    "IVReason",
    "bs_price",
    "forward",
    "greeks",
    "implied_vol",
    "implied_vol_with_reason",
    "log_moneyness",
]
