"""Held-out scores of the deep grid forecasters on a materialized sample market (docs/models.md).

    uv run python benchmarks/eval_deep_grid.py --data-dir data [--quick] [--lookback 10]

Reads ``b3.surface_grid_points`` and ``b3.underlying_quotes`` from the DuckDB of ``b3q demo`` and the
sample market's config from the landing folder's manifest (for the true grid and its floor).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import duckdb
import torch

from b3quant_models.models.deep import GRID_MODELS, FitConfig, build_grid_sequences
from b3quant_models.models.deep.evaluate import evaluate_grid_models
from b3quant_models.sample_market import is_generated
from b3quant_models.sample_market.config import SampleMarketConfig
from b3quant_models.sample_market.grid_truth import grid_truth


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--lookback", type=int, default=10)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--market-seed", type=int, default=7)
    ap.add_argument("--days", type=int, default=250)
    ap.add_argument("--out", default=None, help="write the table as CSV here")
    a = ap.parse_args()
    d = Path(a.data_dir)
    con = duckdb.connect(str(d / "b3quant.duckdb"), read_only=True)
    grid = con.sql("select * from b3.surface_grid_points").df()
    und = con.sql("select * from b3.underlying_quotes").df()
    cfg = SampleMarketConfig(seed=a.market_seed, n_days=a.days)
    if not is_generated(d / "landing", cfg):
        raise SystemExit(f"{d / 'landing'} does not hold the sample market {cfg} (pass --market-seed/--days)")
    truth = grid_truth(cfg)
    seqs = build_grid_sequences(grid, und, lookback=a.lookback, truth=truth)
    fc = FitConfig.quick() if a.quick else FitConfig()
    table, _ = evaluate_grid_models(seqs, GRID_MODELS, fit_config=fc, seed=a.seed, log=print)
    print(json.dumps({"samples": len(seqs), "torch": torch.__version__, "fit_config": fc.to_dict(),
                      "split": table.attrs["split"]}, default=str, indent=1))
    print(table.T.to_string())
    if a.out:
        table.to_csv(a.out, index=False)


if __name__ == "__main__":
    main()
