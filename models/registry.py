"""Champion models from the MLflow registry: read the alias once, load that exact version.

Two outcomes are kept apart: a registry that answers "no such model / no champion alias"
(``None`` versions) and a registry that cannot be reached or fails (`RegistryUnavailableError`).
Every call goes through an explicit `MlflowClient` and explicit URIs; MLflow's process-wide
tracking and registry URIs are never changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from models.pyfunc import to_pyfunc_input

__all__ = ["ChampionModel", "RegistryUnavailableError", "registered_name", "load_champion",
           "champion_versions", "ALIAS", "TARGET_NAMES"]

ALIAS = "champion"
TARGET_NAMES = ("fee_yield", "volatility", "stress")
_NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"


class RegistryUnavailableError(RuntimeError):
    """The model registry could not be read (outage, refused connection, broken store).

    ``summary`` names the model and the error kind without the cause's text (which may carry
    the registry's address or credentials); ``str()`` has the full cause for logs.
    """

    def __init__(self, model: str, cause: BaseException) -> None:
        self.model = model
        self.cause_type = type(cause).__name__
        self.error_code = str(getattr(cause, "error_code", "") or "")
        code = f" {self.error_code}" if self.error_code else ""
        self.summary = (f"model registry unreachable while reading {model!r} "
                        f"({self.cause_type}{code})")
        super().__init__(f"{self.summary}: {cause}")


def registered_name(target: str) -> str:
    """Registry name of a target's model."""
    return f"lpa-{target}"


@dataclass
class ChampionModel:
    """A loaded champion pyfunc with its registry coordinates."""

    name: str
    version: str
    run_id: str
    kind: str
    model: Any

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Forecasts for X (index aligned)."""
        out = self.model.predict(to_pyfunc_input(X))
        out = pd.DataFrame(out)
        out.index = X.index
        return out


def _client(tracking_uri: str | None) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _is_not_found(exc: BaseException) -> bool:
    """True when the registry answered that the model does not exist."""
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code == _NOT_FOUND


def _champion_version(client: Any, name: str) -> str | None:
    """Version holding the champion alias of a registered model (None: no model or alias)."""
    try:
        rm = client.get_registered_model(name)
    except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
        if _is_not_found(exc):
            return None
        raise RegistryUnavailableError(name, exc) from exc
    version = (getattr(rm, "aliases", None) or {}).get(ALIAS)
    return None if version is None else str(version)


def champion_versions(tracking_uri: str | None = None,
                      targets: tuple[str, ...] = TARGET_NAMES) -> dict[str, str | None]:
    """Current champion version per target (None where no model or no champion alias).

    Raises
    ------
    RegistryUnavailableError : the registry could not be read; "no champion" is never inferred
        from a failure.
    """
    client = _client(tracking_uri)
    return {t: _champion_version(client, registered_name(t)) for t in targets}


def load_champion(target: str, tracking_uri: str | None = None,
                  version: str | None = None) -> ChampionModel:
    """Load one registered version of a target's model (the current champion when None).

    The version is resolved once and the artefacts of ``models:/<name>/<version>`` are loaded,
    so an alias moved meanwhile cannot mix two versions.

    Raises
    ------
    LookupError : no champion alias is set (when ``version`` is None).
    RegistryUnavailableError : the registry or artefact store could not be read.
    """
    import mlflow

    client = _client(tracking_uri)
    name = registered_name(target)
    if version is None:
        version = _champion_version(client, name)
        if version is None:
            raise LookupError(f"no {ALIAS!r} alias on registered model {name!r}")
    try:
        mv = client.get_model_version(name, str(version))
        source = client.get_model_version_download_uri(name, str(version))
        local = mlflow.artifacts.download_artifacts(artifact_uri=source,
                                                    tracking_uri=tracking_uri,
                                                    registry_uri=tracking_uri)
    except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
        if _is_not_found(exc):
            raise LookupError(f"registered model {name!r} has no version {version}") from exc
        raise RegistryUnavailableError(name, exc) from exc
    model = mlflow.pyfunc.load_model(local)
    return ChampionModel(name=name, version=str(mv.version), run_id=str(mv.run_id),
                         kind=str((mv.tags or {}).get("kind", "unknown")), model=model)
