"""Where the platform's files live and the environment variables that move them: the one place.

Every component (the Dagster resources, the ``b3q`` command, the BentoML service, promotion) reads its
paths here, so one ``B3Q_DATA_DIR`` points all of them at the same data folder. Values are read from the
environment on every call (tests and ``b3q`` set variables at run time). Stdlib only: cheap to import.

| variable | default |
|---|---|
| ``B3Q_DATA_DIR`` | ``<project>/data`` (the folder holding the package; git-ignored in a checkout) |
| ``B3Q_LANDING_DIR`` | ``$B3Q_DATA_DIR/landing`` |
| ``B3Q_DUCKDB_PATH`` | ``$B3Q_DATA_DIR/b3quant.duckdb`` |
| ``B3Q_OFFLINE`` | unset: ``1``/``true``/``yes`` means never reach the network |
| ``BENTOML_HOME`` | ``$B3Q_DATA_DIR/bentoml`` (model store in ``models/``) |
| ``MLFLOW_TRACKING_URI`` | SQLite under ``$B3Q_DATA_DIR/mlflow`` (see ``models.tracking``) |
| ``DAGSTER_HOME`` | ``<project>/dagster_home`` when ``b3q`` sets it |
| ``B3Q_FIRST_SESSION`` | ``first_session`` in ``$B3Q_DATA_DIR/partitions.json`` (``b3q`` writes it), else 2016-01-01 |
| ``B3Q_LAST_SESSION`` | ``last_session`` of that file, else none (partitions run through today) |
| ``B3Q_MLFLOW_UI_URL`` | ``MLFLOW_TRACKING_URI`` when it is a server, else ``http://127.0.0.1:5000`` (``mlflow ui``) |

Stored paths (asset metadata, the saved-model folders promotion reads, what the model assets return) are
written relative to ``B3Q_DATA_DIR`` with :func:`data_relative` and read back with :func:`resolve_data_path`,
so a data folder can be moved or copied: point ``B3Q_DATA_DIR`` at the new place and everything follows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """``$B3Q_DATA_DIR`` or ``<project>/data``: landing files, DuckDB, MLflow, models, plots."""
    return Path(os.environ.get("B3Q_DATA_DIR", PROJECT_ROOT / "data")).resolve()


def landing_dir() -> Path:
    """``$B3Q_LANDING_DIR`` or ``$B3Q_DATA_DIR/landing``: COTAHIST files (and ``cdi.csv``) read by ingestion."""
    return Path(os.environ.get("B3Q_LANDING_DIR", data_dir() / "landing"))


def duckdb_path() -> Path:
    """``$B3Q_DUCKDB_PATH`` or ``$B3Q_DATA_DIR/b3quant.duckdb``: the database behind every asset."""
    return Path(os.environ.get("B3Q_DUCKDB_PATH", data_dir() / "b3quant.duckdb"))


def offline() -> bool:
    """``B3Q_OFFLINE=1``: never reach the network (the demo and tests set it); sources read local files."""
    return os.environ.get("B3Q_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def bentoml_home() -> Path:
    """``$BENTOML_HOME`` or ``$B3Q_DATA_DIR/bentoml``: what ``bentoml serve`` reads with that BENTOML_HOME."""
    return Path(os.environ.get("BENTOML_HOME", data_dir() / "bentoml"))


def bento_models_dir() -> Path:
    """The BentoML model store promotion writes to and the service loads from (``$BENTOML_HOME/models``)."""
    return bentoml_home() / "models"


def mlflow_dir() -> Path:
    """Local MLflow store used when ``MLFLOW_TRACKING_URI`` is unset."""
    return data_dir() / "mlflow"


def saved_models_dir() -> Path:
    """Trained models, one folder per model and MLflow run."""
    return data_dir() / "models"


def dagster_home() -> Path:
    """``$DAGSTER_HOME`` or the project's ``dagster_home`` (runs, event logs; its dagster.yaml is tracked)."""
    return Path(os.environ.get("DAGSTER_HOME", PROJECT_ROOT / "dagster_home"))


PARTITIONS_FILE = "partitions.json"


def partitions_file() -> Path:
    """``$B3Q_DATA_DIR/partitions.json``: the session range the data folder holds (``b3q demo``/``run`` write it),
    so the UI's partitions start at the data's first day without an environment variable."""
    return data_dir() / PARTITIONS_FILE


def _session_setting(env: str, key: str) -> dt.date | None:
    raw = os.environ.get(env, "").strip()
    where = env
    if not raw and partitions_file().exists():
        raw = str(json.loads(partitions_file().read_text()).get(key) or "")
        where = f"{key} in {partitions_file()}"
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{where}: {raw!r} is not a date (YYYY-MM-DD)") from None


def first_session() -> dt.date | None:
    """The first trading-day partition: ``$B3Q_FIRST_SESSION``, else the data folder's ``partitions.json``."""
    return _session_setting("B3Q_FIRST_SESSION", "first_session")


def last_session() -> dt.date | None:
    """The last trading-day partition (none: through today): ``$B3Q_LAST_SESSION``, else ``partitions.json``."""
    return _session_setting("B3Q_LAST_SESSION", "last_session")


def record_sessions(first: dt.date, last: dt.date | None = None, *, widen: bool = True) -> Path:
    """Write the data folder's session range to ``partitions.json``. ``widen``: keep an earlier first session
    already recorded (real data accumulates; a new demo market replaces the range with ``widen=False``)."""
    path = partitions_file()
    old = json.loads(path.read_text()) if path.exists() else {}
    if widen and old.get("first_session"):
        first = min(first, dt.date.fromisoformat(old["first_session"]))
    out = {"first_session": first.isoformat()}
    if last is not None:
        out["last_session"] = last.isoformat()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    return path


def data_relative(path: str | Path) -> str:
    """``path`` relative to ``$B3Q_DATA_DIR`` (POSIX form) when it lies inside it, else the absolute path:
    what gets stored, so the folder can move."""
    p = Path(path).resolve()
    try:
        return p.relative_to(data_dir()).as_posix()
    except ValueError:
        return str(p)


def resolve_data_path(path: str | Path) -> Path:
    """A stored path back to a usable one: relative paths are taken from ``$B3Q_DATA_DIR``."""
    p = Path(path)
    return p if p.is_absolute() else data_dir() / p


def mlflow_ui_url() -> str:
    """Where a person opens MLflow (run links in asset metadata): ``$B3Q_MLFLOW_UI_URL``, else a server
    ``MLFLOW_TRACKING_URI``, else the ``mlflow ui`` default on this machine."""
    if url := os.environ.get("B3Q_MLFLOW_UI_URL"):
        return url.rstrip("/")
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
