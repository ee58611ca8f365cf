"""Write COTAHIST files: the exact inverse of the reader (used by the sample market and tests)."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from .layout import ENCODING, NO_EXPIRY, QUOTE_FIELDS, RECORD_LENGTH, Field


def _fmt_date(v) -> str:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return str(NO_EXPIRY)
    return pd.Timestamp(v).strftime("%Y%m%d")


def _fmt_value(field: Field, value, quote_factor: int) -> str:
    w = field.width
    if field.kind == "date":
        return _fmt_date(value)
    if field.kind in ("str",):
        s = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
        if len(s) > w:
            raise ValueError(f"{field.b3_name}: {s!r} is longer than {w} characters")
        return s.ljust(w)
    if field.kind == "code":
        return str(value).zfill(w)
    if field.kind == "int":
        n = int(value)
    elif field.kind == "price":
        # Per-unit price back to the field: value * 100 * FATCOT.
        n = round(float(value) * 100 * quote_factor)
    else:  # money / points: fixed decimals, no quote factor
        n = round(float(value) * 10**field.decimals)
    if n < 0:
        raise ValueError(f"{field.b3_name}: negative value {value!r} cannot be written")
    s = str(n).zfill(w)
    if len(s) > w:
        raise ValueError(f"{field.b3_name}: {value!r} does not fit in {w} digits")
    return s


def format_quote_record(row: Mapping) -> str:
    """One 245-character quote (01) record from a mapping with the reader's column names."""
    qf = int(row.get("quote_factor", 1) or 1)
    parts = ["01"]
    pos = 2
    for f in QUOTE_FIELDS:
        if f.start > pos:  # never happens with the official layout; keeps positions honest
            parts.append(" " * (f.start - pos))
        parts.append(_fmt_value(f, row.get(f.name), qf))
        pos = f.end
    rec = "".join(parts)
    assert len(rec) == RECORD_LENGTH, len(rec)
    return rec


def _header_or_trailer(kind: str, generated: dt.date, count: int | None = None) -> str:
    head = f"{kind}COTAHIST.{generated.year:04d}BOVESPA {generated:%Y%m%d}"
    if count is not None:
        head += f"{count:011d}"
    return head.ljust(RECORD_LENGTH)


def format_cotahist(records: Iterable[str], generated: dt.date) -> str:
    """Wrap quote records in a header and a trailer whose count includes both."""
    body = list(records)
    lines = [_header_or_trailer("00", generated), *body, _header_or_trailer("99", generated, len(body) + 2)]
    return "\r\n".join(lines) + "\r\n"


def quotes_to_records(quotes: pd.DataFrame) -> list[str]:
    """Format every row of a quotes DataFrame (reader's columns) as a 01 record."""
    cols = [f.name for f in QUOTE_FIELDS]
    missing = [c for c in cols if c not in quotes.columns]
    if missing:
        raise ValueError(f"quotes lack COTAHIST columns: {missing}")
    return [format_quote_record(dict(zip(cols, r, strict=True))) for r in quotes[cols].itertuples(index=False)]


def write_cotahist(
    path: str | Path,
    quotes: pd.DataFrame,
    generated: dt.date,
    zip_it: bool = False,
) -> Path:
    """Write a COTAHIST file (CRLF, latin-1), optionally inside a ZIP named like B3's.

    The file is written to a temporary name and renamed, so a crash never leaves half a file.
    """
    path = Path(path)
    text = format_cotahist(quotes_to_records(quotes), generated).encode(ENCODING)
    path.parent.mkdir(parents=True, exist_ok=True)
    if zip_it:
        target = path.with_suffix(".ZIP")
        buf = io.BytesIO()
        # Stamp the member with the file's date, not "now", so the same data gives the same bytes.
        info = zipfile.ZipInfo(path.with_suffix(".TXT").name, date_time=(*generated.timetuple()[:3], 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(info, text)
        data = buf.getvalue()
    else:
        target, data = path, text
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def daily_file_name(day: dt.date) -> str:
    """B3's daily file name, e.g. ``COTAHIST_D04012016.TXT``."""
    return f"COTAHIST_D{day:%d%m%Y}.TXT"


__all__ = [
    "daily_file_name",
    "format_cotahist",
    "format_quote_record",
    "quotes_to_records",
    "write_cotahist",
]
