"""Request and response models of every route, and the one shape of error bodies."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from models.allocation import AllocatorConfig

__all__ = ["MAX_POOLS", "MAX_CAPITAL_USD", "PoolId", "Constraints", "RecommendationRequest",
           "PoolRecommendation", "RecommendationResponse", "Health", "RegistryInfo",
           "Readiness", "PoolInfo", "PoolList", "PoolForecast", "ErrorItem", "ErrorBody",
           "RouteRequest", "RouteSplit", "RouteResponse", "MAX_ROUTE_AMOUNT"]

MAX_POOLS = 500
MAX_CAPITAL_USD = 1e11
MAX_ROUTE_AMOUNT = 1e30  # token units (raw-looking amounts of 18-decimal tokens still fit)
_DEFAULT = AllocatorConfig()  # one source of defaults: the allocator's

PoolId = Annotated[str, StringConstraints(min_length=1, max_length=200)]

# request models reject NaN / +-Infinity (and 1e400, which JSON parsing turns into inf)
_REQUEST = ConfigDict(extra="forbid", allow_inf_nan=False)


class Constraints(BaseModel):
    """Position limits of a recommendation (fractions of capital, USD)."""

    model_config = _REQUEST

    max_weight: float = Field(default=_DEFAULT.max_weight, gt=0, le=1,
                              description="per-pool cap (fraction of capital)")
    max_token_weight: float = Field(default=_DEFAULT.max_token_weight, gt=0, le=1,
                                    description="cap on the pools holding one token")
    max_turnover: float = Field(default=_DEFAULT.max_turnover, ge=0, le=2,
                                description="sum |w - w_prev| per decision")
    min_trade_usd: float = Field(default=_DEFAULT.min_trade_usd, ge=0, le=MAX_CAPITAL_USD,
                                 description="smaller moves are skipped (USD)")


class RecommendationRequest(BaseModel):
    """What an LP asks: capital, candidate pools, current weights, limits, risk aversion."""

    model_config = _REQUEST

    capital_usd: float = Field(gt=0, le=MAX_CAPITAL_USD, description="capital to allocate, USD")
    pools: list[PoolId] = Field(min_length=1, max_length=MAX_POOLS,
                                description="candidate pool ids")
    current_weights: dict[PoolId, Annotated[float, Field(ge=0, le=1)]] | None = Field(
        default=None, max_length=MAX_POOLS,
        description="current weight per pool (fractions, sum <= 1)")
    constraints: Constraints = Field(default_factory=Constraints)
    risk_aversion: float = Field(default=_DEFAULT.risk_aversion, ge=0, le=100,
                                 description="weight of the fee-forecast downside spread")
    flow_response: bool = Field(
        default=False, description="scale each pool's fee forecast by the share of its pair's "
        "volume our deposit attracts under optimal routing (needs the stored panel's pool "
        "states; slower: the allocation is re-solved to a fixed point)")

    @field_validator("pools")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        """Each pool id once."""
        dup = sorted(p for p, n in Counter(v).items() if n > 1)
        if dup:
            raise ValueError(f"duplicate pool ids: {dup[:10]}")
        return v

    @field_validator("current_weights")
    @classmethod
    def _weights(cls, w: dict[str, float] | None, info: ValidationInfo
                 ) -> dict[str, float] | None:
        """Current weights sum to at most 1 and name requested pools only."""
        if not w:
            return w
        total = sum(w.values())
        if total > 1 + 1e-9:
            raise ValueError(f"current_weights sum to {total:.4f}; must be <= 1")
        pools = set(info.data.get("pools") or ())
        extra = sorted(set(w) - pools)
        if extra:
            raise ValueError(f"current_weights name pools not in `pools`: {extra[:10]}")
        return w


class PoolRecommendation(BaseModel):
    """Target weight, move, and the allocator's expected economics for one pool.

    Every ``expected_*`` figure is the allocator's own (the numbers it optimised), over the
    forecast horizon, signed as P&L (losses and costs negative).
    """

    pool_id: str
    weight: float = Field(description="target fraction of capital")
    current_weight: float
    move_usd: float = Field(description="USD moved into (+) or out of (-) the pool")
    expected_fee_yield: float = Field(
        description="fee income per USD deployed over the horizon, after dilution by the "
                    "position and including the concentrated-range multiplier")
    expected_fee_usd: float = Field(description="fee income over the horizon, USD")
    expected_il_usd: float = Field(description="impermanent loss over the horizon, USD")
    expected_lvr_usd: float = Field(description="loss-versus-rebalancing over the horizon, USD")
    expected_stress_usd: float = Field(description="expected stress loss over the horizon, USD")
    expected_cost_usd: float = Field(
        description="the move's gas, swap fee and impact charged to this horizon, USD")
    expected_net_usd: float = Field(
        description="the allocator's objective for the pool: fees + IL + stress + risk - "
                    "costs, USD (LVR is shown apart: IL already prices the price path)")
    p_stress: float = Field(description="probability of stress over the horizon (own)")
    gas_usd: float = Field(description="gas of the move, USD")
    slippage_usd: float = Field(
        description="swap fee and price impact of the move, USD, routed over the pair's pools "
                    "when the service holds pool states (see swap_cost_source)")
    slippage_single_pool_usd: float = Field(
        description="the same swap through this pool alone, USD (what the allocator priced)")
    flow_multiplier: float = Field(
        default=1.0, description="the pool's fee forecast scale for the flow our deposits "
        "attract (1 without flow_response)")
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
    total_slippage_single_pool_usd: float = Field(
        description="the moves' swap cost, each through its own pool alone, USD")
    flow_response: bool = Field(
        default=False, description="fees were scaled by the flow our deposits attract")
    swap_cost_source: str = Field(
        description="'routed': swaps charged routed over each pair's pools at the latest pool "
                    "states; 'single_pool': no pool states are loaded, each through its pool")
    expected_net_usd: float = Field(description="sum of the pools' expected net, USD")
    fallback_chain: list[str]
    pools: list[PoolRecommendation]


class Health(BaseModel):
    """Liveness answer."""

    status: Literal["ok"] = "ok"


class RegistryInfo(BaseModel):
    """Where the served models come from and whether the registry answered last time."""

    used: bool
    reachable: bool | None = Field(description="None when the registry is not used")
    checked_at: str | None = None
    error: str | None = Field(default=None, description="last read failure, when unreachable")
    failures: int = 0


class Readiness(BaseModel):
    """Readiness: whether a state is loaded, and what it serves."""

    ready: bool
    degraded: bool = Field(default=False,
                           description="serving the last loaded models: the registry failed")
    reason: str | None = None
    as_of: str | None = None
    pools: int | None = None
    model_versions: dict[str, str] = Field(default_factory=dict)
    registry: RegistryInfo


class PoolInfo(BaseModel):
    """A pool that can be recommended, with data freshness."""

    pool_id: str
    protocol: str
    chain: str
    pair: str
    fee_tier: float
    data_as_of: str | None
    stale: bool


class PoolList(BaseModel):
    """Pools served, with the feature table's freshness."""

    as_of: str
    stale: bool
    pools: list[PoolInfo]


class PoolForecast(BaseModel):
    """One pool's forecasts over the label horizon (None where a model gave no number)."""

    pool_id: str
    as_of: str
    stale: bool
    horizon: str
    model_versions: dict[str, str]
    forecast: dict[str, float | None]


class RouteRequest(BaseModel):
    """A trade to route: sell `amount` of token `from` for token `to`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    token_in: str = Field(alias="from", min_length=1, max_length=64,
                          description="token sold (symbol, case-insensitive when unambiguous)")
    token_out: str = Field(alias="to", min_length=1, max_length=64, description="token bought")
    amount: float = Field(gt=0, le=MAX_ROUTE_AMOUNT,
                          description="amount sold, units of the input token")
    max_hops: int = Field(default=2, ge=1, le=3, description="longest path, pools")
    gas_usd: float | None = Field(default=None, ge=0, le=1e6,
                                  description="USD per pool touched (None: gas not priced)")


class RouteSplit(BaseModel):
    """One path of the split: tokens traversed, pools used, amounts in and out (token units)."""

    path: list[str]
    pool_ids: list[str]
    amount_in: float
    amount_out: float


class RouteResponse(BaseModel):
    """The optimal split of a trade over the served pools' latest state.

    Amounts are in token units; prices are token_out per token_in.
    """

    as_of: str = Field(description="latest pool-state time used")
    token_in: str
    token_out: str
    chain: str
    amount_in: float
    amount_in_used: float = Field(description="below amount_in when the pools run dry")
    amount_out: float
    best_single_pool_out: float = Field(description="output through the best single pool "
                                        "(or chain of one pool per hop)")
    best_single_pool_ids: list[str]
    saved_vs_single: float = Field(description="extra output over the best single pool, "
                                   "fraction of the trade at mid price")
    mid_price: float = Field(description="best fee-free zero-size rate")
    effective_price: float = Field(description="amount_out / amount_in_used")
    price_impact: float | None = Field(description="1 - effective / mid, fees included")
    gas_usd: float = Field(description="gas of the pools touched, USD (0 unless priced)")
    amount_out_net: float | None = Field(description="amount_out less gas, None without gas")
    dropped_for_gas: list[str]
    splits: list[RouteSplit]
    status: Literal["optimal", "capacity_exhausted", "single_chain"]
    method: str


class ErrorItem(BaseModel):
    """One problem with a request: where (``loc``, dotted ``field``), what, and its kind."""

    loc: list[str | int]
    field: str
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Body of every 4xx/5xx answer; ``detail`` is a list of items for 422s."""

    detail: list[ErrorItem] | str | dict[str, Any]
