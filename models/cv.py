"""Walk-forward cross-validation with a purge gap of at least the forecast horizon."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Fold", "walk_forward_splits", "folds_digest"]


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: row indices and the times that bound it."""

    train_idx: np.ndarray
    test_idx: np.ndarray
    cutoff: pd.Timestamp  # last timestamp a training row may have
    test_start: pd.Timestamp
    test_end: pd.Timestamp


def walk_forward_splits(
    timestamps: pd.Series,
    n_folds: int,
    gap: pd.Timedelta,
    horizon: pd.Timedelta,
    test_size: pd.Timedelta | None = None,
    min_train: pd.Timedelta | None = None,
) -> list[Fold]:
    """Expanding-window folds; train rows end at least ``gap`` before each test block.

    A training label covers (s, s + horizon], so with gap >= horizon no training label
    reaches into the test block (purge). Test blocks are consecutive and end at the last
    timestamp. Raises ValueError when gap < horizon or the history is too short.
    """
    gap, horizon = pd.Timedelta(gap), pd.Timedelta(horizon)
    if gap < horizon:
        raise ValueError(f"gap {gap} is shorter than the forecast horizon {horizon}: "
                         "training labels would overlap the test period")
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    ts = pd.DatetimeIndex(pd.to_datetime(timestamps))
    t_min, t_max = ts.min(), ts.max()
    span = t_max - t_min
    test_size = test_size or (span - gap) / (n_folds + 2)
    min_train = min_train or test_size
    first_test = t_max - n_folds * test_size
    if first_test - gap - t_min < min_train:
        raise ValueError(f"history {span} too short for {n_folds} folds of {test_size} with "
                         f"gap {gap} and minimum training span {min_train}")
    values = ts.as_unit("ns").asi8  # compare in ns whatever the index resolution
    folds = []
    for k in range(n_folds):
        start = first_test + k * test_size
        end = start + test_size
        cutoff = start - gap
        train = np.flatnonzero(values <= cutoff.value)
        last = k == n_folds - 1
        test = np.flatnonzero((values > start.value) & ((values <= end.value) if not last
                                                         else np.ones(len(values), bool)))
        if len(train) == 0 or len(test) == 0:
            raise ValueError(f"history {span} too short: fold {k + 1} of {n_folds} would have "
                             f"{len(train)} training and {len(test)} test rows")
        folds.append(Fold(train, test, cutoff, start, end))
    return folds


def folds_digest(folds: list[Fold]) -> str:
    """Stable hash of fold boundaries, to compare scores made on the same folds."""
    text = "|".join(f"{f.cutoff.isoformat()},{f.test_start.isoformat()},{f.test_end.isoformat()},"
                    f"{len(f.train_idx)},{len(f.test_idx)}" for f in folds)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
