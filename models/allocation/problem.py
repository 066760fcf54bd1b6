"""The allocator's convex program in cvxpy, compiled once per pool set and thread (DPP).

The reference formulation: ``models.allocation.fast`` solves the same program directly and is
tested against this one; the allocator falls back to it when the direct solver does not
converge or another cvxpy solver is configured.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

__all__ = ["ProblemInputs", "ConvexAllocator", "cached_allocator", "SolveResult"]

_OK = ("optimal", "optimal_inaccurate")


@dataclass
class ProblemInputs:
    """Numeric coefficients of one allocation, all per unit of capital (arrays over pools).

    fee_lin : fee rate x fee multiplier per horizon (marginal income of the first dollar).
    fee_conc : fee_yield x TVL / capital (the dilution curvature: income = fee_lin w - fee_conc t,
        t >= z^2 / (1 + z), z = k w).
    k : fee multiplier x capital / TVL (our liquidity relative to the pool's per unit weight).
    lin : LVR + stress loss + risk aversion x downside, per unit weight.
    cost_lin : fee-tier cost per unit of weight moved; cost_quad : impact per unit weight^2.
    prev : current weights; lo, hi : bounds; token_cap : per-token cap vector.
    """

    fee_lin: np.ndarray
    fee_conc: np.ndarray
    k: np.ndarray
    lin: np.ndarray
    cost_lin: np.ndarray
    cost_quad: np.ndarray
    prev: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    token_cap: np.ndarray
    max_turnover: float
    max_deploy: float


@dataclass
class SolveResult:
    """Solver outcome: weights (None on failure), status text and solve time in seconds."""

    weights: np.ndarray | None
    status: str
    seconds: float


class ConvexAllocator:
    """Maximise diluted fees - LVR - stress - risk - trading cost over weights for a pool set.

    Parameters
    ----------
    incidence : (tokens x pools) 0/1 matrix, pool j holds token i (for per-token caps).
    """

    def __init__(self, incidence: np.ndarray) -> None:
        n_tok, n = incidence.shape
        self.n = n
        self.p = {name: cp.Parameter(n, nonneg=nn, name=name) for name, nn in (
            ("fee_lin", False), ("fee_conc", True), ("k", True), ("lin", False),
            ("cost_lin", True), ("cost_quad", True), ("prev", False), ("lo", False),
            ("hi", False))}
        self.token_cap = cp.Parameter(n_tok, nonneg=True, name="token_cap")
        self.turnover = cp.Parameter(nonneg=True, name="turnover")
        self.deploy = cp.Parameter(nonneg=True, name="deploy")
        p = self.p
        w, z, t = cp.Variable(n, name="w"), cp.Variable(n, name="z"), cp.Variable(n, name="t")
        d, u = cp.Variable(n, name="d"), cp.Variable(n, name="u")
        cons = [
            z == cp.multiply(p["k"], w), d == w - p["prev"], u >= d, u >= -d,
            w >= p["lo"], w <= p["hi"], cp.sum(w) <= self.deploy, cp.sum(u) <= self.turnover,
            # t >= z^2 / (1 + z) as a rotated cone: ||(2z, t - 1 - z)|| <= t + 1 + z
            cp.SOC(t + 1 + z, cp.vstack([2 * z, t - 1 - z]), axis=0),
        ]
        if n_tok:
            cons.append(incidence @ w <= self.token_cap)
        obj = (p["fee_lin"] @ w - p["fee_conc"] @ t - p["lin"] @ w - p["cost_lin"] @ u
               - p["cost_quad"] @ cp.square(d))
        self.problem = cp.Problem(cp.Maximize(obj), cons)
        if not self.problem.is_dpp():  # pragma: no cover - structural guard
            raise RuntimeError("allocation problem is not DPP")
        self.w = w

    def solve(self, x: ProblemInputs, solver: str = "CLARABEL") -> SolveResult:
        """Set parameters from `x` and solve; weights are None unless the status is optimal."""
        scale = max(float(np.max(np.abs(np.concatenate(
            [x.fee_lin, x.lin, x.cost_lin]))) if self.n else 0.0), 1e-12)
        vals = {"fee_lin": x.fee_lin / scale, "fee_conc": x.fee_conc / scale, "k": x.k,
                "lin": x.lin / scale, "cost_lin": x.cost_lin / scale,
                "cost_quad": x.cost_quad / scale, "prev": x.prev, "lo": x.lo, "hi": x.hi}
        bad = [name for name, v in vals.items() if not np.isfinite(np.asarray(v, float)).all()]
        if bad:
            return SolveResult(None, f"non-finite coefficients: {', '.join(bad)}", 0.0)
        for name, v in vals.items():
            self.p[name].value = np.asarray(v, float)
        self.token_cap.value = np.asarray(x.token_cap, float)
        self.turnover.value = float(x.max_turnover)
        self.deploy.value = float(x.max_deploy)
        try:
            self.problem.solve(solver=solver)
        except (cp.error.SolverError, ValueError, ArithmeticError) as exc:
            return SolveResult(None, f"{solver} error: {exc}".strip(), 0.0)
        stats = self.problem.solver_stats
        secs = float(getattr(stats, "solve_time", 0.0) or 0.0)
        status = str(self.problem.status)
        if status not in _OK or self.w.value is None:
            return SolveResult(None, f"{solver} status {status}", secs)
        w = np.clip(np.asarray(self.w.value, float), x.lo, x.hi)
        return SolveResult(np.clip(w, 0.0, None), status, secs)


_LOCAL = threading.local()  # one compiled problem per thread: cvxpy problems are not shared
_CACHE_SIZE = 8


def cached_allocator(pools: tuple[str, ...], tokens: tuple[tuple[str, ...], ...],
                     incidence: np.ndarray) -> ConvexAllocator:
    """Compiled problem for a pool set and its tokens, from this thread's small LRU cache."""
    cache: OrderedDict[tuple[tuple[str, ...], tuple[tuple[str, ...], ...]], ConvexAllocator]
    cache = getattr(_LOCAL, "cache", None) or OrderedDict()
    _LOCAL.cache = cache
    key = (pools, tokens)
    hit = cache.get(key)
    if hit is not None:
        cache.move_to_end(key)
        return hit
    alloc = ConvexAllocator(incidence)
    cache[key] = alloc
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
    return alloc
