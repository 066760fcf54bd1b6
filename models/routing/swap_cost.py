"""Cost in USD of a routed swap, next to the same swap through the best single pool.

For the rebalancer: a move into or out of a pool swaps part of the notional between the
pool's tokens; charged as a routed swap, its cost is the fees plus price impact against the
fee-free mid price (`RouteResult.mid_price`), valued at token_out's USD price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from models.routing.graph import PoolStates, RoutingError
from models.routing.network import resolve_token
from models.routing.router import RouteResult, route

__all__ = ["SwapCost", "swap_cost_usd"]


@dataclass(frozen=True)
class SwapCost:
    """USD cost of one swap: routed, and through the best single pool (or chain).

    amount_usd : value sold, USD. routed_usd / single_pool_usd : fees plus price impact
    against the mid price, USD. gas_usd : gas of the pools the routed swap touches (0 unless
    gas is priced). route : the full routing result.
    """

    amount_usd: float
    routed_usd: float
    single_pool_usd: float
    gas_usd: float
    route: RouteResult

    @property
    def saved_usd(self) -> float:
        """Cost saved by routing, USD (gas not included)."""
        return self.single_pool_usd - self.routed_usd


def swap_cost_usd(pools: PoolStates, token_in: str, token_out: str, amount_usd: float, *,
                  gas_usd: float | Mapping[str, float] | None = None, max_hops: int = 2,
                  chain: str | None = None) -> SwapCost:
    """Cost of selling `amount_usd` worth of token_in for token_out, routed and single-pool.

    Parameters
    ----------
    pools : pool states at the time of the swap.
    token_in, token_out : token symbols.
    amount_usd : value sold, USD (> 0), converted at token_in's USD price.
    gas_usd, max_hops, chain : as `route`.

    Returns
    -------
    SwapCost. When the pools cannot absorb the whole amount, the costs cover the part spent
    (`route.amount_in_used`).
    """
    if not np.isfinite(amount_usd) or amount_usd <= 0:
        raise RoutingError(f"amount_usd must be a finite USD amount > 0, got {amount_usd!r}")
    usd = pools.token_usd()
    tin = resolve_token(token_in, sorted(usd), "input token")
    res = route(pools, tin, token_out, amount_usd / usd[tin], gas_usd=gas_usd,
                max_hops=max_hops, chain=chain)
    usd_out = usd[res.token_out]
    routed = (res.amount_in_used * res.mid_price - res.amount_out) * usd_out
    single = (res.amount_in * res.mid_price - res.best_single_pool_out) * usd_out
    return SwapCost(amount_usd=float(amount_usd), routed_usd=float(routed),
                    single_pool_usd=float(single), gas_usd=res.gas_usd, route=res)
