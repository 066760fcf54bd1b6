"""Tuning: a real sqlite Optuna study, resumable by name, trials as nested MLflow runs."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest

from features.build import build_features, write_features
from features.sources.simulator import simulate_market
from models.base import QUANTILE_COLUMNS, BaseForecaster
from pipelines.tune import SPACES, tune


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    panel, _ = simulate_market(n_pools=4, days=30, seed=3)
    write_features(build_features(panel), tmp_path)
    return tmp_path


def test_study_resumes_by_name_and_logs_nested_runs(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = SPACES["lightgbm"]

    def tiny(trial: optuna.Trial) -> dict:
        p = small(trial)
        p["n_estimators"] = 10
        return p

    monkeypatch.setitem(SPACES, "lightgbm", tiny)
    a = tune(workdir, "lightgbm", "volatility", trials=2, study_name="s1", progress=False,
             n_folds=2)
    assert (workdir / "optuna.db").exists()
    b = tune(workdir, "lightgbm", "volatility", trials=2, study_name="s1", progress=False,
             n_folds=2)
    assert a.n_trials == 2 and b.n_trials == 4
    study = optuna.load_study(study_name="s1", storage=f"sqlite:///{workdir / 'optuna.db'}")
    assert len(study.trials) == 4
    runs = mlflow.search_runs(experiment_names=["lpa-tune"])
    parents = runs[runs["tags.mlflow.runName"].str.startswith("tune-")]
    trials = runs[runs["tags.mlflow.runName"].str.startswith("trial-")]
    assert len(parents) == 2 and len(trials) == 4
    assert set(trials["tags.mlflow.parentRunId"]) == set(parents["run_id"])
    # the final holdout is before the end of the data and never part of a fold
    assert b.holdout_start < str(simulate_market(4, 30, 3)[0].frame["timestamp"].max())


def test_unknown_model_is_refused(workdir: Path) -> None:
    with pytest.raises(ValueError, match="no search space"):
        tune(workdir, "prophet", trials=1, progress=False)


def _key_code(frame: pd.DataFrame) -> np.ndarray:
    """A number that names a row's (pool_id, timestamp)."""
    pool = frame["pool_id"].map(lambda p: zlib.crc32(p.encode()) % 1000).to_numpy(float)
    hours = (frame["timestamp"] - pd.Timestamp("2020-01-01", tz="UTC")) / pd.Timedelta("1h")
    return pool * 1e6 + hours.to_numpy(float)


class _OwnLabelsOnly(BaseForecaster):
    """Refuses to fit unless every training label names the row it is paired with."""

    kind = "test_own_labels_only"
    seen = 0

    def __init__(self) -> None:
        self._params = {}

    def _fit(self, X: pd.DataFrame, y: pd.Series, X_all: pd.DataFrame) -> None:
        wrong = y.to_numpy(float) != _key_code(X)
        assert not wrong.any(), f"{wrong.mean():.0%} of training rows carry another row's label"
        _OwnLabelsOnly.seen += len(X)

    def _predict(self, X: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({c: _key_code(X) for c in QUANTILE_COLUMNS})


def test_trials_train_each_row_on_its_own_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tuning drops the holdout rows; labels must still follow their (pool_id, timestamp)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    panel, _ = simulate_market(n_pools=4, days=30, seed=3)
    fs = build_features(panel)
    fs.labels["fwd_volatility"] = _key_code(fs.labels)
    write_features(fs, tmp_path)

    def own_labels_only(*args: Any, **kwargs: Any) -> BaseForecaster:
        return _OwnLabelsOnly()

    for module in ("pipelines.tune", "pipelines.train"):
        monkeypatch.setattr(f"{module}.make_forecaster", own_labels_only, raising=False)
    _OwnLabelsOnly.seen = 0
    res = tune(tmp_path, "lightgbm", "volatility", trials=1, study_name="own", progress=False,
               n_folds=2)
    assert _OwnLabelsOnly.seen > 0
    assert res.best_value == 0.0  # forecasts that echo each key are exact on their own labels
