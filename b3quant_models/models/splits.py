"""Walk-forward splits by trade date with a purge gap.

A row dated D has a target from D's next session, so a training row dated right before a validation
block would carry a label from inside it; dropping ``purge_days`` sessions (>= the target horizon)
between train and the next block removes that leak. Validation folds are expanding-window and all lie
before the final held-out test block, which is never used for tuning.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class WalkForwardSplits:
    """Folds ``[(train_dates, val_dates), ...]`` plus the final fit period and the held-out test dates.

    Iterating / indexing / ``len`` act on the folds, so it can be used where a list of pairs is expected.
    """

    folds: list[tuple[np.ndarray, np.ndarray]]
    final_train: np.ndarray
    test: np.ndarray
    purge_days: int
    meta: dict = field(default_factory=dict)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return iter(self.folds)

    def __len__(self) -> int:
        return len(self.folds)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.folds[i]

    def describe(self) -> pd.DataFrame:
        """One row per fold (and 'test') with the date ranges; handy for asset metadata and the card."""
        rows = []
        blocks = [(f"fold_{i}", tr, va) for i, (tr, va) in enumerate(self.folds)] + [
            ("test", self.final_train, self.test)
        ]
        for name, tr, ev in blocks:
            rows.append({"block": name, "train_start": tr[0], "train_end": tr[-1], "n_train_days": len(tr),
                         "eval_start": ev[0], "eval_end": ev[-1], "n_eval_days": len(ev)})
        return pd.DataFrame(rows)


def walk_forward_splits(
    dates, n_folds: int = 3, test_days: int = 20, purge_days: int = 1, min_train_days: int = 40,
    val_days: int | None = None,
) -> WalkForwardSplits:
    """Split the distinct sorted ``dates`` (any iterable of datetimes) into walk-forward folds.

    Layout (oldest → newest): train … | purge | val_0 | … | val_{n-1} | purge | test. Fold i trains on every
    date before val_i minus the purge; the final model trains on everything before the test minus the purge.
    ``val_days`` defaults to ``test_days``. Raises when the history is too short for ``min_train_days``.
    """
    if n_folds < 1 or test_days < 1 or purge_days < 0:
        raise ValueError("need n_folds >= 1, test_days >= 1, purge_days >= 0")
    val_days = test_days if val_days is None else val_days
    u = np.array(sorted(pd.to_datetime(pd.Series(list(dates))).unique()), dtype="datetime64[ns]")
    need = min_train_days + purge_days + n_folds * val_days + purge_days + test_days
    if len(u) < need:
        raise ValueError(
            f"{len(u)} dates < {need} needed (min_train_days={min_train_days} + purge {purge_days} + "
            f"{n_folds}×{val_days} validation + purge {purge_days} + test {test_days})"
        )
    test = u[-test_days:]
    dev = u[: len(u) - test_days - purge_days]
    folds = []
    for i in range(n_folds):
        start = len(dev) - (n_folds - i) * val_days
        val = dev[start: start + val_days]
        train = dev[: max(start - purge_days, 0)]
        folds.append((train, val))
    return WalkForwardSplits(folds=folds, final_train=dev, test=test, purge_days=purge_days,
                             meta={"n_folds": n_folds, "val_days": val_days, "test_days": test_days,
                                   "min_train_days": min_train_days})
