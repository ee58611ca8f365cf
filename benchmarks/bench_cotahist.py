"""COTAHIST reader vs b3quant 0.1.18's parser, side by side in one run; and peak memory on 1 GB.

Usage: uv run python benchmarks/bench_cotahist.py [--size-mb 45] [--big-mb 1000] [--skip-big]

Speed: both parsers read the same >=40 MB file (the real B3 daily file's records repeated) with
all columns typed; ours is the best of 5 after a warm-up (numba compile), b3quant's the best of 3 after a first run.
Memory: a child process streams a ~1 GB file into DuckDB and reports its peak RSS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import RESULTS, build_large_file
from _docs import write_section

SECTION = "## COTAHIST reader vs b3quant 0.1.18"


def _times(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def speed(size_mb: float) -> dict:
    from b3quant.parsers.cotahist import COTAHISTParser

    from b3quant_models.cotahist import read_cotahist

    path = build_large_file(size_mb)
    mb = path.stat().st_size / 1e6
    rows = len(read_cotahist(path))  # warm-up: compiles the numba kernels
    ours_t = _times(lambda: read_cotahist(path), 5)
    ours = min(ours_t)
    import logging

    logging.getLogger("b3quant").setLevel(logging.WARNING)
    theirs_rows = len(COTAHISTParser().parse_file(path, instrument_filter="all"))
    theirs_t = _times(lambda: COTAHISTParser().parse_file(path, instrument_filter="all"), 3)
    theirs = min(theirs_t)
    return {
        "file_mb": round(mb, 1),
        "rows": rows,
        "b3quant_rows": theirs_rows,
        "ours_s": round(ours, 3),
        "b3quant_s": round(theirs, 3),
        "ours_rows_per_s": round(rows / ours),
        "b3quant_rows_per_s": round(theirs_rows / theirs),
        "speedup": round(theirs / ours, 1),
        "ours_range": f"{min(ours_t):.3f}-{max(ours_t):.3f}",
        "b3quant_range": f"{min(theirs_t):.3f}-{max(theirs_t):.3f}",
        "worst_case_speedup": round(min(theirs_t) / max(ours_t), 1),
    }


def _child_memory(path: str) -> None:
    import duckdb

    from b3quant_models.storage import load_cotahist_into_duckdb

    db = Path(path).with_suffix(".duckdb")
    db.unlink(missing_ok=True)
    t = time.perf_counter()
    with duckdb.connect(str(db)) as con:
        n, _ = load_cotahist_into_duckdb(path, con)
    elapsed = time.perf_counter() - t
    db.unlink(missing_ok=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB → MiB on Linux
    print(json.dumps({"rows": n, "seconds": round(elapsed, 1), "peak_rss_mib": round(peak)}))


def memory(big_mb: float) -> dict:
    path = build_large_file(big_mb, RESULTS / "COTAHIST_A_BENCH.TXT")
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path)], check=True, capture_output=True, text=True
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["file_mb"] = round(path.stat().st_size / 1e6)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=float, default=45)
    ap.add_argument("--big-mb", type=float, default=1000)
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--write-docs", action="store_true", help="replace this benchmark's section in docs")
    ap.add_argument("--child")
    a = ap.parse_args()
    if a.child:
        _child_memory(a.child)
        return
    s = speed(a.size_mb)
    cpus = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    lines = [
        f"Measured {dt.date.today()} on {platform.node()} ({cpus} CPUs, {platform.machine()}, Python "
        f"{platform.python_version()}, 1-min load average at start {load:.2f}: the machine is shared); "
        "`uv run python benchmarks/bench_cotahist.py --write-docs`. Both parsers read the same file (the real "
        "4 Jan 2016 daily file's records repeated, header and trailer rewritten) with all columns typed; "
        "ours is the best of 5 after a warm-up run, b3quant's the best of 3 after its first (counting) run.",
        "",
        "| parser | file | rows | seconds | rows/s |",
        "|---|---|---:|---:|---:|",
    ]
    for label, rows, secs, rps in (
        ("b3quant 0.1.18 `parse_file(all)`", s["b3quant_rows"], s["b3quant_s"], s["b3quant_rows_per_s"]),
        ("b3quant_models `read_cotahist`", s["rows"], s["ours_s"], s["ours_rows_per_s"]),
    ):
        lines.append(f"| {label} | {s['file_mb']} MB | {rows:,} | {secs} | {rps:,} |")
    lines += [
        "",
        f"- speedup: **{s['speedup']}x** (target: at least 20x); all runs: ours {s['ours_range']} s, b3quant "
        f"{s['b3quant_range']} s; our slowest run against b3quant's fastest: {s['worst_case_speedup']}x.",
    ]
    if not a.skip_big:
        m = memory(a.big_mb)
        lines.append(
            f"- memory: `load_cotahist_into_duckdb` streamed a {m['file_mb']} MB yearly-size file "
            f"({m['rows']:,} records) into a DuckDB file in {m['seconds']} s with a peak RSS of "
            f"**{m['peak_rss_mib']} MiB** (target: under 2 GB), measured in a child process."
        )
    text = "\n".join(lines)
    print(text)
    if a.write_docs:
        write_section(SECTION, text)

if __name__ == "__main__":
    main()
