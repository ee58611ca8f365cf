"""Per-day implied-volatility surfaces for B3 options: SVI/SSVI fits, arbitrage checks and repair,
and a fixed tenor × delta grid. See docs/surfaces.md for the method.

Public entry points (called by the Dagster assets and asset checks):
``fit_surfaces``, ``SurfaceFit``, ``surface_grid``, ``grid_to_array``, ``butterfly_violations``,
``calendar_violations``, ``plot_surface``, ``svi_total_variance``, ``svi_iv``.
"""

from b3quant_models.surface.arbitrage import DEFAULT_K_GRID, butterfly_violations, calendar_violations
from b3quant_models.surface.fit import SurfaceFit, clean_quotes, fit_surfaces
from b3quant_models.surface.grid import (
    DEFAULT_DELTAS,
    DEFAULT_TENORS,
    GridArray,
    black_call_delta,
    grid_to_array,
    surface_grid,
)
from b3quant_models.surface.plot import plot_surface
from b3quant_models.surface.ssvi import fit_ssvi, ssvi_to_raw, ssvi_total_variance
from b3quant_models.surface.svi import fit_svi_slice, svi_g, svi_iv, svi_total_variance

__all__ = [
    "DEFAULT_DELTAS",
    "DEFAULT_K_GRID",
    "DEFAULT_TENORS",
    "GridArray",
    "SurfaceFit",
    "black_call_delta",
    "butterfly_violations",
    "calendar_violations",
    "clean_quotes",
    "fit_ssvi",
    "fit_surfaces",
    "fit_svi_slice",
    "grid_to_array",
    "plot_surface",
    "ssvi_to_raw",
    "ssvi_total_variance",
    "surface_grid",
    "svi_g",
    "svi_iv",
    "svi_total_variance",
]
