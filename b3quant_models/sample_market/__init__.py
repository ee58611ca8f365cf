"""Deterministic sample B3 options market: genuine COTAHIST daily files plus known ground truth.

The platform's embedded default dataset: the demo and all model evaluation run on it. See
docs/sample_market.md for the dynamics, the files and the optimal-forecast floor.
"""

from .config import (
    DEFAULT_UNDERLYINGS,
    UNDERLYING_REGISTRY,
    WEEKLY_SERIES_FROM,
    SampleMarketConfig,
    UnderlyingSpec,
)
from .generate import (
    CDI_FILE,
    GENERATOR_VERSION,
    MANIFEST_NAME,
    TRUTH_FILES,
    SampleMarketManifest,
    Session,
    SimulatedMarket,
    generate_sample_market,
    is_generated,
    iter_sessions,
    simulate_market,
)
from .universe import REAL_SCALE_UNDERLYINGS, real_scale_config, real_scale_underlyings

__all__ = [
    "CDI_FILE",
    "DEFAULT_UNDERLYINGS",
    "GENERATOR_VERSION",
    "MANIFEST_NAME",
    "REAL_SCALE_UNDERLYINGS",
    "TRUTH_FILES",
    "UNDERLYING_REGISTRY",
    "WEEKLY_SERIES_FROM",
    "SampleMarketConfig",
    "SampleMarketManifest",
    "Session",
    "SimulatedMarket",
    "UnderlyingSpec",
    "generate_sample_market",
    "is_generated",
    "iter_sessions",
    "real_scale_config",
    "real_scale_underlyings",
    "simulate_market",
]
