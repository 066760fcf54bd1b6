"""Walk-forward evaluation: every row keeps its own label, predictions carry their cutoff."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest

from features.build import FeatureSet, build_features
from features.sources.simulator import simulate_market
from models.base import QUANTILE_COLUMNS, BaseForecaster, ForecastError
from models.cv import walk_forward_splits
from models.evaluate import evaluate
from models.forecasts import align_labels, inputs_and_labels, make_forecaster, model_matrix


def key_code(frame: pd.DataFrame) -> np.ndarray:
    """A number that names a row's (pool_id, timestamp): a pool number * 1e6 + hours."""
    pool = frame["pool_id"].map(lambda p: zlib.crc32(p.encode()) % 1000).to_numpy(float)
    hours = (frame["timestamp"] - pd.Timestamp("2020-01-01", tz="UTC")) / pd.Timedelta("1h")
    return pool * 1e6 + hours.to_numpy(float)


class KeyEcho(BaseForecaster):
    """Fits only if every label names its own row; forecasts each row's key code."""

    kind = "test_key_echo"

    def __init__(self) -> None:
        self._params = {}

    def _fit(self, X: pd.DataFrame, y: pd.Series, X_all: pd.DataFrame) -> None:
        wrong = y.to_numpy(float) != key_code(X)
        assert not wrong.any(), f"{wrong.mean():.0%} of training rows carry another row's label"

    def _predict(self, X: pd.DataFrame) -> pd.DataFrame:
        code = key_code(X)
        return pd.DataFrame({c: code for c in QUANTILE_COLUMNS})


@pytest.fixture(scope="module")
def fs() -> FeatureSet:
    panel, _ = simulate_market(n_pools=4, days=30, seed=3)
    fs = build_features(panel)
    fs.labels["fwd_volatility"] = key_code(fs.labels)  # each label names its own key
    assert len(set(key_code(fs.labels))) == len(fs.labels)
    return fs


def test_labels_follow_their_key_when_rows_are_dropped_and_shuffled(fs: FeatureSet) -> None:
    X, y = inputs_and_labels(fs, "volatility")
    inner = (X["timestamp"] <= X["timestamp"].quantile(0.8)).to_numpy()
    Xi, yi = X[inner], y[inner]  # a subset, as tuning's holdout makes
    shuffled = align_labels(Xi, fs.labels.sample(frac=1.0, random_state=1), "fwd_volatility")
    np.testing.assert_array_equal(shuffled.to_numpy(), key_code(Xi))
    folds = walk_forward_splits(Xi["timestamp"], 3, fs.horizon, fs.horizon)
    ev = evaluate(KeyEcho, Xi, yi, folds, target="volatility", freq=fs.freq,
                  horizon_periods=fs.horizon_periods)
    assert (ev.predictions["y"].to_numpy() == key_code(ev.predictions)).all()
    assert ev.metrics["pinball"] == 0.0


def test_predictions_carry_their_cutoff_and_fold_metrics(fs: FeatureSet) -> None:
    X = model_matrix(fs)
    y = align_labels(X, fs.labels, "fwd_stress")
    folds = walk_forward_splits(X["timestamp"], 2, fs.horizon, fs.horizon)
    ev = evaluate(lambda: make_forecaster("baseline", "stress", fs.freq, fs.horizon_periods),
                  X, y, folds, target="stress", freq=fs.freq,
                  horizon_periods=fs.horizon_periods)
    P = ev.predictions
    assert P.index.isin(X.index).all() and len(P) == sum(len(f.test_idx) for f in folds)
    for i, f in enumerate(folds):
        rows = P[P["fold"] == i]
        assert (rows["cutoff"] == f.cutoff).all()
        assert (rows["timestamp"] - rows["cutoff"] >= fs.horizon).all()  # purged
    assert list(ev.folds["fold"]) == [0, 1]
    assert {"auc", "brier", "median_lead_periods", "false_alarms_per_pool_year"} <= set(
        ev.folds.columns) & set(ev.metrics)
    assert ev.folds["test_rows"].sum() == len(P)


def test_quantile_metrics_use_the_in_sample_naive_scale(fs: FeatureSet) -> None:
    X = model_matrix(fs)
    y = align_labels(X, fs.labels, "fwd_fee_yield")
    folds = walk_forward_splits(X["timestamp"], 2, fs.horizon, fs.horizon)
    ev = evaluate(lambda: make_forecaster("seasonal_naive", "fee_yield", fs.freq,
                                          fs.horizon_periods),
                  X, y, folds, target="fee_yield", freq=fs.freq,
                  horizon_periods=fs.horizon_periods)
    assert (ev.predictions["mase_scale"] > 0).all()
    assert 0 < ev.metrics["mase"] < 10 and 0 <= ev.metrics["coverage_80"] <= 1


def test_unaligned_inputs_and_labels_are_refused(fs: FeatureSet) -> None:
    X, y = inputs_and_labels(fs, "volatility")
    folds = walk_forward_splits(X["timestamp"], 2, fs.horizon, fs.horizon)
    with pytest.raises(ForecastError, match="share one index"):
        evaluate(KeyEcho, X.iloc[10:], y.iloc[10:].reset_index(drop=True), folds,
                 target="volatility", freq=fs.freq, horizon_periods=fs.horizon_periods)
    twice = pd.concat([fs.labels, fs.labels.head(1)])
    with pytest.raises(ForecastError, match="repeat the key"):
        align_labels(X, twice, "fwd_volatility")
