"""Training job on a real local MLflow store: folds, registry, champion alias."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pydantic
import pytest
from typer.testing import CliRunner

from features.build import build_features, read_features, write_features
from features.sources.simulator import simulate_market
from features.sources.store import write_panel
from models.cv import walk_forward_splits
from models.forecasts import make_forecaster, model_matrix
from models.names import kinds_for, metrics_for
from models.registry import champion_versions, load_champion
from pipelines.cli import app
from pipelines.config import tracking_uri
from pipelines.train import Champion, TrainConfig, challenge, run_kinds, train

FAST = {"lightgbm": {"n_estimators": 30, "inner_folds": 2, "grid": [{"num_leaves": 7}]},
        "torch": {"epochs": 1, "max_samples": 2000, "hidden": 8}}
# a deliberately weak LightGBM: one tiny tree on each pool's median, no baseline to lean on
WEAK = {"n_estimators": 1, "anchor": None, "baselines": [], "inner_folds": 0,
        "params": {"num_leaves": 2, "learning_rate": 0.001}}


@pytest.fixture(scope="module")
def workdir(sim_workdir: Callable[..., Path]) -> Path:
    return sim_workdir("work", n_pools=6, days=40, seed=1, panel=True)


@pytest.fixture(autouse=True)
def _no_env_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_train_every_kind_registers_and_reloads_champion(workdir: Path) -> None:
    # the registered refits select again, so that a plain local refit reproduces them
    cfg = TrainConfig(models=["baseline", "lightgbm", "torch"], n_folds=2,
                      lightgbm=FAST["lightgbm"], torch=FAST["torch"], reselect_final=True)
    res = train(workdir, cfg, progress=False)
    kinds = run_kinds(cfg)  # the configured kinds and every baseline, on the same folds
    assert {"seasonal_naive", "ewma", "har", "garch"} <= set(kinds)
    expected = {(k, t) for k in kinds for t in ("fee_yield", "volatility", "stress")
                if k in kinds_for(t)}
    assert {(r["model"], r["target"]) for r in res.rows} == expected
    for r in res.rows:
        if r["target"] == "stress":
            assert 0 <= r["brier"] <= 1
        else:
            assert np.isfinite(r["mase"]) and 0 <= r["coverage_80"] <= 1
    # metrics.json: {model: {target: {metric: value}}}, the names scripts read
    doc = json.loads((workdir / "reports" / f"train-{res.run_id}" / "metrics.json").read_text())
    assert {(m, t) for m, ts in doc.items() for t in ts} == expected
    assert {"mase", "coverage_80"} <= set(doc["lightgbm"]["volatility"])
    assert {"auc", "brier", "median_lead_periods", "false_alarms_per_pool_year"} <= set(
        doc["lightgbm"]["stress"])
    assert set(doc["garch"]["volatility"]) == set(metrics_for("volatility"))
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
                               local.predict(tail)[["q10", "q50", "q90"]].to_numpy(float),
                               rtol=1e-5)
    # parent run with nested runs per model kind
    runs = mlflow.search_runs(experiment_names=["lpa-train"])
    assert (runs["tags.mlflow.parentRunId"] == res.run_id).sum() == len(kinds)


def test_fold_gaps_are_at_least_the_horizon(workdir: Path) -> None:
    fs = read_features(workdir)
    X = model_matrix(fs)
    folds = walk_forward_splits(X["timestamp"], 2, fs.horizon, fs.horizon)
    for f in folds:
        assert X["timestamp"].iloc[f.test_idx].min() - X["timestamp"].iloc[
            f.train_idx].max() >= fs.horizon


def _versions(uri: str, target: str) -> list[str]:
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    return sorted(v.version for v in client.search_model_versions(f"name='lpa-{target}'"))


def test_worse_model_is_neither_registered_nor_promoted(workdir: Path) -> None:
    uri = tracking_uri(workdir)
    before, registered = champion_versions(uri), _versions(uri, "volatility")
    # a deliberately weak model: LightGBM with a single tiny tree
    cfg = TrainConfig(models=["lightgbm"], n_folds=2, targets=["volatility"], baselines=False,
                      lightgbm=WEAK)
    res = train(workdir, cfg, progress=False)
    assert not res.champions and not res.rows[0].get("registry")
    assert champion_versions(uri)["volatility"] == before["volatility"]
    assert _versions(uri, "volatility") == registered
    assert "holds" in res.decisions["volatility"]


def test_register_all_registers_every_kind_without_moving_the_alias(workdir: Path) -> None:
    uri = tracking_uri(workdir)
    before, registered = champion_versions(uri), _versions(uri, "stress")
    cfg = TrainConfig(models=["baseline"], n_folds=2, targets=["stress"], register_all=True,
                      baselines=False)
    res = train(workdir, cfg, progress=False)
    assert len(_versions(uri, "stress")) == len(registered) + 1
    assert res.rows[0]["registry"].startswith("v")
    assert champion_versions(uri) == before  # the champion already beat this kind


def test_identical_retrain_registers_nothing_and_keeps_the_alias(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    panel, _ = simulate_market(n_pools=4, days=30, seed=3)
    write_features(build_features(panel), tmp_path)
    cfg = TrainConfig(models=["baseline", "lightgbm"], n_folds=2, lightgbm=FAST["lightgbm"],
                      baselines=False)
    first = train(tmp_path, cfg, progress=False)
    uri = tracking_uri(tmp_path)
    champions = champion_versions(uri)
    versions = {t: _versions(uri, t) for t in champions}
    assert set(first.champions) == set(champions) and all(champions.values())
    assert all(len(v) == 1 for v in versions.values())  # the candidate only, not every kind
    err = capfd.readouterr().err
    assert "Created version" not in err and "Successfully registered" not in err

    again = train(tmp_path, cfg, progress=False)
    assert again.champions == {}
    assert champion_versions(uri) == champions
    assert {t: _versions(uri, t) for t in champions} == versions
    assert all("holds" in why for why in again.decisions.values())


def test_challenge_needs_a_strict_margin_on_the_champions_folds() -> None:
    champ = Champion(version="3", kind="lightgbm", score=0.100, folds="f", features="x",
                     params="{}")
    same = {"baseline": 0.120, "lightgbm": 0.100}
    params = {"baseline": "{}", "lightgbm": "{}"}
    assert challenge(same, params, None, "f", "x", 1e-3).kind == "lightgbm"
    assert challenge(same, params, champ, "f", "x", 1e-3).kind is None  # identical retrain
    assert challenge({"lightgbm": 0.09995}, params, champ, "f", "x", 1e-3).kind is None
    assert challenge({"baseline": 0.09}, params, champ, "f", "x", 1e-3).kind == "baseline"
    assert challenge({"baseline": math.nan}, params, champ, "f", "x", 1e-3).kind is None


def test_challenge_on_new_data_rescores_the_champions_kind() -> None:
    champ = Champion(version="3", kind="lightgbm", score=0.100, folds="old", features="x",
                     params="{}")
    params = {"baseline": "{}", "lightgbm": "{}"}
    refit = challenge({"baseline": 0.2, "lightgbm": 0.15}, params, champ, "new", "x", 1e-3)
    assert refit.kind == "lightgbm" and "new data" in refit.reason
    assert challenge({"baseline": 0.2, "lightgbm": 0.15}, {"baseline": "{}", "lightgbm":
                     '{"n": 1}'}, champ, "new", "x", 1e-3).kind is None
    assert challenge({"baseline": 0.14, "lightgbm": 0.15}, params, champ, "new", "x",
                     1e-3).kind == "baseline"
    unscored = challenge({"baseline": 0.01}, params, champ, "new", "x", 1e-3)
    assert unscored.kind is None and "not scored" in unscored.reason


def test_champion_rule_picks_a_baseline_when_it_is_best(tmp_path: Path) -> None:
    """Scored on the same folds, a weak LightGBM loses to the baselines, and the best baseline
    becomes the champion and is what the registry serves."""
    assert challenge({"lightgbm": 0.9, "garch": 0.7, "ewma": 0.8}, {}, None, "f", "x",
                     1e-3).kind == "garch"
    panel, _ = simulate_market(n_pools=4, days=30, seed=6)
    write_features(build_features(panel), tmp_path)
    cfg = TrainConfig(models=["lightgbm"], n_folds=2, targets=["volatility"], lightgbm=WEAK)
    res = train(tmp_path, cfg, progress=False)
    scores = {r["model"]: r["score"] for r in res.rows}
    best = min(scores, key=lambda k: scores[k])
    assert best != "lightgbm" and scores["lightgbm"] > scores[best]
    assert res.champions["volatility"].split()[0] == best
    champ = load_champion("volatility", tracking_uri(tmp_path))
    assert champ is not None and champ.kind == best


def test_unknown_model_fails_before_any_run(workdir: Path) -> None:
    uri = tracking_uri(workdir)
    mlflow.set_tracking_uri(uri)
    before = len(mlflow.search_runs(experiment_names=["lpa-train"]))
    res = CliRunner().invoke(app, ["train", "--model", "prophet", "--workdir", str(workdir)])
    assert res.exit_code != 0 and "prophet" in res.output
    assert len(mlflow.search_runs(experiment_names=["lpa-train"])) == before
    with pytest.raises(pydantic.ValidationError, match="prophet"):
        TrainConfig(models=["prophet"])
    help_text = CliRunner().invoke(app, ["train", "--help"]).output
    assert all(k in help_text for k in ("baseline", "lightgbm", "torch", "all"))


def test_train_command_sets_passive_openmp_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "unset by the test")
    monkeypatch.delenv("OMP_WAIT_POLICY")  # restored after the test
    res = CliRunner().invoke(app, ["train", "--workdir", str(tmp_path)])
    assert res.exit_code == 1 and "lpa features build" in res.output
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_train_without_features_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lpa features build"):
        train(tmp_path, TrainConfig(models=["baseline"]), progress=False)


@pytest.mark.parametrize("reselect_final", [False, True])
def test_registered_refit_keeps_the_latest_fold_selection(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reselect_final: bool) -> None:
    """The champion's refit on every row keeps the choice of its latest selecting evaluation
    fold (no inner-fold grid on rows it was scored on), unless reselect_final."""
    import pipelines.train_tasks as train_mod
    from models.gbm import LightGBMQuantile

    panel, truth = simulate_market(n_pools=4, days=30, seed=2)
    write_panel(panel, tmp_path, truth=truth)
    write_features(build_features(panel), tmp_path)
    kept: list[object] = []
    real = train_mod.keep_selection

    def spy(model: object, source: object) -> object:
        kept.append(source)
        return real(model, source)  # type: ignore[arg-type]

    monkeypatch.setattr(train_mod, "keep_selection", spy)
    cfg = TrainConfig(models=["lightgbm"], baselines=False, n_folds=2, targets=["fee_yield"],
                      lightgbm=FAST["lightgbm"], reselect_final=reselect_final)
    res = train(tmp_path, cfg, progress=False)
    assert res.champions.get("fee_yield", "").startswith("lightgbm")
    if reselect_final:
        assert kept == []
    else:
        assert len(kept) == 1 and isinstance(kept[0], LightGBMQuantile)
