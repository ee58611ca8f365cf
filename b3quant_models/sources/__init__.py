"""External data sources: B3 COTAHIST files and the CDI risk-free rate.

Plain library code (no Dagster/BentoML imports) so it can be tested against a loopback server and
wrapped by resources elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from b3quant_models._lazy import lazy_getattr

if TYPE_CHECKING:
    from .cotahist_download import (
        B3_BASE_URL,
        CotahistDownloadError,
        CotahistError,
        CotahistIntegrityError,
        CotahistNotInLandingError,
        CotahistNotPublishedError,
        CotahistSource,
        LandedFile,
        NotASessionError,
        check_cotahist_file,
        check_cotahist_integrity,
        find_landing_file,
        find_yearly_landing_file,
    )
    from .rates import (
        RATES_FILE_NAME,
        RATES_FILE_NAMES,
        SGS_BASE_URL,
        SGS_CDI_ANNUAL_252,
        SGS_CDI_DAILY,
        DailyRate,
        MissingRateError,
        RateError,
        RateSource,
        RateSourceError,
        cdi_to_continuous,
        continuous_to_cdi,
        di_discount_factor,
        fetch_cdi_sgs,
        rate_for_day,
        rates_for_days,
        read_landing_rates,
        read_rates_file,
        read_sgs_file,
        write_rates_file,
    )

# Names resolve on first access (PEP 562): ``sources.rates`` alone must not pull the COTAHIST downloader
# (b3quant, requests, the numba reader) into a process that only needs the rates.
_LAZY = {
    "B3_BASE_URL": "cotahist_download",
    "CotahistDownloadError": "cotahist_download",
    "CotahistError": "cotahist_download",
    "CotahistIntegrityError": "cotahist_download",
    "CotahistNotInLandingError": "cotahist_download",
    "CotahistNotPublishedError": "cotahist_download",
    "CotahistSource": "cotahist_download",
    "LandedFile": "cotahist_download",
    "NotASessionError": "cotahist_download",
    "check_cotahist_file": "cotahist_download",
    "check_cotahist_integrity": "cotahist_download",
    "find_landing_file": "cotahist_download",
    "find_yearly_landing_file": "cotahist_download",
    "RATES_FILE_NAME": "rates",
    "RATES_FILE_NAMES": "rates",
    "SGS_BASE_URL": "rates",
    "SGS_CDI_ANNUAL_252": "rates",
    "SGS_CDI_DAILY": "rates",
    "DailyRate": "rates",
    "MissingRateError": "rates",
    "RateError": "rates",
    "RateSource": "rates",
    "RateSourceError": "rates",
    "cdi_to_continuous": "rates",
    "continuous_to_cdi": "rates",
    "di_discount_factor": "rates",
    "fetch_cdi_sgs": "rates",
    "rate_for_day": "rates",
    "rates_for_days": "rates",
    "read_landing_rates": "rates",
    "read_rates_file": "rates",
    "read_sgs_file": "rates",
    "write_rates_file": "rates",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


__all__ = [
    "B3_BASE_URL",
    "RATES_FILE_NAME",
    "RATES_FILE_NAMES",
    "SGS_BASE_URL",
    "SGS_CDI_ANNUAL_252",
    "SGS_CDI_DAILY",
    "CotahistDownloadError",
    "CotahistError",
    "CotahistIntegrityError",
    "CotahistNotInLandingError",
    "CotahistNotPublishedError",
    "CotahistSource",
    "DailyRate",
    "LandedFile",
    "MissingRateError",
    "NotASessionError",
    "RateError",
    "RateSource",
    "RateSourceError",
    "cdi_to_continuous",
    "check_cotahist_file",
    "check_cotahist_integrity",
    "continuous_to_cdi",
    "di_discount_factor",
    "fetch_cdi_sgs",
    "find_landing_file",
    "find_yearly_landing_file",
    "rate_for_day",
    "rates_for_days",
    "read_landing_rates",
    "read_rates_file",
    "read_sgs_file",
    "write_rates_file",
]
