"""Benchmark: feature build throughput (pool-hours/s) and peak memory on a simulated year."""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

# this file is named like the `features` package: keep its folder off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from features.build import build_features  # noqa: E402
from features.sources.simulator import simulate_market  # noqa: E402


def main() -> None:
    """Build features for pools x days of simulated hours and print rows/s and memory."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pools", type=int, default=200)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    panel, _ = simulate_market(n_pools=args.pools, days=args.days, seed=0)
    rows = len(panel.frame)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    secs = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        fs = build_features(panel)
        secs.append(time.perf_counter() - t0)
    tracemalloc.start()
    build_features(panel)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    med = statistics.median(secs)
    print(f"pools={args.pools} days={args.days} rows={rows:,} "
          f"features={fs.features.shape[1] - 3}")
    print(f"median seconds={med:.2f} (runs: {', '.join(f'{s:.2f}' for s in secs)})")
    print(f"rows/s (pool-hours/s)={rows / med:,.0f}")
    print(f"peak traced memory during one build={peak / 2**20:,.0f} MiB; "
          f"max RSS before builds={rss0 / 1024:,.0f} MiB, after="
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
