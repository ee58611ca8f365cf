"""Ingestion assets: raw COTAHIST quotes → quarantine, cleaned options and underlyings."""


import dagster as dg
import pandas as pd

from b3quant_models import schemas

from ..shared.checks import (
    days_complete_result,
    days_complete_spec,
    pandera_check_result,
    pandera_check_spec,
    table_preview,
)
from ..shared.metadata import per_partition_metadata
from ..shared.partitions import partition_days, single_run_backfill, trading_day_partitions
from .resources import CotahistFiles

GROUP = "ingestion"


@dg.multi_asset(
    outs={
        "raw_quotes": dg.AssetOut(
            metadata={"partition_expr": "trade_date"},
            description="Every COTAHIST quote record (type 01) of the day, typed, prices per unit.",
        ),
        "cotahist_quarantine": dg.AssetOut(
            metadata={"partition_expr": "partition_date"},
            description="COTAHIST lines that could not be parsed: file, line number, raw text, reason.",
        ),
    },
    partitions_def=trading_day_partitions,
    backfill_policy=single_run_backfill,
    check_specs=[pandera_check_spec("raw_quotes"), pandera_check_spec("cotahist_quarantine")],
    group_name=GROUP,
    compute_kind="duckdb",
)
def raw_quotes(context: dg.AssetExecutionContext, cotahist_files: CotahistFiles):
    # Library code is imported in asset bodies: the reader's numba kernels would cost every process that
    # only loads the code location (webserver, daemon, sensors). See docs/architecture.md.
    from b3quant_models.cotahist.reader import QUARANTINE_COLUMNS, read_cotahist_with_quarantine

    days = partition_days(context)
    quotes, quarantine, files = [], [], []
    for i, day in enumerate(days):
        landed = cotahist_files.daily_file(day)
        # A file downloaded just now was read by its integrity check: not parsed twice.
        res = landed.read if landed.read is not None else read_cotahist_with_quarantine(landed.path)
        q = res.quotes
        wrong_day = q["trade_date"] != pd.Timestamp(day)
        if wrong_day.any():
            raise ValueError(
                f"{res.file}: {int(wrong_day.sum())} quote records are dated "
                f"{sorted(q.loc[wrong_day, 'trade_date'].dt.date.unique())[:3]}, not the partition day {day}"
            )
        quotes.append(q)
        qq = res.quarantine.copy()
        qq.insert(0, "partition_date", pd.Timestamp(day))
        quarantine.append(qq)
        files.append(
            {
                "day": str(day),
                "file": res.file,
                "downloaded": landed.downloaded,
                "records": res.records_read,
                "quarantined": len(qq),
            }
        )
        if len(days) > 1 and (i + 1) % 25 == 0:
            context.log.info(f"read {i + 1}/{len(days)} COTAHIST files")
    raw = pd.concat(quotes, ignore_index=True)
    quar = pd.concat(quarantine, ignore_index=True)[["partition_date", *QUARANTINE_COLUMNS]]
    n_quar = len(quar)
    if n_quar:
        context.log.warning(f"{n_quar} malformed COTAHIST lines quarantined (see cotahist_quarantine)")
    by_market = raw["market_type"].value_counts().rename_axis("market_type").reset_index(name="rows")
    # Each day's own numbers on its materialization (the outputs' metadata below are the run's totals).
    file_of = {f["day"]: f for f in files}
    per_partition_metadata(context, raw, lambda g, day: {
        "days": 1,
        "quarantined_lines": int(file_of[str(day.date())]["quarantined"]),
        "rows_by_market": dg.MetadataValue.md(
            g["market_type"].value_counts().rename_axis("market_type").reset_index(name="rows").to_markdown(
                index=False)),
        "files": dg.MetadataValue.md(pd.DataFrame([file_of[str(day.date())]]).to_markdown(index=False)),
        "preview": table_preview(g),
    }, asset_key="raw_quotes")
    per_partition_metadata(context, quar, lambda g, day: {"quarantined_lines": len(g)},
                           asset_key="cotahist_quarantine", date_col="partition_date")
    yield dg.Output(
        raw,
        output_name="raw_quotes",
        metadata={
            "days": len(days),
            "quarantined_lines": n_quar,
            "rows_by_market": dg.MetadataValue.md(by_market.to_markdown(index=False)),
            "files": dg.MetadataValue.md(pd.DataFrame(files).tail(10).to_markdown(index=False)),
            "preview": table_preview(raw),
        },
    )
    yield dg.Output(quar, output_name="cotahist_quarantine", metadata={"quarantined_lines": n_quar})
    yield pandera_check_result("raw_quotes", schemas.RAW_QUOTES, raw)
    yield pandera_check_result("cotahist_quarantine", schemas.QUARANTINE, quar)


@dg.multi_asset(
    outs={
        "option_quotes": dg.AssetOut(
            metadata={"partition_expr": "trade_date"},
            description="Stock/ETF/index options (070/080) with type, strike, expiry and underlying ISIN.",
        ),
        "underlying_quotes": dg.AssetOut(
            metadata={"partition_expr": "trade_date"},
            description="Cash-market quotes (010), one row per ISIN and day.",
        ),
        "quote_rejects": dg.AssetOut(
            metadata={"partition_expr": "trade_date"},
            description="Quotes that broke a business rule while cleaning, with the rule.",
        ),
    },
    ins={"raw_quotes": dg.AssetIn()},
    partitions_def=trading_day_partitions,
    backfill_policy=single_run_backfill,
    check_specs=[
        pandera_check_spec("option_quotes"),
        pandera_check_spec("underlying_quotes"),
        pandera_check_spec("quote_rejects"),
        days_complete_spec("option_quotes", "every_day_has_options", "option quotes"),
    ],
    group_name=GROUP,
    compute_kind="pandas",
)
def clean_quote_tables(context: dg.AssetExecutionContext, raw_quotes: pd.DataFrame):
    from b3quant_models.quotes import clean_quotes

    c = clean_quotes(raw_quotes)
    no_under = c.options["underlying_ticker"].isna() & ~c.options["is_index_option"]
    if no_under.any():
        context.log.warning(
            f"{int(no_under.sum())} non-index options have no cash-market quote for their ISIN that day"
        )
    per_partition_metadata(context, c.options, lambda g, day: {
        "calls": int((g["option_type"] == "call").sum()),
        "puts": int((g["option_type"] == "put").sum()),
        "without_underlying_quote": int((g["underlying_ticker"].isna() & ~g["is_index_option"]).sum()),
        "preview": table_preview(g),
    }, asset_key="option_quotes")
    per_partition_metadata(context, c.underlyings, lambda g, day: {"preview": table_preview(g)},
                           asset_key="underlying_quotes")
    # (out-of-scope rows are counted over the run only, hence the name of that key)
    per_partition_metadata(context, c.rejects, lambda g, day: {"rejected": len(g)}, asset_key="quote_rejects")
    yield dg.Output(
        c.options,
        output_name="option_quotes",
        metadata={
            "calls": int((c.options["option_type"] == "call").sum()),
            "puts": int((c.options["option_type"] == "put").sum()),
            "without_underlying_quote": int(no_under.sum()),
            "preview": table_preview(c.options),
        },
    )
    yield dg.Output(c.underlyings, output_name="underlying_quotes", metadata={"preview": table_preview(c.underlyings)})
    yield dg.Output(
        c.rejects,
        output_name="quote_rejects",
        metadata={"rejected": len(c.rejects), "out_of_scope_rows_in_run": c.out_of_scope},
    )
    yield pandera_check_result("option_quotes", schemas.OPTION_QUOTES, c.options)
    yield pandera_check_result("underlying_quotes", schemas.UNDERLYING_QUOTES, c.underlyings)
    yield pandera_check_result("quote_rejects", schemas.QUOTE_REJECTS, c.rejects)
    counts = c.options.groupby("trade_date").size()
    days = partition_days(context)
    yield days_complete_result("option_quotes", "every_day_has_options", days, counts, "option quotes", context)
