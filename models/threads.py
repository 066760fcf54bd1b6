"""How many threads the numeric libraries use: from the machine, a job setting or LPA_THREADS.

LightGBM and torch default to a fixed or all-core thread count and OpenMP threads spin while
they wait; on a small or busy machine that spinning competes with the work itself. Jobs set
``OMP_WAIT_POLICY=PASSIVE`` (see :func:`prefer_passive_waiting`) and size pools from the CPUs
this process may actually run on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["available_cpus", "n_threads", "use_threads", "prefer_passive_waiting", "ENV"]

ENV = "LPA_THREADS"
_REQUESTED: ContextVar[int | None] = ContextVar("lpa_threads", default=None)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def n_threads() -> int:
    """Threads for one model fit: the job's setting, else env LPA_THREADS, else the CPUs.

    Raises ValueError when LPA_THREADS is not a positive integer.
    """
    requested = _REQUESTED.get()
    if requested is not None:
        return requested
    env = os.environ.get(ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"{ENV}={env!r}: expected a positive integer number of threads")
        return int(env)
    return available_cpus()


@contextmanager
def use_threads(threads: int | None = None) -> Iterator[int]:
    """Within the block, fits use ``threads`` (None: env or machine) and so does torch."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    token = _REQUESTED.set(threads)
    torch = sys.modules.get("torch")  # set torch's pool only where torch is in use
    before = torch.get_num_threads() if torch is not None else None
    try:
        n = n_threads()
        if torch is not None:
            torch.set_num_threads(n)
        yield n
    finally:
        _REQUESTED.reset(token)
        if torch is not None and before is not None:
            torch.set_num_threads(before)


def prefer_passive_waiting() -> None:
    """Ask OpenMP threads to sleep, not spin, while idle (unless the user chose otherwise).

    Takes effect only if called before LightGBM or torch start their OpenMP runtime, so jobs
    call it first thing.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
