"""Service settings from the environment (pydantic-settings), read once behind a dependency."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipelines.config import resolve_workdir

__all__ = ["ServiceSettings", "get_settings", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 1_000_000


class ServiceSettings(BaseSettings):
    """Service settings (environment prefix ``LPA_``).

    Parameters
    ----------
    workdir : work directory holding ``features/`` and the MLflow store (``LPA_WORKDIR`` or
        ``LPA_HOME``).
    api_key : when set, ``/v1`` routes require it in the ``X-API-Key`` header.
    max_feature_age_hours : features older than this (hours) are flagged stale.
    reload_interval_s : seconds between checks of the registry and the feature table.
    use_registry : serve the registry's champions (else causal baselines fitted at load).
    max_body_bytes : larger request bodies are refused with 413 (bytes).
    """

    model_config = SettingsConfigDict(env_prefix="LPA_", extra="ignore")

    workdir: Path = Field(default_factory=lambda: resolve_workdir(None),
                          validation_alias=AliasChoices("LPA_WORKDIR", "LPA_HOME", "workdir"))
    api_key: str | None = None
    max_feature_age_hours: float = Field(default=48.0, gt=0)
    reload_interval_s: float = Field(default=30.0, gt=0)
    use_registry: bool = True
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, gt=0)


@lru_cache
def get_settings() -> ServiceSettings:
    """Settings read once from the environment (override in tests via dependency_overrides)."""
    return ServiceSettings()
