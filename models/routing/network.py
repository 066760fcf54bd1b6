"""The routing network of one trade: directed pool edges from token_in towards token_out.

A pool is an edge between its two tokens. For a trade token_in -> token_out with at most
`max_hops` hops, each token gets its hop distance from token_in (d_in) and to token_out
(d_out) over the pools of the chain; a pool may be traded u -> v when a path
token_in ~> u -> v ~> token_out of at most `max_hops` hops exists through it
(d_in(u) + 1 + d_out(v) <= max_hops) and the rank d_in - d_out rises from u to v. Ranks rise
along every edge, so the network is acyclic: no trade goes round a loop, a token_out never
leaves, a token_in never comes back. With max_hops = 2 the network holds exactly the direct
pools and the two-hop paths token_in -> X -> token_out.

Each edge swaps token a for token b on virtual reserves (Ra, Rb) with fee factor
gamma = 1 - fee tier, paying at most `cap` of b:
- constant product: out(d) = Rb g d / (Ra + g d), the execution loss of `costs.swap_impact_usd`
  applied to s = g d Rb / Ra at the spot rate;
- weighted (weights wa, wb): out(d) = Rb (1 - (Ra / (Ra + g d))**(wa / wb)).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from models.economics.costs import swap_impact_usd
from models.economics.invariants import WEIGHTED
from models.routing.graph import NoRouteError, PoolStates, RoutingError, UnknownTokenError

__all__ = ["Network", "build_network", "pair_network", "resolve_token"]


def resolve_token(token: str, known: list[str], role: str = "token") -> str:
    """The known token named `token`: exact, else the one case-insensitive match."""
    name = str(token).strip()
    if name in known:
        return name
    hits = [k for k in known if k.lower() == name.lower()]
    if len(hits) == 1:
        return hits[0]
    raise UnknownTokenError(name, known, role)


def _hops(adj: dict[str, set[str]], start: str) -> dict[str, int]:
    """Breadth-first hop distance from `start` over an undirected token graph."""
    dist, todo = {start: 0}, deque([start])
    while todo:
        u = todo.popleft()
        for v in adj.get(u, ()):
            if v not in dist:
                dist[v] = dist[u] + 1
                todo.append(v)
    return dist


@dataclass(frozen=True)
class Network:
    """Directed edges of one trade (arrays aligned per edge) and the tokens they join.

    tokens : token names; `order` lists token indices in topological order.
    pool : index into the PoolStates per edge; a, b : token indices (a is paid in).
    ra, rb : virtual reserves of a and b, token units. gamma : 1 - fee tier.
    cap : most of b the edge pays out (real reserves; inf where unbounded).
    wa : weight of token a (0.5 for constant-product edges). weighted : Balancer edge.
    """

    states: PoolStates
    tokens: list[str]
    token_in: int
    token_out: int
    chain: str
    order: np.ndarray
    pool: np.ndarray
    a: np.ndarray
    b: np.ndarray
    ra: np.ndarray
    rb: np.ndarray
    gamma: np.ndarray
    cap: np.ndarray
    wa: np.ndarray
    weighted: np.ndarray

    @property
    def n(self) -> int:
        """Number of edges."""
        return len(self.pool)

    @cached_property
    def pool_ids(self) -> np.ndarray:
        """Pool id per edge."""
        return self.states.pool_id[self.pool]

    @property
    def direct(self) -> bool:
        """True when every edge joins token_in to token_out (parallel pools)."""
        return bool(np.all((self.a == self.token_in) & (self.b == self.token_out)))

    def without(self, edges: np.ndarray) -> Network:
        """The network minus the edges flagged True."""
        keep = ~np.asarray(edges, bool)
        return Network(self.states, self.tokens, self.token_in, self.token_out, self.chain,
                       self.order, *(getattr(self, k)[keep] for k in (
                           "pool", "a", "b", "ra", "rb", "gamma", "cap", "wa", "weighted")))

    # --- per-edge curves (vectorised; `d` is the amount of a paid in) -------------------
    def out(self, d: np.ndarray) -> np.ndarray:
        """Amount of b received for d of a (capped)."""
        d = np.maximum(np.asarray(d, float), 0.0)
        x = self.gamma * d
        s = x * self.rb / self.ra  # post-fee input at the spot rate, b units
        cp = s - swap_impact_usd(s, self.rb)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = self.wa / (1.0 - self.wa)
            wt = self.rb * -np.expm1(r * (np.log(self.ra) - np.log(self.ra + x)))
        return np.minimum(np.where(self.weighted, wt, cp), self.cap)

    def marginal(self, d: np.ndarray) -> np.ndarray:
        """d out / d input at d (0 once the cap binds)."""
        d = np.maximum(np.asarray(d, float), 0.0)
        z = self.ra + self.gamma * d
        r = self.wa / (1.0 - self.wa)
        cp = self.gamma * self.ra * self.rb / (z * z)
        wt = self.rb * r * self.gamma / self.ra * (self.ra / z) ** (r + 1.0)
        m = np.where(self.weighted, wt, cp)
        return np.where(d >= self.cap_input() * (1.0 - 1e-12), 0.0, m)

    def input_for(self, y: np.ndarray) -> np.ndarray:
        """Input of a that buys y of b (inf where y reaches the virtual reserve Rb)."""
        y = np.asarray(y, float)
        rb, ra, g = self.rb, self.ra, self.gamma
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            frac = np.where(y < rb, y / rb, 0.0)
            r = self.wa / (1.0 - self.wa)
            cp = y * ra / (g * (rb - y))
            wt = ra * np.expm1(-np.log1p(-frac) / r) / g
            res = np.where(self.weighted, wt, cp)
        return np.where(y < rb, np.maximum(res, 0.0), np.inf)

    def cap_input(self) -> np.ndarray:
        """Input of a at which the output reaches the cap (inf where never)."""
        return self.input_for(np.minimum(self.cap, self.rb))

    def spot(self) -> np.ndarray:
        """Zero-size rate, b per a, fee included."""
        return self.marginal(np.zeros(self.n))

    def fee_free_spot(self) -> np.ndarray:
        """Zero-size rate, b per a, before the fee (the pool's mid price)."""
        return self.spot() / self.gamma


def build_network(states: PoolStates, token_in: str, token_out: str, *, max_hops: int = 2,
                  chain: str | None = None) -> Network:
    """The directed edges a trade token_in -> token_out may use within `max_hops` hops.

    Parameters
    ----------
    states : pool states (`PoolStates`).
    token_in, token_out : token symbols (case-insensitive when unambiguous).
    max_hops : longest path, pools (>= 1).
    chain : chain to trade on; None: the only chain, or the chain whose usable pools hold the
        most TVL (pools of different chains never trade together).

    Raises
    ------
    UnknownTokenError naming the token and listing the known ones; NoRouteError when no path
    of at most `max_hops` pools joins the tokens; RoutingError for a bad hop limit.
    """
    if int(max_hops) != max_hops or max_hops < 1:
        raise RoutingError(f"max_hops must be a whole number >= 1, got {max_hops!r}")
    known = states.tokens
    tin = resolve_token(token_in, known, "input token")
    tout = resolve_token(token_out, known, "output token")
    if tin == tout:
        raise RoutingError(f"input and output token are both {tin!r}; nothing to route")
    chains = sorted(set(states.chain.tolist()))
    if chain is not None and chain not in chains:
        raise RoutingError(f"unknown chain {chain!r}; chains with pool states: {chains}")
    best: tuple[float, Network] | None = None
    for ch in [chain] if chain is not None else chains:
        net = _chain_network(states, tin, tout, int(max_hops), str(ch))
        if net is not None:
            tvl = float(states.tvl_usd[np.unique(net.pool)].sum())
            if best is None or tvl > best[0]:
                best = (tvl, net)
    if best is None:
        where = f"on chain {chain}" if chain is not None else f"on any chain of {chains}"
        raise NoRouteError(f"no path of at most {max_hops} pool(s) from {tin} to {tout} {where}"
                           f"; pools holding {tin}: {_holders(states, tin)}; pools holding "
                           f"{tout}: {_holders(states, tout)}")
    return best[1]


def _holders(states: PoolStates, token: str) -> list[str]:
    """Pool ids holding a token."""
    return states.pool_id[(states.token0 == token) | (states.token1 == token)].tolist()


def _chain_network(states: PoolStates, tin: str, tout: str, max_hops: int,
                   chain: str) -> Network | None:
    """The network on one chain, or None when no short enough path exists there."""
    on = np.flatnonzero(states.chain == chain)
    t0, t1 = states.token0[on].astype(str), states.token1[on].astype(str)
    adj: dict[str, set[str]] = {}
    for u, v in zip(t0.tolist(), t1.tolist(), strict=True):
        if u != v:
            adj.setdefault(u, set()).add(v)
            adj.setdefault(v, set()).add(u)
    d_in, d_out = _hops(adj, tin), _hops(adj, tout)
    if d_in.get(tout, max_hops + 1) > max_hops:
        return None
    inf = max_hops + 1
    names, inv = np.unique(np.concatenate([t0, t1]), return_inverse=True)  # sorted by name
    i0, i1 = inv[: len(on)], inv[len(on):]
    din = np.array([d_in.get(t, inf) for t in names.tolist()])
    dout = np.array([d_out.get(t, inf) for t in names.tolist()])
    rank = din - dout
    r0, r1 = (r[on] for r in states.reserves())
    c0, c1 = (c[on] for c in states.caps())
    w0 = states.weight0[on]
    ok = (i0 != i1) & (r0 > 0) & (r1 > 0)

    def allowed(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return ok & (din[x] + 1 + dout[y] <= max_hops) & (rank[x] < rank[y])

    fw, bw = allowed(i0, i1), allowed(i1, i0)
    pool = np.concatenate([on[fw], on[bw]])
    a, b = np.concatenate([i0[fw], i1[bw]]), np.concatenate([i1[fw], i0[bw]])
    cols = [np.concatenate(p) for p in ((r0[fw], r1[bw]), (r1[fw], r0[bw]), (c1[fw], c0[bw]),
                                         (w0[fw], 1.0 - w0[bw]))]
    # edges in topological order of their tokens (rank, then name), then by pool
    order = np.lexsort((pool, b, rank[b], a, rank[a]))
    pool, a, b = pool[order], a[order], b[order]
    ra, rb, cap, wa = (c[order] for c in cols)
    used = np.unique(np.concatenate([a, b]))
    used = used[np.lexsort((used, rank[used]))]
    idx = np.full(len(names), -1)
    idx[used] = np.arange(len(used))
    return Network(
        states=states, tokens=names[used].tolist(), token_in=int(idx[names.tolist().index(tin)]),
        token_out=int(idx[names.tolist().index(tout)]), chain=chain,
        order=np.arange(len(used)), pool=pool, a=idx[a], b=idx[b], ra=ra, rb=rb,
        gamma=1.0 - states.fee_tier[pool], cap=cap, wa=wa,
        weighted=states.protocol[pool] == WEIGHTED)


def pair_network(states: PoolStates, token_in: str, token_out: str) -> Network:
    """Every pool of `states` as a direct edge token_in -> token_out (pools of one pair).

    The fast build for the flow model, which routes many trades over one pair's pools; no
    hop search, no chain choice (the caller passes one chain's pools).
    """
    fwd = states.token0 == token_in
    if not np.all(fwd | (states.token1 == token_in)):
        raise RoutingError(f"pair_network needs pools holding {token_in} and {token_out}; "
                           f"got {states.pool_id.tolist()}")
    r0, r1 = states.reserves()
    c0, c1 = states.caps()
    n = len(states)
    return Network(
        states=states, tokens=[token_in, token_out], token_in=0, token_out=1,
        chain=str(states.chain[0]) if n else "", order=np.arange(2), pool=np.arange(n),
        a=np.zeros(n, int), b=np.ones(n, int), ra=np.where(fwd, r0, r1),
        rb=np.where(fwd, r1, r0), gamma=1.0 - states.fee_tier, cap=np.where(fwd, c1, c0),
        wa=np.where(fwd, states.weight0, 1.0 - states.weight0),
        weighted=states.protocol == WEIGHTED)
