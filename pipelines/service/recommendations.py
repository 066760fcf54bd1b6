"""Recommendations resource: target weights for a set of pools."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from starlette.concurrency import run_in_threadpool

from pipelines.service.deps import SettingsDep, StateDep, require_api_key
from pipelines.service.errors import unprocessable
from pipelines.service.recommend import UnknownPoolsError, recommend
from pipelines.service.schemas import ErrorBody, RecommendationRequest, RecommendationResponse

__all__ = ["router"]

router = APIRouter(prefix="/v1/recommendations", tags=["recommendations"],
                   dependencies=[Depends(require_api_key)],
                   responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody},
                              422: {"model": ErrorBody}, 503: {"model": ErrorBody}})


@router.post("", response_model=RecommendationResponse)
async def post_recommendation(req: RecommendationRequest, state: StateDep,
                              settings: SettingsDep) -> RecommendationResponse:
    """Target weights, moves, costs and expected economics for the requested pools."""
    try:
        return await run_in_threadpool(recommend, req, state, settings.max_feature_age_hours)
    except UnknownPoolsError as exc:
        raise HTTPException(404, detail={"unknown_pools": exc.pools[:50],
                                         "message": "these pools are not served"}) from exc
    except ValueError as exc:  # allocator input problems (AllocationError names the field)
        raise unprocessable(str(exc), getattr(exc, "field", None),
                            "allocation_error") from exc
