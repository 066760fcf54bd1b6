"""Forecaster factory per target and kind, model inputs aligned with labels, the bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import names
from features._wide import periods_per_year
from features.build import FeatureSet
from features.labels import FWD_FEE_YIELD, FWD_STRESS, FWD_STRESS_ONSET, FWD_VOLATILITY
from features.schema import (
    CHAIN,
    FEE_TIER,
    FREQUENCIES,
    POOL_ID,
    PROTOCOL,
    TIMESTAMP,
    TOKEN0,
    TOKEN1,
    TVL_USD,
)
from models.base import FORECASTERS, PROB_COLUMN, BaseForecaster, ForecastError
from models.baselines import BaseRateStress, ColumnForecaster, HARForecaster
from models.garch import GARCHVolatility
from models.gbm import LightGBMQuantile
from models.names import MEAN_COLUMN, ModelKind, Target, kinds_for
from models.stress import LightGBMStress

__all__ = ["TARGETS", "make_forecaster", "load_forecaster", "history_periods", "model_matrix",
           "inputs_and_labels", "align_labels", "seasonal_naive", "baseline_columns",
           "lightgbm_baselines", "stress_onsets", "ForecastBundle", "PAIR"]

PAIR = "pair"  # token0/token1 of a pool, a categorical model input

TARGETS = {Target.fee_yield: FWD_FEE_YIELD, Target.volatility: FWD_VOLATILITY,
           Target.stress: FWD_STRESS}  # target -> label column


def _horizon(freq: str, horizon_periods: int) -> pd.Timedelta:
    return horizon_periods * FREQUENCIES[freq]


def baseline_columns(target: str, freq: str, horizon_periods: int) -> dict[str, tuple[str, float]]:
    """Seasonal-naive and EWMA proxies of a target: name -> (feature column, scale to horizon).

    Both read features over the label horizon (a trailing window and a half-life of that
    duration), which the feature build always makes.
    """
    horizon = _horizon(freq, horizon_periods)
    if target == Target.fee_yield:  # the EWMA is of the per-period yield: times the periods
        return {"seasonal_naive": (names.window(names.FEE_YIELD, horizon), 1.0),
                "ewma": (names.ewm(names.FEE_YIELD_EWM, horizon), float(horizon_periods))}
    if target == Target.volatility:
        return {"seasonal_naive": (names.window(names.RV, horizon), 1.0),
                "ewma": (names.ewm(names.EWMA_VOL, horizon), 1.0)}
    raise ValueError(f"no column baselines for target {target!r}")


def history_periods(kind: str, freq: str, params: dict[str, Any] | None = None) -> int:
    """Rows of a pool's recent history a kind reads to forecast the pool's latest row.

    1 for kinds that read the row alone; the sequence model's lookback (default two weeks of
    a daily panel, a day otherwise) for torch.
    """
    if _kind(kind) is not ModelKind.torch:
        return 1
    daily = FREQUENCIES[freq] >= pd.Timedelta(days=1)
    return int((params or {}).get("lookback", 14 if daily else 24))


def _kind(kind: str) -> ModelKind:
    try:
        return ModelKind(kind)
    except ValueError:
        raise ValueError(f"unknown model kind {kind!r}; expected one of "
                         f"{[k.value for k in ModelKind]}") from None


def _no_model(kind: ModelKind, target: str) -> ValueError:
    return ValueError(f"model kind {kind.value!r} does not forecast {target!r}; kinds for it: "
                      f"{[k.value for k in kinds_for(target)]}")


def lightgbm_baselines(target: str, freq: str, horizon_periods: int) -> list[dict[str, Any]]:
    """Specs of the baselines a LightGBM forecaster of a target may combine with."""
    cols = baseline_columns(target, freq, horizon_periods)
    specs: list[dict[str, Any]] = [
        {"kind": ColumnForecaster.kind, "params": {"column": c, "scale": k, "name": n}}
        for n, (c, k) in cols.items()]
    if target == Target.volatility:
        specs.append({"kind": HARForecaster.kind, "params": {"columns": names.har_columns()}})
        specs.append({"kind": GARCHVolatility.kind, "params": _garch_params(freq,
                                                                            horizon_periods)})
    return specs


def _garch_params(freq: str, horizon_periods: int) -> dict[str, Any]:
    return {"return_column": names.period(names.RET, freq),
            "init_column": names.window(names.RV, "30d"), "horizon_periods": horizon_periods,
            "periods_per_year": periods_per_year(freq)}


def make_forecaster(kind: str, target: str, freq: str, horizon_periods: int = 24,
                    **params: Any) -> BaseForecaster:
    """The forecaster of a kind for a target; ValueError when the kind has none for it.

    Baselines: seasonal_naive (trailing value; the base rate for stress), ewma, har and garch
    (volatility only), baseline (EWMA fees, HAR volatility, base-rate stress). Learned:
    lightgbm (pooled, combined with the baselines where that wins on inner folds), torch.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of "
                         f"{[t.value for t in Target]}")
    model = _kind(kind)
    if model not in kinds_for(target):
        raise _no_model(model, target)
    daily = FREQUENCIES[freq] >= pd.Timedelta(days=1)
    seed = int(params.pop("seed", 0))
    stress = target == Target.stress
    if model in (ModelKind.baseline, ModelKind.seasonal_naive) and stress:
        return BaseRateStress()
    if model is ModelKind.har or (model is ModelKind.baseline and target == Target.volatility):
        return HARForecaster()
    if model is ModelKind.garch:
        return GARCHVolatility(**_garch_params(freq, horizon_periods))
    if model in (ModelKind.baseline, ModelKind.ewma, ModelKind.seasonal_naive):
        name = "seasonal_naive" if model is ModelKind.seasonal_naive else "ewma"
        col, scale = baseline_columns(target, freq, horizon_periods)[name]
        return ColumnForecaster(col, scale, name)
    if model is ModelKind.lightgbm:
        stride = int(params.pop("row_stride", 1 if daily else 3))
        if stress:
            return LightGBMStress(seed=seed, row_stride=stride, horizon_periods=horizon_periods,
                                  **params)
        col, scale = baseline_columns(target, freq, horizon_periods)["ewma"]
        params.setdefault("baselines", lightgbm_baselines(target, freq, horizon_periods))
        params.setdefault("anchor", [col, scale])
        return LightGBMQuantile(seed=seed, row_stride=stride, horizon_periods=horizon_periods,
                                **params)
    from models.sequence import GRUForecaster, GRUStress  # torch loads with its first model

    params.setdefault("lookback", history_periods(model, freq))
    if stress:
        return GRUStress(seed=seed, horizon_periods=horizon_periods, **params)
    return GRUForecaster(seed=seed, horizon_periods=horizon_periods, **params)


def load_forecaster(path: Path) -> BaseForecaster:
    """Rebuild a forecaster saved with ``BaseForecaster.save`` from its folder."""
    path = Path(path)
    spec = json.loads((path / "forecaster.json").read_text())
    cls = FORECASTERS.get(spec["kind"])  # the kinds of the modules imported above
    if cls is None:  # the sequence kinds register when their module loads, torch with it
        import models.sequence  # noqa: F401
        cls = FORECASTERS.get(spec["kind"])
    if cls is None:
        raise ForecastError(f"unknown forecaster kind {spec['kind']!r} in {path}; expected one "
                            f"of {sorted(FORECASTERS)}")
    obj = cls(**spec["params"])
    obj._load_state(spec["state"], path)
    if "alarm" in spec:
        a = spec["alarm"]
        obj.alarm_threshold_ = float(a["threshold"])  # type: ignore[attr-defined]
        obj.alarm_x_ = float(a["x"])  # type: ignore[attr-defined]
        obj.alarm_basis_ = str(a["basis"])  # type: ignore[attr-defined]
    obj.fitted_ = True
    return obj


def _log_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(a / b), NaN where it is not finite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(a / b)
    return np.where(np.isfinite(r), r, np.nan)


def model_matrix(fs: FeatureSet) -> pd.DataFrame:
    """Model inputs: the features, pool metadata, calendar and cross-pool signals.

    Added to the feature table: protocol, chain, fee tier and pair (token0/token1) of the pool;
    day of week (and hour of day below daily frequency); per timestamp, the median across pools
    of the trailing fee yield and realised volatility over the horizon and each pool's log ratio
    to them; each pool's trailing volatility relative to its own expanding median. All of these
    read rows at or before t only.
    """
    meta = fs.meta[[POOL_ID, PROTOCOL, CHAIN, FEE_TIER]].copy()
    if {TOKEN0, TOKEN1} <= set(fs.meta.columns):
        meta[PAIR] = fs.meta[TOKEN0].astype(str) + "/" + fs.meta[TOKEN1].astype(str)
    X = fs.features.merge(meta, on=POOL_ID, how="left", validate="many_to_one")
    X = X.reset_index(drop=True)
    ts = pd.to_datetime(X[TIMESTAMP])
    extra: dict[str, np.ndarray] = {"day_of_week": ts.dt.day_of_week.to_numpy(float)}
    if FREQUENCIES[fs.freq] < pd.Timedelta(days=1):
        extra["hour_of_day"] = ts.dt.hour.to_numpy(float)
    hz = names.duration_label(fs.horizon)
    for stem in (names.FEE_YIELD, names.RV):
        col = names.window(stem, hz)
        if col not in X.columns:
            continue
        v = X[col].astype(float)
        mkt = v.groupby(X[TIMESTAMP]).transform("median")
        extra[f"mkt_{col}"] = mkt.to_numpy(float)
        extra[f"rel_{col}"] = _log_ratio(v.to_numpy(float), mkt.to_numpy(float))
        if stem == names.RV:
            own = v.groupby(X[POOL_ID]).transform(lambda s: s.expanding(min_periods=1).median())
            extra[f"{col}_vs_own_median"] = _log_ratio(v.to_numpy(float), own.to_numpy(float))
    return pd.concat([X, pd.DataFrame(extra, index=X.index)], axis=1)


def align_labels(X: pd.DataFrame, labels: pd.DataFrame, column: str) -> pd.Series:
    """The label of each row of X, matched by (pool_id, timestamp), on X's index.

    Rows without a label get NaN. Raises ForecastError if labels repeat a key.
    """
    keys = [POOL_ID, TIMESTAMP]
    lab = labels[[*keys, column]]
    if lab.duplicated(keys).any():
        first = lab.loc[lab.duplicated(keys), keys].iloc[0].tolist()
        raise ForecastError(f"labels repeat the key (pool_id, timestamp) = {first}")
    y = X[keys].merge(lab, on=keys, how="left", validate="many_to_one")[column]
    return pd.Series(y.to_numpy(float), index=X.index, name=column)


def inputs_and_labels(fs: FeatureSet, target: str) -> tuple[pd.DataFrame, pd.Series]:
    """Model inputs and the target's labels, aligned by key on one index."""
    X = model_matrix(fs)
    return X, align_labels(X, fs.labels, TARGETS[Target(target)])


def stress_onsets(X: pd.DataFrame, labels: pd.DataFrame) -> pd.Series | None:
    """Periods from each row of X to its stress onset, on X's index (None if not stored)."""
    if FWD_STRESS_ONSET not in labels.columns:
        return None
    return align_labels(X, labels, FWD_STRESS_ONSET)


def seasonal_naive(X: pd.DataFrame, target: str, freq: str, horizon_periods: int) -> np.ndarray:
    """The seasonal-naive point forecast every model is scored against (MASE)."""
    col, scale = baseline_columns(target, freq, horizon_periods)["seasonal_naive"]
    if col not in X.columns:
        raise ForecastError(f"seasonal-naive forecast needs feature column {col!r}")
    return X[col].to_numpy(float) * scale


class ForecastBundle:
    """One fitted forecaster per target, turned into the allocator's per-pool inputs."""

    def __init__(self, kind: str = "lightgbm", freq: str = "1h", horizon_periods: int = 24,
                 seed: int = 0, **params: Any) -> None:
        self.kind, self.freq, self.horizon_periods = kind, freq, horizon_periods
        self.seed, self.params = seed, params
        self.models_: dict[str, Any] = {}

    def fit(self, X: pd.DataFrame, labels: pd.DataFrame, upto: pd.Timestamp | None = None,
            selection: ForecastBundle | None = None) -> ForecastBundle:
        """Fit each target on rows whose label window ended by ``upto`` (purged).

        Labels are matched to the rows of X by (pool_id, timestamp), not by position. With
        ``selection`` (an earlier fitted bundle of the same kind), models that support it keep
        that bundle's hyper-parameter choice, baseline combination and out-of-sample
        calibration and only refit on the new window (no inner folds).
        """
        X = X.reset_index(drop=True)
        keep = np.ones(len(X), bool)
        if upto is not None:
            horizon = _horizon(self.freq, self.horizon_periods)
            keep = (X[TIMESTAMP] + horizon <= upto).to_numpy()
        for target, col in TARGETS.items():
            m = make_forecaster(self.kind, target, self.freq, self.horizon_periods,
                                seed=self.seed, **self.params)
            y = align_labels(X, labels, col).where(keep)
            prev = selection.models_.get(target) if selection is not None else None
            if (prev is not None and type(prev) is type(m) and hasattr(m, "selection_from")
                    and getattr(prev, "_params", None) == getattr(m, "_params", None)):
                m.selection_from = prev
            try:
                self.models_[target] = m.fit(X, y)
            except ValueError:
                if self.kind == ModelKind.baseline:
                    raise
                fb = make_forecaster(ModelKind.baseline, target, self.freq, self.horizon_periods)
                self.models_[target] = fb.fit(X, y)
        return self

    def predict_rows(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-row forecasts of every target (fee_yield*, volatility*, p_stress).

        ``fee_yield`` is the expected (mean) fee yield over the horizon, which the allocator
        prices; ``fee_yield_q50`` the median. ``volatility`` is the median forecast and
        ``volatility_mean`` the mean. Models that give no mean (the GRU) give their median.
        """
        out = pd.DataFrame(index=X.index)
        for target, model in self.models_.items():
            p = model.predict(X)
            target = str(target)
            if target == Target.stress:
                out[PROB_COLUMN] = p[PROB_COLUMN].to_numpy()
                continue
            mean = (p[MEAN_COLUMN] if MEAN_COLUMN in p else p["q50"]).to_numpy()
            if target == Target.fee_yield:
                out[target] = mean
                out[f"{target}_q50"] = p["q50"].to_numpy()
            else:
                out[target] = p["q50"].to_numpy()
                out[f"{target}_mean"] = mean
            out[f"{target}_q10"] = p["q10"].to_numpy()
            out[f"{target}_q90"] = p["q90"].to_numpy()
        return out

    def predict_pools(self, X: pd.DataFrame, tvl: pd.Series | None = None) -> pd.DataFrame:
        """Allocator inputs for the latest row of each pool in X, indexed by pool_id."""
        X = X.reset_index(drop=True)
        rows = self.predict_rows(X)
        rows[POOL_ID] = X[POOL_ID].to_numpy()
        rows[TIMESTAMP] = X[TIMESTAMP].to_numpy()
        if names.LOG_TVL in X.columns:
            rows[TVL_USD] = np.exp(X[names.LOG_TVL].to_numpy(float))
        last = rows.sort_values(TIMESTAMP).groupby(POOL_ID).tail(1).set_index(POOL_ID)
        last = last.drop(columns=[TIMESTAMP])
        for c in ("fee_yield", "fee_yield_q10", "fee_yield_q50", "fee_yield_q90", "volatility",
                  "volatility_q10", "volatility_q90", "volatility_mean"):
            if c in last:
                last[c] = last[c].clip(lower=0)
        if tvl is not None:
            last[TVL_USD] = tvl.reindex(last.index)
        elif TVL_USD not in last.columns:
            raise ValueError("predict_pools needs TVL: pass tvl or a log_tvl feature column")
        return last

    def versions(self) -> dict[str, str]:
        """Kind of the model behind each target."""
        return {t: m.kind for t, m in self.models_.items()}

