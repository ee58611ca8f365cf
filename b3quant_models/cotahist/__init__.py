"""B3 COTAHIST historical-quote files: layout, fast reader, writer."""

from .layout import QUOTE_COLUMNS, RECORD_LENGTH
from .reader import (
    CotahistError,
    CotahistRead,
    iter_cotahist,
    read_cotahist,
    read_cotahist_bytes,
    read_cotahist_with_quarantine,
)
from .writer import daily_file_name, format_cotahist, format_quote_record, write_cotahist

__all__ = [
    "QUOTE_COLUMNS",
    "RECORD_LENGTH",
    "CotahistError",
    "CotahistRead",
    "daily_file_name",
    "format_cotahist",
    "format_quote_record",
    "iter_cotahist",
    "read_cotahist",
    "read_cotahist_bytes",
    "read_cotahist_with_quarantine",
    "write_cotahist",
]
