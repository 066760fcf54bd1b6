"""LightGBM stress classifier tuned and calibrated on inner walk-forward folds.

Inside each fit, inner walk-forward folds of the training window (``models.cv.inner_splits``,
purged by the label horizon: no training label window (t, t + h] reaches a validation row)
give out-of-sample scores. They choose among a small grid of boosters and a strongly
regularised logistic regression on the standardised numeric features (few events: the linear
model often generalises better) by least log loss, and fit a Platt calibration,
P = sigmoid(a x logit(raw) + b), on the chosen candidate's scores. It is then refit on the
whole window. The calibrated out-of-sample scores are kept (``inner_scores_``) and choose the
alarm threshold (``alarm_threshold_``, ``models.alarm``) without another fit.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from features.schema import TIMESTAMP
from models.alarm import store_threshold
from models.base import PROB_COLUMN, BaseForecaster
from models.cv import inner_splits
from models.gbm import feature_columns, lgb_matrix, lgb_params, stride_mask
from models.lgb_grid import final_rounds, grid_fold, lgb_array, lgb_dataset

__all__ = ["LightGBMStress", "STRESS_GRID", "platt"]

STRESS_GRID: tuple[dict[str, Any], ...] = (
    {"num_leaves": 7, "min_child_samples": 100, "learning_rate": 0.03},
    {"num_leaves": 15, "min_child_samples": 50, "learning_rate": 0.03},
    {"num_leaves": 4, "min_child_samples": 200, "learning_rate": 0.05, "lambda_l2": 10.0},
)
MIN_CLASS_ROWS = 5  # fewer stressed (or calm) out-of-sample rows: no calibration
LOGISTIC_C = 0.01  # inverse L2 strength of the linear candidate (standardised inputs)


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def platt(raw: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """(a, b) of P = sigmoid(a logit(raw) + b) fitted to outcomes y; None without both classes.

    Regularised, and never decreasing: when the scores rank outcomes the wrong way out of
    sample (a < 0), the model has no skill there and the calibrated forecast is the
    out-of-sample base rate (a = 0).
    """
    ok = np.isfinite(raw) & np.isfinite(y)
    yv = y[ok]
    if min(yv.sum(), len(yv) - yv.sum()) < MIN_CLASS_ROWS:
        return None
    lr = LogisticRegression(C=1.0).fit(_logit(raw[ok])[:, None], yv.astype(int))
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if a <= 0:
        return 0.0, float(_logit(np.array([yv.mean()]))[0])
    return a, b


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


class LightGBMStress(BaseForecaster):
    """Binary LightGBM on the stress label, tuned and Platt-calibrated out of sample.

    Parameters
    ----------
    n_estimators : boosting rounds
    seed : random seed
    row_stride : fit on every k-th timestamp
    params : LightGBM parameters applied to every grid point
    horizon_periods : label horizon h, periods (purges the inner folds)
    inner_folds : inner walk-forward folds (0: first grid point, uncalibrated)
    grid : hyper-parameter points to choose among (default ``STRESS_GRID``)
    """

    kind = "lightgbm_stress"
    is_classifier = True
    # chosen at fit on the training window (models.alarm): P(stress) at which a row alarms
    alarm_threshold_: float
    alarm_x_: float
    alarm_basis_: str

    def __init__(self, n_estimators: int = 200, seed: int = 0, row_stride: int = 1,
                 params: dict[str, Any] | None = None, horizon_periods: int = 24,
                 inner_folds: int = 3, grid: list[dict[str, Any]] | None = None) -> None:
        self._params = {"n_estimators": n_estimators, "seed": seed, "row_stride": row_stride,
                        "params": params or {}, "horizon_periods": horizon_periods,
                        "inner_folds": inner_folds, "grid": list(grid) if grid else None}
        self.n_estimators, self.seed, self.row_stride = n_estimators, seed, row_stride
        self.params, self.horizon_periods = params or {}, horizon_periods
        self.inner_folds = inner_folds
        self.grid = [dict(g) for g in (grid or STRESS_GRID)]
        # a fitted model whose chosen candidate and calibration the next fit keeps
        self.selection_from: Any = None

    def _train(self, X: pd.DataFrame, y: np.ndarray, point: dict[str, Any]) -> lgb.Booster:
        keep = stride_mask(X[TIMESTAMP], self.row_stride) & np.isfinite(y)
        ds = lgb_dataset(lgb_matrix(X.loc[keep], self.columns_, self.categories_), y[keep],
                         list(self.categories_))
        return lgb.train(self._point_params(point), ds, num_boost_round=self.rounds_)

    def _point_params(self, point: dict[str, Any]) -> dict[str, Any]:
        return lgb_params(self.seed, objective="binary", **{**self.params, **point})

    def _raw(self, booster: lgb.Booster, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(booster.predict(lgb_array(X, self.columns_, self.categories_)))

    def _linear_inputs(self, X: pd.DataFrame, lin: dict[str, Any]) -> np.ndarray:
        A = lgb_array(X, lin["columns"], {})
        Z = (A - np.asarray(lin["median"])) / np.asarray(lin["scale"])
        return np.nan_to_num(np.clip(Z, -5, 5))

    def _linear(self, X: pd.DataFrame, y: np.ndarray) -> dict[str, Any]:
        """Fit the regularised logistic candidate; its state is plain lists (JSON)."""
        cols = [c for c in self.columns_ if c not in self.categories_]
        A = lgb_array(X, cols, {})
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are expected
            med = np.nan_to_num(np.nanmedian(A, axis=0))
            scale = np.nan_to_num(np.nanstd(A, axis=0), nan=1.0)
        scale[scale < 1e-12] = 1.0
        lin: dict[str, Any] = {"columns": cols, "median": med.tolist(), "scale": scale.tolist()}
        ok = np.isfinite(y)
        m = LogisticRegression(C=LOGISTIC_C, max_iter=1000).fit(
            self._linear_inputs(X.loc[ok], lin), y[ok].astype(int))
        lin.update(coef=m.coef_[0].tolist(), intercept=float(m.intercept_[0]))
        return lin

    def _linear_raw(self, lin: dict[str, Any], X: pd.DataFrame) -> np.ndarray:
        z = self._linear_inputs(X, lin) @ np.asarray(lin["coef"]) + lin["intercept"]
        return 1 / (1 + np.exp(-z))

    def _candidate_raw(self, model: Any, X: pd.DataFrame) -> np.ndarray:
        return self._linear_raw(model, X) if isinstance(model, dict) else self._raw(model, X)

    def _fit_candidate(self, g: int, X: pd.DataFrame, y: np.ndarray) -> Any:
        if g == len(self.grid):
            return self._linear(X, y)
        return self._train(X, y, self.grid[g])

    def _fold(self, M: pd.DataFrame, X: pd.DataFrame, yv: np.ndarray, tr: np.ndarray,
              va: np.ndarray, raw: np.ndarray, best: list[list[int]]) -> None:
        """Out-of-sample scores of every candidate on one inner fold (boosters share a
        Dataset and stop early on the fold's validation rows)."""
        if type(self)._train is not LightGBMStress._train:  # boosters trained elsewhere
            self.rounds_ = self.n_estimators  # (a cluster): every point boosts every round
            runs = [(self._raw(self._train(X.loc[tr], yv[tr], p), X.loc[va]), self.n_estimators)
                    for p in self.grid]
        else:
            keep = tr & stride_mask(X[TIMESTAMP], self.row_stride) & np.isfinite(yv)
            runs = grid_fold(M.loc[keep], yv[keep], M.loc[va], yv[va], list(self.categories_),
                             [self._point_params(p) for p in self.grid], self.n_estimators,
                             "binary_logloss")
        for g, (pred, rounds) in enumerate(runs):
            raw[g, va] = pred
            best[g].append(rounds)
        raw[len(self.grid), va] = self._linear_raw(self._linear(X.loc[tr], yv[tr]), X.loc[va])

    def _fit(self, X: pd.DataFrame, y: pd.Series, X_all: pd.DataFrame) -> None:
        self.columns_, self.categories_ = feature_columns(X)
        yv = y.to_numpy(float)
        prev, self.selection_from = getattr(self, "selection_from", None), None
        # only a choice made on inner folds (with a Platt calibration) is kept
        if isinstance(prev, LightGBMStress) and getattr(prev, "fitted_", False) \
                and prev.calibrator_ is not None:
            self._refit_selected(prev, X, yv)
            return
        folds = inner_splits(X[TIMESTAMP], self.inner_folds, self.horizon_periods) \
            if self.inner_folds > 0 else []
        n = len(self.grid) + 1  # the boosters of the grid, then the logistic regression
        raw = np.full((n, len(X)), np.nan)
        best: list[list[int]] = [[] for _ in self.grid]
        M = lgb_matrix(X, self.columns_, self.categories_) if folds else None
        for tr, va in folds:
            if M is not None and len(np.unique(yv[tr])) >= 2:
                self._fold(M, X, yv, tr, va, raw, best)
        oos = np.isfinite(raw).all(axis=0)
        self.oos_rows_ = int(oos.sum())
        losses = [_log_loss(yv[oos], raw[g, oos]) if oos.any() else math.inf for g in range(n)]
        self.grid_choice_ = int(np.argmin(losses)) if oos.any() else 0
        self.rounds_ = final_rounds(best[self.grid_choice_] if self.grid_choice_ < len(best)
                                    else [], self.n_estimators)
        ab = platt(raw[self.grid_choice_, oos], yv[oos]) if oos.any() else None
        self.calibrator_: dict[str, float] | None = None if ab is None else {"a": ab[0],
                                                                              "b": ab[1]}
        self.inner_scores_: np.ndarray | None = self._calibrate(raw[self.grid_choice_, oos]) \
            if oos.any() else None
        final = self._fit_candidate(self.grid_choice_, X, yv)
        self.linear_: dict[str, Any] | None = final if isinstance(final, dict) else None
        self.booster_ = None if self.linear_ else final
        self._choose_alarm(X, yv)

    def _choose_alarm(self, X: pd.DataFrame, yv: np.ndarray) -> None:
        """Alarm threshold at the default multiple of the window's base rate, on the inner
        folds' calibrated scores (on the training rows' own scores when there are none)."""
        store_threshold(self, self.inner_scores_,
                        lambda: self._predict(X)[PROB_COLUMN].to_numpy(float), yv)

    def _refit_selected(self, prev: LightGBMStress, X: pd.DataFrame, yv: np.ndarray) -> None:
        """Refit the candidate `prev` chose, keeping its Platt calibration and inner-fold
        scores (no inner folds; the alarm share aimed at follows this window's base rate)."""
        self.oos_rows_, self.grid_choice_ = prev.oos_rows_, prev.grid_choice_
        self.rounds_ = getattr(prev, "rounds_", self.n_estimators)
        self.calibrator_ = prev.calibrator_
        self.inner_scores_ = getattr(prev, "inner_scores_", None)
        final = self._fit_candidate(self.grid_choice_, X, yv)
        self.linear_ = final if isinstance(final, dict) else None
        self.booster_ = None if self.linear_ else final
        self._choose_alarm(X, yv)

    def _calibrate(self, raw: np.ndarray) -> np.ndarray:
        if not self.calibrator_:
            return raw
        z = self.calibrator_["a"] * _logit(raw) + self.calibrator_["b"]
        return 1 / (1 + np.exp(-z))

    def _predict(self, X: pd.DataFrame) -> pd.DataFrame:
        model = self.linear_ if self.linear_ else self.booster_
        return pd.DataFrame({PROB_COLUMN: self._calibrate(self._candidate_raw(model, X))})

    def feature_importance(self) -> pd.Series:
        """Gain importance by feature (|coefficient| of standardised inputs when linear)."""
        if self.linear_:
            return pd.Series(np.abs(self.linear_["coef"]),
                             index=self.linear_["columns"]).sort_values(ascending=False)
        b = self.booster_
        assert b is not None
        return pd.Series(b.feature_importance("gain"), index=b.feature_name()).sort_values(
            ascending=False)

    def _state(self) -> dict[str, Any]:
        return {"columns": self.columns_, "categories": self.categories_,
                "calibrator": json.loads(json.dumps(self.calibrator_)),
                "grid_choice": self.grid_choice_, "oos_rows": self.oos_rows_,
                "rounds": self.rounds_,
                "linear": self.linear_}

    def _save_native(self, path: Path) -> None:
        if self.booster_ is not None:
            self.booster_.save_model(str(path / "lightgbm_stress.txt"))

    def _load_state(self, state: dict[str, Any], path: Path) -> None:
        self.columns_, self.categories_ = state["columns"], state["categories"]
        self.calibrator_ = state["calibrator"]
        self.grid_choice_, self.oos_rows_ = state["grid_choice"], state["oos_rows"]
        self.rounds_ = int(state.get("rounds", self.n_estimators))
        self.linear_ = state.get("linear")
        self.booster_ = None if self.linear_ else lgb.Booster(
            model_file=str(path / "lightgbm_stress.txt"))
