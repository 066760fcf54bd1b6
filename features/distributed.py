"""Feature build on a Dask cluster: pools in partitions, cross-pool signals computed once.

Three passes over partitions of pools (contiguous runs of the sorted pool ids):

1. each partition loads its pools' rows (from the work directory's panel store, or scattered
   from memory) and computes the few per-pool series that cross-pool signals read
   (:data:`features.stages.EXCHANGE`);
2. one task joins those series of every pool and computes the market aggregates and the other
   cross-pool features (market return and volatility, neighbour and contagion signals, pair
   shares) once; each partition receives its own pools' columns of them;
3. each partition computes its per-pool features and forward labels and writes its part of the
   feature store (``features/features.parquet/part-NNNNN.parquet``, labels alike).

The stored table equals the single-process build's exactly; ``read_features`` reads either.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.build import (
    PARQUET_OPTIONS,
    FeatureConfig,
    feature_manifest,
    forward_labels,
    plan_build,
)
from features.schema import FREQUENCIES, POOL_ID, TIMESTAMP, Panel, validate_meta
from features.sources.store import atomic_dir, panel_dir, recover_dir
from features.stages import (
    BuildPlan,
    cross_stage,
    exchange_direct,
    finish_stage,
    pair_columns,
    pair_shares,
    pool_grid,
    pool_stage,
    wide_inputs,
)

__all__ = ["StoredFeatures", "build_features_distributed", "partition_pools",
           "read_panel_pools", "CELLS_PER_PART"]

# pool-periods per partition: about 1.5 GB of working memory for one partition's features
CELLS_PER_PART = 1_000_000


@dataclass(frozen=True)
class StoredFeatures:
    """What a distributed build wrote: where, how many rows and features, in how many parts."""

    path: Path
    rows: int
    n_features: int
    horizon: pd.Timedelta
    version: str
    parts: int
    digest: str


def partition_pools(pools: list[str], periods: int, workers: int,
                    pools_per_part: int | None = None) -> list[list[str]]:
    """Split the sorted pools into contiguous runs, one per partition.

    By default a partition holds at most :data:`CELLS_PER_PART` pool-periods, and there are at
    least two partitions per worker while pools allow.
    """
    if pools_per_part is None:
        by_memory = max(1, CELLS_PER_PART // max(periods, 1))
        by_workers = math.ceil(len(pools) / max(2 * workers, 1))
        pools_per_part = max(1, min(by_memory, by_workers))
    if pools_per_part < 1:
        raise ValueError(f"pools_per_part must be at least 1, got {pools_per_part}")
    return [pools[i:i + pools_per_part] for i in range(0, len(pools), pools_per_part)]


def read_panel_pools(workdir: str | Path, pools: list[str]) -> pd.DataFrame:
    """Rows of some pools from the work directory's panel store, as ``read_panel`` orders them."""
    frame = pd.read_parquet(panel_dir(Path(workdir)) / "rows", filters=[(POOL_ID, "in", pools)])
    frame[POOL_ID] = frame[POOL_ID].astype(str)
    frame = frame.sort_values([POOL_ID, TIMESTAMP], kind="stable").reset_index(drop=True)
    return frame[[POOL_ID, *[c for c in frame.columns if c != POOL_ID]]]


def _store_plan(workdir: Path, cfg: FeatureConfig) -> tuple[BuildPlan, pd.DataFrame]:
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


def _exchange(plan: BuildPlan, frame: pd.DataFrame, pools: list[str]) -> dict[str, np.ndarray]:
    """Pass 1: the exchange series of a partition's pools."""
    grid = pool_grid(frame, plan, pools)
    return exchange_direct(plan, wide_inputs(frame, grid))


def _cross(plan: BuildPlan, *parts: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Pass 2: cross-pool features and pair shares of every pool from the joined series."""
    ex = {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}
    return {"network": cross_stage(plan, ex), "shares": pair_shares(plan, ex)}


def _columns(cross: dict[str, dict[str, np.ndarray]], lo: int,
             hi: int) -> dict[str, dict[str, np.ndarray]]:
    """The columns lo:hi (one partition's pools) of every cross-pool matrix."""
    return {g: {k: np.ascontiguousarray(v[:, lo:hi]) for k, v in d.items()}
            for g, d in cross.items()}


def _finish(plan: BuildPlan, frame: pd.DataFrame, pools: list[str], lo: int,
            cross: dict[str, dict[str, np.ndarray]], out_dir: str, part: int) -> dict[str, Any]:
    """Pass 3: a partition's features and labels, written as its part of the store."""
    grid = pool_grid(frame, plan, pools)
    w = wide_inputs(frame, grid)
    idx = np.arange(lo, lo + len(pools))
    feats, gaps = pool_stage(plan, w, idx)
    if len(pools) < len(plan.pools):  # shares over this partition alone are not the market's
        feats.update(pair_columns(plan, cross["shares"]))
    feats.update(cross["network"])
    feats.update(gaps)
    labels = forward_labels(plan, w, feats, idx)
    features, labels_long = finish_stage(frame, grid, feats, labels)
    name = f"part-{part:05d}.parquet"
    features.to_parquet(Path(out_dir) / "features.parquet" / name, **PARQUET_OPTIONS)
    labels_long.to_parquet(Path(out_dir) / "labels.parquet" / name, **PARQUET_OPTIONS)
    return {"rows": len(features), "columns": list(features.columns),
            "as_of": features[TIMESTAMP].max() if len(features) else None}


def build_features_distributed(
    client: Any, workdir: Path, config: FeatureConfig | None = None,
    panel: Panel | None = None, pools_per_part: int | None = None,
) -> StoredFeatures:
    """Build the feature table on a Dask cluster and store it under ``workdir/features``.

    Parameters
    ----------
    client : a ``distributed.Client``; its workers must see ``workdir`` at the same path
    workdir : work directory; the panel is read from its store unless ``panel`` is given
    config : feature settings (defaults as ``build_features``)
    panel : an in-memory panel, scattered to the workers partition by partition
    pools_per_part : pools per partition (default: see :func:`partition_pools`)

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
        plan, meta = _store_plan(workdir, cfg)
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    parts = partition_pools(plan.pools, len(plan.times), workers, pools_per_part)
    plan_f = client.scatter(plan, broadcast=True)
    if panel is not None:
        by_pool = panel.frame.groupby(POOL_ID, sort=True)
        frames = [client.scatter(pd.concat([by_pool.get_group(p) for p in ps]).reset_index(
            drop=True)) for ps in parts]
    else:
        frames = [client.submit(read_panel_pools, str(workdir), ps, pure=False) for ps in parts]
    exchange = [client.submit(_exchange, plan_f, f, ps) for f, ps in zip(frames, parts,
                                                                         strict=True)]
    cross = client.submit(_cross, plan_f, *exchange)
    starts = np.cumsum([0, *[len(ps) for ps in parts]])
    slices = [client.submit(_columns, cross, int(lo), int(lo) + len(ps))
              for lo, ps in zip(starts, parts, strict=False)]
    del exchange, cross  # freed on the workers once the slices are taken
    written: dict[str, Any] = {}

    def fill(tmp: Path) -> None:
        (tmp / "features.parquet").mkdir()
        (tmp / "labels.parquet").mkdir()
        done = client.gather([client.submit(_finish, plan_f, f, ps, int(lo), s, str(tmp), i)
                              for i, (f, ps, lo, s) in enumerate(zip(frames, parts, starts,
                                                                     slices, strict=False))])
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
        written.update(manifest)

    target = workdir / "features"
    atomic_dir(target, fill)
    return StoredFeatures(path=target, rows=written["rows"], n_features=len(written["columns"]),
                          horizon=plan.horizon, version=written["version"], parts=len(parts),
                          digest=written["digest"])
