"""Costs of changing LP positions: gas, swap fees and price impact.

Conventions
-----------
All amounts are USD. A move of `delta` USD into (> 0) or out of (< 0) a pool is a zap: half
the notional is swapped into (or out of) the other token, paying the pool's fee tier on it
plus the execution loss of the swap, and the position change costs one transaction of gas.
Execution loss of swapping s USD through constant-product depth R (one side's reserve, real
or virtual, in USD) is s^2 / (R + s): the output is R s / (R + s) against s at the spot
price. `swap_depth_usd` gives R per invariant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from numpy.typing import ArrayLike

from features.amm import STABLE_DEPTH_MULTIPLIER as _STABLE_DEPTH
from models.economics._checks import FloatArray, as_float, as_names, protocol_masks
from models.economics.invariants import PROTOCOLS, STABLESWAP, UNISWAP_V3, WEIGHTED

__all__ = ["GAS_USD", "STABLE_DEPTH_MULTIPLIER", "gas_usd", "swap_depth_usd", "swap_impact_usd",
           "rebalance_cost", "pair_swap_terms"]

# USD of one LP transaction (mint / burn / zap) per chain; "default" for unlisted chains
GAS_USD: dict[str, float] = {
    "ethereum": 15.0, "arbitrum": 0.3, "optimism": 0.2, "base": 0.1, "polygon": 0.05,
    "default": 0.5,
}
# small-trade depth of a stableswap pool relative to constant product (features.amm)
STABLE_DEPTH_MULTIPLIER = _STABLE_DEPTH


def gas_usd(chains: str | Iterable[str] | None,
            table: float | Mapping[str, float] | None = GAS_USD) -> FloatArray:
    """Gas in USD of one transaction per pool: a flat figure or a per-chain table.

    Parameters
    ----------
    chains : chain name per pool (case-insensitive), one name, or None.
    table : flat USD per transaction, or chain -> USD with an optional "default" entry
        (GAS_USD["default"] when absent) for chains not listed; None means GAS_USD.

    Returns
    -------
    USD per pool (0-d for a single name or None).
    """
    if table is None:
        table = GAS_USD
    if not isinstance(table, Mapping):
        if chains is None or isinstance(chains, str):
            return as_float(float(table))
        return as_float(np.full(np.shape(chains if isinstance(chains, np.ndarray)
                                         else list(chains)), float(table)))
    lookup = {str(k).strip().lower(): float(v) for k, v in table.items()}
    default = lookup.get("default", GAS_USD["default"])
    if chains is None:
        return as_float(default)
    if isinstance(chains, str):
        return as_float(lookup.get(chains.strip().lower(), default))
    names = as_names(chains if isinstance(chains, np.ndarray) else list(chains))
    uniq, inv = np.unique(names, return_inverse=True)
    per = np.array([lookup.get(u.strip().lower(), default) for u in uniq], dtype=np.float64)
    return as_float(per[inv].reshape(names.shape))


def swap_depth_usd(tvl_usd: ArrayLike, protocol: ArrayLike, *,
                   active_liquidity_usd: ArrayLike | None = None, efficiency: ArrayLike = 1.0,
                   weight0: ArrayLike = 0.5,
                   stable_depth: float = STABLE_DEPTH_MULTIPLIER) -> FloatArray:
    """One side's (virtual) reserve in USD that a swap goes through, per invariant.

    Parameters
    ----------
    tvl_usd : pool TVL, USD.
    protocol : protocol name per pool (see invariants.PROTOCOLS), or one name.
    active_liquidity_usd : uniswap_v3 active liquidity in full-range USD
        (`concentrated.full_range_value` x token1 USD price); None: tvl_usd x efficiency.
    efficiency : the v3 pool's average range efficiency, used when active_liquidity_usd is None.
    weight0 : token0 weight of weighted pools.
    stable_depth : stableswap depth relative to constant product (STABLE_DEPTH_MULTIPLIER).

    Returns
    -------
    Depth R, USD: uniswap_v2 tvl / 2; uniswap_v3 active liquidity / 2 (v3 swaps are constant
    product on virtual reserves within a tick range); weighted 2 w0 w1 tvl (the second-order
    Balancer execution loss, equal to tvl / 2 at 50/50); stableswap stable_depth x tvl / 2.
    """
    tvl = as_float(tvl_usd)
    active = (tvl * as_float(efficiency) if active_liquidity_usd is None
              else as_float(active_liquidity_usd))
    w0 = as_float(weight0)
    m = protocol_masks(protocol, PROTOCOLS)
    depth = np.where(m[UNISWAP_V3], 0.5 * active, 0.5 * tvl)
    depth = np.where(m[WEIGHTED], 2.0 * w0 * (1.0 - w0) * tvl, depth)
    return as_float(np.where(m[STABLESWAP], stable_depth * 0.5 * tvl, depth))


def swap_impact_usd(amount_usd: ArrayLike, depth_usd: ArrayLike) -> FloatArray:
    """Execution loss of swapping |amount| USD through depth R: s^2 / (R + s), USD.

    0 for a zero amount; the whole amount when the depth is 0. NaN depth gives NaN.
    """
    s = np.abs(as_float(amount_usd))
    den = as_float(depth_usd) + s
    with np.errstate(divide="ignore", invalid="ignore"):
        return as_float(np.where(s > 0, s * s / den, 0.0))


def rebalance_cost(delta_usd: ArrayLike, depth_usd: ArrayLike, fee_tier: ArrayLike,
                   chains: str | Iterable[str] | None = None,
                   gas: float | Mapping[str, float] | None = GAS_USD, *,
                   min_move_usd: float = 0.0) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Cost per pool of moving delta USD into (> 0) or out of (< 0) each pool.

    Parameters
    ----------
    delta_usd : change of the position per pool, USD.
    depth_usd : swap depth per pool, USD (`swap_depth_usd`).
    fee_tier : pool swap fee, fraction (0.003 = 0.3 %).
    chains : chain per pool for the gas table (None: the table's "default").
    gas : flat USD per transaction or chain -> USD table (None: GAS_USD).
    min_move_usd : |delta| at or below this is no move (no gas, no swap).

    Returns
    -------
    (gas_usd, fee_usd, impact_usd) per pool: gas once per pool whose position changes; the fee
    tier on the swapped half of |delta|; s^2 / (R + s) impact with s = |delta| / 2.
    """
    d = np.abs(as_float(delta_usd))
    moved = d > min_move_usd
    s = np.where(moved, 0.5 * d, 0.0)
    fee = s * as_float(fee_tier)
    impact = swap_impact_usd(s, depth_usd)
    gas_cost = np.where(moved, gas_usd(chains, gas), 0.0)
    zero = np.zeros(np.broadcast_shapes(gas_cost.shape, fee.shape, impact.shape))
    return as_float(gas_cost + zero), as_float(fee + zero), as_float(impact + zero)


def pair_swap_terms(chains: ArrayLike, token0: ArrayLike, token1: ArrayLike,
                    depth_usd: ArrayLike, fee_tier: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Depth and fee of each pool's zap swap routed over its pair's pools: the routed estimate.

    A zap's swap can be split across every pool of the same pair on the same chain; at one
    price they act as one pool with their summed depth, and small swaps go to the cheapest fee.
    So `rebalance_cost(delta, depth, fee)` with the returned terms estimates the routed cost;
    a pool alone in its pair keeps its own depth and fee (the single-pool cost). Pools with no
    positive finite depth add nothing to their pair.

    Returns
    -------
    (depth_usd, fee_tier) per pool: the pair's summed depth and its lowest fee tier.
    """
    d = np.nan_to_num(as_float(depth_usd), nan=0.0, posinf=0.0, neginf=0.0)
    f = as_float(fee_tier)
    ch, a, b = (as_names(np.asarray(v)) for v in (chains, token0, token1))
    lo, hi = np.where(a < b, a, b), np.where(a < b, b, a)
    _, key = np.unique(np.char.add(np.char.add(np.char.add(ch, "|"), lo),
                                   np.char.add("|", hi)), return_inverse=True)
    key = key.reshape(-1)
    use = (d > 0) & np.isfinite(f)
    depth = np.bincount(key, weights=np.where(use, d, 0.0))[key]
    low = np.full(key.max() + 1 if key.size else 0, np.inf)
    np.minimum.at(low, key[use], f[use])
    fee = np.minimum(low[key], f)
    return as_float(np.maximum(depth, d)), as_float(fee)
