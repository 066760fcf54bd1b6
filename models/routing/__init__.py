"""Optimal trade routing across interconnected pools (Angeris et al. 2022).

`PoolStates.from_panel` turns each pool's latest row into tradable reserves, `route` splits
a trade across pools and multi-hop paths to maximise the output (closed form for parallel
constant-product pools, the convex program otherwise), and `volume_share` gives the share of
a pair's volume each pool captures under optimal routing (the flow model), and
`swap_cost_usd` prices a rebalancing swap routed and through the best single pool.
"""

from models.routing.flow import DEFAULT_TRADE_FRACTIONS, volume_share
from models.routing.graph import NoRouteError, PoolStates, RoutingError, UnknownTokenError
from models.routing.network import Network, build_network
from models.routing.router import CAPACITY, OPTIMAL, SINGLE_CHAIN, RouteResult, route
from models.routing.swap_cost import SwapCost, swap_cost_usd
from models.routing.zaps import routed_zap_costs

__all__ = [
    "PoolStates", "RoutingError", "UnknownTokenError", "NoRouteError", "Network",
    "build_network", "route", "RouteResult", "OPTIMAL", "CAPACITY", "SINGLE_CHAIN",
    "volume_share", "DEFAULT_TRADE_FRACTIONS", "SwapCost", "swap_cost_usd",
    "routed_zap_costs",
]
