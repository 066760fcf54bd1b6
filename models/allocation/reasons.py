"""Expected per-pool P&L of an allocation and the reason attached to each weight."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.allocation.config import AllocatorConfig
from models.allocation.inputs import Prepared
from models.allocation.pricing import Coefficients, pool_pnl
from models.allocation.problem import ProblemInputs

__all__ = ["explain", "reason_text"]

_TOL = 1e-4


def reason_text(*, w: float, prev: float, hi: float, cap: float, apr: float, il_apr: float,
                stress_apr: float, cost_usd: float, p_eff: float, via: str,
                frozen: str | None, snapped: bool, min_trade: float, token_bound: str,
                turnover_bound: bool, budget_bound: bool, fallback: str | None,
                first_dollar: float = 0.0) -> str:
    """One-line explanation of a pool's weight with the economics that decided it.

    first_dollar : expected net of the first USD moved in per horizon (fees - IL/LVR - stress
        - swap fee spread over the cost horizons), per USD.
    """
    econ = (f"fees {apr:.1%} APR after dilution, IL/LVR {il_apr:.1%}, "
            f"stress {stress_apr:.1%} (p={p_eff:.2f}{' via ' + via if via else ''}), "
            f"move cost ${cost_usd:,.0f}")
    if fallback:
        return f"{fallback} -> {w:.2f}"
    if frozen:
        return f"non-finite {frozen} forecast -> held at {w:.2f}"
    if snapped:
        return (f"move below min trade ${min_trade:,.0f} or not paying its gas -> kept at "
                f"{w:.2f}; {econ}")
    if turnover_bound and abs(w - prev) > _TOL:
        lead = f"turnover cap binding -> {w:.2f}"
    elif w >= min(hi, cap) - _TOL and w > _TOL:
        lead = f"at per-pool cap {w:.2f}"
    elif token_bound and w > _TOL:
        lead = f"token {token_bound} at cap -> {w:.2f}"
    elif budget_bound and w > _TOL:
        lead = f"capital fully deployed -> {w:.2f}"
    elif w <= _TOL and token_bound:
        lead = f"token {token_bound} at cap: pools sharing it earn more -> 0.00"
    elif w <= _TOL and budget_bound:
        lead = "capital fully deployed in pools that earn more -> 0.00"
    elif w <= _TOL and first_dollar > 0:
        lead = "too small a gain to pay the move's gas and minimum trade -> 0.00"
    elif w <= _TOL:
        lead = "fees do not cover IL/LVR, stress and the cost of moving in -> 0.00"
    else:
        lead = f"interior optimum {w:.2f} (more would dilute the fee share below its cost)"
    return f"{lead}; {econ}"


def explain(w: np.ndarray, co: Coefficients, pp: Prepared, cfg: AllocatorConfig,
            x: ProblemInputs, snapped: np.ndarray,
            fallback: str | None) -> tuple[pd.DataFrame, dict[str, str]]:
    """Expected USD components per pool (economics core) and the reason strings."""
    pnl = pool_pnl(w, co, pp.prev, cfg)
    pos = w * cfg.capital_usd
    yrs = cfg.horizon_years
    per_usd = np.divide(pnl["fee"], pos, out=co.fee_lin.copy(), where=pos > 0)
    exp = pd.DataFrame({"weight": w, **pnl, "p_eff": co.p_eff, "fee_yield": per_usd,
                        "apr": per_usd / yrs, "fee_share_source": co.source},
                       index=pd.Index(pp.pools, name="pool_id"))
    first = co.fee_lin - co.lin - co.cost_lin / cfg.cost_horizons
    a = co.incidence
    tok_load = a @ w if a.size else np.zeros(0)
    turnover_bound = float(np.abs(w - pp.prev).sum()) >= x.max_turnover - _TOL
    budget_bound = float(w.sum()) >= x.max_deploy - _TOL
    bounds = [""] * len(pp.pools)
    if a.size:  # the first token (in co.tokens order) of each pool that is at its cap
        hits = (a > 0) & (tok_load >= x.token_cap - _TOL)[:, None]
        first_hit = hits.argmax(axis=0)
        for j in np.flatnonzero(hits.any(axis=0)).tolist():
            bounds[j] = str(co.tokens[first_hit[j]])
    reasons = {}
    for j, pool in enumerate(pp.pools):
        reasons[pool] = reason_text(
            w=float(w[j]), prev=float(pp.prev[j]), hi=float(x.hi[j]), cap=cfg.max_weight,
            apr=float(per_usd[j] / yrs), il_apr=float(-co.il_rate[j] / yrs),
            stress_apr=float(co.stress_rate[j] / yrs), cost_usd=float(-pnl["cost"][j]),
            p_eff=float(co.p_eff[j]), via=str(co.via[j]), frozen=pp.frozen.get(pool),
            snapped=bool(snapped[j]), min_trade=cfg.min_trade_usd, token_bound=bounds[j],
            turnover_bound=turnover_bound, budget_bound=budget_bound, fallback=fallback,
            first_dollar=float(first[j]))
    return exp, reasons
