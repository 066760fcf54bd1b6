"""Pool invariant formulas the feature layer needs; the economics core builds on them.

Kept here, at the bottom of the dependency order, so that the stored labels and the model
package's economics share one definition.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["cp_value_ratio", "routed_flow_shares", "FlowSplit", "STABLE_DEPTH_MULTIPLIER",
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
    return FlowSplit(fee_tier, group, fractions)(depth_usd)


class FlowSplit:
    """`routed_flow_shares` for fixed pools (fees and pairs), called once per period on depths.

    The pools' order within their pair (by fee) and the pairs' segments are worked out once;
    a call is one compiled pass over the pools (about 30 µs for 30 pools).
    """

    def __init__(self, fee_tier: np.ndarray, group: np.ndarray,
                 fractions: tuple[float, ...] = TRADE_FRACTIONS) -> None:
        grp = np.asarray(group, dtype=np.int64)
        self.n_groups = int(grp.max()) + 1 if grp.size else 0
        fee = np.asarray(fee_tier, float)
        with np.errstate(invalid="ignore", divide="ignore"):
            inv = 1.0 / np.sqrt(1.0 - fee)
        self.inv_root = np.where((fee >= 0) & (fee < 1), inv, np.inf)  # inf: takes no flow
        self.order = np.lexsort((self.inv_root, grp))
        self.g = grp[self.order]
        self.c = np.where(np.isfinite(self.inv_root), self.inv_root, 0.0)[self.order]
        first = np.r_[True, self.g[1:] != self.g[:-1]] if len(self.g) else np.zeros(0, bool)
        self.head = np.flatnonzero(first)
        self.size = np.diff(np.r_[self.head, len(self.g)])
        self.fractions = np.asarray(fractions, float)

    def __call__(self, depth_usd: np.ndarray) -> np.ndarray:
        """Shares of each pool's group volume at these depths (USD per side, per pool)."""
        d_usd = np.asarray(depth_usd, float)
        ok = np.isfinite(d_usd) & (d_usd > 0) & np.isfinite(self.inv_root)
        depth = np.where(ok, d_usd, 0.0)[self.order]  # no depth, or a fee outside [0, 1)
        out = np.zeros(len(depth))
        _split_shares(depth, self.c, self.head, self.size, self.fractions, out)
        share = np.empty_like(out)
        share[self.order] = out
        return share


@njit(cache=True, nogil=True)
def _split_shares(depth, c, head, size, fractions, out):  # type: ignore[no-untyped-def]
    """Per pool sorted by pair then fee: mean over trade sizes of its share of the trade."""
    for s in range(len(head)):
        a, b = head[s], head[s] + size[s]
        total = 0.0
        for k in range(a, b):
            total += depth[k]
        if total <= 0.0:
            continue
        for f in fractions:
            amount = f * total
            W = 0.0
            S = 0.0
            for k in range(a, b):  # pools join in fee order while the level passes them
                if W * c[k] - S >= amount:
                    break
                w = depth[k] * c[k]
                W += w
                S += w * c[k]
            if W <= 0.0:
                continue
            level = (amount + S) / W
            for k in range(a, b):
                if level > c[k]:
                    out[k] += depth[k] * c[k] * (level - c[k]) / amount / len(fractions)
