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
from features._wide import make_grid, periods_per_year, rolling_mean
from features.flow import fee_yield, flow_features
from features.labels import (
    FWD_FEE_YIELD,
    FWD_IL,
    FWD_STRESS,
    FWD_VOLATILITY,
    forward_fee_yield,
    forward_il,
    forward_stress,
    forward_volatility,
)
from features.network import network_features, token_adjacency
from features.schema import (
    CHAIN,
    CLOSE,
    FEES_USD,
    FREQUENCIES,
    HIGH,
    LOW,
    MISSING,
    OPEN,
    POOL_ID,
    STABLECOINS,
    TIMESTAMP,
    TOKEN0,
    TOKEN0_PRICE_USD,
    TOKEN1,
    TOKEN1_PRICE_USD,
    TVL_USD,
    TX_COUNT,
    VOLUME_USD,
    DataValidationError,
    Panel,
    parse_duration,
    validate_meta,
    window_periods,
)
from features.sources.store import atomic_dir
from features.volatility import realized_vol, volatility_features

__all__ = ["FeatureConfig", "FeatureSet", "build_features", "write_features", "read_features",
           "FEATURE_SET_VERSION", "feature_columns"]

FEATURE_SET_VERSION = "2.0"  # 2.0: names carry durations, not period counts
KEY_COLUMNS = [POOL_ID, TIMESTAMP, MISSING]


class FeatureConfig(BaseModel):
    """Feature and label settings ([features] table of a TOML config)."""

    model_config = ConfigDict(extra="forbid")

    windows: list[str] = Field(default=["6h", "24h", "7d", "30d"],
                               description="rolling windows (durations)")
    ewm_halflife: str = Field(default="24h", description="EWMA half-life (duration)")
    corr_window: str = Field(default="7d", description="window of market correlation / beta")
    horizon: str | None = Field(default=None, description="label horizon; None: 24h for "
                                "panels finer than a day, 7d for daily panels")
    stress_drawdown: float = Field(default=0.1, description="log price move for stress")
    stress_tvl_flight: float = Field(default=0.2, description="TVL drop fraction for stress")
    stress_vol_spike: float = Field(default=2.5, description="forward / trailing vol ratio")
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
        blob = json.dumps({"config": self.config, "columns": list(self.features.columns),
                           "version": self.version}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


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


def build_features(
    panel: Panel, config: FeatureConfig | None = None, progress: bool = False
) -> FeatureSet:
    """Compute causal features and forward labels for every row of the panel."""
    cfg = config or FeatureConfig()
    freq = panel.freq
    ppy = periods_per_year(freq)
    windows = _valid_windows(cfg, freq)
    horizon = cfg.horizon_for(freq)
    h = int(horizon // panel.step)
    if h < 1:
        raise ValueError(f"horizon {horizon} is shorter than one {freq} period")
    halflives = _halflives(cfg, panel.step, h)
    corr_w = max(2, int(parse_duration(cfg.corr_window) // panel.step))
    frame = panel.frame
    grid = make_grid(frame, freq)
    meta = panel.meta.set_index(POOL_ID).loc[grid.pools].reset_index()
    stages = ["volatility", "flow", "network", "labels", "assemble"]
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("features", total=len(stages))

        def step(name: str) -> None:
            bar.update(task, advance=1, description=f"features: {name}")

        w = {c: grid.wide(frame[c]) for c in (OPEN, HIGH, LOW, CLOSE, VOLUME_USD, FEES_USD,
                                              TVL_USD, TOKEN0_PRICE_USD, TOKEN1_PRICE_USD)}
        tx = grid.wide(frame[TX_COUNT]) if TX_COUNT in frame.columns else None
        miss = grid.wide(frame[MISSING].astype(float)) if MISSING in frame.columns else None
        har = {hw: window_periods(hw, freq) or 1 for hw in names.HAR_WINDOWS}
        feats = volatility_features(w[OPEN], w[HIGH], w[LOW], w[CLOSE], windows, ppy,
                                    halflives, har, freq)
        ret = feats[names.period(names.RET, freq)]
        step("volatility")
        pairs = (meta[TOKEN0] + "/" + meta[TOKEN1] + "@" + meta[CHAIN]).to_numpy()
        _, pair_idx = np.unique(pairs, return_inverse=True)
        membership = np.eye(int(pair_idx.max()) + 1)[pair_idx]
        feats.update(flow_features(w[VOLUME_USD], w[FEES_USD], w[TVL_USD], tx,
                                   w[TOKEN0_PRICE_USD], w[TOKEN1_PRICE_USD], membership,
                                   windows, ppy, halflives, freq))
        hz = names.duration_label(horizon)
        if hz not in windows:  # the seasonal-naive baselines read the horizon's trailing values
            feats[names.window(names.RV, hz)] = realized_vol(ret, h, ppy)
            feats[names.window(names.FEE_YIELD, hz)] = fee_yield(w[FEES_USD], w[TVL_USD], h)
        step("flow")
        day = names.duration_label("1d")
        short = day if day in windows else next(iter(windows))  # the network's short window
        longest = list(windows)[-1]
        rv_long = feats[names.window(names.RV, longest)]
        adj = token_adjacency(list(meta[TOKEN0]), list(meta[TOKEN1]))
        stable0 = meta[TOKEN0].isin(STABLECOINS).to_numpy()
        stable1 = meta[TOKEN1].isin(STABLECOINS).to_numpy()
        feats.update(network_features(
            ret, feats[names.window(names.RV, short)], rv_long, w[VOLUME_USD],
            feats[names.period("lp_netflow", freq)], w[TVL_USD], w[TOKEN0_PRICE_USD],
            w[TOKEN1_PRICE_USD], adj, stable0, stable1, corr_w, windows[short],
            (short, names.duration_label(corr_w * panel.step)), freq))
        if miss is not None:
            for name, n in windows.items():
                feats[names.window("missing_frac", name)] = rolling_mean(miss, n, min_periods=1)
        step("network")
        labels_wide = {
            FWD_FEE_YIELD: forward_fee_yield(w[FEES_USD], w[TVL_USD], h),
            FWD_VOLATILITY: forward_volatility(ret, h, ppy),
            FWD_IL: forward_il(w[TOKEN0_PRICE_USD], w[TOKEN1_PRICE_USD], h),
            FWD_STRESS: forward_stress(
                w[CLOSE], w[TVL_USD], ret, rv_long, feats["peg_dev"], h, ppy,
                drawdown=cfg.stress_drawdown, tvl_flight=cfg.stress_tvl_flight,
                vol_spike=cfg.stress_vol_spike, peg_break=cfg.stress_peg_break),
        }
        step("labels")
        keys = {POOL_ID: frame[POOL_ID].to_numpy(), TIMESTAMP: frame[TIMESTAMP].to_numpy()}
        missing = (frame[MISSING].to_numpy(bool) if MISSING in frame.columns
                   else np.zeros(len(frame), bool))
        fcols: dict[str, np.ndarray] = {}
        for k, v in feats.items():
            col = grid.long(v).astype(np.float32)
            col[~np.isfinite(col) | missing] = np.nan  # a reindexed gap never carries a value
            fcols[k] = col
        features = pd.DataFrame({**keys, MISSING: missing, **fcols}, copy=False)
        lcols = {}
        for k, v in labels_wide.items():
            col = grid.long(v)
            col[~np.isfinite(col)] = np.nan
            lcols[k] = col
        lab = pd.DataFrame({**keys, **lcols}, copy=False)
        del feats
        step("assemble")
    return FeatureSet(features=features, labels=lab, meta=panel.meta.copy(), freq=freq,
                      horizon=horizon, config=cfg.model_dump(),
                      version=FEATURE_SET_VERSION)


def write_features(fs: FeatureSet, workdir: Path) -> Path:
    """Store features, labels and a manifest under workdir/features atomically."""
    target = Path(workdir) / "features"

    def fill(tmp: Path) -> None:
        fs.features.to_parquet(tmp / "features.parquet", index=False)
        fs.labels.to_parquet(tmp / "labels.parquet", index=False)
        fs.meta.to_csv(tmp / "pools.csv", index=False)
        manifest = {"version": fs.version, "digest": fs.digest, "freq": fs.freq,
                    "horizon": str(fs.horizon), "config": fs.config,
                    "rows": len(fs.features), "columns": feature_columns(fs.features),
                    "as_of": str(fs.features[TIMESTAMP].max())}
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
            f"{FEATURE_SET_VERSION} (column names changed); run `lpa features build` again",
            source=str(d / "manifest.json"), field="version", rule="feature set version")
    features = pd.read_parquet(d / "features.parquet")
    labels = pd.read_parquet(d / "labels.parquet")
    meta = validate_meta(pd.read_csv(d / "pools.csv", dtype={POOL_ID: str}), str(d / "pools.csv"))
    return FeatureSet(features=features, labels=labels, meta=meta, freq=man["freq"],
                      horizon=parse_duration(man["horizon"]), config=man["config"],
                      version=man["version"])
