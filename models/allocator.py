"""Convex LP capital allocator: diluted fee income against LVR, stress, risk and trading costs.

Per pool i with weight w (fraction of capital C, x = C w USD), per forecast horizon:

    fees      f T m x / (T + m x)            f fee_yield, T tvl_usd, m v3 fee multiplier
    LVR       sigma^2 / 8 x years x mult x x
    stress    p_eff x stress_loss x x         p_eff = max(p, contagion x max p sharing a token)
    risk      risk_aversion x (f - f_q10)^+ m + |il|) x x
    trading   (fee_tier / 2 |dx| + impact |dx|^2 / (2 T)) / cost_horizons  (half the move
              is swapped; the one-off cost is spread over the expected holding time)

maximised subject to w >= 0, sum w <= 1, w <= max_weight, per-token and turnover caps. Moves
smaller than min_trade_usd are pinned to the current weight and the problem re-solved. If the
solver fails: previous weights when feasible, else capped equal weight; `fallback_chain` says so.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models._alloc_inputs import (
    CONCENTRATED,
    STABLESWAP,
    AllocationError,
    Prepared,
    capital_efficiency,
    check_inputs,
    effective_stress,
    gas_per_pool,
    incidence,
    reason_text,
)
from models._alloc_problem import ConvexAllocator, ProblemInputs, cached_allocator

_NOISE_USD = 0.01  # moves this small are solver round-off, not decisions

__all__ = ["AllocatorConfig", "Allocation", "AllocationError", "ConvexAllocator", "allocate"]


@dataclass(frozen=True)
class AllocatorConfig:
    """Allocator settings (fractions of capital unless stated).

    Parameters
    ----------
    risk_aversion : weight of the downside term (fee quantile spread + expected IL).
    max_weight : per-pool cap; max_token_weight : cap on the summed weight of pools holding a
        token; max_turnover : cap on sum |w - w_prev| per decision; max_deploy : cap on sum w.
    min_trade_usd : moves smaller than this are skipped (USD).
    capital_usd : capital allocated (USD), sets dilution and impact.
    gas_usd : USD per pool touched, flat or per chain ({"ethereum": 15, "default": 0.5}).
    stress_loss : loss on a pool's position if it enters stress (fraction).
    contagion : share of a stressed pool's probability passed to pools sharing a token.
    horizon_years : length of the forecast horizon (scales LVR and APR figures).
    v3_width : concentrated range half-width (None: treat v3 as full range); the v3 fee and
        LVR multiplier is its capital efficiency (the pool's TVL taken as full-range liquidity).
    stable_impact : price impact on stableswap relative to constant product.
    stable_lvr : LVR multiplier of stableswap pools relative to constant product.
    cost_horizons : horizons a new position is expected to be held; one-off trading costs are
        spread over them so that they compare with per-horizon income.
    solver : cvxpy solver name.
    """

    risk_aversion: float = 1.0
    max_weight: float = 0.25
    max_token_weight: float = 0.5
    max_turnover: float = 1.0
    max_deploy: float = 1.0
    min_trade_usd: float = 100.0
    capital_usd: float = 1_000_000.0
    gas_usd: float | Mapping[str, float] = field(
        default_factory=lambda: {"ethereum": 15.0, "default": 0.5})
    stress_loss: float = 0.03
    contagion: float = 0.3
    horizon_years: float = 1.0 / 365.0
    v3_width: float | None = 0.5
    stable_impact: float = 0.1
    stable_lvr: float = 1.0
    cost_horizons: float = 10.0
    solver: str = "CLARABEL"

    def __post_init__(self) -> None:
        """Reject settings outside their domain."""
        for name in ("max_weight", "max_token_weight", "max_deploy"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise AllocationError(f"{name} must be in (0, 1]", field=name)
        for name in ("risk_aversion", "max_turnover", "min_trade_usd", "stress_loss",
                     "stable_impact", "stable_lvr"):
            if getattr(self, name) < 0:
                raise AllocationError(f"{name} must be >= 0", field=name)
        for name in ("capital_usd", "horizon_years", "cost_horizons"):
            if getattr(self, name) <= 0:
                raise AllocationError(f"{name} must be > 0", field=name)
        if not 0.0 <= self.contagion <= 1.0:
            raise AllocationError("contagion must be in [0, 1]", field="contagion")


@dataclass
class Allocation:
    """Allocator output.

    weights : target weight per pool (sum <= 1, rest is cash).
    reasons : pool -> one-line explanation.
    expected : per pool, USD over the horizon: fee, il, lvr, stress_loss, cost, plus weight,
        p_eff and apr (fee APR after dilution).
    fallback_chain : what went wrong and what was used instead (empty when the solve was clean).
    """

    weights: pd.Series
    reasons: dict[str, str]
    expected: pd.DataFrame
    fallback_chain: list[str] = field(default_factory=list)
    solve_seconds: float = 0.0


def _coefficients(pp: Prepared, cfg: AllocatorConfig) -> dict[str, np.ndarray]:
    """Per-pool model coefficients (per unit weight, per horizon) from validated inputs."""
    fc, meta, C = pp.fc, pp.meta, cfg.capital_usd
    proto = (meta["protocol"].astype(str).to_numpy() if "protocol" in meta
             else np.array(["uniswap_v2"] * len(fc)))
    eff = capital_efficiency(cfg.v3_width)
    mult = np.where(proto == CONCENTRATED, eff, 1.0)
    lvr_mult = np.where(proto == STABLESWAP, cfg.stable_lvr, mult)
    f = np.nan_to_num(fc["fee_yield"].to_numpy(float))
    tvl = np.nan_to_num(fc["tvl_usd"].to_numpy(float))
    vol = np.nan_to_num(fc["volatility"].to_numpy(float))
    q10 = (np.nan_to_num(fc["fee_yield_q10"].to_numpy(float), nan=f) if "fee_yield_q10" in fc
           else f)
    il = (np.abs(np.minimum(np.nan_to_num(fc["il"].to_numpy(float)), 0.0)) if "il" in fc
          else np.zeros(len(fc)))
    names, _, a = incidence(meta)
    p_own = np.nan_to_num(fc["p_stress"].to_numpy(float))
    p_eff, via = effective_stress(p_own, a, cfg.contagion, names)
    fee_tier = (np.nan_to_num(meta["fee_tier"].to_numpy(float)) if "fee_tier" in meta
                else np.zeros(len(fc)))
    safe_t = np.where(tvl > 0, tvl, 1.0)
    impact = np.where(proto == STABLESWAP, cfg.stable_impact, 1.0)
    return {
        "mult": mult, "f": f, "tvl": tvl, "p_own": p_own, "p_eff": p_eff, "via": np.array(via),
        "lvr": vol * vol / 8.0 * cfg.horizon_years * lvr_mult,
        "stress": p_eff * cfg.stress_loss,
        "downside": np.clip(f - q10, 0.0, None) * mult + il * mult,
        "il": il * mult,
        "fee_lin": f * mult, "fee_conc": np.where(tvl > 0, f * tvl / C, 0.0),
        "k": np.where(tvl > 0, mult * C / safe_t, 0.0),
        "cost_lin": 0.5 * fee_tier, "cost_quad": np.where(tvl > 0, impact * C / (2 * safe_t),
                                                           0.0),
        "fee_tier": fee_tier, "incidence": a, "tokens": np.array(names, dtype=object),
        "gas": gas_per_pool(meta["chain"].to_numpy() if "chain" in meta
                            else np.array([""] * len(fc)), cfg.gas_usd),
    }


def _inputs(co: dict[str, np.ndarray], pp: Prepared, cfg: AllocatorConfig,
            pinned: np.ndarray) -> ProblemInputs:
    """Problem coefficients with `pinned` pools fixed at their current weight."""
    prev = pp.prev
    hi = np.where(co["tvl"] > 0, cfg.max_weight, 0.0)
    lo = np.zeros_like(hi)
    hi = np.where(pinned, prev, hi)
    lo = np.where(pinned, prev, lo)
    a = co["incidence"]
    fixed_tok = a @ np.where(pinned, prev, 0.0) if a.size else np.zeros(0)
    token_cap = np.maximum(cfg.max_token_weight, fixed_tok + 1e-12)
    return ProblemInputs(
        fee_lin=co["fee_lin"], fee_conc=co["fee_conc"], k=co["k"],
        lin=co["lvr"] + co["stress"] + cfg.risk_aversion * co["downside"],
        cost_lin=co["cost_lin"] / cfg.cost_horizons,
        cost_quad=co["cost_quad"] / cfg.cost_horizons, prev=prev, lo=lo, hi=hi,
        token_cap=token_cap, max_turnover=max(cfg.max_turnover, 0.0),
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


def _solve_with_snap(solver: ConvexAllocator, co: dict[str, np.ndarray], pp: Prepared,
                     cfg: AllocatorConfig, pinned: np.ndarray,
                     chain: list[str]) -> tuple[np.ndarray | None, np.ndarray, float]:
    """Solve, pin moves below min_trade_usd, re-solve (up to 3 rounds); (w, snapped, secs)."""
    secs = 0.0
    res = solver.solve(_inputs(co, pp, cfg, pinned), cfg.solver)
    secs += res.seconds
    if res.weights is None:
        chain.append(f"solver failed: {res.status}")
        return None, np.zeros(len(pinned), bool), secs
    w = res.weights
    snapped = np.zeros(len(w), bool)
    for _ in range(3):
        move = np.abs(w - pp.prev) * cfg.capital_usd
        small = ~pinned & ~snapped & (move < cfg.min_trade_usd) & (move > _NOISE_USD)
        if not small.any():
            break
        snapped |= small
        again = solver.solve(_inputs(co, pp, cfg, pinned | snapped), cfg.solver)
        secs += again.seconds
        if again.weights is None:
            chain.append(f"min-trade re-solve failed ({again.status}): small moves rounded")
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
    forecasts : indexed by pool_id: fee_yield (fees per horizon / TVL), tvl_usd (USD),
        volatility (annualised), p_stress (0..1); optional fee_yield_q10, il (<= 0).
    current_weights : current weight per pool (fraction of capital); missing pools count as 0.
    meta : pool metadata (pool_id column or index; protocol, chain, token0, token1, fee_tier).
    config : AllocatorConfig (defaults when None).

    Raises
    ------
    AllocationError : malformed inputs (names the pool and field). Solver trouble never raises:
        it falls back and records the chain.
    """
    cfg = config or AllocatorConfig()
    t0 = time.perf_counter()
    pp = check_inputs(forecasts, current_weights, meta)
    chain = [f"non-finite {f} for {p}: held at current weight" for p, f in pp.frozen.items()]
    n = len(pp.pools)
    if n == 0:
        return Allocation(pd.Series(dtype=float), {}, pd.DataFrame(), chain)
    co = _coefficients(pp, cfg)
    pinned = np.array([p in pp.frozen for p in pp.pools])
    tokens = tuple(tuple(str(t) for t in co["tokens"][co["incidence"][:, j] > 0])
                   for j in range(n))
    solver = cached_allocator(pp.pools, tokens, co["incidence"])
    w, snapped, _ = _solve_with_snap(solver, co, pp, cfg, pinned, chain)
    fallback = None
    x = _inputs(co, pp, cfg, pinned)
    if w is None:
        why = _feasible(pp.prev, x, co["incidence"])
        if not why and np.abs(pp.prev).sum() > 0:
            w, fallback = pp.prev.copy(), "solver failed: previous weights kept"
            chain.append("previous weights")
        else:
            chain.append(f"previous weights infeasible ({why or 'empty'})")
            w, fallback = _equal_weight(x, co["incidence"], pinned), "capped equal weight"
            chain.append("capped equal weight")
    weights = pd.Series(w, index=pd.Index(pp.pools, name="pool_id"), name="weight")
    expected, reasons = _explain(w, co, pp, cfg, x, snapped, pinned, fallback)
    return Allocation(weights, reasons, expected, chain, time.perf_counter() - t0)


def _explain(w: np.ndarray, co: dict[str, Any], pp: Prepared, cfg: AllocatorConfig,
             x: ProblemInputs, snapped: np.ndarray, pinned: np.ndarray,
             fallback: str | None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Expected USD components per pool and the reason strings."""
    C, yrs = cfg.capital_usd, cfg.horizon_years
    pos = w * C
    den = co["tvl"] + co["mult"] * pos
    fee = np.divide(co["f"] * co["tvl"] * co["mult"] * pos, den, out=np.zeros_like(pos),
                    where=den > 0)
    move = np.abs(w - pp.prev) * C
    cost = (move * co["cost_lin"] + move * move * co["cost_quad"] / C
            + np.where(move > 0, co["gas"], 0.0))
    apr = np.where(pos > 0, np.divide(fee, np.where(pos > 0, pos, 1.0)), co["fee_lin"]) / yrs
    exp = pd.DataFrame({
        "weight": w, "fee": fee, "il": -co["il"] * pos, "lvr": -co["lvr"] * pos,
        "stress_loss": -co["stress"] * pos, "cost": -cost, "p_eff": co["p_eff"], "apr": apr,
    }, index=pd.Index(pp.pools, name="pool_id"))
    a = co["incidence"]
    tok_load = a @ w if a.size else np.zeros(0)
    turnover_bound = float(np.abs(w - pp.prev).sum()) >= x.max_turnover - 1e-4
    reasons = {}
    for j, pool in enumerate(pp.pools):
        bound = ""
        if a.size:
            hits = np.flatnonzero((a[:, j] > 0) & (tok_load >= x.token_cap - 1e-4))
            bound = str(co["tokens"][hits[0]]) if len(hits) else ""
        reasons[pool] = reason_text(
            w=float(w[j]), prev=float(pp.prev[j]), hi=float(x.hi[j]), p_own=float(co["p_own"][j]),
            p_eff=float(co["p_eff"][j]), via=str(co["via"][j]), apr=float(apr[j]),
            lvr_apr=float(co["lvr"][j] / yrs), stress_apr=float(co["stress"][j] / yrs),
            frozen=pp.frozen.get(pool), snapped=bool(snapped[j]), min_trade=cfg.min_trade_usd,
            token_bound=bound, turnover_bound=turnover_bound, cap=cfg.max_weight,
            fallback=fallback, budget_bound=float(w.sum()) >= x.max_deploy - 1e-4)
    return exp, reasons
