"""Serving benchmark: latency and throughput of `bentoml serve` on 127.0.0.1, the load in its own process.

The server and the load generator run in two processes pinned apart with taskset (``--server-cpus`` and
``--client-cpus``; on a 2-core host one core each), so the client does not take the server's CPU. The load
generator is a small asyncio HTTP/1.1 client over keep-alive connections (pre-encoded requests, the body
read by Content-Length): one core of it sends several thousand requests/s, more than the server answers,
so the figures are the server's. Cases, each with a bounded request count:

* single-contract requests, sequential (concurrency 1: latency p50/p99) and at concurrency 8 (requests/s);
* batched requests (``--batch`` contracts each) at concurrency 8 (contracts/s).

predict_iv is measured with the latest day's stored quotes exactly as stored (price, book, volume, trades:
the service reuses the features it precomputed for those series) and with only a price per contract (a quote
the store does not have: the general path, contract features computed per request).

``--profile`` also runs the predict_iv request path in-process under cProfile (pydantic validation, the
request checks, the feature computation and the prediction: what the server's worker thread runs) and prints
where a request spends its time.

Needs a DuckDB with stored days: ``B3Q_DATA_DIR=/tmp/bento_perf uv run b3q demo --days 60``, then
``uv run python benchmarks/bench_serving.py --db /tmp/bento_perf/b3quant.duckdb [--write]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SECTION = "## Serving (BentoML)"
GOALS = {  # issue 13, on the 2-core reference host (one core for the server)
    "p99_ms": 20.0, "predict_rps_c8": 200.0, "batched_contracts_s": 10_000.0, "implied_vol_rps": 1_000.0,
}


# ------------------------------------------------------------------------------------------ load generator
async def _connection(host: str, port: int, requests: list[bytes], left: list[int], lat: list[float],
                      statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = 0
    try:
        while left[0] > 0:
            left[0] -= 1
            t0 = time.perf_counter()
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length, chunked = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            if chunked:
                while (size := int((await reader.readuntil(b"\r\n")).strip(), 16)) > 0:
                    await reader.readexactly(size + 2)
                await reader.readexactly(2)
            else:
                await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def loadgen(spec: dict) -> dict:
    """``spec``: host, port, path, bodies (JSON objects), total, concurrency -> requests/s and latencies."""
    host, path = spec["host"], spec["path"]
    reqs = []
    for b in spec["bodies"]:
        raw = json.dumps(b).encode()
        reqs.append(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
    lat: list[float] = []
    statuses: dict[int, int] = {}

    async def run() -> float:
        left = [spec["total"]]
        t0 = time.perf_counter()
        await asyncio.gather(*(_connection(host, spec["port"], reqs, left, lat, statuses)
                               for _ in range(spec["concurrency"])))
        return time.perf_counter() - t0

    wall = asyncio.run(run())
    ms = np.array(lat) * 1e3
    return {"requests": len(lat), "seconds": wall, "rps": len(lat) / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "statuses": statuses}


def run_load(spec: dict, cpus: str | None) -> dict:
    """The load generator in its own interpreter, pinned to ``cpus`` (apart from the server)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--loadgen", f.name]
    if cpus and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus, *cmd]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    finally:
        os.unlink(f.name)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if set(res["statuses"]) - {"200", "503"}:
        raise RuntimeError(f"{spec['path']}: unexpected answers {res['statuses']}")
    return res


def ok_rate(res: dict) -> float:
    """Requests/s answered 200 (a shed request delivers no contracts)."""
    return res["statuses"].get("200", 0) / res["seconds"]


def _shed(res: dict) -> str:
    """503s are BentoML shedding load (adaptive batching past its max latency, or max_concurrency): counted."""
    n = res["statuses"].get("503", 0)
    return f", **{n} of {res['requests']} answered 503 (overloaded)**" if n else ""


# ------------------------------------------------------------------------------------------ server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, port: int, cpus: str | None, workers: int, home: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bentoml", "serve", "bento.service:B3QuantService",
           "--host", "127.0.0.1", "--port", str(port)]
    if cpus and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus, *cmd]
    n = len(_cpu_list(cpus)) if cpus else (os.cpu_count() or 1)
    env = {**os.environ, "B3Q_DUCKDB_PATH": str(db), "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True",
           "B3Q_BENTO_WORKERS": str(workers), "NUMBA_NUM_THREADS": str(n), "OMP_NUM_THREADS": str(n)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _cpu_list(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"server not ready after {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ------------------------------------------------------------------------------------------ request bodies
def _opt(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def stored_contracts(db: Path, n: int) -> tuple[list[dict], list[dict], list[dict]]:
    """(implied_vol rows, predict_iv contracts as stored, predict_iv contracts with a price only) from the
    latest stored day's valid quotes (``n`` at most)."""
    import duckdb

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


# ------------------------------------------------------------------------------------------ profile
def profile_predict(db: Path, contracts: list[dict], n: int, top: int = 14) -> str:
    """cProfile of ``n`` single-contract predict_iv requests through the worker's code path, in-process."""
    import cProfile
    import pstats

    os.environ["B3Q_DUCKDB_PATH"] = str(db)
    from bento.schemas import ForecastRequest
    from bento.service import B3QuantService

    svc = B3QuantService.inner()

    def one(i: int) -> None:
        req = ForecastRequest.model_validate_json(json.dumps({"contracts": [contracts[i % len(contracts)]]}))
        _, job = svc._forecast_job(req.contracts, req.trade_date)
        svc._run_forecasts([job])

    for i in range(20):
        one(i)
    t = time.process_time()
    for i in range(n):
        one(i)
    cpu_ms = (time.process_time() - t) / n * 1e3
    prof = cProfile.Profile()
    prof.enable()
    for i in range(n):
        one(i)
    prof.disable()
    st = pstats.Stats(prof)
    total = max(st.total_tt, 1e-9)
    rows = []
    for (file, _line, func), (_, _, _, cum, _) in st.stats.items():  # type: ignore[attr-defined]
        rel = file.replace(str(ROOT) + "/", "")
        if rel.startswith(("bento/", "b3quant_models/")) or ("pydantic" in file and func == "model_validate_json"):
            rows.append((cum / total, f"`{rel.split('site-packages/')[-1]}:{func}`"))
    rows.sort(reverse=True)
    lines = [f"{cpu_ms:.1f} CPU ms per request without the profiler; share of the profiled time, cumulative:", ""]
    lines += ["| function | share |", "|---|---|"] + [f"| {name} | {share:.0%} |" for share, name in rows[:top]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path,
                    default=Path(os.environ.get("B3Q_DUCKDB_PATH", "/tmp/bento_perf/b3quant.duckdb")))
    ncpu = os.cpu_count() or 1
    ap.add_argument("--server-cpus", default="0" if ncpu <= 2 else f"0-{ncpu // 2 - 1}",
                    help="taskset CPU list of the server (default: the first half of the cores, core 0 on 2)")
    ap.add_argument("--client-cpus", default=str(ncpu - 1) if ncpu <= 2 else f"{ncpu // 2}-{ncpu - 1}",
                    help="taskset CPU list of the load generator (default: the other half)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--requests", type=int, default=400, help="requests per single-contract case")
    ap.add_argument("--batch", type=int, default=1000, help="contracts per batched request")
    ap.add_argument("--profile", type=int, default=200, help="profiled in-process requests (0: no profile)")
    ap.add_argument("--write", action="store_true", help="write the section of docs/benchmarks.md")
    ap.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.loadgen:
        print(json.dumps(loadgen(json.loads(Path(args.loadgen).read_text()))))
        return
    if not args.db.is_file():
        sys.exit(f"{args.db} not found: run `B3Q_DATA_DIR=/tmp/bento_perf uv run b3q demo --days 60` first")

    iv_rows, stored, priced = stored_contracts(args.db, args.batch)
    load0 = os.getloadavg()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    results: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        proc = start_server(args.db, port, args.server_cpus, args.workers, Path(tmp) / "bentoml", log)
        try:
            wait_ready(base, proc)
            cases = [("implied_vol", "", "rows", iv_rows), ("predict_iv", " (stored quote)", "contracts", stored),
                     ("predict_iv", " (new quote)", "contracts", priced)]
            for name, case, key, rows in cases:
                spec = {"host": "127.0.0.1", "port": port, "path": f"/{name}"}
                singles = [{key: [r]} for r in rows[:200]]
                run_load({**spec, "bodies": singles, "total": 50, "concurrency": 1}, args.client_cpus)  # warm-up
                seq = run_load({**spec, "bodies": singles, "total": args.requests, "concurrency": 1},
                               args.client_cpus)
                c8 = run_load({**spec, "bodies": singles, "total": args.requests * 2, "concurrency": 8},
                              args.client_cpus)
                rps_goal = GOALS["implied_vol_rps"] if name == "implied_vol" else GOALS["predict_rps_c8"]
                results.append((name + case, f"1 contract, sequential ({seq['requests']} requests)",
                                f"p50 {seq['p50_ms']:.1f} ms, p99 {seq['p99_ms']:.1f} ms{_shed(seq)}",
                                _goal(seq["p99_ms"] < GOALS["p99_ms"], f"p99 < {GOALS['p99_ms']:.0f} ms")))
                results.append((name + case, f"1 contract, concurrency 8 ({c8['requests']} requests)",
                                f"{ok_rate(c8):,.0f} requests/s, p99 {c8['p99_ms']:.1f} ms{_shed(c8)}",
                                _goal(ok_rate(c8) >= rps_goal, f">= {rps_goal:,.0f} requests/s")))
                n_b = max(24, args.requests // 10)
                batched = run_load({**spec, "bodies": [{key: rows}], "total": n_b, "concurrency": 8}, args.client_cpus)
                results.append((name + case, f"{len(rows)} contracts per request, concurrency 8 ({n_b} requests)",
                                f"{ok_rate(batched) * len(rows):,.0f} contracts/s, p99 {batched['p99_ms']:.0f} ms"
                                f"{_shed(batched)}",
                                _goal(ok_rate(batched) * len(rows) >= GOALS["batched_contracts_s"],
                                      f">= {GOALS['batched_contracts_s']:,.0f} contracts/s")))
                print(*results[-3:], sep="\n", flush=True)
        except Exception:
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            stop_server(proc)
    load1 = os.getloadavg()
    prof = profile_predict(args.db, priced, args.profile) if args.profile else ""
    text = render(args, results, load0, load1, prof)
    print("\n" + text)
    if args.write:
        from benchmarks._docs import write_section

        write_section(SECTION, text)


def _goal(ok: bool, goal: str) -> str:
    return f"{goal}: {'met' if ok else '**missed**'}"


def render(args: argparse.Namespace, results: list[tuple[str, ...]], load0: tuple[float, ...],
           load1: tuple[float, ...], prof: str) -> str:
    lines = [
        f"`uv run python benchmarks/bench_serving.py --db <demo>/b3quant.duckdb --write`: `bentoml serve "
        f"bento.service:B3QuantService` on 127.0.0.1, {args.workers} worker, pinned with taskset to CPU(s) "
        f"{args.server_cpus}; the load generator (asyncio, HTTP/1.1 keep-alive, its own process) pinned to CPU(s) "
        f"{args.client_cpus}. {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} "
        f"CPUs on the host; DuckDB `{args.db.name}` with {args.db.stat().st_size / 1e6:.0f} MB. 1-minute load "
        f"average {load0[0]:.1f} before and {load1[0]:.1f} after (the host is shared: with a load above its "
        "core count the server gets a fraction of its core, so the absolute figures are pessimistic and noisy). "
        "No promoted model: `predict_iv` served the persistence baseline (the feature pipeline runs either way).",
        "",
        "| endpoint | load | result | goal (issue 13) |",
        "|---|---|---|---|",
        *[f"| {' | '.join(r)} |" for r in results],
    ]
    if prof:
        lines += ["", "Where a single-contract `predict_iv` request with a new quote spends its time (`--profile`: "
                  "the worker's code path in-process under cProfile, the same host):", "", prof]
    lines += ["", HISTORY]
    return "\n".join(lines)


HISTORY = (
    "Earlier figures (the previous version of this script on a quieter host, the client sharing the server's "
    "2 cores): implied_vol p50 1.9 / p99 2.6 ms; predict_iv p50 10.9 / p99 15.4 ms (stored quote) and p50 24.9 / "
    "p99 34.8 ms (new quote); before the day context (a DuckDB connection, five reads and the whole feature "
    "builder per request) predict_iv was ~110 ms p50. Since then: concurrent predict_iv requests share one "
    "feature computation (`bento.coalesce`), the series history's 5-session mean runs as one groupby-rolling "
    "pass instead of a Python call per series (bit-identical), the ticker-to-series map is built once per day "
    "context instead of per request, and oversize batches are rejected before their rows are validated. What "
    "is left per request is pandas' per-call overhead in `compute_option_iv`, `contract_features` and the "
    "context join (the table above), about the same for 1 row as for 100: clients should batch."
    " Measured for this change on the loaded host, in-process and interleaved: `compute_option_iv` on 1 "
    "row 14.0 / 14.8 CPU ms before and 10.3 / 10.4 after (columns built as arrays, one frame); the "
    "5-session mean of `series_history` over the demo's 11,678 valid rows 3.05 s as `transform(lambda)` "
    "and 0.46 s as groupby-rolling, bit-identical; a 100-contract new-quote request's `_run_forecasts` "
    "1.44 s before and 0.86 s after under cProfile."
)


if __name__ == "__main__":
    main()
