"""The code location loads the way `dagster dev` and the webserver load it (workspace.yaml)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_workspace_validates(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "B3Q_DATA_DIR": str(tmp_path / "data")}
    dagster = Path(sys.executable).with_name("dagster")
    out = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "b3quant_ml" in out.stdout + out.stderr


def test_every_job_runs_in_process() -> None:
    """One process per run (DuckDB has one writer; a process per step re-pays the imports)."""
    from b3quant_assets.definitions import defs

    assert defs.resolve_implicit_global_asset_job_def().executor_def.name == "in_process"
    for job in defs.resolve_all_job_defs():
        assert job.executor_def.name == "in_process", job.name
