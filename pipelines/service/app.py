"""The FastAPI app: routers, error shape, metrics and size limit, state load and reload."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from features.schema import DataValidationError
from models.registry import RegistryUnavailableError
from pipelines.service import health, pools, recommendations, routes
from pipelines.service.errors import install_error_handlers, public_message
from pipelines.service.limits import BodySizeLimit
from pipelines.service.metrics import Metrics, MetricsMiddleware
from pipelines.service.settings import ServiceSettings, get_settings
from pipelines.service.state import (
    RegistryStatus,
    ServiceState,
    features_stamp,
    load_state,
    read_champion_key,
    registry_configured,
)

__all__ = ["create_app", "reload_state", "run_server", "check_port"]

log = logging.getLogger("lpa.serve")

_LOAD_ERRORS = (DataValidationError, RegistryUnavailableError, LookupError, ValueError, OSError)


def _public(exc: BaseException, workdir: Path) -> str:
    """An error as /readyz may show it: no addresses, credentials or absolute paths."""
    if isinstance(exc, RegistryUnavailableError):
        return exc.summary
    return public_message(str(exc), workdir)


def reload_state(app: FastAPI) -> bool:
    """Build a new state when the champions or the feature table changed; True if swapped.

    A registry that cannot be read keeps the current state serving (recorded on
    ``app.state.registry`` and in the metrics); the error is raised only when there is no
    state yet.
    """
    s: ServiceSettings = app.state.settings
    status: RegistryStatus = app.state.registry
    metrics: Metrics = app.state.metrics
    current: ServiceState | None = getattr(app.state, "service", None)
    used = s.use_registry and registry_configured(s.workdir)
    try:
        key = read_champion_key(s.workdir, s.use_registry)
        if (current is not None and key == current.champion_key
                and features_stamp(s.workdir) == current.features_stamp):
            if used:
                status.ok()
                metrics.set_registry(status, failed_now=False)
            return False
        new = load_state(s.workdir, use_registry=s.use_registry, champion_key=key)
    except RegistryUnavailableError as exc:
        status.failed(exc.summary)
        metrics.set_registry(status, failed_now=True)
        log.warning("model registry unreachable; %s: %s",
                    "keeping the loaded models" if current else "nothing loaded", exc)
        if current is None:
            raise
        return False
    if used:
        status.ok()
        metrics.set_registry(status, failed_now=False)
    app.state.service = new  # built fully, then swapped in one assignment
    app.state.load_error = None
    metrics.set_state(new)
    log.info("loaded state as of %s with models %s", new.as_of, new.model_versions)
    return True


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the app; state loads at start-up and reloads when champions or features change.

    ``settings`` replaces the environment's (``get_settings``) for every route.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s: ServiceSettings = app.state.settings
        try:
            await asyncio.to_thread(reload_state, app)
        except _LOAD_ERRORS as exc:
            app.state.load_error = _public(exc, s.workdir)
            log.error("could not load state: %s", exc)

        async def watch() -> None:
            while True:
                await asyncio.sleep(s.reload_interval_s)
                try:
                    await asyncio.to_thread(reload_state, app)
                except Exception as exc:  # noqa: BLE001 - keep serving the old state
                    if getattr(app.state, "service", None) is None:
                        app.state.load_error = _public(exc, s.workdir)
                    log.warning("reload failed, keeping the current state: %s", exc)

        task = asyncio.create_task(watch())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="lp-allocator", version="0.1.0", lifespan=lifespan,
                  description="Liquidity allocation recommendations across AMM pools.")
    if settings is not None:
        app.dependency_overrides[get_settings] = lambda: settings
    app.state.settings = settings or get_settings()
    app.state.metrics = Metrics()
    app.state.registry = RegistryStatus()
    app.state.service = None
    app.state.load_error = "loading"
    install_error_handlers(app)
    for module in (health, pools, recommendations, routes):
        app.include_router(module.router)
    # outermost first: count every answer, including the size limit's 413
    app.add_middleware(BodySizeLimit, max_bytes=app.state.settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


def check_port(port: int) -> int:
    """The port if it is a valid TCP port (1-65535), else ValueError saying so."""
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"--port {port} is not a TCP port; expected an integer in 1-65535")
    return int(port)


def run_server(workdir: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the app with uvicorn (loopback by default)."""
    import uvicorn

    check_port(port)
    app = create_app(ServiceSettings(workdir=workdir))
    uvicorn.run(app, host=host, port=port, log_level="info")
