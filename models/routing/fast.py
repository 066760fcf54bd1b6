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

__all__ = ["parallel_split"]


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
