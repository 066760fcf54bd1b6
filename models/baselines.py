"""Honest baselines: naive, seasonal naive, EWMA, HAR and the stress base rate.

Regression baselines read a trailing proxy of the target from the feature table (for example
the trailing fee yield over the horizon's duration for the forward fee yield) and scale it to
the horizon. Their quantiles come from the empirical distribution of log(y / forecast) on the
training rows, and their mean from the average ratio y / forecast there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import names
from features.schema import POOL_ID
from models.base import PROB_COLUMN, QUANTILE_COLUMNS, QUANTILES, BaseForecaster, ForecastError
from models.names import MEAN_COLUMN
from models.quantile import QuantileForecaster, log_ratio_quantiles

__all__ = ["ColumnForecaster", "HARForecaster", "BaseRateStress"]


class ColumnForecaster(QuantileForecaster):
    """Forecast = scale x a trailing feature column (naive, seasonal naive or EWMA baseline).

    Parameters
    ----------
    column : feature column holding the trailing proxy
    scale : multiplier turning the proxy into the horizon's units (e.g. horizon periods)
    name : label of the baseline (naive, seasonal_naive, ewma)
    """

    kind = "column"

    def __init__(self, column: str, scale: float = 1.0, name: str = "naive") -> None:
        self._params = {"column": column, "scale": scale, "name": name}
        self.column, self.scale, self.name = column, scale, name

    def point(self, X: pd.DataFrame) -> np.ndarray:
        """The proxy scaled to the horizon (NaN where the feature is missing)."""
        if self.column not in X.columns:
            raise ForecastError(f"baseline {self.name} needs feature column {self.column!r}")
        return X[self.column].to_numpy(float) * self.scale

    def _fit(self, X: pd.DataFrame, y: pd.Series, X_all: pd.DataFrame) -> None:
        pred = self.point(X)
        self.log_q_, self.mean_ratio_ = log_ratio_quantiles(y.to_numpy(float), pred, QUANTILES)
        self.fill_ = float(np.nanmedian(y.to_numpy(float)))

    def _predict(self, X: pd.DataFrame) -> pd.DataFrame:
        p = self.point(X)
        p = np.where(np.isfinite(p), p, self.fill_)
        cols = {c: p * np.exp(lq) for c, lq in zip(QUANTILE_COLUMNS, self.log_q_, strict=True)}
        return pd.DataFrame({**cols, MEAN_COLUMN: p * self.mean_ratio_})

    def _state(self) -> dict[str, Any]:
        return {"log_q": self.log_q_, "fill": self.fill_, "mean_ratio": self.mean_ratio_}

    def _load_state(self, state: dict[str, Any], path: Path) -> None:
        self.log_q_, self.fill_ = state["log_q"], state["fill"]
        self.mean_ratio_ = state.get("mean_ratio", 1.0)


class HARForecaster(QuantileForecaster):
    """HAR volatility model: least squares of the target on daily/weekly/monthly components."""

    kind = "har"

    def __init__(self, columns: tuple[str, ...] | None = None) -> None:
        self.columns = list(columns) if columns is not None else names.har_columns()
        self._params = {"columns": list(self.columns)}

    def _design(self, X: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.columns if c not in X.columns]
        if missing:
            raise ForecastError(f"HAR needs feature columns {missing}")
        A = X[self.columns].to_numpy(float)
        return np.column_stack([np.ones(len(A)), A])

    def _fit(self, X: pd.DataFrame, y: pd.Series, X_all: pd.DataFrame) -> None:
        # early in a history the long components are not defined yet: use those that are
        usable = [c for c in self.columns if c in X and X[c].notna().mean() > 0.5]
        cols = [0] + [1 + self.columns.index(c) for c in usable]
        A = self._design(X)[:, cols]
        yv = y.to_numpy(float)
        ok = np.isfinite(A).all(axis=1) & np.isfinite(yv)
        if ok.sum() < len(cols) + 2:
            raise ForecastError(f"HAR has {int(ok.sum())} complete training rows for "
                                f"{len(cols)} coefficients")
        coef, *_ = np.linalg.lstsq(A[ok], yv[ok], rcond=None)
        resid = yv[ok] - A[ok] @ coef
        full = np.zeros(len(self.columns) + 1)
        full[cols] = coef
        self.coef_ = full.tolist()
        self.resid_q_ = [float(np.quantile(resid, q)) for q in QUANTILES]
        self.resid_mean_ = float(resid.mean())
        self.fill_ = float(np.nanmedian(yv))

    def _predict(self, X: pd.DataFrame) -> pd.DataFrame:
        A = np.nan_to_num(self._design(X)) * (np.asarray(self.coef_) != 0)
        p = A @ np.asarray(self.coef_)
        p = np.where(np.isfinite(p), p, self.fill_)
        out = {c: np.clip(p + r, 0, None)
               for c, r in zip(QUANTILE_COLUMNS, self.resid_q_, strict=True)}
        return pd.DataFrame({**out, MEAN_COLUMN: np.clip(p + self.resid_mean_, 0, None)})

    def _state(self) -> dict[str, Any]:
        return {"coef": self.coef_, "resid_q": self.resid_q_, "fill": self.fill_,
                "resid_mean": self.resid_mean_}

    def _load_state(self, state: dict[str, Any], path: Path) -> None:
        self.coef_, self.resid_q_, self.fill_ = state["coef"], state["resid_q"], state["fill"]
        self.resid_mean_ = state.get("resid_mean", 0.0)


class BaseRateStress(BaseForecaster):
    """Stress probability = each pool's share of labelled stress in its training history."""

    kind = "base_rate"
    is_classifier = True

    def __init__(self, prior_weight: float = 20.0) -> None:
        self._params = {"prior_weight": prior_weight}
        self.prior_weight = prior_weight

    def _fit(self, X: pd.DataFrame, y: pd.Series, X_all: pd.DataFrame) -> None:
        g = pd.DataFrame({"p": X[POOL_ID].to_numpy(), "y": y.to_numpy(float)}).groupby("p")["y"]
        self.global_ = float(y.mean())
        n, s = g.size(), g.sum()
        rate = (s + self.prior_weight * self.global_) / (n + self.prior_weight)
        self.rates_ = {str(k): float(v) for k, v in rate.items()}

    def _predict(self, X: pd.DataFrame) -> pd.DataFrame:
        p = X[POOL_ID].map(self.rates_).fillna(self.global_).to_numpy(float)
        return pd.DataFrame({PROB_COLUMN: p})

    def _state(self) -> dict[str, Any]:
        return {"global": self.global_, "rates": self.rates_}

    def _load_state(self, state: dict[str, Any], path: Path) -> None:
        self.global_, self.rates_ = state["global"], state["rates"]
