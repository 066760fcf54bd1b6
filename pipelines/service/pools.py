"""Pools resource: the pools served, and each pool's forecasts."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from pipelines.service.deps import SettingsDep, StateDep, require_api_key
from pipelines.service.recommend import horizon_text
from pipelines.service.schemas import ErrorBody, PoolForecast, PoolInfo, PoolList

__all__ = ["router"]

router = APIRouter(prefix="/v1/pools", tags=["pools"], dependencies=[Depends(require_api_key)],
                   responses={401: {"model": ErrorBody}, 503: {"model": ErrorBody}})


@router.get("", response_model=PoolList)
def list_pools(state: StateDep, settings: SettingsDep) -> PoolList:
    """Pools that can be recommended, with data freshness."""
    stale = state.age_hours() > settings.max_feature_age_hours
    out = [PoolInfo(pool_id=str(pid), protocol=str(m["protocol"]), chain=str(m["chain"]),
                    pair=f"{m['token0']}/{m['token1']}", fee_tier=float(m["fee_tier"]),
                    data_as_of=state.pool_as_of.get(str(pid)), stale=stale)
           for pid, m in zip(state.meta.index, state.meta.to_dict("records"), strict=True)]
    return PoolList(as_of=str(state.as_of), stale=stale, pools=out)


@router.get("/{pool_id}/forecast", response_model=PoolForecast,
            responses={404: {"model": ErrorBody}})
def pool_forecast(pool_id: str, state: StateDep, settings: SettingsDep) -> PoolForecast:
    """Forecasts for one pool over the label horizon."""
    row = state.forecast_rows.get(pool_id)
    if row is None:
        raise HTTPException(404, detail={"unknown_pools": [pool_id[:200]]})
    return PoolForecast(pool_id=pool_id, as_of=state.pool_as_of.get(pool_id, str(state.as_of)),
                        stale=state.age_hours() > settings.max_feature_age_hours,
                        horizon=horizon_text(state.horizon), model_versions=state.model_versions,
                        forecast=row)
