"""Dependencies of the routes: settings, the loaded state, the API key."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from pipelines.service.settings import ServiceSettings, get_settings
from pipelines.service.state import ServiceState

__all__ = ["SettingsDep", "StateDep", "get_state", "require_api_key", "API_KEY_HEADER"]

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="Required on /v1 routes when the service has a key.")

SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]


async def get_state(request: Request) -> ServiceState:
    """The state on ``app.state.service``; 503 while none is loaded."""
    state: ServiceState | None = getattr(request.app.state, "service", None)
    if state is None:
        raise HTTPException(503, detail="models and features not loaded yet")
    return state


async def require_api_key(settings: SettingsDep,
                    key: Annotated[str | None, Security(API_KEY_HEADER)] = None) -> None:
    """401 unless the configured key is given (constant-time comparison)."""
    expected = settings.api_key
    if not expected:
        return
    if key is None or not secrets.compare_digest(key.encode(), expected.encode()):
        raise HTTPException(401, detail="missing or wrong X-API-Key header",
                            headers={"WWW-Authenticate": "APIKey"})


StateDep = Annotated[ServiceState, Depends(get_state)]
