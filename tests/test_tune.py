"""Tuning: a real sqlite Optuna study, resumable by name, trials as nested MLflow runs."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest

from features.build import build_features, write_features
from features.sources.simulator import simulate_market
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
