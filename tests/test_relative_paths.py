"""Stored paths are relative to ``B3Q_DATA_DIR`` so a data folder can be moved: the settings helpers, the
rates' ``source`` column, the DuckDB IO manager's ``dagster/table_name``. The end-to-end move (train, move,
promote, serve, load the champion) is ``tests/test_mlflow_registry.py::test_promotion_after_moving_the_data_folder``."""

from __future__ import annotations

from pathlib import Path

from dagster._core.storage.db_io_manager import TableSlice

from b3quant_assets.defs.shared.resources import TransactionalDuckDbClient
from b3quant_models import settings


def test_paths_are_stored_relative(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("B3Q_DATA_DIR", str(tmp_path / "d"))
    inside = settings.saved_models_dir() / "xgboost" / "abc"
    assert settings.data_relative(inside) == "models/xgboost/abc"
    assert settings.resolve_data_path("models/xgboost/abc") == inside.resolve()
    outside = tmp_path / "elsewhere"
    assert settings.data_relative(outside) == str(outside.resolve())  # outside the folder: kept absolute
    assert settings.resolve_data_path(str(outside)) == outside


def test_rates_source_column_names_the_landing_file_relatively(tmp_path: Path, monkeypatch) -> None:
    """``risk_free_rate.source`` is stored in DuckDB: it must not carry this machine's data folder."""
    from b3quant_models.sources.rates import read_rates_file

    monkeypatch.setenv("B3Q_DATA_DIR", str(tmp_path / "d"))
    f = settings.landing_dir() / "cdi.csv"
    f.parent.mkdir(parents=True)
    f.write_text("date,cdi_annual_pct\n2016-01-04,14.13\n")
    assert read_rates_file(f).attrs["source"] == "rates file $B3Q_DATA_DIR/landing/cdi.csv"


def test_duckdb_table_name_metadata_has_no_absolute_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("B3Q_DATA_DIR", str(tmp_path / "d"))
    inside = TableSlice(table="option_iv", schema="b3", database=str(settings.duckdb_path()))
    assert TransactionalDuckDbClient.get_table_name(inside) == "b3quant.duckdb.b3.option_iv"
    elsewhere = TableSlice(table="t", schema="b3", database=str(tmp_path / "x.duckdb"))
    assert TransactionalDuckDbClient.get_table_name(elsewhere) == f"{(tmp_path / 'x.duckdb').resolve()}.b3.t"
