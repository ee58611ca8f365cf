"""Where COTAHIST files come from: a local landing folder (offline, the default) or B3's site."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import dagster as dg

from b3quant_models.cotahist.writer import daily_file_name

from ..shared.resources import default_landing_dir


def find_landing_file(landing_dir: Path, day: dt.date) -> Path | None:
    """The day's file in the landing folder, as .TXT or .ZIP, any letter case."""
    stem = daily_file_name(day).rsplit(".", 1)[0].upper()
    if not landing_dir.exists():
        return None
    for p in sorted(landing_dir.iterdir()):
        if p.is_file() and p.stem.upper() == stem and p.suffix.upper() in (".TXT", ".ZIP"):
            return p
    return None


class CotahistSource(dg.ConfigurableResource):
    """Daily COTAHIST files for trading-day partitions.

    ``mode="landing"`` reads files already in ``landing_dir`` (no network; what the demo and tests
    use). ``mode="b3"`` downloads missing days from ``base_url`` with b3quant's downloader
    (retries, integrity check, atomic move into the landing folder).
    """

    mode: Literal["landing", "b3"] = "landing"
    landing_dir: str = default_landing_dir()
    base_url: str | None = None
    max_retries: int = 3

    def daily_file(self, day: dt.date) -> Path:
        landing = Path(self.landing_dir)
        found = find_landing_file(landing, day)
        if found is not None:
            return found
        if self.mode == "landing":
            raise FileNotFoundError(
                f"no COTAHIST file for {day} in the landing folder {landing} (expected "
                f"{daily_file_name(day)} or .ZIP). Generate the sample market with `b3q sample-market`, "
                "copy B3 files there, or set mode='b3' to download."
            )
        from b3quant_models.sources.cotahist_download import download_daily

        return download_daily(day, landing, base_url=self.base_url, max_retries=self.max_retries)
