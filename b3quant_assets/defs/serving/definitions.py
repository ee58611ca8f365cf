import dagster as dg

from .assets import BentoModelStore, promoted_model
from .sensors import promote_after_comparison, promotion_job

defs = dg.Definitions(
    assets=[promoted_model],
    jobs=[promotion_job],
    sensors=[promote_after_comparison],
    resources={"bento_store": BentoModelStore()},
)
