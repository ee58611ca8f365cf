import dagster as dg

from ..shared.resources import data_dir
from .assets import (
    deep_grid_model_assets,
    deep_model_assets,
    ensemble_assets,
    grid_model_assets,
    grid_model_predictions,
    grid_training_set,
    model_assets,
    model_comparison,
    model_predictions,
    option_features,
    training_set,
)
from .checks import model_checks
from .resources import MlflowTracking

defs = dg.Definitions(
    assets=[option_features, training_set, grid_training_set, *model_assets, *grid_model_assets, *deep_model_assets,
            *deep_grid_model_assets, *ensemble_assets, model_comparison, model_predictions, grid_model_predictions],
    asset_checks=model_checks,
    resources={
        "mlflow": MlflowTracking(),
        "model_io_manager": dg.FilesystemIOManager(base_dir=str(data_dir() / "dagster_storage")),
    },
)
