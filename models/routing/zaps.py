"""Routed cost of the swaps inside rebalancing zaps: used by the backtest ledger and the service.

A move of d USD into (out of) a two-token pool swaps |d| / 2 from token0 to token1 (token1 to
token0) before depositing (after withdrawing). Routed one hop over every pool of the pair on
the pool's chain, the swap costs its fees plus price impact against the fee-free mid price;
the executor takes the cheaper of that and the pool's own single-pool quote.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.routing.graph import PoolStates, RoutingError
from models.routing.swap_cost import swap_cost_usd

__all__ = ["routed_zap_costs"]


def routed_zap_costs(states: PoolStates, pool_ids: Sequence[str], token0: Sequence[str],
                     token1: Sequence[str], chains: Sequence[str], delta_usd: np.ndarray,
                     single_usd: np.ndarray) -> np.ndarray:
    """Swap fee + impact per pool, USD, of each zap routed over the pools in `states`.

    Parameters
    ----------
    states : tradable pool states at the time of the moves.
    pool_ids, token0, token1, chains : the moved pools, aligned with `delta_usd`.
    delta_usd : signed move per pool, USD (> 0 into the pool).
    single_usd : each zap's swap cost through its own pool alone, USD (>= 0).

    Returns
    -------
    Array of USD costs, never above `single_usd`: where a pool is not in `states`, routing
    fails, cannot absorb the swap or quotes more, the single-pool cost stands.
    """
    delta = np.asarray(delta_usd, float)
    out = np.asarray(single_usd, float).copy()
    if out.shape != delta.shape or len(pool_ids) != len(delta):
        raise ValueError(f"routed_zap_costs: {len(pool_ids)} pools, {delta.shape} moves and "
                         f"{out.shape} single-pool costs must align")
    held = set(states.pool_id.tolist())
    for j in np.flatnonzero((delta != 0) & (out > 0)).tolist():
        if str(pool_ids[j]) not in held:
            continue
        t0, t1 = str(token0[j]), str(token1[j])
        sell, buy = (t0, t1) if delta[j] > 0 else (t1, t0)
        try:
            sc = swap_cost_usd(states, sell, buy, 0.5 * abs(float(delta[j])), max_hops=1,
                               chain=str(chains[j]))
        except RoutingError:
            continue
        res = sc.route
        if res.amount_in_used >= res.amount_in * (1 - 1e-9) and np.isfinite(sc.routed_usd):
            out[j] = min(out[j], max(sc.routed_usd, 0.0))
    return out
