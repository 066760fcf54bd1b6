"""Forecaster protocol and the checked base class every forecaster derives from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from features.schema import POOL_ID, TIMESTAMP

__all__ = ["Forecaster", "BaseForecaster", "ForecastError", "QUANTILES", "QUANTILE_COLUMNS",
           "PROB_COLUMN", "FORECASTERS"]

QUANTILES = (0.1, 0.5, 0.9)
QUANTILE_COLUMNS = ["q10", "q50", "q90"]
PROB_COLUMN = "p_stress"
FORECASTERS: dict[str, type[BaseForecaster]] = {}  # kind -> class, filled as classes are defined


class ForecastError(ValueError):
    """A forecaster used wrongly: unfitted, misaligned or malformed inputs."""


@runtime_checkable
class Forecaster(Protocol):
    """fit(X, y) -> self; predict(X) -> quantiles q10/q50/q90 or p_stress."""

    def fit(self, X: pd.DataFrame, y: pd.Series) -> Forecaster: ...

    def predict(self, X: pd.DataFrame) -> pd.DataFrame: ...


class BaseForecaster:
    """Public fit/predict check inputs; subclasses implement _fit/_predict and state I/O."""

    kind: ClassVar[str] = "base"
    is_classifier: ClassVar[bool] = False

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.kind != "base":
            FORECASTERS[cls.kind] = cls

    def get_params(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-serialisable)."""
        return dict(self.__dict__.get("_params", {}))

    def _check_X(self, X: pd.DataFrame) -> None:
        """Raise ForecastError if X lacks the key columns."""
        if not isinstance(X, pd.DataFrame):
            raise ForecastError(f"X must be a DataFrame, got {type(X).__name__}")
        missing = [c for c in (POOL_ID, TIMESTAMP) if c not in X.columns]
        if missing:
            raise ForecastError(f"X lacks key column(s) {missing}")

    def fit(self, X: pd.DataFrame, y: pd.Series) -> BaseForecaster:
        """Fit on rows with a finite target; return self."""
        self._check_X(X)
        y = pd.Series(np.asarray(y, dtype=float), index=X.index)
        if len(y) != len(X):
            raise ForecastError(f"y has {len(y)} rows, X has {len(X)}")
        keep = np.isfinite(y.to_numpy())
        if keep.sum() < 10:
            raise ForecastError(f"only {int(keep.sum())} rows with a finite target to fit on")
        self._fit(X.loc[keep], y.loc[keep], X)
        self.fitted_ = True
        return self

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Quantile (or probability) forecasts aligned to X's index."""
        if not getattr(self, "fitted_", False):
            raise ForecastError(f"{self.kind} forecaster is not fitted")
        self._check_X(X)
        out = self._predict(X)
        out.index = X.index
        if self.is_classifier:
            out[PROB_COLUMN] = out[PROB_COLUMN].clip(0, 1)
        else:
            q = np.sort(out[QUANTILE_COLUMNS].to_numpy(float), axis=1)  # no quantile crossing
            out = pd.DataFrame(q, index=X.index, columns=QUANTILE_COLUMNS)
        return out

    def _fit(self, X: pd.DataFrame, y: pd.Series, X_all: pd.DataFrame) -> None:
        raise NotImplementedError

    def _predict(self, X: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError

    # persistence: native files + JSON, never pickles of project classes
    def save(self, path: Path) -> Path:
        """Write the fitted model to a folder (JSON params + native artefacts)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = self._state()
        spec: dict[str, Any] = {"kind": self.kind, "params": self.get_params(), "state": state}
        if hasattr(self, "alarm_threshold_"):  # a stress model's alarm threshold (models.alarm)
            spec["alarm"] = {"threshold": float(self.alarm_threshold_),
                             "x": float(getattr(self, "alarm_x_", float("nan"))),
                             "basis": str(getattr(self, "alarm_basis_", ""))}
        (path / "forecaster.json").write_text(json.dumps(spec, indent=1))
        self._save_native(path)
        return path

    def _state(self) -> dict[str, Any]:
        return {}

    def _save_native(self, path: Path) -> None:
        return None

    def _load_state(self, state: dict[str, Any], path: Path) -> None:
        return None

