"""Hindsight oracle: one convex plan over every decision, fed the realised outcomes.

The plan chooses USD positions X[k, j] for each decision k and pool j, knowing what each
position will actually earn until the next decision: its value growth (token prices and IL
together, re-centring included), the pool's fees shared by liquidity at our size, and the cost
of every move (swap fee on half the move, impact bounded by s^2 / R) from the position as it
drifted. It respects the allocator's caps (per pool, per token, deployment, turnover) at the
equity the plan itself reaches (two passes: plan at the starting capital, then at the plan's
own equity path). Gas, a fixed cost per pool touched, is left to the executing ledger, which
also books every cost exactly; the oracle's weights are executed by the same backtest ledger
as every strategy, so what bounds the strategies is scored like them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

__all__ = ["OracleInputs", "hindsight_plan"]


@dataclass
class OracleInputs:
    """Realised per-decision outcomes, (decisions x pools) arrays unless stated.

    growth : value growth of one USD of position over the holding period (market + IL).
    hodl : growth of the tokens that USD held at the start (the market component).
    pool_fees : the pool's fees over the holding period x share of it in range, USD.
    active : pool active liquidity at the start of the period, full-range USD.
    m : our liquidity per USD of position (full-range units).
    depth : swap depth at the start of the period, USD; fee_tier : per pool.
    tradable : pools with a usable row at the decision.
    incidence : tokens x pools 0/1 matrix.
    """

    growth: np.ndarray
    hodl: np.ndarray
    pool_fees: np.ndarray
    active: np.ndarray
    m: np.ndarray
    depth: np.ndarray
    fee_tier: np.ndarray
    tradable: np.ndarray
    incidence: np.ndarray


def _solve(o: OracleInputs, capital: np.ndarray, max_weight: float, max_token_weight: float,
           max_deploy: float, max_turnover: float,
           market: bool) -> tuple[np.ndarray, np.ndarray]:
    """Planned positions (USD) and the plan's P&L per decision at a given capital path."""
    k, n = o.growth.shape
    scale = float(capital.max())
    cap = capital[:, None] / scale
    x = cp.Variable((k, n), nonneg=True)
    t = cp.Variable((k, n), nonneg=True)
    u = cp.Variable((k, n), nonneg=True)
    safe_a = np.where(o.active > 0, o.active, 1.0)
    kz = np.where(o.active > 0, o.m * scale / safe_a, 0.0)
    z = cp.multiply(kz, x)
    drift = cp.vstack([np.zeros((1, n)), cp.multiply(o.growth[:-1], x[:-1])]) if k > 1 \
        else np.zeros((1, n))
    d = x - drift
    fees_n = o.pool_fees / scale
    depth = np.where(o.depth > 0, o.depth, np.inf) / scale
    value_term = o.growth - 1.0 if market else o.growth - o.hodl
    gain = (cp.sum(cp.multiply(value_term, x)) + cp.sum(cp.multiply(fees_n, z - t))
            - cp.sum(cp.multiply(0.5 * o.fee_tier[None, :], u))
            - cp.sum(cp.multiply(1.0 / (4.0 * depth), cp.square(d))))
    zf, tf = cp.vec(z, order="C"), cp.vec(t, order="C")
    cons = [u >= d, u >= -d,
            x <= cp.multiply(np.where(o.tradable, max_weight, 0.0), np.repeat(cap, n, 1)),
            cp.sum(x, axis=1) <= max_deploy * cap[:, 0],
            cp.sum(u, axis=1) <= max_turnover * cap[:, 0],
            cp.SOC(tf + 1 + zf, cp.vstack([2 * zf, tf - 1 - zf]), axis=0)]
    if o.incidence.size:
        cons.append(x @ o.incidence.T <= max_token_weight * np.repeat(
            cap, o.incidence.shape[0], 1))
    prob = cp.Problem(cp.Maximize(gain), cons)
    with warnings.catch_warnings():  # a reduced-accuracy plan is still checked by the ledger
        warnings.simplefilter("ignore", UserWarning)
        prob.solve(solver="CLARABEL")
    if x.value is None:
        raise RuntimeError(f"hindsight plan failed: {prob.status}")
    xs = np.clip(np.asarray(x.value), 0.0, None) * scale
    prev = np.vstack([np.zeros((1, n)), xs[:-1] * o.growth[:-1]])
    zz = xs * kz / scale
    pnl = (value_term * xs + o.pool_fees * zz / (1.0 + zz)
           - 0.5 * o.fee_tier * np.abs(xs - prev)
           - (0.5 * np.abs(xs - prev)) ** 2 / (0.5 * np.abs(xs - prev) + o.depth)).sum(1)
    return xs, pnl


def hindsight_plan(o: OracleInputs, capital_usd: float, *, max_weight: float = 0.25,
                   max_token_weight: float = 0.5, max_deploy: float = 1.0,
                   max_turnover: float = 2.0, passes: int = 2,
                   objective: str = "net") -> np.ndarray:
    """Target weights per decision (decisions x pools) of the hindsight-optimal plan.

    Parameters
    ----------
    o : realised outcomes per decision.
    capital_usd : starting capital, USD.
    max_weight, max_token_weight, max_deploy, max_turnover : the allocator's caps, fractions
        of equity.
    passes : plan solves; each after the first uses the previous plan's equity path.
    objective : "net" (everything the ledger books, token prices included: the bound on net
        return) or "lp_alpha" (fees + IL - costs, token moves left out: the bound on LP alpha).
    """
    if objective not in ("net", "lp_alpha"):
        raise ValueError(f"objective must be 'net' or 'lp_alpha', got {objective!r}")
    k = o.growth.shape[0]
    capital = np.full(k, float(capital_usd))
    xs = np.zeros(o.growth.shape)
    for _ in range(max(1, passes)):
        xs, pnl = _solve(o, capital, max_weight, max_token_weight, max_deploy, max_turnover,
                         objective == "net")
        capital = np.maximum(capital_usd + np.concatenate([[0.0], np.cumsum(pnl)[:-1]]),
                             1e-6 * capital_usd)
    return xs / capital[:, None]
