"""``b3q``: the command line. ``b3q demo`` runs the whole platform on the sample market, offline.

Subcommands:
  demo           generate the sample market (if absent) and materialize every asset over it
  run            materialize every trading-day partitioned asset (optionally the models) for real sessions
  sample-market  write the simulated COTAHIST files, CDI rates and ground truth to a folder
  read           read one COTAHIST file (.TXT/.ZIP) and print a summary and its quarantine
  load           append a COTAHIST file (e.g. a 1 GB yearly one) to a DuckDB table, streamed
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import time
from pathlib import Path

from b3quant_models import settings


class UserError(Exception):
    """A mistake in what the user asked for: printed as one line on stderr, exit status 2 (no traceback)."""


# A DuckDB table name: it is put into SQL (and into its staging tables' names), so nothing but a plain
# identifier is accepted (`--table "x; DROP TABLE raw_quotes; --"` would otherwise run the DROP).
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def table_name(value: str) -> str:
    """argparse type of ``--table``: a plain SQL identifier (letters, digits, ``_``; in the main schema)."""
    if not _IDENTIFIER.match(value):
        raise argparse.ArgumentTypeError(
            f"invalid table name {value[:80]!r}: use letters, digits and '_', not starting with a digit"
        )
    return value


def _input_file(path: str) -> Path:
    """A file to read: a missing path or a directory is the user's mistake, not a traceback."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{path}: no such file")
    if p.is_dir():
        raise UserError(f"{path}: is a directory; give a COTAHIST file (.TXT or .ZIP)")
    return p


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (``b3q load: error: ...``), exit status 2 as before."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _progress(label: str):
    """A one-line progress printer for long loops (stderr, rewritten in place on a terminal)."""
    tty = sys.stderr.isatty()
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done != total and now - last[0] < (0.2 if tty else 5.0):
            return
        last[0] = now
        msg = f"{label}: {done}/{total} ({100 * done / max(total, 1):.0f}%)"
        print(("\r" + msg) if tty else msg, end="\n" if (done == total or not tty) else "", file=sys.stderr)

    return report


def _set_env(data_dir: str | None, offline: bool = True) -> Path:
    """Point every component at one data folder and the project's Dagster instance."""
    if data_dir:
        os.environ["B3Q_DATA_DIR"] = str(Path(data_dir).resolve())
    os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home()))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    if offline:
        os.environ["B3Q_OFFLINE"] = "1"  # the demo (and `run --offline`) never touches the network
    # The model store promotion writes to is the one `bentoml serve` reads with this BENTOML_HOME.
    os.environ.setdefault("BENTOML_HOME", str(settings.bentoml_home()))
    return settings.data_dir()


def _sample_config(args: argparse.Namespace):
    from b3quant_models.sample_market import DEFAULT_UNDERLYINGS, SampleMarketConfig

    kwargs = {"seed": args.seed, "n_days": args.days}
    if args.underlyings is not None:
        if not 1 <= args.underlyings <= len(DEFAULT_UNDERLYINGS):
            raise UserError(f"--underlyings must be between 1 and {len(DEFAULT_UNDERLYINGS)}")
        kwargs["underlyings"] = tuple(DEFAULT_UNDERLYINGS[: args.underlyings])
    if args.start:
        kwargs["start"] = _date("--start", args.start)
    return SampleMarketConfig(**kwargs)


def _date(flag: str, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{flag} {value!r} is not a date (YYYY-MM-DD)") from None


def cmd_sample_market(args: argparse.Namespace) -> int:
    from b3quant_models.sample_market import generate_sample_market

    out = Path(args.out)
    t = time.perf_counter()
    manifest = generate_sample_market(out, _sample_config(args), progress=_progress("sample market"))
    n = len(manifest.cotahist_files)
    print(f"wrote {n} COTAHIST files, cdi.csv and ground truth to {out} in {time.perf_counter() - t:.1f} s")
    return 0


def cmd_read(args: argparse.Namespace) -> int:
    import pandas as pd

    from b3quant_models.cotahist import read_cotahist_with_quarantine

    res = read_cotahist_with_quarantine(_input_file(args.file))
    q = res.quotes
    print(f"{res.file}: {len(q):,} quotes, {len(res.quarantine)} quarantined, trailer count {res.trailer_count}")
    print(q["market_type"].value_counts().rename_axis("market_type").to_frame("rows").T.to_string())
    with pd.option_context("display.width", 160, "display.max_columns", 12):
        print(q.head(args.head).to_string())
        if len(res.quarantine):
            print("\nquarantine:")
            print(res.quarantine[["line_number", "reason"]].head(20).to_string(index=False))
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    import duckdb

    from b3quant_models.storage import load_cotahist_into_duckdb

    src = _input_file(args.file)
    if Path(args.db).is_dir():
        raise UserError(f"--db {args.db}: is a directory; give a DuckDB file path")
    t = time.perf_counter()
    try:
        con = duckdb.connect(args.db)
    except duckdb.Error as e:
        raise UserError(f"--db {args.db}: cannot open the DuckDB file: {str(e).splitlines()[0]}") from None
    with con:
        n, nq = load_cotahist_into_duckdb(src, con, table=args.table)
    print(f"loaded {n:,} quotes ({nq} quarantined) into {args.db}:{args.table} in {time.perf_counter() - t:.1f} s")
    return 0


def _print_summary(summary, data: Path) -> None:
    print(summary.render())
    if summary.promotion:
        print(f"\npromotion: {summary.promotion}")
    print(f"\nDuckDB: {summary.database}")
    print(
        f"Browse it:  DAGSTER_HOME={os.environ['DAGSTER_HOME']} B3Q_DATA_DIR={data} B3Q_OFFLINE=1 "
        "uv run dagster dev   (http://127.0.0.1:3000)"
    )


def session_blocks(days: list[dt.date], all_sessions) -> list[tuple[dt.date, dt.date]]:
    """``days`` as runs of consecutive B3 sessions: one Dagster range run each (a range run covers
    every session between its ends, so scattered days go in several runs)."""
    index = {d: i for i, d in enumerate(all_sessions)}
    blocks: list[list[dt.date]] = []
    for d in days:
        if blocks and index[d] == index[blocks[-1][-1]] + 1:
            blocks[-1].append(d)
        else:
            blocks.append([d])
    return [(b[0], b[-1]) for b in blocks]


def cmd_run(args: argparse.Namespace) -> int:
    """Real sessions from the landing folder (B3's files downloaded for missing days unless offline)."""
    data = _set_env(args.data_dir, offline=args.offline)
    # Before the partitions are declared (on import): they start at the folder's first session.
    settings.record_sessions(dt.date.fromisoformat(args.start))
    from b3quant_assets.defs.shared.partitions import trading_day_partitions
    from b3quant_assets.defs.shared.resources import default_landing_dir, offline
    from b3quant_models.calendar import sessions
    from b3quant_models.sources.cotahist_download import find_landing_file
    from b3quant_models.sources.rates import RATES_FILE_NAMES, landing_rates_files

    start = _date("--start", args.start)
    end = _date("--end", args.end or args.start)
    from b3quant_assets.defs.shared.partitions import PARTITIONS_START

    if start < PARTITIONS_START:
        raise UserError(f"--start {start} is before the first partition {PARTITIONS_START} (B3Q_FIRST_SESSION)")
    keys = set(trading_day_partitions.get_partition_keys())
    days = [d for d in sessions(start, end) if str(d) in keys]
    if not days:
        raise UserError(f"no B3 session between {start} and {end}")
    landing = Path(default_landing_dir())
    missing = [d for d in days if find_landing_file(landing, d) is None]
    if args.landed:
        days = [d for d in days if d not in set(missing)]
        if not days:
            raise UserError(f"no COTAHIST file in {landing} for a session between {start} and {end}")
        missing = []
    if offline():
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
            raise UserError(
                f"offline and {len(missing)} of {len(days)} sessions have no COTAHIST file in {landing}: {shown}. "
                "Copy B3's COTAHIST_DddmmYYYY.TXT/.ZIP there, or run without --offline to download them."
            )
        if not landing_rates_files(landing):
            raise UserError(f"offline and no rates file in {landing}: add one of {', '.join(RATES_FILE_NAMES)}")
        from b3quant_models.sources.rates import RateError, rates_for_days, read_landing_rates

        try:  # before any step runs: a missing rate would fail risk_free_rate after ingestion
            rates_for_days(read_landing_rates(landing), days)
        except RateError as e:
            raise UserError(f"offline and {e}") from None
    t0 = time.perf_counter()
    what = "every partitioned asset" + (" and the models" if args.models else "")
    blocks = session_blocks(days, sessions(start, end))
    print(f"materializing {what} for {len(days)} sessions {days[0]}..{days[-1]} from {landing}")
    if missing:
        print(f"      {len(missing)} session(s) not in the landing folder will be downloaded from B3")
    from b3quant_assets.demo import merge_summaries, run_demo

    summaries = []
    for i, (a, b) in enumerate(blocks, 1):
        last = i == len(blocks)
        print(f"[{i}/{len(blocks)}] sessions {a}..{b}" + (" and the models" if args.models and last else ""))
        summaries.append(run_demo(a, b, log_level=args.log_level, models=args.models and last))
        if not summaries[-1].ok:
            break
    summary = merge_summaries(summaries)
    _print_summary(summary, data)
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0 if summary.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    data = _set_env(args.data_dir)
    from b3quant_models.sample_market import SampleMarketManifest, generate_sample_market, is_generated

    landing = settings.landing_dir()
    config = _sample_config(args)
    t0 = time.perf_counter()
    if args.fresh or not is_generated(landing, config):
        db = settings.duckdb_path()
        if db.exists():
            # Tables of another market would mix into the unpartitioned training sets.
            print(f"      the sample market changes: starting a new database (removing {db})")
            for p in (db, db.with_name(db.name + ".wal")):
                p.unlink(missing_ok=True)
        print(f"[1/2] generating the sample market into {landing} (seed {config.seed}, {config.n_days} sessions)")
        manifest = generate_sample_market(landing, config, progress=_progress("sample market"))
    else:
        manifest = SampleMarketManifest.load(landing)
        print(f"[1/2] sample market already in {landing} (seed {config.seed}); use --fresh to regenerate")
    first, last = manifest.start, manifest.end
    # The partitions (declared when the code location loads, here and in `dagster dev`) cover this market only.
    settings.record_sessions(first, last, widen=False)

    from b3quant_assets.demo import run_demo

    print(f"[2/2] materializing every asset for {first}..{last} ({manifest.n_sessions} trading days)")
    summary = run_demo(first, last)
    _print_summary(summary, data)
    print(f"done in {time.perf_counter() - t0:.0f} s")
    print(
        f"Serve it:   BENTOML_HOME={os.environ['BENTOML_HOME']} B3Q_DUCKDB_PATH={summary.database} "
        "uv run bentoml serve bento.service:B3QuantService --host 127.0.0.1 --port 3001   (http://127.0.0.1:3001/docs)"
    )
    return 0 if summary.ok else 1


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="b3q", description="b3quant-ml: B3 options data platform")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def market_opts(p: argparse.ArgumentParser, days: int) -> None:
        p.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
        p.add_argument("--days", type=int, default=days, help=f"number of B3 sessions (default {days})")
        p.add_argument("--underlyings", type=int, default=None, help="number of underlyings (default 6)")
        p.add_argument("--start", default=None, help="first session, YYYY-MM-DD (default 2025-01-02)")

    d = sub.add_parser("demo", help="run the whole platform on the sample market (no network)")
    market_opts(d, 250)
    d.add_argument("--data-dir", default=None, help="data folder (default $B3Q_DATA_DIR or ./data)")
    d.add_argument("--fresh", action="store_true", help="regenerate the sample market even if present")
    d.set_defaults(func=cmd_demo)

    ru = sub.add_parser(
        "run",
        help="materialize every trading-day partitioned asset for real sessions (landing folder, else B3)",
        description="Ingest B3 sessions from the landing folder ($B3Q_LANDING_DIR, default $B3Q_DATA_DIR/landing), "
        "downloading missing days from B3 unless --offline, and compute IVs, surfaces, grid and features; "
        "--models also trains and compares the models over every stored session.",
    )
    ru.add_argument("--start", required=True, help="first session, YYYY-MM-DD")
    ru.add_argument("--end", default=None, help="last session, YYYY-MM-DD (default: --start)")
    ru.add_argument("--models", action="store_true", help="also train, compare and promote the models")
    ru.add_argument("--offline", action="store_true", help="never download: every file must be in the landing folder")
    ru.add_argument(
        "--landed",
        action="store_true",
        help="only the sessions of the range whose file is in the landing folder (scattered days: one run per "
        "block of consecutive sessions); no COTAHIST file is downloaded",
    )
    ru.add_argument("--data-dir", default=None, help="data folder (default $B3Q_DATA_DIR or ./data)")
    ru.add_argument("--log-level", default="INFO", help="Dagster console log level (default INFO: one line per step)")
    ru.set_defaults(func=cmd_run)

    s = sub.add_parser("sample-market", help="write the simulated B3 market to a folder")
    market_opts(s, 250)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_sample_market)

    r = sub.add_parser("read", help="read a COTAHIST file and print a summary")
    r.add_argument("file")
    r.add_argument("--head", type=int, default=5)
    r.set_defaults(func=cmd_read)

    lo = sub.add_parser(
        "load", help="append a COTAHIST file's quotes to a DuckDB table (streamed, all or nothing; appends)"
    )
    lo.add_argument("file")
    lo.add_argument("--db", required=True)
    lo.add_argument("--table", default="raw_quotes", type=table_name,
                    help="target table: letters, digits and _ (default raw_quotes)")
    lo.set_defaults(func=cmd_load)
    return ap


_USER_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def _is_user_error(e: BaseException) -> bool:
    if isinstance(e, (UserError, *_USER_OS_ERRORS)):
        return True
    reader = sys.modules.get("b3quant_models.cotahist.reader")  # not imported just to test (start-up)
    return reader is not None and isinstance(e, reader.CotahistError)


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; the user's mistakes (a bad path, a file that is not COTAHIST, an impossible
    range) are one line on stderr and exit status 2; anything else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as e:
        if not _is_user_error(e):
            raise
        print(f"b3q {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
