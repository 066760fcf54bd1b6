"""Allocation recommendations from a loaded state: the logic shared by the API and the CLI.

Every money figure in a recommendation is read from the allocator's per-pool ``expected``
frame (the numbers it optimised, priced by ``models.economics``); nothing is re-derived here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models.allocation import AllocatorConfig
from models.allocation.allocate import Allocation, allocate_prepared
from models.allocation.flow_response import allocate_with_flow
from models.allocation.inputs import with_current
from models.routing import routed_zap_costs
from pipelines.service.schemas import RecommendationRequest, RecommendationResponse
from pipelines.service.state import PoolSlice, ServiceState, load_state

__all__ = ["UnknownPoolsError", "recommend", "recommend_from_workdir", "parse_pool_ids",
           "recommendation_title", "horizon_text"]



class UnknownPoolsError(KeyError):
    """Pools asked for that the service cannot recommend."""

    def __init__(self, pools: list[str]) -> None:
        self.pools = pools
        super().__init__(f"unknown pool(s): {', '.join(pools[:20])}")


def _allocator_config(req: RecommendationRequest, horizon_years: float,
                      routed: bool = True) -> AllocatorConfig:
    """AllocatorConfig of a request over the state's horizon; `routed`: the allocator prices
    swaps as routed over each pair's pools (the service has pool states to route with)."""
    k = req.constraints
    return AllocatorConfig(
        capital_usd=req.capital_usd, horizon_years=horizon_years,
        risk_aversion=req.risk_aversion, max_weight=k.max_weight,
        max_token_weight=k.max_token_weight, max_turnover=k.max_turnover,
        min_trade_usd=k.min_trade_usd, routed_costs=routed)


def _usd(x: float) -> str:
    """Whole dollars with the sign in front (``-$12``); |x| < 0.5 prints as ``$0``."""
    if abs(x) < 0.5:
        return "$0"
    return f"-${-x:,.0f}" if x < 0 else f"${x:,.0f}"


def horizon_text(horizon: pd.Timedelta) -> str:
    """A horizon as ``7d`` or ``24h``."""
    days = horizon / pd.Timedelta(days=1)
    if days >= 1 and days == int(days):
        return f"{days:g}d"
    return f"{horizon / pd.Timedelta(hours=1):g}h"


def _economics_text(e: dict[str, float], horizon: str) -> str:
    """The allocator's expected P&L parts of one pool, in USD over the horizon."""
    risk = f", risk {_usd(e['risk'])}" if abs(e["risk"]) >= 0.5 else ""
    return (f"expected over {horizon}: fees {_usd(e['fee'])}, IL {_usd(e['il'])}, "
            f"stress {_usd(e['stress_loss'])}{risk}, costs {_usd(e['cost'])} "
            f"-> net {_usd(e['net'])}")


_ECONOMICS = ("fee", "il", "lvr", "stress_loss", "risk", "gas", "swap_cost",
              "swap_cost_single_pool", "cost", "net", "fee_yield")


def recommend(req: RecommendationRequest, state: ServiceState,
              max_age_hours: float = 48.0) -> RecommendationResponse:
    """Run the allocator on the state's precomputed forecasts for the requested pools.

    Parameters
    ----------
    req : capital (USD), pools, current weights (fractions), limits and risk aversion.
    state : the loaded snapshot; its forecasts are per pool over ``state.horizon``.
    max_age_hours : features older than this (hours) mark the answer stale.

    Returns
    -------
    RecommendationResponse : weights, USD moves, and per pool the allocator's expected USD
        over the horizon (fees, IL, LVR, stress, costs, net) with its reason.

    Raises
    ------
    UnknownPoolsError : pools the state does not serve. AllocationError (ValueError) : inputs
        the allocator cannot use, naming the pool and field.
    """
    pools = tuple(req.pools)
    unknown = [p for p in pools if p not in state.forecast_rows]
    if unknown:
        raise UnknownPoolsError(unknown)
    cut = state.pool_slice(pools)
    cw = req.current_weights or {}
    c = np.array([cw.get(p, 0.0) for p in pools], dtype=float)
    years = state.horizon / pd.Timedelta(days=365)
    cfg = _allocator_config(req, years, state.pool_states is not None)
    alloc, flow, notes = _solve(req, state, cut, c, cfg)
    cols = alloc.expected_columns
    econ = {k: np.nan_to_num(np.asarray(cols[k], float), nan=0.0, posinf=0.0, neginf=0.0)
            for k in _ECONOMICS}
    w = np.nan_to_num(alloc.weights.to_numpy(float))
    move = (w - c) * req.capital_usd
    single = -econ["swap_cost_single_pool"]
    source = _route_swaps(state, cut, pools, move, single, econ, cfg.cost_horizons)
    horizon = horizon_text(state.horizon)
    reasons = alloc.reasons
    e = {k: v.tolist() for k, v in econ.items()}
    shown = ((w > 0) | (move != 0)).tolist()
    out: list[dict[str, object]] = []
    for i, (p, wi, ci, mi, si, ps, asof) in enumerate(zip(
            pools, w.tolist(), c.tolist(), move.tolist(), single.tolist(),
            np.asarray(cut.p_stress, float).tolist(), cut.data_as_of, strict=True)):
        why = str(reasons.get(p, ""))
        # a pool neither held nor traded has no USD to show: its reason's rates say why
        text = _economics_text({k: v[i] for k, v in e.items()}, horizon) if shown[i] else ""
        out.append({
            "pool_id": p, "weight": wi, "current_weight": ci, "move_usd": mi,
            "expected_fee_yield": e["fee_yield"][i], "expected_fee_usd": e["fee"][i],
            "expected_il_usd": e["il"][i], "expected_lvr_usd": e["lvr"][i],
            "expected_stress_usd": e["stress_loss"][i], "expected_cost_usd": e["cost"][i],
            "expected_net_usd": e["net"][i], "p_stress": ps, "gas_usd": -e["gas"][i],
            "slippage_usd": -e["swap_cost"][i], "slippage_single_pool_usd": si,
            "flow_multiplier": flow[i],
            "data_as_of": asof, "reason": "; ".join(t for t in (why, text) if t)})
    age = state.age_hours()
    # validated from plain values in one pass (much cheaper than a model per pool)
    return RecommendationResponse.model_validate({
        "as_of": str(state.as_of), "stale": age > max_age_hours,
        "feature_age_hours": round(age, 2), "horizon": horizon,
        "model_versions": state.model_versions, "capital_usd": req.capital_usd,
        "cash_weight": float(max(0.0, 1.0 - w.sum())), "total_gas_usd": float(-econ["gas"].sum()),
        "total_slippage_usd": float(-econ["swap_cost"].sum()),
        "total_slippage_single_pool_usd": float(single.sum()), "swap_cost_source": source,
        "expected_net_usd": float(econ["net"].sum()),
        "flow_response": bool(req.flow_response and not notes),
        "fallback_chain": [str(x) for x in alloc.fallback_chain] + notes, "pools": out})


def _solve(req: RecommendationRequest, state: ServiceState, cut: PoolSlice, c: np.ndarray,
           cfg: AllocatorConfig) -> tuple[Allocation, list[float], list[str]]:
    """The allocation, each pool's flow multiplier and notes on what could not be applied.

    With ``flow_response`` and the state's pool states, fees are scaled by the flow the
    deposits attract (`allocate_with_flow`); otherwise the slice's prepared inputs are solved
    (their pools are the request's, in order).
    """
    if req.flow_response and state.pool_states is not None:
        current = pd.Series(c, index=cut.forecasts.index)
        alloc, mult = allocate_with_flow(cut.forecasts, current, cut.meta, cfg,
                                         state.pool_states)
        return alloc, mult.reindex(cut.forecasts.index).fillna(1.0).tolist(), []
    notes = (["flow_response: no pool states loaded (no stored panel); fees not scaled"]
             if req.flow_response else [])
    return allocate_prepared(with_current(cut.prepared, c), cfg), [1.0] * len(c), notes


def _route_swaps(state: ServiceState, cut: PoolSlice, pools: tuple[str, ...],
                 move: np.ndarray, single: np.ndarray, econ: dict[str, np.ndarray],
                 cost_horizons: float) -> str:
    """Charge each move's swap at its routed cost (in place in `econ`); return the source.

    The allocator priced each zap's swap with its estimate of the routed cost (or through its
    own pool when no pool states are loaded); executed as a swap routed over the pair's pools
    at the state's latest pool states, it costs the router's quote, never more than through
    the pool alone. The difference moves `swap_cost`, `cost` and `net` (cost is spread over
    the allocator's cost horizons). `single` is each move's swap cost through its pool alone.
    """
    if state.pool_states is None or not np.any((move != 0) & (single > 0)):
        return "single_pool" if state.pool_states is None else "routed"
    routed = routed_zap_costs(state.pool_states, pools, cut.token0, cut.token1, cut.chains,
                              move, single)
    saved = -econ["swap_cost"] - routed  # the estimate less the charge
    econ["swap_cost"] = econ["swap_cost"] + saved
    econ["cost"] = econ["cost"] + saved / cost_horizons
    econ["net"] = econ["net"] + saved / cost_horizons
    return "routed"


def parse_pool_ids(text: str) -> list[str] | None:
    """Pool ids of a comma-separated option; None (all pools) only for an empty option.

    Raises ValueError when the option is given but names no pool (``",,,"``).
    """
    if not text.strip():
        return None
    ids = [p.strip() for p in text.split(",") if p.strip()]
    if not ids:
        raise ValueError(f"--pools {text!r} names no pool id; give comma-separated ids, "
                         "or leave --pools out to consider every pool")
    return ids


def recommendation_title(resp: RecommendationResponse) -> str:
    """Table title for a recommendation; says so prominently when the features are stale."""
    title = f"recommendation as of {resp.as_of}"
    if resp.stale:
        title += (f" -- STALE: features are {resp.feature_age_hours:,.1f} h old; "
                  "rebuild them (`lpa features build`) before acting")
    return title


def recommend_from_workdir(
    workdir: Path, pools: list[str] | None, capital_usd: float, risk_aversion: float = 0.0,
    current_weights: dict[str, float] | None = None, max_age_hours: float = 48.0,
) -> RecommendationResponse:
    """Load the work directory's state once and recommend, without a server.

    ``pools`` None means every served pool; an empty list is an error.
    """
    if pools is not None and not pools:
        raise ValueError("no pool ids given; pass None to consider every pool")
    state = load_state(workdir)
    req = RecommendationRequest(capital_usd=capital_usd,
                                pools=pools if pools is not None else list(state.forecasts.index),
                                current_weights=current_weights, risk_aversion=risk_aversion)
    return recommend(req, state, max_age_hours)
