"""Hindsight oracle: one convex plan over every decision, fed the realised outcomes.

The plan chooses USD positions X[k, j] for each decision k and pool j, knowing what each
position actually earned until the next decision, and is a relaxation of what any strategy
executed by the backtest ledger can book:
- value: the position's realised growth (token prices and IL together, re-centring included),
  split into the market move and IL exactly as the ledger splits it bar by bar;
- fees: the pool's realised fees shared by liquidity at our size, z / (1 + z) with z our
  liquidity over the pool's; the ledger shares them bar by bar as the position drifts, and
  the plan uses the fee-weighted mean of those per-bar ratios, which (z / (1 + z) being
  concave) can only overstate the fees;
- costs: every move from the position as it drifted pays at least the zap floor
  (`routing.bounds.zap_cost_floor`: under both the single-pool and the routed charge);
  gas, a fixed cost per pool touched, is left out (it only lowers the ledger's figure);
- caps: the allocator's caps (per pool, per token, deployment, turnover) hold as fractions of
  the plan's own equity at each decision, market moves included (the ledger sizes every
  strategy on its equity, so a strategy whose tokens rallied holds bigger positions); that
  equity is concave in the positions, so the caps stay convex.
The plan's optimum is therefore an upper bound (`Plan.bound`) on the objective of any
strategy that respects the caps at every trade, and its weights are executed by the same
ledger as every strategy. Second-order gaps, stated rather than relaxed: the allocator may
leave a drifted position above a cap when moving it is below the minimum trade or would not
earn back its gas; our liquidity over the pool's is capped at one per USD of position, so a
pool with under about a dollar of active liquidity can have its fee share understated.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import cvxpy as cp
import numpy as np

__all__ = ["OracleInputs", "Plan", "hindsight_plan"]


@dataclass
class OracleInputs:
    """Realised per-decision outcomes, (decisions x pools) arrays unless stated.

    growth : value growth of one USD of position over the holding period (market + IL).
    il : the ledger's IL of one USD of position over the period (value minus HODL, bar by bar).
    pool_fees : the pool's fees over the holding period x share of it in range, USD.
    kz : our liquidity over the pool's per USD of position, fee-weighted over the period.
    cost_lin, cost_quad, cost_depth : the zap floor per pool at the decision
        (floor(s) = lin s + quad s^2 / (depth + s), s = half the move, USD).
    tradable : pools with a usable row at the decision.
    incidence : tokens x pools 0/1 matrix.
    """

    growth: np.ndarray
    il: np.ndarray
    pool_fees: np.ndarray
    kz: np.ndarray
    cost_lin: np.ndarray
    cost_quad: np.ndarray
    cost_depth: np.ndarray
    tradable: np.ndarray
    incidence: np.ndarray


@dataclass
class Plan:
    """The plan's target weights (decisions x pools) and its objective, a fraction of capital.

    bound : the optimum of the relaxation (net return or LP alpha, as planned): no strategy
        within the caps books more. equity : the plan's equity at each decision, USD.
    """

    weights: np.ndarray
    bound: float
    equity: np.ndarray
    status: str


def _cones(a: cp.Expression, b: cp.Expression) -> cp.Constraint:
    """b >= a^2 / (1 + a) elementwise (a, b >= 0), as second-order cones."""
    af, bf = cp.vec(a, order="C"), cp.vec(b, order="C")
    return cp.SOC(bf + 1 + af, cp.vstack([2 * af, bf - 1 - af]), axis=0)


_TANGENTS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)  # points, multiples of the depth


def _tangents(u: cp.Variable, q: cp.Variable, depth: np.ndarray) -> list[cp.Constraint]:
    """q >= the tangents of s^2 / (R + s) at a few swap sizes (s = u / 2, R = depth): a
    polyhedral floor under the convex impact, exact at the tangent points."""
    cons = []
    for f in _TANGENTS:
        s0 = f * depth
        c0, slope = s0 * s0 / (depth + s0), s0 * (2 * depth + s0) / (depth + s0) ** 2
        cons.append(q >= cp.multiply(0.5 * slope, u) + (c0 - slope * s0))
    return cons


def hindsight_plan(o: OracleInputs, capital_usd: float, *, max_weight: float = 0.25,
                   max_token_weight: float = 0.5, max_deploy: float = 1.0,
                   max_turnover: float = 2.0, objective: str = "net") -> Plan:
    """The hindsight-optimal plan over every decision, and the bound it proves.

    Parameters
    ----------
    o : realised outcomes per decision.
    capital_usd : starting capital, USD.
    max_weight, max_token_weight, max_deploy, max_turnover : the allocator's caps, fractions
        of equity.
    objective : "net" (everything the ledger books, token prices included: the bound on net
        return) or "lp_alpha" (fees + IL - costs, token moves left out: the bound on LP alpha).
    """
    if objective not in ("net", "lp_alpha"):
        raise ValueError(f"objective must be 'net' or 'lp_alpha', got {objective!r}")
    caps = (max_weight, max_token_weight, max_deploy, max_turnover)
    try:
        return _solve(o, capital_usd, caps, objective, compound=True)
    except (cp.SolverError, RuntimeError):  # absurd data: equity beyond the solver's range
        pass
    # caps at the starting capital (then on data tamed to sane ranges): a plan, not a bound
    try:
        plan = _solve(o, capital_usd, caps, objective, compound=False)
    except (cp.SolverError, RuntimeError):
        plan = _solve(_tamed(o, capital_usd), capital_usd, caps, objective, compound=False)
    plan.bound = float("nan")
    return plan


def _tamed(o: OracleInputs, capital_usd: float) -> OracleInputs:
    """The outcomes clipped to ranges a solver handles (growth <= 10x, fees <= 10x capital)."""
    return replace(o, growth=np.clip(o.growth, 0.0, 10.0), il=np.clip(o.il, -10.0, 10.0),
                   pool_fees=np.clip(o.pool_fees, 0.0, 10.0 * capital_usd),
                   kz=np.clip(o.kz, 0.0, 1e3 / capital_usd))


def _solve(o: OracleInputs, capital_usd: float, caps: tuple[float, float, float, float],
           objective: str, compound: bool) -> Plan:
    """The plan with caps on its own equity path (`compound`) or on the starting capital."""
    max_weight, max_token_weight, max_deploy, max_turnover = caps
    k, n = o.growth.shape
    scale = float(capital_usd)
    x = cp.Variable((k, n), nonneg=True)  # positions, units of starting capital
    t = cp.Variable((k, n), nonneg=True)  # fee dilution: fee = pool_fees (z - t)
    u = cp.Variable((k, n), nonneg=True)  # |move|
    q = cp.Variable((k, n), nonneg=True)  # impact of the floor (its tangents), capital units
    z = cp.multiply(o.kz * scale, x)
    drift = (cp.vstack([np.zeros((1, n)), cp.multiply(o.growth[:-1], x[:-1])]) if k > 1
             else np.zeros((1, n)))
    d = x - drift
    # the floor's depth; none or absurd depth: no impact (a floor still)
    deep = np.isfinite(o.cost_depth) & (o.cost_depth > 0) & (o.cost_depth < 1e6 * scale)
    depth = np.where(deep, o.cost_depth / scale, 1.0)
    fees = cp.multiply(o.pool_fees / scale, z - t)
    cost = (cp.multiply(0.5 * o.cost_lin, u)
            + cp.multiply(np.where(deep, o.cost_quad, 0.0), q))
    market_il = cp.multiply(o.growth - 1.0, x)
    per = cp.sum(market_il + fees - cost, axis=1)  # net P&L per decision
    alpha = cp.sum(cp.multiply(o.il, x) + fees - cost, axis=1)
    equity = cp.Variable(k)  # at each decision: at most the capital plus the P&L so far
    eq_col = cp.reshape(equity, (k, 1), order="C")
    ones = np.ones((1, n))
    cons = [u >= d, u >= -d, _cones(z, t), *_tangents(u, q, depth), equity[0] <= 1.0,
            x <= cp.multiply(np.where(o.tradable, max_weight, 0.0), eq_col @ ones),
            cp.sum(x, axis=1) <= max_deploy * equity,
            cp.sum(u, axis=1) <= max_turnover * equity]
    if k > 1 and compound:
        cons.append(equity[1:] <= equity[:-1] + per[:-1])
    elif k > 1:
        cons.append(equity[1:] <= 1.0)
    if o.incidence.size:
        cons.append(x @ o.incidence.T <= max_token_weight * (
            eq_col @ np.ones((1, o.incidence.shape[0]))))
    goal = cp.sum(per) if objective == "net" else cp.sum(alpha)
    prob = cp.Problem(cp.Maximize(goal), cons)
    with warnings.catch_warnings():  # a reduced-accuracy plan is still checked by the ledger
        warnings.simplefilter("ignore", UserWarning)
        prob.solve(solver="CLARABEL")
    if x.value is None or prob.value is None:
        raise RuntimeError(f"hindsight plan failed: {prob.status}")
    xs = np.clip(np.asarray(x.value), 0.0, None)
    eq = np.maximum(np.asarray(equity.value, float).reshape(-1), 1e-6)
    value = float(prob.value)
    if prob.status != cp.OPTIMAL:  # a reduced-accuracy stop: widen by its gap tolerance
        value += _REDUCED_GAP * (abs(value) + 1.0)
    return Plan(weights=xs / eq[:, None], bound=value, equity=eq * scale,
                status=str(prob.status))


# CLARABEL stops at reduced accuracy with a duality gap within 5e-5 (absolute and relative)
# and residuals within 1e-4; a bound from such a stop is widened by this much
_REDUCED_GAP = 1e-4
