import dagster as dg

from .assets import backtest_books, backtest_summary
from .resources import BacktestSettings

# ``model_predictions`` (every model's out-of-fold and test forecasts) is the models domain's asset
# (b3quant_assets/defs/models/assets.py; columns in docs/models.md): the backtests read its DuckDB table.
defs = dg.Definitions(assets=[backtest_books, backtest_summary], resources={"backtest_settings": BacktestSettings()})
