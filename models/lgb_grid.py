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

from features.schema import MISSING, POOL_ID, TIMESTAMP
from models.threads import n_threads

__all__ = ["SELECTION_PROTOCOL", "EARLY_STOP", "MIN_ROUNDS", "lgb_dataset", "grid_fold",
           "final_rounds", "lgb_params", "lgb_matrix", "lgb_array", "feature_columns",
           "stride_mask", "CATEGORICALS", "NON_FEATURES"]

CATEGORICALS = (POOL_ID, "protocol", "chain", "pair")
NON_FEATURES = {TIMESTAMP, MISSING}

EARLY_STOP = 20  # rounds without a better validation metric before a grid point stops
MIN_ROUNDS = 10  # fewest rounds a refit boosts for


# version of the inner-fold selection protocol (shared binning, early stopping on the inner
# validation rows, mean best rounds for the refit); part of the training scores' provenance
SELECTION_PROTOCOL = "selection-v2"

def lgb_params(seed: int, **overrides: Any) -> dict[str, Any]:
    """Deterministic LightGBM parameters; threads from the job, LPA_THREADS or the machine."""
    p = {"learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 50,
         "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1,
         "lambda_l2": 1.0, "seed": seed, "deterministic": True, "force_row_wise": True,
         "num_threads": n_threads(), "verbose": -1}
    p.update(overrides)
    return p


def lgb_matrix(X: pd.DataFrame, columns: list[str], cats: dict[str, list[str]]) -> pd.DataFrame:
    """Model input frame with fixed column order and categoricals on known categories."""
    columns = list(dict.fromkeys(columns))  # a repeated name is one column
    return pd.DataFrame({c: _column(X, c, cats) for c in columns}, index=X.index,
                        columns=columns)


def lgb_array(X: pd.DataFrame, columns: list[str], cats: dict[str, list[str]]) -> np.ndarray:
    """The model matrix as LightGBM reads it: float64, a categorical as its category's code
    (NaN when unknown), column for column as :func:`lgb_matrix`."""
    columns = list(dict.fromkeys(columns))
    out = np.empty((len(X), len(columns)))
    for j, c in enumerate(columns):
        v = _column(X, c, cats)
        out[:, j] = np.where(v.codes >= 0, v.codes, np.nan) if c in cats else v
    return out


def _column(X: pd.DataFrame, c: str, cats: dict[str, list[str]]) -> Any:
    """One model input column: a categorical on its known categories, else float64 (NaN when
    absent from X or not a number)."""
    if c in cats:
        return _categorical(X[c], cats[c])
    if c in X.columns:
        return _floats(X[c])
    return np.full(len(X), np.nan)


def _floats(s: pd.Series) -> np.ndarray:
    """A column as float64, anything that is not a number NaN."""
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return s.to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _categorical(s: pd.Series, categories: list[str]) -> Any:
    """A column as a categorical on ``categories``, each value compared by its string."""
    codes, uniques = pd.factorize(s, use_na_sentinel=False)  # strings of the distinct values
    at = pd.Index(categories).get_indexer(pd.Index(uniques).astype(str))
    return pd.Categorical.from_codes(np.asarray(at[codes] if len(codes) else codes, np.int64),
                                     dtype=pd.CategoricalDtype(categories))


def feature_columns(X: pd.DataFrame) -> tuple[list[str], dict[str, list[str]]]:
    """Input columns of a LightGBM model and the categories of its categorical ones."""
    cols = [c for c in X.columns if c not in NON_FEATURES]
    cats = {c: sorted(X[c].astype(str).unique().tolist()) for c in CATEGORICALS if c in cols}
    return cols, cats


def stride_mask(timestamps: pd.Series, stride: int) -> np.ndarray:
    """Rows on every ``stride``-th timestamp (labels over a horizon overlap heavily)."""
    if stride <= 1:
        return np.ones(len(timestamps), bool)
    return pd.factorize(timestamps, sort=True)[0] % stride == 0


def lgb_dataset(M: pd.DataFrame, y: np.ndarray, categorical: list[str],
                reference: lgb.Dataset | None = None) -> lgb.Dataset:
    """A binned Dataset that every grid point can train on (no pre-filtering by leaf size).

    The raw frame stays referenced (no copy: the caller holds it anyway), so the rows a
    booster trained on can be inspected (`Dataset.data`), as the purging tests do.
    """
    return lgb.Dataset(M, y, categorical_feature=categorical, reference=reference,
                       free_raw_data=False,
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
        stop: list[Callable[..., Any]] = [] if valid is None else [
            lgb.early_stopping(EARLY_STOP, first_metric_only=True, verbose=False)]
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
