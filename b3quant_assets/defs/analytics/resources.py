"""Risk-free rate source: the landing folder's ``cdi.csv`` (offline default) or the Central Bank."""

from typing import Literal

import dagster as dg
import pandas as pd

from b3quant_models.sources.rates import SGS_BASE_URL, SGS_CDI_ANNUAL_252, RateSource

from ..shared.resources import default_landing_dir


class RatesSource(dg.ConfigurableResource):
    """CDI rates for trading days.

    ``mode="file"`` reads ``cdi.csv`` (date, cdi_annual_pct) from the landing folder — the sample
    market writes it; ``mode="bcb"`` queries the Central Bank's SGS series (``series``, default
    4389: CDI annualized, 252-day basis) at ``base_url``.
    """

    mode: Literal["file", "bcb"] = "file"
    landing_dir: str = default_landing_dir()
    base_url: str = SGS_BASE_URL
    series: int = SGS_CDI_ANNUAL_252

    def rates(self, start, end) -> pd.DataFrame:
        src = RateSource(
            self.landing_dir, offline=self.mode == "file", base_url=self.base_url, series=self.series
        )
        return src.rates(start, end)
