"""The boosters of a hyper-parameter grid on one inner fold, sharing one binned Dataset.

Every grid point of an inner fold trains on the same ``lgb.Dataset`` (binned once; the grid
varies only training parameters) and stops early on that fold's validation rows, so a point
that has stopped improving costs no further rounds. Each point's best round count is kept: the
final refit on the whole window boosts for the mean of the chosen point's best rounds over
the inner folds. Nothing here sees rows after the validation block of its fold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.threads import n_threads

__all__ = ["EARLY_STOP", "MIN_ROUNDS", "lgb_dataset", "grid_fold", "final_rounds"]

EARLY_STOP = 20  # rounds without a better validation metric before a grid point stops
MIN_ROUNDS = 10  # fewest rounds a refit boosts for


def lgb_dataset(M: pd.DataFrame, y: np.ndarray, categorical: list[str],
                reference: lgb.Dataset | None = None) -> lgb.Dataset:
    """A binned Dataset that every grid point can train on (no pre-filtering by leaf size)."""
    return lgb.Dataset(M, y, categorical_feature=categorical, reference=reference,
                       free_raw_data=True,
                       params={"feature_pre_filter": False, "verbose": -1,
                               "num_threads": n_threads()}).construct()


def grid_fold(M_train: pd.DataFrame, y_train: np.ndarray, M_valid: pd.DataFrame,
              y_valid: np.ndarray, categorical: list[str], params: list[dict[str, Any]],
              rounds: int, metric: str) -> list[tuple[np.ndarray, int]]:
    """Per grid point: its raw predictions on every validation row and its best round count.

    Parameters
    ----------
    M_train, y_train : model matrix and target of the fold's training rows (finite targets)
    M_valid, y_valid : the fold's validation rows; rows with a finite target drive the early
        stopping, every row gets a prediction
    categorical : categorical columns of the matrices
    params : full LightGBM parameters of each grid point
    rounds : most boosting rounds of a point
    metric : LightGBM metric the early stopping watches (``l1``, ``binary_logloss``)
    """
    train = lgb_dataset(M_train, y_train, categorical)
    ok = np.isfinite(y_valid)
    valid = lgb_dataset(M_valid.loc[ok], y_valid[ok], categorical, reference=train) \
        if ok.any() else None
    out = []
    for p in params:
        stop: list[Callable[..., Any]] = [lgb.early_stopping(EARLY_STOP, first_metric_only=True, verbose=False)] \
            if valid is not None else []
        booster = lgb.train({**p, "metric": metric}, train, num_boost_round=rounds,
                            valid_sets=[valid] if valid is not None else None, callbacks=stop)
        best = int(booster.best_iteration) or booster.current_iteration()
        pred = np.asarray(booster.predict(M_valid, num_iteration=best, num_threads=n_threads()))
        out.append((pred, best))
    return out


def final_rounds(best: list[int], rounds: int) -> int:
    """Rounds of the refit on the whole window: the mean best round count over the inner
    folds (``rounds`` when there were none), at least ``MIN_ROUNDS`` and at most ``rounds``."""
    if not best:
        return rounds
    return int(np.clip(round(float(np.mean(best))), MIN_ROUNDS, rounds))
