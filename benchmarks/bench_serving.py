"""Serving benchmark: latency and throughput of `bentoml serve` on 127.0.0.1.

Starts the service (pinned to ``--cpus`` cores with taskset when available, so the figure matches a
2-core deployment), waits for /readyz, then measures with bounded request counts:

* single-contract request latency (p50/p99, sequential) for implied_vol and predict_iv;
* throughput in contracts/s at client concurrency 1, 4, 16 for single-contract requests (what adaptive
  batching merges) and for batched requests of ``--batch`` contracts.

predict_iv is measured twice: with the latest day's stored quotes exactly as stored (price, book, volume,
trades: the service reuses the features it precomputed for those series) and with only a price per
contract (a quote the store does not have: the general path, contract features computed per request).

Needs a DuckDB with stored days: ``B3Q_DATA_DIR=/tmp/bento_dev uv run b3q demo --days 20``, then
``uv run python benchmarks/bench_serving.py --db /tmp/bento_dev/b3quant.duckdb``. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, port: int, cpus: int, workers: int, home: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bentoml", "serve", "bento.service:B3QuantService",
           "--host", "127.0.0.1", "--port", str(port)]
    if cpus and shutil.which("taskset") and (os.cpu_count() or 1) > cpus:
        cmd = ["taskset", "-c", f"0-{cpus - 1}", *cmd]
    env = {**os.environ, "B3Q_DUCKDB_PATH": str(db), "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True",
           "B3Q_BENTO_WORKERS": str(workers), "NUMBA_NUM_THREADS": str(max(cpus, 1))}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"server not ready after {timeout:.0f} s")


def _opt(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def stored_contracts(db: Path, n: int) -> tuple[list[dict], list[dict], list[dict]]:
    """(implied_vol rows, predict_iv contracts as stored, predict_iv contracts with a price only) from the
    latest stored day's valid quotes."""
    with duckdb.connect(str(db), read_only=True) as con:
        df = con.execute(
            "SELECT * FROM b3.option_iv WHERE trade_date = (SELECT max(trade_date) FROM b3.option_iv) "
            "AND iv_reason = 'ok' ORDER BY ticker LIMIT ?", [n]
        ).fetchdf()
    price = np.where(df["iv_source"] == "mid", df["price_mid"], df["price_close"])
    iv_rows = [{"price": float(p), "spot": float(r.spot), "strike": float(r.strike), "option_type": r.option_type,
                "expiry": str(r.expiry.date())} for p, r in zip(price, df.itertuples(), strict=True)]
    base = [{"underlying": r.underlying_ticker, "option_type": r.option_type, "strike": float(r.strike),
             "expiry": str(r.expiry.date())} for r in df.itertuples()]
    stored = [{**b, "price": _opt(r.price_close), "best_bid": _opt(r.best_bid), "best_ask": _opt(r.best_ask),
               "volume": _opt(r.volume), "trades": int(r.trades)} for b, r in zip(base, df.itertuples(), strict=True)]
    priced = [{**b, "price": float(p)} for b, p in zip(base, price, strict=True)]
    return iv_rows, stored, priced


def latency(client: httpx.Client, path: str, body: dict, n: int) -> tuple[float, float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.post(path, json=body)
        times.append(time.perf_counter() - t0)
        r.raise_for_status()
    ms = np.array(times) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def throughput(base: str, path: str, bodies: list[dict], per_request: int, concurrency: int) -> float:
    """Contracts/s with ``concurrency`` clients sending ``bodies`` (each of ``per_request`` contracts)."""
    def worker(chunk: list[dict]) -> None:
        with httpx.Client(base_url=base, timeout=60) as c:
            for b in chunk:
                c.post(path, json=b).raise_for_status()

    chunks = [bodies[i::concurrency] for i in range(concurrency)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as ex:
        list(ex.map(worker, chunks))
    return len(bodies) * per_request / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=Path(os.environ.get("B3Q_DUCKDB_PATH", "/tmp/bento_dev/b3quant.duckdb")))
    ap.add_argument("--cpus", type=int, default=2, help="cores the server is pinned to (0: no pinning)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--latency-requests", type=int, default=500)
    ap.add_argument("--requests", type=int, default=200, help="requests per throughput level")
    ap.add_argument("--batch", type=int, default=100, help="contracts per batched request")
    ap.add_argument("--skip-predict", action="store_true")
    args = ap.parse_args()
    if not args.db.is_file():
        sys.exit(f"{args.db} not found: run `B3Q_DATA_DIR=/tmp/bento_dev uv run b3q demo --days 20` first")

    iv_rows, stored, priced = stored_contracts(args.db, args.batch)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        proc = start_server(args.db, port, args.cpus, args.workers, Path(tmp) / "bentoml", log)
        try:
            wait_ready(base, proc)
            results: list[tuple[str, str, str]] = []
            endpoints = [("implied_vol", "", "rows", iv_rows)]
            if not args.skip_predict:
                endpoints += [("predict_iv", " (stored quote)", "contracts", stored),
                              ("predict_iv", " (new quote)", "contracts", priced)]
            with httpx.Client(base_url=base, timeout=60) as c:
                for name, case, key, rows in endpoints:
                    one = {key: rows[:1]}
                    latency(c, f"/{name}", one, 30)  # warm-up
                    n_lat = args.latency_requests if name == "implied_vol" else max(args.latency_requests // 2, 50)
                    p50, p99 = latency(c, f"/{name}", one, n_lat)
                    results.append((name + case, f"single contract, sequential ({n_lat} requests)",
                                    f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"))
            for name, case, key, rows in endpoints:
                n_req = args.requests if name == "implied_vol" else max(args.requests // 2, 40)
                for conc in (1, 4, 16):
                    singles = [{key: [rows[i % len(rows)]]} for i in range(n_req)]
                    tp1 = throughput(base, f"/{name}", singles, 1, conc)
                    batched = [{key: rows}] * max(n_req // 4, conc)
                    tpb = throughput(base, f"/{name}", batched, len(rows), conc)
                    results.append((name + case, f"concurrency {conc}",
                                    f"{tp1:,.0f} contracts/s (1-contract requests), "
                                    f"{tpb:,.0f} contracts/s ({len(rows)}-contract requests)"))
        except Exception:
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    print(f"\nbentoml serve, {args.workers} worker(s), pinned to {args.cpus or 'all'} cores; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs on the host; DuckDB {args.db}\n")
    print("| endpoint | load | result |\n|---|---|---|")
    for row in results:
        print(f"| {' | '.join(row)} |")


if __name__ == "__main__":
    main()
