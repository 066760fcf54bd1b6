"""Wide (time x pool) matrices and causal NaN-aware rolling operations on them.

The rolling operations run as single-pass compiled kernels (``features._kernels``): one
running sum per pool, accumulated in float64, so a window costs the same whatever its length.
Each takes ``dtype`` for its output (float64 by default; float32 halves the memory of a
feature that is only stored).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import DTypeLike

from features import _grid_kernels as gkern
from features import _kernels as kern
from features.schema import FREQUENCIES, POOL_ID, TIMESTAMP

__all__ = ["Grid", "make_grid", "rolling_sum", "rolling_mean", "rolling_std", "rolling_max",
           "rolling_count", "rolling_rms", "lag", "ewm_mean", "periods_per_year",
           "rolling_corr", "feature_threads", "run_all", "run_beside"]

_GATHER_BLOCK = 64  # grid rows per block of the blocked gather (in L2 up to ~2,000 pools)
_GATHER_BYTES = 384 * 1024  # grid bytes per block of the cleaning gather (a share of L2)


_POOL: ThreadPoolExecutor | None = None
_THREAD_PREFIX = "feature-build"


def feature_threads() -> int:
    """Threads a feature build uses: env LPA_THREADS, else the CPUs this process may run on."""
    env = os.environ.get("LPA_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _threads(n: int) -> ThreadPoolExecutor | None:
    """The build threads for n tasks at once, or None where they run in the caller: one
    task, one thread, or a caller that is itself a build thread (so none waits on another)."""
    global _POOL
    if n <= 1 or threading.current_thread().name.startswith(_THREAD_PREFIX):
        return None
    if _POOL is None or _POOL._max_workers < n:
        _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix=_THREAD_PREFIX)
    return _POOL


def run_all(tasks: Sequence[Callable[[], Any]]) -> list[Any]:
    """Results of independent tasks, in order, run on :func:`feature_threads` threads.

    The tasks are compiled kernels and large numpy operations, which release the GIL. Called
    from one of those threads (a task that runs tasks), it runs them in that thread, so the
    threads never wait on each other.
    """
    pool = _threads(min(feature_threads(), len(tasks)))
    if pool is None:
        return [task() for task in tasks]
    return [job.result() for job in [pool.submit(task) for task in tasks]]


def run_beside(background: Callable[[], Any], foreground: Callable[[], Any]) -> tuple[Any, Any]:
    """Results of two independent tasks: ``background`` on a build thread while the caller
    runs ``foreground`` (whose own :func:`run_all` can then use the other threads)."""
    pool = _threads(feature_threads())
    if pool is None:
        return background(), foreground()
    job = pool.submit(background)
    front = foreground()
    return job.result(), front


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
    runs: np.ndarray | None = field(init=False, repr=False)  # see _pool_runs

    def __post_init__(self) -> None:
        self.runs = _pool_runs(np.asarray(self.ti), np.asarray(self.pi), len(self.pools))

    def wide(self, values: np.ndarray | pd.Series) -> np.ndarray:
        """Scatter a long column into a (T, P) float matrix, NaN where no row."""
        out = np.full(self.present.shape, np.nan)
        v = np.asarray(values, dtype=float)
        if self.runs is None:
            out[self.ti, self.pi] = v
            return out
        return gkern.scatter_runs(v, self.runs, out)

    def long(self, w: np.ndarray, dtype: DTypeLike | None = None) -> np.ndarray:
        """Gather a (T, P) matrix back into the long row order (in ``dtype``, default w's)."""
        w = np.asarray(w)
        dt = np.dtype(dtype or w.dtype)
        if w.ndim == 2 and w.shape[1] > 1 and w.strides[1] == 0:  # one series for all pools
            return np.ascontiguousarray(w[:, 0], dtype=dt)[self.ti]
        if self.runs is None or w.dtype.kind != "f" or dt.kind != "f":
            return w[self.ti, self.pi].astype(dt, copy=False)
        out = np.empty(len(self.ti), dtype=dt)
        return gkern.gather_runs(np.ascontiguousarray(w), self.runs, _GATHER_BLOCK, out)

    def long_into(self, w: np.ndarray, out: np.ndarray,
                  missing: np.ndarray | None = None) -> np.ndarray:
        """Gather a (T, P) matrix into ``out`` (long row order, its dtype), as the feature
        table stores it: NaN where the value is not finite in that dtype or the row is flagged
        in ``missing`` (bool per row)."""
        w = np.asarray(w)
        flags = np.zeros(0, bool) if missing is None else np.asarray(missing, bool)
        if (self.runs is not None and w.dtype.kind == "f" and out.dtype.kind == "f"
                and not (w.ndim == 2 and w.shape[1] > 1 and w.strides[1] == 0)):
            ws = np.ascontiguousarray(w)
            block = max(8, _GATHER_BYTES // max(1, ws.shape[1] * ws.itemsize))
            return gkern.gather_clean(ws, self.runs, block, flags, out)
        with np.errstate(over="ignore"):  # too large for float32: infinite, then NaN
            out[...] = self.long(w, out.dtype)
        bad = np.isfinite(out)
        np.logical_not(bad, out=bad)
        if missing is not None:
            bad |= flags
        np.putmask(out, bad, np.nan)
        return out


def _pool_runs(ti: np.ndarray, pi: np.ndarray, n_pools: int) -> np.ndarray | None:
    """(first row, first period, periods) of each pool when the rows come one pool after
    another, each pool's consecutive in time; None otherwise (the gather then indexes)."""
    if len(ti) == 0 or n_pools == 0:
        return None
    new = np.flatnonzero(pi[1:] != pi[:-1]) + 1
    starts = np.concatenate([[0], new])
    pools = pi[starts]
    if len(np.unique(pools)) != len(pools):  # a pool's rows in more than one run
        return None
    step = np.diff(ti)
    step[new - 1] = 1  # a new pool may start at any period
    if (step != 1).any():
        return None
    runs = np.zeros((n_pools, 3), dtype=np.int64)
    runs[pools, 0] = starts
    runs[pools, 1] = ti[starts]
    runs[pools, 2] = np.diff(np.concatenate([starts, [len(ti)]]))
    return runs


def make_grid(frame: pd.DataFrame, freq: str) -> Grid:
    """Build the dense grid of a panel (union of timestamps at the panel frequency)."""
    ts = frame[TIMESTAMP]
    step = FREQUENCIES[freq]
    times = pd.date_range(ts.min(), ts.max(), freq=step)
    codes, uniques = pd.factorize(frame[POOL_ID], sort=True)
    pools = [str(p) for p in uniques]
    ti = ((ts - times[0]) // step).to_numpy().astype(np.int64)
    pi = codes.astype(np.int64)
    present = np.zeros((len(times), len(pools)), dtype=bool)
    present[ti, pi] = True  # missing rows are present in the grid but carry NaN values
    return Grid(times=times, pools=pools, ti=ti, pi=pi, present=present)


def _min_periods(w: int, min_periods: int | None) -> int:
    return max(1, (w + 1) // 2) if min_periods is None else min_periods


def _stat(x: np.ndarray, w: int, minp: int, mode: int, dtype: DTypeLike = np.float64,
          square: bool = False, scale: float = 1.0) -> np.ndarray:
    if w < 1:
        raise ValueError(f"rolling window must be at least one period, got {w}")
    xs = np.ascontiguousarray(x)
    if xs.dtype.kind != "f":
        xs = xs.astype(np.float64)
    out: np.ndarray = np.empty(xs.shape, dtype=dtype)
    return kern.window_stat(xs, int(w), int(minp), mode, square, float(scale), out)


def rolling_sum(x: np.ndarray, w: int, min_periods: int | None = None,
                dtype: DTypeLike = np.float64) -> np.ndarray:
    """Trailing sum over the last w periods (inclusive of t), NaN-aware.

    NaN where fewer than min_periods (default ceil(w/2)) valid values are in the window.
    """
    return _stat(x, w, _min_periods(w, min_periods), kern.SUM, dtype)


def rolling_count(x: np.ndarray, w: int, dtype: DTypeLike = np.float64) -> np.ndarray:
    """Number of valid values in the trailing window."""
    return _stat(x, w, 0, kern.COUNT, dtype)


def rolling_mean(x: np.ndarray, w: int, min_periods: int | None = None,
                 dtype: DTypeLike = np.float64) -> np.ndarray:
    """Trailing NaN-aware mean over w periods."""
    return _stat(x, w, _min_periods(w, min_periods), kern.MEAN, dtype)


def rolling_rms(x: np.ndarray, w: int, scale: float = 1.0, square: bool = True,
                dtype: DTypeLike = np.float64) -> np.ndarray:
    """sqrt(scale x trailing mean of x^2) (of x itself when ``square`` is False, clipped at 0).

    The realised-volatility family: ``rolling_rms(ret, w, ppy)`` is annualised realised vol.
    """
    return _stat(x, w, _min_periods(w, None), kern.ROOT_MEAN, dtype, square, scale)


def rolling_std(x: np.ndarray, w: int, min_periods: int | None = None,
                dtype: DTypeLike = np.float64) -> np.ndarray:
    """Trailing NaN-aware sample standard deviation over w periods."""
    return _stat(x, w, _min_periods(w, min_periods), kern.STD, dtype)


def rolling_corr(x: np.ndarray, y: np.ndarray, w: int,
                 dtype: DTypeLike = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Trailing correlation and beta (cov(x, y) / var(y)) over w periods.

    Over the periods where both are present; NaN with fewer than ceil(w/2) of them. ``y`` is
    (T, P) or one series for every pool ((T,) or (T, 1)).
    """
    xs = np.ascontiguousarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    ys = ys[:, None] if ys.ndim == 1 else ys
    if ys.shape[1] != 1 and ys.shape != xs.shape:
        raise ValueError(f"rolling_corr: y of shape {ys.shape} does not match x {xs.shape}")
    if ys.shape[1] == xs.shape[1] and ys.strides[1] == 0:  # one series broadcast to all
        ys = ys[:, :1]
    ys = np.ascontiguousarray(ys)
    corr: np.ndarray = np.empty(xs.shape, dtype)
    beta: np.ndarray = np.empty(xs.shape, dtype)
    return kern.window_corr(xs, ys, int(w), _min_periods(w, None), corr, beta)


def rolling_max(x: np.ndarray, w: int, dtype: DTypeLike = np.float64) -> np.ndarray:
    """Trailing NaN-aware max over w periods (NaN only when the window has no value)."""
    if w < 1:
        raise ValueError(f"rolling window must be at least one period, got {w}")
    xs = np.ascontiguousarray(x)
    if xs.dtype.kind != "f":
        xs = xs.astype(np.float64)
    return kern.window_max(xs, int(w), np.empty(xs.shape, dtype))


def lag(x: np.ndarray, k: int = 1) -> np.ndarray:
    """Value k periods earlier (NaN for the first k)."""
    if k == 0:
        return x.copy()
    out = np.empty_like(x)
    out[:k] = np.nan
    if k < x.shape[0]:
        out[k:] = x[:-k]
    return out


def ewm_mean(x: np.ndarray, halflife: float, min_periods: int = 2,
             dtype: DTypeLike = np.float64) -> np.ndarray:
    """Causal exponentially weighted mean ignoring NaN (pandas ewm, adjust=True,
    ignore_na=True): a missing period repeats the last mean."""
    com = 1.0 / (1.0 - np.exp(np.log(0.5) / halflife)) - 1.0  # pandas' halflife -> alpha
    xs = np.ascontiguousarray(x)
    if xs.dtype.kind != "f":
        xs = xs.astype(np.float64)
    return kern.ewm_mean(xs, 1.0 / (1.0 + com), int(min_periods), np.empty(xs.shape, dtype))
