import dagster as dg

from .assets import option_iv, risk_free_rate
from .resources import RatesSource
from .surfaces import iv_surface, surface_grid_points

defs = dg.Definitions(
    assets=[risk_free_rate, option_iv, iv_surface, surface_grid_points],
    resources={"rates_source": RatesSource()},
)
