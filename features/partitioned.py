"""Feature build in this process, partition by partition of pools, each part written as it goes.

The three passes of ``features.partitions`` run here: every partition's rows are read alone
from the panel store (its pools' folders only), so peak memory is about one partition's
working set plus the cross-pool inputs (eight series and about a dozen features of every
pool), not the whole long table. While this thread computes a partition on the build threads,
one I/O thread reads the next partition's rows and another writes the previous partition's
part. The store is swapped in whole (``atomic_dir``): a build that fails leaves the previous one.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
from rich.progress import Progress

from features._wide import feature_threads, run_all
from features.build import FeatureConfig
from features.partitions import (
    CELLS_PER_PART,
    EXCHANGE_INPUTS,
    Cross,
    StoredFeatures,
    cross_pass,
    exchange_pass,
    finish_pass,
    make_part_dirs,
    panel_rows,
    part_columns,
    partition_pools,
    store_plan,
    stored,
    write_part,
    write_store_manifest,
)
from features.schema import MISSING, TX_COUNT
from features.sources.pool_rows import PoolRows
from features.sources.store import atomic_dir, panel_dir
from features.stages import WIDE_COLUMNS, BuildPlan
from features.table_io import arrow_schema

__all__ = ["build_features_partitioned", "memory_check", "MemoryCheck", "single_build_gib",
           "available_gib", "SINGLE_GIB_PER_MILLION", "FIT_SHARE"]

GIB = 2**30
# peak memory of the single-process build per million pool-periods, GiB (benchmarks/scale.py:
# 1.93 GiB at 200 pools x 365 days hourly, 3.45 GiB at 200 x 730)
SINGLE_GIB_PER_MILLION = 1.1
# share of the available memory the single-process build may take: above it, the automatic
# choice builds in partitions
FIT_SHARE = 0.8
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc mallopt parameters
_IO_THREAD = "feature-io"  # not a build thread: its tasks may use the build threads
T = TypeVar("T")
R = TypeVar("R")


def single_build_gib(pool_periods: int) -> float:
    """Estimated peak memory of the single-process build of a panel, GiB."""
    return SINGLE_GIB_PER_MILLION * pool_periods / 1e6


def available_gib() -> float:
    """Memory available to new work on this machine, GiB (MemAvailable of /proc/meminfo)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / GIB


@dataclass(frozen=True)
class MemoryCheck:
    """Whether the single-process build of a stored panel fits in memory, and if not, in how
    many partitions to build it."""

    need_gib: float
    available_gib: float
    partitions: int | None


def memory_check(workdir: Path, available: float | None = None) -> MemoryCheck:
    """Estimated memory of the single-process build of the stored panel against what is free.

    Parameters
    ----------
    workdir : work directory holding a stored panel
    available : memory available, GiB (default: :func:`available_gib`)

    Returns
    -------
    MemoryCheck : :func:`single_build_gib` of the panel, the memory available, and the
        default partition count (at most :data:`CELLS_PER_PART` pool-periods each) when the
        estimate exceeds :data:`FIT_SHARE` of what is available (else None)
    """
    path = panel_dir(Path(workdir)) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"no pool panel in {path.parent}; run `lpa data synth` or "
                                "`lpa data import` first")
    man = json.loads(path.read_text())
    rows, pools = int(man["rows"]), max(int(man["pools"]), 1)
    free = available_gib() if available is None else available
    need = single_build_gib(rows)
    if need <= FIT_SHARE * free:
        return MemoryCheck(need, free, None)
    per_part = max(1, CELLS_PER_PART // max(rows // pools, 1))
    return MemoryCheck(need, free, math.ceil(pools / per_part))


@cache
def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc (whose heap :func:`_heap_reuse` tunes)."""
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def _release_heap() -> None:
    """Hand the C heap's free blocks back to the system (before a stage of other sizes)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@contextmanager
def _heap_reuse() -> Iterator[None]:
    """Keep freed blocks of up to 32 MiB in the C heap while the build runs, then free them.

    glibc hands every freed block above 128 KiB back to the system, so each partition's
    arrays (a few MiB each) would be fresh pages again, which the kernel must clear: a tenth
    of the build's time on a virtual machine. Partitions of one size reuse each other's blocks.
    """
    libc = _glibc()
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**30)
    libc.mallopt(_M_ARENA_MAX, 1)  # threads started now share one heap and its free blocks
    try:
        yield
    finally:  # glibc's defaults, and the retained blocks back to the system
        libc.mallopt(_M_ARENA_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 128 * 2**10)
        libc.mallopt(_M_MMAP_THRESHOLD, 128 * 2**10)
        libc.malloc_trim(0)


def _prefetched(io: ThreadPoolExecutor, read: Callable[[T], R], items: list[T],
                first: Future[R] | None = None) -> Iterator[tuple[int, T, R]]:
    """Each item with what ``read`` gives for it, the next item's read on ``io`` while the
    caller works on this one (``first``: the first item's read, already submitted)."""
    ahead = first if first is not None else io.submit(read, items[0])
    for i, item in enumerate(items):
        got = ahead.result()
        if i + 1 < len(items):
            ahead = io.submit(read, items[i + 1])
        yield i, item, got
        del got


def _exchange_series(io: ThreadPoolExecutor, rows: PoolRows, plan: BuildPlan,
                     parts: list[list[str]],
                     step: Callable[[str], None]) -> dict[str, np.ndarray]:
    """Pass 1: every pool's exchange series, partitions computed side by side on the build
    threads while ``io`` reads the next ones."""
    starts = np.cumsum([0, *[len(p) for p in parts]])
    width = feature_threads()
    groups = [list(range(i, min(i + width, len(parts)))) for i in range(0, len(parts), width)]
    joined: dict[str, np.ndarray] = {}  # every pool's series, filled partition by partition

    def read(group: list[int]) -> list[pd.DataFrame]:
        return [rows.read(parts[k], EXCHANGE_INPUTS) for k in group]

    for _, group, frames in _prefetched(io, read, groups):
        series = run_all([partial(exchange_pass, plan, f, parts[k])
                          for f, k in zip(frames, group, strict=True)])
        for k, ex in zip(group, series, strict=True):
            for name, v in ex.items():
                if name not in joined:
                    joined[name] = np.empty((len(plan.times), len(plan.pools)), v.dtype)
                joined[name][:, starts[k]:starts[k + 1]] = v
        step(f"exchange series {group[-1] + 1}/{len(parts)}")
    return joined


def _write_parts(tmp: Path, io: ThreadPoolExecutor, read: Callable[[list[str]], pd.DataFrame],
                 first: Future[pd.DataFrame], plan: BuildPlan, parts: list[list[str]],
                 cross: Cross, step: Callable[[str], None]) -> list[dict[str, Any]]:
    """Pass 3: compute each partition's tables here while ``io`` writes the previous
    partition's and reads the next one's rows (``first``: the first partition's read)."""
    make_part_dirs(tmp)
    starts = np.cumsum([0, *[len(p) for p in parts]])
    done: list[dict[str, Any]] = []
    writing: Future[dict[str, Any]] | None = None
    schemas: tuple[pa.Schema, pa.Schema] | None = None
    try:
        for i, pools, frame in _prefetched(io, read, parts, first):
            lo = int(starts[i])
            features, labels = finish_pass(plan, frame, pools, lo,
                                           part_columns(cross, lo, lo + len(pools), copy=False))
            if schemas is None:  # here: it may touch the warning filters, the I/O threads not
                schemas = (arrow_schema(features), arrow_schema(labels))
            if writing is not None:
                done.append(writing.result())
            writing = io.submit(write_part, features, labels, tmp, i, schemas)
            del features, labels
            step(f"features {i + 1}/{len(parts)}")
        if writing is not None:
            done.append(writing.result())
    finally:  # nothing may still write into the folder when it is dropped or swapped in
        if writing is not None:
            wait([writing])
    return done


def build_features_partitioned(
    workdir: Path, config: FeatureConfig | None = None, partitions: int | None = None,
    pools_per_part: int | None = None, progress: bool = False,
) -> StoredFeatures:
    """Build the feature table of the stored panel in this process, partition by partition.

    Parameters
    ----------
    workdir : work directory whose panel is stored (``lpa data synth`` / ``import``)
    config : feature settings (defaults as ``build_features``)
    partitions, pools_per_part : number of partitions or pools per partition (default:
        partitions of at most :data:`CELLS_PER_PART` pool-periods)
    progress : show a progress bar

    Returns
    -------
    StoredFeatures : path, rows, feature count, parts and digest of the store written under
        ``workdir/features`` (equal to what ``build_features`` + ``write_features`` store)
    """
    cfg = config or FeatureConfig()
    workdir = Path(workdir).resolve()
    plan, meta = store_plan(workdir, cfg)
    parts = partition_pools(plan.pools, len(plan.times), 0, pools_per_part, partitions)
    rows = panel_rows(workdir)
    target = workdir / "features"
    written: dict[str, Any] = {}

    def read(pools: list[str]) -> pd.DataFrame:
        return rows.read(pools, WIDE_COLUMNS, (TX_COUNT, MISSING))

    # two I/O threads: at most one read and one write are ever pending, side by side
    with (_heap_reuse(), Progress(disable=not progress, transient=True) as bar,
          ThreadPoolExecutor(2, thread_name_prefix=_IO_THREAD) as io):
        task = bar.add_task("features", total=2 * len(parts) + 1)

        def step(name: str) -> None:
            bar.update(task, advance=1, description=f"features: {name}")

        joined = _exchange_series(io, rows, plan, parts, step)
        _release_heap()  # the partitions' blocks: the cross-pool pass allocates whole-market ones
        first = io.submit(read, parts[0])  # pass 3's first rows, read during pass 2
        cross = cross_pass(plan, joined)  # pass 2
        del joined
        step("cross-pool features")

        def fill(tmp: Path) -> None:
            done = _write_parts(tmp, io, read, first, plan, parts, cross, step)
            written.update(write_store_manifest(tmp, cfg, plan, meta, done, parts))

        atomic_dir(target, fill)
    return stored(target, plan, written)
