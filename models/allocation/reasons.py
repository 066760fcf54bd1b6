"""Expected per-pool P&L of an allocation and the reason attached to each weight."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.allocation.config import AllocatorConfig
from models.allocation.inputs import Prepared
from models.allocation.pricing import Coefficients, pool_pnl
from models.allocation.problem import ProblemInputs

__all__ = ["explain", "explain_columns", "reason_text"]

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
    return _reason(w, prev, hi, cap, apr, il_apr, stress_apr, cost_usd, p_eff, via, frozen,
                   snapped, min_trade, token_bound, turnover_bound, budget_bound, fallback,
                   first_dollar)


def _reason(w: float, prev: float, hi: float, cap: float, apr: float, il_apr: float,
            stress_apr: float, cost_usd: float, p_eff: float, via: str, frozen: str | None,
            snapped: bool, min_trade: float, token_bound: str, turnover_bound: bool,
            budget_bound: bool, fallback: str | None, first_dollar: float) -> str:
    """``reason_text`` with positional arguments (called once per pool per decision)."""
    if fallback:
        return f"{fallback} -> {w:.2f}"
    if frozen:
        return f"non-finite {frozen} forecast -> held at {w:.2f}"
    econ = (f"fees {apr:.1%} APR after dilution, IL/LVR {il_apr:.1%}, "
            f"stress {stress_apr:.1%} (p={p_eff:.2f}{' via ' + via if via else ''}), "
            f"move cost ${cost_usd:,.0f}")
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
    cols, reasons = explain_columns(w, co, pp, cfg, x, snapped, fallback)
    return pd.DataFrame(cols, index=pp.pool_index()), reasons


def explain_columns(w: np.ndarray, co: Coefficients, pp: Prepared, cfg: AllocatorConfig,
                    x: ProblemInputs, snapped: np.ndarray,
                    fallback: str | None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``explain`` with the expected USD components as arrays in pool order (no frame)."""
    pnl = pool_pnl(w, co, pp.prev, cfg)
    pos = w * cfg.capital_usd
    yrs = cfg.horizon_years
    per_usd = np.divide(pnl["fee"], pos, out=co.fee_lin.copy(), where=pos > 0)
    exp = {"weight": w, **pnl, "p_eff": co.p_eff, "fee_yield": per_usd, "apr": per_usd / yrs,
           "fee_share_source": co.source}
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
    cols = zip(pp.pools, w.tolist(), pp.prev.tolist(), x.hi.tolist(), (per_usd / yrs).tolist(),
               (-co.il_rate / yrs).tolist(), (co.stress_rate / yrs).tolist(),
               (-pnl["cost"]).tolist(), co.p_eff.tolist(), co.via.tolist(),
               np.asarray(snapped, bool).tolist(), bounds, first.tolist(), strict=True)
    cap, trade, frozen = cfg.max_weight, cfg.min_trade_usd, pp.frozen
    reasons = {pool: _reason(wj, pj, hj, cap, apr, il_apr, stress_apr, cost, p_eff, str(via),
                             frozen.get(pool), snap, trade, bound, turnover_bound, budget_bound,
                             fallback, fd)
               for pool, wj, pj, hj, apr, il_apr, stress_apr, cost, p_eff, via, snap, bound, fd
               in cols}
    return exp, reasons
