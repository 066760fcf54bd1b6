"""Feature build on a Dask cluster: pools in partitions, cross-pool signals computed once.

The three passes of ``features.partitions`` as Dask tasks: each partition loads its pools' rows
(from the work directory's panel store, or scattered from memory) and computes its exchange
series; one task computes the cross-pool features of every pool; each partition then computes
and writes its part of the feature store. The stored table equals the single-process build's
exactly; ``read_features`` reads either layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.build import FeatureConfig, plan_build
from features.partitions import (
    CELLS_PER_PART,
    Cross,
    StoredFeatures,
    cross_pass,
    exchange_pass,
    finish_pass,
    join_exchange,
    make_part_dirs,
    part_columns,
    partition_pools,
    read_panel_pools,
    store_plan,
    stored,
    write_part,
    write_store_manifest,
)
from features.schema import POOL_ID, TIMESTAMP, Panel
from features.sources.store import atomic_dir
from features.stages import BuildPlan

__all__ = ["StoredFeatures", "build_features_distributed", "partition_pools",
           "read_panel_pools", "CELLS_PER_PART"]


def _cross(plan: BuildPlan, *parts: dict[str, np.ndarray]) -> Cross:
    """Pass 2 as one Dask task: join the partitions' series, then :func:`cross_pass`."""
    return cross_pass(plan, join_exchange(list(parts)))


def _finish(plan: BuildPlan, frame: pd.DataFrame, pools: list[str], lo: int, cross: Cross,
            out_dir: str, part: int) -> dict[str, Any]:
    """Pass 3 as one Dask task: :func:`finish_pass`, then :func:`write_part`."""
    features, labels = finish_pass(plan, frame, pools, lo, cross)
    return write_part(features, labels, out_dir, part)


def build_features_distributed(
    client: Any, workdir: Path, config: FeatureConfig | None = None,
    panel: Panel | None = None, pools_per_part: int | None = None,
    partitions: int | None = None,
) -> StoredFeatures:
    """Build the feature table on a Dask cluster and store it under ``workdir/features``.

    Parameters
    ----------
    client : a ``distributed.Client``; its workers must see ``workdir`` at the same path
    workdir : work directory; the panel is read from its store unless ``panel`` is given
    config : feature settings (defaults as ``build_features``)
    panel : an in-memory panel, scattered to the workers partition by partition
    pools_per_part, partitions : pools per partition or number of partitions (default: see
        :func:`partition_pools`)

    Returns
    -------
    StoredFeatures : path, rows, feature count and digest of the stored table
    """
    cfg = config or FeatureConfig()
    workdir = Path(workdir).resolve()
    if panel is not None:
        times = pd.date_range(panel.frame[TIMESTAMP].min(), panel.frame[TIMESTAMP].max(),
                              freq=panel.step)
        pools = sorted(panel.frame[POOL_ID].unique().tolist())
        plan = plan_build(panel.meta, panel.freq, times, pools, cfg)
        meta = panel.meta
    else:
        plan, meta = store_plan(workdir, cfg)
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    parts = partition_pools(plan.pools, len(plan.times), workers, pools_per_part, partitions)
    plan_f = client.scatter(plan, broadcast=True)
    if panel is not None:
        by_pool = panel.frame.groupby(POOL_ID, sort=True)
        frames = [client.scatter(pd.concat([by_pool.get_group(p) for p in ps]).reset_index(
            drop=True)) for ps in parts]
    else:
        frames = [client.submit(read_panel_pools, str(workdir), ps, pure=False) for ps in parts]
    exchange = [client.submit(exchange_pass, plan_f, f, ps)
                for f, ps in zip(frames, parts, strict=True)]
    cross = client.submit(_cross, plan_f, *exchange)
    starts = np.cumsum([0, *[len(ps) for ps in parts]])
    slices = [client.submit(part_columns, cross, int(lo), int(lo) + len(ps))
              for lo, ps in zip(starts, parts, strict=False)]
    del exchange, cross  # freed on the workers once the slices are taken
    written: dict[str, Any] = {}

    def fill(tmp: Path) -> None:
        make_part_dirs(tmp)
        done = client.gather([client.submit(_finish, plan_f, f, ps, int(lo), s, str(tmp), i)
                              for i, (f, ps, lo, s) in enumerate(zip(frames, parts, starts,
                                                                     slices, strict=False))])
        written.update(write_store_manifest(tmp, cfg, plan, meta, done, parts))

    target = workdir / "features"
    atomic_dir(target, fill)
    return stored(target, plan, written)
