"""Risk-free rate source: the landing folder's rate files (offline default) or the Central Bank."""

from pathlib import Path
from typing import Literal

import dagster as dg
import pandas as pd

from b3quant_models.sources.rates import SGS_BASE_URL, SGS_CDI_ANNUAL_252, RateSource, landing_rates_files

from ..shared.resources import default_landing_dir, offline


class RatesSource(dg.ConfigurableResource):
    """CDI rates for trading days.

    ``mode="bcb"`` queries the Central Bank's SGS series (``series``, default 4389: CDI annualized,
    252-day basis) at ``base_url``; ``mode="file"`` reads the landing folder's ``cdi.csv`` (date,
    cdi_annual_pct; the sample market writes it) and/or ``cdi_sgs12.json`` / ``cdi_sgs4389.json`` (the
    SGS API's JSON for that series, saved as returned). ``"auto"`` (default) uses the files when the
    landing folder has one or ``B3Q_OFFLINE=1``, else the Central Bank.
    """

    mode: Literal["auto", "file", "bcb"] = "auto"
    landing_dir: str | None = None  # default: $B3Q_LANDING_DIR or $B3Q_DATA_DIR/landing, read at run time
    base_url: str = SGS_BASE_URL
    series: int = SGS_CDI_ANNUAL_252

    def landing(self) -> Path:
        return Path(self.landing_dir or default_landing_dir())

    def use_file(self) -> bool:
        if self.mode != "auto":
            return self.mode == "file"
        return offline() or bool(landing_rates_files(self.landing()))

    def rates(self, start, end) -> pd.DataFrame:
        src = RateSource(self.landing(), offline=self.use_file(), base_url=self.base_url, series=self.series)
        return src.rates(start, end)
