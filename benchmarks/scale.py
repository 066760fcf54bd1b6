"""Benchmark: feature build single-process versus a Dask LocalCluster as the pool count grows.

For each pool count the script simulates an hourly market, stores its panel in a temporary
work directory and times what `lpa features build` does (read the stored panel, build, write
the feature store), once in one process and once with `--cluster local:N`. Each measurement
runs in a fresh interpreter so its peak memory is its own. A single-process build whose peak
memory, extrapolated from the smaller counts, would not fit in the memory available is skipped
and reported as such.

    python benchmarks/scale.py                        # 50, 200, 1000 pools x 730 days, 2 workers
    python benchmarks/scale.py --pools 50,200 --days 365
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# this folder holds a script named like the `features` package: keep it off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

GIB = 2**30
# single-process peak memory per million pool-hours, measured at 200 pools x 730 days (5.9 GiB
# for 3.5 M); the estimate is refined by each single-process run of the session
GIB_PER_MILLION_POOL_HOURS = 1.7


def _peak_rss() -> int:
    """Peak resident memory of this process, bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _measure(mode: str, workdir: Path, workers: int) -> dict[str, float]:
    """One build of the stored panel in this process ('single') or on a LocalCluster."""
    from features.build import build_features, write_features
    from features.distributed import build_features_distributed
    from features.sources.store import read_panel
    from pipelines.cluster import dask_client

    out: dict[str, float] = {}
    if mode == "single":
        t0 = time.perf_counter()
        fs = build_features(read_panel(workdir))
        write_features(fs, workdir)
        out["seconds"] = time.perf_counter() - t0
        out["rows"] = float(len(fs.features))
    else:
        t0 = time.perf_counter()
        with dask_client(f"local:{workers}") as client:
            out["startup_seconds"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            res = build_features_distributed(client, workdir)
            out["seconds"] = time.perf_counter() - t1
            out["rows"] = float(res.rows)
            out["parts"] = float(res.parts)
            peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            out["worker_peak_gib"] = max(peaks.values()) * 1024 / GIB
    out["client_peak_gib"] = _peak_rss() / GIB
    return out


def _child(mode: str, workdir: Path, workers: int) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and read its JSON line."""
    cmd = [sys.executable, __file__, "--measure", mode, "--workdir", str(workdir),
           "--workers", str(workers)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        lines = run.stderr.strip().splitlines()
        return {"error": True, "returncode": run.returncode, "message": lines[-1] if lines else ""}
    return json.loads(run.stdout.strip().splitlines()[-1])


def _market(pools: int, days: int) -> Any:
    """A simulated hourly panel of exactly ``pools`` pools.

    The simulator's universe holds a few hundred distinct pools; larger counts stack markets
    of other seeds, their pool ids and chains suffixed ``#k`` (same tokens, so neighbour
    signals cross the copies).
    """
    import pandas as pd

    from features.schema import CHAIN, POOL_ID, TIMESTAMP, Panel
    from features.sources.simulator import simulate_market

    frames: list[pd.DataFrame] = []
    metas: list[pd.DataFrame] = []
    k, have = 0, 0
    while have < pools:
        panel, _ = simulate_market(n_pools=pools - have, days=days, seed=k)
        have += len(panel.meta)
        f, m = panel.frame, panel.meta.copy()
        if k:
            f = f.assign(**{POOL_ID: f[POOL_ID] + f"#{k}"})
            m[POOL_ID] = m[POOL_ID] + f"#{k}"
            m[CHAIN] = m[CHAIN] + f"#{k}"
        frames.append(f)
        metas.append(m)
        k += 1
    meta = pd.concat(metas, ignore_index=True).iloc[:pools]
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[frame[POOL_ID].isin(set(meta[POOL_ID]))]
    frame = frame.sort_values([POOL_ID, TIMESTAMP], kind="stable").reset_index(drop=True)
    return Panel(frame=frame, meta=meta.reset_index(drop=True), freq="1h",
                 source=f"{k} simulated market(s)")


def _simulate_here(pools: int, days: int, workdir: Path) -> list[float]:
    """Simulate and store a panel; seconds, rows and markets stacked."""
    from features.sources.store import write_panel

    t0 = time.perf_counter()
    panel = _market(pools, days)
    write_panel(panel, workdir)
    return [time.perf_counter() - t0, float(len(panel.frame)), float(panel.source.split()[0])]


def _simulate(pools: int, days: int, workdir: Path) -> tuple[float, int, int]:
    """Simulate and store a panel in a fresh interpreter; seconds, rows and markets."""
    run = subprocess.run([sys.executable, __file__, "--simulate", str(pools), "--days",
                          str(days), "--workdir", str(workdir)],
                         capture_output=True, text=True, check=True)
    secs, rows, markets = json.loads(run.stdout.strip().splitlines()[-1])
    return float(secs), int(rows), int(markets)


def main() -> None:
    """Print build seconds, microseconds per pool-hour and peak memory per pool count."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pools", default="50,200,1000", help="comma-separated pool counts")
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--measure", choices=["single", "cluster"], help=argparse.SUPPRESS)
    ap.add_argument("--simulate", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(_measure(args.measure, args.workdir, args.workers)))
        return
    if args.simulate:
        print(json.dumps(_simulate_here(args.simulate, args.days, args.workdir)))
        return
    import psutil

    counts = [int(x) for x in args.pools.split(",") if x.strip()]
    print(f"hourly panels of {args.days} days; cluster = LocalCluster of {args.workers} "
          f"one-thread workers; {psutil.cpu_count()} CPUs, "
          f"{psutil.virtual_memory().total / GIB:.1f} GiB memory")
    header = (f"{'pools':>6} {'pool-hours':>11} {'mode':>8} {'seconds':>8} {'us/pool-h':>9} "
              f"{'peak GiB':>18}  note")
    print(header)
    gib_per_row = GIB_PER_MILLION_POOL_HOURS / 1e6
    for n in counts:
        root = Path(tempfile.mkdtemp(prefix=f"lpa-scale-{n}-"))
        try:
            sim_s, rows, markets = _simulate(n, args.days, root)
            note = (f"(simulated and stored in {sim_s:.0f} s"
                    + (f", {markets} markets stacked)" if markets > 1 else ")"))
            for mode in ("single", "cluster"):
                avail = psutil.virtual_memory().available / GIB
                if mode == "single" and gib_per_row * rows > 0.8 * avail:
                    print(f"{n:>6} {rows:>11,} {mode:>8} {'skipped':>8} {'':>9} "
                          f"{gib_per_row * rows:>14.1f} est  would exceed 80% of the "
                          f"{avail:.1f} GiB available")
                    continue
                r = _child(mode, root, args.workers)
                if "error" in r:
                    print(f"{n:>6} {rows:>11,} {mode:>8} {'failed':>8}  exit "
                          f"{int(r['returncode'])}: {r.get('message', '')}")
                    continue
                us = r["seconds"] / rows * 1e6
                peak = (f"{r['client_peak_gib']:.1f}" if mode == "single" else
                        f"{r['client_peak_gib']:.1f} + {r['worker_peak_gib']:.1f}/wk")
                extra = (f"{int(r['parts'])} partitions, cluster start "
                         f"{r['startup_seconds']:.1f} s" if mode == "cluster" else note)
                print(f"{n:>6} {rows:>11,} {mode:>8} {r['seconds']:>8.1f} {us:>9.2f} "
                      f"{peak:>18}  {extra}", flush=True)
                if mode == "single":
                    gib_per_row = r["client_peak_gib"] / rows
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
