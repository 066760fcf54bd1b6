"""Replay of one Uniswap v3 LP position over a pool's panel rows (any frequency).

Accounting (all value, fee and cost formulas come from `models.economics`):

- Entry at the first row's open: the capital (quote token) is split evenly at that price,
  half swapped to the base token (free by default; ``entry_swap_fee`` pays the fee tier on
  the swapped half, as demeter's ``even_rebalance`` does). The range's ticks are snapped to
  the pool's tick spacing. Liquidity is the most the two amounts can provide; the surplus
  token is kept as cash and valued at each period's price.
- Fees per period: the pool's fees x our share of active liquidity x the share of the
  period in range (`fees.diluted_fees`). Share source "liquidity": the panel's raw
  ``liquidity`` in human units, our L added to the denominator; "tvl_approx" without it:
  ``tvl_usd`` x the tier's pool efficiency against our full-range-equivalent USD. In range:
  minute rows follow the tick path from the previous close to the close (demeter's
  crossing weight); coarser rows use `in_range_fraction_ohlc`. Where the rows carry the
  pool's fees per token (``fees_token0`` / ``fees_token1``, the demeter reader's), the fees
  earned in each token are held as that token (uncollected, as on chain) and valued at each
  period's price; otherwise ``fees_usd`` is booked in the quote token when earned.
- NAV at each period's close: position value + leftover tokens + fees, in the quote token.
  HODL keeps the two entry amounts. IL = (NAV - fees) / HODL - 1.
- LVR estimate: per period, value x `lvr_fraction` of the period's realised move (|log
  return| as the volatility over the period), range efficiency and in-range share.
- Re-centring (``recenter``): a period whose close is outside the range ends with a
  withdrawal and a new range of the same width centred on that close; the swap that
  restores the range's token split pays `costs.rebalance_cost` (fee tier, price impact
  through the pool's depth, gas). The new position starts with the next period.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.economics import concentrated as cm
from models.economics._replay_rows import PoolRows, ReplayError, pool_rows, snap_range
from models.economics.costs import rebalance_cost, swap_depth_usd
from models.economics.fees import diluted_fees, usd_liquidity
from models.economics.lvr import lvr_fraction

__all__ = ["ReplayResult", "ReplayError", "replay_position", "PATH_COLUMNS"]

PATH_COLUMNS = ["timestamp", "price", "nav", "hodl", "fees_cum", "in_range", "lower", "upper",
                "liquidity", "lvr_cum", "recentred"]
YEAR = pd.Timedelta(days=365)


@dataclass(frozen=True)
class ReplayResult:
    """One position's replay: the per-period path and its summary (quote-token units)."""

    pool_id: str
    quote: str
    base: str
    capital: float
    path: pd.DataFrame = field(repr=False)
    final_nav: float
    fees: float
    hodl: float
    il: float
    il_quote: float
    il_usd: float
    lvr: float
    lvr_fraction: float
    time_in_range: float
    rows: int
    recentres: int
    costs: float
    fee_share_source: str
    fees_in_tokens: bool
    freq: str
    notes: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """Scalar fields as a JSON-ready dict (the path left out)."""
        out = {k: v for k, v in self.__dict__.items() if k != "path"}
        out["notes"] = list(self.notes)
        out["start"] = str(self.path["timestamp"].iloc[0])
        out["end"] = str(self.path["timestamp"].iloc[-1])
        return out


def _pool_range(r: PoolRows, q_lo: float, q_hi: float) -> tuple[float, float]:
    """Pool-price range (token1 per token0) of a quote-price range, snapped to ticks."""
    if not 0 < q_lo < q_hi:
        raise ReplayError(f"pool {r.pool_id}: range in quote prices must satisfy "
                          f"0 < lower < upper, got lower={q_lo:.6g}, upper={q_hi:.6g}")
    lo, hi = (1.0 / q_hi, 1.0 / q_lo) if r.quote_is_token0 else (q_lo, q_hi)
    return snap_range(lo, hi, r)


def _in_range(r: PoolRows, s: int, e: int, prev: float, lo: float, hi: float) -> np.ndarray:
    """Share of each period in [s, e] spent in range."""
    c = r.close[s:e + 1]
    if r.minute:  # tick path from the previous close to this close
        o = np.concatenate(([prev], c[:-1]))
        return cm.in_range_fraction_ohlc(o, np.maximum(o, c), np.minimum(o, c), c, lo, hi)
    return cm.in_range_fraction_ohlc(r.open[s:e + 1], r.high[s:e + 1], r.low[s:e + 1], c, lo, hi)


def _segment_end(r: PoolRows, s: int, lo: float, hi: float, recenter: bool) -> int:
    """Last row of the position opened before row s: the first close out of range, or the end."""
    n = len(r.close)
    if not recenter:
        return n - 1
    step = 1024
    while s < n:  # growing windows: cheap when re-centres are frequent, one pass otherwise
        c = r.close[s:s + step]
        out = (c < lo) | (c > hi)
        if out.any():
            return s + int(np.argmax(out))
        s, step = s + step, step * 2
    return n - 1


def _recentre_cost(r: PoolRows, t: int, x0: float, x1: float, lo: float, hi: float,
                   gas: Any) -> float:
    """USD cost of swapping the withdrawn amounts (x0, x1) into the split [lo, hi] needs."""
    c = r.close[t]
    u0, _ = cm.amounts_for_liquidity(cm.liquidity_for_value(1.0, c, lo, hi), c, lo, hi)
    value = x0 * c + x1
    swap_usd = abs(x0 * c - float(u0) * c * value) * r.t1_usd[t]
    if r.pool_liq is not None:
        active_usd = cm.full_range_value(r.pool_liq[t], c) * r.t1_usd[t]
        depth = swap_depth_usd(r.tvl_usd[t], r.protocol, active_liquidity_usd=active_usd)
    else:
        depth = swap_depth_usd(r.tvl_usd[t], r.protocol, efficiency=r.pool_eff)
    g, f, i = rebalance_cost(2.0 * swap_usd, depth, r.fee_tier, r.chain, gas)
    return float(g + f + i)


def replay_position(
    frame: pd.DataFrame, meta: Mapping[str, Any] | pd.Series, *, capital: float,
    width: float | None = None, lower: float | None = None, upper: float | None = None,
    recenter: bool = False, quote: str | None = None, freq: str | None = None,
    entry_swap_fee: bool = False, gas_usd: float | Mapping[str, float] | None = None,
    tick_spacing: int | None = None,
) -> ReplayResult:
    """Replay one LP position over one pool's panel rows.

    Parameters
    ----------
    frame : panel rows of one pool (timestamp, open/high/low/close, fees_usd, tvl_usd, token
        USD prices; optional liquidity (raw), missing); rows flagged missing carry the last
        price and earn nothing.
    meta : the pool's metadata (token0, token1, fee_tier, protocol, chain; decimals0/1 to use
        the liquidity column and snap ticks).
    capital : deposit, quote-token units.
    width : range half-width around the entry price, quote units (200 -> entry ± 200).
    lower, upper : range bounds as quote prices of the base token (instead of width).
    recenter : re-centre (same width) after a period that closes out of range.
    quote : quote token (symbol, "token0" or "token1"); default the stablecoin leg, else token1.
    freq : "1min", "1h", "1d"; inferred from the timestamps when None.
    entry_swap_fee : pay the fee tier on the half swapped at entry.
    gas_usd : gas per re-centre, USD, flat or per chain (None: `costs.GAS_USD`).
    tick_spacing : tick grid of the range (None: from the fee tier; 0: no snapping).

    Returns
    -------
    ReplayResult with the per-period path and final_nav, fees, il, lvr, time in range (quote
    units unless a name says usd).
    """
    r = pool_rows(frame, meta, quote=quote, freq=freq, tick_spacing=tick_spacing)
    if capital <= 0:
        raise ReplayError(f"pool {r.pool_id}: capital must be > 0, got {capital}")
    p0 = r.open[0]
    q0 = 1.0 / p0 if r.quote_is_token0 else p0
    if width is not None:
        if lower is not None or upper is not None:
            raise ReplayError(f"pool {r.pool_id}: give width or lower/upper, not both")
        if not 0 < width < q0:
            raise ReplayError(f"pool {r.pool_id}: width must lie in (0, entry price {q0:.6g}) "
                              f"quote units, got {width}")
        half, q_lo, q_hi = float(width), q0 - width, q0 + width
    elif lower is not None and upper is not None:
        half, q_lo, q_hi = (upper - lower) / 2.0, float(lower), float(upper)
    else:
        raise ReplayError(f"pool {r.pool_id}: give a range: width, or both lower and upper")
    lo, hi = _pool_range(r, q_lo, q_hi)
    fee_in = 0.0
    if entry_swap_fee:  # a zap of the whole capital: the fee tier on the swapped half
        fee_in = float(rebalance_cost(capital, np.inf, r.fee_tier, gas=0.0)[1])
    half_q = (capital - fee_in) / 2.0
    a0, a1 = (half_q, half_q * p0) if r.quote_is_token0 else (half_q / p0, half_q)
    liq = float(cm.liquidity_for_amounts(a0, a1, p0, lo, hi))
    u0, u1 = cm.amounts_for_liquidity(liq, p0, lo, hi)
    left0, left1 = max(a0 - float(u0), 0.0), max(a1 - float(u1), 0.0)

    n = len(r.close)
    c = r.close
    to_q = 1.0 / c if r.quote_is_token0 else np.ones(n)
    nav, share, frac, lvr = (np.empty(n) for _ in range(4))
    lo_a, hi_a, liq_a = np.empty(n), np.empty(n), np.empty(n)
    rec = np.zeros(n, bool)
    ret = np.diff(np.log(np.concatenate(([p0], c))))
    dt_years = r.step / YEAR
    s, prev, costs_q = 0, p0, fee_in
    while s < n:
        e = _segment_end(r, s, lo, hi, recenter)
        sl = slice(s, e + 1)
        f = _in_range(r, s, e, prev, lo, hi)
        unit = np.ones(e + 1 - s)  # share of one unit of pool fees, in-range share included
        if r.pool_liq is not None:
            share[sl] = diluted_fees(unit, r.pool_liq[sl], liq, f)
        else:
            ours = usd_liquidity(cm.full_range_value(liq, c[sl]) * r.t1_usd[sl], 1.0)
            share[sl] = diluted_fees(unit, usd_liquidity(r.tvl_usd[sl], r.pool_eff), ours, f)
        pos = cm.position_value(liq, c[sl], lo, hi)
        nav[sl] = (pos + left0 * c[sl] + left1) * to_q[sl]
        eff = cm.range_efficiency(np.clip(c[sl], lo, hi), lo, hi)
        vol = np.abs(ret[sl]) / np.sqrt(dt_years)
        lvr[sl] = pos * to_q[sl] * lvr_fraction(vol, dt_years, eff, f)
        frac[sl], lo_a[sl], hi_a[sl], liq_a[sl] = f, lo, hi, liq
        if e < n - 1:  # closed out of range: withdraw, re-centre on the close, re-deposit
            w0, w1 = cm.amounts_for_liquidity(liq, c[e], lo, hi)
            x0, x1 = float(w0) + left0, float(w1) + left1
            q = 1.0 / c[e] if r.quote_is_token0 else c[e]
            lo, hi = _pool_range(r, q - half, q + half)
            cost_usd = _recentre_cost(r, e, x0, x1, lo, hi, gas_usd)
            value_t1 = x0 * c[e] + x1 - cost_usd / r.t1_usd[e]
            liq, left0, left1 = float(cm.liquidity_for_value(value_t1, c[e], lo, hi)), 0.0, 0.0
            cost_q = cost_usd / r.quote_usd[e]
            nav[e] -= cost_q
            costs_q += cost_q
            rec[e] = True
        s, prev = e + 1, c[e]
    if r.fees_tokens is not None:  # held in the token they were earned in
        f0, f1 = (np.cumsum(a * share) for a in r.fees_tokens)
        fees_cum = (f0 * c + f1) * to_q
    else:
        fees_cum = np.cumsum(r.fees_usd * share / r.quote_usd)
    nav += fees_cum
    hodl = (a0 * c + a1) * to_q
    q_lo_a, q_hi_a = (1.0 / hi_a, 1.0 / lo_a) if r.quote_is_token0 else (lo_a, hi_a)
    price_q = 1.0 / c if r.quote_is_token0 else c
    lvr_cum = np.cumsum(lvr)
    path = pd.DataFrame({
        "timestamp": r.timestamps, "price": price_q, "nav": nav, "hodl": hodl,
        "fees_cum": fees_cum, "in_range": frac, "lower": q_lo_a, "upper": q_hi_a,
        "liquidity": liq_a, "lvr_cum": lvr_cum, "recentred": rec,
    })
    il_q = float(nav[-1] - fees_cum[-1] - hodl[-1])
    return ReplayResult(
        pool_id=r.pool_id, quote=r.quote, base=r.base, capital=float(capital), path=path,
        final_nav=float(nav[-1]), fees=float(fees_cum[-1]), hodl=float(hodl[-1]),
        il=il_q / float(hodl[-1]), il_quote=il_q, il_usd=il_q * float(r.quote_usd[-1]),
        lvr=float(lvr_cum[-1]), lvr_fraction=float(lvr_cum[-1]) / capital,
        time_in_range=float(frac.mean()), rows=n, recentres=int(rec.sum()),
        costs=float(costs_q), fee_share_source=r.fee_share_source,
        fees_in_tokens=r.fees_tokens is not None, freq=r.freq,
        notes=tuple(r.notes))

