"""Dagster types for the stored tables, made by dagster-pandera from the library's pandera schemas.

``dagster_pandera.pandera_schema_to_dagster_type`` turns a schema into a Dagster type whose metadata is the
table's schema (columns, dtypes, nullability, checks): the UI shows it on the asset's page (the output's
type) and, as ``dagster/column_schema``, in its Columns section. Its type check, though, validates the
whole frame eagerly and fails the step on the first bad table; the tables are validated once instead, by
the blocking ``pandera_schema`` asset checks (``shared/checks.py``: failure counts and sample rows in the
UI). So the types here keep dagster-pandera's name, description and schema metadata and only check that
the value is a DataFrame (docs/operations.md).
"""

from __future__ import annotations

import warnings

import dagster as dg
import pandas as pd
import pandera.pandas as pa
from dagster_pandera import pandera_schema_to_dagster_type


def _generated(schema: pa.DataFrameSchema) -> dg.DagsterType:
    with warnings.catch_warnings():  # "beta" in dagster-pandera 0.29: a change shows in tests/test_ops_types.py
        warnings.simplefilter("ignore", dg.BetaWarning)
        return pandera_schema_to_dagster_type(schema)


def _is_frame(_context, value: object) -> dg.TypeCheck:
    return dg.TypeCheck(success=isinstance(value, pd.DataFrame),
                        description=None if isinstance(value, pd.DataFrame) else f"not a DataFrame: {type(value)}")


def table_type(asset: str, schema: pa.DataFrameSchema) -> dg.DagsterType:
    """The stored table ``asset``'s Dagster type (named ``<asset>_table``) with ``schema``'s table schema."""
    generated = _generated(schema)
    return dg.DagsterType(
        type_check_fn=_is_frame,
        name=f"{asset}_table",
        description=generated.description or f"{asset}: pandera schema in b3quant_models (validated by the "
        "pandera_schema check)",
        metadata=generated.metadata,
        typing_type=pd.DataFrame,
    )


def column_schema(schema: pa.DataFrameSchema) -> dict:
    """``{"dagster/column_schema": ...}``: the asset's Columns section, from the same conversion."""
    return {"dagster/column_schema": _generated(schema).metadata["schema"].schema}
