"""The active Dask client of a job, independent tasks on it, and LightGBM fits on the cluster.

:func:`fan_out` runs independent calls (walk-forward folds, backtest retrains) as tasks on a
client, or one after another without one; a task runs outside any :func:`use_dask` block, so a
model fitted inside a task trains in the worker's own process, never data-parallel again.

Inside ``with use_dask(client):`` the :func:`make_forecaster` of this module returns LightGBM
forecasters whose boosters are trained data-parallel across the cluster's workers (rows
partitioned by pool); everything else (columns, categories, row stride, prediction, native
model files, the ``lightgbm`` kind in the registry) is that of :class:`LightGBMQuantile` and
:class:`LightGBMStress`. Outside the block it is ``models.forecasts.make_forecaster``.

Data-parallel LightGBM finds feature bins and bags rows per worker, so its trees are not
bit-identical to a single-process fit; their quality is (tests/test_distributed.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.schema import TIMESTAMP
from models.base import FORECASTERS, BaseForecaster
from models.forecasts import make_forecaster as _make_local
from models.gbm import LightGBMQuantile, lgb_matrix, lgb_params, stride_mask
from models.pool import TaskPool
from models.stress import LightGBMStress

__all__ = ["use_dask", "active_client", "fan_out", "worker_threads", "make_forecaster",
           "DaskLightGBMQuantile", "DaskLightGBMStress", "train_booster"]

T = TypeVar("T")
_CLIENT: ContextVar[Any] = ContextVar("lpa_dask_client", default=None)


@contextmanager
def use_dask(client: Any) -> Iterator[Any]:
    """Within the block, LightGBM forecasters from :func:`make_forecaster` train on ``client``
    (None: the block changes nothing)."""
    token = _CLIENT.set(client)
    try:
        yield client
    finally:
        _CLIENT.reset(token)


def active_client() -> Any:
    """The Dask client of the enclosing :func:`use_dask` block, or None."""
    return _CLIENT.get()


def worker_threads(client: Any) -> int:
    """Threads of the smallest worker of a cluster (at least 1)."""
    if isinstance(client, TaskPool):
        return client.threads
    workers = client.scheduler_info().get("workers", {})
    return max(1, min((w.get("nthreads", 1) for w in workers.values()), default=1))


def fan_out(client: Any, fn: Callable[..., T], items: Iterable[Any], **shared: Any) -> list[T]:
    """``[fn(item, **shared) for item in items]``, as cluster tasks when a client is given.

    Parameters
    ----------
    client : a ``distributed.Client``, a ``models.pool.TaskPool``, or None to run the calls
        here, in order
    fn : a function importable by the workers (module level, not a lambda or closure)
    items : one argument per call, e.g. fold definitions or retrain dates
    shared : keyword arguments every call receives; sent to the cluster once, not per call

    Results come back in the order of ``items``; the first failing call raises here.
    """
    items = list(items)
    if client is None:
        return [fn(item, **shared) for item in items]
    if isinstance(client, TaskPool):
        return client.map(fn, items, **shared)
    # scatter a one-item list: one future per value, even for dicts and lists
    sent = {k: client.scatter([v], hash=False)[0] for k, v in shared.items()}
    futures = client.map(fn, items, pure=False, **sent)
    return list(client.gather(futures))


def train_booster(client: Any, M: pd.DataFrame, y: np.ndarray, params: dict[str, Any],
                  rounds: int, categorical: list[str]) -> lgb.Booster:
    """Train one booster data-parallel on the cluster; rows are split in contiguous blocks
    (the feature table is pool-major, so a block holds whole pools), one per worker.

    Parameters
    ----------
    client : a ``distributed.Client``
    M : model input matrix (``lgb_matrix``), y : labels of its rows
    params : LightGBM parameters (``lgb_params``); threads become the workers' own
    rounds : boosting rounds
    categorical : categorical columns of M
    """
    import dask.dataframe as dd
    from lightgbm.dask import DaskLGBMClassifier, DaskLGBMRegressor

    workers = max(1, len(client.scheduler_info().get("workers", {})))
    parts = max(1, min(workers, len(M) // 50))
    M = M.reset_index(drop=True)
    Xd = dd.from_pandas(M, npartitions=parts, sort=True)
    yd = dd.from_pandas(pd.Series(np.asarray(y, float), name="y"), npartitions=parts, sort=True)
    p = dict(params)
    for k in ("num_threads", "verbose"):  # lightgbm.dask gives each worker its own threads
        p.pop(k, None)
    objective = p.pop("objective")
    seed = p.pop("seed", None)
    est_cls = DaskLGBMClassifier if objective == "binary" else DaskLGBMRegressor
    est = est_cls(client=client, objective=objective, n_estimators=rounds, random_state=seed,
                  verbose=-1, tree_learner="data", **p)
    with warnings.catch_warnings():  # the estimator's own n_jobs default, replaced as intended
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        est.fit(Xd, yd, categorical_feature=categorical)
    return est.booster_


class DaskLightGBMQuantile(LightGBMQuantile):
    """:class:`LightGBMQuantile` whose boosters train on a Dask cluster."""

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self._client = client

    def _booster(self, X: pd.DataFrame, z: np.ndarray, point: dict[str, Any]) -> lgb.Booster:
        keep = stride_mask(X[TIMESTAMP], self.row_stride) & np.isfinite(z)
        params = lgb_params(self.seed, **{"objective": "l2", **self.params, **point})
        return train_booster(self._client, lgb_matrix(X.loc[keep], self.columns_,
                                                      self.categories_),
                             z[keep], params, self.n_estimators, list(self.categories_))


class DaskLightGBMStress(LightGBMStress):
    """:class:`LightGBMStress` whose classifier boosters train on a Dask cluster."""

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self._client = client

    def _train(self, X: pd.DataFrame, y: np.ndarray, point: dict[str, Any]) -> lgb.Booster:
        keep = stride_mask(X[TIMESTAMP], self.row_stride) & np.isfinite(y)
        params = lgb_params(self.seed, objective="binary", **{**self.params, **point})
        return train_booster(self._client, lgb_matrix(X.loc[keep], self.columns_,
                                                      self.categories_),
                             y[keep], params, self.n_estimators, list(self.categories_))


# the subclasses train differently but save as the plain kinds, which load the plain classes
FORECASTERS[LightGBMQuantile.kind] = LightGBMQuantile
FORECASTERS[LightGBMStress.kind] = LightGBMStress


def make_forecaster(kind: str, target: str, freq: str, horizon_periods: int = 24,
                    **params: Any) -> BaseForecaster:
    """``models.forecasts.make_forecaster``, with LightGBM trained on the active Dask client."""
    model = _make_local(kind, target, freq, horizon_periods, **params)
    client = active_client()
    if client is None or type(model) not in (LightGBMQuantile, LightGBMStress):
        return model
    cls = DaskLightGBMQuantile if isinstance(model, LightGBMQuantile) else DaskLightGBMStress
    return cls(client, **model.get_params())
