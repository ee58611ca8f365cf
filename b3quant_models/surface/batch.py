"""Fit many trading days at once, in parallel processes when it pays off."""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

import pandas as pd

from b3quant_models.surface.fit import fit_surfaces

DAY_COLUMN = "trade_date"
# A spawned worker pays its imports and loads the numba kernels before its first day (measured: 18 s of
# imports + 6 s for the first day on a 2-core machine at load 20, a few seconds when idle) while a day takes
# 0.3–4 s; with S the start-up and d a day, W workers only win from about S / (d·(1 − 1/W)) days in all.
# At 8 days per worker the pool lost to serial (0.44x, 18 days, docs/benchmarks.md), hence 16.
MIN_DAYS_PER_WORKER = 16


def _fit_one(args: tuple[pd.Timestamp, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    day, q = args
    fit = fit_surfaces(q.drop(columns=[DAY_COLUMN]))
    return fit.params.assign(**{DAY_COLUMN: day}), fit.violations.assign(**{DAY_COLUMN: day})


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def fit_surfaces_by_day(
    quotes: pd.DataFrame, workers: int | None = None
) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """``fit_surfaces`` for every ``trade_date`` in ``quotes``; returns per-day params and violations.

    Days are independent, so they are spread over ``workers`` processes (default: the usable
    CPUs). The pool uses "spawn": numba's thread pool, already running in a pipeline process after
    the COTAHIST reader, is not safe to fork.
    """
    days = [(pd.Timestamp(d), g) for d, g in quotes.groupby(DAY_COLUMN, sort=True)]
    workers = default_workers() if workers is None else workers
    workers = max(1, min(workers, len(days) // MIN_DAYS_PER_WORKER))
    if workers == 1:
        results = [_fit_one(d) for d in days]
    else:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
            results = list(ex.map(_fit_one, days, chunksize=max(1, len(days) // (4 * workers))))
    return [p for p, _ in results], [v for _, v in results]
