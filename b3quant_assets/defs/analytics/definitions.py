import dagster as dg

from .assets import option_iv, risk_free_rate
from .resources import RatesSource

defs = dg.Definitions(assets=[risk_free_rate, option_iv], resources={"rates_source": RatesSource()})
