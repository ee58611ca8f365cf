"""Real-scale year, files to features: the sample market at B3's full size through every partitioned asset.

Usage: uv run python benchmarks/bench_realscale.py [--sessions 250] [--market DIR] [--work DIR]
       [--profile-sessions 2] [--no-backtest] [--write-docs]

1. Generates ``real_scale_config(n_days=--sessions)`` (170 underlyings, ~13 thousand option rows a
   session) into ``--market`` unless it is already there (cached: generating a year takes a while).
2. Runs ``b3quant_assets.demo.run_demo(first, last, models=False)`` — what ``b3q run`` does: one
   in-process Dagster run, single-run backfill over the whole range, DuckDB IO manager — and reads
   each step's wall time (and its input-load / compute / output-store split) from the run's event
   log. A sampler thread records the RSS of the process and its children (the surface fit's spawned
   workers) every 0.1 s, so each step gets its own peak.
3. Times the backtest engine (``run_backtest``, both instruments) on the stored ``option_iv`` of the
   range: persistence (forecast = today's IV, never trades), a random signal (heavy trading), the
   sample market's optimal forecast and the oracle.
4. ``--profile-sessions K`` re-runs the pipeline on the first K sessions under cProfile and sums the
   time by the library function each asset calls (where the time goes).

Each phase runs in its own child process so its peak RSS is its own. There is no external reference
to run side by side: the goal is absolute (a real-scale year in under 15 minutes on 2 cores), so the
machine's load average is reported with it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import write_section  # noqa: E402

SECTION = "## Real-scale year"
GOAL_S = 15 * 60
PROFILE_BUCKETS = {  # library entry point (cProfile "file:function" suffix) -> label
    "cotahist/reader.py:read_cotahist_with_quarantine": "COTAHIST reader",
    "quotes.py:clean_quotes": "quote cleaning",
    "option_iv.py:compute_option_iv": "IV and Greeks (compute_option_iv)",
    "surface/batch.py:fit_surfaces_by_day": "surface fits (fit_surfaces_by_day)",
    "surface/arbitrage.py:butterfly_violations": "arbitrage checks on the stored fits (asset checks)",
    "surface/arbitrage.py:calendar_violations": "arbitrage checks on the stored fits (asset checks)",
    "surface/grid.py:surface_grid": "surface grid (surface_grid)",
    "surface/plot.py:plot_surface": "surface plots (last day)",
    "features/option.py:build_option_features": "option features (build_option_features)",
    "shared/checks.py:pandera_check_result": "pandera checks",
    "shared/resources.py:handle_output": "DuckDB writes (IO manager)",
    "shared/resources.py:load_input": "DuckDB reads (IO manager)",
}


class RssSampler(threading.Thread):
    """RSS (MiB) and CPU seconds of this process and its children every ``interval`` s: per-step peaks
    and CPU time later. CPU time matters on a shared machine: wall time there includes waiting for a
    core, CPU time does not (a step's CPU seconds are about its wall seconds on free cores, less where
    it runs on two cores at once)."""

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc, self.interval, self.samples = psutil.Process(), interval, []
        self._stop_evt = threading.Event()

    def _cpu(self, kids) -> float:
        c = self.proc.cpu_times()
        done = c.children_user + c.children_system  # children already waited for
        return c.user + c.system + done + sum(sum(k.cpu_times()[:2]) for k in kids)

    def run(self) -> None:
        while not self._stop_evt.is_set():
            try:
                kids = self.proc.children(recursive=True)
                own = self.proc.memory_info().rss
                rss_kids = sum(k.memory_info().rss for k in kids)
                cpu = self._cpu(kids)
            except Exception:  # a child exiting between listing and reading
                continue
            self.samples.append((time.time(), own / 2**20, rss_kids / 2**20, cpu))
            self._stop_evt.wait(self.interval)

    def stop(self) -> None:
        self._stop_evt.set()
        self.join()

    def peak(self, t0: float = 0.0, t1: float = float("inf")) -> tuple[float, float]:
        """(peak own RSS, peak own + children RSS) within [t0, t1]."""
        win = [(o, o + k) for t, o, k, _ in self.samples if t0 <= t <= t1] or [(0.0, 0.0)]
        return max(w[0] for w in win), max(w[1] for w in win)

    def cpu(self, t0: float, t1: float) -> float:
        """CPU seconds (process + children) spent between the samples nearest ``t0`` and ``t1``."""
        if not self.samples:
            return float("nan")

        def at(t: float) -> float:
            return min(self.samples, key=lambda x: abs(x[0] - t))[3]

        return max(at(t1) - at(t0), 0.0)


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _env(market: Path, work: Path) -> None:
    """Point the platform at the cached market (landing) and a scratch data folder / Dagster instance."""
    os.environ["B3Q_DATA_DIR"] = str(work)
    os.environ["B3Q_LANDING_DIR"] = str(market)
    os.environ["B3Q_OFFLINE"] = "1"
    home = work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)


# --- phases (each in a child process) ------------------------------------------------------------


def phase_generate(args: argparse.Namespace) -> dict:
    from b3quant_models.sample_market import generate_sample_market, is_generated, real_scale_config

    cfg = real_scale_config(n_days=args.sessions)
    market = Path(args.market)
    if is_generated(market, cfg):
        from b3quant_models.sample_market import SampleMarketManifest

        m = SampleMarketManifest.load(market)
        return {"cached": True, "counts": m.counts, "start": str(m.start), "end": str(m.end)}
    t = time.perf_counter()
    m = generate_sample_market(market, cfg)
    return {
        "cached": False, "seconds": time.perf_counter() - t, "peak_rss_mib": _maxrss_mib(), "counts": m.counts,
        "start": str(m.start), "end": str(m.end),
        "cotahist_mb": sum(p.stat().st_size for p in m.cotahist_paths) / 1e6,
        "truth_mb": sum(m.truth_path(k).stat().st_size for k in m.truth_files) / 1e6,
    }  # fmt: skip


def _step_table(instance, run_id: str, sampler: RssSampler) -> list[dict]:
    """Per step: wall time, split into loading inputs, computing, storing outputs; peak RSS."""
    from dagster import DagsterEventType

    steps: dict[str, dict] = {}
    for rec in instance.get_records_for_run(run_id).records:
        e = rec.event_log_entry
        ev = e.dagster_event
        if ev is None or ev.step_key is None:
            continue
        s = steps.setdefault(ev.step_key, {"step": ev.step_key})
        kind = ev.event_type
        if kind == DagsterEventType.STEP_START:
            s["start"] = e.timestamp
        elif kind == DagsterEventType.LOADED_INPUT:
            s["inputs_loaded"] = e.timestamp
        elif kind == DagsterEventType.STEP_OUTPUT:
            s.setdefault("first_output", e.timestamp)
        elif kind in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            s["end"] = e.timestamp
            s["ok"] = kind == DagsterEventType.STEP_SUCCESS
    out = []
    for s in sorted(steps.values(), key=lambda x: x.get("start", 0)):
        if "start" not in s or "end" not in s:
            continue
        loaded = s.get("inputs_loaded", s["start"])
        first = s.get("first_output", s["end"])
        own, total = sampler.peak(s["start"], s["end"])
        out.append({
            "step": s["step"], "ok": s["ok"], "seconds": s["end"] - s["start"], "load_s": loaded - s["start"],
            "compute_s": first - loaded, "store_s": s["end"] - first, "cpu_s": sampler.cpu(s["start"], s["end"]),
            "peak_rss_mib": own,
            "peak_rss_with_workers_mib": total,
        })  # fmt: skip
    return out


def phase_pipeline(args: argparse.Namespace) -> dict:
    market, work = Path(args.market), Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    _env(market, work)
    from b3quant_models.sample_market import SampleMarketManifest

    m = SampleMarketManifest.load(market)
    first = m.start
    last = dt.date.fromisoformat(args.last) if args.last else m.end
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    import dagster as dg

    from b3quant_assets.definitions import defs
    from b3quant_assets.demo import run_demo

    t_import = time.perf_counter() - t0
    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t1, w1 = time.perf_counter(), time.time()
    summary = run_demo(first, last, defs=defs, log_level="WARNING", models=False)
    t_run = time.perf_counter() - t1
    cpu_run = sampler.cpu(w1, time.time())
    if prof is not None:
        prof.disable()
    sampler.stop()
    instance = dg.DagsterInstance.get()
    steps = _step_table(instance, summary.run_id, sampler)
    out = {
        "ok": summary.ok, "first": str(first), "last": str(last), "import_s": t_import, "run_s": t_run,
        "run_cpu_s": cpu_run, "steps": steps, "tables": summary.tables, "failures": summary.failures,
        "failed_checks": [f"{a}.{c}" for a, c, ok in summary.checks if not ok], "checks": len(summary.checks),
        "peak_rss_mib": _maxrss_mib(), "peak_rss_with_workers_mib": sampler.peak()[1],
        "sessions": len(summary_days(first, last)),
    }  # fmt: skip
    if prof is not None:
        out["profile"] = _profile_buckets(prof, t_run)
    return out


def summary_days(first: dt.date, last: dt.date) -> list[dt.date]:
    from b3quant_models.calendar import sessions

    return list(sessions(first, last))


def _profile_buckets(prof, total: float) -> dict:
    """Cumulative time of each library entry point the assets call (outermost calls only)."""
    import pstats

    st = pstats.Stats(prof)
    buckets: dict[str, float] = {}
    for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in st.stats.items():
        key = f"{file}:{func}"
        for suffix, label in PROFILE_BUCKETS.items():
            if key.endswith(suffix):
                buckets[label] = buckets.get(label, 0.0) + ct
    top = sorted(
        ((f"{Path(f).name}:{fn}", ct) for (f, _l, fn), (_c, _n, _t, ct, _cl) in st.stats.items()),
        key=lambda x: -x[1],
    )[:40]
    return {"total_s": total, "buckets": buckets, "top_cumulative": top}


def phase_backtest(args: argparse.Namespace) -> dict:
    import duckdb
    import pandas as pd

    from b3quant_models.backtest import CostModel, StrategyConfig, prepare_market, run_backtest
    from b3quant_models.backtest.metrics import summarize
    from b3quant_models.backtest.strategies import (
        TRUTH_NEXT,
        optimal_signal,
        oracle_signal,
        persistence_signal,
        random_signal,
    )
    from b3quant_models.features.dataset import FLOOR, sample_market_truth
    from b3quant_models.features.option import build_targets

    market, work = Path(args.market), Path(args.work)
    with duckdb.connect(str(work / "b3quant.duckdb"), read_only=True) as con:
        t = time.perf_counter()
        option_iv = con.execute("SELECT * FROM b3.option_iv").df()
        und = con.execute(
            "SELECT trade_date, ticker AS underlying_ticker, close AS spot FROM b3.underlying_quotes"
        ).df()
        t_read = time.perf_counter() - t
    truth = sample_market_truth(market, columns=(FLOOR, TRUTH_NEXT))
    t = time.perf_counter()
    targets = build_targets(option_iv)
    link = option_iv[["trade_date", "ticker", "underlying_ticker"]].drop_duplicates(["trade_date", "ticker"])
    link["trade_date"] = pd.to_datetime(link["trade_date"]).astype("datetime64[ns]")
    preds = targets.merge(link, on=["trade_date", "ticker"], how="left")
    preds = preds.merge(truth[["trade_date", "ticker", FLOOR]], on=["trade_date", "ticker"], how="left")
    preds = preds.rename(columns={FLOOR: "iv_opt"}).assign(model="persistence", split="test")
    preds["forecast"] = preds["iv"]
    t_preds = time.perf_counter() - t
    t = time.perf_counter()
    mk = prepare_market(option_iv, und)
    t_prep = time.perf_counter() - t
    period = (preds["trade_date"].min(), preds["target_date"].max())
    strategies = {"persistence": persistence_signal(), "random": random_signal(), "optimal": optimal_signal(),
                  "oracle": oracle_signal()}  # fmt: skip
    rows = []
    for instrument in ("straddle", "option"):
        cfg = StrategyConfig(instrument=instrument)
        for name, make in strategies.items():
            t = time.perf_counter()
            sig = make(preds, truth)
            t_sig = time.perf_counter() - t
            t = time.perf_counter()
            res = run_backtest(mk, sig, cfg, CostModel(), name, period)
            t_run = time.perf_counter() - t
            s = summarize(res.daily.assign(instrument=instrument), cfg.capital)
            first = s.iloc[0] if len(s) else {}

            def num(col: str, row=first) -> float:
                return float(row[col]) if col in row else float("nan")

            rows.append({
                "instrument": instrument, "strategy": name, "signal_s": t_sig, "engine_s": t_run,
                "signals": len(sig), "legs": len(res.legs), "trades": len(res.trades), "days": len(res.daily),
                "net_sharpe": num("sharpe"), "gross_sharpe": num("sharpe_gross"), "gross_pnl": num("gross_pnl"),
                "costs": num("costs"),
            })  # fmt: skip
    return {
        "option_iv_rows": len(option_iv), "read_s": t_read, "predictions_s": t_preds, "prepare_s": t_prep,
        "prediction_rows": len(preds), "runs": rows, "peak_rss_mib": _maxrss_mib(),
    }  # fmt: skip


def _series_history_reference(df, key, value="iv", prefix="iv"):
    """``features.common.series_history`` before the real-scale run (a Python lambda per series)."""
    import pandas as pd

    from b3quant_models.features.common import sessions_between

    d = df.sort_values([*key, "trade_date"])
    g = d.groupby(list(key), sort=False)
    v = d[value]
    out = pd.DataFrame(index=d.index)
    out[f"{prefix}_chg_prev"] = v - g[value].shift(1)
    out[f"{prefix}_chg_prev5"] = v - g[value].shift(5)
    out[f"{prefix}_dev_ma5"] = v - g[value].transform(lambda s: s.rolling(5, min_periods=1).mean())
    out["sessions_since_prev"] = sessions_between(g["trade_date"].shift(1), d["trade_date"])
    return out.reindex(df.index)


def phase_features(args: argparse.Namespace) -> dict:
    """``build_option_features`` on the stored range: current ``series_history`` against the reference,
    interleaved in one process, same inputs; outputs compared."""
    import duckdb
    import numpy as np
    import pandas as pd

    import b3quant_models.features.option as fo
    from b3quant_models.features import build_option_features

    with duckdb.connect(str(Path(args.work) / "b3quant.duckdb"), read_only=True) as con:
        option_iv = con.execute("SELECT * FROM b3.option_iv").df()
        surface = con.execute("SELECT * FROM b3.iv_surface").df()
        und = con.execute("SELECT * FROM b3.underlying_quotes").df()
    current = fo.series_history
    times: dict[str, list[float]] = {"reference": [], "current": []}
    outs = {}
    for _ in range(args.repeat):
        for name, fn in (("reference", _series_history_reference), ("current", current)):
            fo.series_history = fn
            t = time.perf_counter()
            outs[name] = build_option_features(option_iv, surface, und)
            times[name].append(time.perf_counter() - t)
    fo.series_history = current
    a, b = outs["reference"], outs["current"]
    num = a.select_dtypes("number").columns
    same = a.shape == b.shape and bool(np.allclose(a[num].to_numpy(float), b[num].to_numpy(float), equal_nan=True,
                                                   rtol=0, atol=1e-12))  # fmt: skip
    return {"rows": len(a), "series": int(option_iv["ticker"].nunique()), "times": times, "same": same,
            "sessions": int(pd.to_datetime(option_iv["trade_date"]).nunique())}  # fmt: skip


PHASES = {"generate": phase_generate, "pipeline": phase_pipeline, "backtest": phase_backtest,
          "features": phase_features}  # fmt: skip


# --- orchestration and the docs section ----------------------------------------------------------


def _child(phase: str, args: argparse.Namespace, extra: list[str], timeout: float) -> dict:
    out = Path(args.work).parent / f"realscale_{phase}{'_profile' if '--profile' in extra else ''}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--phase", phase, "--market", args.market, "--work", args.work,
           "--sessions", str(args.sessions), "--phase-out", str(out), *extra]  # fmt: skip
    print(f"[{time.strftime('%H:%M:%S')}] {phase} {' '.join(extra)} (load {os.getloadavg()[0]:.1f})", flush=True)
    subprocess.run(cmd, check=True, timeout=timeout)
    return json.loads(out.read_text())


def _fmt_s(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def render(
    gen: dict, pipe: dict, bt: dict | None, prof: dict | None, feats: dict | None, loads: dict, args,
    before: dict | None = None,
) -> str:
    c = gen["counts"]
    n = pipe["sessions"]
    per_year = 250 / n
    header = (
        f"Measured {dt.date.today().isoformat()} on {platform.node() or 'host'} ({os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}); 1-min load average "
        f"{loads['start']:.1f} at the start, {loads['pipeline']:.1f} when the pipeline started and "
        f"{loads['end']:.1f} at the end: the machine was shared with other jobs, so these are upper bounds for "
        f"2 free cores. `uv run python benchmarks/bench_realscale.py --sessions {args.sessions} --write-docs`."
    )
    market = (
        f"Market: `real_scale_config(n_days={args.sessions})` ({len(gen.get('underlyings', [])) or 170} underlyings, "
        f"weeklies on the 50 most liquid; calibrated on the 2026 COTAHIST files in `shared/data/b3-real`, see "
        f"`b3quant_models/sample_market/universe.py`): {c['sessions']} sessions {gen['start']}..{gen['end']}, "
        f"{c['option_rows']:,} option rows in the files ({c['option_rows'] / c['sessions']:,.0f} a session, "
        f"{c['option_rows'] / c['sessions'] * 250 / 1e6:.2f} million a 250-session year), "
        f"{c['truth_option_rows']:,} truth rows (every listed series)."
    )
    if not gen.get("cached"):
        market += (
            f" Generating it took {_fmt_s(gen['seconds'])} s (peak RSS {gen['peak_rss_mib']:,.0f} MiB; "
            f"COTAHIST {gen['cotahist_mb']:,.0f} MB, truth {gen['truth_mb']:,.0f} MB); not part of files to features."
        )
    lines = [header, "", market, ""]
    lines.append(
        f"Files to features: `run_demo(first, last, models=False)` (what `b3q run` runs): one in-process Dagster run, "
        f"single-run backfill of the {n} sessions, DuckDB IO manager; per step wall time from the run's event log "
        f"(load = reading the inputs from DuckDB, store = writing the outputs and the asset checks after the first "
        f"output), peak RSS sampled every 0.1 s (own process; with workers = plus the spawned surface-fit workers)."
    )
    lines += ["", "| step | wall s | load / compute / store s | CPU s | share of CPU | peak RSS MiB (with workers) | "
              f"year, CPU s (x{per_year:.1f}) |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    cpu_total = sum(s["cpu_s"] for s in pipe["steps"]) or float("nan")
    for s in pipe["steps"]:
        lines.append(
            f"| {s['step']}{'' if s['ok'] else ' (FAILED)'} | {_fmt_s(s['seconds'])} | {s['load_s']:.1f} / "
            f"{s['compute_s']:.1f} / {s['store_s']:.1f} | {_fmt_s(s['cpu_s'])} | "
            f"{100 * s['cpu_s'] / cpu_total:.0f} % | "
            f"{s['peak_rss_mib']:,.0f} ({s['peak_rss_with_workers_mib']:,.0f}) | {_fmt_s(s['cpu_s'] * per_year)} |"
        )
    est = pipe["run_cpu_s"] * per_year
    lines.append(
        f"| **run total** (incl. Dagster bookkeeping between steps) | **{_fmt_s(pipe['run_s'])}** | | "
        f"**{_fmt_s(pipe['run_cpu_s'])}** | 100 % | {pipe['peak_rss_mib']:,.0f} "
        f"({pipe['peak_rss_with_workers_mib']:,.0f}) | **{_fmt_s(est)}** |"
    )
    lines.append("")
    status = "all steps succeeded" if pipe["ok"] else f"FAILED: {'; '.join(pipe['failures'])[:300]}"
    failed = ", ".join(pipe["failed_checks"]) or "none"
    rows = pipe["tables"]
    lines.append(
        f"- run: {status}; asset checks {pipe['checks'] - len(pipe['failed_checks'])}/{pipe['checks']} passed "
        f"(failed: {failed}); importing the code location {pipe['import_s']:.1f} s (not in the total). Rows stored: "
        + ", ".join(f"{k} {v:,}" for k, v in rows.items() if k in (
            "raw_quotes", "option_iv", "iv_surface", "surface_grid_points", "option_features"))
        + "."
    )  # fmt: skip
    verdict = "met" if est <= GOAL_S else "missed"
    scope = "measured on the whole year" if n >= 250 else (
        f"measured on a {n}-session slice and scaled linearly to 250 sessions (every step is per-day work; "
        f"fixed costs such as the surface fit's worker start-up are overstated by the scaling)"
    )  # fmt: skip
    lines.append(
        f"- **goal (a real-scale year, files to features, under 15 minutes on 2 cores): {verdict}** — "
        f"{_fmt_s(est)} CPU s ≈ {est / 60:.0f} min, {scope}. CPU seconds are what the run costs on a free core: "
        f"on this machine (load around {loads['pipeline']:.0f} on 2 cores) the wall time was "
        f"{_fmt_s(pipe['run_s'])} s for the slice, {pipe['run_s'] / max(pipe['run_cpu_s'], 1e-9):.1f}x the CPU "
        f"time, i.e. mostly waiting for a core. On 2 free cores the wall time would be between half the CPU time "
        f"(if every step used both cores) and the CPU time (the steps are mostly single-threaded)."
    )
    if prof:
        b = prof["buckets"]
        tot = prof["total_s"]
        parts = ", ".join(f"{k} {v:.1f} s ({100 * v / tot:.0f} %)" for k, v in sorted(b.items(), key=lambda x: -x[1]))
        lines.append(
            f"- where the time goes inside the steps (cProfile of the same run on the first {prof['sessions']} "
            f"sessions, where fixed costs (the last day's plots, loading numba's cached kernels) weigh more than in "
            f"a year; "
            f"{tot:.1f} s wall in all, surfaces fitted in-process; profiling inflates small calls; buckets overlap "
            f"where one calls another, e.g. the IO manager inside a step): {parts}."
        )
    cpu = {s["step"]: s["cpu_s"] for s in pipe["steps"]}
    store = sum(s["store_s"] + s["load_s"] for s in pipe["steps"])
    if {"iv_surface", "surface_grid_points"} <= cpu.keys():
        both = 100 * (cpu["iv_surface"] + cpu["surface_grid_points"]) / cpu_total
        lines.append(
            f"- reading the table: the two surface steps are {both:.0f} % of the CPU, about "
            f"{cpu['iv_surface'] / n:.1f} CPU s a session for the fits "
            f"(`iv_surface`, ~{rows.get('iv_surface', 0) / n:,.0f} slices a session; the fitter is being sped up "
            f"under issue 9 item 5, not touched here) and {cpu['surface_grid_points'] / n:.1f} for "
            f"`surface_grid_points`. The latter is `surface_grid`, which solves k(delta) by an 80-step bisection per "
            f"(underlying, tenor) on 5-element arrays (170 x 5 x 80 small numpy evaluations a session: call overhead, "
            f"not arithmetic) and filters the day's fits once per underlying, plus the matplotlib pictures of the last "
            f"day (a fixed cost); one bisection over every underlying and tenor of a day at once is the obvious fix. "
            f"Reading inputs from and writing outputs to DuckDB (the load and store columns) is {store:.0f} s of the "
            f"{pipe['run_s']:.0f} s wall; in ingestion and `option_iv` it is most of the step."
        )
    if feats:
        import statistics

        ref, cur = (statistics.median(feats["times"][k]) for k in ("reference", "current"))
        lines.append(
            f"- `option_features` (changed in this work): `series_history`'s 5-observation mean was a per-series "
            f"`transform(lambda)` (one pandas Series per option series: {feats['series']:,} series here, so it grows "
            f"with the series listed, not with the sessions), now one `groupby().rolling()` pass. "
            f"`build_option_features` on the same {feats['sessions']} stored sessions "
            f"({feats['rows']:,} rows), interleaved {len(feats['times']['current'])}x in one process: reference "
            f"{ref:.1f} s, now {cur:.1f} s, **{ref / cur:.1f}x**; outputs {'identical' if feats['same'] else 'DIFFER'}."
        )
    if before:
        bcpu = {x["step"]: x["cpu_s"] for x in before["steps"]}
        lines.append(
            f"- the same {before['sessions']} sessions before that change (same script, earlier in the session, load "
            f"around {loads.get('before', float('nan')):.0f}): `option_features` {bcpu.get('option_features', 0):.1f} "
            f"CPU s, run total {before['run_cpu_s']:.0f} CPU s ({before['run_s']:.0f} s wall), year estimate "
            f"{before['run_cpu_s'] * 250 / before['sessions']:,.0f} CPU s."
        )
    if bt:
        lines += ["", f"Backtest engine on the same {n} sessions (`b3quant_models.backtest.run_backtest`, default "
                  f"`StrategyConfig`/`CostModel`, one strategy at a time on one prepared `Market`; run separately from "
                  f"the pipeline, on the stored tables): option_iv "
                  f"{bt['option_iv_rows']:,} rows read from DuckDB in {bt['read_s']:.1f} s; predictions table "
                  f"(next-day targets, {bt['prediction_rows']:,} rows) {bt['predictions_s']:.1f} s; "
                  f"`prepare_market` {bt['prepare_s']:.1f} s; peak RSS {bt['peak_rss_mib']:,.0f} MiB.", "",
                  "| instrument | strategy | signal s | engine s | legs opened | trades | gross P&L R$ | costs R$ "
                  "| gross / net Sharpe |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for r in bt["runs"]:
            lines.append(
                f"| {r['instrument']} | {r['strategy']} | {r['signal_s']:.2f} | {r['engine_s']:.2f} | "
                f"{r['legs']:,} | {r['trades']:,} | {r.get('gross_pnl', float('nan')):,.0f} | "
                f"{r.get('costs', float('nan')):,.0f} | {r.get('gross_sharpe', float('nan')):.1f} / "
                f"{r['net_sharpe']:.1f} |"
            )
        eng = sum(r["engine_s"] for r in bt["runs"])
        per_run = eng / len(bt["runs"])
        lines += ["", f"- all {len(bt['runs'])} runs: engine {eng:.1f} s wall, {per_run:.1f} s a run; scaled to a year "
                  f"(x{per_year:.1f}) about {per_run * per_year:.0f} s a strategy and instrument at this load. "
                  f"Persistence forecasts today's IV, so it never trades (the engine's floor). On a slice only the "
                  f"expiries inside it can be held (the engine counts days to expiry on the session grid), so fewer "
                  f"positions open than in a year. The engine's cost gate (a view trades only when its edge pays the "
                  f"round trip at D's book) keeps most signals out on these mostly illiquid names. Net Sharpe over "
                  f"{n} sessions means little."]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=250, help="sessions to generate and run (250: a B3 year)")
    ap.add_argument("--market", default=None, help="cache folder of the generated market (default under results/)")
    ap.add_argument("--work", default=str(RESULTS / "realscale_work"), help="scratch data folder (wiped)")
    ap.add_argument("--profile-sessions", type=int, default=2, help="cProfile a run on this many sessions (0: off)")
    ap.add_argument("--no-backtest", action="store_true")
    ap.add_argument("--repeat", type=int, default=2, help="interleaved runs of the features comparison")
    ap.add_argument(
        "--reuse-profile", action="store_true", help="use the saved profile run (results/) instead of a new one"
    )
    ap.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per phase")
    ap.add_argument("--write-docs", action="store_true", help=f"replace the {SECTION!r} section of docs/benchmarks.md")
    ap.add_argument("--render-only", action="store_true", help="render the saved phase results, run nothing")
    ap.add_argument(
        "--loads", default="nan,nan,nan", help="load averages start,pipeline,end[,before] for --render-only"
    )
    ap.add_argument("--phase", choices=list(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--phase-out", help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--last", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.market = str(Path(args.market or RESULTS / f"realscale_market_{args.sessions}").resolve())
    args.work = str(Path(args.work).resolve())  # DAGSTER_HOME must be absolute
    if args.phase:
        res = PHASES[args.phase](args)
        Path(args.phase_out).write_text(json.dumps(res, default=str, indent=1))
        return
    results = Path(args.work).parent

    def saved(phase: str) -> dict | None:
        f = results / f"realscale_{phase}.json"
        return json.loads(f.read_text()) if f.exists() else None

    if args.render_only:  # the phases' saved results (e.g. after a run interrupted before the docs)
        gen, pipe, bt, feats = saved("generate"), saved("pipeline"), saved("backtest"), saved("features")
        before = saved("pipeline_before")
        given = map(float, args.loads.split(","))
        loads = saved("loads") or dict(zip(("start", "pipeline", "end", "before"), given, strict=False))
    else:
        before = None
        loads = {"start": os.getloadavg()[0]}
        gen = _child("generate", args, [], args.timeout)
        loads["pipeline"] = os.getloadavg()[0]
        pipe = _child("pipeline", args, [], args.timeout)
        bt = None if args.no_backtest else _child("backtest", args, [], args.timeout)
        feats = _child("features", args, ["--repeat", str(args.repeat)], args.timeout)
        loads["end"] = os.getloadavg()[0]
        (results / "realscale_loads.json").write_text(json.dumps(loads))
    prof = None
    prof_file = results / "realscale_pipeline_profile.json"
    if (args.reuse_profile or args.render_only) and prof_file.exists():
        p = json.loads(prof_file.read_text())
        prof = {**p["profile"], "sessions": p["sessions"]}
    elif args.profile_sessions > 0:
        from b3quant_models.calendar import sessions

        days = sessions(dt.date.fromisoformat(gen["start"]), dt.date.fromisoformat(gen["end"]))
        last = days[min(args.profile_sessions, len(days)) - 1]
        pargs = argparse.Namespace(**{**vars(args), "work": args.work + "_profile"})
        p = _child("pipeline", pargs, ["--profile", "--last", str(last)], args.timeout)
        prof = {**p["profile"], "sessions": p["sessions"]}
    text = render(gen, pipe, bt, prof, feats, loads, args, before)
    print("\n" + text)
    (results / "realscale_report.md").write_text(text + "\n")
    if args.write_docs:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
