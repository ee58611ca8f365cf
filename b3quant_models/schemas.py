"""pandera schemas for every stored table — the contract between pipeline stages.

Kept in the library (not the Dagster package) so notebooks and the BentoML service can validate
with the same rules the pipeline enforces.
"""

from __future__ import annotations

import pandera.pandas as pa
from pandera.pandas import Check, Column

from .option_iv import MAX_TRUSTED_IV

_PRICE = Check.ge(0)
_NONNEG = Check.ge(0)


def _prices(nullable: bool = False) -> dict[str, Column]:
    return {
        c: Column(float, _PRICE, nullable=nullable)
        for c in ("open", "high", "low", "avg", "close", "best_bid", "best_ask")
    }


_high_ge_low = Check(
    lambda df: (df["high"] >= df["low"]) | (df["trades"] == 0),
    name="high_ge_low",
    error="high >= low on traded rows",
)

RAW_QUOTES = pa.DataFrameSchema(
    {
        "trade_date": Column("datetime64[ns]"),
        "bdi_code": Column(str, Check.str_length(0, 2)),
        "ticker": Column(str, Check.str_length(1, 12)),
        "market_type": Column(str, Check.str_matches(r"^\d{3}$")),
        "company": Column(str),
        "specification": Column(str),
        "forward_days": Column(str),
        "currency": Column(str),
        **_prices(),
        "trades": Column("int64", _NONNEG),
        "quantity": Column("int64", _NONNEG),
        "volume": Column(float, _NONNEG),
        "strike": Column(float, _NONNEG),
        "strike_correction": Column("int64", Check.in_range(0, 9)),
        "expiry": Column("datetime64[ns]", nullable=True),
        "quote_factor": Column("int64", Check.gt(0)),
        "strike_points": Column(float, _NONNEG),
        "isin": Column(str),
        "distribution": Column("int64", _NONNEG),
    },
    # What must hold for records as read (types, digits, ranges). Business rules (high >= low, one row
    # per instrument) are the cleaning's: a real file that breaks one loses that row to quote_rejects,
    # not the day to a blocking check.
    strict=True,
    ordered=True,
    name="raw_quotes",
    description="COTAHIST quote records (type 01) exactly as read, prices per unit.",
)

UNDERLYING_QUOTES = pa.DataFrameSchema(
    {
        "trade_date": Column("datetime64[ns]"),
        "ticker": Column(str, Check.str_length(1, 12)),
        "isin": Column(str, Check.str_length(12, 12)),
        "company": Column(str),
        "specification": Column(str),
        "bdi_code": Column(str),
        **_prices(),
        "trades": Column("int64", _NONNEG),
        "quantity": Column("int64", _NONNEG),
        "volume": Column(float, _NONNEG),
        "quote_factor": Column("int64", Check.gt(0)),
    },
    checks=[_high_ge_low],
    unique=["trade_date", "isin"],
    strict=True,
    name="underlying_quotes",
    description="Cash-market quotes (market 010), one row per ISIN and day.",
)

OPTION_QUOTES = pa.DataFrameSchema(
    {
        "trade_date": Column("datetime64[ns]"),
        "ticker": Column(str, Check.str_length(1, 12)),
        "option_type": Column(str, Check.isin(["call", "put"])),
        "underlying_isin": Column(str, Check.str_length(12, 12)),
        "underlying_ticker": Column(str, nullable=True),
        "is_index_option": Column(bool),
        "bdi_code": Column(str),
        "company": Column(str),
        "specification": Column(str),
        "strike": Column(float, Check.gt(0)),
        "expiry": Column("datetime64[ns]"),
        **_prices(),
        "trades": Column("int64", _NONNEG),
        "quantity": Column("int64", _NONNEG),
        "volume": Column(float, _NONNEG),
        "quote_factor": Column("int64", Check.gt(0)),
        "strike_correction": Column("int64"),
        "distribution": Column("int64", _NONNEG),
    },
    checks=[
        _high_ge_low,
        Check(lambda df: df["expiry"] >= df["trade_date"], name="not_expired", error="expiry >= trade_date"),
    ],
    unique=["trade_date", "ticker"],
    strict=True,
    name="option_quotes",
    description="Listed stock/ETF/index options (markets 070/080) linked to their underlying by ISIN.",
)

QUARANTINE = pa.DataFrameSchema(
    {
        "partition_date": Column("datetime64[ns]"),
        "file": Column(str),
        "line_number": Column("int64", Check.gt(0)),
        "record_type": Column(str),
        "reason": Column(str, Check.str_length(1, None)),
        "raw": Column(str),
    },
    strict=True,
    name="cotahist_quarantine",
    description="COTAHIST lines that could not be parsed, with file, line number and reason.",
)

QUOTE_REJECTS = pa.DataFrameSchema(
    {
        "trade_date": Column("datetime64[ns]"),
        "ticker": Column(str),
        "market_type": Column(str),
        "table": Column(str, Check.isin(["option", "underlying"])),
        "reason": Column(str, Check.str_length(1, None)),
    },
    strict=True,
    name="quote_rejects",
    description="Parsed quotes that broke a business rule while cleaning, with the rule.",
)

SCHEMAS: dict[str, pa.DataFrameSchema] = {
    s.name: s for s in (RAW_QUOTES, UNDERLYING_QUOTES, OPTION_QUOTES, QUARANTINE, QUOTE_REJECTS)
}

RISK_FREE_RATE = pa.DataFrameSchema(
    {
        "trade_date": Column("datetime64[ns]", unique=True),
        "cdi_annual": Column(float, Check.in_range(-0.05, 1.0)),
        "r_cont": Column(float, Check.in_range(-0.06, 0.7)),
        "source": Column(str),
    },
    strict=True,
    name="risk_free_rate",
    description="CDI (annual, 252-day basis, decimal) and r_cont = ln(1 + CDI) per trading day.",
)

_GREEK = Column(float, nullable=True)
OPTION_IV = pa.DataFrameSchema(
    {
        "trade_date": Column("datetime64[ns]"),
        "ticker": Column(str),
        "underlying_isin": Column(str),
        "underlying_ticker": Column(str, nullable=True),
        "option_type": Column(str, Check.isin(["call", "put"])),
        "strike": Column(float, Check.gt(0)),
        "expiry": Column("datetime64[ns]"),
        "spot": Column(float, Check.gt(0), nullable=True),
        "bdays": Column("int64", Check.ge(0)),
        "t": Column(float, Check.ge(0)),
        "r": Column(float),
        "forward": Column(float, Check.gt(0), nullable=True),
        "k": Column(float, nullable=True),
        "price_close": Column(float, Check.gt(0), nullable=True),
        "price_mid": Column(float, Check.gt(0), nullable=True),
        # What each price implies, however extreme (the solver has no upper bound): diagnostics only.
        "iv_close": Column(float, Check.ge(0), nullable=True),
        "iv_mid": Column(float, Check.ge(0), nullable=True),
        # The trusted IV: an extreme or unpinned one gets a reason instead (option_iv.MAX_TRUSTED_IV).
        "iv": Column(float, Check.in_range(0, MAX_TRUSTED_IV, include_min=False), nullable=True),
        "iv_source": Column(str, Check.isin(["mid", "close"]), nullable=True),
        "iv_reason": Column(str),
        "delta": Column(float, Check.in_range(-1, 1), nullable=True),
        "gamma": _GREEK,
        "vega": _GREEK,
        "theta": _GREEK,
        "rho": _GREEK,
        "trades": Column("int64", Check.ge(0)),
        "quantity": Column("int64", Check.ge(0)),
        "volume": Column(float, Check.ge(0)),
        "best_bid": Column(float, Check.ge(0)),
        "best_ask": Column(float, Check.ge(0)),
        "surface_eligible": Column(bool),
        "surface_reason": Column(str),
    },
    checks=[
        Check(
            lambda df: df["iv"].notna() == (df["iv_reason"] == "ok"),
            name="iv_iff_ok",
            error="a row has an IV exactly when its reason is 'ok'",
        )
    ],
    unique=["trade_date", "ticker"],
    strict=True,
    name="option_iv",
    description="Per-option IV (mid preferred when tight, else close), Greeks and a reason per row.",
)
SCHEMAS.update({s.name: s for s in (RISK_FREE_RATE, OPTION_IV)})

# ------------------------------------------------------------------------------------------ model predictions
# The stacking ensemble and the backtests read these; docs/models.md and /work/helpers/CONTRACT-predictions.md
# describe them. Keys: one row per model × series × decision day × split.
_PREDICTION_HEAD = {
    "model": Column(str),
    "split": Column(str, Check.isin(["oof", "test"])),
    "fold": Column("int64", Check.ge(-1)),
    "trade_date": Column("datetime64[ns]"),
    "target_date": Column("datetime64[ns]"),
}
_PREDICTION_TAIL = {
    "iv": Column(float, Check.gt(0)),
    "iv_next": Column(float, Check.gt(0)),
    "forecast": Column(float),
    "iv_opt": Column(float, nullable=True),
}
_prediction_checks = [
    Check(lambda df: df["target_date"] > df["trade_date"], name="target_after_decision_day"),
    Check(lambda df: (df["split"] == "test") == (df["fold"] == -1), name="fold_minus_one_iff_test"),
]
MODEL_PREDICTIONS = pa.DataFrameSchema(
    {**_PREDICTION_HEAD, "ticker": Column(str), "underlying_ticker": Column(str, nullable=True), **_PREDICTION_TAIL},
    checks=_prediction_checks,
    unique=["model", "split", "trade_date", "ticker"],
    strict=False,  # consumers may find more columns after these
    ordered=True,
    name="model_predictions",
    description="Out-of-fold and held-out test next-day IV forecasts per model, option series and decision day.",
)
GRID_MODEL_PREDICTIONS = pa.DataFrameSchema(
    {**_PREDICTION_HEAD, "underlying_ticker": Column(str), "tenor_bdays": Column("int64", Check.gt(0)),
     "delta": Column(float, Check.in_range(0, 1)), **_PREDICTION_TAIL},
    checks=_prediction_checks,
    unique=["model", "split", "trade_date", "underlying_ticker", "tenor_bdays", "delta"],
    strict=False,
    ordered=True,
    name="grid_model_predictions",
    description="Out-of-fold and held-out test next-day IV forecasts per model and surface-grid point.",
)
SCHEMAS.update({s.name: s for s in (MODEL_PREDICTIONS, GRID_MODEL_PREDICTIONS)})
