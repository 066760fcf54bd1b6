"""Exact optimal split of one trade across parallel constant-product pools (closed form).

Pool i pays out Rb g d / (Ra + g d) for d paid in, with marginal rate g Ra Rb / (Ra + g d)^2.
At the optimum every pool used has the same marginal rate lambda (KKT), so with
s = lambda**-0.5 each pool takes

    d_i(s) = clip(sqrt(Ra Rb / g) s - Ra / g, 0, cap_i)

(cap_i: the input at which the pool's real reserves run out). The total sum_i d_i(s) is
piecewise linear and non-decreasing in s, so the s that spends the amount is found exactly by
locating its segment between the sorted breakpoints (a pool starting, a pool reaching its cap)
and interpolating: no iteration, no tolerance.
"""

from __future__ import annotations

import numpy as np

__all__ = ["parallel_split", "parallel_split_many"]


def parallel_split(ra: np.ndarray, rb: np.ndarray, gamma: np.ndarray, cap_in: np.ndarray,
                   amount: float) -> tuple[np.ndarray, float]:
    """Optimal inputs per pool and the common marginal rate for parallel constant-product pools.

    Parameters
    ----------
    ra, rb : virtual reserves of the input and output token per pool, token units.
    gamma : 1 - fee tier per pool.
    cap_in : largest useful input per pool (inf where the output is unbounded).
    amount : total input, token units (> 0).

    Returns
    -------
    (inputs per pool, lambda): inputs summing to `amount` (less only when every pool reaches
    its cap first), and the marginal rate (output per input) shared by the pools below their
    cap; 0 when every pool is capped.
    """
    slope = np.sqrt(ra * rb / gamma)
    start = np.sqrt(ra / (gamma * rb))  # s at which a pool's marginal rate is reached
    end = start + cap_in / slope
    if np.sum(cap_in) <= amount:
        return np.asarray(cap_in, float).copy(), 0.0
    bp = np.sort(np.concatenate([start, end[np.isfinite(end)]]))

    def total(s: np.ndarray) -> np.ndarray:
        return np.clip(slope * (s[:, None] - start), 0.0, cap_in).sum(axis=1)

    tot = total(bp)
    k = int(np.searchsorted(tot, amount, side="left"))
    if k >= len(bp):  # beyond the last breakpoint only uncapped pools grow, linearly
        grow = slope[~np.isfinite(end)].sum()
        s = bp[-1] + (amount - tot[-1]) / grow
    else:
        lo, hi = bp[k - 1], bp[k]
        t_lo, t_hi = tot[k - 1], tot[k]
        s = lo + (hi - lo) * (amount - t_lo) / (t_hi - t_lo)
    d = np.clip(slope * (s - start), 0.0, cap_in)
    spent = d.sum()
    if spent > amount:  # rounding: never spend more than the amount
        d *= amount / spent
    return d, float(1.0 / (s * s))


def parallel_split_many(ra: np.ndarray, rb: np.ndarray, gamma: np.ndarray, cap_in: np.ndarray,
                        amounts: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """`parallel_split` of many trades at once, each over its own parallel pools (rows).

    Parameters
    ----------
    ra, rb, gamma, cap_in : (trades x pools) as in `parallel_split`; rows padded where
        `valid` is False (padding takes no input).
    amounts : total input per trade, token units (> 0).
    valid : (trades x pools) bool, the pools each trade may use.

    Returns
    -------
    Inputs per trade and pool (trades x pools), as `parallel_split` gives them row by row.
    """
    a = np.asarray(amounts, float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        slope = np.where(valid, np.sqrt(ra * rb / gamma), 0.0)
        start = np.where(valid, np.sqrt(ra / (gamma * rb)), np.inf)
        end = np.where(valid, start + cap_in / slope, np.inf)
        bp = np.sort(np.concatenate([start, np.where(np.isfinite(end), end, np.inf)], axis=1),
                     axis=1)
        nb = np.isfinite(bp).sum(axis=1)
        span = np.clip(slope[:, None, :] * (bp[:, :, None] - start[:, None, :]), 0.0,
                       cap_in[:, None, :])
        tot = np.where(np.isfinite(bp), np.where(valid[:, None, :], span, 0.0).sum(axis=2),
                       np.inf)
        k = (tot < a[:, None]).sum(axis=1)  # searchsorted(tot, amount, side="left") per row
        hi_i = np.minimum(np.maximum(k, 1), np.maximum(nb - 1, 0))[:, None]
        lo, hi = (np.take_along_axis(bp, i, axis=1)[:, 0] for i in (hi_i - 1, hi_i))
        t_lo, t_hi = (np.take_along_axis(tot, i, axis=1)[:, 0] for i in (hi_i - 1, hi_i))
        inner = lo + (hi - lo) * (a - t_lo) / (t_hi - t_lo)
        last = np.maximum(nb - 1, 0)[:, None]
        bp_last = np.take_along_axis(bp, last, axis=1)[:, 0]
        tot_last = np.take_along_axis(tot, last, axis=1)[:, 0]
        grow = np.where(valid & ~np.isfinite(end), slope, 0.0).sum(axis=1)
        beyond = bp_last + (a - tot_last) / grow
        s = np.where(k < nb, inner, beyond)
        d = np.where(valid, np.clip(slope * (s[:, None] - start), 0.0, cap_in), 0.0)
        spent = d.sum(axis=1)
        d = np.where((spent > a)[:, None], d * (a / spent)[:, None], d)
    every_cap = np.where(valid, cap_in, 0.0).sum(axis=1) <= a
    return np.where(every_cap[:, None] & valid, cap_in, np.where(every_cap[:, None], 0.0, d))
