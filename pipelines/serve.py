"""The recommendation service: FastAPI app, one router per resource, Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.schema import DataValidationError
from models.registry import champion_versions
from pipelines.config import resolve_workdir, tracking_uri
from pipelines.recommend import (
    RecommendationRequest,
    RecommendationResponse,
    UnknownPoolsError,
    recommend,
)
from pipelines.service_state import ServiceState, load_state

__all__ = ["ServiceSettings", "create_app", "run_server", "get_settings"]

log = logging.getLogger("lpa.serve")


class ServiceSettings(BaseSettings):
    """Service settings from the environment (prefix LPA_)."""

    model_config = SettingsConfigDict(env_prefix="LPA_", extra="ignore")

    workdir: Path = Field(default_factory=lambda: resolve_workdir(None),
                          validation_alias=AliasChoices("LPA_WORKDIR", "LPA_HOME", "workdir"))
    api_key: str | None = None
    max_feature_age_hours: float = 48.0
    reload_interval_s: float = 30.0
    use_registry: bool = True


@lru_cache
def get_settings() -> ServiceSettings:
    """Settings read once from the environment."""
    return ServiceSettings()


class Metrics:
    """Prometheus collectors in a registry of the app's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("lpa_requests_total", "HTTP requests",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("lpa_request_latency_seconds", "Request latency", ["route"],
                                 buckets=(.005, .01, .02, .05, .1, .25, .5, 1, 2.5),
                                 registry=self.registry)
        self.model = Gauge("lpa_model_info", "Model version in use (value 1)",
                           ["target", "version"], registry=self.registry)
        self.feature_age = Gauge("lpa_feature_age_hours", "Age of the latest features",
                                 registry=self.registry)

    def set_state(self, state: ServiceState) -> None:
        """Publish the model versions and feature age of a state."""
        self.model.clear()
        for t, v in state.model_versions.items():
            self.model.labels(target=t, version=v).set(1)
        self.feature_age.set(state.age_hours())


def _state(request: Request) -> ServiceState:
    state = getattr(request.app.state, "service", None)
    if state is None:
        raise HTTPException(503, detail="models and features not loaded yet")
    return state


def _api_key(request: Request) -> None:
    key = request.app.state.settings.api_key
    if key and request.headers.get("x-api-key") != key:
        raise HTTPException(401, detail="missing or wrong X-API-Key header")


State = Annotated[ServiceState, Depends(_state)]

health = APIRouter(tags=["health"])
pools = APIRouter(prefix="/v1/pools", tags=["pools"], dependencies=[Depends(_api_key)])
recs = APIRouter(prefix="/v1/recommendations", tags=["recommendations"],
                 dependencies=[Depends(_api_key)])


@health.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@health.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Readiness: models and features loaded."""
    state = getattr(request.app.state, "service", None)
    if state is None:
        err = getattr(request.app.state, "load_error", "loading")
        return JSONResponse({"ready": False, "reason": err}, status_code=503)
    return JSONResponse({"ready": True, "as_of": str(state.as_of), "pools": len(state.meta),
                         "model_versions": state.model_versions})


@health.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus exposition of request counts, latency and model versions."""
    m: Metrics = request.app.state.metrics
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


@pools.get("")
def list_pools(state: State, request: Request) -> dict[str, Any]:
    """Pools that can be recommended, with data freshness."""
    max_age = request.app.state.settings.max_feature_age_hours
    out = []
    for pid, m in state.meta.iterrows():
        as_of = state.pool_as_of.get(pid)
        out.append({"pool_id": pid, "protocol": m["protocol"], "chain": m["chain"],
                    "pair": f"{m['token0']}/{m['token1']}", "fee_tier": m["fee_tier"],
                    "data_as_of": str(as_of), "stale": state.age_hours() > max_age})
    return {"as_of": str(state.as_of), "stale": state.age_hours() > max_age, "pools": out}


@pools.get("/{pool_id}/forecast")
def pool_forecast(pool_id: str, state: State, request: Request) -> dict[str, Any]:
    """Forecasts for one pool over the label horizon."""
    if pool_id not in state.forecasts.index:
        raise HTTPException(404, detail={"unknown_pools": [pool_id]})
    row = {str(k): float(v) for k, v in state.forecasts.loc[pool_id].to_dict().items()}
    return {"pool_id": pool_id, "as_of": str(state.pool_as_of.get(pool_id, state.as_of)),
            "stale": state.age_hours() > request.app.state.settings.max_feature_age_hours,
            "horizon": str(state.horizon), "model_versions": state.model_versions,
            "forecast": {k: (None if v != v else v) for k, v in row.items()}}


@recs.post("", response_model=RecommendationResponse)
def post_recommendation(req: RecommendationRequest, state: State,
                        request: Request) -> RecommendationResponse:
    """Target weights, moves and costs for the requested pools."""
    try:
        return recommend(req, state, request.app.state.settings.max_feature_age_hours)
    except UnknownPoolsError as exc:
        raise HTTPException(404, detail={"unknown_pools": exc.pools,
                                         "message": "these pools are not served"}) from exc
    except ValueError as exc:  # allocator input problems are the caller's (e.g. bad pool)
        raise HTTPException(422, detail=str(exc)) from exc


def _reload_if_changed(app: FastAPI) -> None:
    s: ServiceSettings = app.state.settings
    state: ServiceState | None = getattr(app.state, "service", None)
    key = champion_versions(tracking_uri(s.workdir)) if s.use_registry else None
    if state is not None and (key is None or key == state.champion_key):
        return
    new = load_state(s.workdir, use_registry=s.use_registry)  # built fully, then swapped
    app.state.service = new
    app.state.metrics.set_state(new)
    log.info("loaded state as of %s with models %s", new.as_of, new.model_versions)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the app; state loads at start-up and reloads when the champion changes."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await asyncio.to_thread(_reload_if_changed, app)
        except (DataValidationError, ValueError, OSError) as exc:
            app.state.load_error = str(exc)
            log.error("could not load state: %s", exc)

        async def watch() -> None:
            while True:
                await asyncio.sleep(settings.reload_interval_s)
                try:
                    await asyncio.to_thread(_reload_if_changed, app)
                except Exception as exc:  # noqa: BLE001 - keep serving the old state
                    log.warning("reload failed, keeping the current state: %s", exc)

        task = asyncio.create_task(watch())
        yield
        task.cancel()

    app = FastAPI(title="lp-allocator", version="0.1.0", lifespan=lifespan,
                  description="Liquidity allocation recommendations across AMM pools.")
    app.state.settings = settings
    app.state.metrics = Metrics()

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                    ) -> Response:
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        m: Metrics = app.state.metrics
        m.requests.labels(route=path, method=request.method, status=str(response.status_code)
                          ).inc()
        m.latency.labels(route=path).observe(time.perf_counter() - t0)
        return response

    for r in (health, pools, recs):
        app.include_router(r)
    return app


def run_server(workdir: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the app with uvicorn (loopback by default)."""
    import uvicorn

    app = create_app(ServiceSettings(workdir=workdir))
    uvicorn.run(app, host=host, port=port, log_level="info")
