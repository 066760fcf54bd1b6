"""Run configuration: work directory, TOML loading and MLflow tracking defaults."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["resolve_workdir", "load_toml_section", "tracking_uri", "configure_mlflow",
           "config_from"]

DEFAULT_WORKDIR = "lpa-work"
# work-directory stores this process pointed MLflow at: mlflow.set_tracking_uri also sets the
# MLFLOW_TRACKING_URI variable, which must not then pass for a server the user chose
_OWN_STORES: set[str] = set()
M = TypeVar("M", bound=BaseModel)


def resolve_workdir(workdir: Path | None = None) -> Path:
    """Work directory from the flag, else env LPA_HOME, else ./lpa-work."""
    if workdir is not None:
        return Path(workdir).expanduser().resolve()
    return Path(os.environ.get("LPA_HOME", DEFAULT_WORKDIR)).expanduser().resolve()


def load_toml_section(path: Path | None, section: str) -> dict[str, Any]:
    """Read one table of a TOML config file (empty dict when no file is given)."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read config {path}: {exc}") from exc
    sect = data.get(section, {})
    if not isinstance(sect, dict):
        raise ValueError(f"config {path}: [{section}] must be a table")
    return sect


def config_from(
    cls: type[M], path: Path | None, section: str, **overrides: Any
) -> M:
    """Build a pydantic config from a TOML section, then CLI overrides that are not None."""
    values = load_toml_section(path, section)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)


def tracking_uri(workdir: Path) -> str:
    """MLflow tracking URI: env MLFLOW_TRACKING_URI, else the sqlite store in the work dir."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env and env not in _OWN_STORES:
        return env
    return _store_uri(workdir)


def _store_uri(workdir: Path) -> str:
    """The sqlite store of a work directory."""
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def configure_mlflow(workdir: Path, experiment: str) -> str:
    """Point MLflow at the work directory's store (or the env server) and select an experiment."""
    import mlflow

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(workdir)
    if uri == _store_uri(workdir):
        _OWN_STORES.add(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        artifacts = None
        if uri.startswith("sqlite:"):
            artifacts = (workdir.resolve() / "mlartifacts").as_uri()
        mlflow.create_experiment(experiment, artifact_location=artifacts)
    mlflow.set_experiment(experiment)
    return uri
