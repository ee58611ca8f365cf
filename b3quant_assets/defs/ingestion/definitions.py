import dagster as dg

from .assets import clean_quote_tables, raw_quotes
from .jobs import daily_market_job
from .resources import CotahistFiles
from .schedules import daily_market_schedule
from .sensors import landing_folder_sensor

defs = dg.Definitions(
    assets=[raw_quotes, clean_quote_tables],
    jobs=[daily_market_job],
    schedules=[daily_market_schedule],
    sensors=[landing_folder_sensor],
    resources={"cotahist_files": CotahistFiles()},
)
