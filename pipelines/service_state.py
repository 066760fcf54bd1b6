"""What the service holds in memory: latest features, champion models and per-pool forecasts."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from features.build import FeatureSet, read_features
from features.schema import POOL_ID, TIMESTAMP
from models.forecasts import TARGETS, ForecastBundle, model_matrix
from models.registry import champion_versions, load_champion
from pipelines.config import tracking_uri

__all__ = ["ServiceState", "load_state", "pool_forecasts"]


@dataclass
class ServiceState:
    """An immutable snapshot; a reload builds a new one and swaps the reference."""

    workdir: Path
    meta: pd.DataFrame  # indexed by pool_id
    forecasts: pd.DataFrame  # per pool: fee_yield, volatility, p_stress, tvl_usd, ...
    as_of: pd.Timestamp
    pool_as_of: pd.Series
    model_versions: dict[str, str]
    champion_key: dict[str, str | None]
    freq: str
    horizon: pd.Timedelta
    loaded_at: float = field(default_factory=time.time)

    def age_hours(self, now: pd.Timestamp | None = None) -> float:
        """Hours between the latest feature row and now."""
        now = now or pd.Timestamp.now(tz="UTC")
        return float((now - self.as_of) / pd.Timedelta(hours=1))


def _latest_rows(X: pd.DataFrame, periods: int) -> pd.DataFrame:
    """The last ``periods`` rows of each pool (history for sequence models)."""
    return X.sort_values([POOL_ID, TIMESTAMP]).groupby(POOL_ID).tail(periods)


def pool_forecasts(fs: FeatureSet, models: dict[str, Any] | None) -> pd.DataFrame:
    """Allocator inputs per pool from champion models, or causal baselines when none."""
    X = model_matrix(fs)
    recent = _latest_rows(X, 48)  # sequence models read each pool's recent history
    bundle = ForecastBundle("baseline", fs.freq, fs.horizon_periods)
    if models:
        bundle.models_ = dict(models)  # champions predict in the same q10/q50/q90, p_stress form
    else:
        bundle.fit(X, fs.labels)
    return bundle.predict_pools(recent.reset_index(drop=True))  # TVL from log_tvl at t


def load_state(workdir: Path, use_registry: bool = True) -> ServiceState:
    """Read the latest features and the champion models; build per-pool forecasts."""
    fs = read_features(workdir)
    uri = tracking_uri(workdir)
    key: dict[str, str | None] = {t: None for t in TARGETS}
    models: dict[str, Any] = {}
    versions = {t: "baseline" for t in TARGETS}
    if use_registry and ((Path(workdir) / "mlflow.db").exists() or not uri.startswith("sqlite")):
        key = champion_versions(uri)
        if all(v is not None for v in key.values()):
            for t in TARGETS:
                champ = load_champion(t, uri)
                models[t] = champ
                versions[t] = f"{champ.name} v{champ.version} ({champ.kind})"
    forecasts = pool_forecasts(fs, models or None)
    present = fs.features[~fs.features["missing"]]
    pool_as_of = present.groupby(POOL_ID)[TIMESTAMP].max()
    meta = fs.meta.set_index(POOL_ID)
    return ServiceState(workdir=Path(workdir), meta=meta, forecasts=forecasts,
                        as_of=pd.Timestamp(pool_as_of.max()), pool_as_of=pool_as_of,
                        model_versions=versions, champion_key=key, freq=fs.freq,
                        horizon=fs.horizon)
