"""Cost curve: how the feature build and the backtest scale with pools and years (hourly).

Runs each (job, pools, years) in its own process, smallest first, and prints seconds, rows/s,
the process's peak memory and the scaling exponent (d log seconds / d log rows) against the
previous size of the same job and years. A combination whose memory, extrapolated from the
largest run of that job so far, would exceed the limit is skipped and says so. Usage:
    .venv/bin/python benchmarks/cost_curve.py [--jobs features,backtest] [--pools 50,200,1000]
        [--years 1,2] [--mem-limit-gib G]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

# benchmarks/features.py is named like the `features` package: keep this folder off the path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

TARGETS = {
    "features": "target >= 2M rows/s; 1,000 pools x 2 years in < 60 s and < 4 GiB",
    "backtest": "target < 10 s at 200 pools x 1 year (allocator + four baselines)",
}


def _features(pools: int, days: int) -> tuple[int, float]:
    from features.build import build_features
    from features.sources.simulator import simulate_market

    build_features(simulate_market(n_pools=3, days=5, seed=1)[0])  # load the kernels
    panel, _ = simulate_market(n_pools=pools, days=days, seed=0)
    t0 = time.perf_counter()
    build_features(panel)
    return len(panel.frame), time.perf_counter() - t0


def _backtest(pools: int, days: int) -> tuple[int, float]:
    from features.build import build_features
    from features.sources.simulator import simulate_market
    from pipelines.backtest.engine import (
        BacktestConfig,
        MarketData,
        allocator_config,
        run_backtest,
    )
    from pipelines.backtest.providers import BaselineProvider
    from pipelines.backtest.strategies import (
        AllocatorStrategy,
        EqualWeight,
        Hold,
        Strategy,
        TrailingApr,
        TvlWeighted,
    )

    cfg = BacktestConfig(model="baseline", rebalance="24h", retrain="7d", min_train="14d",
                         write_report=False)

    def once(n: int, d: int) -> tuple[int, float]:
        panel, truth = simulate_market(n_pools=n, days=d, seed=0, freq="1h")
        fs = build_features(panel)
        strategies: list[Strategy] = [AllocatorStrategy(allocator_config(cfg, fs.horizon)),
                                      EqualWeight(), TvlWeighted(), TrailingApr(), Hold()]
        market = MarketData.from_panel(panel, fs)
        provider = BaselineProvider(market, market.horizon_bars)
        t0 = time.perf_counter()
        run_backtest(panel, fs, cfg, truth=truth, strategies=strategies, provider=provider)
        return len(panel.frame), time.perf_counter() - t0

    once(4, 30)  # load the compiled kernels
    return once(pools, days)


def run_one(job: str, pools: int, days: int) -> None:
    """Time one job in this process and print a JSON line (rows, seconds, peak MiB)."""
    rows, secs = {"features": _features, "backtest": _backtest}[job](pools, days)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": secs, "peak_mib": peak}))


def _available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return 8.0


def main() -> None:
    """Run the grid of sizes, each in a child process, and print the curve."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", default="features,backtest")
    ap.add_argument("--pools", default="50,200,1000")
    ap.add_argument("--years", default="1,2")
    ap.add_argument("--mem-limit-gib", type=float, default=None,
                    help="skip runs predicted above this (default: half the available memory)")
    ap.add_argument("--one", choices=["features", "backtest"], help=argparse.SUPPRESS)
    ap.add_argument("--days", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        run_one(args.one, int(args.pools), args.days)
        return
    limit = args.mem_limit_gib or 0.5 * _available_gib()
    pools = sorted(int(p) for p in args.pools.split(","))
    years = sorted(int(y) for y in args.years.split(","))
    print(f"memory limit for a run: {limit:.1f} GiB (the machine is shared: timings move with "
          "its load)")
    print(f"{'job':9s} {'pools':>5s} {'years':>5s} {'rows':>11s} {'seconds':>8s} "
          f"{'rows/s':>10s} {'peak MiB':>9s} {'exponent':>8s}")
    for job in args.jobs.split(","):
        per_row: float | None = None  # peak bytes per row of this job's largest run so far
        for y in years:
            prev: tuple[int, float] | None = None
            for p in pools:
                rows = p * y * 365 * 24
                need = per_row * rows / 2**30 if per_row else 0.0
                if need > limit:
                    print(f"{job:9s} {p:5d} {y:5d} {rows:11,d}  skipped: needs ~{need:.1f} GiB "
                          f"(extrapolated), above the {limit:.1f} GiB limit")
                    continue
                cmd = [sys.executable, __file__, "--one", job, "--pools", str(p),
                       "--days", str(365 * y)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    tail = (done.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"{job:9s} {p:5d} {y:5d} {rows:11,d}  failed: {tail}")
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                per_row = max(per_row or 0.0, r["peak_mib"] * 2**20 / r["rows"])
                slope = (math.log(r["seconds"] / prev[1]) / math.log(r["rows"] / prev[0])
                         if prev else float("nan"))
                prev = (r["rows"], r["seconds"])
                print(f"{job:9s} {p:5d} {y:5d} {r['rows']:11,d} {r['seconds']:8.2f} "
                      f"{r['rows'] / r['seconds']:10,.0f} {r['peak_mib']:9,.0f} "
                      f"{slope:8.2f}", flush=True)
        print(f"{job}: {TARGETS[job]}")


if __name__ == "__main__":
    main()
