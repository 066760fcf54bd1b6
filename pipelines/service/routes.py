"""Routes resource: the optimal split of a trade across the served pools' latest state."""

from __future__ import annotations

import math

import numpy as np
from fastapi import APIRouter, Depends, HTTPException
from starlette.concurrency import run_in_threadpool

from models.routing import NoRouteError, RouteResult, RoutingError, UnknownTokenError, route
from pipelines.service.deps import StateDep, require_api_key
from pipelines.service.errors import unprocessable
from pipelines.service.schemas import ErrorBody, RouteRequest, RouteResponse, RouteSplit
from pipelines.service.state import ServiceState

__all__ = ["router", "route_trade"]

router = APIRouter(prefix="/v1/routes", tags=["routes"], dependencies=[Depends(require_api_key)],
                   responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody},
                              422: {"model": ErrorBody}, 503: {"model": ErrorBody}})


def _finite(x: float) -> float | None:
    """The number, or None when it is NaN or infinite."""
    return float(x) if math.isfinite(x) else None


def route_trade(req: RouteRequest, state: ServiceState) -> RouteResponse:
    """Route the requested trade over the state's pool states (RoutingError when it cannot)."""
    pools = state.pool_states
    if pools is None:
        raise HTTPException(503, detail=f"no pool state to route over: {state.pool_states_error}")
    res: RouteResult = route(pools, req.token_in, req.token_out, req.amount,
                             gas_usd=req.gas_usd, max_hops=req.max_hops)
    as_of = str(np.max(pools.timestamp)) if len(pools) else str(state.as_of)
    return RouteResponse(
        as_of=as_of, token_in=res.token_in, token_out=res.token_out, chain=res.chain,
        amount_in=res.amount_in, amount_in_used=res.amount_in_used, amount_out=res.amount_out,
        best_single_pool_out=res.best_single_pool_out,
        best_single_pool_ids=res.best_single_pool_ids, saved_vs_single=res.saved_vs_single,
        mid_price=res.mid_price, effective_price=res.effective_price,
        price_impact=_finite(res.price_impact), gas_usd=res.gas_usd,
        amount_out_net=res.amount_out_net, dropped_for_gas=res.dropped_for_gas,
        splits=[RouteSplit(path=[str(t) for t in s["path"]],
                           pool_ids=[str(p) for p in s["pool_ids"]],
                           amount_in=float(s["amount_in"]), amount_out=float(s["amount_out"]))
                for s in res.splits],
        status=res.status, method=res.method)  # type: ignore[arg-type]


@router.post("", response_model=RouteResponse)
async def post_route(req: RouteRequest, state: StateDep) -> RouteResponse:
    """The split across pools and paths that maximises the output of a trade."""
    try:
        return await run_in_threadpool(route_trade, req, state)
    except UnknownTokenError as exc:
        raise HTTPException(404, detail={"unknown_token": exc.token[:64],
                                         "known_tokens": exc.known[:500],
                                         "message": str(exc)[:300]}) from exc
    except NoRouteError as exc:
        known = state.pool_states.tokens if state.pool_states is not None else []
        raise HTTPException(404, detail={"message": str(exc)[:300],
                                         "known_tokens": known[:500]}) from exc
    except RoutingError as exc:
        field = "amount" if str(exc).startswith("amount") else None
        raise unprocessable(str(exc)[:300], field, "routing_error") from exc
