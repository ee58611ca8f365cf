import dagster as dg

from .assets import clean_quote_tables, raw_quotes
from .resources import CotahistFiles

defs = dg.Definitions(
    assets=[raw_quotes, clean_quote_tables],
    resources={"cotahist_files": CotahistFiles()},
)
