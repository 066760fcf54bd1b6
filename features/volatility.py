"""Volatility signals from pool prices: realised, range-based, EWMA, vol of vol, jumps, HAR.

All estimators are annualised (multiplied by sqrt(periods per year)) and causal: the value at
t uses periods up to and including t. Features that are only stored come out as float32 (their
float64 value rounded once); returns and realised volatility, which later stages read, stay
float64.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

from features import names
from features._wide import ewm_mean, lag, rolling_max, rolling_rms, rolling_std, rolling_sum

__all__ = ["log_returns", "realized_vol", "parkinson_vol", "garman_klass_vol", "ewma_vol",
           "vol_of_vol", "jump_count", "largest_move", "volatility_features"]

LN2 = np.log(2.0)
_STORED = np.float32  # dtype of features nothing else reads


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x)


def _diff_lag(lx: np.ndarray) -> np.ndarray:
    """lx - lag(lx): the one-period change of a log series (NaN in the first period)."""
    out = np.empty_like(lx)
    out[:1] = np.nan
    np.subtract(lx[1:], lx[:-1], out=out[1:])
    return out


def log_returns(close: np.ndarray) -> np.ndarray:
    """Log close-to-close returns per period (NaN when either end is missing)."""
    with np.errstate(invalid="ignore"):
        return _diff_lag(_log(close))


def realized_vol(ret: np.ndarray, w: int, ppy: float, dtype: DTypeLike = np.float64) -> np.ndarray:
    """Annualised realised volatility: sqrt(mean squared return) over w periods."""
    return rolling_rms(ret, w, ppy, dtype=dtype)


def _range_terms(open_: np.ndarray, high: np.ndarray, low: np.ndarray,
                 close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ln(H/L) and the Garman-Klass term 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2."""
    hl = _log(high / low)
    co = _log(close / open_)
    with np.errstate(invalid="ignore"):
        return hl, 0.5 * hl * hl - (2 * LN2 - 1) * co * co


def parkinson_vol(high: np.ndarray, low: np.ndarray, w: int, ppy: float,
                  dtype: DTypeLike = np.float64) -> np.ndarray:
    """Annualised Parkinson range estimator: sqrt(mean(ln(H/L)^2) / (4 ln 2))."""
    with np.errstate(divide="ignore", invalid="ignore"):
        hl = np.log(high / low)
    return rolling_rms(hl, w, ppy / (4 * LN2), dtype=dtype)


def garman_klass_vol(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, w: int, ppy: float,
    dtype: DTypeLike = np.float64,
) -> np.ndarray:
    """Annualised Garman-Klass estimator: 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2."""
    _, term = _range_terms(open_, high, low, close)
    return rolling_rms(term, w, ppy, square=False, dtype=dtype)


def ewma_vol(ret: np.ndarray, halflife: float, ppy: float) -> np.ndarray:
    """Annualised EWMA volatility of returns with the given half-life in periods."""
    return np.sqrt(ewm_mean(ret * ret, halflife) * ppy)


def vol_of_vol(vol: np.ndarray, w: int, dtype: DTypeLike = np.float64) -> np.ndarray:
    """Standard deviation of log volatility over w periods."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lv = np.log(np.where(vol > 0, vol, np.nan))
    return rolling_std(lv, w, dtype=dtype)


def jump_count(ret: np.ndarray, sigma_prev: np.ndarray, w: int, k: float = 4.0,
               dtype: DTypeLike = np.float64) -> np.ndarray:
    """Number of returns beyond k previous-period sigmas in the last w periods."""
    with np.errstate(invalid="ignore"):
        jump = np.where(np.isnan(ret) | np.isnan(sigma_prev), np.nan,
                        (np.abs(ret) > k * sigma_prev).astype(float))
    return rolling_sum(jump, w, min_periods=1, dtype=dtype)


def largest_move(ret: np.ndarray, w: int, dtype: DTypeLike = np.float64) -> np.ndarray:
    """Largest absolute return in the last w periods."""
    return rolling_max(np.abs(ret), w, dtype=dtype)


def volatility_features(
    o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, windows: dict[str, int],
    ppy: float, halflives: dict[str, int], har: dict[str, int], freq: str,
) -> dict[str, np.ndarray]:
    """All volatility features, named by the durations they cover (e.g. rv_24h, parkinson_7d).

    Parameters
    ----------
    o, h, lo, c : (periods x pools) open, high, low, close prices
    windows : trailing windows, duration label -> periods, shortest first
    ppy : periods per year (annualisation)
    halflives : EWMA half-lives, duration label -> periods; the first drives jump detection
    har : HAR component windows, duration label -> periods
    freq : panel frequency (names the one-period return)
    """
    ret = log_returns(c)
    abs_ret = np.abs(ret)
    hl, gk_term = _range_terms(o, h, lo, c)
    out: dict[str, np.ndarray] = {names.period(names.RET, freq): ret}
    rv: dict[int, np.ndarray] = {}  # realised vol by window length: HAR reuses it
    for name, w in windows.items():
        rv[w] = out[names.window(names.RV, name)] = realized_vol(ret, w, ppy)
        out[names.window("parkinson", name)] = rolling_rms(hl, w, ppy / (4 * LN2),
                                                           dtype=_STORED)
        out[names.window("gk", name)] = rolling_rms(gk_term, w, ppy, square=False,
                                                    dtype=_STORED)
        out[names.window("max_move", name)] = rolling_max(abs_ret, w, dtype=_STORED)
    del hl, gk_term
    ret_sq = ret * ret
    ewms = {hl_: np.sqrt(ewm_mean(ret_sq, n) * ppy) for hl_, n in halflives.items()}
    for hl_, ew in ewms.items():
        out[names.ewm(names.EWMA_VOL, hl_)] = ew
    sigma_prev = lag(next(iter(ewms.values()))) / np.sqrt(ppy)
    labels = list(windows)
    shortest, longest = labels[0], labels[-1]
    out[names.window("jumps", longest)] = jump_count(ret, sigma_prev, windows[longest],
                                                     dtype=_STORED)
    if len(labels) >= 2:
        rv_short, rv_long = rv[windows[shortest]], rv[windows[longest]]
        out[names.window("volvol", longest)] = vol_of_vol(rv_short, windows[longest],
                                                          dtype=_STORED)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[names.ratio("rv_ratio", shortest, longest)] = rv_short / rv_long
    for name, w in har.items():
        if w < 2:
            out[names.window(names.HAR, name)] = abs_ret * np.sqrt(ppy)
        else:
            out[names.window(names.HAR, name)] = rv[w] if w in rv else realized_vol(ret, w, ppy)
    return out
