"""Shared fixtures. Real B3 files live in ../shared beside the project root and are optional."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Sources fall back to the network when a local file is missing; tests never may (the download
# tests name mode="b3" explicitly and point it at a loopback server).
os.environ["B3Q_OFFLINE"] = "1"
# Nothing a test writes (plots, models, MLflow, DuckDB) may land in the checkout's ./data.
os.environ["B3Q_DATA_DIR"] = tempfile.mkdtemp(prefix="b3q-tests-")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REAL_B3_DIR = PROJECT_ROOT.parent / "shared" / "data" / "b3-real"
REAL_DAILY_FILE = REAL_B3_DIR / "COTAHIST_D04012016.TXT"


@pytest.fixture
def real_daily_file() -> Path:
    if not REAL_DAILY_FILE.exists():
        pytest.skip(f"real B3 file not present at {REAL_DAILY_FILE}")
    return REAL_DAILY_FILE
