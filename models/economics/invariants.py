"""Position value versus HODL per pool invariant (impermanent loss).

Conventions
-----------
r : pool price (token1 per token0) relative to the price at deposit, r = p / p_entry.
value ratio : LP value / HODL value, both in token1 units, where HODL keeps the tokens
    deposited at the entry price. It is <= 1 for every invariant here (the LP is always
    short the convexity); impermanent loss = value ratio - 1 <= 0.

Invariants
----------
uniswap_v2 (constant product 50/50): 2 sqrt(r) / (1 + r).
weighted (Balancer, token0 weight w0): pool value grows as r**w0, HODL as w0 r + 1 - w0,
    so an 80/20 pool is not valued as 50/50.
uniswap_v3: exact range math of `concentrated` on [lower_ratio, upper_ratio] x entry price.
stableswap: Curve's two-coin invariant, pool balanced at entry (see
    `stableswap_value_ratio`); approximate for real pools.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike

from features.amm import cp_value_ratio as _cp_value_ratio
from models.economics._checks import EconomicsInputError, FloatArray, as_float, protocol_masks
from models.economics.concentrated import amounts_for_liquidity, position_value

__all__ = [
    "UNISWAP_V2", "UNISWAP_V3", "STABLESWAP", "WEIGHTED", "PROTOCOLS", "DEFAULT_AMPLIFICATION",
    "cp_value_ratio", "weighted_value_ratio", "stableswap_value_ratio",
    "smooth_stableswap_value_ratio", "concentrated_value_ratio", "value_ratio",
    "impermanent_loss",
]

UNISWAP_V2, UNISWAP_V3, STABLESWAP, WEIGHTED = "uniswap_v2", "uniswap_v3", "stableswap", "weighted"
PROTOCOLS = (UNISWAP_V2, UNISWAP_V3, STABLESWAP, WEIGHTED)
DEFAULT_AMPLIFICATION = 100.0  # Curve A() of a typical two-coin stable pool


def cp_value_ratio(r: ArrayLike) -> FloatArray:
    """Constant-product 50/50 LP value / HODL value at price ratio r: 2 sqrt(r) / (1 + r)."""
    return as_float(_cp_value_ratio(as_float(r)))


def weighted_value_ratio(r: ArrayLike, weight0: ArrayLike) -> FloatArray:
    """Balancer weighted-pool LP value / HODL value: r**w0 / (w0 r + 1 - w0).

    Parameters
    ----------
    r : price ratio (token1 per token0, relative to entry).
    weight0 : token0's weight in (0, 1); 0.5 gives the constant-product ratio.
    """
    r, w = as_float(r), as_float(weight0)
    if np.any((w <= 0) | (w >= 1)):
        raise EconomicsInputError(f"weight0 must lie in (0, 1), got {w!r}")
    return as_float(r**w / (w * r + 1.0 - w))


def smooth_stableswap_value_ratio(r: ArrayLike, delta: float = 0.02) -> FloatArray:
    """Heuristic stableswap value ratio: IL = cp IL * u^2 / (u^2 + delta^2), u = log r.

    Not an invariant: flat (quartic) near the peg and constant-product-like past
    |log r| ~ delta. It under-states a Curve pool's loss; `stableswap_value_ratio` follows the
    invariant. Kept for comparison with earlier results.
    """
    r = as_float(r)
    u2 = np.log(r) ** 2
    return as_float(1.0 - (1.0 - cp_value_ratio(r)) * u2 / (u2 + delta * delta))


def _curve_composition(ann: float, z: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Balances (x, y) with log(x / y) = z on Curve's 2-coin invariant with D = 1.

    With y = s, x = e^z s the invariant Ann (x + y) + D = Ann D + D^3 / (4 x y) becomes
    Ann (1 + e^z) s^3 + (1 - Ann) s^2 - e^-z / 4 = 0, which has one positive root; it lies
    below hi = max(-b / a, 0) + (c / a)^(1/3) and is found by bisection in log s.
    """
    ez = np.exp(z)
    a, b, c = ann * (1.0 + ez), 1.0 - ann, 0.25 / ez
    log_hi = np.log(np.maximum(-b / a, 0.0) + np.cbrt(c / a))
    log_lo = log_hi - 50.0
    for _ in range(80):  # interval 50 / 2**80: float precision
        mid = 0.5 * (log_lo + log_hi)
        s = np.exp(mid)
        neg = (a * s + b) * s * s < c
        log_lo, log_hi = np.where(neg, mid, log_lo), np.where(neg, log_hi, mid)
    y = np.exp(0.5 * (log_lo + log_hi))
    return as_float(ez * y), as_float(y)


@lru_cache(maxsize=32)
def _curve_table(amplification: float) -> tuple[FloatArray, FloatArray]:
    """(log r, (1 - value ratio) / log(r)^2) on a grid dense near the peg, for interpolation."""
    ann = 2.0 * amplification  # Curve contracts use Ann = A * n_coins in the invariant
    t = np.linspace(0.0, 1.0, 4001)[1:]
    z = 1e-3 * np.sinh(t * np.arcsinh(40.0 / 1e-3))  # log(x / y) from 1e-3 to 40
    z = np.concatenate([-z[::-1], z])
    x, y = _curve_composition(ann, z)
    q = 1.0 / (4.0 * x * y)
    p = (ann + q / x) / (ann + q / y)  # -dy/dx: token1 per token0
    u = np.log(p)
    g = (1.0 - (p * x + y) / (0.5 * (p + 1.0))) / (u * u)
    # g is even and smooth in u with g(0) = (A + 1) / 8 (small-move limit of the invariant)
    u = np.concatenate([u[: z.size // 2], [0.0], u[z.size // 2:]])
    g = np.concatenate([g[: z.size // 2], [(amplification + 1.0) / 8.0], g[z.size // 2:]])
    order = np.argsort(u)
    return as_float(u[order]), as_float(np.maximum(g[order], 0.0))


def stableswap_value_ratio(r: ArrayLike,
                           amplification: float = DEFAULT_AMPLIFICATION) -> FloatArray:
    """Curve stableswap (two coins) LP value / HODL value at price ratio r. Approximate.

    Follows Curve's invariant Ann (x + y) + D = Ann D + D^3 / (4 x y), Ann = 2 A, for a pool
    that is balanced at entry (the peg is the entry price). The curve is tabulated once per A
    and interpolated in log r (absolute error < 1e-4). Near the peg IL ~ (A + 1) / 8 * log(r)^2,
    i.e. (A + 1) times a constant-product pool's: the pool swaps into the cheaper coin, and
    through a depeg it ends almost all in that coin. Approximate for real pools: more than two
    coins, entry away from balance, ramping A, fees and rate oracles are not modelled.

    Parameters
    ----------
    r : price ratio (token1 per token0, relative to entry), > 0.
    amplification : Curve's A as returned by the pool's A() (>= 0; 0 is constant product).
    """
    r = as_float(r)
    if not np.isfinite(amplification) or amplification < 0:
        raise EconomicsInputError(f"amplification must be a finite number >= 0, "
                                  f"got {amplification!r}")
    if amplification < 1e-9:  # constant product up to O(A) (and the table would underflow)
        return cp_value_ratio(r)
    u_grid, g_grid = _curve_table(float(amplification))
    u = np.log(r)
    return as_float(np.clip(1.0 - np.interp(u, u_grid, g_grid) * u * u, 0.0, 1.0))


def concentrated_value_ratio(r: ArrayLike, lower_ratio: ArrayLike,
                             upper_ratio: ArrayLike) -> FloatArray:
    """Uniswap v3 LP value / HODL value for a range [lower_ratio, upper_ratio] x entry price.

    The deposit is made at the entry price (r = 1) with the token split the range requires
    (all token0 when entry is below the range, all token1 above); HODL keeps that split.

    Parameters
    ----------
    r : price ratio (relative to entry).
    lower_ratio, upper_ratio : range bounds relative to the entry price
        (0 and inf: full range, equal to `cp_value_ratio`).
    """
    r = as_float(r)
    x0, y0 = amounts_for_liquidity(1.0, 1.0, lower_ratio, upper_ratio)
    return as_float(position_value(1.0, r, lower_ratio, upper_ratio) / (x0 * r + y0))


def value_ratio(r: ArrayLike, protocol: ArrayLike, *, lower_ratio: ArrayLike | None = None,
                upper_ratio: ArrayLike | None = None, weight0: ArrayLike = 0.5,
                amplification: float = DEFAULT_AMPLIFICATION) -> FloatArray:
    """LP value / HODL value per pool invariant; `protocol` broadcasts against r.

    Parameters
    ----------
    r : price ratio (token1 per token0 relative to entry).
    protocol : one of PROTOCOLS, or an array of them (e.g. one per pool, last axis).
    lower_ratio, upper_ratio : uniswap_v3 range relative to entry (None: full range).
    weight0 : token0 weight of weighted pools (entries of other pools are ignored).
    amplification : Curve A of stableswap pools.
    """
    r = as_float(r)
    lo = as_float(0.0 if lower_ratio is None else lower_ratio)
    hi = as_float(np.inf if upper_ratio is None else upper_ratio)
    w0 = as_float(weight0)
    if isinstance(protocol, str):
        if protocol not in PROTOCOLS:
            raise EconomicsInputError(f"unknown protocol {protocol!r}; expected one of "
                                      f"{PROTOCOLS}")
        return _branch(protocol, r, lo, hi, w0, amplification)
    masks = protocol_masks(protocol, PROTOCOLS)
    shape = np.broadcast_shapes(r.shape, masks[UNISWAP_V2].shape, lo.shape, hi.shape, w0.shape)
    out = np.full(shape, np.nan)
    for name, mask in masks.items():
        m = np.broadcast_to(mask, shape)
        if np.any(m):  # each invariant priced on its own pools only
            out[m] = _branch(name, np.broadcast_to(r, shape)[m], np.broadcast_to(lo, shape)[m],
                             np.broadcast_to(hi, shape)[m], np.broadcast_to(w0, shape)[m],
                             amplification)
    return as_float(out)


def _branch(protocol: str, r: FloatArray, lo: FloatArray, hi: FloatArray, w0: FloatArray,
            amplification: float) -> FloatArray:
    """Value ratio of one protocol."""
    if protocol == UNISWAP_V3:
        return concentrated_value_ratio(r, lo, hi)
    if protocol == STABLESWAP:
        return stableswap_value_ratio(r, amplification)
    if protocol == WEIGHTED:
        return weighted_value_ratio(r, w0)
    return cp_value_ratio(r)


def impermanent_loss(r: ArrayLike, protocol: ArrayLike = UNISWAP_V2, *,
                     lower_ratio: ArrayLike | None = None, upper_ratio: ArrayLike | None = None,
                     weight0: ArrayLike = 0.5,
                     amplification: float = DEFAULT_AMPLIFICATION) -> FloatArray:
    """Impermanent loss versus HODL as a fraction (<= 0): value_ratio - 1."""
    return as_float(value_ratio(r, protocol, lower_ratio=lower_ratio, upper_ratio=upper_ratio,
                                weight0=weight0, amplification=amplification) - 1.0)
