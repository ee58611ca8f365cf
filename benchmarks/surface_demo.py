"""Fit synthetic B3-like days end to end and report timing and arbitrage statistics.

    uv run python benchmarks/surface_demo.py --days 250 --workers 2 [--png-dir out/]

Each day is ~6 underlyings × 6 expiries × 30 quotes (see ``b3quant_models.testing.synthetic_day``). Per-day times are
measured inside the worker, so they exclude process start-up and numba's one-off cache load.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from b3quant_models.surface.fit import fit_surfaces
from b3quant_models.surface.grid import grid_to_array, surface_grid
from b3quant_models.testing.surfaces import TICKERS, synthetic_day


def _one_day(seed: int) -> dict:
    q, _ = synthetic_day(seed, date=pd.Timestamp("2024-01-02") + pd.offsets.BDay(seed))
    t0 = time.perf_counter()
    res = fit_surfaces(q)
    grid = surface_grid(res.params)
    dt = time.perf_counter() - t0
    s = res.summary()
    return {
        "seed": seed, "seconds": dt, "n_slices": s["n_slices"], "n_repaired": s["n_repaired"],
        "n_raw_violations": s["n_raw_violations"], "n_final_violations": s["n_final_violations"],
        "n_ssvi": sum(m == "ssvi" for m in s["model_by_underlying"].values()),
        "n_underlyings": len(s["model_by_underlying"]),
        "mean_rmse_vol_pts": float(res.params["rmse_vol_pts"].mean()),
        "grid": grid_to_array(grid, underlyings=list(TICKERS[:6])).values,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=250)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--png-dir", type=Path, default=None, help="write the first day's plots here")
    args = ap.parse_args(argv)

    _one_day(0)  # warm numba's cache in this process before timing
    t0 = time.perf_counter()
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as ex:
            out = list(ex.map(_one_day, range(args.days), chunksize=8))
    else:
        out = [_one_day(s) for s in range(args.days)]
    wall = time.perf_counter() - t0

    secs = np.array([o["seconds"] for o in out])
    cube = np.stack([o["grid"] for o in out])
    print(f"{args.days} days on {args.workers} worker(s): wall {wall:.1f}s, {wall / args.days:.3f}s/day")
    print(f"per-day fit+grid: median {np.median(secs):.3f}s p95 {np.percentile(secs, 95):.3f}s "
          f"max {secs.max():.3f}s")
    print(f"slices repaired {sum(o['n_repaired'] for o in out)} / {sum(o['n_slices'] for o in out)}, "
          f"raw violations {sum(o['n_raw_violations'] for o in out)}, "
          f"final violations {sum(o['n_final_violations'] for o in out)}, "
          f"SSVI chosen {sum(o['n_ssvi'] for o in out)} / {sum(o['n_underlyings'] for o in out)} underlyings")
    print(f"mean RMSE {np.mean([o['mean_rmse_vol_pts'] for o in out]):.2f} vol pts; grid cube {cube.shape} "
          f"(days, underlyings, tenors, deltas), NaN share {np.isnan(cube).mean():.3f}")

    if args.png_dir is not None:
        from b3quant_models.surface.plot import plot_surface

        args.png_dir.mkdir(parents=True, exist_ok=True)
        q, _ = synthetic_day(0)
        res = fit_surfaces(q)
        grid = surface_grid(res.params)
        for und in res.params["underlying_ticker"].unique():
            (args.png_dir / f"surface_{und}.png").write_bytes(plot_surface(q, res.params, grid, und))
        print(f"plots written to {args.png_dir}")


if __name__ == "__main__":
    main()
