"""Partitioned Parquet store for the pool panel, written atomically (temp dir, then rename)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from features.schema import POOL_ID, TIMESTAMP, DataValidationError, Panel, validate_meta

__all__ = ["write_panel", "read_panel", "panel_dir", "atomic_dir", "atomic_write_bytes",
           "read_truth"]

PANEL_DIR = "panel"


def panel_dir(workdir: Path) -> Path:
    """Directory of the stored panel inside a work directory."""
    return Path(workdir) / "data" / PANEL_DIR


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file through a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_dir(target: Path, fill: Callable[[Path], None]) -> None:
    """Build a directory in a temp sibling via ``fill`` and swap it in place of ``target``.

    If ``fill`` fails or the process dies, the previous ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.parent / f".{target.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


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

    atomic_dir(target, fill)
    return target


def read_panel(workdir: Path) -> Panel:
    """Load the stored panel of a work directory."""
    d = panel_dir(workdir)
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
    p = panel_dir(workdir) / "truth.parquet"
    if not p.exists():
        return None
    t = pd.read_parquet(p)
    t[POOL_ID] = t[POOL_ID].astype(str)
    return t
