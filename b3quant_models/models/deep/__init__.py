"""Deep (torch) forecasters on the surface grid. Importing this package imports torch; nothing in
``b3quant_models.models`` imports it, so the trees and the service start without it.

``GRID_MODELS``: name -> class of the grid forecasters (``lstm_grid``, ``gru_grid``, ``pinn_grid``, ``vae_latent``).
"""

from b3quant_models.models.deep.data import GridSequences, build_grid_sequences
from b3quant_models.models.deep.engine import FitConfig, resolve_device
from b3quant_models.models.deep.grid_base import GridForecaster
from b3quant_models.models.deep.pinn import PINNGridForecaster
from b3quant_models.models.deep.recurrent import GRUGridForecaster, LSTMGridForecaster
from b3quant_models.models.deep.vae import VAELatentForecaster, surface_anomaly_scores

GRID_MODELS: dict[str, type[GridForecaster]] = {
    c.name: c for c in (LSTMGridForecaster, GRUGridForecaster, PINNGridForecaster, VAELatentForecaster)
}

__all__ = [
    "GRID_MODELS",
    "FitConfig",
    "GRUGridForecaster",
    "GridForecaster",
    "GridSequences",
    "LSTMGridForecaster",
    "PINNGridForecaster",
    "VAELatentForecaster",
    "build_grid_sequences",
    "resolve_device",
    "surface_anomaly_scores",
]
