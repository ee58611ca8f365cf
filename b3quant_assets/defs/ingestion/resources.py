"""Where COTAHIST files come from: a local landing folder (offline, the default) or B3's site."""

import datetime as dt
from pathlib import Path
from typing import Literal

import dagster as dg

from b3quant_models.sources.cotahist_download import (
    B3_BASE_URL,
    CotahistNotInLandingError,
    CotahistSource,
    LandedFile,
)

from ..shared.resources import default_landing_dir


class CotahistFiles(dg.ConfigurableResource):
    """Daily COTAHIST files for trading-day partitions.

    ``mode="landing"`` only reads files already in ``landing_dir`` (no network: the demo, tests
    and air-gapped runs). ``mode="b3"`` downloads missing days from ``base_url`` with b3quant's
    downloader (retries, integrity check, atomic move into the landing folder).
    Set from the environment with ``B3Q_LANDING_DIR``; the mode in run config or code.
    """

    mode: Literal["landing", "b3"] = "landing"
    landing_dir: str = default_landing_dir()
    base_url: str = B3_BASE_URL
    max_retries: int = 3

    def source(self) -> CotahistSource:
        return CotahistSource(
            self.landing_dir, base_url=self.base_url, offline=self.mode == "landing", max_retries=self.max_retries
        )

    def daily_file(self, day: dt.date) -> LandedFile:
        try:
            return self.source().get_daily(day)
        except CotahistNotInLandingError as exc:
            raise CotahistNotInLandingError(
                f"{exc}. Generate the sample market with `uv run b3q sample-market`, copy B3 files into "
                f"the landing folder {Path(self.landing_dir)}, or configure cotahist_files mode='b3'."
            ) from exc
