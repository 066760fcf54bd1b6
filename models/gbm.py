"""One global LightGBM quantile model across pools per target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.schema import MISSING, POOL_ID, TIMESTAMP
from models.base import QUANTILE_COLUMNS, QUANTILES, BaseForecaster
from models.threads import n_threads

__all__ = ["LightGBMQuantile", "CATEGORICALS", "lgb_matrix", "lgb_params"]

CATEGORICALS = (POOL_ID, "protocol", "chain")
NON_FEATURES = {TIMESTAMP, MISSING}


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
    M = pd.DataFrame(index=X.index)
    for c in columns:
        if c in cats:
            M[c] = pd.Categorical(X[c].astype(str), categories=cats[c])
        elif c in X.columns:
            M[c] = pd.to_numeric(X[c], errors="coerce").astype(float)
        else:
            M[c] = np.nan
    return M


class LightGBMQuantile(BaseForecaster):
    """LightGBM with quantile objectives at 0.1 / 0.5 / 0.9, pool and protocol categorical.

    Parameters
    ----------
    n_estimators : boosting rounds per quantile
    seed : random seed (training is deterministic for a seed)
    row_stride : fit on every k-th timestamp (labels over a horizon overlap heavily)
    params : extra LightGBM parameters (learning_rate, num_leaves, ...)
    """

    kind = "lightgbm"

    def __init__(self, n_estimators: int = 150, seed: int = 0, row_stride: int = 1,
                 params: dict[str, Any] | None = None) -> None:
        self._params = {"n_estimators": n_estimators, "seed": seed, "row_stride": row_stride,
                        "params": params or {}}
        self.n_estimators, self.seed, self.row_stride = n_estimators, seed, row_stride
        self.params = params or {}

    def _columns(self, X: pd.DataFrame) -> tuple[list[str], dict[str, list[str]]]:
        cols = [c for c in X.columns if c not in NON_FEATURES]
        cats = {c: sorted(X[c].astype(str).unique().tolist()) for c in CATEGORICALS if c in cols}
        return cols, cats

    def _stride(self, X: pd.DataFrame) -> np.ndarray:
        if self.row_stride <= 1:
            return np.ones(len(X), bool)
        codes = pd.factorize(X[TIMESTAMP], sort=True)[0]
        return codes % self.row_stride == 0

    def _fit(self, X: pd.DataFrame, y: pd.Series, X_all: pd.DataFrame) -> None:
        self.columns_, self.categories_ = self._columns(X)
        keep = self._stride(X)
        M = lgb_matrix(X.loc[keep], self.columns_, self.categories_)
        yv = y.to_numpy(float)[keep]
        self.boosters_ = []
        for q in QUANTILES:
            params = lgb_params(self.seed, objective="quantile", alpha=q, **self.params)
            ds = lgb.Dataset(M, yv, categorical_feature=list(self.categories_), free_raw_data=True)
            self.boosters_.append(lgb.train(params, ds, num_boost_round=self.n_estimators))

    def _predict(self, X: pd.DataFrame) -> pd.DataFrame:
        M = lgb_matrix(X, self.columns_, self.categories_)
        n = n_threads()
        return pd.DataFrame({c: b.predict(M, num_threads=n)
                             for c, b in zip(QUANTILE_COLUMNS, self.boosters_, strict=True)})

    def feature_importance(self) -> pd.Series:
        """Gain importance of the median model, by feature."""
        b = self.boosters_[1]
        return pd.Series(b.feature_importance("gain"), index=b.feature_name()).sort_values(
            ascending=False)

    def _state(self) -> dict[str, Any]:
        return {"columns": self.columns_, "categories": self.categories_}

    def _save_native(self, path: Path) -> None:
        for c, b in zip(QUANTILE_COLUMNS, self.boosters_, strict=True):
            b.save_model(str(path / f"lightgbm_{c}.txt"))

    def _load_state(self, state: dict[str, Any], path: Path) -> None:
        self.columns_, self.categories_ = state["columns"], state["categories"]
        self.boosters_ = [lgb.Booster(model_file=str(path / f"lightgbm_{c}.txt"))
                          for c in QUANTILE_COLUMNS]
