"""Training job on a real local MLflow store: folds, registry, champion alias."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from features.build import build_features, read_features, write_features
from features.sources.simulator import simulate_market
from features.sources.store import write_panel
from models.cv import walk_forward_splits
from models.forecasts import make_forecaster, model_matrix
from models.registry import champion_versions, load_champion
from pipelines.config import tracking_uri
from pipelines.train import TrainConfig, train

FAST = {"lightgbm": {"n_estimators": 30}, "torch": {"epochs": 1, "max_samples": 2000,
                                                     "hidden": 8}}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = tmp_path_factory.mktemp("work")
    panel, truth = simulate_market(n_pools=6, days=40, seed=1)
    write_panel(panel, wd, truth=truth)
    write_features(build_features(panel), wd)
    return wd


@pytest.fixture(autouse=True)
def _no_env_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_train_every_kind_registers_and_reloads_champion(workdir: Path) -> None:
    cfg = TrainConfig(models=["baseline", "lightgbm", "torch"], n_folds=2,
                      lightgbm=FAST["lightgbm"], torch=FAST["torch"])
    res = train(workdir, cfg, progress=False)
    assert {(r["model"], r["target"]) for r in res.rows} == {
        (k, t) for k in cfg.models for t in ("fee_yield", "volatility", "stress")}
    for r in res.rows:
        if r["target"] == "stress":
            assert 0 <= r["brier"] <= 1
        else:
            assert np.isfinite(r["mase"]) and 0 <= r["coverage"] <= 1
    uri = tracking_uri(workdir)
    assert (workdir / "mlflow.db").exists()
    versions = champion_versions(uri)
    assert all(v is not None for v in versions.values())
    # the champion reloaded from the registry by alias predicts exactly like a refit
    champ = load_champion("fee_yield", uri)
    fs = read_features(workdir)
    X = model_matrix(fs)
    kind = champ.kind
    local = make_forecaster(kind, "fee_yield", fs.freq, fs.horizon_periods, seed=0,
                            **dict(FAST.get(kind, {})))
    local.fit(X, fs.labels["fwd_fee_yield"])
    tail = X.tail(100)
    np.testing.assert_allclose(champ.predict(tail)[["q10", "q50", "q90"]].to_numpy(float),
                               local.predict(tail).to_numpy(float), rtol=1e-5)
    # parent run with nested runs per model kind
    runs = mlflow.search_runs(experiment_names=["lpa-train"])
    assert (runs["tags.mlflow.parentRunId"] == res.run_id).sum() == 3


def test_fold_gaps_are_at_least_the_horizon(workdir: Path) -> None:
    fs = read_features(workdir)
    X = model_matrix(fs)
    folds = walk_forward_splits(X["timestamp"], 2, fs.horizon, fs.horizon)
    for f in folds:
        assert X["timestamp"].iloc[f.test_idx].min() - X["timestamp"].iloc[
            f.train_idx].max() >= fs.horizon


def test_worse_model_does_not_take_the_alias(workdir: Path) -> None:
    uri = tracking_uri(workdir)
    before = champion_versions(uri)
    # a deliberately weak model: LightGBM with a single tiny tree
    cfg = TrainConfig(models=["lightgbm"], n_folds=2, targets=["volatility"],
                      lightgbm={"n_estimators": 1, "params": {"num_leaves": 2,
                                                              "learning_rate": 0.001}})
    res = train(workdir, cfg, progress=False)
    assert not res.rows[0].get("champion")
    assert champion_versions(uri)["volatility"] == before["volatility"]
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    latest = max(int(v.version) for v in client.search_model_versions("name='lpa-volatility'"))
    assert str(latest) != before["volatility"]  # it was registered, just not promoted


def test_train_without_features_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lpa features build"):
        train(tmp_path, TrainConfig(models=["baseline"]), progress=False)
