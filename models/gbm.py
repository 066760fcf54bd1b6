"""One pooled LightGBM across pools per target, combined with a baseline where that wins.

The booster learns the log of a positive target (fee yield per horizon, annualised volatility)
relative to an anchor baseline (log y - log anchor), across all pools at once with pool, pair,
protocol and chain as categoricals. Inside each fit, inner walk-forward folds of the training
window (``models.cv.inner_splits``, purged by the horizon) give out-of-sample forecasts that
choose everything the model chooses:
- the hyper-parameters, among a small grid, by mean absolute log error;
- a combination w x booster + (1 - w) x baseline in log space (w = 1: the booster alone,
  w = 0: the baseline alone), over the baselines given and w in 0, 0.1, ..., 1;
- the 80 % interval, by conformal adjustment of the out-of-sample log residuals
  (``models.conformal``), its median correction, and the mean by smearing those residuals.
The booster is then refit on the whole window with the chosen parameters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.schema import POOL_ID, TIMESTAMP
from models.base import FORECASTERS, BaseForecaster, ForecastError
from models.baselines import ColumnForecaster, HARForecaster
from models.conformal import interval_offsets, smearing_factor
from models.cv import inner_splits
from models.garch import GARCHVolatility
from models.lgb_grid import (
    CATEGORICALS,
    NON_FEATURES,
    feature_columns,
    final_rounds,
    grid_fold,
    lgb_array,
    lgb_dataset,
    lgb_matrix,
    lgb_params,
    stride_mask,
)
from models.names import MEAN_COLUMN
from models.quantile import QuantileForecaster
from models.threads import n_threads

__all__ = ["LightGBMQuantile", "CATEGORICALS", "NON_FEATURES", "lgb_matrix", "lgb_params",
           "DEFAULT_GRID", "feature_columns", "stride_mask", "load_component"]

DEFAULT_GRID: tuple[dict[str, Any], ...] = (
    {"num_leaves": 15, "min_child_samples": 50},
    {"num_leaves": 7, "min_child_samples": 100, "lambda_l2": 10.0},
    {"num_leaves": 31, "min_child_samples": 30, "objective": "l1"},
)
WEIGHTS = np.round(np.linspace(0.0, 1.0, 11), 2)
MIN_OOS_ROWS = 30  # fewer out-of-sample rows: no combination, in-sample residual bands
COMBINABLE = (ColumnForecaster, HARForecaster, GARCHVolatility)  # baselines it may combine with


def load_component(path: Path) -> BaseForecaster:
    """A baseline saved inside a model's folder, rebuilt by its kind."""
    spec = json.loads((path / "forecaster.json").read_text())
    obj = FORECASTERS[spec["kind"]](**spec["params"])
    obj._load_state(spec["state"], path)
    obj.fitted_ = True
    return obj


def _make_component(spec: dict[str, Any]) -> BaseForecaster:
    kinds = {c.kind: c for c in COMBINABLE}
    if spec.get("kind") not in kinds:
        raise ForecastError(f"unknown baseline kind {spec.get('kind')!r} in a combination; "
                            f"expected one of {sorted(kinds)}")
    return kinds[spec["kind"]](**spec["params"])


class LightGBMQuantile(QuantileForecaster):
    """Pooled LightGBM in log space with inner-fold tuning, combination and conformal bands.

    Parameters
    ----------
    n_estimators : boosting rounds
    seed : random seed (training is deterministic for a seed)
    row_stride : fit the booster on every k-th timestamp
    params : LightGBM parameters applied to every grid point
    horizon_periods : label horizon h, periods (purges the inner folds)
    anchor : (feature column, scale) of the baseline the booster learns relative to
    baselines : specs ``{"kind": ..., "params": {...}}`` of the baselines it may combine with
    inner_folds : inner walk-forward folds (0: no tuning, no combination, in-sample bands)
    grid : hyper-parameter points to choose among (default ``DEFAULT_GRID``)
    coverage : target coverage of the q10-q90 interval
    """

    kind = "lightgbm"

    def __init__(self, n_estimators: int = 200, seed: int = 0, row_stride: int = 1,
                 params: dict[str, Any] | None = None, horizon_periods: int = 24,
                 anchor: list[Any] | None = None, baselines: list[dict[str, Any]] | None = None,
                 inner_folds: int = 3, grid: list[dict[str, Any]] | None = None,
                 coverage: float = 0.8) -> None:
        self._params = {"n_estimators": n_estimators, "seed": seed, "row_stride": row_stride,
                        "params": params or {}, "horizon_periods": horizon_periods,
                        "anchor": list(anchor) if anchor else None,
                        "baselines": list(baselines or []), "inner_folds": inner_folds,
                        "grid": list(grid) if grid else None, "coverage": coverage}
        self.n_estimators, self.seed, self.row_stride = n_estimators, seed, row_stride
        self.params, self.horizon_periods = params or {}, horizon_periods
        self.anchor = list(anchor) if anchor else None
        self.baselines = list(baselines or [])
        self.inner_folds, self.coverage = inner_folds, coverage
        self.grid = [dict(g) for g in (grid or DEFAULT_GRID)]
        # a fitted model of the same kind whose choice and calibration the next fit keeps
        self.selection_from: Any = None

    # -- pieces -----------------------------------------------------------------------------
    def _log(self, y: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log(np.maximum(y, 0.0) + self.floor_)

    def _anchor(self, X: pd.DataFrame) -> np.ndarray:
        """log anchor per row; the pool's (else the overall) median log target where absent."""
        a = np.full(len(X), np.nan)
        if self.anchor and self.anchor[0] in X.columns:
            a = self._log(X[self.anchor[0]].to_numpy(float) * float(self.anchor[1]))
        fill = X[POOL_ID].astype(str).map(self.pool_level_).to_numpy(float)
        fill = np.where(np.isfinite(fill), fill, self.level_)
        return np.where(np.isfinite(a), a, fill)

    def _booster(self, X: pd.DataFrame, z: np.ndarray, point: dict[str, Any]) -> lgb.Booster:
        """A booster of ``self.rounds_`` rounds on the rows of X with a finite target."""
        keep = stride_mask(X[TIMESTAMP], self.row_stride) & np.isfinite(z)
        ds = lgb_dataset(lgb_matrix(X.loc[keep], self.columns_, self.categories_), z[keep],
                         list(self.categories_))
        return lgb.train(self._point_params(point), ds, num_boost_round=self.rounds_)

    def _inner_runs(self, M: pd.DataFrame, X: pd.DataFrame, z: np.ndarray, tr: np.ndarray,
                    va: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """Per grid point: raw predictions on the validation rows and its best rounds."""
        if type(self)._booster is not LightGBMQuantile._booster:  # boosters trained elsewhere
            self.rounds_ = self.n_estimators  # (a cluster): every point boosts every round
            return [(np.asarray(self._booster(X.loc[tr], z[tr], p).predict(M.loc[va])),
                     self.n_estimators) for p in self.grid]
        keep = tr & stride_mask(X[TIMESTAMP], self.row_stride) & np.isfinite(z)
        return grid_fold(M.loc[keep], z[keep], M.loc[va], z[va], list(self.categories_),
                         [self._point_params(p) for p in self.grid], self.n_estimators, "l1")

    def _point_params(self, point: dict[str, Any]) -> dict[str, Any]:
        return lgb_params(self.seed, **{"objective": "l2", **self.params, **point})

    def _core(self, booster: lgb.Booster, X: pd.DataFrame) -> np.ndarray:
        A = lgb_array(X, self.columns_, self.categories_)
        return np.asarray(booster.predict(A, num_threads=n_threads())) + self._anchor(X)

    def _base_log(self, comp: BaseForecaster, X: pd.DataFrame) -> np.ndarray:
        return self._log(comp.predict(X)["q50"].to_numpy(float))

    # -- fit --------------------------------------------------------------------------------
    def _fit(self, X: pd.DataFrame, y: pd.Series, X_all: pd.DataFrame) -> None:
        yv = y.to_numpy(float)
        pos = yv[yv > 0]
        self.floor_ = float(1e-3 * np.median(pos)) if len(pos) else 1e-12
        y_all = pd.Series(np.nan, index=X_all.index)
        y_all.loc[X.index] = yv
        z_all = self._log(y_all.to_numpy(float))
        z_pool = pd.Series(z_all).groupby(X_all[POOL_ID].astype(str).to_numpy()).median()
        self.pool_level_ = {str(k): float(v) for k, v in z_pool.dropna().items()}
        self.level_ = float(np.nanmedian(z_all))
        self.columns_, self.categories_ = feature_columns(X_all)
        anchor = self._anchor(X_all)
        prev, self.selection_from = getattr(self, "selection_from", None), None
        # only a choice made on inner folds (with out-of-sample calibration) is kept
        if isinstance(prev, LightGBMQuantile) and getattr(prev, "fitted_", False) \
                and bool(getattr(prev, "calibrated_", False)):
            self._refit_selected(prev, X_all, y_all, z_all - anchor)
            return
        folds = inner_splits(X_all[TIMESTAMP], self.inner_folds, self.horizon_periods) \
            if self.inner_folds > 0 else []
        M_all, z_rel = lgb_matrix(X_all, self.columns_, self.categories_), z_all - anchor
        core = np.full((len(self.grid), len(X_all)), np.nan)
        base = np.full((len(self.baselines), len(X_all)), np.nan)
        best: list[list[int]] = [[] for _ in self.grid]
        for tr, va in folds:
            if np.isfinite(z_all[tr]).sum() < MIN_OOS_ROWS:
                continue
            for g, (pred, rounds) in enumerate(self._inner_runs(M_all, X_all, z_rel, tr, va)):
                core[g, va] = pred + anchor[va]
                best[g].append(rounds)
            for j, spec in enumerate(self.baselines):
                try:
                    comp = _make_component(spec).fit(X_all.loc[tr], y_all.loc[tr])
                except ValueError:
                    continue  # a baseline that cannot fit this fold is not a candidate there
                base[j, va] = self._base_log(comp, X_all.loc[va])
        oos = np.isfinite(z_all) & np.isfinite(core).all(axis=0)
        self.oos_rows_ = int(oos.sum())
        self.choice_ = self._choose(z_all, core, base, oos)
        self.choice_["rounds"] = final_rounds(best[self.choice_["grid"]], self.n_estimators)
        self.rounds_ = self.choice_["rounds"]
        self.booster_ = self._booster(X_all, z_rel, self.grid[self.choice_["grid"]])
        j = self.choice_["baseline"]
        self.component_ = (_make_component(self.baselines[j]).fit(X_all, y_all)
                           if j is not None else None)
        if self.oos_rows_ >= MIN_OOS_ROWS:
            w = self.choice_["weight"]
            comb = core[self.choice_["grid"]] if j is None else \
                w * core[self.choice_["grid"]] + (1 - w) * base[j]
            ok = oos & np.isfinite(comb)
            z, c = z_all[ok], comb[ok]
        else:  # too short a window for inner folds: in-sample residuals (optimistic bands)
            ok = np.isfinite(z_all)
            z, c = z_all[ok], self._combine(X_all.loc[ok])
        self.calibrated_ = self.oos_rows_ >= MIN_OOS_ROWS
        resid = z - c
        self.median_ = float(np.median(resid))
        self.down_, self.up_ = interval_offsets(z, c, c, self.coverage)
        self.smear_ = smearing_factor(resid)

    def _refit_selected(self, prev: LightGBMQuantile, X_all: pd.DataFrame, y_all: pd.Series,
                        z: np.ndarray) -> None:
        """Refit the booster and baseline that `prev` chose on its inner folds, keeping its
        choice and its out-of-sample calibration (no inner folds run)."""
        self.choice_ = dict(prev.choice_)
        self.oos_rows_, self.calibrated_ = prev.oos_rows_, prev.calibrated_
        self.median_, self.down_, self.up_ = prev.median_, prev.down_, prev.up_
        self.smear_ = prev.smear_
        self.rounds_ = int(self.choice_.get("rounds", self.n_estimators))
        self.booster_ = self._booster(X_all, z, self.grid[self.choice_["grid"]])
        j = self.choice_["baseline"]
        self.component_ = (_make_component(self.baselines[j]).fit(X_all, y_all)
                           if j is not None else None)

    def _choose(self, z: np.ndarray, core: np.ndarray, base: np.ndarray,
                oos: np.ndarray) -> dict[str, Any]:
        """Grid point, baseline and weight with the least out-of-sample mean |log error|."""
        if oos.sum() < MIN_OOS_ROWS:
            return {"grid": 0, "baseline": None, "weight": 1.0, "oos_mae": float("nan")}
        mae = [float(np.mean(np.abs(z[oos] - core[g, oos]))) for g in range(len(core))]
        g = int(np.argmin(mae))
        best = {"grid": g, "baseline": None, "weight": 1.0, "oos_mae": mae[g]}
        gain = 0.0  # change of mean |log error| against the booster alone, on the same rows
        for j in range(len(base)):
            ok = oos & np.isfinite(base[j])
            if ok.sum() < 0.9 * oos.sum():
                continue  # a baseline missing on many rows cannot be compared fairly
            ref = float(np.mean(np.abs(z[ok] - core[g, ok])))
            for w in WEIGHTS[:-1]:
                e = float(np.mean(np.abs(z[ok] - (w * core[g, ok] + (1 - w) * base[j, ok]))))
                if e - ref < gain:
                    gain = e - ref
                    best = {"grid": g, "baseline": j, "weight": float(w), "oos_mae": e}
        return best

    def _combine(self, X: pd.DataFrame) -> np.ndarray:
        c = self._core(self.booster_, X)
        if self.component_ is not None:
            w = self.choice_["weight"]
            c = w * c + (1 - w) * self._base_log(self.component_, X)
        return c

    def _predict(self, X: pd.DataFrame) -> pd.DataFrame:
        c = self._combine(X)

        def back(v: np.ndarray) -> np.ndarray:
            return np.clip(np.exp(v) - self.floor_, 0.0, None)

        return pd.DataFrame({"q10": back(c - self.down_), "q50": back(c + self.median_),
                             "q90": back(c + self.up_),
                             MEAN_COLUMN: np.clip(np.exp(c) * self.smear_ - self.floor_, 0, None)})

    def feature_importance(self) -> pd.Series:
        """Gain importance of the booster, by feature."""
        b = self.booster_
        return pd.Series(b.feature_importance("gain"), index=b.feature_name()).sort_values(
            ascending=False)

    # -- persistence ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"columns": self.columns_, "categories": self.categories_, "floor": self.floor_,
                "pool_level": self.pool_level_, "level": self.level_, "choice": self.choice_,
                "median": self.median_, "down": self.down_, "up": self.up_,
                "smear": self.smear_, "oos_rows": self.oos_rows_,
                "calibrated": self.calibrated_}

    def _save_native(self, path: Path) -> None:
        self.booster_.save_model(str(path / "lightgbm.txt"))
        if self.component_ is not None:
            self.component_.save(path / "baseline")

    def _load_state(self, state: dict[str, Any], path: Path) -> None:
        self.columns_, self.categories_ = state["columns"], state["categories"]
        self.floor_, self.pool_level_ = state["floor"], state["pool_level"]
        self.level_, self.choice_ = state["level"], state["choice"]
        self.median_, self.down_, self.up_ = state["median"], state["down"], state["up"]
        self.smear_, self.oos_rows_ = state["smear"], state["oos_rows"]
        self.calibrated_ = state["calibrated"]
        self.booster_ = lgb.Booster(model_file=str(path / "lightgbm.txt"))
        self.component_ = (load_component(path / "baseline")
                           if self.choice_["baseline"] is not None else None)
