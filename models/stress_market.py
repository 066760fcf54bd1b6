"""A small regularised stress classifier on market-wide (cross-pool) and own-volatility signals.

With a few dozen real stress onsets, most of them shared by every pool at once (Terra, FTX,
the USDC depeg), a booster over sixty columns mostly fits noise. This model reads a dozen
inputs chosen before any evaluation: the pool's own volatility level and trend, and per
timestamp aggregates across the pools of the panel (mean trailing volatility versus each
pool's own median, mean absolute daily return, the largest 7-day move, the share of pools
falling that day, mean LP net flow). Every aggregate reads the rows at one timestamp t, so it
uses nothing after t. An L2 logistic regression on the standardised inputs gives P(stress);
its strength is chosen by least log loss on inner walk-forward folds of the training window
(``models.cv.inner_splits``, purged by the horizon), and the chosen strength's out-of-sample
scores there (``inner_scores_``) choose the alarm threshold (``alarm_threshold_``,
``models.alarm``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from features.schema import POOL_ID, TIMESTAMP
from models.alarm import store_threshold
from models.base import PROB_COLUMN, BaseForecaster, ForecastError
from models.cv import inner_splits

__all__ = ["MarketStress", "market_inputs", "MARKET_C_GRID"]

MARKET_C_GRID = (0.01, 0.1, 1.0)  # inverse L2 strengths tried on inner folds
_CLIP = 5.0  # standardised inputs are clipped to +-5 (one absurd row does not steer the fit)


def _column(X: pd.DataFrame, name: str) -> pd.Series:
    if name not in X.columns:
        raise ForecastError(f"market stress model needs feature column {name!r}; the table has "
                            f"{len(X.columns)} columns (build features with a 7d window)")
    return X[name].astype(float)


def _vs_own_median(X: pd.DataFrame) -> str:
    """The column of trailing volatility over the pool's expanding median (one per horizon)."""
    found = sorted(c for c in X.columns if c.startswith("rv_") and c.endswith("_vs_own_median"))
    if not found:
        raise ForecastError("market stress model needs a column rv_<horizon>_vs_own_median "
                            "(added by models.forecasts.model_matrix)")
    return found[0]


def market_inputs(X: pd.DataFrame) -> pd.DataFrame:
    """The model's inputs on X's index: own volatility signals and cross-pool aggregates at t.

    Own: log of the 7-day realised volatility, its log ratio to the pool's expanding median
    (``rv_<horizon>_vs_own_median``, from ``models.forecasts.model_matrix``), the 7d/30d volatility
    ratio and the largest 7-day move. Market, per timestamp over the pools present: mean of
    that volatility-over-median ratio, mean |ret_24h|, max of ``max_move_7d``, share of pools with a
    negative daily return, mean ``lp_netflow_7d``.
    """
    ts = X[TIMESTAMP]
    rv = _column(X, "rv_7d")
    rel = _column(X, _vs_own_median(X))
    ret = _column(X, "ret_24h")
    move = _column(X, "max_move_7d")
    flow = _column(X, "lp_netflow_7d")
    by = ts.to_numpy()
    out = pd.DataFrame({
        "own_log_rv_7d": np.log(rv.where(rv > 0)),
        "own_rv_vs_median": rel,
        "own_rv_ratio_7d_30d": _column(X, "rv_ratio_7d_30d"),
        "own_max_move_7d": move,
        "mkt_rv_vs_median": rel.groupby(by).transform("mean"),
        "mkt_abs_ret": ret.abs().groupby(by).transform("mean"),
        "mkt_max_move_7d": move.groupby(by).transform("max"),
        "mkt_down_share": (ret < 0).astype(float).where(ret.notna()).groupby(by)
        .transform("mean"),
        "mkt_netflow_7d": flow.groupby(by).transform("mean"),
    }, index=X.index)
    return out


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


class MarketStress(BaseForecaster):
    """L2 logistic P(stress) on own-volatility and market-wide inputs (see module doc).

    Parameters
    ----------
    horizon_periods : label horizon h, periods (purges the inner folds)
    inner_folds : inner walk-forward folds choosing the L2 strength (0: the middle one)
    c_grid : inverse L2 strengths to choose among
    """

    kind = "market_stress"
    is_classifier = True
    # chosen at fit on the training window (models.alarm): P(stress) at which a row alarms
    alarm_threshold_: float
    alarm_x_: float
    alarm_basis_: str

    def __init__(self, horizon_periods: int = 7, inner_folds: int = 3,
                 c_grid: tuple[float, ...] | list[float] = MARKET_C_GRID) -> None:
        self._params = {"horizon_periods": horizon_periods, "inner_folds": inner_folds,
                        "c_grid": list(c_grid)}
        self.horizon_periods, self.inner_folds = horizon_periods, inner_folds
        self.c_grid = [float(c) for c in c_grid]
        if not self.c_grid:
            raise ForecastError("market stress model: c_grid is empty")

    @staticmethod
    def _scaler(A: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        med = np.nan_to_num(np.nanmedian(A.to_numpy(float), axis=0))
        scale = np.nan_to_num(np.nanstd(A.to_numpy(float), axis=0), nan=1.0)
        scale[scale < 1e-12] = 1.0
        return med, scale

    @staticmethod
    def _z(A: pd.DataFrame, med: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return np.nan_to_num(np.clip((A.to_numpy(float) - med) / scale, -_CLIP, _CLIP))

    def _fit_c(self, A: pd.DataFrame, y: np.ndarray, c: float) -> dict[str, Any]:
        med, scale = self._scaler(A)
        m = LogisticRegression(C=c, max_iter=2000).fit(self._z(A, med, scale), y.astype(int))
        return {"median": med.tolist(), "scale": scale.tolist(), "coef": m.coef_[0].tolist(),
                "intercept": float(m.intercept_[0]), "c": c}

    def _prob(self, lin: dict[str, Any], A: pd.DataFrame) -> np.ndarray:
        z = self._z(A, np.asarray(lin["median"]), np.asarray(lin["scale"])) \
            @ np.asarray(lin["coef"]) + lin["intercept"]
        return 1 / (1 + np.exp(-z))

    def _fit(self, X: pd.DataFrame, y: pd.Series, X_all: pd.DataFrame) -> None:
        A = market_inputs(X_all).loc[X.index]  # aggregates over every pool at t, labelled or not
        yv = y.to_numpy(float)
        if len(np.unique(yv)) < 2:
            raise ForecastError(f"market stress model: the {len(yv)} training rows of pools "
                                f"{sorted(X[POOL_ID].unique())[:3]}... hold one class only")
        folds = inner_splits(X[TIMESTAMP], self.inner_folds, self.horizon_periods) \
            if self.inner_folds > 0 else []
        losses, scores = [], []
        for c in self.c_grid:
            ys, ps = [], []
            for tr, va in folds:
                if len(np.unique(yv[tr])) < 2:
                    continue
                ps.append(self._prob(self._fit_c(A.loc[tr], yv[tr], c), A.loc[va]))
                ys.append(yv[va])
            losses.append(_log_loss(np.concatenate(ys), np.concatenate(ps)) if ys else math.inf)
            scores.append(np.concatenate(ps) if ps else None)
        self.inner_losses_ = losses
        pick = int(np.argmin(losses)) if np.isfinite(losses).any() else len(self.c_grid) // 2
        self.linear_ = self._fit_c(A, yv, self.c_grid[pick])
        self.columns_ = list(A.columns)
        self.inner_scores_: np.ndarray | None = scores[pick]
        # without an inner fold with both classes: the training rows' own scores
        store_threshold(self, self.inner_scores_, lambda: self._prob(self.linear_, A), yv)

    def _predict(self, X: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({PROB_COLUMN: self._prob(self.linear_, market_inputs(X))})

    def feature_importance(self) -> pd.Series:
        """|coefficient| of each standardised input."""
        return pd.Series(np.abs(self.linear_["coef"]), index=self.columns_).sort_values(
            ascending=False)

    def _state(self) -> dict[str, Any]:
        return {"linear": self.linear_, "columns": self.columns_,
                "inner_losses": list(self.inner_losses_)}

    def _load_state(self, state: dict[str, Any], path: Any) -> None:
        self.linear_, self.columns_ = state["linear"], state["columns"]
        self.inner_losses_ = state.get("inner_losses", [])
