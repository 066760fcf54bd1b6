"""Uniswap v3 range math: liquidity, token amounts, value, capital efficiency, time in range.

Conventions
-----------
price : token1 per token0 in human units (decimals applied), the Uniswap convention and the
    panel's `close` column. A range is [lower, upper] in the same units; `lower=0,
    upper=np.inf` is the full (constant-product) range.
value : token1 units (multiply by token1's USD price for USD).
liquidity : L in human units, L = sqrt(x y) of the virtual reserves, so that inside the range
    amount0 = L (1/sqrt(p) - 1/sqrt(pb)) and amount1 = L (sqrt(p) - sqrt(pa))
    (Uniswap v3 whitepaper, eqs. 6.29-6.30).

Every function is pure, vectorised numpy and broadcasts its arguments.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from models.economics._checks import FloatArray, as_float, check_range

__all__ = [
    "tick_to_price", "price_to_tick", "sqrt_price_x96_to_price", "human_liquidity",
    "liquidity_for_amounts", "amounts_for_liquidity", "position_value", "full_range_value",
    "liquidity_for_value", "range_efficiency", "in_range", "in_range_fraction_path",
    "in_range_fraction_grouped", "in_range_fraction_ohlc", "centred_range",
]

_LOG_TICK = float(np.log(1.0001))


def tick_to_price(tick: ArrayLike, decimals0: int = 0, decimals1: int = 0) -> FloatArray:
    """Human price (token1 per token0) of a tick: 1.0001**tick * 10**(decimals0 - decimals1)."""
    return as_float(np.exp(as_float(tick) * _LOG_TICK) * 10.0 ** (decimals0 - decimals1))


def price_to_tick(price: ArrayLike, decimals0: int = 0, decimals1: int = 0) -> FloatArray:
    """Tick (float, not rounded) of a human price; inverse of `tick_to_price`."""
    return as_float((np.log(as_float(price)) - (decimals0 - decimals1) * np.log(10.0))
                    / _LOG_TICK)


def sqrt_price_x96_to_price(sqrt_price_x96: ArrayLike, decimals0: int = 0,
                            decimals1: int = 0) -> FloatArray:
    """Human price from a pool's sqrtPriceX96: (sqrtPriceX96 / 2**96)**2 * 10**(d0 - d1)."""
    s = as_float(sqrt_price_x96) / 2.0**96
    return as_float(s * s * 10.0 ** (decimals0 - decimals1))


def human_liquidity(raw_liquidity: ArrayLike, decimals0: int, decimals1: int) -> FloatArray:
    """Liquidity in human units: raw / 10**((decimals0 + decimals1) / 2)."""
    return as_float(as_float(raw_liquidity) / 10.0 ** ((decimals0 + decimals1) / 2.0))


def _bounds(price: ArrayLike, lower: ArrayLike,
            upper: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(price, sqrt(lower), sqrt(upper), sqrt(price) clipped into the range), range checked."""
    lo, hi = as_float(lower), as_float(upper)
    check_range(lo, hi)
    p = as_float(price)
    sa, sb = np.sqrt(lo), np.sqrt(hi)
    return p, sa, sb, np.clip(np.sqrt(p), sa, sb)


def liquidity_for_amounts(amount0: ArrayLike, amount1: ArrayLike, price: ArrayLike,
                          lower: ArrayLike, upper: ArrayLike) -> FloatArray:
    """Largest liquidity the token amounts can provide on [lower, upper] at `price`.

    Uniswap's getLiquidityForAmounts: at or below `lower` only token0 counts, at or above
    `upper` only token1, inside the smaller of the two liquidities (the surplus token is left
    over).

    Parameters
    ----------
    amount0, amount1 : token amounts (human units, >= 0).
    price : pool price, token1 per token0.
    lower, upper : range bounds, token1 per token0 (0 <= lower < upper, upper may be inf).

    Returns
    -------
    Liquidity L, human units.
    """
    _, sa, sb, s = _bounds(price, lower, upper)
    a0, a1 = as_float(amount0), as_float(amount1)
    d0, d1 = 1.0 / s - 1.0 / sb, s - sa  # amounts per unit of L
    with np.errstate(divide="ignore", invalid="ignore"):
        l0 = np.where(d0 > 0, a0 / d0, np.inf)
        l1 = np.where(d1 > 0, a1 / d1, np.inf)
    return as_float(np.minimum(l0, l1))


def amounts_for_liquidity(liquidity: ArrayLike, price: ArrayLike, lower: ArrayLike,
                          upper: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Token amounts (amount0, amount1) held by liquidity L on [lower, upper] at `price`.

    The price is clipped into the range: below it the position is all token0
    (L (1/sqrt(pa) - 1/sqrt(pb))), above it all token1 (L (sqrt(pb) - sqrt(pa))).

    Parameters
    ----------
    liquidity : L, human units.
    price : pool price, token1 per token0.
    lower, upper : range bounds, token1 per token0.

    Returns
    -------
    (amount0, amount1) in human token units, both >= 0.
    """
    _, sa, sb, s = _bounds(price, lower, upper)
    liq = as_float(liquidity)
    return as_float(liq * (1.0 / s - 1.0 / sb)), as_float(liq * (s - sa))


def _value_per_liquidity(p: FloatArray, sa: FloatArray, sb: FloatArray,
                         s: FloatArray) -> FloatArray:
    """Value (token1) of one unit of liquidity, s being sqrt(price) clipped into the range."""
    return as_float((1.0 / s - 1.0 / sb) * p + (s - sa))


def position_value(liquidity: ArrayLike, price: ArrayLike, lower: ArrayLike,
                   upper: ArrayLike) -> FloatArray:
    """Value of a range position, amount0 * price + amount1, in token1 units.

    Continuous in price, including at the range edges.
    """
    p, sa, sb, s = _bounds(price, lower, upper)
    return as_float(as_float(liquidity) * _value_per_liquidity(p, sa, sb, s))


def full_range_value(liquidity: ArrayLike, price: ArrayLike) -> FloatArray:
    """Value (token1) of liquidity L over the full range: 2 L sqrt(price).

    Converts a pool's active liquidity into "full-range" value units, the units of
    `fees.usd_liquidity` once multiplied by token1's USD price.
    """
    return as_float(2.0 * as_float(liquidity) * np.sqrt(as_float(price)))


def liquidity_for_value(value: ArrayLike, price: ArrayLike, lower: ArrayLike,
                        upper: ArrayLike) -> FloatArray:
    """Liquidity of a deposit worth `value` (token1) split as the range requires at `price`.

    Parameters
    ----------
    value : deposit value, token1 units.
    price : pool price, token1 per token0.
    lower, upper : range bounds, token1 per token0.

    Returns
    -------
    Liquidity L (human units) with position_value(L, price, lower, upper) == value.
    """
    p, sa, sb, s = _bounds(price, lower, upper)
    return as_float(as_float(value) / _value_per_liquidity(p, sa, sb, s))


def range_efficiency(price: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> FloatArray:
    """Liquidity per unit of value relative to a full-range position at the same price.

    Inside the range 2 sqrt(p) / (2 sqrt(p) - sqrt(pa) - p / sqrt(pb)) (>= 1, 1 for the full
    range); for a centred range [p / (1 + w), p (1 + w)] this is 1 / (1 - (1 + w)**-0.5).
    Outside the range 0: the position holds liquidity but none of it is active.

    Returns
    -------
    Efficiency, dimensionless (fee share and LVR multiplier of a concentrated position).
    """
    p, sa, sb, _ = _bounds(price, lower, upper)
    sp = np.sqrt(p)
    inside = (p >= sa * sa) & (p <= sb * sb)
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = 2.0 * sp / (2.0 * sp - sa - p / sb)
    return as_float(np.where(inside, eff, 0.0))


def in_range(price: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> np.ndarray:
    """True where lower <= price <= upper (both edges count as in range)."""
    p = as_float(price)
    return np.asarray((p >= as_float(lower)) & (p <= as_float(upper)))


def in_range_fraction_path(prices: ArrayLike, lower: ArrayLike, upper: ArrayLike,
                           axis: int = 0) -> FloatArray:
    """Fraction of a price path's points inside [lower, upper] (minute or tick path).

    Parameters
    ----------
    prices : price path, token1 per token0; time along `axis` (default 0, periods x pools).
    lower, upper : range bounds, broadcast against `prices`.
    axis : time axis.

    Returns
    -------
    Fraction in [0, 1] per path; NaN points are skipped, NaN when a path has none.
    """
    p = as_float(prices)
    valid = np.isfinite(p)
    inside = in_range(p, lower, upper) & valid
    n = valid.sum(axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return as_float(np.where(n > 0, inside.sum(axis=axis) / n, np.nan))


def in_range_fraction_grouped(prices: ArrayLike, lower: ArrayLike, upper: ArrayLike,
                              groups: ArrayLike, n_groups: int | None = None) -> FloatArray:
    """Fraction of points inside the range per group (e.g. minutes of each hour).

    Parameters
    ----------
    prices : 1-D price path, token1 per token0.
    lower, upper : range bounds, scalars or one per point.
    groups : integer group id (0 .. n_groups - 1) of every point.
    n_groups : number of groups (default max(groups) + 1).

    Returns
    -------
    Fraction in [0, 1] per group; NaN for a group without finite prices.
    """
    p = as_float(prices).ravel()
    g = np.asarray(groups, dtype=np.intp).ravel()
    if g.shape != p.shape:
        raise ValueError(f"groups has {g.size} entries for {p.size} prices")
    m = int(g.max()) + 1 if n_groups is None and g.size else int(n_groups or 0)
    valid = np.isfinite(p)
    inside = np.broadcast_to(in_range(p, lower, upper), p.shape) & valid
    n = np.bincount(g, weights=valid, minlength=m)
    k = np.bincount(g, weights=inside, minlength=m)
    with np.errstate(divide="ignore", invalid="ignore"):
        return as_float(np.where(n > 0, k / n, np.nan))


def _overlap(a: FloatArray, b: FloatArray, lo: FloatArray, hi: FloatArray) -> FloatArray:
    """Length of the segment between a and b that lies inside [lo, hi]."""
    return as_float(np.clip(np.minimum(np.maximum(a, b), hi) - np.maximum(np.minimum(a, b), lo),
                            0.0, None))


def in_range_fraction_ohlc(open: ArrayLike, high: ArrayLike, low: ArrayLike,
                           close: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> FloatArray:
    """Fraction of a bar's time spent inside [lower, upper], approximated from its OHLC.

    Approximation: the price travels open -> nearer extreme -> other extreme -> close,
    linearly in log price at constant speed, so time is proportional to log distance and the
    fraction is the in-range log length over the total log length. It is exact (1) when the
    bar's [low, high] lies inside the range and exact (0) when [low, high] lies outside it; a
    bar that does not move counts as in range when its close is. Open and close outside
    [low, high] (bad exports) widen the bar to include them. Prices must be > 0.

    Parameters
    ----------
    open, high, low, close : bar prices, token1 per token0.
    lower, upper : range bounds, token1 per token0 (upper may be inf, lower 0).

    Returns
    -------
    Fraction of the bar in range, in [0, 1]; NaN where a price is missing.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        o, c = np.log(as_float(open)), np.log(as_float(close))
        h = np.maximum(np.log(as_float(high)), np.maximum(o, c))
        lw = np.minimum(np.log(as_float(low)), np.minimum(o, c))
        lo, hi = np.log(as_float(lower)), np.log(as_float(upper))
    high_first = (h - o) <= (o - lw)
    e1, e2 = np.where(high_first, h, lw), np.where(high_first, lw, h)
    inside = _overlap(o, e1, lo, hi) + _overlap(e1, e2, lo, hi) + _overlap(e2, c, lo, hi)
    total = np.abs(e1 - o) + (h - lw) + np.abs(c - e2)
    still = as_float((c >= lo) & (c <= hi))
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(total > 0, np.clip(inside / total, 0.0, 1.0), still)
    return as_float(np.where(np.isnan(total), np.nan, frac))


def centred_range(price: ArrayLike, width: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Range (price / (1 + width), price * (1 + width)) centred in log price on `price`."""
    p, w = as_float(price), 1.0 + as_float(width)
    return as_float(p / w), as_float(p * w)
