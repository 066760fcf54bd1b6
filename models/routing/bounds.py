"""A floor under what a rebalancing zap's swap can cost, for planners that must not overstate it.

The ledger charges each zap's swap of s USD the cheaper of its own pool's cost
(`costs.rebalance_cost`: f s + s^2 / (R + s)) and its cost routed over every pool of the pair
on the pool's chain (`zaps.routed_zap_costs`). Both lie above

    floor(s) = rho f_min s + rho g^2 s^2 / (A + s)

per pool, where f_min is the lowest fee tier among the pair's pools (g = 1 - f_min), A the
pair's combined input-side depth in USD and rho <= 1 the worst ratio of the pair's best mid
price to the tokens' USD prices (the router values its cost at the pool mid, the move at the
tokens' USD prices). Why: each constant-product pool pays p_i h(g_i d_i, Ra_i) with
h(x, R) = x R / (R + x) jointly concave and homogeneous of degree one, so superadditive:
the pools together pay at most mid h(g S, sum Ra_i), which gives the floor; a weighted pool
is covered by counting its input reserve kappa = max(1, 1 / alpha, 2 / (1 + alpha)) times
(alpha = w_in / w_out), and real-reserve caps only raise the cost. The floor is convex in s,
so a planner can use it inside a convex program (tests/test_routing_bounds.py checks it
against the ledger's charge).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.economics.invariants import WEIGHTED
from models.routing.graph import PoolStates

__all__ = ["ZapFloor", "zap_cost_floor"]

Names = Sequence[str] | np.ndarray


class ZapFloor:
    """Per pool: floor(s) = lin s + quad s^2 / (depth + s), s the swapped USD (half a move)."""

    def __init__(self, lin: np.ndarray, quad: np.ndarray, depth: np.ndarray) -> None:
        self.lin, self.quad, self.depth = lin, quad, depth

    def cost(self, swap_usd: np.ndarray) -> np.ndarray:
        """The floor at a swapped amount per pool, USD."""
        s = np.abs(np.asarray(swap_usd, float))
        with np.errstate(divide="ignore", invalid="ignore"):
            imp = np.where(s > 0, s * s / (self.depth + s), 0.0)
        return self.lin * s + self.quad * imp


def _kappa(alpha: np.ndarray) -> np.ndarray:
    """How many times a weighted pool's input reserve counts as constant-product depth."""
    with np.errstate(divide="ignore"):
        return np.maximum.reduce([np.ones_like(alpha), 1.0 / alpha, 2.0 / (1.0 + alpha)])


def zap_cost_floor(states: PoolStates, pool_ids: Names, token0: Names, token1: Names,
                   chains: Names, depth_usd: np.ndarray, fee_tier: np.ndarray) -> ZapFloor:
    """The floor of each pool's zap swap cost at `states`, for either direction of the move.

    Parameters
    ----------
    states : tradable pool states at the time of the moves (the ledger's `pool_states(e)`).
    pool_ids, token0, token1, chains : the moved pools.
    depth_usd, fee_tier : each pool's own swap depth (USD) and fee, as the ledger's single-pool
        cost uses them.
    """
    n = len(pool_ids)
    own_d = np.nan_to_num(np.asarray(depth_usd, float), nan=0.0, posinf=0.0)
    own_f = np.nan_to_num(np.asarray(fee_tier, float), nan=0.0)
    lin, quad, depth = own_f.copy(), (1.0 - own_f) ** 2, own_d.copy()
    if len(states) == 0:
        return ZapFloor(lin, np.clip(quad, 0.0, 1.0), depth)
    r0, r1 = states.reserves()
    usd = states.token_usd()
    t0, t1 = states.token0.astype(str), states.token1.astype(str)
    u0 = np.array([usd.get(t, np.nan) for t in t0.tolist()])
    u1 = np.array([usd.get(t, np.nan) for t in t1.tolist()])
    w0 = np.where(states.protocol == WEIGHTED, states.weight0, 0.5)
    a0 = w0 / (1.0 - w0)  # alpha selling token0; selling token1 it is 1 / a0
    with np.errstate(divide="ignore", invalid="ignore"):
        # per pool and direction (sell token0, sell token1): mid price out per in and depth
        mid0, mid1 = a0 * r1 / r0, (1.0 / a0) * r0 / r1
        dep0, dep1 = r0 * u0 * _kappa(a0), r1 * u1 * _kappa(1.0 / a0)
    ok = ((t0 != t1) & (r0 > 0) & (r1 > 0) & np.isfinite(mid0 + mid1 + dep0 + dep1)
          & (states.fee_tier >= 0) & (states.fee_tier < 1))
    groups: dict[tuple[str, str, str], dict[str, float]] = {}
    for i in np.flatnonzero(ok).tolist():
        lo_first = t0[i] < t1[i]
        lo_t, hi_t = sorted((str(t0[i]), str(t1[i])))
        g = groups.setdefault((str(states.chain[i]), lo_t, hi_t),
                              {"f": np.inf, "m_lo": 0.0, "m_hi": 0.0, "d_lo": 0.0, "d_hi": 0.0})
        g["f"] = min(g["f"], float(states.fee_tier[i]))
        # "lo": selling the pair's first token (by name)
        m_lo, m_hi = (mid0[i], mid1[i]) if lo_first else (mid1[i], mid0[i])
        d_lo, d_hi = (dep0[i], dep1[i]) if lo_first else (dep1[i], dep0[i])
        g["m_lo"], g["m_hi"] = max(g["m_lo"], m_lo), max(g["m_hi"], m_hi)
        g["d_lo"] += d_lo
        g["d_hi"] += d_hi
    for j in range(n):
        lo, hi = sorted((str(token0[j]), str(token1[j])))
        hit = groups.get((str(chains[j]), lo, hi))
        if hit is None or lo == hi:
            continue
        g = hit
        rho = min(1.0, g["m_lo"] * usd[hi] / usd[lo], g["m_hi"] * usd[lo] / usd[hi])
        f = min(g["f"], own_f[j])
        lin[j] = rho * f
        quad[j] = rho * (1.0 - f) ** 2
        depth[j] = max(g["d_lo"], g["d_hi"], own_d[j])
    return ZapFloor(np.clip(lin, 0.0, None), np.clip(quad, 0.0, None), depth)
