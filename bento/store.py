"""Read-only access to the platform's DuckDB file for the service.

DuckDB allows one writer *process*: while Dagster materializes a partition, read-only opens fail, and a
long-lived read-only handle would in turn block the writer. So every read opens a short read-only
connection and closes it, and the small per-day lookups the hot path needs (stored days, rates,
underlyings) are cached in a ``Snapshot`` that is reloaded only when the file's mtime/size change; a
locked file with a cached snapshot keeps serving the snapshot.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import duckdb
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]


def duckdb_path() -> Path:
    """``$B3Q_DUCKDB_PATH``, else ``$B3Q_DATA_DIR/b3quant.duckdb``, else ``<repo>/data/b3quant.duckdb``."""
    if p := os.environ.get("B3Q_DUCKDB_PATH"):
        return Path(p)
    return Path(os.environ.get("B3Q_DATA_DIR", REPO_ROOT / "data")) / "b3quant.duckdb"


class StoreUnavailable(RuntimeError):
    """The DuckDB file is missing, locked by a writer, or lacks the tables the service reads."""


@dataclass(frozen=True)
class Snapshot:
    """Per-day facts the request validators and the hot path need without opening the database."""

    days: tuple[dt.date, ...]  # stored trading days of b3.option_iv, ascending
    rates: dict[dt.date, float]  # trade_date -> r_cont
    underlyings: dict[dt.date, frozenset[str]] = field(default_factory=dict)  # with option rows that day

    @property
    def latest(self) -> dt.date | None:
        return self.days[-1] if self.days else None


def _dates(s: pd.Series) -> list[dt.date]:
    return [d.date() for d in pd.to_datetime(s)]


class MarketStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None
        self._key: tuple[int, int] | None = None

    def available(self) -> bool:
        return self.path.is_file()

    def query(self, sql: str, params: Iterable[object] = ()) -> pd.DataFrame:
        """Run one query on a fresh read-only connection.

        Sets of keys travel as list parameters, not registered DataFrames: registering frames from
        several threads at once fails in DuckDB ("pandas_scan does not exist").
        """
        con = self._connect()
        try:
            return _run(con, self.path, sql, params)
        finally:
            con.close()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if not self.path.is_file():
            raise StoreUnavailable(f"DuckDB file not found at {self.path} (set B3Q_DUCKDB_PATH)")
        try:
            return duckdb.connect(str(self.path), read_only=True)
        except duckdb.Error as e:
            raise StoreUnavailable(f"cannot open {self.path} read-only (a writer may hold it): {e}") from e

    @contextmanager
    def session(self) -> Iterator[MarketStore]:
        """This store's readers on one read-only connection: opening one costs ~15 ms, several reads share it."""
        con = self._connect()
        try:
            yield _Session(self.path, con)
        finally:
            con.close()

    def snapshot(self) -> Snapshot:
        """The cached per-day lookups, reloaded when the file changes (stat only on the hot path)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise StoreUnavailable(f"DuckDB file not found at {self.path} (set B3Q_DUCKDB_PATH)") from None
        key = (st.st_mtime_ns, st.st_size)
        if self._snap is not None and key == self._key:
            return self._snap
        with self._lock:
            if self._snap is not None and key == self._key:
                return self._snap
            try:
                snap = self._load_snapshot()
            except StoreUnavailable:
                if self._snap is not None:  # locked by a writer: keep serving what we had
                    return self._snap
                raise
            self._snap, self._key = snap, key
            return snap

    def _load_snapshot(self) -> Snapshot:
        pairs = self.query("SELECT DISTINCT trade_date, underlying_ticker FROM b3.option_iv")
        rates = self.query("SELECT trade_date, r_cont FROM b3.risk_free_rate WHERE r_cont IS NOT NULL")
        und: dict[dt.date, set[str]] = {}
        for d, u in zip(_dates(pairs["trade_date"]), pairs["underlying_ticker"], strict=True):
            und.setdefault(d, set()).add(str(u))
        return Snapshot(
            days=tuple(sorted(und)),
            rates=dict(zip(_dates(rates["trade_date"]), rates["r_cont"].astype(float), strict=True)),
            underlyings={d: frozenset(u) for d, u in und.items()},
        )

    # ------------------------------------------------------------------------------------------ surfaces
    def surface(self, underlying: str, day: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
        """SVI slices (b3.iv_surface) and grid points (b3.surface_grid_points) of one underlying and day."""
        ts = pd.Timestamp(day)
        slices = self.query(
            "SELECT * FROM b3.iv_surface WHERE trade_date = ? AND underlying = ? ORDER BY expiry", [ts, underlying]
        )
        grid = self.query(
            "SELECT * FROM b3.surface_grid_points WHERE trade_date = ? AND underlying = ? "
            "ORDER BY tenor_days, delta",
            [ts, underlying],
        )
        return slices, grid

    def surface_underlyings(self, day: dt.date) -> list[str]:
        df = self.query("SELECT DISTINCT underlying FROM b3.iv_surface WHERE trade_date = ? ORDER BY 1",
                        [pd.Timestamp(day)])
        return df["underlying"].tolist()

    # ------------------------------------------------------------------------------------------ features
    def options_on(self, day: dt.date, underlyings: Iterable[str]) -> pd.DataFrame:
        """Every stored option row of ``underlyings`` on ``day`` (to match request contracts to tickers)."""
        return self.query(
            "SELECT * FROM b3.option_iv WHERE trade_date = ? AND list_contains(?, underlying_ticker)",
            [pd.Timestamp(day), sorted(set(underlyings))],
        )

    def series_history(self, day: dt.date, series: pd.DataFrame) -> pd.DataFrame:
        """All stored rows strictly before ``day`` of the (ticker, expiry) series in ``series``."""
        keys = {(str(t), pd.Timestamp(e)) for t, e in zip(series["ticker"], series["expiry"], strict=True)}
        df = self.query(
            "SELECT * FROM b3.option_iv WHERE trade_date < ? AND list_contains(?, ticker)",
            [pd.Timestamp(day), sorted({t for t, _ in keys})],
        )
        hit = [(t, pd.Timestamp(e)) in keys for t, e in zip(df["ticker"], df["expiry"], strict=True)]
        return df.loc[hit].reset_index(drop=True)

    def one_valid_row_per_underlying(self, day: dt.date) -> pd.DataFrame:
        """One row with a usable IV per underlying on ``day``: it makes the underlying count in the
        same-day market factors exactly as it does in the batch feature table."""
        return self.query(
            "SELECT * FROM b3.option_iv WHERE trade_date = ? AND iv_reason = 'ok' AND isfinite(iv) AND iv > 0 "
            "QUALIFY row_number() OVER (PARTITION BY underlying_ticker ORDER BY ticker, expiry) = 1",
            [pd.Timestamp(day)],
        )

    def recent_surfaces(self, day: dt.date, underlyings: Iterable[str], n_days: int) -> pd.DataFrame:
        """b3.iv_surface rows of the last ``n_days`` surface days <= ``day`` per underlying."""
        return self.query(
            "WITH d AS (SELECT underlying, trade_date, dense_rank() OVER (PARTITION BY underlying "
            "ORDER BY trade_date DESC) AS rk FROM (SELECT DISTINCT underlying, trade_date FROM b3.iv_surface "
            "WHERE trade_date <= ? AND list_contains(?, underlying))) "
            "SELECT s.* FROM b3.iv_surface s JOIN d USING (underlying, trade_date) WHERE d.rk <= ?",
            [pd.Timestamp(day), sorted(set(underlyings)), n_days],
        )

    def recent_underlying_quotes(self, day: dt.date, underlyings: Iterable[str], n_days: int) -> pd.DataFrame:
        """b3.underlying_quotes rows of the last ``n_days`` quoted days <= ``day`` per underlying ticker."""
        return self.query(
            "SELECT * FROM (SELECT *, dense_rank() OVER (PARTITION BY ticker ORDER BY trade_date DESC) AS rk "
            "FROM b3.underlying_quotes WHERE trade_date <= ? AND list_contains(?, ticker)) WHERE rk <= ?",
            [pd.Timestamp(day), sorted(set(underlyings)), n_days],
        ).drop(columns="rk")


def _run(con: duckdb.DuckDBPyConnection, path: Path, sql: str, params: Iterable[object]) -> pd.DataFrame:
    try:
        return con.execute(sql, list(params)).fetchdf()
    except duckdb.CatalogException as e:
        raise StoreUnavailable(f"{path} lacks a table the service reads: {e}") from e


class _Session(MarketStore):
    """A MarketStore whose reads run on one already-open connection (used by ``MarketStore.session``)."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection) -> None:
        super().__init__(path)
        self._con = con

    def query(self, sql: str, params: Iterable[object] = ()) -> pd.DataFrame:
        return _run(self._con, self.path, sql, params)


@lru_cache(maxsize=8)
def _store_for(path: str) -> MarketStore:
    return MarketStore(path)


def get_store() -> MarketStore:
    """The process-wide store for the current ``duckdb_path()`` (env is read per call so tests can switch)."""
    return _store_for(str(duckdb_path()))
