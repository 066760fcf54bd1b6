"""Stress alarm thresholds chosen per fit on the training window: share, causality, flow."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from models.alarm import (
    FIXED,
    IN_SAMPLE,
    INNER,
    THRESHOLD_COLUMN,
    fit_alarm_threshold,
    fix_threshold,
    share_threshold,
)
from models.base import BaseForecaster
from models.baselines import BaseRateStress
from models.cv import Fold, walk_forward_splits
from models.evaluate import FOLD, evaluate, score_predictions
from models.forecasts import load_forecaster
from models.stress import LightGBMStress
from models.threads import use_threads
from pipelines.cli import app
from pipelines.config import tracking_uri
from pipelines.train_register import alarm_tags

H = 7  # label horizon, days
FAST: dict[str, Any] = {"n_estimators": 30, "inner_folds": 2, "grid": [{"num_leaves": 4}],
                        "horizon_periods": H}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with use_threads(1):  # small fits: threads only wait on each other
        yield


def _panel(days: int = 360, pools: int = 4, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Daily pools whose stress follows a shared regime that a noisy signal at t reveals."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2022-01-01", periods=days, freq="1D", tz="UTC")
    regime = (np.sin(np.arange(days) / 12) > 0.7).astype(float)
    rows = [pd.DataFrame({"pool_id": f"p{p}", "timestamp": ts,
                          "signal": regime + rng.normal(0, 0.6, days),
                          "noise": rng.normal(0, 1, days),
                          "y": (rng.random(days) < 0.02 + 0.4 * regime).astype(float)})
            for p in range(pools)]
    f = pd.concat(rows).sort_values(["timestamp", "pool_id"]).reset_index(drop=True)
    return f.drop(columns="y"), f["y"]


def test_share_threshold_keeps_at_most_the_share_and_never_lets_ties_through() -> None:
    s = np.random.default_rng(0).random(1000)
    for share in (0.01, 0.1, 0.37):
        got = np.mean(s >= share_threshold(s, share))
        assert share - 1 / len(s) < got <= share
    tied = np.r_[np.full(80, 0.2), np.linspace(0.3, 0.9, 20)]
    assert np.mean(tied >= share_threshold(tied, 0.5)) == 0.2  # not the 100 tied-in rows
    assert not (np.full(50, 0.1) >= share_threshold(np.full(50, 0.1), 0.3)).any()
    assert (s >= share_threshold(s, 1.0)).all()
    assert np.isnan(share_threshold(np.array([np.nan]), 0.1))


def test_lightgbm_threshold_alarms_alarm_x_times_the_base_rate_of_its_inner_scores() -> None:
    X, y = _panel()
    m = LightGBMStress(**FAST)
    m.fit(X, y)
    inner = m.inner_scores_
    assert m.alarm_basis_ == INNER and inner is not None and len(inner) > 100
    rate = float(y.mean())
    for x in (2.0, 3.0):  # re-chosen for another multiple from the kept scores, no refit
        booster = m.booster_
        thr = fit_alarm_threshold(m, X, y, x)
        assert m.booster_ is booster and m.alarm_threshold_ == thr
        assert x * rate - 1 / len(inner) < np.mean(inner >= thr) <= x * rate
    # the alarm is rarer than "always on": the test rows alarm on a share near the target
    Xt, yt = _panel(seed=1)
    p = m.predict(Xt)["p_stress"].to_numpy()
    assert 0 < np.mean(p >= m.alarm_threshold_) < 0.5


def test_threshold_is_saved_and_loaded_with_the_model(tmp_path: Path) -> None:
    X, y = _panel()
    m = LightGBMStress(**FAST)
    m.fit(X, y)
    back = load_forecaster(m.save(tmp_path / "m"))
    assert back.alarm_threshold_ == m.alarm_threshold_  # type: ignore[attr-defined]
    assert back.alarm_basis_ == INNER  # type: ignore[attr-defined]
    # every kind's saved model carries it once chosen, not only those that choose it at fit
    b = BaseRateStress().fit(X, y)
    thr = fit_alarm_threshold(b, X, y, 3.0)
    back = load_forecaster(b.save(tmp_path / "b"))
    assert back.alarm_threshold_ == thr and back.alarm_x_ == 3.0  # type: ignore[attr-defined]
    assert back.alarm_basis_ == IN_SAMPLE  # type: ignore[attr-defined]
    assert not hasattr(load_forecaster(BaseRateStress().fit(X, y).save(tmp_path / "c")),
                       "alarm_threshold_")  # none chosen, none stored


def test_a_fixed_threshold_replaces_the_chosen_one_and_says_so(tmp_path: Path) -> None:
    X, y = _panel()
    m = LightGBMStress(**FAST)
    m.fit(X, y)
    assert m.alarm_basis_ == INNER
    assert alarm_tags(m)["alarm_rule"] == f"auto: 2 x training base rate, chosen on {INNER}"
    assert fix_threshold(m, 0.25) == 0.25
    assert alarm_tags(m) == {"alarm_threshold": "0.25", "alarm_rule": FIXED}  # registry tags
    back = load_forecaster(m.save(tmp_path / "m"))
    assert back.alarm_threshold_ == 0.25  # type: ignore[attr-defined]
    assert back.alarm_basis_ == FIXED  # type: ignore[attr-defined]
    assert np.isnan(back.alarm_x_)  # type: ignore[attr-defined]  # no multiple was aimed at
    with pytest.raises(ValueError, match="probability"):
        fix_threshold(m, 1.5)


def _thresholds(make: Callable[[], BaseForecaster], X: pd.DataFrame, y: pd.Series,
                folds: list[Fold]) -> pd.Series:
    ev = evaluate(make, X, y, folds, target="stress", freq="1d",
                  horizon_periods=H, alarm_threshold="auto", alarm_x=2.0)
    assert ev.metrics["alarm_threshold"] == pytest.approx(
        ev.folds["alarm_threshold"].mean())  # the run's threshold: the mean over folds
    return ev.predictions.groupby(FOLD)[THRESHOLD_COLUMN].first()


@pytest.mark.parametrize("kind", ["lightgbm", "base_rate"])
def test_a_folds_threshold_reads_nothing_after_its_training_cutoff(kind: str) -> None:
    X, y = _panel()
    folds = walk_forward_splits(X["timestamp"], 2, pd.Timedelta(days=H), pd.Timedelta(days=H))
    make: Callable[[], BaseForecaster] = (lambda: LightGBMStress(**FAST)) \
        if kind == "lightgbm" else BaseRateStress
    before = _thresholds(make, X, y, folds)
    later = (X["timestamp"] > folds[0].cutoff).to_numpy()
    X2, y2 = X.copy(), y.copy()
    X2.loc[later, "signal"] = -X2.loc[later, "signal"] * 3  # every row after the cutoff
    y2[later] = 1 - y2[later]
    after = _thresholds(make, X2, y2, folds)
    assert after[0] == before[0]
    assert after[1] != before[1]  # what changed is read by the next fold's fit
    if kind == "base_rate":
        m = BaseRateStress().fit(X, y)
        fit_alarm_threshold(m, X, y, 2.0)
        assert m.alarm_basis_ == IN_SAMPLE  # type: ignore[attr-defined]


def test_auto_scores_each_fold_at_its_own_threshold_and_a_number_at_that_number() -> None:
    X, y = _panel()
    folds = walk_forward_splits(X["timestamp"], 2, pd.Timedelta(days=H), pd.Timedelta(days=H))
    ev = evaluate(lambda: LightGBMStress(**FAST), X, y, folds, target="stress", freq="1d",
                  horizon_periods=H, alarm_threshold="auto")
    P = ev.predictions
    assert ev.metrics["alarm_share"] == pytest.approx(
        np.mean(P["p_stress"] >= P[THRESHOLD_COLUMN]))
    fixed = score_predictions("stress", P, H, 0.25, "1d")
    assert fixed["alarm_threshold"] == 0.25
    assert fixed["alarm_share"] == pytest.approx(np.mean(P["p_stress"] >= 0.25))


def test_auto_threshold_flows_through_lpa_train_into_metrics_json(
        sim_workdir: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    wd = sim_workdir("alarm", n_pools=6, days=40, seed=1)
    cfg = tmp_path / "train.toml"
    base = ('[train]\nmodels = ["lightgbm"]\ntargets = ["stress"]\nn_folds = 2\n{extra}'
            '[train.lightgbm]\nn_estimators = 30\ninner_folds = 2\ngrid = [{{num_leaves = 7}}]\n')
    cfg.write_text(base.format(extra=""))
    args = ["train", "--workdir", str(wd), "--config", str(cfg), "--threads", "1"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "alarm share" in out.output
    reports = sorted((wd / "reports").glob("train-*/metrics.json"),
                     key=lambda p: p.stat().st_mtime)
    doc = json.loads(reports[-1].read_text())
    for kind in ("lightgbm", "baseline"):
        s = doc[kind]["stress"]
        assert 0 <= s["alarm_share"] <= 1 and 0 <= s["alarm_threshold"] <= 1
        assert {"event_recall", "median_lead_periods", "false_alarms_per_pool_year"} <= set(s)
    # the reported threshold is the mean of the per-fold thresholds logged to MLflow
    client = mlflow.MlflowClient(tracking_uri=tracking_uri(wd))
    run_id = reports[-1].parent.name.removeprefix("train-")
    child = mlflow.search_runs(experiment_names=["lpa-train"], filter_string=(
        f"tags.mlflow.parentRunId = '{run_id}' and tags.mlflow.runName = 'lightgbm'"),
        output_format="list")[0]
    folds = client.get_metric_history(child.info.run_id, "stress.fold.alarm_threshold")
    assert len(folds) == 2
    assert doc["lightgbm"]["stress"]["alarm_threshold"] == pytest.approx(
        np.mean([m.value for m in folds]))
    assert child.data.metrics["stress.alarm_share"] == pytest.approx(
        doc["lightgbm"]["stress"]["alarm_share"])
    # the registered stress model carries its threshold as a version tag
    versions = client.search_model_versions("name='lpa-stress'")
    assert all(float(v.tags["alarm_threshold"]) >= 0 for v in versions)
    # and the rule it was chosen by, as the model recorded it (not the run's settings)
    assert {v.tags["alarm_rule"] for v in versions} <= {
        f"auto: 2 x training base rate, chosen on {b}" for b in (INNER, IN_SAMPLE)}
    # a fixed threshold is still accepted and reported as such
    cfg.write_text(base.format(extra="alarm_threshold = 0.25\n"))
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    reports = sorted((wd / "reports").glob("train-*/metrics.json"),
                     key=lambda p: p.stat().st_mtime)
    assert json.loads(reports[-1].read_text())["lightgbm"]["stress"]["alarm_threshold"] == 0.25


def test_gru_threshold_comes_from_its_held_out_tail_not_its_training_rows() -> None:
    from models.sequence import GRUStress

    X, y = _panel(days=200)
    m = GRUStress(lookback=8, hidden=8, epochs=2, max_samples=4000, horizon_periods=H)
    m.fit(X, y)
    inner = m.inner_scores_
    thr = fit_alarm_threshold(m, X, y, 2.0)
    assert m.alarm_basis_ == INNER and inner is not None and np.isfinite(thr)  # type: ignore[attr-defined]
    # every reference score is the model's score of a row in the last 15 % of the window
    times = np.sort(X["timestamp"].unique())
    tail = (X["timestamp"] >= times[int(len(times) * (1 - m.valid_frac))]).to_numpy()
    p = m.predict(X)["p_stress"].to_numpy()
    assert len(inner) <= tail.sum()
    gap = np.abs(inner[:, None] - p[tail][None, :]).min(axis=1)
    assert gap.max() < 1e-5


def test_alarm_options_of_lpa_train_reach_the_config_and_bad_ones_are_refused(
    tmp_path: Path,
) -> None:
    from pipelines.config import config_from
    from pipelines.train_config import TrainConfig

    cfg = config_from(TrainConfig, None, "train", alarm_threshold="0.3", alarm_share_x=3.0)
    assert cfg.alarm_threshold == 0.3 and cfg.alarm_share_x == 3.0
    assert config_from(TrainConfig, None, "train", alarm_threshold="auto").alarm_threshold \
        == "auto"
    res = CliRunner().invoke(app, ["train", "--workdir", str(tmp_path),
                                   "--alarm-threshold", "1.5"])
    assert res.exit_code != 0
    assert "alarm_threshold" in res.output, res.output
