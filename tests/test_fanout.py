"""Walk-forward folds and backtest retrains as Dask tasks equal the single-process runs.

One in-process LocalCluster (two one-thread workers) serves the module; tasks then run in
worker threads of this process, which is where a context variable could leak into them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.build import FeatureSet, build_features
from features.sources.simulator import simulate_market
from models.cv import walk_forward_splits
from models.evaluate import Evaluation, evaluate
from models.forecasts import inputs_and_labels
from models.gbm import LightGBMQuantile
from models.gbm_dask import active_client, fan_out, use_dask
from models.gbm_dask import make_forecaster as dask_factory
from models.threads import use_threads

pytest.importorskip("distributed")

# LightGBM fits with one thread, as the one-thread workers do: the same booster bit for bit
LGB = {"seed": 0, "n_estimators": 25, "inner_folds": 0}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None, silence_logs=40) as lc, Client(lc) as c:
        yield c


@pytest.fixture(scope="module")
def fs() -> FeatureSet:
    panel, _ = simulate_market(n_pools=4, days=30, seed=5)
    return build_features(panel)


def _client_seen(_: int) -> bool:
    """Whether a task sees an active client."""
    return active_client() is not None


def _evaluate(fs: FeatureSet, kind: str, target: str, seen: list[int],
              **params: Any) -> Evaluation:
    X, y = inputs_and_labels(fs, target)
    folds = walk_forward_splits(X["timestamp"], 3, fs.horizon, fs.horizon)
    return evaluate(lambda: dask_factory(kind, target, fs.freq, fs.horizon_periods, **params),
                    X, y, folds, target=target, freq=fs.freq,
                    horizon_periods=fs.horizon_periods,
                    on_fold=lambda i, m: seen.append(i), onset=None)


def test_tasks_run_outside_the_client_context(client: Any) -> None:
    with use_dask(client):
        assert active_client() is client
        assert fan_out(client, _client_seen, range(4)) == [False] * 4


@pytest.mark.parametrize("kind, target", [("baseline", "fee_yield"),
                                          ("baseline", "stress")])
def test_folds_as_tasks_equal_the_sequential_folds(client: Any, fs: FeatureSet, kind: str,
                                                   target: str) -> None:
    seen_seq: list[int] = []
    seen_dask: list[int] = []
    seq = _evaluate(fs, kind, target, seen_seq)
    with use_dask(client):
        par = _evaluate(fs, kind, target, seen_dask)
    assert seen_seq == seen_dask == [0, 1, 2]
    pd.testing.assert_frame_equal(seq.predictions, par.predictions, check_exact=True)
    pd.testing.assert_frame_equal(seq.folds, par.folds, check_exact=True)
    assert seq.metrics.keys() == par.metrics.keys()
    for k, v in seq.metrics.items():
        assert (v == par.metrics[k]) or (np.isnan(v) and np.isnan(par.metrics[k])), k


def test_lightgbm_folds_as_tasks_fit_plain_boosters_equal_to_sequential(
    client: Any, fs: FeatureSet
) -> None:
    with use_threads(1):
        seq = _evaluate(fs, "lightgbm", "fee_yield", [], **LGB)
    with use_dask(client):
        par = _evaluate(fs, "lightgbm", "fee_yield", [], **LGB)
    # inside a fold task the factory is plain: no data-parallel fit nested in a task
    assert type(par.model) is LightGBMQuantile
    text = par.model.booster_.model_to_string()
    assert "[tree_learner: serial]" in text and "[num_threads: 1]" in text
    q = ["q10", "q50", "q90", "mean"]
    np.testing.assert_allclose(par.predictions[q].to_numpy(float),
                               seq.predictions[q].to_numpy(float), rtol=1e-12, atol=0)
    for k, v in seq.metrics.items():
        assert par.metrics[k] == pytest.approx(v, rel=1e-12), k


@pytest.fixture(scope="module")
def market() -> tuple[Any, FeatureSet, pd.DataFrame]:
    panel, truth = simulate_market(n_pools=4, days=16, seed=6)
    return panel, build_features(panel), truth


def _backtest(market: tuple[Any, FeatureSet, pd.DataFrame], provider: Any) -> Any:
    from pipelines.backtest.engine import BacktestConfig, run_backtest

    panel, fs, truth = market
    # min_train of 2 days: the first refits have too little labelled history and fail
    cfg = BacktestConfig(model="baseline", min_train="2d", retrain="4d", rebalance="48h",
                         top_k=2, write_report=False, run_id="fanout")
    return run_backtest(panel, fs, cfg, truth=truth, provider=provider)


def _assert_same_run(a: Any, b: Any) -> None:
    pd.testing.assert_frame_equal(a.periods, b.periods, check_exact=True)
    pd.testing.assert_frame_equal(a.weights, b.weights, check_exact=True)
    assert a.metrics.keys() == b.metrics.keys()
    for s, m in a.metrics.items():
        for k, v in m.items():
            assert b.metrics[s][k] == pytest.approx(v, rel=1e-9, abs=1e-12, nan_ok=True), (s, k)


@pytest.mark.parametrize("kind, params, every", [
    ("baseline", {}, 1),
    ("lightgbm", {"n_estimators": 10, "inner_folds": 0}, 1),
    # full selections on inner folds at refits 1, 3, ...; the refits between keep the choice
    ("lightgbm", {"n_estimators": 10, "inner_folds": 2}, 2)])
def test_backtest_retrains_as_tasks_equal_the_single_process_run(
    client: Any, market: tuple[Any, FeatureSet, pd.DataFrame], kind: str,
    params: dict[str, Any], every: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.backtest import providers

    fitted: list[pd.Timestamp] = []
    kept: list[bool] = []
    here = providers.fit_bundle

    def counted(upto: pd.Timestamp, **kw: Any) -> Any:
        if threading.current_thread() is threading.main_thread():  # the run loop, not a task
            fitted.append(upto)
            kept.append(kw.get("selection") is not None)
        return here(upto, **kw)

    monkeypatch.setattr(providers, "fit_bundle", counted)
    with use_threads(1):
        seq = _backtest(market, providers.BundleProvider(kind, params=params,
                                                         reselect_every=every))
    refits = list(fitted)
    assert len(refits) >= 4
    assert any(kept) == (every > 1)  # refits between full selections keep the last choice
    fitted.clear()
    prov = providers.BundleProvider(kind, params=params, reselect_every=every)
    with use_dask(client):
        par = _backtest(market, prov)
    # every refit came from the cluster, at the same times; none was refitted in the run loop
    assert fitted == [] and prov._fits == {}
    assert par.timings["fit_s"] > 0
    _assert_same_run(seq, par)


def test_a_failed_prefit_keeps_the_last_models(client: Any,
                                               market: tuple[Any, FeatureSet, pd.DataFrame]
                                               ) -> None:
    from pipelines.backtest.providers import BundleProvider

    _, fs, _ = market
    t0 = pd.Timestamp(fs.features["timestamp"].min())
    late, early = t0 + pd.Timedelta(days=10), t0 + pd.Timedelta(hours=6)
    seq, par = BundleProvider("baseline"), BundleProvider("baseline")
    par.prefit(fs, [late, early], client)
    assert par._fits[late][1] is not None and par._fits[early][1] is None
    for p in (seq, par):
        p.fit(fs, late)
        kept = p.bundle_
        assert p.fit(fs, early).bundle_ is kept  # too little history: the last models stay
    a, b = seq.predict_pools(fs, late), par.predict_pools(fs, late)
    assert a is not None and b is not None
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_a_failed_first_selection_is_replaced_by_the_next_full_fit(
        market: tuple[Any, FeatureSet, pd.DataFrame], monkeypatch: pytest.MonkeyPatch) -> None:
    """When the scheduled full fit has too little history, the next refit is full and the
    refits after it keep its choices instead of all being full fits."""
    from pipelines.backtest import providers

    _, fs, _ = market
    t0 = pd.Timestamp(fs.features["timestamp"].min())
    kept: list[bool] = []
    here = providers.fit_bundle

    def counted(upto: pd.Timestamp, **kw: Any) -> Any:
        kept.append(kw.get("selection") is not None)
        return here(upto, **kw)

    monkeypatch.setattr(providers, "fit_bundle", counted)
    prov = providers.BundleProvider("baseline", reselect_every=4)
    cuts = [t0 + pd.Timedelta(hours=6), *(t0 + pd.Timedelta(days=d) for d in (11, 13, 15))]
    assert prov.fit(fs, cuts[0]).bundle_ is None  # too little history
    assert prov.fit(fs, cuts[1]).bundle_ is not None
    for t in cuts[2:]:
        prov.fit(fs, t)
    assert kept == [False, False, True, True]
