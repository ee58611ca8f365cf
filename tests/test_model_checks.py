"""The comparison flags models that lose to persistence, in its table and picture, and each model asset's
non-blocking ``beats_persistence`` check says so."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from b3quant_assets.defs.models.assets import CHECKED_MODEL_ASSETS, model_comparison
from b3quant_assets.defs.models.checks import model_checks
from b3quant_models.models.comparison import comparison_plot, flag_losers, persistence_verdict


def _metrics(model: str, rmse: float, persistence: float = 2.42) -> pd.DataFrame:
    return pd.DataFrame([
        {"forecaster": model, "n": 500, "rmse_vol_pts": rmse, "mae_vol_pts": 0.7 * rmse, "bias_vol_pts": 0.05,
         "r2": 0.5},
        {"forecaster": "persistence", "n": 500, "rmse_vol_pts": persistence, "mae_vol_pts": 1.7,
         "bias_vol_pts": -0.01, "r2": 0.4},
        {"forecaster": "optimal (ground truth)", "n": 500, "rmse_vol_pts": 2.1, "mae_vol_pts": 1.5,
         "bias_vol_pts": 0.0, "r2": 0.6},
    ])


RMSE = {"xgboost_model": 2.38, "lightgbm_model": 2.40, "series_ar_model": 2.75, "xgboost_grid_model": 1.9}


def _stub(asset: str) -> dg.AssetsDefinition:
    name = asset.removesuffix("_model")
    target = "per surface-grid point" if name.endswith("_grid") else "per option series"

    @dg.asset(name=asset)
    def _model() -> dict:
        kind = name.removesuffix("_grid")
        persistence = 1.7 if target.endswith("point") else 2.42
        return {"model_name": name, "metrics_table": _metrics(kind, RMSE.get(asset, 2.39), persistence),
                "target": target, "mlflow_run_id": f"run-{name}"}

    return _model


def test_beats_persistence_check_on_every_model_warns_without_blocking() -> None:
    stubs = [_stub(a) for a in CHECKED_MODEL_ASSETS]
    res = dg.materialize([*stubs, model_comparison, *model_checks],
                         resources={"io_manager": dg.mem_io_manager})
    assert res.success  # a model losing to persistence blocks nothing
    evals = {e.asset_key.to_user_string(): e for e in res.get_asset_check_evaluations()}
    assert set(evals) == set(CHECKED_MODEL_ASSETS)
    assert all(e.check_name == "beats_persistence" and e.severity == dg.AssetCheckSeverity.WARN
               for e in evals.values())
    losers = {a for a, e in evals.items() if not e.passed}
    assert losers == {a for a in CHECKED_MODEL_ASSETS if a in ("series_ar_model", "xgboost_grid_model")}
    m = evals["series_ar_model"].metadata
    assert m["rmse_vol_pts"].value == 2.75 and m["persistence_rmse_vol_pts"].value == 2.42
    assert m["rmse_gain_vs_persistence_pct"].value == round(100 * (1 - 2.75 / 2.42), 4)  # rounded

    table = res.output_for_node("model_comparison")
    assert set(table["trained_model"]) >= {"xgboost", "series_ar", "xgboost_grid"}
    own = table[table["beats_persistence"].notna()].set_index("trained_model")["beats_persistence"]
    assert not own["series_ar"] and not own["xgboost_grid"] and own["xgboost"]
    meta = res.asset_materializations_for_node("model_comparison")[0].metadata
    assert "series_ar" in meta["losing_to_persistence"].value
    assert meta["plot"].value.startswith("![held-out RMSE, MAE and bias by model](data:image/png;base64,")


def test_verdict_and_plot_cover_grid_models_and_zoom() -> None:
    v = persistence_verdict(_metrics("xgboost", 2.38))
    assert v["beats_persistence"] and v["forecaster"] == "xgboost" and v["test_rows"] == 500
    rows = []
    for trained, rmse in (("xgboost", 2.38), ("series_ar", 2.75)):
        rows.append(_metrics(trained, rmse).assign(target="per option series", trained_model=trained))
    rows.append(_metrics("xgboost", 1.9, 1.7).iloc[:2].assign(target="per surface-grid point",
                                                               trained_model="xgboost_grid"))
    table = flag_losers(pd.concat(rows, ignore_index=True))
    png = comparison_plot(table)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import io

    from matplotlib.image import imread

    img = imread(io.BytesIO(png))
    assert img.shape[1] == 800  # 10 in at 80 dpi: small enough to inline
    # Both targets' models are in the bars, the grid model flagged as a loser.
    from b3quant_models.models.comparison import _bars

    bars = _bars(table)
    assert {"xgboost", "series_ar", "xgboost_grid", "persistence", "optimal (ground truth)"} <= set(bars["label"])
    assert bars.set_index("label").loc["xgboost_grid", "kind"] == "loser"
