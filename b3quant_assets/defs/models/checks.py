"""Non-blocking checks on every trained model: does it beat persistence on its held-out rows?

A model that loses to "tomorrow's IV = today's IV" is still stored, compared and shown (the promotion gate
decides what is served); the check makes the loss visible on the model's own asset page, in yellow."""

import dagster as dg

from ..shared.metadata import rounded
from .assets import CHECKED_MODEL_ASSETS


def beats_persistence_check(asset: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name="beats_persistence",
        blocking=False,
        description="Held-out RMSE below persistence's on the same rows (WARN when not; nothing is blocked).",
    )
    def _check(model: dict) -> dg.AssetCheckResult:
        from b3quant_models.models.comparison import persistence_verdict

        v = persistence_verdict(model["metrics_table"])
        return dg.AssetCheckResult(
            passed=v["beats_persistence"],
            severity=dg.AssetCheckSeverity.WARN,
            metadata=rounded(v),
            description=None if v["beats_persistence"] else (
                f"{model['model_name']} loses to persistence: RMSE {v['rmse_vol_pts']:.3f} vs "
                f"{v['persistence_rmse_vol_pts']:.3f} vol points"
            ),
        )

    return _check


model_checks = [beats_persistence_check(a) for a in CHECKED_MODEL_ASSETS]
