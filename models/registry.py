"""Champion models from the MLflow registry, by alias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from models.pyfunc import to_pyfunc_input

__all__ = ["ChampionModel", "registered_name", "load_champion", "champion_versions", "ALIAS"]

ALIAS = "champion"


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


def load_champion(target: str, tracking_uri: str | None = None) -> ChampionModel:
    """Load the model version holding the champion alias for a target."""
    import mlflow

    client = _client(tracking_uri)
    name = registered_name(target)
    mv = client.get_model_version_by_alias(name, ALIAS)
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{name}@{ALIAS}")
    return ChampionModel(name=name, version=str(mv.version), run_id=str(mv.run_id),
                         kind=str((mv.tags or {}).get("kind", "unknown")), model=model)


def champion_versions(tracking_uri: str | None = None,
                      targets: tuple[str, ...] = ("fee_yield", "volatility", "stress")
                      ) -> dict[str, str | None]:
    """Current champion version per target (None where no champion is set)."""
    client = _client(tracking_uri)
    out: dict[str, str | None] = {}
    for t in targets:
        try:
            out[t] = str(client.get_model_version_by_alias(registered_name(t), ALIAS).version)
        except Exception:  # noqa: BLE001 - missing model or alias both mean "none"
            out[t] = None
    return out
