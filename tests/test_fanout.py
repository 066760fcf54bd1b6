"""Walk-forward folds and backtest retrains as Dask tasks equal the single-process runs.

One in-process LocalCluster (two one-thread workers) serves the module; tasks then run in
worker threads of this process, which is where a context variable could leak into them.
"""

from __future__ import annotations

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
    assert "[num_machines: 1]" in par.model.booster_.model_to_string() or \
        "num_machines" not in par.model.booster_.model_to_string()
    q = ["q10", "q50", "q90", "mean"]
    np.testing.assert_allclose(par.predictions[q].to_numpy(float),
                               seq.predictions[q].to_numpy(float), rtol=1e-12, atol=0)
    for k, v in seq.metrics.items():
        assert par.metrics[k] == pytest.approx(v, rel=1e-12), k
