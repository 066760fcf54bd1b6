"""Benchmark: feature build throughput (pool-hours/s), its stages, memory and the bandwidth floor.

Builds features for simulated hourly pools (default 200 pools x 1 year), once untimed (the
compiled kernels load or compile), then ``--repeat`` timed builds; prints the median beside the
target, where the time goes (stage by stage), peak memory and how far the build is from what
this machine's memory bandwidth allows. Usage:
    .venv/bin/python benchmarks/features.py [--pools 200] [--days 365] [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

# this file is named like the `features` package: keep its folder off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from features import build as fb  # noqa: E402
from features import stages  # noqa: E402
from features._wide import make_grid  # noqa: E402
from features.sources.simulator import simulate_market  # noqa: E402

TARGET_ROWS_PER_S = 2_000_000
TARGET_BIG = "1,000 pools x 2 years hourly in < 60 s and < 4 GiB (benchmarks/cost_curve.py)"


def copy_bandwidth(mib: int = 512) -> float:
    """Memory bandwidth of a large numpy copy, GB/s (bytes read + bytes written)."""
    a = np.ones(mib * 2**20 // 8)
    b = np.empty_like(a)
    np.copyto(b, a)
    secs = []
    for _ in range(5):
        t0 = time.perf_counter()
        np.copyto(b, a)
        secs.append(time.perf_counter() - t0)
    return 2 * a.nbytes / min(secs) / 1e9


def first_touch_bandwidth(mib: int = 256, arrays: int = 4) -> float:
    """GB/s of writing freshly allocated memory (page faults included), as every new array
    of a build is written."""
    secs, held = [], []
    for _ in range(arrays):
        t0 = time.perf_counter()
        a = np.empty(mib * 2**20 // 8)
        a.fill(1.0)
        secs.append(time.perf_counter() - t0)
        held.append(a)  # kept, so the next array cannot reuse these pages
    return mib * 2**20 / statistics.median(secs) / 1e9


def rss_mib() -> float:
    """Current resident memory of this process, MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def stage_seconds(panel: fb.Panel) -> dict[str, float]:
    """One build split into its stages (the same calls build_features makes), seconds each."""
    out: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        out[name] = now - t
        t = now

    frame = panel.frame
    grid = make_grid(frame, panel.freq)
    plan = fb.plan_build(panel.meta, panel.freq, grid.times, grid.pools)
    w = stages.wide_inputs(frame, grid)
    lap("grid + wide inputs")
    idx = np.arange(len(grid.pools))
    feats, gaps = stages.pool_stage(plan, w, idx)
    lap("per-pool signals (volatility, flow)")
    feats.update(stages.cross_stage(plan, stages.exchange_series(plan, feats, w)))
    feats.update(gaps)
    lap("cross-pool signals (network)")
    labels = fb.forward_labels(plan, w, feats, idx)
    lap("labels")
    stages.finish_stage(frame, grid, feats, labels)
    lap("assembly of the long tables")
    return out


def main() -> None:
    """Build features for pools x days of simulated hours and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pools", type=int, default=200)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    panel, _ = simulate_market(n_pools=args.pools, days=args.days, seed=0)
    rows = len(panel.frame)
    rss0 = rss_mib()
    t0 = time.perf_counter()
    fs = fb.build_features(panel)
    first = time.perf_counter() - t0
    n_feat = fs.features.shape[1] - len(fb.KEY_COLUMNS)
    del fs
    secs = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        fs = fb.build_features(panel)
        secs.append(time.perf_counter() - t0)
        del fs
    med = statistics.median(secs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pools={args.pools} days={args.days} rows={rows:,} features={n_feat}")
    print(f"first build (loads or compiles the kernels) {first:.2f} s, not counted")
    budget = rows / TARGET_ROWS_PER_S
    print(f"median seconds={med:.2f} (runs: {', '.join(f'{s:.2f}' for s in secs)})   "
          f"target <= {budget:.2f} s")
    print(f"rows/s (pool-hours/s)={rows / med:,.0f}   target >= {TARGET_ROWS_PER_S:,}")
    print(f"memory: RSS with the panel loaded {rss0:,.0f} MiB, process peak {peak:,.0f} MiB "
          f"(build's peak above the panel ~{peak - rss0:,.0f} MiB)")
    print(f"other target: {TARGET_BIG}")
    try:
        parts = stage_seconds(panel)
    except (AttributeError, TypeError) as exc:  # the stage functions changed shape
        print(f"stage breakdown unavailable: {exc}")
    else:
        total = sum(parts.values())
        print(f"stages (each at >= {TARGET_ROWS_PER_S:,} rows/s on its own would take "
              f"<= {budget:.2f} s; the whole build must fit in that):")
        for k, v in parts.items():
            print(f"  {k}: {v:.2f} s ({v / total:.0%}), {rows / v:,.0f} rows/s   "
                  f"target >= {TARGET_ROWS_PER_S:,}")
    bw, touch = copy_bandwidth(), first_touch_bandwidth()
    table = rows * n_feat * 4  # the float32 feature table, written once
    grids = rows * n_feat * 4  # its wide float32 matrices, written once (and read once)
    floor = (table + 2 * grids) / (bw * 1e9)
    fresh = (table + grids) / (touch * 1e9)
    print(f"memory bandwidth (numpy copy, read + write) {bw:.1f} GB/s; moving the table and "
          f"its wide matrices once ({(table + 2 * grids) / 1e9:.2f} GB) takes {floor:.2f} s: "
          f"the build is {med / floor:.0f}x that bound")
    new_gb = (table + grids) / 1e9
    print(f"writing fresh memory (page faults included) {touch:.1f} GB/s: the {new_gb:.2f} GB "
          f"of new arrays alone take {fresh:.2f} s, {fresh / med:.0%} of the build")


if __name__ == "__main__":
    main()
