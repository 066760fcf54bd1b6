"""Realised per-period growth of one-USD LP positions across many pools (the ledger input).

Every array is (periods x pools). A period's USD price growth of token0 and token1 (`g0`, `g1`)
moves the pool price by `g0 / g1`; optional OHLC relative to the close (`high / close`,
`low / close`) give the in-range share of a period for concentrated positions.

Per pool type, one USD deposited at the start of a period grows by:
- constant product (uniswap_v2) and weighted pools: the invariant's value ratio of the period's
  price move (weighted pools with their token0 weight, 0.5 unless `weight0` is in the metadata);
- stableswap: the documented approximation of `invariants.stableswap_value_ratio`, anchored at
  the first period (the peg);
- concentrated (uniswap_v3): a range of half-width `width` around the price where it was last
  centred, valued exactly with the v3 formulas; after `recenter_after` periods ending out of
  range the position is withdrawn and re-deposited centred, paying the fee tier on the half that
  is swapped.

Fees are shared by liquidity (`fees.diluted_fees`): ours is value x `liq_per_value`, the pool's
is TVL x `pool_eff` when the panel has no active liquidity (the `usd_liquidity` convention of
`fees.py`), and only for the share of the period spent in range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.economics.concentrated import (
    amounts_for_liquidity,
    full_range_value,
    in_range_fraction_ohlc,
    liquidity_for_value,
    position_value,
)
from models.economics.invariants import (
    cp_value_ratio,
    stableswap_value_ratio,
    weighted_value_ratio,
)

__all__ = ["LpPaths", "position_paths", "DEFAULT_WIDTH", "liquidity_per_value",
           "pool_efficiency", "POOL_EFFICIENCY_BY_TIER"]

DEFAULT_WIDTH = 0.5
CONCENTRATED, STABLESWAP, WEIGHTED = "uniswap_v3", "stableswap", "weighted"

# Assumed active liquidity of a concentrated pool per USD of TVL, relative to a full-range
# position (used only when the panel has no `liquidity` column: fee_share_source
# "tvl_approx"). Tighter fee tiers host tighter ranges. A judgement call, stated as such.
POOL_EFFICIENCY_BY_TIER = {0.0001: 8.0, 0.0005: 4.0, 0.003: 2.5, 0.01: 1.5}


def pool_efficiency(protocol: np.ndarray, fee_tier: np.ndarray) -> np.ndarray:
    """Assumed active liquidity per USD of TVL relative to full range, per pool (1 off v3)."""
    proto = np.asarray(protocol, dtype=object)
    tiers = np.asarray(fee_tier, float)
    eff = np.ones(len(proto))
    for j, (p, f) in enumerate(zip(proto, tiers, strict=True)):
        if p == CONCENTRATED:
            key = min(POOL_EFFICIENCY_BY_TIER, key=lambda k: abs(k - f))
            eff[j] = POOL_EFFICIENCY_BY_TIER[key]
    return eff


def liquidity_per_value(liquidity: np.ndarray, price: np.ndarray, lower: np.ndarray,
                        upper: np.ndarray) -> np.ndarray:
    """Liquidity per unit of position value relative to full range: 2 sqrt(P) L / V(P)."""
    v = position_value(liquidity, price, lower, upper)
    full = full_range_value(liquidity, price)
    return np.asarray(np.divide(full, v, out=np.zeros(np.broadcast(v, full).shape),
                                where=v > 0))


@dataclass
class LpPaths:
    """Per-period growth factors and fee multipliers of one-USD LP positions (periods x pools).

    lp : position value growth (USD) over the period, re-centring costs included.
    hodl : growth of the tokens held at the period's start, unchanged.
    liq_per_value : our liquidity per unit of value at the period's start relative to a
        full-range position (1 off v3); our liquidity in "full-range USD" is value x this.
    in_range : share of the period spent inside the range (1 off v3).
    pool_eff : assumed pool active liquidity per USD of TVL relative to full range (per pool).
    recentred : True where a v3 range was re-centred at the period's end.
    recentre_cost : fraction of value paid to re-centre at the period's end (part of lp).
    """

    lp: np.ndarray
    hodl: np.ndarray
    liq_per_value: np.ndarray
    in_range: np.ndarray
    pool_eff: np.ndarray
    recentred: np.ndarray
    recentre_cost: np.ndarray


def _ranges(price: np.ndarray, new: np.ndarray, width: np.ndarray,
            recenter_after: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Range bounds in force during each period and where a range is re-centred at its end.

    Starts centred on `price[0]`; after `recenter_after` periods ending out of range it is
    re-centred on that period's closing price `new`.
    """
    n, p = price.shape
    w = 1.0 + width
    lower, upper = price[0] / w, price[0] * w
    lo, hi = np.empty((n, p)), np.empty((n, p))
    rec = np.zeros((n, p), bool)
    out_count = np.zeros(p, int)
    for t in range(n):
        lo[t], hi[t] = lower, upper
        out = (new[t] < lower) | (new[t] > upper)
        out_count = np.where(out, out_count + 1, 0)
        if recenter_after is not None:
            go = out_count >= recenter_after
            if go.any():
                lower = np.where(go, new[t] / w, lower)
                upper = np.where(go, new[t] * w, upper)
                out_count = np.where(go, 0, out_count)
                rec[t] = go
    return lo, hi, rec


def _concentrated(rel: np.ndarray, g1: np.ndarray, hi_rel: np.ndarray, lo_rel: np.ndarray,
                  width: np.ndarray, fee_tier: np.ndarray,
                  recenter_after: int | None) -> tuple[np.ndarray, ...]:
    """Path-dependent v3 value growth, HODL growth, liquidity per value, in-range share, re-centres.

    Prices are relative to the first period (entry price 1); each period starts from one unit
    of position value, so the rows are growth factors. Only the range bounds are path
    dependent (`_ranges`); every period is then valued at once.
    """
    n, p = rel.shape
    new = np.cumprod(rel, axis=0)  # price at each period's end
    price = np.vstack([np.ones((1, p)), new[:-1]])  # and at its start
    lower, upper, rec = _ranges(price, new, np.asarray(width, float), recenter_after)
    liq = liquidity_for_value(np.ones((n, p)), price, lower, upper)  # one unit of value
    x0, y0 = amounts_for_liquidity(liq, price, lower, upper)
    lp = position_value(liq, new, lower, upper) * g1
    hodl = (x0 * new + y0) * g1
    high = np.maximum(new * hi_rel, np.maximum(price, new))
    low = np.minimum(new * lo_rel, np.minimum(price, new))
    inr = in_range_fraction_ohlc(price, high, low, new, lower, upper)
    mult = liquidity_per_value(liq, price, lower, upper)
    # all one token: swap half back at the fee tier, re-deposit centred
    cost = np.where(rec, 0.5 * np.asarray(fee_tier, float), 0.0)
    lp = lp * (1.0 - cost)
    return lp, hodl, mult, inr, rec, cost


def position_paths(g0: np.ndarray, g1: np.ndarray, meta: pd.DataFrame, *,
                   ohlc_rel: tuple[np.ndarray, np.ndarray] | None = None,
                   width: float | np.ndarray = DEFAULT_WIDTH,
                   recenter_after: int | None = 1) -> LpPaths:
    """LP growth, HODL growth, fee multipliers and in-range shares per period and pool.

    Parameters
    ----------
    g0, g1 : (periods x pools) USD price growth of token0 / token1 over each period.
    meta : pool metadata in column order (`protocol`, `fee_tier`; optional `weight0`).
    ohlc_rel : (high, low) divided by the period's close, (periods x pools); None: the
        price is taken to move straight from the previous close to the close.
    width : v3 range half-width (fraction), scalar or per pool.
    recenter_after : re-centre a v3 range after this many periods ending out of range
        (None: never).
    """
    g0, g1 = np.asarray(g0, float), np.asarray(g1, float)
    n, p = g0.shape
    proto = (meta["protocol"].astype(str).to_numpy() if "protocol" in meta
             else np.array(["uniswap_v2"] * p))
    tiers = (np.nan_to_num(meta["fee_tier"].to_numpy(float)) if "fee_tier" in meta
             else np.zeros(p))
    rel = g0 / g1
    hodl = 0.5 * (g0 + g1)
    lp = hodl * cp_value_ratio(rel)  # constant product 50/50
    wt = proto == WEIGHTED
    if wt.any():
        w0 = (np.nan_to_num(meta["weight0"].to_numpy(float), nan=0.5) if "weight0" in meta
              else np.full(p, 0.5))[wt]
        hodl[:, wt] = w0 * g0[:, wt] + (1 - w0) * g1[:, wt]
        lp[:, wt] = hodl[:, wt] * weighted_value_ratio(rel[:, wt], w0)
    stab = proto == STABLESWAP
    if stab.any():  # pool share value anchored at the first period (the peg)
        c0, c1 = np.cumprod(g0[:, stab], axis=0), np.cumprod(g1[:, stab], axis=0)
        v = 0.5 * (c0 + c1) * stableswap_value_ratio(c0 / c1)
        lp[:, stab] = v / np.vstack([np.ones((1, v.shape[1])), v[:-1]])
    liq = np.ones((n, p))
    in_range = np.ones((n, p))
    rec = np.zeros((n, p), bool)
    cost = np.zeros((n, p))
    conc = proto == CONCENTRATED
    if conc.any():
        widths = np.broadcast_to(np.asarray(width, float), (p,))[conc]
        if ohlc_rel is None:
            hi = lo = np.ones((n, int(conc.sum())))
        else:
            hi, lo = (np.nan_to_num(a[:, conc], nan=1.0) for a in ohlc_rel)
        out = _concentrated(rel[:, conc], g1[:, conc], hi, lo, widths, tiers[conc],
                            recenter_after)
        (lp[:, conc], hodl[:, conc], liq[:, conc], in_range[:, conc], rec[:, conc],
         cost[:, conc]) = out
    return LpPaths(lp=lp, hodl=hodl, liq_per_value=liq, in_range=in_range,
                   pool_eff=pool_efficiency(proto, tiers), recentred=rec, recentre_cost=cost)
