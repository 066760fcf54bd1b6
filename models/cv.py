"""Walk-forward cross-validation with a purge gap of at least the forecast horizon."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Fold", "walk_forward_splits", "folds_digest", "inner_splits"]


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


def inner_splits(
    timestamps: pd.Series | np.ndarray, n_folds: int, horizon_periods: int,
    valid_frac: float = 0.5, min_train_periods: int = 10,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Walk-forward (train, valid) boolean masks inside one training window.

    The last ``valid_frac`` of the window's periods is cut into ``n_folds`` consecutive
    validation blocks; each block's training rows are those whose label window (t, t + h]
    ends before the block starts (t + h < block start). Folds with fewer than
    ``min_train_periods`` training periods are left out, so a short window may give none.
    Used for hyper-parameters, forecast combination, conformal and probability calibration:
    everything a model chooses, it chooses on rows after the ones it was fitted on.
    """
    codes = pd.factorize(pd.Series(np.asarray(timestamps)), sort=True)[0]
    n = int(codes.max()) + 1 if len(codes) else 0
    first = int(n * (1 - valid_frac))
    block = max(1, (n - first) // max(1, n_folds))
    out = []
    for k in range(n_folds):
        start = first + k * block
        end = n if k == n_folds - 1 else start + block
        if start >= n:
            break
        train = codes + horizon_periods < start
        valid = (codes >= start) & (codes < end)
        if start - horizon_periods >= min_train_periods and valid.any():
            out.append((train, valid))
    return out
