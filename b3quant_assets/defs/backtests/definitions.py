import dagster as dg

from .assets import PREDICTIONS, backtest_books, backtest_summary
from .resources import BacktestSettings

# The models domain stores every model's out-of-fold and test predictions in ``model_predictions``
# (contract in docs/backtests.md). Until that asset is part of the code location, it is declared
# here as an external asset: the backtests read its table when it exists and are skipped otherwise.
predictions_spec = dg.AssetSpec(
    PREDICTIONS, group_name="models", description="Stored out-of-fold and test predictions of every model "
    "(written by the models domain): model, split, fold, trade_date, target_date, ticker, underlying_ticker, "
    "iv, iv_next, forecast, iv_opt.",
)  # fmt: skip

defs = dg.Definitions(
    assets=[predictions_spec, backtest_books, backtest_summary], resources={"backtest_settings": BacktestSettings()}
)
