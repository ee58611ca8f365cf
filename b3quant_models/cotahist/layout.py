"""COTAHIST fixed-width layout (B3 "Cotações Históricas", rev. 22/09/2005).

One table drives both the reader and the writer, so they cannot drift apart. Positions are
0-based half-open slices into the 245-byte record (the PDF's 1-based inclusive ``from``/``to``
minus one for the start).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RECORD_LENGTH = 245
ENCODING = "latin-1"
NO_EXPIRY = 99991231  # DATVEN for instruments without expiry

Kind = Literal["str", "int", "date", "price", "money", "points", "code"]


@dataclass(frozen=True)
class Field:
    name: str  # our column name
    b3_name: str  # B3's field name, quoted in error messages
    start: int  # 0-based inclusive
    end: int  # 0-based exclusive
    kind: Kind
    decimals: int = 0

    @property
    def width(self) -> int:
        return self.end - self.start


def _f(name: str, b3: str, frm: int, to: int, kind: Kind, decimals: int = 0) -> Field:
    return Field(name, b3, frm - 1, to, kind, decimals)


# Quote record (TIPREG = 01), in output-column order.
QUOTE_FIELDS: tuple[Field, ...] = (
    _f("trade_date", "DATA", 3, 10, "date"),
    _f("bdi_code", "CODBDI", 11, 12, "str"),
    _f("ticker", "CODNEG", 13, 24, "str"),
    _f("market_type", "TPMERC", 25, 27, "code"),
    _f("company", "NOMRES", 28, 39, "str"),
    _f("specification", "ESPECI", 40, 49, "str"),
    _f("forward_days", "PRAZOT", 50, 52, "str"),
    _f("currency", "MODREF", 53, 56, "str"),
    _f("open", "PREABE", 57, 69, "price", 2),
    _f("high", "PREMAX", 70, 82, "price", 2),
    _f("low", "PREMIN", 83, 95, "price", 2),
    _f("avg", "PREMED", 96, 108, "price", 2),
    _f("close", "PREULT", 109, 121, "price", 2),
    _f("best_bid", "PREOFC", 122, 134, "price", 2),
    _f("best_ask", "PREOFV", 135, 147, "price", 2),
    _f("trades", "TOTNEG", 148, 152, "int"),
    _f("quantity", "QUATOT", 153, 170, "int"),
    _f("volume", "VOLTOT", 171, 188, "money", 2),
    _f("strike", "PREEXE", 189, 201, "price", 2),
    _f("strike_correction", "INDOPC", 202, 202, "int"),
    _f("expiry", "DATVEN", 203, 210, "date"),
    _f("quote_factor", "FATCOT", 211, 217, "int"),
    _f("strike_points", "PTOEXE", 218, 230, "points", 6),
    _f("isin", "CODISI", 231, 242, "str"),
    _f("distribution", "DISMES", 243, 245, "int"),
)

QUOTE_COLUMNS: tuple[str, ...] = tuple(f.name for f in QUOTE_FIELDS)

# Header (00) and trailer (99) share their first fields.
HEADER_GENERATED = slice(23, 31)
TRAILER_COUNT = slice(31, 42)

# Market types (TPMERC) and BDI codes used downstream.
MARKET_CASH = "010"
MARKET_CALL = "070"
MARKET_PUT = "080"
BDI_ROUND_LOT = "02"
BDI_STOCK_CALL = "78"
BDI_STOCK_PUT = "82"
BDI_INDEX_CALL = "74"
BDI_INDEX_PUT = "75"
