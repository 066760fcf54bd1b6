"""Routed cost of the swaps inside rebalancing zaps: used by the backtest ledger and the service.

A move of d USD into (out of) a two-token pool swaps |d| / 2 from token0 to token1 (token1 to
token0) before depositing (after withdrawing). Routed one hop over every pool of the pair on
the pool's chain, the swap costs its fees plus price impact against the fee-free mid price;
the executor takes the cheaper of that and the pool's own single-pool quote. A pool alone in
its pair is charged its single-pool cost (`costs.rebalance_cost`): the routed cost's one-pool
case is the economics core's.

Speed: one hop over a pair's pools is a trade across parallel pools. When none of them is
weighted, `route` splits it in closed form (`fast.parallel_split`), so every zap of one call
is priced at once (`_batch`: the same steps as `route`, row by row in arrays); zaps touching a
weighted pool, or with non-finite pool data, go through `swap_cost_usd` one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.economics.invariants import WEIGHTED
from models.routing.fast import parallel_split_many
from models.routing.graph import PoolStates, RoutingError
from models.routing.network import Network
from models.routing.swap_cost import swap_cost_usd

__all__ = ["routed_zap_costs"]

Names = Sequence[str] | np.ndarray  # one name per moved pool

_SPOT = 1e-10  # as `router._SPOT`: a chain within this of the zero-size bound is optimal
_DUST = 1e-6  # as `_flows._DUST`: planned inputs below this share are solver residue


@dataclass(frozen=True)
class _Zaps:
    """The zaps priced together: per zap, its pair's pools as padded edge rows."""

    rows: np.ndarray  # positions of the zaps in the caller's arrays
    amount: np.ndarray  # token_in sold, token units
    usd_out: np.ndarray  # token_out's USD price
    net: Network  # edge arrays (zaps x widest pair), padded edges inert (cap 0)
    valid: np.ndarray  # (zaps x widest pair) real edges


def routed_zap_costs(states: PoolStates, pool_ids: Names, token0: Names, token1: Names,
                     chains: Names, delta_usd: np.ndarray, single_usd: np.ndarray) -> np.ndarray:
    """Swap fee + impact per pool, USD, of each zap routed over the pools in `states`.

    Parameters
    ----------
    states : tradable pool states at the time of the moves.
    pool_ids, token0, token1, chains : the moved pools, aligned with `delta_usd`.
    delta_usd : signed move per pool, USD (> 0 into the pool).
    single_usd : each zap's swap cost through its own pool alone, USD (>= 0).

    Returns
    -------
    Array of USD costs, never above `single_usd`: where a pool is not in `states`, is the
    only pool of its pair there (the one-pool case: its own cost), routing fails, cannot
    absorb the swap or quotes more, the single-pool cost stands.
    """
    delta = np.asarray(delta_usd, float)
    out = np.asarray(single_usd, float).copy()
    if out.shape != delta.shape or len(pool_ids) != len(delta):
        raise ValueError(f"routed_zap_costs: {len(pool_ids)} pools, {delta.shape} moves and "
                         f"{out.shape} single-pool costs must align")
    pairs = _Pairs.of(states)
    todo = [j for j in np.flatnonzero((delta != 0) & (out > 0)).tolist()
            if str(pool_ids[j]) in pairs.held]
    if not todo:
        return out
    zaps, slow = _prepare(states, todo, token0, token1, chains, delta)
    if zaps is not None:
        routed, ok, unsure = _batch(zaps)
        slow += zaps.rows[unsure].tolist()
        take = ok & ~unsure
        j = zaps.rows[take]
        out[j] = np.minimum(out[j], np.maximum(routed[take], 0.0))
    for j in sorted(slow):
        out[j] = _one(states, str(token0[j]), str(token1[j]), str(chains[j]), float(delta[j]),
                      float(out[j]))
    return out


def _one(states: PoolStates, t0: str, t1: str, chain: str, delta: float,
         single: float) -> float:
    """One zap's cost through the general router (`swap_cost_usd`), capped at `single`."""
    sell, buy = (t0, t1) if delta > 0 else (t1, t0)
    try:
        sc = swap_cost_usd(states, sell, buy, 0.5 * abs(delta), max_hops=1, chain=chain)
    except RoutingError:
        return single
    res = sc.route
    if res.amount_in_used >= res.amount_in * (1 - 1e-9) and np.isfinite(sc.routed_usd):
        return min(single, max(sc.routed_usd, 0.0))
    return single


@dataclass(frozen=True)
class _PoolLookup:
    """Per position of the caller's name arrays, against one set of pairs: both tokens priced
    and distinct (``named``), its pair's row (``gid``, -1: none usable), a pair whose pools all
    lack reserves (``stuck``), token0 sorts first (``low0``), the tokens' USD prices."""

    token0: Names
    token1: Names
    chains: Names
    named: np.ndarray
    gid: np.ndarray
    stuck: np.ndarray
    low0: np.ndarray
    usd0: np.ndarray
    usd1: np.ndarray


@dataclass(frozen=True)
class _Pairs:
    """The pairs of one set of pool states: each (chain, token, token) with its usable pools.

    groups : key -> row of `idx`; idx / valid : (pairs x most pools) pool positions, padded;
    low0 : the pool's token0 is the pair's first token (by name); fast : the pair's pools are
    constant-product-like with finite reserves; stuck : pairs whose pools all lack reserves.
    """

    states: PoolStates
    usd: dict[str, float]
    held: frozenset[str]
    groups: dict[tuple[str, str, str], int]
    idx: np.ndarray
    valid: np.ndarray
    low0: np.ndarray
    fast: np.ndarray
    stuck: frozenset[tuple[str, str, str]]
    looked_up: list[_PoolLookup] = field(default_factory=list, compare=False, repr=False)

    def lookup(self, token0: Names, token1: Names, chains: Names) -> _PoolLookup:
        """What :func:`_prepare` reads of each position of these name arrays, made once per
        set of arrays (the books of one bar pass the market's same arrays)."""
        for kept in self.looked_up:
            if kept.token0 is token0 and kept.token1 is token1 and kept.chains is chains:
                return kept
        t0, t1, ch = (np.asarray(x).astype(str) for x in (token0, token1, chains))
        lo, hi = np.where(t0 < t1, t0, t1), np.where(t0 < t1, t1, t0)
        keys = list(zip(ch.tolist(), lo.tolist(), hi.tolist(), strict=True))
        priced = [np.array([t in self.usd for t in x.tolist()], bool) for x in (t0, t1)]
        usd0, usd1 = (np.array([self.usd.get(t, np.nan) for t in x.tolist()], float)
                      for x in (t0, t1))
        out = _PoolLookup(
            token0=token0, token1=token1, chains=chains,
            named=priced[0] & priced[1] & (t0 != t1),
            gid=np.array([self.groups.get(k, -1) for k in keys], int),
            stuck=np.array([k in self.stuck for k in keys], bool), low0=t0 < t1,
            usd0=usd0, usd1=usd1)
        self.looked_up.insert(0, out)
        del self.looked_up[2:]
        return out

    @classmethod
    def of(cls, states: PoolStates) -> _Pairs:
        """The pairs of `states`, built once and kept for the last few states."""
        for kept in _KEPT:
            if kept.states is states:
                return kept
        r0, r1 = states.reserves()
        t0, t1 = states.token0.astype(str), states.token1.astype(str)
        lo, hi = np.where(t0 < t1, t0, t1), np.where(t0 < t1, t1, t0)
        keys = list(zip(states.chain.astype(str).tolist(), lo.tolist(), hi.tolist(), strict=True))
        ok = (t0 != t1) & (r0 > 0) & (r1 > 0)
        members: dict[tuple[str, str, str], list[int]] = {}
        for i in np.flatnonzero(ok).tolist():
            members.setdefault(keys[i], []).append(i)
        stuck = {keys[i] for i in np.flatnonzero(~ok & (t0 != t1)).tolist()}
        idx = np.zeros((len(members), max((len(v) for v in members.values()), default=0)), int)
        valid = np.zeros(idx.shape, bool)
        for g, pools in enumerate(members.values()):
            idx[g, : len(pools)], valid[g, : len(pools)] = pools, True
        low = np.array([k[1] for k in members], object)
        finite = (np.isfinite(r0) & np.isfinite(r1) & (states.fee_tier >= 0)
                  & (states.fee_tier < 1) & (states.protocol != WEIGHTED))
        out = cls(states=states, usd=states.token_usd(), held=frozenset(states.pool_id.tolist()),
                  groups={k: g for g, k in enumerate(members)}, idx=idx, valid=valid,
                  low0=states.token0[idx] == low[:, None] if len(low) else valid,
                  fast=(finite[idx] | ~valid).all(axis=1), stuck=frozenset(stuck - set(members)))
        _KEPT.insert(0, out)
        del _KEPT[4:]
        return out


_KEPT: list[_Pairs] = []  # the pairs of the last states seen (the books of one bar share them)


def _prepare(states: PoolStates, todo: list[int], token0: Names, token1: Names,
             chains: Names, delta: np.ndarray) -> tuple[_Zaps | None, list[int]]:
    """The zaps that can be priced in arrays, and the positions left to the general router.

    A zap whose tokens are not named exactly as in `states`, or whose pair has a weighted pool
    or non-finite reserves, goes to the router; a pair without pools on the chain, a pair whose
    only usable pool is the zap's own (the one-pool case), or a sale that is not a finite
    positive amount is not routed (the single-pool cost stands).
    """
    pairs = _Pairs.of(states)
    pk = pairs.lookup(token0, token1, chains)
    at = np.asarray(todo, int)
    named, gid = pk.named[at], pk.gid[at]  # not named: the router resolves the names
    amount = 0.5 * np.abs(delta[at])
    size = np.append(pairs.valid.sum(axis=1), 0)  # usable pools per pair; gid -1 reads 0
    lone = size[gid] == 1
    # else no route: the single-pool cost stands
    priced = named & np.isfinite(amount) & (amount > 0) & ~lone
    fast = priced & (gid >= 0) & pairs.fast[np.maximum(gid, 0)]
    slow = at[~named | (priced & ~fast & ((gid >= 0) | pk.stuck[at]))].tolist()
    if not fast.any():
        return None, slow
    into = (delta[at] > 0)[fast]  # sells token0 for token1
    rows = at[fast]
    low0, usd0, usd1 = pk.low0[rows], pk.usd0[rows], pk.usd1[rows]
    net, valid = _edges(pairs, gid[fast], np.where(into, low0, ~low0))
    return _Zaps(rows, amount[fast] / np.where(into, usd0, usd1), np.where(into, usd1, usd0),
                 net, valid), slow


def _edges(pairs: _Pairs, gids: np.ndarray, low_sells: np.ndarray
           ) -> tuple[Network, np.ndarray]:
    """Each zap's pair as a row of directed edges (`network._chain_network`, one hop), padded
    with inert edges (no capacity); and which edges are real."""
    states = pairs.states
    r0, r1 = states.reserves()
    c0, c1 = states.caps()
    idx, valid = pairs.idx[gids], pairs.valid[gids]
    fwd = pairs.low0[gids] == low_sells[:, None]  # the pool sells token0 for token1
    pad = ~valid
    net = Network(
        states=states, tokens=[], token_in=0, token_out=1, chain="", order=np.arange(2),
        pool=idx, a=np.zeros_like(idx), b=np.ones_like(idx),
        ra=np.where(pad, 1.0, np.where(fwd, r0[idx], r1[idx])),
        rb=np.where(pad, 1.0, np.where(fwd, r1[idx], r0[idx])),
        gamma=np.where(pad, 1.0, 1.0 - states.fee_tier[idx]),
        cap=np.where(pad, 0.0, np.where(fwd, c1[idx], c0[idx])),
        wa=np.where(fwd, states.weight0[idx], 1.0 - states.weight0[idx]),
        weighted=np.zeros(idx.shape, bool))
    return net, valid


def _batch(z: _Zaps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Routed cost (USD) per zap, whether the pools absorb it, and where to ask the router.

    Row by row the steps of `route` for parallel constant-product pools without gas: the best
    single pool; the spot shortcut when it already earns the zero-size bound; else the closed
    form split settled on the pool curves, replaced by the single pool when it gets less.
    """
    net, a, valid = z.net, z.amount, z.valid
    n = len(a)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        got = np.where(valid, net.out(np.broadcast_to(a[:, None], valid.shape)), -np.inf)
        best = np.argmax(got, axis=1)
        single_out = np.maximum(got[np.arange(n), best], 0.0)
        spot = np.where(valid, net.marginal(np.zeros(valid.shape)), 0.0)  # `Network.spot`
        bound = np.maximum(spot.max(axis=1), 0.0)
        mid = np.maximum((spot / net.gamma).max(axis=1), 0.0)  # best fee-free spot rate
        cap_in = net.cap_input()
        on_best = np.arange(valid.shape[1])[None, :] == best[:, None]
        # the whole amount through the best pool (settled: its input capped), and the split
        d = np.stack([np.where(on_best, np.minimum(a[:, None], cap_in), 0.0),
                      _settle(parallel_split_many(net.ra, net.rb, net.gamma, cap_in, a, valid),
                              a, cap_in)])
        spent, got_out = d.sum(axis=2), np.cumsum(net.out(d), axis=2)[:, :, -1]
        at_spot = single_out >= a * bound * (1 - _SPOT)
        worse = ~np.isfinite(got_out[1]) | (got_out[1] < single_out)
        use_one = at_spot | worse
        used = np.where(use_one, spent[0], spent[1])
        amount_out = np.where(use_one, got_out[0], got_out[1])
        used = np.where(np.abs(used - a) <= 1e-12 * a, a, used)
        routed = (used * mid - amount_out) * z.usd_out
    unsure = ~((np.isfinite(got) | ~valid).all(axis=1) & np.isfinite(spot).all(axis=1)
               & np.isfinite(mid) & np.isfinite(amount_out) & np.isfinite(used))
    return routed, (used >= a * (1 - 1e-9)) & np.isfinite(routed), unsure


def _settle(plan: np.ndarray, amount: np.ndarray, cap_in: np.ndarray) -> np.ndarray:
    """Inputs per row of planned inputs, as `_flows.settle` spends them over parallel pools:
    the plan (less solver dust) rescaled to spend the amount, each input capped. The output is
    the pools' (`Network.out`), summed in edge order as `settle` adds it."""
    p = np.maximum(plan, 0.0)
    p = np.where(p > _DUST * p.sum(axis=1, keepdims=True), p, 0.0)
    want = p.sum(axis=1)
    d = np.minimum(p * (amount / want)[:, None], cap_in)
    return np.where((want > 0)[:, None], d, 0.0)
