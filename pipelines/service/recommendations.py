"""Recommendations resource: target weights for a set of pools."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, HTTPException, Response
from starlette.concurrency import run_in_threadpool

from pipelines.service.deps import SettingsDep, StateDep, require_api_key
from pipelines.service.errors import unprocessable
from pipelines.service.recommend import UnknownPoolsError, recommend
from pipelines.service.schemas import (
    Constraints,
    ErrorBody,
    RecommendationRequest,
    RecommendationResponse,
)
from pipelines.service.state import ServiceState

__all__ = ["router"]

log = logging.getLogger("lpa.serve")

router = APIRouter(prefix="/v1/recommendations", tags=["recommendations"],
                   dependencies=[Depends(require_api_key)],
                   responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody},
                              422: {"model": ErrorBody}, 500: {"model": ErrorBody},
                              503: {"model": ErrorBody}})

# allocator complaints about these fields are the request's; any other field is the served
# forecasts' (the service's fault, not the caller's)
_REQUEST_FIELDS = frozenset(RecommendationRequest.model_fields) | frozenset(
    Constraints.model_fields)


def _answer(req: RecommendationRequest, state: ServiceState, max_age_hours: float) -> bytes:
    """The recommendation as JSON bytes (the response model serialised once, not re-checked)."""
    return recommend(req, state, max_age_hours).model_dump_json().encode()


@router.post("", response_model=RecommendationResponse)
async def post_recommendation(req: RecommendationRequest, state: StateDep,
                              settings: SettingsDep) -> Response:
    """Target weights, moves, costs and expected economics for the requested pools."""
    try:
        body = await run_in_threadpool(_answer, req, state, settings.max_feature_age_hours)
        return Response(body, media_type="application/json")
    except UnknownPoolsError as exc:
        raise HTTPException(404, detail={"unknown_pools": exc.pools[:50],
                                         "message": "these pools are not served"}) from exc
    except ValueError as exc:  # AllocationError names the pool and field
        field = getattr(exc, "field", None)
        if field in _REQUEST_FIELDS:
            raise unprocessable(str(exc), field, "allocation_error") from exc
        log.error("allocator rejected the served forecasts: %s", exc)
        raise HTTPException(500, detail=f"the allocator rejected the served forecasts, not "
                                        f"the request: {exc}") from exc
