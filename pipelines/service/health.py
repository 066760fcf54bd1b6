"""Health resource: liveness, readiness (with the registry's state) and Prometheus metrics."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipelines.service.deps import SettingsDep
from pipelines.service.metrics import Metrics
from pipelines.service.schemas import Health, Readiness, RegistryInfo
from pipelines.service.state import RegistryStatus, ServiceState

__all__ = ["router"]

router = APIRouter(tags=["health"])


class PrometheusResponse(Response):
    """Prometheus text exposition format."""

    media_type = CONTENT_TYPE_LATEST


def _registry_info(status: RegistryStatus, used: bool) -> RegistryInfo:
    at = (None if status.checked_at is None
          else dt.datetime.fromtimestamp(status.checked_at, dt.UTC).isoformat())
    return RegistryInfo(used=used, reachable=status.reachable, checked_at=at,
                        error=status.error, failures=status.failures)


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Liveness: the process answers."""
    return Health()


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "no state loaded"}})
def readyz(request: Request, response: Response, settings: SettingsDep) -> Readiness:
    """Readiness: a state is loaded; says when the registry failed and old models serve."""
    status: RegistryStatus = request.app.state.registry
    info = _registry_info(status, settings.use_registry)
    state: ServiceState | None = getattr(request.app.state, "service", None)
    if state is None:
        response.status_code = 503
        reason = getattr(request.app.state, "load_error", None) or "loading"
        return Readiness(ready=False, reason=reason, registry=info)
    degraded = status.reachable is False
    return Readiness(ready=True, degraded=degraded,
                     reason=("model registry unreachable: serving the models loaded at "
                             "the last successful read" if degraded else None),
                     as_of=str(state.as_of), pools=len(state.meta),
                     model_versions=state.model_versions, registry=info)


@router.get("/metrics", response_class=PrometheusResponse,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus text format"}})
def metrics(request: Request) -> PrometheusResponse:
    """Prometheus exposition of request counts, latency, model versions and registry state."""
    m: Metrics = request.app.state.metrics
    state: ServiceState | None = getattr(request.app.state, "service", None)
    if state is not None:
        m.feature_age.set(state.age_hours())
    return PrometheusResponse(generate_latest(m.registry))
