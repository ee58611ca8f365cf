"""Concurrent predict_iv requests answered by one feature computation.

A predict_iv request costs a few pandas pipelines (``compute_option_iv``, ``contract_features``, one join)
whose cost is almost all per call, not per row: 1 contract costs about what 100 do. BentoML's adaptive
batcher cannot merge these requests (their checks need the day context, and one failure would fail every
request merged with it), so requests are merged here, after their own checks passed: while one
computation runs, the requests arriving queue, and the next computation takes them all.

Merging is exact, not approximate: a contract's features depend on its own row, its series' stored
history and the day context, as in the batch table, where every contract of the day sits together
(``tests/test_bento_service.py`` checks the batch equality). Two things would couple requests, and such
requests are never merged: two rows of one series (the feature builder keeps one row per ticker and
day), and a contract of an underlying that has no valid stored IV that day (it joins that day's market
factors and so changes every row's features). If a merged computation fails, each request is run
alone, so an error reaches only the request that caused it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio


@dataclass
class Job:
    key: Hashable  # requests merge only with equal keys (the day, its context, the rate)
    rows: Sequence[Any]
    tickers: frozenset[str]  # named series; a job sharing one with another runs in another batch
    alone: bool  # must run by itself
    payload: Any = None  # what ``run`` needs besides the rows (the same for every job of one key)
    future: asyncio.Future = field(repr=False, default=None)  # type: ignore[assignment]


class Coalescer:
    """``run(jobs) -> one result list per job`` over merged jobs, one computation at a time, in a thread."""

    def __init__(self, run: Callable[[list[Job]], list[Any]], max_rows: int) -> None:
        self.run = run
        self.max_rows = max_rows
        self.pending: list[Job] = []
        self.busy = False
        self.batches: list[int] = []  # jobs per computation, the last 1000 (tests, benchmarks)

    async def submit(self, job: Job) -> Any:
        job.future = asyncio.get_running_loop().create_future()
        self.pending.append(job)
        if not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self._drain())
        return await job.future

    def _take(self) -> list[Job]:
        first = self.pending[0]
        batch, seen, rows, rest = [first], set(first.tickers), len(first.rows), []
        for j in self.pending[1:]:
            ok = not first.alone and not j.alone and j.key == first.key and not (j.tickers & seen) \
                and rows + len(j.rows) <= self.max_rows
            if ok:
                batch.append(j)
                seen |= j.tickers
                rows += len(j.rows)
            else:
                rest.append(j)
        self.pending = rest
        return batch

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch = self._take()
                self.batches = [*self.batches[-999:], len(batch)]
                try:
                    results = await anyio.to_thread.run_sync(self.run, batch)
                except Exception as e:
                    if len(batch) == 1:
                        _settle(batch[0], exc=e)
                        continue
                    for j in batch:  # isolate the failure: each request alone
                        try:
                            _settle(j, (await anyio.to_thread.run_sync(self.run, [j]))[0])
                        except Exception as e1:
                            _settle(j, exc=e1)
                    continue
                for j, r in zip(batch, results, strict=True):
                    _settle(j, r)
        finally:
            self.busy = False


def _settle(job: Job, result: Any = None, exc: BaseException | None = None) -> None:
    if job.future.done():  # the client went away (request cancelled)
        return
    if exc is not None:
        job.future.set_exception(exc)
    else:
        job.future.set_result(result)
