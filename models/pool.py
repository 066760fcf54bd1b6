"""Worker processes for the independent fits of one job (model kinds, targets, backtest refits).

On a small machine a single fit rarely keeps every core busy: boosting on a few hundred
thousand rows, a small GRU and the Python around them leave cores idle. A :class:`TaskPool`
runs independent fits side by side in ``workers`` processes of ``threads`` threads each;
inside ``with use_pool(pool):`` the training job evaluates its (kind, target) pairs on it and
the backtest fits the models of its refit times on it (``models.gbm_dask.fan_out`` takes a
pool as it takes a Dask client). Processes are spawned, not forked: LightGBM and torch keep
OpenMP thread pools that a forked child cannot use. A task's result is the same as the call's
in this process, up to the floating-point order of a different thread count.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from multiprocessing import get_context
from typing import Any, TypeVar

from models.threads import ENV, available_cpus

__all__ = ["TaskPool", "task_pool", "use_pool", "active_pool", "pool_workers"]

T = TypeVar("T")
_POOL: ContextVar[TaskPool | None] = ContextVar("lpa_task_pool", default=None)


def _init_worker(threads: int) -> None:
    """Worker start: fits use ``threads`` threads and idle OpenMP threads sleep."""
    os.environ[ENV] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _call(fn: Callable[..., T], threads: int, args: tuple[Any, ...],
          kwargs: dict[str, Any]) -> T:
    """Run one task with the worker's thread count (torch's pool included)."""
    from models.threads import use_threads

    with use_threads(threads):
        return fn(*args, **kwargs)


class TaskPool:
    """``workers`` spawned processes of ``threads`` threads each that run submitted calls.

    Parameters
    ----------
    workers : worker processes (at least 2; one worker gains nothing over this process)
    threads : threads of each worker's fits (default: the CPUs over the workers, at least 1)
    """

    def __init__(self, workers: int, threads: int | None = None) -> None:
        if workers < 2:
            raise ValueError(f"a task pool needs at least 2 workers, got {workers}")
        self.workers = workers
        self.threads = threads or max(1, available_cpus() // workers)
        self._ex = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                       initializer=_init_worker, initargs=(self.threads,))

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn(*args, **kwargs)`` (a module-level function) on a worker."""
        return self._ex.submit(_call, fn, self.threads, args, kwargs)

    def map(self, fn: Callable[..., T], items: list[Any], **shared: Any) -> list[T]:
        """``[fn(item, **shared) for item in items]`` on the workers, results in item order."""
        futures = [self.submit(fn, item, **shared) for item in items]
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stop the workers (queued calls are cancelled)."""
        self._ex.shutdown(wait=True, cancel_futures=True)


def pool_workers(requested: int | None = None) -> int:
    """Worker processes for a job: ``requested``, else one per CPU available (1: no pool)."""
    n = available_cpus() if requested is None else requested
    if n < 1:
        raise ValueError(f"workers must be >= 1, got {n}")
    return n


@contextmanager
def task_pool(workers: int) -> Iterator[TaskPool | None]:
    """A :class:`TaskPool` of ``workers`` processes for the block (None for one worker)."""
    if workers <= 1:
        yield None
        return
    pool = TaskPool(workers)
    try:
        yield pool
    finally:
        pool.close()


@contextmanager
def use_pool(pool: TaskPool | None) -> Iterator[TaskPool | None]:
    """Within the block, jobs run their independent fits on ``pool`` (None: in-process)."""
    token = _POOL.set(pool)
    try:
        yield pool
    finally:
        _POOL.reset(token)


def active_pool() -> TaskPool | None:
    """The pool of the enclosing :func:`use_pool` block, or None."""
    return _POOL.get()
