"""Read-only access to the platform's DuckDB file for the service.

DuckDB allows one writer *process*: while Dagster materializes a partition, read-only opens fail, and a
long-lived read-only handle would in turn block the writer. So every load opens a short read-only
connection and closes it, and what the hot path needs is loaded once per *version* of the file (its
mtime/size) and kept in memory: the per-day lookups (``Snapshot``: stored days, rates, underlyings) and
whatever else callers put in ``MarketStore.cached`` (the predict_iv day context). Requests then only
stat the file; a locked file keeps serving the last loaded version.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from b3quant_models import settings

if TYPE_CHECKING:  # duckdb is imported on first use: `import bento.service` stays light (issue 9)
    import duckdb

CACHE_ENTRIES = 6  # the snapshot plus a few days' predict_iv contexts
RETRY_LOCKED_S = 1.0  # while a writer holds the file, retry a reload at most this often
T = TypeVar("T")


def duckdb_path() -> Path:
    """``$B3Q_DUCKDB_PATH``, else ``$B3Q_DATA_DIR/b3quant.duckdb``, else ``<repo>/data/b3quant.duckdb``."""
    return settings.duckdb_path()


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
        # key -> (file version, value, monotonic time of the last failed reload or 0)
        self._cache: OrderedDict[Hashable, tuple[tuple[int, int], Any, float]] = OrderedDict()

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
        import duckdb

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

    def version(self) -> tuple[int, int]:
        """(mtime_ns, size) of the file: a cheap stat that changes whenever a writer commits."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise StoreUnavailable(f"DuckDB file not found at {self.path} (set B3Q_DUCKDB_PATH)") from None
        return st.st_mtime_ns, st.st_size

    def cached(self, key: Hashable, load: Callable[[MarketStore], T]) -> T:
        """``load(session)`` computed once per file version and kept in memory (``CACHE_ENTRIES`` values,
        the least recently loaded dropped first; other keys of an older version reload when next asked for).

        The hot path only stats the file. When the file changed the value is reloaded on one connection
        (one loader at a time, so a burst of requests waits for one load instead of running N); when the
        reload fails because a writer holds the file, the last value keeps being served, and the reload
        is retried at most every ``RETRY_LOCKED_S`` so requests do not queue behind failing opens.
        """
        ver = self.version()
        hit = self._cache.get(key)
        if hit is not None and hit[0] == ver:
            return hit[1]
        with self._lock:
            hit = self._cache.get(key)
            ver = self.version()
            if hit is not None and (hit[0] == ver or time.monotonic() - hit[2] < RETRY_LOCKED_S):
                return hit[1]
            try:
                with self.session() as db:
                    value = load(db)
            except StoreUnavailable:
                if hit is None or not self.path.is_file():
                    raise
                self._cache[key] = (hit[0], hit[1], time.monotonic())  # locked: keep serving what we had
                return hit[1]
            self._cache[key] = (ver, value, 0.0)
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
            return value

    def snapshot(self) -> Snapshot:
        """The cached per-day lookups, reloaded when the file changes (stat only on the hot path)."""
        return self.cached("snapshot", MarketStore._load_snapshot)

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
            "SELECT * FROM b3.iv_surface WHERE trade_date = ? AND underlying_ticker = ? ORDER BY expiry",
            [ts, underlying],
        )
        grid = self.query(
            "SELECT * FROM b3.surface_grid_points WHERE trade_date = ? AND underlying_ticker = ? "
            "ORDER BY tenor_days, delta",
            [ts, underlying],
        )
        return slices, grid

    def surface_underlyings(self, day: dt.date) -> list[str]:
        df = self.query("SELECT DISTINCT underlying_ticker FROM b3.iv_surface WHERE trade_date = ? ORDER BY 1",
                        [pd.Timestamp(day)])
        return df["underlying_ticker"].tolist()

    # ------------------------------------------------------------------------------------------ features
    def options_on(self, day: dt.date) -> pd.DataFrame:
        """Every stored option row of ``day`` (to match request contracts to stored tickers)."""
        return self.query("SELECT * FROM b3.option_iv WHERE trade_date = ?", [pd.Timestamp(day)])

    def live_series_history(self, day: dt.date) -> pd.DataFrame:
        """Rows strictly before ``day`` with a usable IV (``valid_iv_rows``' filter) of series still alive
        on ``day``: the only history a request contract's series features can use (expired ones get a 400)."""
        ts = pd.Timestamp(day)
        return self.query(
            "SELECT * FROM b3.option_iv WHERE trade_date < ? AND expiry > ? AND iv_reason = 'ok' "
            "AND isfinite(iv) AND iv > 0",
            [ts, ts],
        )

    def recent_surfaces(self, day: dt.date, underlyings: Iterable[str], n_days: int) -> pd.DataFrame:
        """b3.iv_surface rows of the last ``n_days`` surface days <= ``day`` per underlying."""
        return self.query(
            "WITH d AS (SELECT underlying_ticker, trade_date, dense_rank() OVER (PARTITION BY underlying_ticker "
            "ORDER BY trade_date DESC) AS rk FROM (SELECT DISTINCT underlying_ticker, trade_date FROM b3.iv_surface "
            "WHERE trade_date <= ? AND list_contains(?, underlying_ticker))) "
            "SELECT s.* FROM b3.iv_surface s JOIN d USING (underlying_ticker, trade_date) WHERE d.rk <= ?",
            [pd.Timestamp(day), sorted(set(underlyings)), n_days],
        )

    def recent_grid(self, day: dt.date, n_days: int) -> pd.DataFrame:
        """b3.surface_grid_points rows of the last ``n_days`` stored grid sessions <= ``day`` (what a model that
        forecasts through the surface grid looks back at)."""
        return self.query(
            "WITH d AS (SELECT DISTINCT trade_date FROM b3.surface_grid_points WHERE trade_date <= ? "
            "ORDER BY trade_date DESC LIMIT ?) SELECT g.trade_date, g.underlying_ticker, g.tenor_days, g.delta, "
            "g.iv, g.extrapolated FROM b3.surface_grid_points g JOIN d USING (trade_date)",
            [pd.Timestamp(day), int(n_days)],
        )

    def underlying_quotes_until(self, day: dt.date, underlyings: Iterable[str]) -> pd.DataFrame:
        """All b3.underlying_quotes rows <= ``day`` of the given tickers.

        The whole history, not a window: pandas' rolling means are running sums, so their last bits
        depend on where the series starts, and the batch feature table starts at the first stored day.
        """
        return self.query(
            "SELECT * FROM b3.underlying_quotes WHERE trade_date <= ? AND list_contains(?, ticker)",
            [pd.Timestamp(day), sorted(set(underlyings))],
        )


def _run(con: duckdb.DuckDBPyConnection, path: Path, sql: str, params: Iterable[object]) -> pd.DataFrame:
    import duckdb

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
