"""Panel in, feature table and forward labels out; stored with their version and config."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from rich.progress import Progress

from features import names
from features._wide import make_grid, periods_per_year
from features.labels import (
    FWD_FEE_YIELD,
    FWD_IL,
    FWD_STRESS,
    FWD_STRESS_CAUSE,
    FWD_STRESS_ONSET,
    FWD_VOLATILITY,
    forward_fee_yield,
    forward_il,
    forward_lp_stress,
    forward_volatility,
)
from features.schema import (
    FEES_USD,
    FREQUENCIES,
    MISSING,
    POOL_ID,
    STABLECOINS,
    TIMESTAMP,
    TOKEN0,
    TOKEN0_PRICE_USD,
    TOKEN1,
    TOKEN1_PRICE_USD,
    TVL_USD,
    DataValidationError,
    Panel,
    parse_duration,
    validate_meta,
    window_periods,
)
from features.sources.store import atomic_dir
from features.stages import (
    BuildPlan,
    cross_stage,
    exchange_series,
    finish_stage,
    pool_stage,
    wide_inputs,
)

__all__ = ["FeatureConfig", "FeatureSet", "build_features", "write_features", "read_features",
           "FEATURE_SET_VERSION", "feature_columns", "plan_build", "forward_labels",
           "features_digest", "feature_manifest", "PARQUET_OPTIONS"]

FEATURE_SET_VERSION = "2.1"  # 2.0: names carry durations; 2.1: LP-side stress label
KEY_COLUMNS = [POOL_ID, TIMESTAMP, MISSING]
# dictionary-encode the pool ids only: trying it on every float column costs 5x the write time
PARQUET_OPTIONS: dict[str, Any] = {"index": False, "use_dictionary": [POOL_ID]}


class FeatureConfig(BaseModel):
    """Feature and label settings ([features] table of a TOML config)."""

    model_config = ConfigDict(extra="forbid")

    windows: list[str] = Field(default=["6h", "24h", "7d", "30d"],
                               description="rolling windows (durations)")
    ewm_halflife: str = Field(default="24h", description="EWMA half-life (duration)")
    corr_window: str = Field(default="7d", description="window of market correlation / beta")
    horizon: str | None = Field(default=None, description="label horizon; None: 24h for "
                                "panels finer than a day, 7d for daily panels")
    stress_quantile: float = Field(default=0.9, gt=0, lt=1, description=(
        "LP stress: trailing quantile of the pool's own past horizons a window must exceed"))
    stress_history: str = Field(default="730d", description="span of past horizons read")
    stress_min_history: str = Field(default="7d", description="history needed for a label")
    stress_min_divergence: float = Field(default=0.05, description=(
        "floor of the divergence threshold, |log price ratio|"))
    stress_min_flight: float = Field(default=0.2, description=(
        "floor of the liquidity-flight threshold, log TVL net of price"))
    stress_peg_break: float = Field(default=0.02, description="stablecoin deviation, USD")

    def horizon_for(self, freq: str) -> pd.Timedelta:
        """Label horizon for a panel frequency."""
        daily = FREQUENCIES[freq] >= pd.Timedelta(days=1)
        return parse_duration(self.horizon or ("7d" if daily else "24h"))


@dataclass
class FeatureSet:
    """Feature table, forward labels and what produced them."""

    features: pd.DataFrame
    labels: pd.DataFrame
    meta: pd.DataFrame
    freq: str
    horizon: pd.Timedelta
    config: dict[str, Any] = field(default_factory=dict)
    version: str = FEATURE_SET_VERSION

    @property
    def horizon_periods(self) -> int:
        """Label horizon in panel periods."""
        return int(self.horizon // FREQUENCIES[self.freq])

    @property
    def digest(self) -> str:
        """Short hash of the config, columns and version that produced the table."""
        return features_digest(self.config, list(self.features.columns), self.version)


def features_digest(config: dict[str, Any], columns: list[str], version: str) -> str:
    """Short hash of the config, table columns and feature-set version of a feature table."""
    blob = json.dumps({"config": config, "columns": columns, "version": version},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def feature_manifest(config: dict[str, Any], columns: list[str], freq: str,
                     horizon: pd.Timedelta, rows: int, as_of: Any,
                     version: str = FEATURE_SET_VERSION) -> dict[str, Any]:
    """The manifest stored beside a feature table (``columns``: every table column)."""
    return {"version": version, "digest": features_digest(config, columns, version),
            "freq": freq, "horizon": str(horizon), "config": config, "rows": rows,
            "columns": [c for c in columns if c not in KEY_COLUMNS], "as_of": str(as_of)}


def feature_columns(features: pd.DataFrame) -> list[str]:
    """Names of the model input columns of a feature table."""
    return [c for c in features.columns if c not in KEY_COLUMNS]


def _valid_windows(cfg: FeatureConfig, freq: str) -> dict[str, int]:
    """Windows of at least two periods at this frequency: duration label -> periods, shortest
    first (spellings of one duration, such as 1d and 24h, count once)."""
    out: dict[str, int] = {}
    for w in cfg.windows:
        n = window_periods(w, freq)
        if n:
            out.setdefault(names.duration_label(w), n)
    if not out:
        raise ValueError(f"[features] windows: no window spans two {freq} periods: "
                         f"{cfg.windows}")
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


def _halflives(cfg: FeatureConfig, step: pd.Timedelta, horizon_periods: int) -> dict[str, int]:
    """EWMA half-lives, duration label -> periods: the configured one (at least one period),
    then the label horizon's, which the EWMA baselines read."""
    n = max(1, int(parse_duration(cfg.ewm_halflife) // step))
    out = {names.duration_label(n * step): n}
    out.setdefault(names.duration_label(horizon_periods * step), horizon_periods)
    return out


def plan_build(meta: pd.DataFrame, freq: str, times: pd.DatetimeIndex, pools: list[str],
               config: FeatureConfig | None = None) -> BuildPlan:
    """The settings, pool order and time axis every partition of one build shares."""
    cfg = config or FeatureConfig()
    step = FREQUENCIES[freq]
    windows = _valid_windows(cfg, freq)
    horizon = cfg.horizon_for(freq)
    h = int(horizon // step)
    if h < 1:
        raise ValueError(f"horizon {horizon} is shorter than one {freq} period")
    return BuildPlan(
        freq=freq, times=times, pools=list(pools),
        meta=meta.set_index(POOL_ID).loc[list(pools)].reset_index(), windows=windows,
        halflives=_halflives(cfg, step, h),
        har={hw: window_periods(hw, freq) or 1 for hw in names.HAR_WINDOWS},
        ppy=periods_per_year(freq), horizon=horizon, h=h,
        corr_w=max(2, int(parse_duration(cfg.corr_window) // step)),
        stress={"quantile": cfg.stress_quantile,
                "history": max(1, int(parse_duration(cfg.stress_history) // step)),
                "min_history": max(1, int(parse_duration(cfg.stress_min_history) // step)),
                "min_divergence": cfg.stress_min_divergence,
                "min_flight": cfg.stress_min_flight, "peg_break": cfg.stress_peg_break})


def forward_labels(plan: BuildPlan, w: dict[str, Any], feats: dict[str, np.ndarray],
                   idx: np.ndarray) -> dict[str, np.ndarray]:
    """Forward labels, (periods x pools) each, of the pools ``idx`` of the plan.

    ``w`` holds their panel columns and ``feats`` their features (cross-pool ones included).
    """
    ret = feats[names.period(names.RET, plan.freq)]
    h, s = plan.h, plan.stress
    meta = plan.meta.iloc[idx]
    stable_pair = (meta[TOKEN0].isin(STABLECOINS) & meta[TOKEN1].isin(STABLECOINS)).to_numpy()
    stress = forward_lp_stress(
        w[TOKEN0_PRICE_USD], w[TOKEN1_PRICE_USD], w[TVL_USD], stable_pair, h,
        quantile=s["quantile"], history=int(s["history"]), min_history=int(s["min_history"]),
        min_divergence=s["min_divergence"], min_flight=s["min_flight"],
        peg_break=s["peg_break"])
    return {
        FWD_FEE_YIELD: forward_fee_yield(w[FEES_USD], w[TVL_USD], h),
        FWD_VOLATILITY: forward_volatility(ret, h, plan.ppy),
        FWD_IL: forward_il(w[TOKEN0_PRICE_USD], w[TOKEN1_PRICE_USD], h),
        FWD_STRESS: stress.stress,
        FWD_STRESS_ONSET: stress.onset,
        FWD_STRESS_CAUSE: stress.cause.astype(float),
    }


def build_features(
    panel: Panel, config: FeatureConfig | None = None, progress: bool = False
) -> FeatureSet:
    """Compute causal features and forward labels for every row of the panel."""
    cfg = config or FeatureConfig()
    frame = panel.frame
    grid = make_grid(frame, panel.freq)
    plan = plan_build(panel.meta, panel.freq, grid.times, grid.pools, cfg)
    stages = ["volatility", "flow", "network", "labels", "assemble"]
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("features", total=len(stages))

        def step(name: str) -> None:
            bar.update(task, advance=1, description=f"features: {name}")

        w = wide_inputs(frame, grid)
        idx = np.arange(len(grid.pools))
        feats, gaps = pool_stage(plan, w, idx, step)
        feats.update(cross_stage(plan, exchange_series(plan, feats, w)))
        feats.update(gaps)
        step("network")
        labels = forward_labels(plan, w, feats, idx)
        step("labels")
        features, labels_long = finish_stage(frame, grid, feats, labels, step)
    return FeatureSet(features=features, labels=labels_long, meta=panel.meta.copy(),
                      freq=panel.freq, horizon=plan.horizon, config=cfg.model_dump(),
                      version=FEATURE_SET_VERSION)


def write_features(fs: FeatureSet, workdir: Path) -> Path:
    """Store features, labels and a manifest under workdir/features atomically."""
    target = Path(workdir) / "features"

    def fill(tmp: Path) -> None:
        fs.features.to_parquet(tmp / "features.parquet", **PARQUET_OPTIONS)
        fs.labels.to_parquet(tmp / "labels.parquet", **PARQUET_OPTIONS)
        fs.meta.to_csv(tmp / "pools.csv", index=False)
        manifest = feature_manifest(fs.config, list(fs.features.columns), fs.freq, fs.horizon,
                                    len(fs.features), fs.features[TIMESTAMP].max(), fs.version)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))

    atomic_dir(target, fill)
    return target


def read_features(workdir: Path) -> FeatureSet:
    """Load the stored feature set of a work directory."""
    d = Path(workdir) / "features"
    if not (d / "manifest.json").exists():
        raise DataValidationError(f"no feature table in {d}; run `lpa features build` first",
                                  source=str(d), rule="features present")
    man = json.loads((d / "manifest.json").read_text())
    if man.get("version") != FEATURE_SET_VERSION:
        raise DataValidationError(
            f"feature table in {d} is version {man.get('version')}, this code reads "
            f"{FEATURE_SET_VERSION} (names or labels changed); run `lpa features build` again",
            source=str(d / "manifest.json"), field="version", rule="feature set version")
    features = pd.read_parquet(d / "features.parquet")
    labels = pd.read_parquet(d / "labels.parquet")
    meta = validate_meta(pd.read_csv(d / "pools.csv", dtype={POOL_ID: str}), str(d / "pools.csv"))
    return FeatureSet(features=features, labels=labels, meta=meta, freq=man["freq"],
                      horizon=parse_duration(man["horizon"]), config=man["config"],
                      version=man["version"])
