"""GARCH(1,1) volatility per pool: the forecast active LP managers publish.

Each pool's parameters (constant mean mu, omega, alpha, beta) are estimated by maximum
likelihood on the period returns of its training rows: the ``arch`` package's Gaussian
likelihood (its backcast start and variance bounds), compiled with its exact gradient and
maximised by SLSQP from arch's starting values under arch's bounds and constraints, so the
estimate is arch's (``garch_params_arch`` runs arch itself, the reference). Forecasting
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
from models import _garch_kernels as kern
from models.base import QUANTILE_COLUMNS, QUANTILES, ForecastError
from models.names import MEAN_COLUMN
from models.quantile import QuantileForecaster, log_ratio_quantiles

__all__ = ["GARCHVolatility", "garch_params", "garch_params_arch", "garch_forecast",
           "garch_forecast_reference",
           "garch_loglik"]

MAX_PERSISTENCE = 0.9995  # alpha + beta is kept below 1 so the variance has a finite level
MAX_FIT_ROWS = 3000  # the most recent returns a pool's likelihood reads
MIN_FIT_ROWS = 50  # fewer finite returns than this: no fit
BACKCAST_ROWS, BACKCAST_DECAY = 75, 0.94  # arch's start of the variance recursion
MAX_ITER = 300
# arch's constraints A x >= b on (mu, omega, alpha, beta): omega, alpha, beta >= 0 and
# alpha + beta <= 1
_CON_A = np.array([[0.0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, -1, -1]])
_CON_B = np.array([0.0, 0, 0, -1])
# arch's grid of starting values: alpha, and alpha + beta
_START_ALPHA = (0.01, 0.05, 0.1, 0.2)
_START_PERSISTENCE = (0.5, 0.7, 0.9, 0.98)


def _fit_sample(returns: np.ndarray) -> np.ndarray | None:
    """The finite returns a fit reads (the last MAX_FIT_ROWS); None when too few or constant."""
    r = np.asarray(returns, float)
    r = r[np.isfinite(r)][-MAX_FIT_ROWS:]
    if len(r) < MIN_FIT_ROWS or not np.std(r) > 0:
        return None
    return r


def _per_period(x: np.ndarray, scale: float) -> dict[str, float] | None:
    """Parameters of the scaled fit in per-period units, persistence capped; None if invalid."""
    mu, omega, alpha, beta = (float(v) for v in x)
    if not (np.isfinite(alpha) and np.isfinite(beta)) or alpha < 0 or beta < 0:
        return None
    if alpha + beta > MAX_PERSISTENCE:
        shrink = MAX_PERSISTENCE / (alpha + beta)
        alpha, beta = alpha * shrink, beta * shrink
    return {"mu": mu / scale, "omega": omega / scale**2, "alpha": alpha, "beta": beta}


class _Likelihood:
    """arch's objective for one scaled series: fixed backcast and variance bounds."""

    def __init__(self, y: np.ndarray) -> None:
        self.y = np.ascontiguousarray(y, dtype=float)
        self.mu0 = float(np.mean(self.y))
        e = self.y - self.mu0
        tau = min(BACKCAST_ROWS, len(e))
        w = BACKCAST_DECAY ** np.arange(tau)
        w = w / sum(w)
        self.backcast = float(np.sum(e[:tau] ** 2.0 * w))
        ewma = np.empty(len(e))
        kern.ewma_variance(e, BACKCAST_DECAY, float(w.dot(e[:tau] ** 2.0)), ewma)
        e2max = float(np.max(e**2.0))
        self.lo = np.maximum(ewma / 1e6, float(np.var(e)) / 1e8)
        hi = np.maximum(ewma * 1e6, 1.0 + e2max)
        self.hi = np.minimum(hi, 1e7 * (1.0 + e2max))
        self.target = float(np.mean(e**2))
        self._grad = np.empty(4)

    def value(self, x: np.ndarray) -> float:
        """Negative log-likelihood at x = (mu, omega, alpha, beta)."""
        return float(kern.neg_loglik(np.asarray(x, float), self.y, self.backcast, self.lo,
                                     self.hi))

    def value_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Negative log-likelihood at x and its gradient."""
        f = kern.neg_loglik_grad(np.asarray(x, float), self.y, self.backcast, self.lo, self.hi,
                                 self._grad)
        return float(f), self._grad.copy()

    def start(self) -> np.ndarray:
        """The best of arch's grid of starting values (mu at the sample mean)."""
        best, best_f = np.empty(4), np.inf
        for a in _START_ALPHA:
            for p in _START_PERSISTENCE:
                x = np.array([self.mu0, (1.0 - p) * self.target, a, p - a])
                f = self.value(x)
                if f < best_f:  # first of equals wins, as arch's argmax
                    best, best_f = x, f
        return best

    def bounds(self) -> list[tuple[float, float]]:
        """arch's parameter bounds: mu free, omega within (1e-8, 10) x the mean square."""
        return [(-np.inf, np.inf), (1e-8 * self.target, 10.0 * self.target), (0.0, 1.0),
                (0.0, 1.0)]


def _mle(y: np.ndarray) -> np.ndarray | None:
    """Maximum-likelihood (mu, omega, alpha, beta) of scaled returns y; None if it fails."""
    from scipy.optimize import minimize

    lik = _Likelihood(y)
    cons = {"type": "ineq", "fun": lambda x: _CON_A @ x - _CON_B, "jac": lambda x: _CON_A}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            opt = minimize(lik.value_grad, lik.start(), jac=True, method="SLSQP",
                           bounds=lik.bounds(), constraints=[cons],
                           options={"maxiter": MAX_ITER})
        except (ValueError, np.linalg.LinAlgError):
            return None
    return np.asarray(opt.x, float)


def garch_params(returns: np.ndarray) -> dict[str, float] | None:
    """MLE of a constant-mean GARCH(1,1) on returns (per period); None if it cannot be fit.

    Parameters
    ----------
    returns : period returns in time order; non-finite ones are dropped and the last
        MAX_FIT_ROWS are read

    Returns
    -------
    mu, omega (per period, per period squared), alpha, beta; alpha + beta at most
    MAX_PERSISTENCE. The estimate is arch's (same likelihood, backcast, bounds, starting
    values and optimiser) with an exact gradient.
    """
    r = _fit_sample(returns)
    if r is None:
        return None
    scale = 1.0 / float(np.std(r))
    x = _mle(r * scale)
    return None if x is None else _per_period(x, scale)


def garch_params_arch(returns: np.ndarray) -> dict[str, float] | None:
    """garch_params estimated by the ``arch`` package (the reference implementation)."""
    from arch import arch_model

    r = _fit_sample(returns)
    if r is None:
        return None
    scale = 1.0 / float(np.std(r))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = arch_model(r * scale, mean="Constant", vol="GARCH", p=1, q=1,
                             rescale=False).fit(disp="off", show_warning=False,
                                                options={"maxiter": MAX_ITER})
        except (ValueError, np.linalg.LinAlgError):
            return None
    p = res.params
    return _per_period(np.array([p["mu"], p["omega"], p["alpha[1]"], p["beta[1]"]]), scale)


def garch_loglik(returns: np.ndarray, params: dict[str, float]) -> float:
    """Normal log-likelihood of garch_params' sample of returns under per-period params.

    The likelihood is arch's (backcast start, variance bounds) on the returns scaled to unit
    standard deviation, the scale both estimators maximise; NaN when no fit is possible.
    """
    r = _fit_sample(returns)
    if r is None:
        return float("nan")
    scale = 1.0 / float(np.std(r))
    x = np.array([params["mu"] * scale, params["omega"] * scale**2, params["alpha"],
                  params["beta"]])
    return -_Likelihood(r * scale).value(x)


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
    decay = (1 - phi**h) / (1 - phi)
    r = np.ascontiguousarray(ret, dtype=float)
    out = np.empty(len(r))
    kern.forecast_vol(r, float(s2), float(mu), float(omega), float(a), float(b), float(level),
                      float(decay), int(h), float(ppy), out)
    return out


def garch_forecast_reference(ret: np.ndarray, init_var: float, params: dict[str, float], h: int,
                              ppy: float) -> np.ndarray:
    """garch_forecast as the pure-Python loop it replaced (the reference of tests and benchmark)."""
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
