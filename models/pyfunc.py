"""MLflow pyfunc wrapper: native artefacts (LightGBM text, torch state_dict, JSON) + loader."""

from __future__ import annotations

import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature

from features.schema import TIMESTAMP
from models.base import BaseForecaster
from models.forecasts import load_forecaster

__all__ = ["ForecasterModel", "log_forecaster", "to_pyfunc_input", "from_pyfunc_input",
           "pip_requirements"]

# what loading and running a saved forecaster imports (the project's own code included)
_RUNTIME = ("lp-allocator", "mlflow", "numpy", "pandas", "pyarrow", "scipy", "scikit-learn",
            "lightgbm", "torch", "arch", "numba")


@cache
def pip_requirements() -> list[str]:
    """Pinned requirements of a logged forecaster: the installed versions of what it imports.

    Stated rather than inferred: MLflow's inference loads the model in a subprocess (seconds
    per model) and misses packages the forecaster imports lazily (LightGBM, torch)."""
    out = []
    for name in _RUNTIME:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def to_pyfunc_input(X: pd.DataFrame) -> pd.DataFrame:
    """Model input as MLflow schemas accept it: naive UTC timestamps, plain strings, floats."""
    out = X.copy()
    ts = out[TIMESTAMP]
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        out[TIMESTAMP] = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype) or out[c].dtype == object:
            out[c] = out[c].astype(str)
        elif pd.api.types.is_bool_dtype(out[c]):
            out[c] = out[c].astype(bool)
        elif pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].astype("float64")
    return out


def from_pyfunc_input(X: pd.DataFrame) -> pd.DataFrame:
    """Undo to_pyfunc_input: timestamps back to UTC-aware."""
    out = X.copy()
    ts = pd.to_datetime(out[TIMESTAMP])
    out[TIMESTAMP] = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    return out


class ForecasterModel(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined,misc]
    """Rebuilds a saved forecaster from its artefact folder and predicts with it."""

    def load_context(self, context: Any) -> None:
        """Load the forecaster from the logged artefact folder."""
        self.forecaster = load_forecaster(Path(context.artifacts["forecaster"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """Forecasts for the rows of model_input."""
        return self.forecaster.predict(from_pyfunc_input(model_input)).reset_index(drop=True)


def log_forecaster(
    forecaster: BaseForecaster, name: str, X_example: pd.DataFrame,
    registered_model_name: str | None = None, tags: dict[str, str] | None = None,
) -> Any:
    """Log a fitted forecaster as a pyfunc model with a signature; optionally register it."""
    example = to_pyfunc_input(X_example.head(50))
    preds = forecaster.predict(X_example.head(50)).reset_index(drop=True)
    signature = infer_signature(example, preds)
    with tempfile.TemporaryDirectory() as tmp:
        folder = forecaster.save(Path(tmp) / "forecaster")
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("_pyfunc_entry.py")),
            artifacts={"forecaster": str(folder)},
            signature=signature,
            input_example=example.head(5),
            registered_model_name=registered_model_name,
            tags=tags,
            pip_requirements=pip_requirements(),
        )
    return info
