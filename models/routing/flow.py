"""Flow model: the share of a pair's swap volume each pool captures under optimal routing.

Trades of a pair are assumed to be routed optimally across the pair's pools (as aggregators
do), so a pool's share of the volume is its share of the routed input of representative
trades, in both directions. The share rises with a pool's depth and falls with its fee tier:
adding liquidity to a pool attracts flow as well as diluting the incumbents' fee share.

Representative trade sizes (a judgement call, stated as such): unless given, trades of
0.01 %, 0.1 % and 1 % of the pair's swap depth on the chain (`costs.swap_depth_usd` summed
over its pools, before our deposit), each carrying the same volume, half in each direction.
Tiny trades all go to the cheapest pool; larger ones spread across pools by depth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from features.amm import TRADE_FRACTIONS
from models.routing.fast import parallel_split
from models.routing.graph import PoolStates, RoutingError
from models.routing.network import pair_network
from models.routing.router import route_network

__all__ = ["volume_share", "DEFAULT_TRADE_FRACTIONS"]

DEFAULT_TRADE_FRACTIONS = TRADE_FRACTIONS  # shared with the simulator's flow split


def volume_share(pools: PoolStates,
                 our_added_liquidity_usd: float | ArrayLike | Mapping[str, float] = 0.0, *,
                 trade_usd: float | Sequence[float] | None = None,
                 efficiency: float | ArrayLike | None = None) -> pd.Series:
    """Share of the pair's volume each pool captures, given depth, fee and our added liquidity.

    Parameters
    ----------
    pools : the states of the pools of ONE pair (either token order), e.g.
        `states.select(ids)`.
    our_added_liquidity_usd : our deposit per pool, USD (mapping pool id -> USD, array aligned
        with `pools`, or one figure for every pool); see `PoolStates.with_added_liquidity`.
    trade_usd : representative trade size(s), USD, each carrying equal volume; None: the
        DEFAULT_TRADE_FRACTIONS of the pair's depth per chain.
    efficiency : our range efficiency on v3 pools (None: the pool's own assumed efficiency).

    Returns
    -------
    Series indexed by pool id: fraction of the pair's volume on the pool's chain (shares sum
    to 1 per chain; pools on different chains are separate markets).
    """
    if len(pools) == 0:
        raise RoutingError("volume_share needs at least one pool state")
    pairs = {frozenset((a, b)) for a, b in zip(pools.token0, pools.token1, strict=True)}
    if len(pairs) != 1:
        raise RoutingError("volume_share takes the pools of one pair; got pairs "
                           f"{sorted('/'.join(sorted(p)) for p in pairs)} in pools "
                           f"{pools.pool_id.tolist()}")
    after = pools.with_added_liquidity(our_added_liquidity_usd, efficiency)
    prices = after.token_usd()
    t0, t1 = str(pools.token0[0]), str(pools.token1[0])
    share = np.zeros(len(pools))
    for chain in sorted(set(pools.chain.tolist())):
        on = pools.chain == chain
        if trade_usd is None:
            depth = float(pools.subset(on).depth_usd().sum())
            sizes = [f * depth for f in DEFAULT_TRADE_FRACTIONS]
        else:
            sizes = [float(s) for s in np.atleast_1d(np.asarray(trade_usd, float))]
        if not sizes or any(not np.isfinite(s) or s <= 0 for s in sizes):
            raise RoutingError(f"trade sizes must be USD amounts > 0, got {sizes}")
        got = np.zeros(len(pools))
        here = after.subset(on)
        for tin, tout in ((t0, t1), (t1, t0)):
            net = pair_network(here, tin, tout)
            usd = np.array([prices[tin], prices[tout]])
            cap_in = net.cap_input()
            for size in sizes:
                amount = size / usd[0]
                if net.weighted.any():
                    d = route_network(net, amount, usd)[0].inputs
                else:  # the exact closed form, without the router's bookkeeping
                    d = parallel_split(net.ra, net.rb, net.gamma, cap_in, amount)[0]
                got[on] += d * usd[0] / size
        total = got[on].sum()
        share[on] = got[on] / total if total > 0 else 1.0 / on.sum()
    return pd.Series(share, index=pd.Index(pools.pool_id, name="pool_id"), name="volume_share")
