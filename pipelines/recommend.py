"""Allocation recommendations: request/response models and the logic shared by API and CLI."""

from __future__ import annotations

import dataclasses
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from features.schema import CHAIN, FEE_TIER, PROTOCOL, TVL_USD
from pipelines.service_state import ServiceState, load_state

__all__ = ["Constraints", "RecommendationRequest", "PoolRecommendation",
           "RecommendationResponse", "UnknownPoolsError", "recommend", "recommend_from_workdir",
           "MAX_POOLS"]

MAX_POOLS = 500
MAX_CAPITAL_USD = 1e11
_SOLVER_LOCK = threading.Lock()


class UnknownPoolsError(KeyError):
    """Pools asked for that the service cannot recommend."""

    def __init__(self, pools: list[str]) -> None:
        self.pools = pools
        super().__init__(f"unknown pool(s): {', '.join(pools)}")


class Constraints(BaseModel):
    """Position limits of a recommendation (fractions of capital, USD)."""

    model_config = ConfigDict(extra="forbid")

    max_weight: float = Field(default=0.25, gt=0, le=1, description="per-pool cap")
    max_token_weight: float = Field(default=0.5, gt=0, le=1, description="per-token cap")
    max_turnover: float = Field(default=1.0, ge=0, le=2, description="sum |w - w_prev|")
    min_trade_usd: float = Field(default=0.0, ge=0, description="smaller moves are skipped")


class RecommendationRequest(BaseModel):
    """What an LP asks: capital, candidate pools, current weights, limits, risk aversion."""

    model_config = ConfigDict(extra="forbid")

    capital_usd: float = Field(gt=0, le=MAX_CAPITAL_USD, description="capital to allocate, USD")
    pools: list[str] = Field(min_length=1, max_length=MAX_POOLS,
                             description="candidate pool ids")
    current_weights: dict[str, float] | None = Field(
        default=None, description="current weight per pool (fractions, sum <= 1)")
    constraints: Constraints = Field(default_factory=Constraints)
    risk_aversion: float = Field(default=1.0, ge=0, le=100)

    @field_validator("pools")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dup = sorted({p for p in v if v.count(p) > 1})
        if dup:
            raise ValueError(f"duplicate pool ids: {dup}")
        return v

    @model_validator(mode="after")
    def _weights(self) -> RecommendationRequest:
        w = self.current_weights or {}
        bad = [k for k, x in w.items() if not (math.isfinite(x) and x >= 0)]
        if bad:
            raise ValueError(f"current_weights must be finite and >= 0: {bad}")
        if sum(w.values()) > 1 + 1e-9:
            raise ValueError(f"current_weights sum to {sum(w.values()):.4f}; must be <= 1")
        extra = sorted(set(w) - set(self.pools))
        if extra:
            raise ValueError(f"current_weights name pools not in `pools`: {extra}")
        return self


class PoolRecommendation(BaseModel):
    """Target and forecasts for one pool."""

    pool_id: str
    weight: float
    current_weight: float
    move_usd: float
    expected_fee_yield: float = Field(description="fraction per horizon, after dilution")
    expected_il_usd: float = Field(description="expected impermanent loss over the horizon")
    expected_lvr_usd: float = Field(description="expected loss-versus-rebalancing, horizon")
    p_stress: float
    gas_usd: float
    slippage_usd: float
    data_as_of: str
    reason: str


class RecommendationResponse(BaseModel):
    """Target weights, moves, costs and the provenance of the forecasts."""

    as_of: str
    stale: bool
    feature_age_hours: float
    horizon: str
    model_versions: dict[str, str]
    capital_usd: float
    cash_weight: float
    total_gas_usd: float
    total_slippage_usd: float
    fallback_chain: list[str]
    pools: list[PoolRecommendation]


def _allocator_config(req: RecommendationRequest, horizon_years: float) -> Any:
    """AllocatorConfig from the request, passing only the fields it declares."""
    from models.allocator import AllocatorConfig

    want: dict[str, Any] = {"capital_usd": req.capital_usd, "risk_aversion": req.risk_aversion,
            "max_weight": req.constraints.max_weight,
            "max_token_weight": req.constraints.max_token_weight,
            "max_turnover": req.constraints.max_turnover,
            "min_trade_usd": req.constraints.min_trade_usd, "horizon_years": horizon_years}
    names = {f.name for f in dataclasses.fields(AllocatorConfig)}
    return AllocatorConfig(**{k: v for k, v in want.items() if k in names})


def _expected(alloc: Any, pools: list[str], col: str) -> np.ndarray:
    """A column of the allocator's per-pool expectations (USD over the horizon), 0 if absent."""
    exp = getattr(alloc, "expected", None)
    if isinstance(exp, pd.DataFrame) and col in exp.columns:
        return np.nan_to_num(exp[col].reindex(pools).to_numpy(float))
    return np.zeros(len(pools))


def recommend(req: RecommendationRequest, state: ServiceState,
              max_age_hours: float = 48.0) -> RecommendationResponse:
    """Run the allocator on the state's forecasts for the requested pools."""
    from models.allocator import allocate
    from pipelines.backtest.accounting import trade_costs

    unknown = [p for p in req.pools if p not in state.forecasts.index]
    if unknown:
        raise UnknownPoolsError(unknown)
    fc = state.forecasts.loc[req.pools].copy()
    meta = state.meta.loc[req.pools].reset_index()
    cur = pd.Series({p: (req.current_weights or {}).get(p, 0.0) for p in req.pools}, dtype=float)
    years = state.horizon / pd.Timedelta(days=365)
    with _SOLVER_LOCK:  # the compiled convex problem is cached and not thread-safe
        alloc = allocate(fc, cur, meta, _allocator_config(req, years))
    w = alloc.weights.reindex(req.pools).fillna(0.0)
    age = state.age_hours()
    tvl = np.nan_to_num(fc[TVL_USD].to_numpy(float))
    fee = np.nan_to_num(fc["fee_yield"].to_numpy(float))
    pst = np.nan_to_num(fc["p_stress"].to_numpy(float))
    w_arr, c_arr = w.to_numpy(float), cur.to_numpy(float)
    move = (w_arr - c_arr) * req.capital_usd
    x = w_arr * req.capital_usd
    diluted = np.where(tvl + x > 0, fee * tvl / np.maximum(tvl + x, 1e-9), 0.0)
    tiers = meta[FEE_TIER].to_numpy(float)
    chains, protos = meta[CHAIN].astype(str).tolist(), meta[PROTOCOL].astype(str).tolist()
    il, lvr = _expected(alloc, req.pools, "il"), _expected(alloc, req.pools, "lvr")
    as_of = [str(state.pool_as_of.get(p, state.as_of)) for p in req.pools]
    out = []
    for i, p in enumerate(req.pools):
        gas, slip = (trade_costs(move[i:i + 1], tvl[i:i + 1], tiers[i:i + 1], chain=chains[i:i + 1],
                                 protocol=protos[i:i + 1]) if move[i] else (0.0, 0.0))
        out.append(PoolRecommendation(
            pool_id=p, weight=float(w_arr[i]), current_weight=float(c_arr[i]),
            move_usd=float(move[i]), expected_fee_yield=float(diluted[i]),
            expected_il_usd=float(il[i]), expected_lvr_usd=float(lvr[i]),
            p_stress=float(pst[i]), gas_usd=float(gas), slippage_usd=float(slip),
            data_as_of=as_of[i], reason=str(alloc.reasons.get(p, "")),
        ))
    return RecommendationResponse(
        as_of=str(state.as_of), stale=age > max_age_hours, feature_age_hours=round(age, 2),
        horizon=str(state.horizon), model_versions=state.model_versions,
        capital_usd=req.capital_usd, cash_weight=float(max(0.0, 1 - w.sum())),
        total_gas_usd=sum(r.gas_usd for r in out),
        total_slippage_usd=sum(r.slippage_usd for r in out),
        fallback_chain=[str(x) for x in getattr(alloc, "fallback_chain", [])], pools=out)


def recommend_from_workdir(
    workdir: Path, pools: list[str] | None, capital_usd: float, risk_aversion: float = 1.0,
    current_weights: dict[str, float] | None = None,
) -> RecommendationResponse:
    """Load the work directory's state once and recommend, without a server."""
    state = load_state(workdir)
    req = RecommendationRequest(capital_usd=capital_usd,
                                pools=pools or list(state.forecasts.index),
                                current_weights=current_weights, risk_aversion=risk_aversion)
    return recommend(req, state)
