"""The layering rules of docs/architecture.md, checked on the source (AST) and in fresh interpreters.

- the library (``b3quant_models``) imports neither Dagster nor BentoML (nor ``bento``/``b3quant_assets``)
  at module level; ``models.model_store`` imports BentoML inside its functions only;
- the Dagster package (``b3quant_assets``) never imports ``bento`` (it is not in the wheel);
- the library's imports (at module level or inside functions) form no cycle;
- importing ``b3quant_models.models``, the code location or the service loads no framework it does not use.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules(package: str) -> dict[str, Path]:
    out = {}
    for p in sorted((ROOT / package).rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(module: str, path: Path, *, top_level_only: bool) -> set[str]:
    """Absolute names of what ``module`` imports (relative imports resolved); optionally only the
    imports executed at import time (not inside functions, not under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    pkg = base[: len(base) - node.level + 1]
                    mod = ".".join(pkg + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import submodule`
            elif top_level_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            elif top_level_only and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit([n for n in getattr(node, field, []) if isinstance(n, ast.stmt | ast.ExceptHandler)])

    visit(tree.body)
    return found


def _roots(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_library_imports_neither_dagster_nor_bentoml() -> None:
    bad = {}
    for mod, path in _modules("b3quant_models").items():
        everywhere = _roots(_imports(mod, path, top_level_only=False))
        at_import = _roots(_imports(mod, path, top_level_only=True))
        forbidden = {"dagster", "bento", "b3quant_assets"} | ({"bentoml"} if mod != "b3quant_models.models.model_store"
                                                             else set())
        hits = (everywhere & forbidden) | (at_import & {"bentoml"})
        if hits:
            bad[mod] = sorted(hits)
    assert not bad, f"library modules importing Dagster/BentoML/bento: {bad}"


def test_dagster_package_never_imports_bento() -> None:
    bad = {m: sorted(n for n in _imports(m, p, top_level_only=False) if n.split(".")[0] == "bento")
           for m, p in _modules("b3quant_assets").items()}
    assert not {m: v for m, v in bad.items() if v}, bad


def test_no_import_cycle_in_the_library() -> None:
    mods = _modules("b3quant_models")
    # A module's own ancestor packages are initialised before it runs (``from . import x`` names one):
    # an edge back to them is how packages work, not a cycle, so it is left out.
    graph = {m: {n for n in _imports(m, p, top_level_only=False) if n in mods and n != m and not m.startswith(n + ".")}
             for m, p in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return [*stack[stack.index(n):], n]
            if n not in state and (cycle := dfs(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := dfs(m)):
            pytest.fail(f"import cycle: {' -> '.join(cycle)}")


def _loaded_after(statement: str, names: tuple[str, ...]) -> list[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps([n for n in {list(names)!r} if n in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


HEAVY = ("optuna", "shap", "matplotlib", "lightgbm", "xgboost", "torch")


def test_models_package_loads_no_heavy_framework() -> None:
    assert _loaded_after("import b3quant_models.models", (*HEAVY, "mlflow", "bentoml", "dagster")) == []


def test_code_location_defers_heavy_libraries() -> None:
    """What only runs inside asset bodies is imported there (issue 9: start-up)."""
    heavy = (*HEAVY, "mlflow", "bentoml", "bcb", "numba", "scipy", "sklearn")
    assert _loaded_after("import b3quant_assets.definitions", heavy) == []


def test_service_module_defers_heavy_libraries() -> None:
    """The service imports numba (the IV solver, compiled in ``__init__``), scipy and pandera when used, duckdb on
    the first read, and BentoML's server app (aiohttp, circus, zmq) only where the server builds it."""
    heavy = (*HEAVY, "mlflow", "dagster", "sklearn", "bcb", "numba", "scipy", "pandera", "exchange_calendars",
             "duckdb", "_bentoml_impl.server.app", "aiohttp", "circus", "zmq")
    assert _loaded_after("import bento.service", heavy) == []
