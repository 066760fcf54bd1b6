"""Pool invariant formulas the feature layer needs; the economics core builds on them.

Kept here, at the bottom of the dependency order, so that the stored labels and the model
package's economics share one definition.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cp_value_ratio", "routed_flow_shares", "STABLE_DEPTH_MULTIPLIER",
           "TRADE_FRACTIONS"]

# small-trade depth of a stableswap pool relative to constant product with the same TVL; a
# balanced Curve pool with amplification A has A + 1, real pools are rarely balanced and
# larger trades leave the flat part of the curve, hence a conservative figure
STABLE_DEPTH_MULTIPLIER = 10.0
# representative trade sizes of the flow model, as fractions of a pair's swap depth, each
# carrying the same volume (a judgement call: tiny trades all take the cheapest pool, larger
# ones spread by depth)
TRADE_FRACTIONS = (1e-4, 1e-3, 1e-2)


def cp_value_ratio(r: np.ndarray) -> np.ndarray:
    """Constant-product 50/50 LP value / HODL value at price ratio r: 2 sqrt(r) / (1 + r)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(2.0 * np.sqrt(r) / (1.0 + r), dtype=float)


def routed_flow_shares(depth_usd: np.ndarray, fee_tier: np.ndarray, group: np.ndarray,
                       fractions: tuple[float, ...] = TRADE_FRACTIONS) -> np.ndarray:
    """Share of its group's volume each pool captures when trades are split optimally.

    Parameters
    ----------
    depth_usd : each pool's (virtual) reserve of either token, USD (> 0); the pools of a group
        trade the same pair at the same price, as constant product on these reserves.
    fee_tier : swap fee per pool (fraction).
    group : integer pair id per pool (0 .. n_groups - 1).
    fractions : trade sizes as fractions of the group's summed depth, equal volume each.

    Returns
    -------
    Shares per pool, summing to 1 within each group (0 for pools with no depth).

    Each trade is split to equalise the pools' marginal rates after the trade (the exact
    optimum of `models.routing`'s parallel split without capacity caps): with slope
    w = R / sqrt(g) and start c = 1 / sqrt(g) (g = 1 - fee), pool i takes w (s - c)+, and the
    level s that spends the trade is found in closed form on the piecewise-linear total.
    """
    depth = np.where(np.isfinite(depth_usd) & (depth_usd > 0), depth_usd, 0.0).astype(float)
    grp = np.asarray(group, dtype=np.int64)
    n_groups = int(grp.max()) + 1 if grp.size else 0
    root = np.sqrt(1.0 - np.asarray(fee_tier, float))
    slope, start = depth / root, 1.0 / root
    order = np.lexsort((start, grp))
    g, w, c = grp[order], slope[order], start[order]
    first = np.r_[True, g[1:] != g[:-1]]
    head = np.flatnonzero(first)
    size = np.diff(np.r_[head, len(g)])
    W = _segment_cumsum(w, head, size)
    S = _segment_cumsum(w * c, head, size)
    # total input routed when the level s reaches pool k's start (pools before it only)
    prev_w = np.where(first, 0.0, np.r_[0.0, W[:-1]])
    prev_s = np.where(first, 0.0, np.r_[0.0, S[:-1]])
    tot_at_start = prev_w * c - prev_s
    total_depth = np.bincount(g, depth[order], n_groups)
    out = np.zeros(len(g))
    for f in fractions:
        amount = f * total_depth
        used = tot_at_start < amount[g]
        last = head + np.maximum(np.bincount(g, used, n_groups).astype(np.int64)[g[head]] - 1,
                                 0)
        level = np.zeros(n_groups)
        ok = W[last] > 0
        level[g[head][ok]] = (amount[g[head]][ok] + S[last][ok]) / W[last][ok]
        d = w * np.clip(level[g] - c, 0.0, None)
        out += np.where(amount[g] > 0, d / np.where(amount[g] > 0, amount[g], 1.0), 0.0)
    share = np.empty_like(out)
    share[order] = out / max(len(fractions), 1)
    return share


def _segment_cumsum(x: np.ndarray, head: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Cumulative sums restarting at each segment head."""
    cs = np.cumsum(x)
    base = np.repeat(cs[head] - x[head], size)
    return cs - base
