"""What the service holds in memory: latest features, champion models and per-pool forecasts.

Forecasts depend only on the feature table and the model versions, so they are computed once
when a state is built (start-up or reload); a request only solves the allocation.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.build import FeatureSet, read_features
from features.schema import POOL_ID, TIMESTAMP, DataValidationError
from models.allocation.inputs import Prepared, check_forecasts
from models.forecasts import TARGETS, ForecastBundle, model_matrix
from models.registry import champion_versions, load_champion
from models.routing import PoolStates
from pipelines.config import tracking_uri
from pipelines.route import load_pool_states
from pipelines.service.errors import public_message

__all__ = ["ServiceState", "PoolSlice", "RegistryStatus", "load_state", "pool_forecasts",
           "features_stamp", "registry_configured", "read_champion_key"]

ChampionKey = dict[str, str | None]
_SLICES_KEPT = 64  # pool sets whose inputs are kept ready (clients mostly repeat theirs)


@dataclass(frozen=True)
class PoolSlice:
    """A state's allocator inputs for one ordered pool set, cut once and reused.

    ``prepared`` is the allocator's validated view of the pools; what it prices from the
    forecasts alone is kept on it, so a request pays only for its own capital and weights.
    """

    forecasts: pd.DataFrame
    meta: pd.DataFrame
    p_stress: Any  # numpy array, own stress probability per pool
    data_as_of: list[str]
    prepared: Prepared
    token0: list[str]
    token1: list[str]
    chains: list[str]


def _strings(meta: pd.DataFrame, column: str) -> list[str]:
    """A metadata column as strings ("" for every pool when the column is absent)."""
    if column not in meta.columns:
        return [""] * len(meta)
    return [str(v) for v in meta[column].astype(str).tolist()]


def _targets() -> tuple[str, ...]:
    """Names of the forecast targets, as the registry names them."""
    return tuple(str(t) for t in TARGETS)


@dataclass(frozen=True)
class ServiceState:
    """An immutable snapshot; a reload builds a new one and swaps the reference."""

    workdir: Path
    meta: pd.DataFrame  # indexed by pool_id
    forecasts: pd.DataFrame  # per pool: fee_yield, volatility, p_stress, tvl_usd, ...
    forecast_rows: dict[str, dict[str, float | None]]  # the same, JSON-ready, per pool
    as_of: pd.Timestamp
    pool_as_of: dict[str, str]
    model_versions: dict[str, str]
    champion_key: ChampionKey
    features_stamp: int
    freq: str
    horizon: pd.Timedelta
    loaded_at: float = field(default_factory=time.time)
    pool_states: PoolStates | None = None  # latest tradable state per pool, for routing
    pool_states_error: str | None = None  # why there is none (no panel, no usable row)
    _slices: dict[tuple[str, ...], PoolSlice] = field(default_factory=dict, init=False,
                                                       repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False,
                                  compare=False)

    def pool_slice(self, pools: tuple[str, ...]) -> PoolSlice:
        """Forecasts and metadata of these pools in this order (cached per pool set)."""
        hit = self._slices.get(pools)
        if hit is not None:
            return hit
        fc = self.forecasts.loc[list(pools)]
        meta = self.meta.loc[list(pools)]
        cut = PoolSlice(forecasts=fc, meta=meta,
                        p_stress=np.nan_to_num(fc["p_stress"].to_numpy(float)),
                        data_as_of=[self.pool_as_of.get(p, str(self.as_of)) for p in pools],
                        prepared=check_forecasts(fc, meta), token0=_strings(meta, "token0"),
                        token1=_strings(meta, "token1"), chains=_strings(meta, "chain"))
        with self._lock:
            if len(self._slices) >= _SLICES_KEPT:
                self._slices.pop(next(iter(self._slices)))
            self._slices[pools] = cut
        return cut

    def age_hours(self, now: pd.Timestamp | None = None) -> float:
        """Hours between the latest feature row and now."""
        now = now or pd.Timestamp.now(tz="UTC")
        return float((now - self.as_of) / pd.Timedelta(hours=1))


@dataclass
class RegistryStatus:
    """Last outcome of reading the model registry (``reachable`` is None when not used)."""

    reachable: bool | None = None
    checked_at: float | None = None
    error: str | None = None
    failures: int = 0

    def ok(self) -> None:
        """Record a successful read."""
        self.reachable, self.checked_at, self.error = True, time.time(), None

    def failed(self, error: str) -> None:
        """Record a failed read (the error text must already be safe to publish)."""
        self.reachable, self.checked_at, self.error = False, time.time(), error
        self.failures += 1


def features_stamp(workdir: Path) -> int:
    """Change marker of the stored feature table (manifest mtime in ns; 0 when absent)."""
    try:
        return (Path(workdir) / "features" / "manifest.json").stat().st_mtime_ns
    except OSError:
        return 0


def registry_configured(workdir: Path) -> bool:
    """True when there is a registry to read: a tracking server, or the work dir's store."""
    uri = tracking_uri(workdir)
    return not uri.startswith("sqlite") or (Path(workdir) / "mlflow.db").exists()


def read_champion_key(workdir: Path, use_registry: bool) -> ChampionKey:
    """Champion version per target (all None when the registry is not used or not set up).

    Raises RegistryUnavailableError when the registry is configured but cannot be read.
    """
    if use_registry and registry_configured(workdir):
        return champion_versions(tracking_uri(workdir), _targets())
    return {t: None for t in _targets()}


def pool_forecasts(fs: FeatureSet, models: dict[str, Any] | None) -> pd.DataFrame:
    """Allocator inputs per pool from champion models, or causal baselines when none."""
    X = model_matrix(fs)
    # sequence models read each pool's recent history; 48 periods cover their lookback
    recent = X.sort_values([POOL_ID, TIMESTAMP]).groupby(POOL_ID).tail(48)
    bundle = ForecastBundle("baseline", fs.freq, fs.horizon_periods)
    if models:
        bundle.models_ = dict(models)  # champions predict in the same q10/q50/q90, p_stress form
    else:
        bundle.fit(X, fs.labels)
    return bundle.predict_pools(recent.reset_index(drop=True))  # TVL from log_tvl at t


def _json_rows(forecasts: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Per-pool forecast dicts with non-finite values as None."""
    out: dict[str, dict[str, float | None]] = {}
    for pid, row in zip(forecasts.index, forecasts.to_dict("records"), strict=True):
        out[str(pid)] = {str(k): (float(v) if isinstance(v, int | float) and math.isfinite(v)
                                  else None) for k, v in row.items()}
    return out


def load_state(workdir: Path, use_registry: bool = True,
               champion_key: ChampionKey | None = None) -> ServiceState:
    """Read the latest features and the champion models; build per-pool forecasts once.

    Parameters
    ----------
    workdir : work directory with ``features/`` (and ``mlflow.db`` for the local registry).
    use_registry : load the registry's champions; baselines fitted on the features otherwise.
    champion_key : champion versions already read (target -> version); these exact versions
        are loaded. Read from the registry when None.

    Raises
    ------
    DataValidationError : no usable feature table. RegistryUnavailableError : the registry is
        configured but cannot be read.
    """
    stamp = features_stamp(workdir)
    fs = read_features(workdir)
    key = champion_key if champion_key is not None else read_champion_key(workdir, use_registry)
    models: dict[str, Any] = {}
    versions = {t: "baseline" for t in _targets()}
    if use_registry and all(key.get(t) is not None for t in _targets()):
        uri = tracking_uri(workdir)
        for t in _targets():
            champ = load_champion(t, uri, version=key[t])
            models[t] = champ
            versions[t] = f"{champ.name} v{champ.version} ({champ.kind})"
    forecasts = pool_forecasts(fs, models or None)
    present = fs.features[~fs.features["missing"]]
    last = present.groupby(POOL_ID)[TIMESTAMP].max()
    states, states_error = _pool_states(Path(workdir))
    return ServiceState(
        workdir=Path(workdir), meta=fs.meta.set_index(POOL_ID), forecasts=forecasts,
        forecast_rows=_json_rows(forecasts), as_of=pd.Timestamp(last.max()),
        pool_as_of={str(p): str(t) for p, t in last.items()}, model_versions=versions,
        champion_key=dict(key), features_stamp=stamp, freq=fs.freq, horizon=fs.horizon,
        pool_states=states, pool_states_error=states_error)


def _pool_states(workdir: Path) -> tuple[PoolStates | None, str | None]:
    """The stored panel's latest pool states, or None and why (routing is then unavailable)."""
    try:
        return load_pool_states(workdir), None
    except (DataValidationError, ValueError, OSError) as exc:
        return None, public_message(str(exc), workdir)
