"""Volatility signals from pool prices: realised, range-based, EWMA, vol of vol, jumps, HAR.

All estimators are annualised (multiplied by sqrt(periods per year)) and causal: the value at
t uses periods up to and including t.
"""

from __future__ import annotations

import numpy as np

from features import names
from features._wide import ewm_mean, lag, rolling_max, rolling_mean, rolling_std, rolling_sum

__all__ = ["log_returns", "realized_vol", "parkinson_vol", "garman_klass_vol", "ewma_vol",
           "vol_of_vol", "jump_count", "largest_move", "volatility_features"]

LN2 = np.log(2.0)


def log_returns(close: np.ndarray) -> np.ndarray:
    """Log close-to-close returns per period (NaN when either end is missing)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(close) - np.log(lag(close))


def realized_vol(ret: np.ndarray, w: int, ppy: float) -> np.ndarray:
    """Annualised realised volatility: sqrt(mean squared return) over w periods."""
    return np.sqrt(rolling_mean(ret * ret, w) * ppy)


def parkinson_vol(high: np.ndarray, low: np.ndarray, w: int, ppy: float) -> np.ndarray:
    """Annualised Parkinson range estimator: sqrt(mean(ln(H/L)^2) / (4 ln 2))."""
    with np.errstate(divide="ignore", invalid="ignore"):
        hl = np.log(high / low)
    return np.sqrt(rolling_mean(hl * hl, w) / (4 * LN2) * ppy)


def garman_klass_vol(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, w: int, ppy: float
) -> np.ndarray:
    """Annualised Garman-Klass estimator: 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2."""
    with np.errstate(divide="ignore", invalid="ignore"):
        hl = np.log(high / low)
        co = np.log(close / open_)
    term = 0.5 * hl * hl - (2 * LN2 - 1) * co * co
    return np.sqrt(np.clip(rolling_mean(term, w), 0, None) * ppy)


def ewma_vol(ret: np.ndarray, halflife: float, ppy: float) -> np.ndarray:
    """Annualised EWMA volatility of returns with the given half-life in periods."""
    return np.sqrt(ewm_mean(ret * ret, halflife) * ppy)


def vol_of_vol(vol: np.ndarray, w: int) -> np.ndarray:
    """Standard deviation of log volatility over w periods."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lv = np.log(np.where(vol > 0, vol, np.nan))
    return rolling_std(lv, w)


def jump_count(ret: np.ndarray, sigma_prev: np.ndarray, w: int, k: float = 4.0) -> np.ndarray:
    """Number of returns beyond k previous-period sigmas in the last w periods."""
    with np.errstate(invalid="ignore"):
        jump = np.where(np.isnan(ret) | np.isnan(sigma_prev), np.nan,
                        (np.abs(ret) > k * sigma_prev).astype(float))
    return rolling_sum(jump, w, min_periods=1)


def largest_move(ret: np.ndarray, w: int) -> np.ndarray:
    """Largest absolute return in the last w periods."""
    return rolling_max(np.abs(ret), w)


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
    out: dict[str, np.ndarray] = {names.period(names.RET, freq): ret}
    for name, w in windows.items():
        out[names.window(names.RV, name)] = realized_vol(ret, w, ppy)
        out[names.window("parkinson", name)] = parkinson_vol(h, lo, w, ppy)
        out[names.window("gk", name)] = garman_klass_vol(o, h, lo, c, w, ppy)
        out[names.window("max_move", name)] = largest_move(ret, w)
    ewms = {hl: ewma_vol(ret, n, ppy) for hl, n in halflives.items()}
    for hl, ew in ewms.items():
        out[names.ewm(names.EWMA_VOL, hl)] = ew
    sigma_prev = lag(next(iter(ewms.values()))) / np.sqrt(ppy)
    labels = list(windows)
    shortest, longest = labels[0], labels[-1]
    out[names.window("jumps", longest)] = jump_count(ret, sigma_prev, windows[longest])
    if len(labels) >= 2:
        rv_short, rv_long = out[names.window(names.RV, shortest)], out[
            names.window(names.RV, longest)]
        out[names.window("volvol", longest)] = vol_of_vol(rv_short, windows[longest])
        out[names.ratio("rv_ratio", shortest, longest)] = rv_short / rv_long
    for name, w in har.items():
        out[names.window(names.HAR, name)] = (realized_vol(ret, w, ppy) if w >= 2
                                              else np.abs(ret) * np.sqrt(ppy))
    return out
