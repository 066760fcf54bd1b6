"""Quantile forecasters that also give the conditional mean (the allocator prices means)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.base import QUANTILE_COLUMNS, BaseForecaster, ForecastError
from models.names import MEAN_COLUMN

__all__ = ["QuantileForecaster", "log_ratio_quantiles", "EPS"]

EPS = 1e-12


class QuantileForecaster(BaseForecaster):
    """Predicts q10 / q50 / q90 and ``mean``; ``_predict`` may give the mean (else q50)."""

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Quantiles (sorted, never crossing) and the mean forecast, aligned to X's index."""
        if self.is_classifier:
            return super().predict(X)
        if not getattr(self, "fitted_", False):
            raise ForecastError(f"{self.kind} forecaster is not fitted")
        self._check_X(X)
        raw = self._predict(X)
        q = np.sort(raw[QUANTILE_COLUMNS].to_numpy(float), axis=1)
        out = pd.DataFrame(q, index=X.index, columns=QUANTILE_COLUMNS)
        mean = raw[MEAN_COLUMN].to_numpy(float) if MEAN_COLUMN in raw else q[:, 1]
        out[MEAN_COLUMN] = np.where(np.isfinite(mean), mean, q[:, 1])
        return out


def log_ratio_quantiles(y: np.ndarray, pred: np.ndarray,
                        levels: tuple[float, ...]) -> tuple[list[float], float]:
    """Quantiles of log(y / pred) at ``levels`` and the mean of y / pred (multiplicative
    error bands and the smearing factor of the mean); zeros and 1 with fewer than 10 rows.

    The ratios entering the mean are winsorised at their 99.5th percentile, so that a few
    glitched rows of an export cannot set the expected value of every forecast.
    """
    ok = np.isfinite(y) & np.isfinite(pred) & (pred > 0) & (y >= 0)
    if ok.sum() < 10:
        return [0.0] * len(levels), 1.0
    lr = np.log((y[ok] + EPS) / (pred[ok] + EPS))
    ratio = np.exp(np.minimum(lr, np.quantile(lr, 0.995)))
    return [float(np.quantile(lr, q)) for q in levels], float(np.mean(ratio))
