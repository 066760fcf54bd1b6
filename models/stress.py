"""LightGBM stress classifier with probabilities calibrated on a time-ordered tail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from features.schema import TIMESTAMP
from models.base import PROB_COLUMN, BaseForecaster
from models.gbm import CATEGORICALS, NON_FEATURES, lgb_matrix, lgb_params
from models.splits import purged_tail_split

__all__ = ["LightGBMStress"]


class LightGBMStress(BaseForecaster):
    """Binary LightGBM on the stress label; isotonic calibration on the last slice of time.

    The training window is split by time (never shuffled): the last ``calib_frac`` of
    timestamps fits the isotonic map; the booster it calibrates is fit on the rows before,
    purged by ``horizon_periods`` so no training label window (t, t + h] reaches a calibration
    row. The booster is then refit on the whole window with the same rounds.
    """

    kind = "lightgbm_stress"
    is_classifier = True

    def __init__(self, n_estimators: int = 150, seed: int = 0, calib_frac: float = 0.2,
                 row_stride: int = 1, params: dict[str, Any] | None = None,
                 horizon_periods: int = 24) -> None:
        self._params = {"n_estimators": n_estimators, "seed": seed, "calib_frac": calib_frac,
                        "row_stride": row_stride, "params": params or {},
                        "horizon_periods": horizon_periods}
        self.n_estimators, self.seed, self.calib_frac = n_estimators, seed, calib_frac
        self.row_stride, self.params = row_stride, params or {}
        self.horizon_periods = horizon_periods

    def _train(self, M: pd.DataFrame, y: np.ndarray) -> lgb.Booster:
        params = lgb_params(self.seed, objective="binary", **self.params)
        ds = lgb.Dataset(M, y, categorical_feature=list(self.categories_), free_raw_data=True)
        return lgb.train(params, ds, num_boost_round=self.n_estimators)

    def _fit(self, X: pd.DataFrame, y: pd.Series, X_all: pd.DataFrame) -> None:
        self.columns_ = [c for c in X.columns if c not in NON_FEATURES]
        self.categories_ = {c: sorted(X[c].astype(str).unique().tolist())
                            for c in CATEGORICALS if c in self.columns_}
        codes = pd.factorize(X[TIMESTAMP], sort=True)[0]
        keep = codes % max(1, self.row_stride) == 0
        X, yv, codes = X.loc[keep], y.to_numpy(float)[keep], codes[keep]
        M = lgb_matrix(X, self.columns_, self.categories_)
        early, late = purged_tail_split(codes, self.calib_frac, self.horizon_periods)
        self.calibrator_: dict[str, list[float]] | None = None
        if early.any() and yv[early].std() > 0 and 0 < yv[late].sum() < late.sum():
            raw = self._train(M.loc[early], yv[early]).predict(M.loc[late])
            iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(raw, yv[late])
            self.calibrator_ = {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
        self.booster_ = self._train(M, yv)

    def _calibrate(self, raw: np.ndarray) -> np.ndarray:
        if not self.calibrator_:
            return raw
        return np.interp(raw, self.calibrator_["x"], self.calibrator_["y"])

    def _predict(self, X: pd.DataFrame) -> pd.DataFrame:
        raw = np.asarray(self.booster_.predict(lgb_matrix(X, self.columns_, self.categories_)))
        return pd.DataFrame({PROB_COLUMN: self._calibrate(raw)})

    def feature_importance(self) -> pd.Series:
        """Gain importance by feature."""
        b = self.booster_
        return pd.Series(b.feature_importance("gain"), index=b.feature_name()).sort_values(
            ascending=False)

    def _state(self) -> dict[str, Any]:
        return {"columns": self.columns_, "categories": self.categories_,
                "calibrator": json.loads(json.dumps(self.calibrator_))}

    def _save_native(self, path: Path) -> None:
        self.booster_.save_model(str(path / "lightgbm_stress.txt"))

    def _load_state(self, state: dict[str, Any], path: Path) -> None:
        self.columns_, self.categories_ = state["columns"], state["categories"]
        self.calibrator_ = state["calibrator"]
        self.booster_ = lgb.Booster(model_file=str(path / "lightgbm_stress.txt"))
