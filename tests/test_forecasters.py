"""One shared suite run against every forecaster kind and target."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from features.build import FeatureConfig, build_features
from models.base import QUANTILE_COLUMNS, BaseForecaster, ForecastError
from models.forecasts import (
    TARGETS,
    ForecastBundle,
    history_periods,
    load_forecaster,
    make_forecaster,
    model_matrix,
    seasonal_naive,
)
from models.gbm import lgb_params
from models.metrics import pinball_loss, stress_scores
from models.names import MEAN_COLUMN, kinds_for
from models.pyfunc import log_forecaster, to_pyfunc_input
from models.threads import available_cpus, use_threads

FAST = {"torch": {"epochs": 2, "max_samples": 3000, "hidden": 16},
        "lightgbm": {"n_estimators": 40, "inner_folds": 2, "grid": [{"num_leaves": 7}]}}
CASES = [(k.value, t.value) for t in TARGETS for k in kinds_for(t)]


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame, int, str]:
    from features.sources.simulator import simulate_market

    panel, _ = simulate_market(n_pools=6, days=40, seed=2)
    fs = build_features(panel)
    return model_matrix(fs), fs.labels, fs.horizon_periods, fs.freq


def _make(kind: str, target: str, data: tuple) -> BaseForecaster:
    _, _, h, freq = data
    return make_forecaster(kind, target, freq, h, seed=1, **dict(FAST.get(kind, {})))


def _split(data: tuple) -> tuple:
    X, L, h, _ = data
    ts = X["timestamp"]
    cut = ts.min() + (ts.max() - ts.min()) * 0.7
    tr = (ts + pd.Timedelta(hours=h) <= cut).to_numpy()
    te = (ts > cut).to_numpy()
    return X[tr], L[tr], X[te], L[te]


@pytest.mark.parametrize(("kind", "target"), CASES)
def test_fit_predict_contract(kind: str, target: str, data: tuple, tmp_path: Path) -> None:
    Xtr, Ltr, Xte, Lte = _split(data)
    m = _make(kind, target, data).fit(Xtr, Ltr[TARGETS[target]])
    p = m.predict(Xte)
    assert p.index.equals(Xte.index)
    if m.is_classifier:
        assert list(p.columns) == ["p_stress"]
        assert p["p_stress"].between(0, 1).all()
    else:
        assert list(p.columns) == [*QUANTILE_COLUMNS, MEAN_COLUMN]
        q = p.to_numpy()
        assert np.isfinite(q).all() and (q[:, 0] <= q[:, 1]).all() and (q[:, 1] <= q[:, 2]).all()
        assert (q[:, 3] >= 0).all()
    # deterministic for a seed
    p2 = _make(kind, target, data).fit(Xtr, Ltr[TARGETS[target]]).predict(Xte)
    pd.testing.assert_frame_equal(p, p2)
    # native save / load round trip, identical predictions
    back = load_forecaster(m.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(back.predict(Xte), p, check_exact=False, rtol=1e-6)


@pytest.mark.parametrize("kind", ["lightgbm", "torch"])
def test_learned_models_beat_a_trivially_bad_predictor(kind: str, data: tuple) -> None:
    Xtr, Ltr, Xte, Lte = _split(data)
    y = Lte["fwd_volatility"].to_numpy()
    m = _make(kind, "volatility", data).fit(Xtr, Ltr["fwd_volatility"])
    ok = np.isfinite(y)
    mine = pinball_loss(y[ok], m.predict(Xte)["q50"].to_numpy()[ok], 0.5)
    bad = pinball_loss(y[ok], np.zeros(ok.sum()), 0.5)
    assert mine < 0.8 * bad
    # stress events are too few in a small panel to learn from: a feature that carries the
    # signal, added to the same rows, must be found
    rng = np.random.default_rng(0)
    X, L, _, _ = data
    signal = pd.Series(rng.normal(size=len(X)), index=X.index)
    y_s = ((signal + rng.normal(scale=0.5, size=len(X))) > 1.0).astype(float)
    Xs = X.assign(signal=signal)
    tr, te = Xtr.index, Xte.index
    s = _make(kind, "stress", data).fit(Xs.loc[tr], y_s.loc[tr]).predict(Xs.loc[te])
    sc = stress_scores(y_s.loc[te].to_numpy(), s["p_stress"].to_numpy())
    assert sc["auc"] > (0.8 if kind == "lightgbm" else 0.52)  # the GRU learns slowly


def test_unfitted_and_malformed_inputs_are_clear(data: tuple) -> None:
    X, L, h, freq = data
    m = make_forecaster("lightgbm", "fee_yield", freq, h)
    with pytest.raises(ForecastError, match="not fitted"):
        m.predict(X)
    with pytest.raises(ForecastError, match="key column"):
        m.fit(X.drop(columns=["pool_id"]), L["fwd_fee_yield"])
    with pytest.raises(ValueError, match="unknown model kind"):
        make_forecaster("prophet", "fee_yield", freq, h)


def test_pyfunc_round_trip_through_real_mlflow_store(data: tuple, tmp_path: Path) -> None:
    Xtr, Ltr, Xte, _ = _split(data)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    m = _make("lightgbm", "fee_yield", data).fit(Xtr, Ltr["fwd_fee_yield"])
    with mlflow.start_run(experiment_id=exp):
        info = log_forecaster(m, "model", Xtr, registered_model_name="lpa-test")
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    got = pd.DataFrame(loaded.predict(to_pyfunc_input(Xte)))
    np.testing.assert_allclose(got.to_numpy(float), m.predict(Xte).to_numpy(float), rtol=1e-6)
    assert loaded.metadata.signature is not None


def test_bundle_gives_allocator_inputs(data: tuple) -> None:
    X, L, h, freq = data
    cut = X["timestamp"].max() - pd.Timedelta(days=5)
    b = ForecastBundle("baseline", freq, h).fit(X, L, upto=cut)
    past = X[X["timestamp"] <= cut]
    out = b.predict_pools(past)
    assert set(out.index) == set(X["pool_id"])
    assert {"fee_yield", "volatility", "p_stress", "fee_yield_q10"} <= set(out.columns)
    assert (out["fee_yield"] >= 0).all() and out["p_stress"].between(0, 1).all()


def test_baselines_follow_the_feature_settings() -> None:
    # a 12 h half-life and windows without 24 h: the baselines still find their columns
    from features.sources.simulator import simulate_market

    panel, _ = simulate_market(n_pools=4, days=30, seed=5)
    fs = build_features(panel, FeatureConfig(ewm_halflife="12h", windows=["6h", "7d"]))
    X, L, h = model_matrix(fs), fs.labels, fs.horizon_periods
    for kind in ("baseline", "seasonal_naive"):
        for target in ("fee_yield", "volatility"):
            p = make_forecaster(kind, target, fs.freq, h).fit(X, L[TARGETS[target]]).predict(X)
            assert np.isfinite(p.to_numpy(float)).all()
    assert np.isfinite(seasonal_naive(X, "volatility", fs.freq, h)).mean() > 0.9
    out = ForecastBundle("baseline", fs.freq, h).fit(X, L).predict_pools(X)
    assert set(out.index) == set(X["pool_id"]) and (out["fee_yield"] >= 0).all()


def test_bundle_matches_labels_by_key_not_position(data: tuple) -> None:
    X, L, h, freq = data
    shuffled = L.sample(frac=1.0, random_state=0)
    a = ForecastBundle("baseline", freq, h).fit(X, L).predict_rows(X)
    b = ForecastBundle("baseline", freq, h).fit(X, shuffled).predict_rows(X)
    pd.testing.assert_frame_equal(a, b)


def test_thread_count_comes_from_the_job_the_env_or_the_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LPA_THREADS", raising=False)
    assert lgb_params(0)["num_threads"] == available_cpus()
    monkeypatch.setenv("LPA_THREADS", "3")
    assert lgb_params(0)["num_threads"] == 3
    with use_threads(1) as n:
        assert n == 1 and lgb_params(0)["num_threads"] == 1
        import torch

        assert torch.get_num_threads() == 1
    assert lgb_params(0)["num_threads"] == 3
    monkeypatch.setenv("LPA_THREADS", "many")
    with pytest.raises(ValueError, match="LPA_THREADS"):
        lgb_params(0)


def test_history_a_kind_reads_before_its_latest_row() -> None:
    assert history_periods("lightgbm", "1h") == history_periods("baseline", "1d") == 1
    assert history_periods("torch", "1h") == make_forecaster("torch", "volatility", "1h").lookback
    assert history_periods("torch", "1d") == make_forecaster("torch", "stress", "1d").lookback
    assert history_periods("torch", "1h", {"lookback": 6}) == 6
