"""Forecaster factory per target and kind, model input matrix, and the per-target bundle."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.build import FeatureSet, feature_columns
from features.schema import CHAIN, FEE_TIER, POOL_ID, PROTOCOL, TIMESTAMP, TVL_USD
from models.base import PROB_COLUMN, BaseForecaster
from models.baselines import BaseRateStress, ColumnForecaster, HARForecaster
from models.gbm import LightGBMQuantile
from models.sequence import GRUForecaster, GRUStress
from models.stress import LightGBMStress

__all__ = ["TARGETS", "KINDS", "make_forecaster", "model_matrix", "seasonal_naive",
           "ForecastBundle", "baseline_columns"]

TARGETS = {"fee_yield": "fwd_fee_yield", "volatility": "fwd_volatility", "stress": "fwd_stress"}
KINDS = ("baseline", "lightgbm", "torch")


def _h_name(freq: str) -> str:
    return "24h" if freq == "1h" else "7d"


def baseline_columns(target: str, freq: str, horizon_periods: int) -> dict[str, tuple[str, float]]:
    """Naive, seasonal-naive and EWMA proxies: name -> (feature column, scale to horizon)."""
    hn = _h_name(freq)
    if target == "fee_yield":
        return {"naive": ("fee_yield_1", float(horizon_periods)),
                "seasonal_naive": (f"fee_yield_{hn}", horizon_periods / _periods(hn, freq)),
                "ewma": ("fee_yield_ewm_hl24" if freq == "1h" else "fee_yield_ewm_hl1",
                         float(horizon_periods))}
    if target == "volatility":
        return {"naive": ("rv_6h" if freq == "1h" else "har_d", 1.0),
                "seasonal_naive": (f"rv_{hn}", 1.0),
                "ewma": ("ewma_vol_hl24" if freq == "1h" else "ewma_vol_hl1", 1.0)}
    raise ValueError(f"no column baselines for target {target!r}")


def _periods(duration: str, freq: str) -> int:
    return int(pd.Timedelta(duration.replace("d", "D")) // pd.Timedelta(
        "1h" if freq == "1h" else "1D"))


def make_forecaster(kind: str, target: str, freq: str, horizon_periods: int = 24,
                    **params: Any) -> BaseForecaster:
    """The forecaster of a kind for a target: baseline, lightgbm or torch."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {list(TARGETS)}")
    seed = int(params.pop("seed", 0))
    if kind == "baseline":
        if target == "stress":
            return BaseRateStress()
        if target == "volatility":
            return HARForecaster()
        col, scale = baseline_columns(target, freq, horizon_periods)["ewma"]
        return ColumnForecaster(col, scale, "ewma")
    if kind == "seasonal_naive":
        if target == "stress":
            return BaseRateStress()
        col, scale = baseline_columns(target, freq, horizon_periods)["seasonal_naive"]
        return ColumnForecaster(col, scale, "seasonal_naive")
    if kind == "lightgbm":
        stride = int(params.pop("row_stride", 3 if freq == "1h" else 1))
        if target == "stress":
            return LightGBMStress(seed=seed, row_stride=stride, **params)
        return LightGBMQuantile(seed=seed, row_stride=stride, **params)
    if kind == "torch":
        params.setdefault("lookback", 24 if freq == "1h" else 14)
        if target == "stress":
            return GRUStress(seed=seed, **params)
        return GRUForecaster(seed=seed, **params)
    raise ValueError(f"unknown model kind {kind!r}; expected one of {KINDS}")


def model_matrix(fs: FeatureSet) -> pd.DataFrame:
    """Features joined with pool metadata (protocol, chain, fee tier) as model inputs."""
    meta = fs.meta[[POOL_ID, PROTOCOL, CHAIN, FEE_TIER]]
    X = fs.features.merge(meta, on=POOL_ID, how="left", validate="many_to_one")
    return X.reset_index(drop=True)


def seasonal_naive(X: pd.DataFrame, target: str, freq: str, horizon_periods: int) -> np.ndarray:
    """The seasonal-naive point forecast every model is scored against (MASE)."""
    col, scale = baseline_columns(target, freq, horizon_periods)["seasonal_naive"]
    return X[col].to_numpy(float) * scale


class ForecastBundle:
    """One fitted forecaster per target, turned into the allocator's per-pool inputs."""

    def __init__(self, kind: str = "lightgbm", freq: str = "1h", horizon_periods: int = 24,
                 seed: int = 0, **params: Any) -> None:
        self.kind, self.freq, self.horizon_periods = kind, freq, horizon_periods
        self.seed, self.params = seed, params
        self.models_: dict[str, Any] = {}

    def fit(self, X: pd.DataFrame, labels: pd.DataFrame,
            upto: pd.Timestamp | None = None) -> ForecastBundle:
        """Fit each target on rows whose label window ended by ``upto`` (purged)."""
        X = X.reset_index(drop=True)
        labels = labels.reset_index(drop=True)
        keep = np.ones(len(X), bool)
        if upto is not None:
            step = pd.Timedelta("1h" if self.freq == "1h" else "1D")
            keep = (X[TIMESTAMP] + self.horizon_periods * step <= upto).to_numpy()
        for target, col in TARGETS.items():
            m = make_forecaster(self.kind, target, self.freq, self.horizon_periods,
                                seed=self.seed, **self.params)
            y = labels[col].where(keep)
            try:
                self.models_[target] = m.fit(X, y)
            except ValueError:
                if self.kind == "baseline":
                    raise
                fb = make_forecaster("baseline", target, self.freq, self.horizon_periods)
                self.models_[target] = fb.fit(X, y)
        return self

    def predict_rows(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-row forecasts of every target (fee_yield*, volatility*, p_stress)."""
        out = pd.DataFrame(index=X.index)
        for target, model in self.models_.items():
            p = model.predict(X)
            if target == "stress":
                out["p_stress"] = p[PROB_COLUMN].to_numpy()
            else:
                out[target] = p["q50"].to_numpy()
                out[f"{target}_q10"] = p["q10"].to_numpy()
                out[f"{target}_q90"] = p["q90"].to_numpy()
        return out

    def predict_pools(self, X: pd.DataFrame, tvl: pd.Series | None = None) -> pd.DataFrame:
        """Allocator inputs for the latest row of each pool in X, indexed by pool_id."""
        X = X.reset_index(drop=True)
        rows = self.predict_rows(X)
        rows[POOL_ID] = X[POOL_ID].to_numpy()
        rows[TIMESTAMP] = X[TIMESTAMP].to_numpy()
        if "log_tvl" in X.columns:
            rows[TVL_USD] = np.exp(X["log_tvl"].to_numpy(float))
        last = rows.sort_values(TIMESTAMP).groupby(POOL_ID).tail(1).set_index(POOL_ID)
        last = last.drop(columns=[TIMESTAMP])
        for c in ("fee_yield", "fee_yield_q10", "fee_yield_q90", "volatility", "volatility_q10",
                  "volatility_q90"):
            if c in last:
                last[c] = last[c].clip(lower=0)
        if tvl is not None:
            last[TVL_USD] = tvl.reindex(last.index)
        elif TVL_USD not in last.columns:
            raise ValueError("predict_pools needs TVL: pass tvl or a log_tvl feature column")
        return last

    def versions(self) -> dict[str, str]:
        """Kind of the model behind each target."""
        return {t: m.kind for t, m in self.models_.items()}


def feature_names(fs: FeatureSet) -> list[str]:
    """Model input feature names of a feature set."""
    return feature_columns(fs.features)
