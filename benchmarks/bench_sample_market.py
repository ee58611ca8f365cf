"""Sample market generation time: one B3 year (250 sessions) x 6 underlyings, the default config.

Usage: uv run python benchmarks/bench_sample_market.py [--repeat 2] [--n-days 250] [--write-docs]

The target is under a minute on the project's 2-core machine. Reported: the full generation (files,
truth, manifest; best of ``--repeat``) and, separately, building the sessions in memory (simulation,
surfaces, forecasts, microstructure) so the COTAHIST formatting/writing share is visible. There is no
external reference to run side by side: nothing else generates COTAHIST.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from b3quant_models.sample_market import (
    SampleMarketConfig,
    generate_sample_market,
    iter_sessions,
    simulate_market,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import write_section

SECTION = "## Sample market generation"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--n-days", type=int, default=250)
    ap.add_argument(
        "--write-docs", action="store_true", help="replace the sample-market section of docs/benchmarks.md"
    )
    args = ap.parse_args()
    cfg = SampleMarketConfig(n_days=args.n_days)
    load = os.getloadavg()[0]

    times = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            m = generate_sample_market(d, cfg)
            times.append(time.perf_counter() - t)
            cot_mb = sum(p.stat().st_size for p in m.cotahist_paths) / 1e6
            truth_mb = sum(m.truth_path(k).stat().st_size for k in m.truth_files) / 1e6
    t = time.perf_counter()
    n_quotes = sum(len(s.quotes) for s in iter_sessions(simulate_market(cfg)))
    t_mem = time.perf_counter() - t
    best = min(times)
    c = m.counts

    lines = [
        "| what | value |",
        "|---|---:|",
        f"| full generation, best of {len(times)} (s) | **{best:.1f}** |",
        f"| all runs (s) | {', '.join(f'{x:.1f}' for x in times)} |",
        f"| sessions built in memory, no files (s) | {t_mem:.1f} |",
        f"| COTAHIST formatting + writing + truth/manifest (s, difference) | {best - t_mem:.1f} |",
        f"| sessions / s | {c['sessions'] / best:,.0f} |",
        f"| COTAHIST records (incl. headers/trailers) | {c['cotahist_records']:,} |",
        f"| option rows in files / cash rows | {c['option_rows']:,} / {c['cash_rows']:,} |",
        f"| truth option rows (every listed series, every day) | {c['truth_option_rows']:,} |",
        f"| COTAHIST size / truth parquet size (MB) | {cot_mb:.1f} / {truth_mb:.1f} |",
    ]
    assert n_quotes + 2 * c["sessions"] == c["cotahist_records"]
    header = (
        f"Measured {dt.date.today().isoformat()} on {platform.node() or 'host'} ({os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, 1-min load "
        f"average at start {load:.2f}: the machine is shared); `uv run python "
        f"benchmarks/bench_sample_market.py`. Default `SampleMarketConfig` ({c['sessions']} sessions from "
        f"{m.start}, {len(m.underlyings)} underlyings, weeklies on); target: under 60 s."
    )
    text = "\n".join([header, "", *lines])
    print(text)
    if args.write_docs:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
