"""LP position accounting by pool invariant: diluted fees, value versus HODL, LVR, move costs.

Everything is vectorised numpy over (periods x pools) or (pools,). Price ratios `r` are the
pool price (token0 in token1) relative to the entry price; `g0`, `g1` are per-period USD price
growth factors of token0 and token1.

Invariants
----------
constant product (uniswap_v2, weighted 50/50): value / HODL = 2 sqrt(r) / (1 + r).
concentrated (uniswap_v3): liquidity on [p0 / (1 + width), p0 (1 + width)] around the entry
    price; in range value / HODL = (cp(r) - sa) / (1 - sa) with sa = (1 + width) ** -1/2, so IL
    is the constant-product IL times the capital efficiency 1 / (1 - sa); out of range the
    position is all one token and earns no fees.
stableswap: an approximation, not the Curve invariant: IL = cp IL x u^2 / (u^2 + delta^2),
    u = log r, so it is flat (quartic) near the peg and constant-product-like through a depeg.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models._alloc_inputs import gas_per_pool as _alloc_gas

__all__ = [
    "DEFAULT_GAS_USD", "OTHER_CHAIN_GAS_USD", "DEFAULT_WIDTH", "LpPaths", "diluted_fees",
    "cp_value_ratio", "capital_efficiency", "concentrated_value_ratio", "concentrated_in_range",
    "stableswap_value_ratio", "value_vs_hodl", "impermanent_loss", "lvr_multiplier",
    "lvr_fraction", "lp_paths", "value_ratios", "gas_per_pool", "trade_costs",
]

DEFAULT_GAS_USD: dict[str, float] = {"ethereum": 15.0}
OTHER_CHAIN_GAS_USD = 0.5
DEFAULT_WIDTH = 0.5  # v3 range half-width, same default as AllocatorConfig.v3_width
CONCENTRATED = "uniswap_v3"
STABLESWAP = "stableswap"


def diluted_fees(fees_usd: np.ndarray | float, tvl_usd: np.ndarray | float,
                 position_usd: np.ndarray | float,
                 multiplier: np.ndarray | float = 1.0) -> np.ndarray:
    """Fees earned by a position added to a pool: fees * m x / (TVL + m x).

    Parameters
    ----------
    fees_usd : pool fees over the period, USD.
    tvl_usd : pool TVL before our position, USD.
    position_usd : our position value x, USD.
    multiplier : liquidity per USD of our position relative to the pool's (capital efficiency
        of a concentrated range, 0 when out of range).
    """
    mx = np.asarray(multiplier, float) * np.asarray(position_usd, float)
    den = np.asarray(tvl_usd, float) + mx
    return np.asarray(np.divide(np.asarray(fees_usd, float) * mx, den,
                                out=np.zeros(np.broadcast(mx, den).shape), where=den > 0))


def cp_value_ratio(r: np.ndarray | float) -> np.ndarray:
    """Constant-product LP value / HODL value after the price moves by ratio r."""
    r = np.asarray(r, float)
    return np.asarray(2.0 * np.sqrt(r) / (1.0 + r))


def _sqrt_bounds(width: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(sqrt(pa/p0), sqrt(pb/p0)) of a range [p0 / (1 + width), p0 (1 + width)]."""
    sb = np.sqrt(1.0 + np.asarray(width, float))
    return 1.0 / sb, sb


def capital_efficiency(width: np.ndarray | float | None) -> np.ndarray:
    """Liquidity per USD of a centred range relative to full range (1 when width is None)."""
    if width is None:
        return np.asarray(1.0)
    sa, _ = _sqrt_bounds(width)
    return np.asarray(1.0 / (1.0 - sa))


def concentrated_value_ratio(r: np.ndarray | float, width: np.ndarray | float) -> np.ndarray:
    """Uniswap v3 LP value / HODL value for a range centred at entry, price ratio r.

    Parameters
    ----------
    r : pool price relative to the entry price.
    width : fractional half-width, the range is [1 / (1 + width), 1 + width] x entry price.
    """
    r = np.asarray(r, float)
    sa, sb = _sqrt_bounds(width)
    s = np.sqrt(np.clip(r, sa * sa, sb * sb))
    value = (1.0 / s - 1.0 / sb) * r + (s - sa)  # token0 amount x price + token1 amount
    hodl = (1.0 - sa) * (1.0 + r)
    return np.asarray(value / hodl)


def concentrated_in_range(r: np.ndarray | float, width: np.ndarray | float) -> np.ndarray:
    """1.0 where price ratio r lies inside the centred range, else 0.0 (no fees)."""
    sa, sb = _sqrt_bounds(width)
    r = np.asarray(r, float)
    return np.asarray(((r >= sa * sa) & (r <= sb * sb)).astype(float))


def stableswap_value_ratio(r: np.ndarray | float, delta: float = 0.02) -> np.ndarray:
    """Stableswap LP value / HODL: flat near the peg, constant-product-like past |log r| ~ delta."""
    r = np.asarray(r, float)
    u2 = np.log(r) ** 2
    return np.asarray(1.0 - (1.0 - cp_value_ratio(r)) * u2 / (u2 + delta * delta))


def value_vs_hodl(r: np.ndarray | float, protocol: np.ndarray | str, width: float = DEFAULT_WIDTH,
                  delta: float = 0.02) -> np.ndarray:
    """LP value / HODL value per pool invariant (protocol broadcast over the last axis)."""
    r = np.asarray(r, float)
    proto = np.broadcast_to(np.asarray(protocol, dtype=object), r.shape)
    out = cp_value_ratio(r)
    conc, stab = proto == CONCENTRATED, proto == STABLESWAP
    if conc.any():
        out = np.where(conc, concentrated_value_ratio(r, width), out)
    if stab.any():
        out = np.where(stab, stableswap_value_ratio(r, delta), out)
    return np.asarray(out)


def impermanent_loss(r: np.ndarray | float, protocol: np.ndarray | str = "uniswap_v2",
                     width: float = DEFAULT_WIDTH, delta: float = 0.02) -> np.ndarray:
    """IL versus HODL as a fraction (<= 0): value_vs_hodl - 1."""
    return np.asarray(value_vs_hodl(r, protocol, width, delta) - 1.0)


def lvr_multiplier(protocol: np.ndarray | str, width: float | None = DEFAULT_WIDTH,
                   stable: float = 1.0) -> np.ndarray:
    """LVR per USD relative to constant product (v3: capital efficiency; stableswap: `stable`)."""
    proto = np.asarray(protocol, dtype=object)
    eff = float(capital_efficiency(width))
    return np.asarray(np.where(proto == CONCENTRATED, eff,
                               np.where(proto == STABLESWAP, stable, 1.0)), float)


def lvr_fraction(volatility: np.ndarray | float, years: float,
                 protocol: np.ndarray | str = "uniswap_v2", width: float | None = DEFAULT_WIDTH,
                 stable: float = 1.0) -> np.ndarray:
    """Expected LVR as a fraction of position value: sigma^2 / 8 x years x protocol multiplier.

    Parameters
    ----------
    volatility : annualised volatility of the pool price (fraction).
    years : holding time in years.
    """
    sig = np.asarray(volatility, float)
    return np.asarray(sig * sig / 8.0 * years * lvr_multiplier(protocol, width, stable))


@dataclass
class LpPaths:
    """Per-period growth factors and fee multipliers of one-USD LP positions (periods x pools).

    lp : position value growth (USD) over the period, re-centring costs included.
    hodl : growth of the tokens held at the period's start, unchanged.
    lvr : loss versus rebalancing of the period, fraction of value (>= 0, part of lp - hodl).
    fee_mult : liquidity per USD relative to the pool times the in-range share of the period.
    in_range : share of the period's log price move inside the range (1 off v3).
    recentred : True where a v3 range was re-centred at the period's end.
    """

    lp: np.ndarray
    hodl: np.ndarray
    lvr: np.ndarray
    fee_mult: np.ndarray
    in_range: np.ndarray
    recentred: np.ndarray


def _concentrated_paths(g0: np.ndarray, g1: np.ndarray, width: float, fee_tier: np.ndarray,
                        recenter_after: int | None) -> tuple[np.ndarray, ...]:
    """Path-dependent v3 growth, HODL, in-range share and re-centre flags (periods x pools)."""
    n, p = g0.shape
    rel = g0 / g1
    lo, hi = 1.0 / (1.0 + width), 1.0 + width
    centre, price = np.ones(p), np.ones(p)
    out_count = np.zeros(p, int)
    lp, hodl, inr, rec = (np.ones((n, p)), np.ones((n, p)), np.ones((n, p)),
                          np.zeros((n, p), bool))

    def _amounts(pr: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.sqrt(np.clip(pr / c, lo, hi))  # in units where the centre is 1
        return (1.0 / s - 1.0 / np.sqrt(hi)) / np.sqrt(c), (s - np.sqrt(lo)) * np.sqrt(c)

    for t in range(n):
        x, y = _amounts(price, centre)
        v0 = x * price + y
        new = price * rel[t]
        x1, y1 = _amounts(new, centre)
        lp[t] = (x1 * new + y1) / v0 * g1[t]
        hodl[t] = (x * price * g0[t] + y * g1[t]) / v0
        a, b = np.log(price / centre), np.log(new / centre)
        lo_l, hi_l = np.log(lo), np.log(hi)
        seg_lo, seg_hi = np.minimum(a, b), np.maximum(a, b)
        inside = np.clip(np.minimum(seg_hi, hi_l) - np.maximum(seg_lo, lo_l), 0.0, None)
        span = seg_hi - seg_lo
        inr[t] = np.where(span > 0, inside / np.where(span > 0, span, 1.0),
                          ((a >= lo_l) & (a <= hi_l)).astype(float))
        out = (b < lo_l) | (b > hi_l)
        out_count = np.where(out, out_count + 1, 0)
        if recenter_after is not None:
            go = out_count >= recenter_after
            if go.any():  # swap half the position back into the other token at the fee tier
                lp[t] = np.where(go, lp[t] * (1.0 - 0.5 * fee_tier), lp[t])
                centre = np.where(go, new, centre)
                out_count = np.where(go, 0, out_count)
                rec[t] = go
        price = new
    return lp, hodl, inr, rec


def lp_paths(g0: np.ndarray, g1: np.ndarray, meta: pd.DataFrame, *, width: float = DEFAULT_WIDTH,
             pool_width: float | None = None, delta: float = 0.02,
             recenter_after: int | None = 1) -> LpPaths:
    """LP growth, HODL growth, LVR and fee multipliers per period for every pool's invariant.

    Parameters
    ----------
    g0, g1 : (periods x pools) USD price growth of token0 / token1 over each period.
    meta : pool metadata in column order (`protocol`, optional `fee_tier`).
    width : v3 range half-width (fraction); pool_width : the pool's own average range width
        (None: full range), the v3 fee multiplier is efficiency(width) / efficiency(pool_width).
    delta : stableswap log-price scale where IL turns constant-product-like.
    recenter_after : re-centre a v3 range after this many periods ending out of range, paying
        half the position's value times the fee tier (None: never re-centre).
    """
    g0, g1 = np.asarray(g0, float), np.asarray(g1, float)
    proto = meta["protocol"].astype(str).to_numpy() if "protocol" in meta else np.array(
        ["uniswap_v2"] * g0.shape[1])
    fee_tier = (meta["fee_tier"].to_numpy(float) if "fee_tier" in meta
                else np.zeros(g0.shape[1]))
    rel = g0 / g1
    hodl = 0.5 * (g0 + g1)
    lp = np.sqrt(g0 * g1)
    lvr = 1.0 - value_vs_hodl(rel, proto, width, delta)
    stab = proto == STABLESWAP
    if stab.any():  # pool share value anchored at the first period (the peg), as for CP
        c0, c1 = np.cumprod(g0[:, stab], axis=0), np.cumprod(g1[:, stab], axis=0)
        v = 0.5 * (c0 + c1) * stableswap_value_ratio(c0 / c1, delta)
        lp[:, stab] = v / np.vstack([np.ones((1, v.shape[1])), v[:-1]])
    fee_mult = np.ones_like(lp)
    in_range = np.ones_like(lp)
    rec = np.zeros(lp.shape, bool)
    conc = proto == CONCENTRATED
    if conc.any():
        c_lp, c_hodl, c_in, c_rec = _concentrated_paths(g0[:, conc], g1[:, conc], width,
                                                        fee_tier[conc], recenter_after)
        lp[:, conc], hodl[:, conc], in_range[:, conc], rec[:, conc] = c_lp, c_hodl, c_in, c_rec
        eff = float(capital_efficiency(width) / capital_efficiency(pool_width))
        fee_mult[:, conc] = eff * c_in
    return LpPaths(lp=lp, hodl=hodl, lvr=lvr, fee_mult=fee_mult, in_range=in_range,
                   recentred=rec)


def value_ratios(g0: np.ndarray, g1: np.ndarray, meta: pd.DataFrame,
                 **kw: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(LP growth, HODL growth, LVR) per period and pool: drop-in for the engine's placeholder."""
    p = lp_paths(g0, g1, meta, **kw)  # type: ignore[arg-type]
    return p.lp, p.hodl, p.lvr


def gas_per_pool(chain: np.ndarray | list[str] | None, gas_usd: float | Mapping[str, float],
                 n: int) -> np.ndarray:
    """Gas in USD of one transaction per pool: a flat figure or a per-chain dict."""
    if not isinstance(gas_usd, Mapping):
        return np.full(n, float(gas_usd))
    if chain is None:
        raise ValueError("a per-chain gas dict needs the pools' chains")
    return _alloc_gas(np.asarray(chain), gas_usd, other=OTHER_CHAIN_GAS_USD)


def trade_costs(delta: np.ndarray, tvl: np.ndarray, fee_tier: np.ndarray,
                gas_usd: float | Mapping[str, float] = DEFAULT_GAS_USD, *,
                chain: np.ndarray | list[str] | None = None,
                protocol: np.ndarray | list[str] | None = None,
                stable_impact: float = 0.1) -> tuple[float, float]:
    """(gas, slippage) in USD of moving `delta` USD into (> 0) or out of (< 0) each pool.

    Gas is paid once per pool whose position changes. Half the moved notional is swapped
    (zap in / out): it pays the fee tier plus constant-product execution loss s^2 / (R + s),
    s = |delta| / 2, R = TVL / 2 (one side's reserve), scaled by `stable_impact` on stableswap.
    """
    d = np.abs(np.asarray(delta, float))
    tvl = np.nan_to_num(np.asarray(tvl, float), nan=0.0)
    moved = d > 0
    gas = float(gas_per_pool(chain, gas_usd, d.size)[moved].sum())
    s = 0.5 * d
    den = 0.5 * np.clip(tvl, 0.0, None) + s
    impact = np.divide(s * s, den, out=np.zeros_like(s), where=den > 0)
    if protocol is not None:
        impact = np.where(np.asarray(protocol, dtype=object) == STABLESWAP,
                          stable_impact * impact, impact)
    return gas, float((s * np.asarray(fee_tier, float) + impact).sum())
