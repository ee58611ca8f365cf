"""Clean raw COTAHIST quotes into option and underlying (cash-market) tables.

The option → underlying link is the ISIN: an option's CODISI *is* its underlying's ISIN. Matching
by ticker prefix (as b3quant does) confuses PETR3/PETR4 and breaks for units and renamed issuers.

Rows that break a business rule are not dropped: they go to a quarantine frame with the rule
that failed, so every raw row ends up in exactly one of options, underlyings, quarantine or
"out of scope" (other markets: odd lots, term, futures — counted, not stored here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .calendar import calendar_bounds
from .cotahist.layout import (
    BDI_INDEX_CALL,
    BDI_INDEX_PUT,
    MARKET_CALL,
    MARKET_CASH,
    MARKET_PUT,
)

UNDERLYING_COLUMNS = [
    "trade_date", "ticker", "isin", "company", "specification", "bdi_code",
    "open", "high", "low", "avg", "close", "best_bid", "best_ask",
    "trades", "quantity", "volume", "quote_factor",
]  # fmt: skip

OPTION_COLUMNS = [
    "trade_date", "ticker", "option_type", "underlying_isin", "underlying_ticker", "is_index_option",
    "bdi_code", "company", "specification", "strike", "expiry",
    "open", "high", "low", "avg", "close", "best_bid", "best_ask",
    "trades", "quantity", "volume", "quote_factor", "strike_correction", "distribution",
]  # fmt: skip

REJECT_COLUMNS = ["trade_date", "ticker", "market_type", "table", "reason"]
ISIN_LENGTH = 12


@dataclass
class CleanQuotes:
    options: pd.DataFrame
    underlyings: pd.DataFrame
    rejects: pd.DataFrame  # business-rule failures, one reason per row
    out_of_scope: int  # rows of other markets (odd lot, term, futures, ...)


def _rule_failures(df: pd.DataFrame, rules: dict[str, np.ndarray]) -> pd.Series:
    """First failing rule per row (empty string when all pass)."""
    reason = pd.Series("", index=df.index, dtype=object)
    for name, bad in rules.items():
        pick = bad & (reason == "")
        reason[pick] = name
    return reason


def _price_rules(df: pd.DataFrame) -> dict[str, np.ndarray]:
    traded = df["trades"].to_numpy() > 0
    hi, lo = df["high"].to_numpy(), df["low"].to_numpy()
    return {
        "high < low": traded & (hi < lo),
        "close outside [low, high]": traded
        & ((df["close"].to_numpy() < lo - 1e-9) | (df["close"].to_numpy() > hi + 1e-9)),
        "negative or zero price on a traded row": traded & (lo <= 0),
        "best_bid > best_ask": (df["best_ask"].to_numpy() > 0) & (df["best_bid"].to_numpy() > df["best_ask"]),
        # The option -> underlying link and the cash table's key: a blank or cut CODISI links nothing.
        "ISIN (CODISI) not 12 characters": (df["isin"].str.len() != ISIN_LENGTH).to_numpy(),
    }


def _less_traded_duplicates(df: pd.DataFrame, key: list[str]) -> pd.Series:
    """Rows that repeat ``key`` of a more traded row (ties: the first ticker): one row per key is kept."""
    ranked = df.sort_values(["volume", "ticker"], ascending=[False, True], kind="stable")
    return ranked.duplicated(key, keep="first").reindex(df.index)


def clean_quotes(raw: pd.DataFrame) -> CleanQuotes:
    """Split one or more days of raw quotes into options, underlyings and rejects.

    Underlyings are cash-market rows (market 010: shares, units, ETFs, BDRs, funds — BOVA11 options
    need the ETF); options are markets 070/080.
    When two cash rows share a day and ISIN (rare), the most traded one is the underlying.
    """
    mt = raw["market_type"]
    is_cash = mt == MARKET_CASH
    is_opt = mt.isin([MARKET_CALL, MARKET_PUT])
    out_of_scope = int((~is_cash & ~is_opt).sum())
    rejects: list[pd.DataFrame] = []

    cash = raw[is_cash]
    reason = _rule_failures(cash, _price_rules(cash))
    rejects.append(_rejects(cash[reason != ""], "underlying", reason[reason != ""]))
    cash = cash[reason == ""]
    dup = _less_traded_duplicates(cash, ["trade_date", "isin"])
    if dup.any():
        rejects.append(
            _rejects(cash[dup], "underlying", "duplicate cash row for the same ISIN and day (less traded)")
        )
    under = cash[~dup][UNDERLYING_COLUMNS].reset_index(drop=True)

    opt = raw[is_opt].copy()
    rules = _price_rules(opt)
    rules["non-positive strike (PREEXE)"] = opt["strike"].to_numpy() <= 0
    rules["missing or impossible expiry (DATVEN)"] = opt["expiry"].isna().to_numpy()
    rules["expiry before trade date"] = (opt["expiry"] < opt["trade_date"]).to_numpy()
    last = calendar_bounds()[1]  # business days to a later expiry cannot be counted
    rules[f"expiry after the B3 calendar's last session ({last})"] = (opt["expiry"] > pd.Timestamp(last)).to_numpy()
    reason = _rule_failures(opt, rules)
    rejects.append(_rejects(opt[reason != ""], "option", reason[reason != ""]))
    opt = opt[reason == ""]
    dup = _less_traded_duplicates(opt, ["trade_date", "ticker"])
    if dup.any():  # a ticker names one series a day; a repeated record is a defect of the file
        rejects.append(_rejects(opt[dup], "option", "duplicate option row for the same ticker and day (less traded)"))
        opt = opt[~dup]
    opt["option_type"] = np.where(opt["market_type"] == MARKET_CALL, "call", "put")
    opt["underlying_isin"] = opt["isin"]
    opt["is_index_option"] = opt["bdi_code"].isin([BDI_INDEX_CALL, BDI_INDEX_PUT])
    link = under[["trade_date", "isin", "ticker"]].rename(
        columns={"isin": "underlying_isin", "ticker": "underlying_ticker"}
    )
    opt = opt.merge(link, on=["trade_date", "underlying_isin"], how="left")
    options = opt[OPTION_COLUMNS].reset_index(drop=True)

    rej = pd.concat([r for r in rejects if len(r)], ignore_index=True) if any(len(r) for r in rejects) else (
        pd.DataFrame({c: pd.Series(dtype=object) for c in REJECT_COLUMNS}).astype(
            {"trade_date": "datetime64[ns]"}
        )
    )
    return CleanQuotes(options, under, rej, out_of_scope)


def _rejects(df: pd.DataFrame, table: str, reason) -> pd.DataFrame:
    out = df[["trade_date", "ticker", "market_type"]].copy()
    out["table"] = table
    out["reason"] = reason
    return out.reset_index(drop=True)
