"""Forward-looking targets over a horizon h. The only module that looks forward.

Every label at t is computed from data in (t, t + h] (and the state at t it is measured
against); it is NaN when the window is not complete in the panel. Labels are stored apart from
features and are never model inputs.

Stress rule (``forward_stress``): a pool is in stress over (t, t + h] when any of
- its pool price moves more than ``drawdown`` (log) away from the price at t at any point,
- its TVL falls more than ``tvl_flight`` below the TVL at t at any point (liquidity crunch),
- its realised volatility over the window exceeds ``vol_spike`` x its trailing volatility,
- a stablecoin leg deviates more than ``peg_break`` from 1 USD.
"""

from __future__ import annotations

import numpy as np

from features._wide import rolling_count, rolling_max, rolling_sum

__all__ = ["forward_window_sum", "forward_fee_yield", "forward_volatility", "forward_il",
           "forward_stress", "LABEL_COLUMNS", "FWD_FEE_YIELD", "FWD_VOLATILITY", "FWD_IL",
           "FWD_STRESS"]

FWD_FEE_YIELD = "fwd_fee_yield"
FWD_VOLATILITY = "fwd_volatility"
FWD_IL = "fwd_il"
FWD_STRESS = "fwd_stress"
LABEL_COLUMNS = [FWD_FEE_YIELD, FWD_VOLATILITY, FWD_IL, FWD_STRESS]


def _lead(x: np.ndarray, k: int) -> np.ndarray:
    """Value k periods later (NaN past the end)."""
    out = np.full_like(x, np.nan)
    if k < x.shape[0]:
        out[:-k] = x[k:]
    return out


def forward_window_sum(x: np.ndarray, h: int) -> np.ndarray:
    """Sum of x over (t, t + h]; NaN unless all h values are present."""
    s = _lead(rolling_sum(x, h, min_periods=h), h)
    return s


def _forward_count(x: np.ndarray, h: int) -> np.ndarray:
    """Valid values of x in (t, t + h]."""
    return _lead(rolling_count(x, h), h)


def _forward_max(x: np.ndarray, h: int) -> np.ndarray:
    """Max of x over (t, t + h], NaN if the window is incomplete."""
    m = _lead(rolling_max(x, h), h)
    return np.where(_forward_count(x, h) >= h, m, np.nan)


def forward_fee_yield(fees: np.ndarray, tvl: np.ndarray, h: int) -> np.ndarray:
    """Fees over (t, t + h] per dollar of TVL at t (fraction per horizon)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tvl > 0, forward_window_sum(fees, h) / np.where(tvl > 0, tvl, 1), np.nan)


def forward_volatility(ret: np.ndarray, h: int, ppy: float) -> np.ndarray:
    """Annualised realised volatility of returns over (t, t + h]."""
    return np.sqrt(forward_window_sum(ret * ret, h) / h * ppy)


def forward_il(p0: np.ndarray, p1: np.ndarray, h: int) -> np.ndarray:
    """Constant-product LP value vs HODL minus 1 over (t, t + h] (<= 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (_lead(p0, h) / p0) / (_lead(p1, h) / p1)
        return 2 * np.sqrt(r) / (1 + r) - 1


def forward_stress(
    close: np.ndarray, tvl: np.ndarray, ret: np.ndarray, trailing_vol: np.ndarray,
    peg_dev: np.ndarray, h: int, ppy: float, *, drawdown: float = 0.1, tvl_flight: float = 0.2,
    vol_spike: float = 2.5, peg_break: float = 0.02,
) -> np.ndarray:
    """1.0 if the documented stress rule fires in (t, t + h], 0.0 if not, NaN if incomplete."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lc = np.log(close)
        move = np.fmax(_forward_max(lc, h) - lc, lc - (-_forward_max(-lc, h)))
        flight = 1 - (-_forward_max(-tvl, h)) / tvl
        fvol = forward_volatility(ret, h, ppy)
        spike = fvol / trailing_vol
        peg = _forward_max(np.nan_to_num(peg_dev), h)
    fired = (move > drawdown) | (flight > tvl_flight) | (spike > vol_spike) | (peg > peg_break)
    complete = ~(np.isnan(move) | np.isnan(flight) | np.isnan(fvol))
    return np.where(complete, fired.astype(float), np.nan)
