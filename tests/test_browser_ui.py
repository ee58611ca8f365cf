"""The Dagster UI in a real browser, on a small sample market: every asset is in the lineage graphs, and a
day's asset page shows its surface picture. Debian's chromium over the DevTools protocol (tests/_cdp.py);
skipped where chromium is absent (``.ci/run`` installs it). Screenshots go to ``$B3Q_UI_SCREENSHOTS``
(default: the test's temporary folder); docs/img/ holds the ones the docs show."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _cdp import Browser, chromium_path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = chromium_path()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed "
                                                   "(apt-get install -y chromium; .ci/run does)")]
DAYS = 10
STARTUP_S = 900  # the code location loads in seconds on an idle machine, minutes on a loaded one
SKIP_NUX = ("(() => { const s = [...document.querySelectorAll('button')].find(x => x.innerText.trim() === 'Skip');"
            " if (s) s.click(); return true; })()")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(data: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("B3Q_FIRST_SESSION", "B3Q_LAST_SESSION",
                                                              "B3Q_DUCKDB_PATH", "B3Q_LANDING_DIR")}
    return {**env, "B3Q_DATA_DIR": str(data), "DAGSTER_HOME": str(data / "dagster_home"), "B3Q_OFFLINE": "1",
            "BENTOML_HOME": str(data / "bentoml")}


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DAYS-session sample market, ingested through the surface pictures (``b3q run``, no models)."""
    from b3quant_models.sample_market import SampleMarketManifest

    data = tmp_path_factory.mktemp("ui")
    (data / "dagster_home").mkdir()
    b3q = [sys.executable, "-m", "b3quant_assets.cli"]
    env = _env(data)
    subprocess.run([*b3q, "sample-market", "--days", str(DAYS), "--out", str(data / "landing")], env=env,
                   cwd=ROOT, check=True, capture_output=True, timeout=1800)
    m = SampleMarketManifest.load(data / "landing")
    out = subprocess.run([*b3q, "run", "--start", str(m.start), "--end", str(m.end), "--offline",
                          "--log-level", "WARNING"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return data


@pytest.fixture(scope="module")
def ui(market: Path):
    """``dagster dev`` on a free loopback port; the base URL once the code location is loaded."""
    port = _free_port()
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.Popen([str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                            cwd=ROOT, env=_env(market), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    query = json.dumps({"query": "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"})
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert proc.poll() is None, f"dagster dev exited with {proc.returncode}"
            try:
                req = urllib.request.Request(f"{base}/graphql", data=query.encode(),
                                             headers={"Content-Type": "application/json"})
                body = json.loads(urllib.request.urlopen(req, timeout=10).read())
                if [e["loadStatus"] for e in body["data"]["workspaceOrError"]["locationEntries"]] == ["LOADED"]:
                    break
            except (OSError, KeyError, TypeError, ValueError):
                pass
            assert time.monotonic() < deadline, f"the code location did not load in {STARTUP_S} s"
            time.sleep(2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # dagster dev and the webserver/daemon it started
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


@pytest.fixture(scope="module")
def browser():
    b = Browser(CHROMIUM)
    yield b
    b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(os.environ.get("B3Q_UI_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))


def _groups() -> dict[str, list[str]]:
    from b3quant_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    out: dict[str, list[str]] = {}
    for key in graph.get_all_asset_keys():
        out.setdefault(graph.get(key).group_name, []).append(key.to_user_string())
    return out


def test_every_asset_is_in_its_groups_lineage_graph(ui: str, browser: Browser, shots: Path) -> None:
    groups = _groups()
    assert sum(len(v) for v in groups.values()) >= 25
    for group, assets in sorted(groups.items()):
        # the models group (trees, deep models, ensembles: 20+ nodes stacked in one column) needs a tall page:
        # the graph draws only the nodes inside the viewport
        browser.resize(*((1800, 7000) if len(assets) > 12 else (1600, 1000)))
        browser.goto(f"{ui}/locations/b3quant_ml/asset-groups/{group}/lineage")
        names = json.dumps(assets)
        # a node of the group's own graph shows its name and its status rows ("Latest event", "Partitions")
        try:
            browser.wait_for(f"{names}.every(n => document.body.innerText.includes(n))"
                             " && document.body.innerText.includes('Latest event')", timeout=180)
        except TimeoutError:
            missing = browser.js(f"{names}.filter(n => !document.body.innerText.includes(n))")
            browser.screenshot(shots / f"ui_lineage_{group}_failed.png")
            raise AssertionError(f"group {group}: not in the lineage page after 180 s: {missing}") from None
        browser.js(SKIP_NUX)
        if group == "analytics":
            time.sleep(2)
            browser.screenshot(shots / "ui_lineage_analytics.png")


def test_a_days_asset_page_shows_its_surface_picture(ui: str, market: Path, browser: Browser, shots: Path) -> None:
    from b3quant_models.sample_market import SampleMarketManifest

    day = str(SampleMarketManifest.load(market / "landing").end)
    browser.goto(f"{ui}/assets/surface_pictures?view=partitions&partition={day}")
    browser.wait_for("document.body.innerText.includes('surface_PETR4')", timeout=180)
    browser.js(SKIP_NUX)
    opened = browser.wait_for(
        "(() => { const row = [...document.querySelectorAll('tr')].find(r => r.innerText.startsWith('surface_PETR4'));"
        " const a = row && [...row.querySelectorAll('*')].find(e => !e.children.length"
        " && e.innerText.trim() === '[Show Markdown]'); if (a) { a.click(); return true; } return false; })()",
        timeout=60)
    assert opened
    img = browser.wait_for(
        "(() => { const i = [...document.querySelectorAll('img')].find(i => i.src.startsWith('data:image/png')"
        " && i.complete && i.naturalWidth > 0); return i ? [i.alt, i.naturalWidth, i.naturalHeight] : null; })()",
        timeout=60)
    assert img[0] == f"PETR4 {day}" and img[1] >= 400 and img[2] >= 100
    time.sleep(1)
    browser.screenshot(shots / "ui_surface_picture.png")
