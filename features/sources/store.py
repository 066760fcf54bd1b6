"""Partitioned Parquet store for the pool panel, written atomically under the work-dir lock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from features.schema import POOL_ID, TIMESTAMP, DataValidationError, Panel, validate_meta
from features.sources.workdir import (
    LOCK_FILE,
    WorkdirLockedError,
    atomic_dir,
    atomic_write_bytes,
    clean_stale_temps,
    recover_dir,
    safe_slug,
    workdir_lock,
)

__all__ = ["write_panel", "read_panel", "panel_dir", "read_truth", "atomic_dir",
           "atomic_write_bytes", "safe_slug", "workdir_lock", "WorkdirLockedError",
           "recover_dir", "clean_stale_temps", "LOCK_FILE"]

PANEL_DIR = "panel"


def panel_dir(workdir: Path) -> Path:
    """Directory of the stored panel inside a work directory."""
    return Path(workdir) / "data" / PANEL_DIR


def write_panel(
    panel: Panel, workdir: Path, truth: pd.DataFrame | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Store a panel (partitioned by pool), its metadata and optional ground truth atomically."""
    target = panel_dir(workdir)

    def fill(tmp: Path) -> None:
        panel.frame.to_parquet(tmp / "rows", partition_cols=[POOL_ID], index=False)
        panel.meta.to_csv(tmp / "pools.csv", index=False)
        if truth is not None:
            truth.to_parquet(tmp / "truth.parquet", index=False)
        manifest = {
            "freq": panel.freq,
            "source": panel.source,
            "pools": len(panel.meta),
            "rows": len(panel.frame),
            "start": str(panel.frame[TIMESTAMP].min()),
            "end": str(panel.frame[TIMESTAMP].max()),
            "info": panel.info,
            **(extra or {}),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))

    atomic_dir(target, fill, root=workdir)
    return target


def read_panel(workdir: Path) -> Panel:
    """Load the stored panel of a work directory (repairing an interrupted write first)."""
    d = panel_dir(workdir)
    recover_dir(d, root=workdir)
    if not (d / "manifest.json").exists():
        raise DataValidationError(
            f"no pool panel in {d}; run `lpa data synth` or `lpa data import` first",
            source=str(d), rule="panel present",
        )
    manifest = json.loads((d / "manifest.json").read_text())
    frame = pd.read_parquet(d / "rows")
    frame[POOL_ID] = frame[POOL_ID].astype(str)
    frame = frame.sort_values([POOL_ID, TIMESTAMP], kind="stable").reset_index(drop=True)
    cols = [c for c in frame.columns if c != POOL_ID]
    frame = frame[[POOL_ID, *cols]]
    meta = validate_meta(pd.read_csv(d / "pools.csv", dtype={POOL_ID: str}), str(d / "pools.csv"))
    return Panel(frame=frame, meta=meta, freq=manifest["freq"], source=manifest.get("source", ""),
                 info=manifest.get("info", {}))


def read_truth(workdir: Path) -> pd.DataFrame | None:
    """Ground-truth regime/stress labels kept beside a simulated panel, if any."""
    d = panel_dir(workdir)
    recover_dir(d, root=workdir)
    p = d / "truth.parquet"
    if not p.exists():
        return None
    t = pd.read_parquet(p)
    t[POOL_ID] = t[POOL_ID].astype(str)
    return t
