"""Dask clusters for the heavy jobs: ``--cluster local[:N]`` or ``--scheduler tcp://host:port``.

With neither option a job runs in its own process as before. ``local`` starts a
``LocalCluster`` of N single-threaded worker processes (default: one per CPU) for the length of
the job; ``--scheduler`` connects to a running cluster whose workers see the work directory at
the same path. :func:`fan_out` runs independent calls (walk-forward folds, backtest retrains)
as tasks on the cluster, or one after another without one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Annotated, Any, TypeVar

import typer

from models.threads import available_cpus

__all__ = ["ClusterOption", "SchedulerOption", "WorkersOption", "parse_cluster", "dask_client",
           "fan_out", "worker_threads", "check_workers"]

T = TypeVar("T")

ClusterOption = Annotated[str | None, typer.Option(
    "--cluster", envvar="LPA_CLUSTER",
    help="Run on a Dask cluster started for this job: local (one worker per CPU) or local:N.")]
WorkersOption = Annotated[int | None, typer.Option(
    "--workers", envvar="LPA_WORKERS", min=1,
    help="Worker processes that fit models side by side on this machine, each with the CPUs "
         "over the workers as threads (1: every fit in this process).")]
SchedulerOption = Annotated[str | None, typer.Option(
    "--scheduler", envvar="LPA_SCHEDULER",
    help="Run on a running Dask cluster, e.g. tcp://scheduler:8786 (workers must see the "
         "work directory at the same path).")]


def check_workers(workers: int | None, cluster: str | None, scheduler: str | None) -> None:
    """Refuse local worker processes together with a Dask cluster (ValueError)."""
    if (workers or 1) > 1 and (cluster or scheduler):
        raise ValueError("--workers runs fits in processes of this machine; with --cluster "
                         "or --scheduler the cluster's workers do: pass one of them")


def parse_cluster(spec: str) -> int:
    """Worker count of a ``local`` or ``local:N`` cluster spec (``local``: one per CPU)."""
    kind, _, n = spec.strip().partition(":")
    if kind != "local":
        raise ValueError(f"--cluster {spec!r}: expected local or local:N (N workers); for a "
                         "running cluster pass --scheduler tcp://host:port")
    if not n:
        return available_cpus()
    if not n.isdigit() or int(n) < 1:
        raise ValueError(f"--cluster {spec!r}: N must be a positive whole number of workers")
    return int(n)


@contextmanager
def dask_client(cluster: str | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` for the block, or None when neither option is given.

    Parameters
    ----------
    cluster : ``local`` or ``local:N``: a LocalCluster of N one-thread worker processes, closed
        when the block ends
    scheduler : address of a running scheduler (``tcp://host:8786``)
    """
    if cluster and scheduler:
        raise ValueError("pass --cluster or --scheduler, not both")
    if not cluster and not scheduler:
        yield None
        return
    from distributed import Client, LocalCluster

    with ExitStack() as stack:
        if cluster:
            workers = parse_cluster(cluster)
            # workers inherit this passive OpenMP wait: idle LightGBM threads do not spin
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            lc = stack.enter_context(LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=40))
            client = stack.enter_context(Client(lc))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout="30s"))
            except OSError as exc:
                raise RuntimeError(f"cannot reach the Dask scheduler at {scheduler}: {exc}; "
                                   "start it with `dask scheduler` or check the address") from None
        yield client


def worker_threads(client: Any) -> int:
    """Threads of the smallest worker of a cluster (at least 1)."""
    from models.gbm_dask import worker_threads as threads_of

    return threads_of(client)


def fan_out(client: Any, fn: Callable[..., T], items: Iterable[Any], **shared: Any) -> list[T]:
    """``[fn(item, **shared) for item in items]``, as cluster tasks when a client is given
    (``models.gbm_dask.fan_out``, where the models' own fan-outs find it)."""
    from models.gbm_dask import fan_out as run

    return run(client, fn, items, **shared)
