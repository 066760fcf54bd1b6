"""Convex LP capital allocator: maximise the expected P&L the backtest books, net of every cost.

Per pool, for a position of x = w E USD (E the current equity) held over one horizon, priced
with the economics core exactly as the backtest books it:

    fees     diluted_fees(f T, A, m x, pi)       f fee yield (mean), T TVL, A active liquidity
                                                  (full-range USD), m our liquidity per USD,
                                                  pi expected share of time in range
    IL       il x                                 expected LP minus HODL value per USD: the `il`
                                                  forecast, else -lvr_fraction(sigma, H, m, pi)
    stress   -p_eff x stress_loss x x             (0 unless fitted)
    risk     -risk_aversion x fee spread          (0 by default)
    costs    rebalance_cost(dx, depth, fee_tier)  swap fee on half the move + impact + gas

The token-price (market) component is held neutral: the allocator decides where liquidity
earns, not which tokens to hold, so its objective is LP alpha (fees + IL - costs). In the convex
program the fee term is the same function in conic form (t >= z^2 / (1 + z), z = m x / A), and
the impact s^2 / (R + s) is bounded above by s^2 / R; gas, a fixed cost per pool touched, is
applied by pinning every pool whose move does not pay for its gas and minimum trade, then
re-solving. If the solver fails: previous weights when feasible, else capped equal weight;
`fallback_chain` says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from models.allocation.config import AllocatorConfig
from models.allocation.fast import solve_fast
from models.allocation.inputs import AllocationError, Prepared, check_inputs
from models.allocation.pricing import Coefficients, coefficients
from models.allocation.problem import (
    ConvexAllocator,
    ProblemInputs,
    SolveResult,
    cached_allocator,
)
from models.allocation.reasons import explain_columns

_NOISE_USD = 0.01  # moves this small are solver round-off, not decisions

__all__ = ["AllocatorConfig", "Allocation", "AllocationError", "allocate", "allocate_prepared"]


class Allocation:
    """Allocator output.

    weights : target weight per pool (sum <= 1, rest is cash).
    reasons : pool -> one-line explanation with the economics that decided it.
    expected : per pool, USD over the horizon, priced by the economics core: fee, il, lvr,
        stress_loss, gas, swap_cost, cost, net; plus weight, p_eff, fee_yield (diluted fees /
        position, per horizon), apr (the same annualised) and fee_share_source.
    fallback_chain : what went wrong and what was used instead (empty when the solve was clean).

    ``reasons`` and ``expected`` are priced on first access when ``explain`` is given (a
    backtest reads the weights alone).
    """

    def __init__(self, weights: pd.Series, reasons: dict[str, str] | None = None,
                 expected: pd.DataFrame | None = None,
                 fallback_chain: list[str] | None = None, solve_seconds: float = 0.0, *,
                 explain: Callable[[], tuple[dict[str, np.ndarray], dict[str, str]]] | None
                 = None) -> None:
        self.weights = weights
        self.fallback_chain = list(fallback_chain or [])
        self.solve_seconds = solve_seconds
        self._explain = explain
        self._reasons = reasons if reasons is not None or explain else {}
        self._expected = expected if expected is not None or explain else pd.DataFrame()
        self._columns: dict[str, np.ndarray] | None = None

    def _explained(self) -> None:
        """Price the expected P&L and the reasons once."""
        if self._explain is not None:
            self._columns, self._reasons = self._explain()
            self._explain = None

    @property
    def reasons(self) -> dict[str, str]:
        """Pool -> one-line explanation of its weight."""
        self._explained()
        return self._reasons if self._reasons is not None else {}

    @property
    def expected(self) -> pd.DataFrame:
        """Expected USD components per pool over the horizon (see the class doc)."""
        self._explained()
        if self._expected is None and self._columns is not None:
            self._expected = pd.DataFrame(self._columns, index=self.weights.index)
        return self._expected if self._expected is not None else pd.DataFrame()

    @property
    def expected_columns(self) -> dict[str, np.ndarray]:
        """The columns of ``expected`` as arrays in the order of ``weights`` (no frame built)."""
        self._explained()
        if self._columns is None:
            exp = self.expected
            self._columns = {str(c): exp[c].to_numpy() for c in exp.columns}
        return self._columns

    def __getstate__(self) -> dict[str, object]:
        """Pickled with the reasons and expected P&L priced (the pricing closure is not)."""
        self._explained()
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return (f"Allocation(weights={self.weights!r}, fallback_chain={self.fallback_chain!r}, "
                f"solve_seconds={self.solve_seconds!r})")


def _inputs(co: Coefficients, pp: Prepared, cfg: AllocatorConfig,
            pinned: np.ndarray) -> ProblemInputs:
    """Problem coefficients with `pinned` pools fixed at their current weight."""
    prev = pp.prev
    hi = np.where(co.tvl > 0, cfg.max_weight, 0.0)
    hi = np.where(pinned, prev, hi)
    lo = np.where(pinned, prev, 0.0)
    a = co.incidence
    fixed_tok = a @ np.where(pinned, prev, 0.0) if a.size else np.zeros(0)
    token_cap = np.maximum(cfg.max_token_weight, fixed_tok + 1e-12)
    return ProblemInputs(
        fee_lin=co.fee_lin, fee_conc=co.fee_conc, k=co.k, lin=co.lin,
        cost_lin=co.cost_lin / cfg.cost_horizons, cost_quad=co.cost_quad / cfg.cost_horizons,
        prev=prev, lo=lo, hi=hi, token_cap=token_cap, max_turnover=max(cfg.max_turnover, 0.0),
        max_deploy=max(cfg.max_deploy, float(np.where(pinned, prev, 0.0).sum())))


def _feasible(w: np.ndarray, x: ProblemInputs, a: np.ndarray, tol: float = 1e-6) -> str:
    """Empty string if w satisfies bounds, deploy and token caps, else the first violation."""
    if (w < x.lo - tol).any() or (w > x.hi + tol).any():
        return "outside per-pool bounds"
    if w.sum() > x.max_deploy + tol:
        return "sum above max_deploy"
    if a.size and (a @ w > x.token_cap + tol).any():
        return "above a per-token cap"
    return ""


def _equal_weight(x: ProblemInputs, a: np.ndarray, pinned: np.ndarray) -> np.ndarray:
    """Equal weight on eligible pools, capped per pool and per token (pinned pools kept)."""
    free = ~pinned & (x.hi > 0)
    w = np.where(pinned, x.prev, 0.0)
    room = max(x.max_deploy - w.sum(), 0.0)
    if free.any():
        w[free] = np.minimum(room / free.sum(), x.hi[free])
    for _ in range(len(a) + 1):  # scale down the free pools of each over-cap token
        if not a.size:
            break
        over = a @ w - x.token_cap
        if (over <= 1e-12).all():
            break
        i = int(np.argmax(over))
        members = (a[i] > 0) & free
        tot = w[members].sum()
        if tot > 0:
            w[members] *= max(tot - over[i], 0.0) / tot
    return w


def _not_worth(w: np.ndarray, co: Coefficients, pp: Prepared, cfg: AllocatorConfig,
               done: np.ndarray) -> np.ndarray:
    """Pools whose move is below the minimum trade or too small to earn back its gas.

    A move of |dx| USD is worth about |dx| x the pool's first-dollar net return per horizon
    (fees less IL, stress and risk) over the cost horizons, whichever way it goes: a cut frees
    capital that earns about as much elsewhere, so the same scale applies.
    """
    move = np.abs(w - pp.prev) * cfg.capital_usd
    rate = np.abs(co.fee_lin - co.lin)
    small = move < cfg.min_trade_usd
    unpaid = move * rate * cfg.cost_horizons < co.gas
    return ~done & (move > _NOISE_USD) & (small | unpaid)


def _solve(co: Coefficients, pp: Prepared, cfg: AllocatorConfig, pinned: np.ndarray,
           chain: list[str]) -> tuple[np.ndarray | None, np.ndarray, float]:
    """Solve, pin moves that do not pay for themselves, re-solve; (w, snapped, seconds).

    With the default ``cfg.solver`` (CLARABEL) the compiled interior-point solver answers and
    the cvxpy program, the reference it is tested against, is compiled and used only when it
    does not converge. Any other solver name asks for the cvxpy program with that solver.
    """
    reference: list[ConvexAllocator] = []
    compiled = cfg.solver == "CLARABEL"  # the default: the compiled solver answers first

    def solve(pins: np.ndarray) -> SolveResult:
        x = _inputs(co, pp, cfg, pins)
        fast = solve_fast(x, co.incidence) if compiled else SolveResult(None, "", 0.0)
        if fast.weights is not None:
            return fast
        if not reference:
            reference.append(cached_allocator(pp.pools, co.token_key, co.incidence))
        ref = reference[0].solve(x, cfg.solver)
        status = ref.status if ref.weights is not None or not compiled else (
            f"{fast.status}; {ref.status}")
        return SolveResult(ref.weights, status, fast.seconds + ref.seconds)

    res = solve(pinned)
    secs = res.seconds
    if res.weights is None:
        chain.append(f"solver failed: {res.status}")
        return None, np.zeros(len(pinned), bool), secs
    w = res.weights
    snapped = np.zeros(len(w), bool)
    for _ in range(4):
        bad = _not_worth(w, co, pp, cfg, pinned | snapped)
        if not bad.any():
            break
        snapped |= bad
        again = solve(pinned | snapped)
        secs += again.seconds
        if again.weights is None:
            chain.append(f"re-solve after pinning small moves failed ({again.status})")
            w = np.where(snapped, pp.prev, w)
            break
        w = again.weights
    noise = np.abs(w - pp.prev) * cfg.capital_usd <= _NOISE_USD  # solver round-off
    return np.where(snapped | noise, pp.prev, w), snapped, secs


def allocate(forecasts: pd.DataFrame, current_weights: pd.Series | None, meta: pd.DataFrame,
             config: AllocatorConfig | None = None) -> Allocation:
    """Target LP weights per pool from forecasts, current weights and pool metadata.

    Parameters
    ----------
    forecasts : indexed by pool_id: fee_yield (expected pool fees over the horizon / TVL,
        a mean), tvl_usd (USD), volatility (annualised), p_stress (0..1); optional
        fee_yield_q10, il (expected LP value minus HODL value over the horizon per USD
        deposited, usually <= 0; replaces the LVR estimate), in_range (expected share of the horizon
        in range), active_usd (pool active liquidity in full-range USD), liq_per_value (our
        liquidity per USD in full-range units; default: the centred range's efficiency).
    current_weights : current weight per pool (fraction of equity); missing pools count as 0.
    meta : pool metadata (pool_id column or index; protocol, chain, token0, token1, fee_tier).
    config : AllocatorConfig; `capital_usd` must be the current equity.

    Raises
    ------
    AllocationError : malformed inputs (names the pool and field). Solver trouble never raises:
        it falls back and records the chain.
    """
    return allocate_prepared(check_inputs(forecasts, current_weights, meta), config)


def allocate_prepared(pp: Prepared, config: AllocatorConfig | None = None) -> Allocation:
    """Target LP weights from inputs already validated by ``check_inputs`` / ``with_current``.

    What depends only on the forecasts and metadata is priced once per prepared pool set
    (``Prepared.memo``), so deciding again on the same pools costs only the solve.
    """
    cfg = config or AllocatorConfig()
    t0 = time.perf_counter()
    chain = [f"non-finite {f} for {p}: held at current weight" for p, f in pp.frozen.items()]
    if not pp.pools:
        return Allocation(pd.Series(dtype=float), {}, pd.DataFrame(), chain)
    co = coefficients(pp, cfg)
    pinned = np.array([p in pp.frozen for p in pp.pools]) if pp.frozen else np.zeros(
        len(pp.pools), bool)
    w, snapped, _ = _solve(co, pp, cfg, pinned, chain)
    fallback = None
    x = _inputs(co, pp, cfg, pinned)
    if w is None:
        why = _feasible(pp.prev, x, co.incidence)
        if not why and np.abs(pp.prev).sum() > 0:
            w, fallback = pp.prev.copy(), "solver failed: previous weights kept"
            chain.append("previous weights")
        else:
            chain.append(f"previous weights infeasible ({why or 'empty'})")
            w, fallback = _equal_weight(x, co.incidence, pinned), "capped equal weight"
            chain.append("capped equal weight")
    weights = pd.Series(w, index=pp.pool_index(), name="weight")
    final = w
    return Allocation(weights, fallback_chain=chain, solve_seconds=time.perf_counter() - t0,
                      explain=lambda: explain_columns(final, co, pp, cfg, x, snapped, fallback))
