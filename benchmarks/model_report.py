"""Report the held-out comparison of the last training run (the `model_comparison` table) in docs.

Usage: uv run b3q demo && uv run python benchmarks/model_report.py [--db data/b3quant.duckdb] [--write-docs]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

from b3quant_models import settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import write_section

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "models.md"
SECTION = "## Results on the sample market"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=str(settings.duckdb_path()))  # $B3Q_DUCKDB_PATH, else under $B3Q_DATA_DIR
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    with duckdb.connect(a.db, read_only=True) as con:
        t = con.execute("SELECT * FROM b3.model_comparison").fetchdf()
        # the training dataset is an in-memory asset (not a table); its span is that of the stored features
        ts = con.execute(
            "SELECT min(trade_date), max(trade_date), count(DISTINCT trade_date), count(*) FROM b3.option_features"
        ).fetchone()
    lines = [
        f"Option-series features: {ts[3]:,} rows over {ts[2]} sessions ({ts[0].date()} to {ts[1].date()}) of "
        "the default sample market (seed 7, 6 underlyings), demo settings (8 Optuna trials per model). Errors on "
        "the held-out last sessions, in vol points; within a table every forecaster is scored on the same rows.",
    ]
    for target, tt in t.groupby("target", sort=False):
        persistence = tt.loc[tt["forecaster"] == "persistence", "rmse_vol_pts"].iloc[0]
        optimal = tt.loc[tt["forecaster"].str.startswith("optimal"), "rmse_vol_pts"]
        lines += [
            "",
            f"**{target}** ({int(tt['n'].iloc[0]):,} held-out rows)",
            "",
            "| forecaster | RMSE | MAE | R² | RMSE reduction vs persistence | share of the gap to the floor closed |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        seen = set()
        for r in tt.itertuples():
            if r.forecaster in seen:
                continue
            seen.add(r.forecaster)
            gain = 100 * (1 - r.rmse_vol_pts / persistence)
            closed = ""
            if len(optimal) and persistence > optimal.iloc[0]:
                closed = f"{100 * (persistence - r.rmse_vol_pts) / (persistence - optimal.iloc[0]):.0f}%"
            lines.append(
                f"| {r.forecaster} | {r.rmse_vol_pts:.3f} | {r.mae_vol_pts:.3f} | {r.r2:.3f} | {gain:+.1f}% | "
                f"{closed} |"
            )
    lines += [
        "",
        "The floor is the ground-truth-optimal forecast of the simulator (docs/sample_market.md): most of a "
        "day's IV change is that day's shock, so even a perfect model stays close to persistence. Grid points "
        "have no ground-truth floor (the grid is our own fit); only points inside the quoted range on both "
        "days are targets.",
    ]
    text = "\n".join(lines)
    print(text)
    if a.write_docs:
        write_section(SECTION, text, DOCS)


if __name__ == "__main__":
    main()
