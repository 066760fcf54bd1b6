"""GARCH(1,1) volatility per pool: the forecast active LP managers publish.

Each pool's parameters (constant mean mu, omega, alpha, beta) are estimated by maximum
likelihood with the ``arch`` package on the period returns of its training rows. Forecasting
runs the variance recursion sigma2[t+1] = omega + alpha e[t]^2 + beta sigma2[t] through the rows
of X in time order, so a forecast at t reads returns up to t only. The recursion starts at a
pool's first row in X from its trailing variance (the longest realised-volatility feature),
which it forgets at rate alpha + beta per period. The forecast of the horizon's annualised
realised volatility is sqrt(ppy / h x sum_k E[r(t+k)^2]) with the GARCH term structure
E[sigma2(t+k)] = v + phi^(k-1) (sigma2(t+1) - v), phi = alpha + beta, v = omega / (1 - phi).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.schema import POOL_ID, TIMESTAMP
from models.base import QUANTILE_COLUMNS, QUANTILES, ForecastError
from models.names import MEAN_COLUMN
from models.quantile import QuantileForecaster, log_ratio_quantiles

__all__ = ["GARCHVolatility", "garch_params", "garch_forecast"]

MAX_PERSISTENCE = 0.9995  # alpha + beta is kept below 1 so the variance has a finite level
MAX_FIT_ROWS = 3000  # the most recent returns a pool's likelihood reads


def garch_params(returns: np.ndarray) -> dict[str, float] | None:
    """MLE of a constant-mean GARCH(1,1) on returns (per period); None if it cannot be fit."""
    from arch import arch_model

    r = np.asarray(returns, float)
    r = r[np.isfinite(r)][-MAX_FIT_ROWS:]
    if len(r) < 50 or not np.std(r) > 0:
        return None
    scale = 1.0 / float(np.std(r))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = arch_model(r * scale, mean="Constant", vol="GARCH", p=1, q=1,
                             rescale=False).fit(disp="off", show_warning=False,
                                                options={"maxiter": 300})
        except (ValueError, np.linalg.LinAlgError):
            return None
    p = res.params
    alpha, beta = float(p["alpha[1]"]), float(p["beta[1]"])
    if not (np.isfinite(alpha) and np.isfinite(beta)) or alpha < 0 or beta < 0:
        return None
    if alpha + beta > MAX_PERSISTENCE:
        shrink = MAX_PERSISTENCE / (alpha + beta)
        alpha, beta = alpha * shrink, beta * shrink
    return {"mu": float(p["mu"]) / scale, "omega": float(p["omega"]) / scale**2,
            "alpha": alpha, "beta": beta}


def garch_forecast(ret: np.ndarray, init_var: float, params: dict[str, float], h: int,
                   ppy: float) -> np.ndarray:
    """Annualised volatility forecast over the next h periods after each return of a series.

    Parameters
    ----------
    ret : one pool's period returns in time order (NaN: no update, the variance decays
        towards its level)
    init_var : variance (per period) before the first return
    params : mu, omega, alpha, beta (per-period units)
    h : horizon, periods
    ppy : periods per year
    """
    mu, omega, a, b = params["mu"], params["omega"], params["alpha"], params["beta"]
    phi = a + b
    level = omega / (1 - phi)
    s2 = init_var if np.isfinite(init_var) and init_var > 0 else level
    out = np.empty(len(ret))
    decay = (1 - phi**h) / (1 - phi)
    for t, r in enumerate(np.asarray(ret, float)):
        e2 = (r - mu) ** 2 if np.isfinite(r) else s2
        s2 = omega + a * e2 + b * s2
        total = h * level + (s2 - level) * decay + h * mu * mu
        out[t] = np.sqrt(max(total, 0.0) / h * ppy)
    return out


class GARCHVolatility(QuantileForecaster):
    """Per-pool GARCH(1,1) forecast of the horizon's realised volatility (annualised).

    Parameters
    ----------
    return_column : feature column with each period's log return
    init_column : annualised trailing volatility that starts the recursion (without it, the
        recursion starts from the pool's long-run GARCH variance)
    horizon_periods : label horizon h, periods
    periods_per_year : periods in a year of the panel's frequency
    """

    kind = "garch"

    def __init__(self, return_column: str, init_column: str, horizon_periods: int,
                 periods_per_year: float) -> None:
        self._params = {"return_column": return_column, "init_column": init_column,
                        "horizon_periods": horizon_periods, "periods_per_year": periods_per_year}
        self.return_column, self.init_column = return_column, init_column
        self.horizon_periods, self.periods_per_year = horizon_periods, periods_per_year

    def _check_columns(self, X: pd.DataFrame) -> None:
        if self.return_column not in X.columns:
            raise ForecastError(f"GARCH needs the period return column {self.return_column!r}")

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        """Point forecast per row of X (recursion per pool in time order)."""
        self._check_columns(X)
        out = np.full(len(X), np.nan)
        order = np.lexsort((pd.DatetimeIndex(X[TIMESTAMP]).asi8, X[POOL_ID].astype(str).to_numpy()))
        pools = X[POOL_ID].astype(str).to_numpy()[order]
        ret = X[self.return_column].to_numpy(float)[order]
        init = (X[self.init_column].to_numpy(float)[order] ** 2 / self.periods_per_year
                if self.init_column in X.columns else np.full(len(X), np.nan))
        starts = np.flatnonzero(np.r_[True, pools[1:] != pools[:-1]])
        ends = np.r_[starts[1:], len(pools)]
        for a, b in zip(starts, ends, strict=True):
            p = self.params_.get(pools[a], self.pooled_)
            out[order[a:b]] = garch_forecast(ret[a:b], init[a], p, self.horizon_periods,
                                             self.periods_per_year)
        return out

    def _fit(self, X: pd.DataFrame, y: pd.Series, X_all: pd.DataFrame) -> None:
        self._check_columns(X_all)
        A = X_all.sort_values([POOL_ID, TIMESTAMP])
        fitted = {str(p): garch_params(g[self.return_column].to_numpy(float))
                  for p, g in A.groupby(POOL_ID, sort=False)}
        self.params_ = {p: v for p, v in fitted.items() if v is not None}
        if not self.params_:
            raise ForecastError("GARCH could not be fit on any pool (too few returns)")
        self.pooled_ = {k: float(np.median([v[k] for v in self.params_.values()]))
                        for k in ("mu", "omega", "alpha", "beta")}
        pred = pd.Series(self._raw(X_all), index=X_all.index).loc[X.index].to_numpy()
        self.log_q_, self.mean_ratio_ = log_ratio_quantiles(y.to_numpy(float), pred, QUANTILES)
        self.fill_ = float(np.nanmedian(y.to_numpy(float)))

    def _predict(self, X: pd.DataFrame) -> pd.DataFrame:
        p = self._raw(X)
        p = np.where(np.isfinite(p), p, self.fill_)
        cols = {c: p * np.exp(q) for c, q in zip(QUANTILE_COLUMNS, self.log_q_, strict=True)}
        return pd.DataFrame({**cols, MEAN_COLUMN: p * self.mean_ratio_})

    def _state(self) -> dict[str, Any]:
        return {"params": self.params_, "pooled": self.pooled_, "log_q": self.log_q_,
                "mean_ratio": self.mean_ratio_, "fill": self.fill_}

    def _load_state(self, state: dict[str, Any], path: Path) -> None:
        self.params_, self.pooled_ = state["params"], state["pooled"]
        self.log_q_, self.mean_ratio_ = state["log_q"], state["mean_ratio"]
        self.fill_ = state["fill"]
