"""The feature build's three passes over partitions of pools, shared by its drivers.

A partition is a contiguous run of the sorted pool ids (:func:`partition_pools`).

1. :func:`exchange_pass`: a partition's rows (read alone from the panel store by
   :func:`read_panel_pools`) give the few per-pool series that cross-pool signals read
   (:data:`features.stages.EXCHANGE`);
2. :func:`cross_pass`: those series of every pool, joined (:func:`join_exchange`), give the
   market aggregates, the other cross-pool features and the pair shares once; each partition
   takes its own pools' columns of them (:func:`part_columns`);
3. :func:`finish_pass`: a partition's per-pool features and forward labels, as long tables,
   which :func:`write_part` stores as its part of the feature store
   (``features/features.parquet/part-NNNNN.parquet``, labels alike);
   :func:`write_store_manifest` finishes the store.

``features.distributed`` runs the passes on a Dask cluster, ``features.partitioned`` in this
process. The stored table equals the single-process build's exactly; ``read_features`` reads
either layout.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features._wide import run_all
from features.build import (
    PARQUET_OPTIONS,
    FeatureConfig,
    feature_manifest,
    forward_labels,
    plan_build,
)
from features.schema import (
    CLOSE,
    FREQUENCIES,
    POOL_ID,
    TIMESTAMP,
    TOKEN0_PRICE_USD,
    TOKEN1_PRICE_USD,
    TVL_USD,
    VOLUME_USD,
    validate_meta,
)
from features.sources.pool_rows import PoolRows, read_pool_rows
from features.sources.store import panel_dir, recover_dir
from features.stages import (
    BuildPlan,
    cross_stage,
    exchange_direct,
    finish_stage,
    pair_shares,
    pool_grid,
    pool_stage,
    wide_inputs,
)
from features.table_io import write_parquet

__all__ = ["StoredFeatures", "partition_pools", "read_panel_pools", "CELLS_PER_PART",
           "EXCHANGE_INPUTS", "PART_OPTIONS", "PART_DIRS", "store_plan", "exchange_pass",
           "join_exchange", "cross_pass", "part_columns", "finish_pass", "make_part_dirs",
           "write_part", "write_store_manifest", "stored", "panel_rows"]

# pool-periods per partition: about 1.5 GB of working memory for one partition's features
CELLS_PER_PART = 1_000_000
# how part files are written: the table's options, but uncompressed (snappy saves a tenth of
# the size of float features for a fifth of the writing time) and with statistics of the key
# columns only (the ones a reader filters on); the values stored are the same
PART_OPTIONS: dict[str, Any] = {**PARQUET_OPTIONS, "compression": "none",
                                "write_statistics": [POOL_ID, TIMESTAMP]}
PART_DIRS = ("features.parquet", "labels.parquet")  # the store's folders of part files
# the panel columns pass 1 reads (those :func:`features.stages.exchange_direct` reads)
EXCHANGE_INPUTS = (CLOSE, VOLUME_USD, TVL_USD, TOKEN0_PRICE_USD, TOKEN1_PRICE_USD)
Cross = dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True)
class StoredFeatures:
    """What a partitioned build wrote: where, how many rows and features, in how many parts."""

    path: Path
    rows: int
    n_features: int
    horizon: pd.Timedelta
    version: str
    parts: int
    digest: str


def partition_pools(pools: list[str], periods: int, workers: int,
                    pools_per_part: int | None = None,
                    partitions: int | None = None) -> list[list[str]]:
    """Split the sorted pools into contiguous runs, one per partition.

    ``partitions`` asks for that many runs (sizes differing by at most one pool; at most one
    run per pool). Otherwise a partition holds ``pools_per_part`` pools, by default at most
    :data:`CELLS_PER_PART` pool-periods, with at least two partitions per worker while pools
    allow (``workers=0``: no such minimum).
    """
    if partitions is not None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        n = min(partitions, max(len(pools), 1))
        cuts = np.linspace(0, len(pools), n + 1).round().astype(int)
        return [pools[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    if pools_per_part is None:
        by_memory = max(1, CELLS_PER_PART // max(periods, 1))
        by_workers = math.ceil(len(pools) / max(2 * workers, 1)) if workers else len(pools)
        pools_per_part = max(1, min(by_memory, by_workers))
    if pools_per_part < 1:
        raise ValueError(f"pools_per_part must be at least 1, got {pools_per_part}")
    return [pools[i:i + pools_per_part] for i in range(0, len(pools), pools_per_part)]


def read_panel_pools(workdir: str | Path, pools: list[str],
                     columns: Sequence[str] | None = None,
                     optional: Sequence[str] = ()) -> pd.DataFrame:
    """Rows of some pools from the work directory's panel store, as ``read_panel`` orders them.

    ``columns``: the panel columns to read besides pool id and timestamp (default: all);
    ``optional``: further columns read when stored.
    """
    return read_pool_rows(panel_dir(Path(workdir)) / "rows", pools, columns, optional)


def panel_rows(workdir: str | Path) -> PoolRows:
    """The work directory's stored panel rows, listed once for reading partition by partition."""
    return PoolRows(panel_dir(Path(workdir)) / "rows")


def store_plan(workdir: Path, cfg: FeatureConfig) -> tuple[BuildPlan, pd.DataFrame]:
    """The build plan and pool metadata of the stored panel, from its manifest and pool list."""
    d = panel_dir(workdir)
    recover_dir(d, root=workdir)
    if not (d / "manifest.json").exists():
        raise FileNotFoundError(f"no pool panel in {d}; run `lpa data synth` or "
                                "`lpa data import` first")
    man = json.loads((d / "manifest.json").read_text())
    meta = validate_meta(pd.read_csv(d / "pools.csv", dtype={POOL_ID: str}), str(d / "pools.csv"))
    times = pd.date_range(pd.Timestamp(man["start"]), pd.Timestamp(man["end"]),
                          freq=FREQUENCIES[man["freq"]])
    return plan_build(meta, man["freq"], times, sorted(meta[POOL_ID].astype(str)), cfg), meta


def exchange_pass(plan: BuildPlan, frame: pd.DataFrame, pools: list[str]) -> dict[str, np.ndarray]:
    """Pass 1: the exchange series of a partition's pools (reads :data:`EXCHANGE_INPUTS`)."""
    grid = pool_grid(frame, plan, pools)
    cols = [frame[c] for c in EXCHANGE_INPUTS]
    wide = run_all([partial(grid.wide, c) for c in cols])
    return exchange_direct(plan, dict(zip(EXCHANGE_INPUTS, wide, strict=True)))


def join_exchange(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Every pool's exchange series, from the partitions' in pool order."""
    return {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}


def cross_pass(plan: BuildPlan, ex: dict[str, np.ndarray]) -> Cross:
    """Pass 2: cross-pool features and pair shares of every pool from the joined series."""
    return {"network": cross_stage(plan, ex), "shares": pair_shares(plan, ex)}


def part_columns(cross: Cross, lo: int, hi: int, copy: bool = True) -> Cross:
    """The columns lo:hi (one partition's pools) of every cross-pool matrix (views unless
    ``copy``)."""
    return {g: {k: np.ascontiguousarray(v[:, lo:hi]) if copy else v[:, lo:hi]
                for k, v in d.items()} for g, d in cross.items()}


def finish_pass(plan: BuildPlan, frame: pd.DataFrame, pools: list[str], lo: int,
                cross: Cross) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pass 3: a partition's long feature and label tables (pools from position ``lo``)."""
    grid = pool_grid(frame, plan, pools)
    w = wide_inputs(frame, grid)
    idx = np.arange(lo, lo + len(pools))
    # the market's pair shares: a partition's own pools are not the whole pair
    feats, gaps = pool_stage(plan, w, idx, shares=cross["shares"])
    feats.update(cross["network"])
    feats.update(gaps)
    labels = forward_labels(plan, w, feats, idx)
    del w  # the panel's wide columns are freed before the long tables are made
    return finish_stage(frame, grid, feats, labels)


def make_part_dirs(out_dir: Path) -> None:
    """Create the store's two folders of part files in ``out_dir``."""
    for sub in PART_DIRS:
        (Path(out_dir) / sub).mkdir()


def write_part(features: pd.DataFrame, labels: pd.DataFrame, out_dir: str | Path, part: int,
               schemas: tuple[pa.Schema, pa.Schema] | None = None) -> dict[str, Any]:
    """Write a partition's tables as part ``part`` of the store in ``out_dir``; its summary.

    Each file is written under a hidden temp name and renamed into place, so a part file
    is never seen half-written. ``schemas``: the two tables' ``arrow_schema``, if known.
    """
    name = f"part-{part:05d}.parquet"
    for table, sub, schema in ((features, PART_DIRS[0], schemas and schemas[0]),
                               (labels, PART_DIRS[1], schemas and schemas[1])):
        path = Path(out_dir) / sub / name
        tmp = path.with_name(f".{name}.tmp")
        write_parquet(table, tmp, PART_OPTIONS, schema)  # as to_parquet(**PART_OPTIONS)
        os.replace(tmp, path)
    return {"rows": len(features), "columns": list(features.columns),
            "as_of": features[TIMESTAMP].max() if len(features) else None}


def write_store_manifest(tmp: Path, cfg: FeatureConfig, plan: BuildPlan, meta: pd.DataFrame,
                         done: list[dict[str, Any]], parts: list[list[str]]) -> dict[str, Any]:
    """Check the parts built the same columns; write pools.csv and the manifest; return it."""
    columns = done[0]["columns"]
    bad = next((i for i, d in enumerate(done) if d["columns"] != columns), None)
    if bad is not None:
        raise RuntimeError(f"partition {bad} ({parts[bad][0]} ..) built columns "
                           f"{done[bad]['columns'][:5]}..., partition 0 {columns[:5]}...")
    meta.to_csv(tmp / "pools.csv", index=False)
    as_of = max(d["as_of"] for d in done if d["as_of"] is not None)
    manifest = feature_manifest(cfg.model_dump(), columns, plan.freq, plan.horizon,
                                sum(d["rows"] for d in done), as_of)
    manifest["parts"] = len(parts)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def stored(target: Path, plan: BuildPlan, manifest: dict[str, Any]) -> StoredFeatures:
    """What was stored at ``target``, from its manifest."""
    return StoredFeatures(path=target, rows=manifest["rows"],
                          n_features=len(manifest["columns"]), horizon=plan.horizon,
                          version=manifest["version"], parts=int(manifest["parts"]),
                          digest=manifest["digest"])
