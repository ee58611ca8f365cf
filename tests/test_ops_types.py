"""The stored tables' Dagster types come from dagster-pandera, so their schema is visible in the UI."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from b3quant_assets.definitions import defs
from b3quant_assets.defs.shared.types import table_type
from b3quant_models import schemas

STORED = {"raw_quotes": schemas.RAW_QUOTES, "option_quotes": schemas.OPTION_QUOTES, "option_iv": schemas.OPTION_IV,
          "risk_free_rate": schemas.RISK_FREE_RATE, "model_predictions": schemas.MODEL_PREDICTIONS}


def test_stored_tables_carry_their_pandera_schema() -> None:
    graph = defs.resolve_asset_graph()
    for asset, schema in STORED.items():
        cols = graph.get(dg.AssetKey(asset)).metadata["dagster/column_schema"].columns
        assert [c.name for c in cols] == list(schema.columns), asset
        ad = defs.resolve_assets_def(asset)
        out = ad.get_output_name_for_asset_key(dg.AssetKey(asset))
        t = ad.op.outs[out].dagster_type
        assert t.unique_name == f"{asset}_table"
        assert [c.name for c in t.metadata["schema"].schema.columns] == list(schema.columns)
    iv = {c.name: c for c in graph.get(dg.AssetKey("option_iv")).metadata["dagster/column_schema"].columns}
    assert iv["trade_date"].constraints.nullable is False


def test_type_check_leaves_validation_to_the_pandera_check() -> None:
    t = table_type("option_iv", schemas.OPTION_IV)
    bad = pd.DataFrame({"not_a_column": [1]})
    assert dg.check_dagster_type(t, bad).success  # counted and shown by the pandera_schema check instead
    assert not dg.check_dagster_type(t, [1, 2]).success
