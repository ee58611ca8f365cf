"""Where COTAHIST files come from: the local landing folder first, then (unless offline) B3."""

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import dagster as dg

from ..shared.resources import default_landing_dir, offline

if TYPE_CHECKING:  # the downloader pulls b3quant and the numba reader: imported when a file is needed
    from b3quant_models.sources.cotahist_download import CotahistSource, LandedFile


class CotahistFiles(dg.ConfigurableResource):
    """Daily COTAHIST files for trading-day partitions.

    The landing folder (``B3Q_LANDING_DIR``) is always looked at first. ``mode="b3"`` downloads
    missing days from ``base_url`` with b3quant's downloader (retries, integrity check, atomic move
    into the landing folder); ``mode="landing"`` never does (air-gapped runs, tests); ``"auto"``
    (default) downloads unless ``B3Q_OFFLINE=1``.
    """

    mode: Literal["auto", "landing", "b3"] = "auto"
    landing_dir: str | None = None  # default: $B3Q_LANDING_DIR or $B3Q_DATA_DIR/landing, read at run time
    base_url: str | None = None  # default: B3's historical-quotes site (b3quant's B3_BASE_URL)
    max_retries: int = 3

    def landing(self) -> Path:
        return Path(self.landing_dir or default_landing_dir())

    def source(self) -> "CotahistSource":
        from b3quant_models.sources.cotahist_download import B3_BASE_URL, CotahistSource

        return CotahistSource(
            self.landing(),
            base_url=self.base_url or B3_BASE_URL,
            offline=self.mode == "landing" or (self.mode == "auto" and offline()),
            max_retries=self.max_retries,
        )

    def daily_file(self, day: dt.date) -> "LandedFile":
        from b3quant_models.sources.cotahist_download import CotahistNotInLandingError

        try:
            return self.source().get_daily(day)
        except CotahistNotInLandingError as exc:
            raise CotahistNotInLandingError(
                f"{exc}. Generate the sample market with `uv run b3q sample-market`, copy B3 files into "
                f"the landing folder {self.landing()}, or unset B3Q_OFFLINE to download from B3."
            ) from exc
