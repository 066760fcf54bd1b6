"""Wide (time x pool) matrices and causal NaN-aware rolling operations on them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.schema import FREQUENCIES, POOL_ID, TIMESTAMP

__all__ = ["Grid", "make_grid", "rolling_sum", "rolling_mean", "rolling_std", "rolling_max",
           "rolling_count", "lag", "ewm_mean", "periods_per_year", "rolling_corr"]


def periods_per_year(freq: str) -> float:
    """Number of panel periods in a 365-day year."""
    return pd.Timedelta(days=365) / FREQUENCIES[freq]


@dataclass
class Grid:
    """Mapping between the long panel rows and a dense (time x pool) grid."""

    times: pd.DatetimeIndex
    pools: list[str]
    ti: np.ndarray  # row -> time index
    pi: np.ndarray  # row -> pool index
    present: np.ndarray  # (T, P) bool: the pool has a row there

    def wide(self, values: np.ndarray | pd.Series) -> np.ndarray:
        """Scatter a long column into a (T, P) float matrix, NaN where no row."""
        out = np.full(self.present.shape, np.nan)
        out[self.ti, self.pi] = np.asarray(values, dtype=float)
        return out

    def long(self, w: np.ndarray) -> np.ndarray:
        """Gather a (T, P) matrix back into the long row order."""
        return w[self.ti, self.pi]


def make_grid(frame: pd.DataFrame, freq: str) -> Grid:
    """Build the dense grid of a panel (union of timestamps at the panel frequency)."""
    ts = frame[TIMESTAMP]
    step = FREQUENCIES[freq]
    times = pd.date_range(ts.min(), ts.max(), freq=step)
    pools = sorted(frame[POOL_ID].unique().tolist())
    pmap = {p: i for i, p in enumerate(pools)}
    ti = ((ts - times[0]) // step).to_numpy().astype(np.int64)
    pi = frame[POOL_ID].map(pmap).to_numpy().astype(np.int64)
    present = np.zeros((len(times), len(pools)), dtype=bool)
    present[ti, pi] = True  # missing rows are present in the grid but carry NaN values
    return Grid(times=times, pools=pools, ti=ti, pi=pi, present=present)


def _csum(x: np.ndarray) -> np.ndarray:
    """Cumulative sum along time with a leading zero row."""
    out = np.zeros((x.shape[0] + 1, x.shape[1]))
    np.cumsum(x, axis=0, out=out[1:])
    return out


def _window(x: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing sums of the valid values and their count over w periods (one pass each)."""
    valid = ~np.isnan(x)
    cs = _csum(np.where(valid, x, 0.0))
    cn = _csum(valid.astype(np.float64))
    lo = np.maximum(np.arange(1, x.shape[0] + 1) - w, 0)
    return cs[1:] - cs[lo], cn[1:] - cn[lo]


def _min_periods(w: int, min_periods: int | None) -> int:
    return max(1, (w + 1) // 2) if min_periods is None else min_periods


def rolling_sum(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Trailing sum over the last w periods (inclusive of t), NaN-aware.

    NaN where fewer than min_periods (default ceil(w/2)) valid values are in the window.
    """
    s, n = _window(x, w)
    return np.where(n >= _min_periods(w, min_periods), s, np.nan)


def rolling_count(x: np.ndarray, w: int) -> np.ndarray:
    """Number of valid values in the trailing window."""
    return _window(np.where(np.isnan(x), np.nan, 0.0), w)[1]


def rolling_mean(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Trailing NaN-aware mean over w periods."""
    s, n = _window(x, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= _min_periods(w, min_periods), s / np.maximum(n, 1), np.nan)


def rolling_std(x: np.ndarray, w: int, min_periods: int | None = None) -> np.ndarray:
    """Trailing NaN-aware sample standard deviation over w periods."""
    s, n = _window(x, w)
    s2, _ = _window(x * x, w)
    m = s / np.maximum(n, 1)
    var = (s2 / np.maximum(n, 1) - m * m) * n / np.maximum(n - 1, 1)
    ok = n >= _min_periods(w, min_periods)
    return np.where(ok, np.sqrt(np.clip(var, 0, None)), np.nan)


def rolling_corr(x: np.ndarray, y: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing correlation and beta (cov(x, y) / var(y)) over w periods."""
    both = ~(np.isnan(x) | np.isnan(y))
    xx, yy = np.where(both, x, np.nan), np.where(both, y, np.nan)
    mx, my = rolling_mean(xx, w), rolling_mean(yy, w)
    cov = rolling_mean(xx * yy, w) - mx * my
    vx = rolling_mean(xx * xx, w) - mx * mx
    vy = rolling_mean(yy * yy, w) - my * my
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.sqrt(np.clip(vx * vy, 1e-30, None))
        beta = cov / np.where(vy > 1e-30, vy, np.nan)
    return np.clip(corr, -1, 1), beta


def rolling_max(x: np.ndarray, w: int) -> np.ndarray:
    """Trailing NaN-aware max over w periods (NaN only when the window has no value)."""
    return pd.DataFrame(x).rolling(w, min_periods=1).max().to_numpy()


def lag(x: np.ndarray, k: int = 1) -> np.ndarray:
    """Value k periods earlier (NaN for the first k)."""
    out = np.full_like(x, np.nan)
    if k < x.shape[0]:
        out[k:] = x[:-k]
    return out


def ewm_mean(x: np.ndarray, halflife: float) -> np.ndarray:
    """Causal exponentially weighted mean ignoring NaN (pandas ewm, adjust=True)."""
    return pd.DataFrame(x).ewm(halflife=halflife, ignore_na=True, min_periods=2).mean().to_numpy()
