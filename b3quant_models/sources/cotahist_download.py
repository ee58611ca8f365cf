"""Fetch B3 COTAHIST files into a landing folder, or find them there when offline.

Downloads go through b3quant's ``COTAHISTDownloader`` (retries with jittered exponential backoff,
CAPTCHA-page detection) so we do not maintain a second HTTP client for B3. What we add on top:

* a configurable base URL (tests point it at 127.0.0.1) and no metadata cache, because b3quant's
  cache writes to ``./data/cache`` relative to whatever the CWD happens to be;
* a 404 is final (B3 has no file for holidays/weekends) instead of being retried like a timeout;
* the download lands in a temporary folder, is checked (valid ZIP, one TXT inside, header and
  trailer count) and only then renamed into the landing folder, so a truncated or corrupted file
  never becomes visible to the pipeline;
* the landing folder doubles as the cache: a file already there is returned without any request.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
import requests
from b3quant import config as b3quant_config
from b3quant.downloaders.cotahist import COTAHISTDownloader

from b3quant_models.calendar import is_session
from b3quant_models.cotahist.reader import CotahistError as ReaderCotahistError
from b3quant_models.cotahist.reader import (
    CotahistRead,
    iter_cotahist,
    read_cotahist_bytes,
    read_cotahist_with_quarantine,
)
from b3quant_models.cotahist.writer import daily_file_name

logger = logging.getLogger(__name__)

B3_BASE_URL: str = b3quant_config.B3_BASE_URL
LANDING_SUFFIXES = (".TXT", ".ZIP")  # preference order when both are present
# B3 also delivers ZIPs named ``COTAHIST_DddmmYYYY.TXT.zip`` (the member's name + .zip): a ZIP too.
TMP_PREFIX = ".cotahist-tmp-"  # hidden work folder inside the landing dir (same filesystem → atomic rename)

LandAs = Literal["zip", "txt"]


class CotahistError(ReaderCotahistError):
    """Base class: anything that stops us from providing a COTAHIST file (a reader error too)."""


class CotahistNotPublishedError(CotahistError):
    """B3 answered 404: no file for that day/year (holiday, weekend, or not yet published)."""

    def __init__(self, message: str, url: str):
        super().__init__(message)
        self.url = url


class CotahistIntegrityError(CotahistError):
    """The file is not a complete COTAHIST file (bad ZIP, missing header/trailer, wrong count)."""

    def __init__(self, message: str, name: str, expected: int | None = None, found: int | None = None):
        super().__init__(message)
        self.name = name
        self.expected = expected
        self.found = found


class CotahistDownloadError(CotahistError):
    """The transfer itself failed after all retries (connection, timeout, 5xx, HTML page)."""


class NotASessionError(CotahistError, ValueError):
    """Refused to request a day that is not a B3 session (it can only 404)."""


class CotahistNotInLandingError(CotahistError, FileNotFoundError):
    """Offline mode and the landing folder lacks the file."""


# --------------------------------------------------------------------------------------------------
# Integrity check: the reader's own header/trailer validation, so the two can never disagree


def _integrity_error(exc: ReaderCotahistError, name: str) -> CotahistIntegrityError:
    return CotahistIntegrityError(str(exc), name, expected=exc.expected, found=exc.found)


def check_cotahist_integrity(text_bytes: bytes, name: str) -> int:
    """Check a COTAHIST TXT held in memory; returns the record count (header and trailer included).

    Raises :class:`CotahistIntegrityError` naming ``name``, the expected and the found count.
    """
    try:
        return read_cotahist_bytes(text_bytes, name).records_read
    except ReaderCotahistError as exc:
        raise _integrity_error(exc, name) from exc


def check_cotahist_file(path: str | Path, name: str | None = None) -> int:
    """Check a COTAHIST ``.TXT`` or ``.ZIP`` on disk by streaming it (yearly TXTs are ~GB)."""
    path = Path(path)
    name = name or path.name
    try:
        with zipfile.ZipFile(path) if path.suffix.upper() == ".ZIP" else contextlib.nullcontext() as z:
            if z is not None:
                _zip_txt_member(z, name)
        return sum(len(q) + len(qq) for q, qq in iter_cotahist(path)) + 2
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise CotahistIntegrityError(f"{name}: not a valid ZIP (truncated or corrupted): {e}", name) from e
    except ReaderCotahistError as exc:
        raise _integrity_error(exc, name) from exc


def _read_checked(path: Path, name: str) -> CotahistRead:
    """``read_cotahist_with_quarantine`` with ``check_cotahist_file``'s errors (a daily file fits in memory)."""
    try:
        with zipfile.ZipFile(path) if path.suffix.upper() == ".ZIP" else contextlib.nullcontext() as z:
            if z is not None:
                _zip_txt_member(z, name)
        return read_cotahist_with_quarantine(path)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise CotahistIntegrityError(f"{name}: not a valid ZIP (truncated or corrupted): {e}", name) from e
    except ReaderCotahistError as exc:
        raise _integrity_error(exc, name) from exc


def _zip_txt_member(z: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    txts = [i for i in z.infolist() if not i.is_dir() and i.filename.upper().endswith(".TXT")]
    if len(txts) != 1:
        found = [i.filename for i in z.infolist()]
        raise CotahistIntegrityError(f"{name}: expected exactly one .TXT inside the ZIP, found {found}", name)
    return txts[0]


# --------------------------------------------------------------------------------------------------
# Landing folder


def daily_stem(day: dt.date) -> str:
    """``COTAHIST_DddmmYYYY``: B3's daily name without extension."""
    return Path(daily_file_name(day)).stem


def yearly_stem(year: int) -> str:
    """``COTAHIST_AYYYY``: B3's yearly name without extension."""
    return f"COTAHIST_A{year:04d}"


def _find_stem(landing_dir: str | Path, stem: str) -> Path | None:
    landing = Path(landing_dir)
    if not landing.is_dir():
        return None
    found: dict[str, Path] = {}
    for p in sorted(landing.iterdir()):
        suffix, name_stem = p.suffix.upper(), p.stem.upper()
        if suffix == ".ZIP" and name_stem.endswith(".TXT"):
            name_stem = name_stem[: -len(".TXT")]
        if p.is_file() and suffix in LANDING_SUFFIXES and name_stem == stem.upper():
            found.setdefault(suffix, p)
    return next((found[s] for s in LANDING_SUFFIXES if s in found), None)


def find_landing_file(landing_dir: str | Path, day: dt.date | str) -> Path | None:
    """The daily file for ``day`` in ``landing_dir`` (``.TXT`` preferred over ``.ZIP``, any case), or None."""
    return _find_stem(landing_dir, daily_stem(_as_date(day)))


def find_yearly_landing_file(landing_dir: str | Path, year: int) -> Path | None:
    """The yearly file ``COTAHIST_AYYYY.TXT/.ZIP`` in ``landing_dir`` (any case), or None."""
    return _find_stem(landing_dir, yearly_stem(year))


def _as_date(day: dt.date | str | pd.Timestamp) -> dt.date:
    return pd.Timestamp(day).date()


# --------------------------------------------------------------------------------------------------
# Download through b3quant


class _NotFound(Exception):
    """404 raised from inside b3quant's retry loop; not a RequestException, so it is not retried."""

    def __init__(self, url: str):
        super().__init__(url)
        self.url = url


class _Downloader(COTAHISTDownloader):
    """b3quant's downloader with our base URL, no metadata cache, a final 404, and the raw ZIP kept."""

    def __init__(self, work_dir: Path, base_url: str, show_progress: bool):
        super().__init__(cache_dir=str(work_dir), use_metadata_cache=False, show_progress=show_progress)
        self.BASE_URL = base_url.rstrip("/")
        self.payload: bytes | None = None

    def _fetch_with_progress(self, url: str, zip_filename: str) -> bytearray:
        try:
            content = super()._fetch_with_progress(url, zip_filename)
        except requests.HTTPError as e:
            if e.response is not None and e.response.status_code == 404:
                raise _NotFound(url) from e
            raise
        self.payload = bytes(content)
        return content


@dataclass(frozen=True)
class LandedFile:
    """Where a COTAHIST file is and how it got there (handy as Dagster metadata)."""

    path: Path
    downloaded: bool  # False: it was already in the landing folder
    url: str | None = None
    records: int | None = None  # header + quotes + trailer, when checked here
    # A downloaded daily file as read by its integrity check (the landed file, same name): ingestion uses
    # it instead of parsing the file a second time. None for files found in the landing folder and yearly
    # files (a yearly file is checked streaming, in bounded memory, and read by the consumer).
    read: CotahistRead | None = field(default=None, repr=False, compare=False)


class CotahistSource:
    """Daily/yearly COTAHIST files: landing folder first, B3 (through b3quant) second.

    ``landing_dir`` is both the destination and the cache. ``offline=True`` never touches the
    network. ``max_retries`` is b3quant's attempt count (1 = a single try, no backoff sleep); the
    backoff itself follows ``b3quant.config`` (1 s base, doubling, jitter, 60 s cap; 30 s timeout).
    ``land_as="zip"`` keeps B3's ZIP byte for byte; ``"txt"`` keeps the extracted TXT.
    """

    def __init__(
        self,
        landing_dir: str | Path,
        *,
        base_url: str = B3_BASE_URL,
        offline: bool = False,
        max_retries: int = 3,
        show_progress: bool = False,
        land_as: LandAs = "zip",
    ):
        if max_retries < 1:
            raise ValueError(f"max_retries must be >= 1, got {max_retries}")
        if land_as not in ("zip", "txt"):
            raise ValueError(f"land_as must be 'zip' or 'txt', got {land_as!r}")
        self.landing_dir = Path(landing_dir)
        self.base_url = base_url.rstrip("/")
        self.offline = offline
        self.max_retries = max_retries
        self.show_progress = show_progress
        self.land_as: LandAs = land_as

    # -- public API -------------------------------------------------------------------------------

    def daily_url(self, day: dt.date | str) -> str:
        return f"{self.base_url}/{daily_stem(_as_date(day))}.ZIP"

    def yearly_url(self, year: int) -> str:
        return f"{self.base_url}/{yearly_stem(year)}.ZIP"

    def get_daily(
        self, day: dt.date | str, *, force_download: bool = False, allow_non_session: bool = False
    ) -> LandedFile:
        """The daily file for ``day``: from the landing folder if present, else downloaded."""
        day = _as_date(day)
        if not force_download:
            found = find_landing_file(self.landing_dir, day)
            if found is not None:
                logger.debug("COTAHIST for %s found in landing: %s", day, found)
                return LandedFile(found, downloaded=False)
        if self.offline:
            raise CotahistNotInLandingError(
                f"offline mode: no COTAHIST file for {day} in {self.landing_dir} "
                f"(looked for {daily_stem(day)}.TXT/.ZIP, any case)"
            )
        return self.download_daily(day, allow_non_session=allow_non_session)

    def get_yearly(self, year: int, *, force_download: bool = False) -> LandedFile:
        """The yearly file; the current year's grows daily, so pass ``force_download`` to refresh it."""
        if not force_download:
            found = find_yearly_landing_file(self.landing_dir, year)
            if found is not None:
                return LandedFile(found, downloaded=False)
        if self.offline:
            raise CotahistNotInLandingError(
                f"offline mode: no COTAHIST file for year {year} in {self.landing_dir} "
                f"(looked for {yearly_stem(year)}.TXT/.ZIP, any case)"
            )
        return self.download_yearly(year)

    def download_daily(self, day: dt.date | str, *, allow_non_session: bool = False) -> LandedFile:
        """Always fetch ``day`` from B3 and (atomically) replace what the landing folder holds."""
        day = _as_date(day)
        if self.offline:
            raise CotahistError(f"offline mode: refusing to download COTAHIST for {day}")
        if not allow_non_session and not is_session(day):
            raise NotASessionError(
                f"{day} is not a B3 session (weekend, holiday or outside the calendar), so B3 publishes "
                "no COTAHIST file for it; pass allow_non_session=True to request it anyway"
            )
        return self._download(
            daily_stem(day),
            f"{day.isoformat()}",
            lambda d: d.download_daily(
                dt.datetime.combine(day, dt.time()), force=True, max_retries=self.max_retries
            ),
            keep_read=True,
        )

    def download_yearly(self, year: int) -> LandedFile:
        """Always fetch the yearly file from B3 and (atomically) replace the landed one."""
        if self.offline:
            raise CotahistError(f"offline mode: refusing to download COTAHIST for year {year}")
        return self._download(
            yearly_stem(year),
            f"year {year}",
            lambda d: d.download_yearly(year, force=True, max_retries=self.max_retries),
        )

    # -- internals --------------------------------------------------------------------------------

    def _download(
        self, stem: str, what: str, fetch: Callable[[_Downloader], Path], *, keep_read: bool = False
    ) -> LandedFile:
        url = f"{self.base_url}/{stem}.ZIP"
        self.landing_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=TMP_PREFIX, dir=self.landing_dir) as tmp:
            work = Path(tmp)
            downloader = _Downloader(work / "extract", self.base_url, self.show_progress)
            txt = self._fetch(downloader, fetch, url, stem, what)
            if self.land_as == "zip":
                assert downloader.payload is not None  # set by every successful fetch
                src = work / f"{stem}.ZIP"
                src.write_bytes(downloader.payload)
            else:
                src = txt
            read = None
            if keep_read:  # the file as it will be landed (same name), parsed once for check and consumer
                read = _read_checked(src, name=f"{stem}.ZIP from {url}")
                records = len(read.quotes) + len(read.quarantine) + 2
            else:
                records = check_cotahist_file(txt, name=f"{stem}.ZIP from {url}")
            target = self.landing_dir / src.name
            os.replace(src, target)
        self._drop_other_variants(stem, keep=target)
        logger.info("COTAHIST for %s downloaded from %s into %s (%d records)", what, url, target, records)
        return LandedFile(target, downloaded=True, url=url, records=records, read=read)

    def _fetch(
        self, downloader: _Downloader, fetch: Callable[[_Downloader], Path], url: str, stem: str, what: str
    ) -> Path:
        try:
            return fetch(downloader)
        except _NotFound as e:
            raise CotahistNotPublishedError(
                f"B3 has no COTAHIST file for {what} (holiday, weekend, or not yet published): {e.url}", e.url
            ) from e
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise CotahistIntegrityError(
                f"{stem}.ZIP from {url} is not a valid ZIP (truncated or corrupted download): {e}",
                f"{stem}.ZIP",
            ) from e
        except FileNotFoundError as e:  # b3quant: the ZIP lacked the expected TXT member
            raise CotahistIntegrityError(
                f"{stem}.ZIP from {url} does not contain {stem}.TXT: {e}", f"{stem}.ZIP"
            ) from e
        except requests.RequestException as e:
            raise CotahistDownloadError(
                f"downloading {url} failed after {self.max_retries} attempt(s): {e}"
            ) from e
        except ValueError as e:  # b3quant: HTML page (CAPTCHA / error page) instead of a ZIP
            if "HTML" not in str(e):
                raise
            raise CotahistDownloadError(
                f"B3 answered {url} with an HTML page instead of a ZIP (CAPTCHA or error page)"
            ) from e

    def _drop_other_variants(self, stem: str, keep: Path) -> None:
        """After a refresh, remove the stale other-format copy so lookups cannot return old data."""
        for p in self.landing_dir.iterdir():
            same_name = p.stem.upper() == stem.upper() and p.suffix.upper() in LANDING_SUFFIXES
            if same_name and p.is_file() and not p.samefile(keep):
                logger.info("removing stale landing copy %s (replaced by %s)", p, keep.name)
                p.unlink()


__all__ = [
    "B3_BASE_URL",
    "CotahistDownloadError",
    "CotahistError",
    "CotahistIntegrityError",
    "CotahistNotInLandingError",
    "CotahistNotPublishedError",
    "CotahistSource",
    "LandedFile",
    "NotASessionError",
    "check_cotahist_file",
    "check_cotahist_integrity",
    "daily_stem",
    "find_landing_file",
    "find_yearly_landing_file",
    "yearly_stem",
]
