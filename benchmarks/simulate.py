"""Benchmark: simulated pool-hours per second for `lpa data synth --pools 200 --days 365`."""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import sys as _sys
from pathlib import Path as _Path

# benchmarks/features.py is named like the `features` package: keep this folder off the path
_sys.path = [p for p in _sys.path if _Path(p or ".").resolve() != _Path(__file__).resolve().parent]

from features.sources.simulator import simulate_market  # noqa: E402


def main() -> None:
    """Run the simulator several times and print the median throughput and peak memory."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pools", type=int, default=200)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    secs = []
    for i in range(args.repeat):
        t0 = time.perf_counter()
        panel, _ = simulate_market(n_pools=args.pools, days=args.days, seed=i)
        secs.append(time.perf_counter() - t0)
    rows = len(panel.frame)
    tracemalloc.start()
    simulate_market(n_pools=args.pools, days=args.days, seed=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    med = statistics.median(secs)
    print(f"pools={args.pools} days={args.days} rows={rows:,}")
    print(f"median seconds={med:.2f} (runs: {', '.join(f'{s:.2f}' for s in secs)})")
    print(f"pool-hours/s={rows / med:,.0f}")
    print(f"peak traced memory={peak / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
