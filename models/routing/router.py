"""route(): the optimal split of one trade across pools and paths, with its price and impact.

Method: parallel constant-product pools (every candidate pool joins token_in to token_out
directly and none is weighted) are split exactly in closed form (`fast.parallel_split`);
anything else (multi-hop paths, weighted pools) is solved as the convex program of optimal
CFMM routing, handed to CLARABEL directly (`conic.solve_conic`; the cvxpy build of the same
program, `solver.solve_convex`, is the reference and the second try when it fails), its
inputs then settled exactly on the pool curves.
The result is never worse than the best single chain of pools (one pool per hop): if a solver
fails or its split comes out below that chain, the chain is returned and `status` says so.

Gas (optional): a fixed USD cost per pool touched makes the problem non-convex; the heuristic
solves without it, drops the used pool whose surplus over trading at the marginal token values
is smallest and below its gas, re-solves, and repeats until every pool used earns its gas;
the best single chain (with its gas) is the fallback when it nets more.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from models.economics.costs import gas_usd as gas_table
from models.routing._flows import Flows, best_chain, decompose, mid_rate, settle, spot_bound
from models.routing.conic import solve_conic
from models.routing.fast import parallel_split
from models.routing.graph import PoolStates, RoutingError
from models.routing.network import Network, build_network
from models.routing.solver import solve_convex

__all__ = ["route", "route_network", "RouteResult", "OPTIMAL", "CAPACITY", "SINGLE_CHAIN"]

OPTIMAL = "optimal"
CAPACITY = "capacity_exhausted"  # the pools cannot absorb the whole amount
SINGLE_CHAIN = "single_chain"  # solver failed or fell short: the best single chain instead
_SOLVED = ("exact", "optimal", "optimal_inaccurate")
_TOL = 1e-6  # relative shortfall against the single chain still read as solver round-off
_SPOT = 1e-10  # relative gap to the zero-size bound below which a single chain is optimal


@dataclass
class RouteResult:
    """The routed trade (amounts in token units; prices token_out per token_in).

    amount_out : received. best_single_pool_out : received through the best single pool (or,
    where no pool joins the two tokens, the best chain of one pool per hop), ids in
    best_single_pool_ids. mid_price : best fee-free zero-size rate. effective_price :
    amount_out / amount_in_used. price_impact : 1 - effective / mid (fees included).
    splits : [{path, pool_ids, amount_in, amount_out}] per path; pool_flows : per pool.
    status : "optimal" | "capacity_exhausted" | "single_chain"; method : "closed_form" |
    "convex" | "spot" (a trade too small to move prices: the best chain, within 1e-10 of
    the zero-size bound no split can beat);
    solver_status : the solver's own status ("exact" without a solver).
    gas_usd : gas of the pools touched (0 when gas is not priced); amount_out_net : amount_out
    less that gas in token_out (None without gas); dropped_for_gas : pools left out.
    """

    token_in: str
    token_out: str
    chain: str
    amount_in: float
    amount_in_used: float
    amount_out: float
    best_single_pool_out: float
    best_single_pool_ids: list[str]
    mid_price: float
    effective_price: float
    price_impact: float
    splits: list[dict[str, Any]]
    pool_flows: list[dict[str, Any]]
    status: str
    method: str
    solver_status: str
    gas_usd: float = 0.0
    amount_out_net: float | None = None
    dropped_for_gas: list[str] = field(default_factory=list)
    solve_ms: float = 0.0

    @property
    def saved_vs_single(self) -> float:
        """Extra output over the best single pool, as a fraction of the trade at mid price."""
        den = self.amount_in * self.mid_price
        return (self.amount_out - self.best_single_pool_out) / den if den > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (the `lpa route --json` and service payload)."""
        return {**asdict(self), "saved_vs_single": self.saved_vs_single}


def route_network(net: Network, amount: float, usd: np.ndarray) -> tuple[Flows, str, str]:
    """Settled optimal flows of a network (no gas), the method used and the solver status."""
    chain_out, chain = best_chain(net, amount)
    if chain_out >= amount * spot_bound(net) * (1 - _SPOT):
        # no split can beat every pool's zero-size rate, and the best chain already gets it:
        # the trade is too small to move prices, a solver would only see round-off
        plan = np.zeros(net.n)
        plan[chain] = amount
        return settle(net, plan, amount), "spot", "exact"
    if net.direct and not net.weighted.any():
        d, _ = parallel_split(net.ra, net.rb, net.gamma, net.cap_input(), amount)
        return settle(net, d, amount), "closed_form", "exact"
    sol = solve_conic(net, amount, usd)
    flows = settle(net, sol.inputs, amount)
    if sol.status != "optimal":  # the cvxpy build of the same program, as a second opinion
        ref = solve_convex(net, amount, usd)
        other = settle(net, ref.inputs, amount)
        if ref.status in _SOLVED and (sol.status not in _SOLVED
                                      or other.amount_out > flows.amount_out):
            sol, flows = ref, other
    return flows, "convex", sol.status


def _gas_per_edge(net: Network, gas: float | Mapping[str, float] | None) -> np.ndarray:
    """Gas in USD of touching each edge's pool."""
    if gas is None:
        return np.zeros(net.n)
    if isinstance(gas, Mapping):
        return np.asarray(gas_table(net.states.chain[net.pool].astype(str), gas), float)
    return np.full(net.n, float(gas))


def route(pools: PoolStates, token_in: str, token_out: str, amount_in: float, *,
          gas_usd: float | Mapping[str, float] | None = None, max_hops: int = 2,
          chain: str | None = None) -> RouteResult:
    """Route `amount_in` of token_in to token_out across pools and paths, maximising output.

    Parameters
    ----------
    pools : pool states (`PoolStates.from_panel`).
    token_in, token_out : token symbols (case-insensitive when unambiguous).
    amount_in : amount to sell, token_in units (> 0).
    gas_usd : USD per pool touched (flat figure, or chain -> USD table such as
        `costs.GAS_USD`); None: gas not priced.
    max_hops : longest path in pools (2: direct pools and one intermediate token).
    chain : chain to trade on (None: the only one, or the one with the most TVL on the route).

    Returns
    -------
    RouteResult. Raises UnknownTokenError (naming the token, listing the known ones),
    NoRouteError, or RoutingError for a bad amount.
    """
    amount = float(amount_in)
    if not np.isfinite(amount) or amount <= 0:
        raise RoutingError(f"amount_in must be a finite amount > 0 of {token_in}, got "
                           f"{amount_in!r}")
    t0 = time.perf_counter()
    net = build_network(pools, token_in, token_out, max_hops=max_hops, chain=chain)
    prices = pools.token_usd()
    usd = np.array([prices[t] for t in net.tokens])
    usd_out = usd[net.token_out]
    gas_e = _gas_per_edge(net, gas_usd)
    flows, method, status = route_network(net, amount, usd)
    dropped: list[str] = []
    work = net
    while gas_usd is not None:
        used = flows.inputs > 0
        short = flows.surplus(work) * usd_out - gas_e
        bad = used & (short < 0)
        if not bad.any() or used.sum() <= 1:
            break
        worst = int(np.flatnonzero(bad)[np.argmin(short[bad])])
        dropped.append(str(work.pool_ids[worst]))
        drop = np.zeros(work.n, bool)
        drop[worst] = True
        work, gas_e = work.without(drop), gas_e[~drop]
        flows, method, status = route_network(work, amount, usd)
    single_out, chain_edges = best_chain(net, amount)
    single_ids = [str(net.pool_ids[e]) for e in chain_edges]
    single_gas = float(_gas_per_edge(net, gas_usd)[chain_edges].sum())
    touched = float(gas_e[flows.inputs > 0].sum())
    outcome = OPTIMAL if flows.used_in >= amount * (1 - 1e-9) else CAPACITY
    routed_net = flows.amount_out - touched / usd_out
    single_net = single_out - single_gas / usd_out
    if not np.isfinite(flows.amount_out) or routed_net < single_net:
        # the chain is still the answer, not a fallback, when the solver agrees to within its
        # tolerance, or when gas makes touching one pool per hop the better heuristic choice
        agreed = status in _SOLVED and (gas_usd is not None
                                        or routed_net >= single_net - _TOL * abs(single_net))
        left = {str(p) for p in work.pool_ids[flows.inputs > 0]} - set(single_ids)
        flows = _single(net, chain_edges, amount)
        work, touched = net, single_gas
        dropped = dropped + sorted(left) if gas_usd is not None else []
        outcome = (OPTIMAL if flows.used_in >= amount * (1 - 1e-9) else CAPACITY) if agreed \
            else SINGLE_CHAIN
    if abs(flows.used_in - amount) <= 1e-12 * amount:
        flows.used_in = amount  # the whole amount, not its float residue
    mid = mid_rate(net)
    eff = flows.amount_out / flows.used_in if flows.used_in > 0 else 0.0
    return RouteResult(
        token_in=net.tokens[net.token_in], token_out=net.tokens[net.token_out],
        chain=net.chain, amount_in=amount, amount_in_used=flows.used_in,
        amount_out=flows.amount_out, best_single_pool_out=single_out,
        best_single_pool_ids=single_ids, mid_price=mid, effective_price=eff,
        price_impact=1.0 - eff / mid if mid > 0 else float("nan"),
        splits=decompose(work, flows), pool_flows=_pool_flows(work, flows), status=outcome,
        method=method, solver_status=status, gas_usd=touched if gas_usd is not None else 0.0,
        amount_out_net=(flows.amount_out - touched / usd_out) if gas_usd is not None else None,
        dropped_for_gas=dropped, solve_ms=(time.perf_counter() - t0) * 1e3)


def _single(net: Network, edges: list[int], amount: float) -> Flows:
    """Flows of the whole amount through one chain of edges."""
    plan = np.zeros(net.n)
    plan[edges] = amount  # settle forwards what arrives, so only the chain's first input counts
    return settle(net, plan, amount)


def _pool_flows(net: Network, flows: Flows) -> list[dict[str, Any]]:
    """Per pool used: tokens, amounts, marginal rate at the solution, cap reached."""
    m = net.marginal(flows.inputs)
    rows = []
    for e in np.flatnonzero(flows.inputs > 0):
        rows.append({"pool_id": str(net.pool_ids[e]), "token_in": net.tokens[int(net.a[e])],
                     "token_out": net.tokens[int(net.b[e])],
                     "amount_in": float(flows.inputs[e]), "amount_out": float(flows.outputs[e]),
                     "marginal_rate": float(m[e]), "at_capacity": bool(flows.capped[e])})
    return rows  # edges are listed in the network's topological order of their input token
