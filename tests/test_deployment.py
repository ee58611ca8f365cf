"""docker-compose.yml against the code: the services exist, every variable the stack sets is one the code
reads, and with each service's environment the code's settings point promotion, the service and the run
containers at the same volume, the MLflow server and the Postgres instance. No Docker engine is needed:
the files are parsed (PyYAML) and the settings evaluated with each service's environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from b3quant_models import settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
INSTANCE = yaml.safe_load((ROOT / "deploy/dagster.yaml").read_text())
DAGSTER = ("dagster-code", "dagster-webserver", "dagster-daemon")
BENTO = ("bento", "bento-gpu")
DOTENV = {"POSTGRES_USER": "u", "POSTGRES_PASSWORD": "p", "MINIO_ROOT_USER": "m", "MINIO_ROOT_PASSWORD": "mp",
          "B3Q_BENTO_TOKEN": "t"}


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${X}``, ``${X:-default}`` and ``${X:?error}`` (what this file uses)."""
    def sub(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if name in env:
            return env[name]
        if op == ":-":
            return arg
        raise KeyError(f"{name} is required: {arg}")

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", sub, value)


def _env(service: str) -> dict[str, str]:
    return {k: _interpolate(str(v), DOTENV) for k, v in (SERVICES[service].get("environment") or {}).items()}


def _code_env_vars() -> set[str]:
    """Variable names the platform's code reads (``os.environ.get("X"``, ``os.environ["X"]``)."""
    pat = re.compile(r"""environ(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]+)["']""")
    return {m for pkg in ("b3quant_models", "b3quant_assets", "bento") for p in (ROOT / pkg).rglob("*.py")
            for m in pat.findall(p.read_text())}


def _mounts(service: str) -> dict[str, str]:
    """volume name -> mount point of a service's named volumes."""
    out = {}
    for v in SERVICES[service].get("volumes", []):
        src, dst = str(v).split(":")[:2]
        out[src] = dst
    return out


def test_stack_has_every_service() -> None:
    assert {"postgres", "minio", "mlflow", *DAGSTER, "bento", "bento-gpu"} <= set(SERVICES)


def test_platform_variables_are_ones_the_code_reads() -> None:
    code = _code_env_vars()
    assert {"B3Q_DATA_DIR", "BENTOML_HOME", "MLFLOW_TRACKING_URI", "B3Q_DUCKDB_PATH", "DAGSTER_HOME"} <= code
    ours = {k for s in SERVICES for k in _env(s) if k.startswith("B3Q_")} | set(INSTANCE["run_launcher"]["config"][
        "env_vars"]) - {k for k in INSTANCE["run_launcher"]["config"]["env_vars"] if k.startswith("DAGSTER_POSTGRES")}
    assert ours - code == set(), "variables set by the stack that no code reads (typo?)"


@pytest.mark.parametrize("service", DAGSTER)
def test_dagster_services_share_the_instance_and_mlflow(service: str, monkeypatch) -> None:
    env = _env(service)
    for name in ("B3Q_DATA_DIR", "BENTOML_HOME", "MLFLOW_TRACKING_URI", "DAGSTER_HOME"):
        assert name in env, f"{service} must set {name}"
    # the instance's Postgres settings are all given, and name the postgres service
    pg = INSTANCE["storage"]["postgres"]["postgres_db"]
    for field in ("hostname", "username", "password", "db_name"):
        assert pg[field]["env"] in env
    assert env["DAGSTER_POSTGRES_HOST"] == "postgres"
    assert env["DAGSTER_POSTGRES_DB"] == SERVICES["postgres"]["environment"]["POSTGRES_DB"]
    # the code's settings under this environment
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from b3quant_assets.defs.models.resources import MlflowTracking

    assert MlflowTracking().uri() == "http://mlflow:5000"
    assert settings.dagster_home() == Path("/opt/dagster/home")
    mlflow_port = re.search(r"--port (\d+)", SERVICES["mlflow"]["command"]).group(1)
    assert env["MLFLOW_TRACKING_URI"] == f"http://mlflow:{mlflow_port}"


def test_promotion_writes_where_the_service_reads(monkeypatch) -> None:
    """Promotion (a run container of the code server's image) and the BentoML service resolve the same
    model store and DuckDB file on the same named volume."""
    def paths(env: dict[str, str]) -> tuple[Path, Path]:
        with monkeypatch.context() as m:
            for k in ("B3Q_DATA_DIR", "BENTOML_HOME", "B3Q_DUCKDB_PATH"):
                m.delenv(k, raising=False)
            for k, v in env.items():
                m.setenv(k, v)
            return settings.bento_models_dir(), settings.duckdb_path()

    launcher = INSTANCE["run_launcher"]["config"]
    run_env = {k: v for k, v in _env("dagster-daemon").items() if k in launcher["env_vars"]}
    for name in ("B3Q_DATA_DIR", "BENTOML_HOME", "MLFLOW_TRACKING_URI"):
        assert name in launcher["env_vars"] and name in run_env  # passed on from the daemon to the run
    written = paths(run_env)
    (run_vol, run_mount), = (v.split(":")[:2] for v in launcher["container_kwargs"]["volumes"])
    assert COMPOSE["volumes"][run_vol]["name"] == run_vol  # named: the launcher finds it outside compose
    assert launcher["network"] == COMPOSE["networks"]["b3q"]["name"]
    for service in BENTO:
        env = _env(service)
        assert paths(env) == written
        assert _mounts(service)[run_vol] == run_mount
        assert all(p.is_relative_to(run_mount) for p in written)
        assert env["B3Q_BENTO_HOST"] == "0.0.0.0"  # reachable through the published port
    assert _mounts("dagster-code")[run_vol] == run_mount
    gpu = SERVICES["bento-gpu"]
    assert _env("bento-gpu")["B3Q_BENTO_GPU"] == "1"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_mlflow_server_uses_postgres_and_minio() -> None:
    cmd = " ".join(SERVICES["mlflow"]["command"].split())
    backend = re.search(r"--backend-store-uri (\S+)", cmd).group(1)
    assert re.fullmatch(r"postgresql://\S+@postgres:5432/(\w+)", _interpolate(backend, DOTENV))
    db = backend.rsplit("/", 1)[1]
    assert f"CREATE DATABASE {db};" in (ROOT / "deploy/postgres-init.sql").read_text()
    bucket = re.search(r"--artifacts-destination s3://([\w-]+)", cmd).group(1)
    assert f"s3/{bucket}" in SERVICES["minio-init"]["entrypoint"]
    env = _env("mlflow")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_ACCESS_KEY_ID"] == DOTENV["MINIO_ROOT_USER"]


def test_code_server_and_ports() -> None:
    ws = yaml.safe_load((ROOT / "deploy/workspace.yaml").read_text())["load_from"][0]["grpc_server"]
    cmd = SERVICES["dagster-code"]["command"]
    assert ws["host"] == "dagster-code" and f"-p {ws['port']}" in cmd and "-m b3quant_assets.definitions" in cmd
    assert _env("dagster-code")["DAGSTER_CURRENT_IMAGE"] == SERVICES["dagster-code"]["image"]
    published = [p for s in SERVICES.values() for p in s.get("ports", [])]
    assert published and all(str(p).startswith("127.0.0.1:") for p in published)
    for line in (ROOT / "deploy/Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), src
