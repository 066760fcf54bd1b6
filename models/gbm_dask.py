"""The active Dask client of a job, independent tasks on it, and LightGBM fits on the cluster.

:func:`fan_out` runs independent calls (walk-forward folds, backtest retrains) as tasks on a
client, or one after another without one; a task runs outside any :func:`use_dask` block, so a
model fitted inside a task trains in the worker's own process, never data-parallel again.

Inside ``with use_dask(client):`` the :func:`make_forecaster` of this module returns LightGBM
forecasters whose boosters are trained data-parallel across the cluster's workers (rows
interleaved across them); everything else (columns, categories, row stride, prediction, native
model files, the ``lightgbm`` kind in the registry) is that of :class:`LightGBMQuantile` and
:class:`LightGBMStress`. Outside the block it is ``models.forecasts.make_forecaster``.

Data-parallel LightGBM finds feature bins and bags rows per worker, so its trees are not
bit-identical to a single-process fit; their quality is (tests/test_distributed.py).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar
from urllib.parse import urlparse

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
    """Train one booster data-parallel on the cluster, one interleaved share of rows per worker.

    Every share spans the whole period, so each machine's feature bins see all of it. The
    shares are sent to chosen workers and each fit is pinned to its share's worker, so the
    booster always trains on as many machines as there are shares (LightGBM's own Dask
    estimators leave the placement to the scheduler, which can put every share on one worker).

    Parameters
    ----------
    client : a ``distributed.Client``
    M : model input matrix (``lgb_matrix``), y : labels of its rows
    params : LightGBM parameters (``lgb_params``); threads become the workers' own
    rounds : boosting rounds
    categorical : categorical columns of M
    """
    info = client.scheduler_info(n_workers=-1).get("workers", {})
    workers = sorted(info)
    n = max(1, min(len(workers), len(M) // 50))
    M = M.reset_index(drop=True)
    y = np.asarray(y, float)
    ports = client.run(_open_port, workers=workers[:n])  # {worker address: port}
    machines = ",".join(f"{urlparse(w).hostname}:{ports[w]}" for w in workers[:n])
    futures = []
    for i, w in enumerate(workers[:n]):
        part = client.scatter((M.iloc[i::n], y[i::n]), workers=[w], hash=False)
        net = {"tree_learner": "data", "num_machines": n, "machines": machines,
               "local_listen_port": ports[w], "time_out": 120,
               "num_threads": max(1, int(info[w].get("nthreads", 1)))}
        futures.append(client.submit(_fit_share, part, {**params, **net}, rounds, categorical,
                                     i == 0, workers=[w], allow_other_workers=False,
                                     pure=False))
    booster = client.gather(futures)[0]
    assert isinstance(booster, lgb.Booster)
    return booster


def _open_port() -> int:
    """A free TCP port on this machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _fit_share(part: tuple[pd.DataFrame, np.ndarray], params: dict[str, Any], rounds: int,
               categorical: list[str], keep: bool) -> lgb.Booster | None:
    """This machine's side of a data-parallel fit; the booster on the first machine only."""
    X, y = part
    data = lgb.Dataset(X, y, categorical_feature=categorical or "auto", free_raw_data=True)
    try:
        booster = lgb.train(params, data, num_boost_round=rounds)
    finally:
        # the network is process-wide: left set up, this worker's next (serial) fit would
        # wait for the other machines forever
        lgb.basic._LIB.LGBM_NetworkFree()
    return booster if keep else None


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
