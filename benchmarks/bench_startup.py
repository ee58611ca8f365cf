"""Start-up benchmark: importing the code location and the service, as ratios to their frameworks.

Two ratios, measured in one run on fresh interpreters (``python -c "import ..."``, wall time of the whole
process, so interpreter start counts on both sides):

* ``import b3quant_assets.definitions`` (what ``dagster dev``, the daemon, sensors and every run load) vs
  ``import dagster, pandas``;
* ``import bento.service`` (what ``bentoml serve`` loads) vs ``import bentoml, pandas``.

The four commands are run in interleaved rounds (each round runs each once, in a rotated order) so that
load on a shared machine hits all of them alike; the medians are reported. Goal (issue 9): both ratios
<= 1.5. Writes its section of docs/benchmarks.md with ``--write``.

    uv run python benchmarks/bench_startup.py --repeats 7 --write
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._docs import write_section  # noqa: E402

SECTION = "## Start-up (imports)"
COMMANDS = {
    "code location": "import b3quant_assets.definitions",
    "dagster, pandas": "import dagster, pandas",
    "bento.service": "import bento.service",
    "bentoml, pandas": "import bentoml, pandas",
}
PAIRS = (("code location", "dagster, pandas"), ("bento.service", "bentoml, pandas"))
GOAL = 1.5


def run_once(code: str, env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def measure(repeats: int, env: dict[str, str]) -> dict[str, list[float]]:
    names = list(COMMANDS)
    times: dict[str, list[float]] = {n: [] for n in names}
    for n in names:  # warm the OS file cache and bytecode once; not counted
        run_once(COMMANDS[n], env)
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            times[n].append(run_once(COMMANDS[n], env))
        print(f"round {r + 1}/{repeats}: " + ", ".join(f"{n} {times[n][-1]:.2f} s" for n in names), flush=True)
    return times


def render(times: dict[str, list[float]], repeats: int) -> str:
    med = {n: statistics.median(v) for n, v in times.items()}
    lines = [
        f"`uv run python benchmarks/bench_startup.py --repeats {repeats} --write` — fresh interpreter per import, "
        f"{repeats} interleaved rounds, median wall time of the whole process (interpreter start included on both "
        f"sides); {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, "
        "machine shared with other jobs while measured (absolute seconds are noisy; the ratios are the result).",
        "",
        "| import | median s | min s | reference | ratio | goal |",
        "|---|---|---|---|---|---|",
    ]
    for a, b in PAIRS:
        ratio = med[a] / med[b]
        lines.append(f"| `{COMMANDS[a]}` | {med[a]:.2f} | {min(times[a]):.2f} | `{COMMANDS[b]}` {med[b]:.2f} s "
                     f"| **{ratio:.2f}×** | ≤ {GOAL}× {'met' if ratio <= GOAL else 'missed'} |")
    lines += [
        "",
        "What keeps it there: library code that needs numba, scipy, lightgbm/xgboost, optuna, shap, matplotlib, "
        "mlflow, python-bcb or the COTAHIST downloader is imported inside the asset bodies and functions that use "
        "it (`tests/test_architecture.py` fails when the code location or `bento.service` loads one of them), "
        "models are registered as `\"module:Class\"`, and the B3 session list behind the partition exclusions is "
        "cached under `$B3Q_DATA_DIR/cache` (exchange-calendars is imported only to rebuild it). See "
        "docs/architecture.md.",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--write", action="store_true", help="write the section of docs/benchmarks.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="b3q-startup-") as tmp:
        # A data folder of its own, with the session cache built once (as after any first start).
        env = {**os.environ, "B3Q_DATA_DIR": tmp, "DAGSTER_HOME": tmp, "BENTOML_HOME": str(Path(tmp) / "bentoml"),
               "BENTOML_DO_NOT_TRACK": "True", "B3Q_OFFLINE": "1"}
        times = measure(args.repeats, env)
    text = render(times, args.repeats)
    print("\n" + text)
    if args.write:
        write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
